//! Any request target through the router of a three-Micro app. Asserts what routing promises:
//! the runtime's `/__space/` namespace is never reached however it is spelled, a Micro sees a
//! path starting with `/` and the query unchanged, and a prefix is stripped only for its Micro.
#![no_main]

use std::sync::LazyLock;

use libfuzzer_sys::fuzz_target;
use micros::{Manifest, Route, Router};

const MANIFEST: &str = r#"
v = 1
[[micros]]
name = "web"
src = "web"
component = "web.wasm"
primary = true

[[micros]]
name = "api"
src = "api"
component = "api.wasm"
path = "/api"

[[micros]]
name = "admin"
src = "admin"
component = "admin.wasm"
path = "/admin"
"#;

static ROUTER: LazyLock<Router> = LazyLock::new(|| {
    let manifest = Manifest::parse(std::path::Path::new("app/Spacefile.toml"), MANIFEST)
        .expect("the fixed manifest is valid");
    Router::new(&manifest)
});

/// An oracle written apart from the router: whether a path, decoded and normalised the way a
/// guest's framework might, starts with the `__space` segment.
fn reaches_space(path: &str) -> bool {
    let decoded = percent_encoding::percent_decode_str(path).decode_utf8_lossy();
    let mut stack: Vec<String> = Vec::new();
    for part in decoded.split(|c| c == '/' || c == '\\') {
        if part.is_empty() || part == "." {
            continue;
        }
        if part == ".." {
            stack.pop();
        } else {
            stack.push(part.to_ascii_lowercase());
        }
    }
    stack.first().is_some_and(|first| first == "__space")
}

fuzz_target!(|bytes: &[u8]| {
    let Ok(uri) = http::Uri::try_from(bytes) else {
        return;
    };
    let path = uri.path();
    match ROUTER.route(&uri) {
        Route::Reserved(index) => {
            assert!(index < 3);
        }
        Route::Micro(index, seen) => {
            assert!(!reaches_space(path), "{path} reached micro {index}");
            assert!(!reaches_space(seen.path()), "{} reached micro {index}", seen.path());
            assert!(seen.path().starts_with('/'), "{seen}");
            assert_eq!(seen.query(), uri.query(), "the query changed");
            // The first segment is what follows exactly one `/`: `//api` is the primary's path.
            let first = path.strip_prefix('/').unwrap_or(path).split('/').next().unwrap_or("");
            match index {
                1 => assert_eq!(first, "api"),
                2 => assert_eq!(first, "admin"),
                _ => assert!(first != "api" && first != "admin", "{path}"),
            }
        }
    }
});
