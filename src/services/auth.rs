//! Who gets in: private by default, as on Space. A route is open when its Micro is `public` or
//! the path matches one of its `public_routes`; otherwise the caller needs the owner token (a
//! bearer token or the login cookie) or, where the Micro has `presets.api_keys`, an app key.
//! Credentials are taken off the request before a guest sees it.

mod login;
mod store;

use globset::{GlobSet, GlobSetBuilder};
use http::HeaderMap;
use http::header::{AUTHORIZATION, COOKIE, HeaderValue};

pub use store::{ACCESS_FILE, Credentials, KeyInfo};

pub(crate) use login::{LOGIN_PATH, LOGOUT_PATH, login, logout, private_page};
pub(crate) use store::Holder;

use crate::spec::manifest::Micro;

/// The header an app key comes in (any case).
pub const APP_KEY_HEADER: &str = "x-space-app-key";
/// The cookie the login page sets: the owner token itself, `HttpOnly`, so that rotating the
/// token also logs every browser out.
pub const OWNER_COOKIE: &str = "micros_owner";

/// Whether the runtime checks credentials at all.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AuthMode {
    /// Every route is private unless the manifest opens it (the default).
    #[default]
    Required,
    /// Every route of every Micro is open (`--no-auth`, for local development only).
    Off,
}

/// How one request got in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Access {
    /// Authentication is off.
    Open,
    /// The route is public.
    Public,
    /// With a credential.
    As(Holder),
}

impl Access {
    /// For the log: `open`, `public`, `owner` or `key:<name>`.
    pub(crate) fn label(&self) -> String {
        match self {
            Self::Open => "open".into(),
            Self::Public => "public".into(),
            Self::As(Holder::Owner) => "owner".into(),
            Self::As(Holder::Key(name)) => format!("key:{name}"),
        }
    }
}

/// One Micro's rule: which of its paths are open, and whether it takes app keys.
#[derive(Debug, Clone)]
pub(crate) struct MicroAccess {
    public: Public,
    api_keys: bool,
}

#[derive(Debug, Clone)]
enum Public {
    All,
    Routes(GlobSet),
}

impl MicroAccess {
    /// The rule of a Micro from its manifest entry. Only `*` is special in a pattern (any run of
    /// characters, `/` included); everything else matches itself.
    pub(crate) fn new(micro: &Micro) -> anyhow::Result<Self> {
        let public = if micro.public == Some(true) {
            Public::All
        } else {
            let mut set = GlobSetBuilder::new();
            for pattern in &micro.public_routes {
                let mut text = pattern.as_str().to_string();
                while text.contains("**") {
                    text = text.replace("**", "*");
                }
                let escaped: Vec<String> = text.split('*').map(globset::escape).collect();
                let glob = globset::GlobBuilder::new(&escaped.join("*"))
                    .literal_separator(false)
                    .backslash_escape(false)
                    .build()
                    .map_err(|e| {
                        anyhow::anyhow!(
                            "micro `{}`: public route `{}`: {e}",
                            micro.name.as_str(),
                            pattern.as_str()
                        )
                    })?;
                set.add(glob);
            }
            Public::Routes(set.build().map_err(|e| {
                anyhow::anyhow!("micro `{}`: public routes: {e}", micro.name.as_str())
            })?)
        };
        Ok(Self {
            public,
            api_keys: micro.presets.api_keys,
        })
    }

    /// Whether `path` (as the Micro sees it) is open. Both the path as sent and its normal form
    /// (decoded, `.` and `..` resolved) must match: a guest's framework may route on either, and
    /// `/public/../admin` must not open `/admin`.
    fn is_public(&self, path: &str) -> bool {
        match &self.public {
            Public::All => true,
            Public::Routes(set) => {
                !set.is_empty()
                    && set.is_match(path)
                    && set.is_match(crate::spec::routing::normalize_path(path))
            }
        }
    }
}

/// Decides whether a request to a Micro's `path` gets in, and takes every credential off its
/// headers either way (the guest never sees one). `Err(())` is a 401.
pub(crate) fn check(
    mode: AuthMode,
    rule: &MicroAccess,
    credentials: &Credentials,
    path: &str,
    headers: &mut HeaderMap,
) -> Result<Access, ()> {
    let presented = take_credentials(headers);
    if mode == AuthMode::Off {
        return Ok(Access::Open);
    }
    if rule.is_public(path) {
        return Ok(Access::Public);
    }
    holder_of(&presented, credentials, rule.api_keys)
}

/// Decides whether a request for the runtime's own owner-only routes (the app's data at
/// `/__space/v0/base/` and `/__space/v0/drive/`) gets in: the owner's token only, never an
/// app key.
pub(crate) fn check_owner(
    mode: AuthMode,
    credentials: &Credentials,
    headers: &mut HeaderMap,
) -> Result<Access, ()> {
    let presented = take_credentials(headers);
    if mode == AuthMode::Off {
        return Ok(Access::Open);
    }
    holder_of(&presented, credentials, false)
}

/// Who the presented credentials name, if they all hold and one does; app keys count only if
/// `api_keys`.
fn holder_of(
    presented: &[(String, Kind)],
    credentials: &Credentials,
    api_keys: bool,
) -> Result<Access, ()> {
    let mut holder = None;
    for (secret, kind) in presented {
        let found = credentials.holder(secret, api_keys && *kind == Kind::AppKey);
        // A key where only the owner is let in, or a wrong secret anywhere, refuses the request:
        // a bad credential is an error even beside a good one.
        match found {
            Some(Holder::Owner) if *kind != Kind::AppKey => holder = holder.or(Some(Holder::Owner)),
            Some(Holder::Key(name)) => holder = holder.or(Some(Holder::Key(name))),
            _ => return Err(()),
        }
    }
    holder.map(Access::As).ok_or(())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Bearer,
    Cookie,
    AppKey,
}

/// Removes the runtime's credentials from the headers and returns them: `X-Space-App-Key`,
/// an `Authorization: Bearer` token, and the login cookie (other cookies stay).
fn take_credentials(headers: &mut HeaderMap) -> Vec<(String, Kind)> {
    let mut found = Vec::new();
    for value in headers.get_all(APP_KEY_HEADER) {
        found.push((
            value.to_str().unwrap_or("").trim().to_string(),
            Kind::AppKey,
        ));
    }
    headers.remove(APP_KEY_HEADER);
    // Read as bytes: a value that is not plain text must not slip through unread.
    let bearer: Vec<String> = headers
        .get_all(AUTHORIZATION)
        .iter()
        .filter_map(|v| {
            let value = v.as_bytes().trim_ascii();
            let space = value.iter().position(|&b| b == b' ')?;
            let (scheme, token) = value.split_at(space);
            scheme
                .eq_ignore_ascii_case(b"bearer")
                .then(|| String::from_utf8_lossy(token.trim_ascii()).into_owned())
        })
        .collect();
    if !bearer.is_empty() {
        // An `Authorization` of another scheme (Basic...) is the app's own business and stays.
        headers.remove(AUTHORIZATION);
        found.extend(bearer.into_iter().map(|t| (t, Kind::Bearer)));
    }
    let mut kept = Vec::new();
    let mut changed = false;
    // Split as bytes, not text: a browser sends cookies of other names whose values are not
    // ASCII (UTF-8), and the owner's must be taken out of such a header too, never passed on.
    for value in headers.get_all(COOKIE) {
        let mut rest: Vec<&[u8]> = Vec::new();
        for pair in value.as_bytes().split(|&b| b == b';') {
            let pair = pair.trim_ascii();
            let (name, token) = match pair.iter().position(|&b| b == b'=') {
                Some(equals) => (&pair[..equals], &pair[equals + 1..]),
                None => (pair, &b""[..]),
            };
            if name.trim_ascii() == OWNER_COOKIE.as_bytes() {
                let token = String::from_utf8_lossy(token.trim_ascii());
                found.push((token.trim_matches('"').to_string(), Kind::Cookie));
                changed = true;
            } else if !pair.is_empty() {
                rest.push(pair);
            }
        }
        if !rest.is_empty()
            && let Ok(value) = HeaderValue::from_bytes(&rest.join(&b"; "[..]))
        {
            kept.push(value);
        }
    }
    if changed {
        headers.remove(COOKIE);
        for value in kept {
            headers.append(COOKIE, value);
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(patterns: &[&str]) -> MicroAccess {
        let toml = format!(
            "name = \"web\"\nsrc = \".\"\ncomponent = \"x.wasm\"\npublic_routes = {patterns:?}\n"
        );
        let micro: Micro = toml::from_str(&toml).unwrap();
        MicroAccess::new(&micro).unwrap()
    }

    #[test]
    fn public_routes_match_only_star_and_both_forms() {
        let rule = rule(&["/public/*", "/api/*/docs", "/exact", "/[x]{a,b}", "/s/**"]);
        for path in [
            "/public/",
            "/public/a/b.css",
            "/api/v1/docs",
            "/exact",
            "/[x]{a,b}",
            "/s/",
            "/s/a/b",
        ] {
            assert!(rule.is_public(path), "{path}");
        }
        for path in [
            "/public",
            "/exactly",
            "/api/v1/docs/x",
            "/x",
            "/public/../admin",
            "/public/%2e%2e/admin",
            "/public/..%2fadmin",
            "/xa",
            "/[x]a",
        ] {
            assert!(!rule.is_public(path), "{path}");
        }
    }

    #[test]
    fn credentials_are_taken_and_other_headers_kept() {
        let mut headers = HeaderMap::new();
        headers.insert("X-Space-App-Key", HeaderValue::from_static("k1"));
        headers.insert(AUTHORIZATION, HeaderValue::from_static("Bearer t1"));
        headers.append(
            COOKIE,
            HeaderValue::from_static("theme=dark; micros_owner=c1; lang=en"),
        );
        let found = take_credentials(&mut headers);
        assert_eq!(
            found,
            [
                ("k1".to_string(), Kind::AppKey),
                ("t1".to_string(), Kind::Bearer),
                ("c1".to_string(), Kind::Cookie)
            ]
        );
        assert!(!headers.contains_key(APP_KEY_HEADER));
        assert!(!headers.contains_key(AUTHORIZATION));
        assert_eq!(headers[COOKIE], "theme=dark; lang=en");
        let mut headers = HeaderMap::new();
        headers.insert(AUTHORIZATION, HeaderValue::from_static("Basic dTpw"));
        headers.insert(COOKIE, HeaderValue::from_static("micros_owner=c1"));
        take_credentials(&mut headers);
        assert_eq!(headers[AUTHORIZATION], "Basic dTpw");
        assert!(!headers.contains_key(COOKIE));
    }

    /// Found by the `front_door` fuzz target: a `Cookie` header that is not plain text (another
    /// cookie's UTF-8 value) passed to the guest whole, the owner's cookie in it.
    #[test]
    fn credentials_are_taken_from_headers_that_are_not_text() {
        let mut headers = HeaderMap::new();
        headers.insert(
            COOKIE,
            HeaderValue::from_bytes(b"micros_owner=secret1; name=Ren\xc3\xa9e; x=\xff")
                .unwrap_or_else(|e| panic!("{e}")),
        );
        headers.insert(
            AUTHORIZATION,
            HeaderValue::from_bytes(b"Bearer secret2\xff").unwrap_or_else(|e| panic!("{e}")),
        );
        let found = take_credentials(&mut headers);
        assert_eq!(found.len(), 2, "{found:?}");
        assert_eq!(found[1], ("secret1".to_string(), Kind::Cookie));
        assert!(!headers.contains_key(AUTHORIZATION));
        assert_eq!(headers[COOKIE].as_bytes(), b"name=Ren\xc3\xa9e; x=\xff");
        let passed = format!("{headers:?}");
        assert!(!passed.contains("secret"), "{passed}");
    }
}
