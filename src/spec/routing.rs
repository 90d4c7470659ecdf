//! Routing by path: which Micro a request reaches and the path it sees, and the runtime's own
//! namespace that no Micro may see. Pure functions of the manifest, so they can be fuzzed.

use http::Uri;

use crate::spec::manifest::Manifest;

/// The first path segment of the runtime's own namespace.
const RESERVED_SEGMENT: &str = "__space";

/// Where requests go, from a manifest: a non-primary Micro by its path's first segment (with the
/// segment stripped), everything else to the primary.
#[derive(Debug, Clone)]
pub struct Router {
    /// The index of the primary Micro in the manifest.
    primary: usize,
    /// `(first path segment, index)` of every non-primary Micro.
    routes: Vec<(String, usize)>,
}

/// Where one request goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// To the Micro at this index of the manifest, which sees this URI.
    Micro(usize, Uri),
    /// Into `/__space/`, the runtime's namespace, however it is spelled (before or after the
    /// Micro's prefix is stripped): no Micro sees it. The index is of the Micro the path would
    /// otherwise reach, for the log.
    Reserved(usize),
}

impl Router {
    /// The router of a valid manifest (one with a primary Micro).
    pub fn new(manifest: &Manifest) -> Self {
        let primary = manifest
            .micros
            .iter()
            .position(|m| m.is_primary())
            .unwrap_or(0);
        let routes = manifest
            .micros
            .iter()
            .enumerate()
            .filter(|(_, m)| !m.is_primary())
            .map(|(i, m)| (m.route().trim_start_matches('/').to_string(), i))
            .collect();
        Self { primary, routes }
    }

    /// Routes a request URI: `/api/x?q=1` reaches `/api`'s Micro as `/x?q=1`, `/api` as `/`;
    /// everything else reaches the primary unchanged.
    pub fn route(&self, uri: &Uri) -> Route {
        let path = uri.path();
        if !path.starts_with('/') {
            // `*` (OPTIONS) and authority-form (CONNECT) targets name no resource: the primary
            // sees `/`, so that every guest can rely on a path that starts with a slash.
            return Route::Micro(self.primary, Uri::from_static("/"));
        }
        let rest = path.strip_prefix('/').unwrap_or(path);
        let segment = rest.split('/').next().unwrap_or("");
        let (index, uri) = match self.routes.iter().find(|(route, _)| route == segment) {
            None => (self.primary, uri.clone()),
            Some(&(_, index)) => {
                let stripped = &rest[segment.len()..];
                let stripped = if stripped.is_empty() { "/" } else { stripped };
                let path_and_query = match uri.query() {
                    Some(query) => format!("{stripped}?{query}"),
                    None => stripped.to_string(),
                };
                let uri = Uri::builder()
                    .path_and_query(path_and_query)
                    .build()
                    .unwrap_or_else(|_| Uri::from_static("/"));
                (index, uri)
            }
        };
        if is_reserved(path) || is_reserved(uri.path()) {
            Route::Reserved(index)
        } else {
            Route::Micro(index, uri)
        }
    }
}

/// Whether `path` is in `/__space/`, the runtime's own namespace, however it is spelled: a
/// guest's framework may decode `%5F`, merge `//`, resolve `..` or ignore case before routing, so
/// the check does all of that first.
fn is_reserved(path: &str) -> bool {
    normalize_path(path)
        .split('/')
        .nth(1)
        .is_some_and(|first| first.eq_ignore_ascii_case(RESERVED_SEGMENT))
}

/// A path as a lenient framework would read it: percent-decoded, `\\` taken for `/`, empty and
/// `.` segments dropped, `..` resolved (never above the root); a trailing `/` is kept.
pub(crate) fn normalize_path(path: &str) -> String {
    let decoded = percent_encoding::percent_decode_str(path).decode_utf8_lossy();
    let mut segments: Vec<&str> = Vec::new();
    for segment in decoded.split(['/', '\\']) {
        match segment {
            "" | "." => {}
            ".." => {
                segments.pop();
            }
            segment => segments.push(segment),
        }
    }
    let mut normal = format!("/{}", segments.join("/"));
    if !segments.is_empty() && decoded.ends_with(['/', '\\']) {
        normal.push('/');
    }
    normal
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_runtime_namespace_however_spelled() {
        for path in [
            "/__space",
            "/__space/",
            "/__space/v0/actions",
            "//__space/v0/actions",
            "/%5F%5Fspace/v0/actions",
            "/%5f%5fspace/v0/actions",
            "/x/../__space/v0/actions",
            "/./__space",
            "/__SPACE/v0/actions",
            "\\__space/v0/actions",
        ] {
            assert!(is_reserved(path), "{path}");
        }
        for path in ["/", "/__spaceship", "/x/__space", "/space", "/_space"] {
            assert!(!is_reserved(path), "{path}");
        }
        assert_eq!(normalize_path("/a//b/./c/../%64/"), "/a/b/d/");
        assert_eq!(normalize_path("/../.."), "/");
        assert_eq!(normalize_path("/a\\..\\b"), "/b");
    }

    #[test]
    fn prefixes_are_stripped_and_reserved_paths_refused() {
        let router = Router {
            primary: 0,
            routes: vec![("api".into(), 1)],
        };
        let route = |uri: &str| router.route(&uri.parse().unwrap());
        assert_eq!(
            route("/api/x?q=1"),
            Route::Micro(1, "/x?q=1".parse().unwrap())
        );
        assert_eq!(route("/api"), Route::Micro(1, "/".parse().unwrap()));
        assert_eq!(route("/apix"), Route::Micro(0, "/apix".parse().unwrap()));
        assert_eq!(route("/api/__space/v0"), Route::Reserved(1));
        assert_eq!(route("/__space"), Route::Reserved(0));
        assert_eq!(route("*"), Route::Micro(0, "/".parse().unwrap()));
        assert_eq!(
            route("example.com:443"),
            Route::Micro(0, "/".parse().unwrap())
        );
    }
}
