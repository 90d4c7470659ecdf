//! Manifest errors, snapshot-tested: each folder under `tests/manifests/` holds a bad manifest
//! beside the exact error it must produce (`expected.txt`). `BLESS=1` rewrites the snapshots.

use micros::{Manifest, ManifestError};
use micros_guests as guests;

use crate::support::{manifests_dir, micro, write_app};

fn load_and_check(path: &std::path::Path) -> Result<Manifest, ManifestError> {
    let manifest = Manifest::load(path)?;
    manifest.check_files()?;
    Ok(manifest)
}

#[test]
fn every_bad_manifest_has_its_exact_error() {
    crate::support::check_snapshots(manifests_dir(), 20, |case| match load_and_check(case) {
        Ok(_) => "(no error)\n".to_string(),
        Err(error) => format!("{error}\n"),
    });
}

#[test]
fn the_documented_example_is_valid() {
    let (dir, path) = write_app(&[]);
    let text = r#"
v = 1
app_name = "notes"
version = "0.1.0"

[[micros]]
name = "web"
src = "web"
component = "target/wasm32-wasip2/release/web.wasm"
engine = "wasm32-wasip2"
primary = true
commands = ["cargo build --release --target wasm32-wasip2"]
public_routes = ["/public/*"]

[[micros.presets.env]]
name = "GREETING"
description = "How to greet"
default = "hello"

[[micros.actions]]
id = "cleanup"
name = "Clean up"
trigger = "schedule"
default_interval = "0/15 * * * *"

[[micros]]
name = "api"
src = "api"
component = "api.wasm"
public = false
"#;
    std::fs::write(&path, text).unwrap();
    let manifest = Manifest::load(dir.path()).unwrap();
    assert_eq!(manifest.app_name.as_deref(), Some("notes"));
    assert_eq!(manifest.version, "0.1.0");
    let [web, api] = &manifest.micros[..] else {
        panic!("two micros")
    };
    assert!(web.is_primary());
    assert_eq!(web.route(), "/");
    assert!(!api.is_primary());
    assert_eq!(api.route(), "/api");
    assert_eq!(web.presets.env[0].default.as_deref(), Some("hello"));
    assert_eq!(web.actions[0].default_interval.as_str(), "0/15 * * * *");
}

#[test]
fn oversized_component_and_src_are_refused() {
    let (dir, path) = write_app(&[micro("web", guests::HELLO).primary()]);
    // Sparse files: the size counts, the disk does not fill.
    let big = std::fs::File::create(dir.path().join("web/huge.bin")).unwrap();
    big.set_len(250 * 1000 * 1000 + 1).unwrap();
    let error = load_and_check(&path).unwrap_err().to_string();
    assert_eq!(
        error,
        format!(
            "{}: `micros[0].src`: the files under `{}` total {} bytes; at most 250000000 are allowed\n  help: move large or build-only files out of the Micro's folder",
            path.display(),
            dir.path().join("web").display(),
            250 * 1000 * 1000 + 1 + std::fs::metadata(guests::HELLO).unwrap().len()
        )
    );
    std::fs::remove_file(dir.path().join("web/huge.bin")).unwrap();
    let wasm = std::fs::OpenOptions::new()
        .write(true)
        .open(dir.path().join("web/micro.wasm"))
        .unwrap();
    wasm.set_len(250 * 1000 * 1000 + 1).unwrap();
    let error = load_and_check(&path).unwrap_err().to_string();
    assert!(
        error.ends_with("is 250000001 bytes; at most 250000000 are allowed\n  help: build in release mode and strip debug information"),
        "{error}"
    );
}
