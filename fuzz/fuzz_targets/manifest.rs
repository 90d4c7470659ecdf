//! Any text as a `Spacefile.toml`: parsing and validation never panic, and a manifest that
//! parses routes fixed paths without panicking either.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|text: &str| {
    let Ok(manifest) = micros::Manifest::parse(std::path::Path::new("app/Spacefile.toml"), text)
    else {
        return;
    };
    // A valid manifest has exactly one primary Micro and at most five.
    assert_eq!(manifest.micros.iter().filter(|m| m.is_primary()).count(), 1);
    assert!(manifest.micros.len() <= 5);
    let router = micros::Router::new(&manifest);
    for uri in ["/", "/x?y=1", "/api/a/b", "/__space/v0/actions", "/%5F%5Fspace"] {
        let route = router.route(&uri.parse().expect("a fixed valid URI"));
        if let micros::Route::Micro(index, _) = route {
            assert!(index < manifest.micros.len());
        }
    }
});
