//! `micros import`, snapshot-tested: each folder under `tests/imports/` holds a Space app's
//! `Spacefile` (and the files its engines' defaults look at) beside `expected.txt`: the
//! manifest written, the files written beside it, and every note, or the error. `BLESS=1`
//! rewrites the snapshots.

use std::path::{Path, PathBuf};

/// The snapshot of importing the app in `dir`.
fn snapshot(dir: &Path) -> String {
    let imported = match micros::import::import(dir) {
        Ok(imported) => imported,
        Err(error) => {
            let text = format!("error: {error:#}\n");
            return text.replace(&format!("{}/", dir.display()), "");
        }
    };
    let mut text = imported.manifest.clone();
    text.push_str("---- files\n");
    let mut files: Vec<&(PathBuf, Vec<u8>)> = imported.files.iter().collect();
    files.sort_by(|a, b| a.0.cmp(&b.0));
    for (path, bytes) in files {
        let path = path.display().to_string();
        if path.starts_with("wit/") {
            continue;
        }
        if path.contains("/entry_") {
            text.push_str(&format!("{path}:\n{}", String::from_utf8_lossy(bytes)));
        } else {
            // The toolkit as the Python starter has it: its bytes change with it.
            text.push_str(&format!("{path} (written by micros)\n"));
        }
    }
    if imported.files.iter().any(|(p, _)| p.starts_with("wit")) {
        text.push_str("wit/... (the runtime's WIT)\n");
    }
    text.push_str("---- notes\n");
    for note in &imported.notes {
        text.push_str(&format!("{note}\n"));
    }
    text.replace(&format!("{}/", dir.display()), "")
}

#[test]
fn every_space_app_imports_to_its_snapshot() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/imports");
    crate::support::check_snapshots(&root, 14, snapshot);
}

#[test]
fn the_cli_writes_the_manifest_and_refuses_to_replace_one() {
    const MICROS: &str = env!("CARGO_BIN_EXE_micros");
    let app = tempfile::tempdir().unwrap();
    std::fs::write(
        app.path().join("Spacefile"),
        "v: 0\nmicros:\n  - name: web\n    src: .\n    engine: static\n    public: true\n",
    )
    .unwrap();
    std::fs::write(app.path().join("index.html"), "<p>hello</p>").unwrap();
    let run = |extra: &[&str]| {
        std::process::Command::new(MICROS)
            .arg("import")
            .arg(app.path())
            .args(extra)
            .output()
            .unwrap()
    };
    let first = run(&[]);
    let err = String::from_utf8_lossy(&first.stderr);
    assert!(first.status.success(), "{err}");
    assert!(err.contains("build and serve the app with:"), "{err}");
    let written = std::fs::read_to_string(app.path().join("Spacefile.toml")).unwrap();
    assert!(written.contains("engine = \"static\"\n"), "{written}");
    // The manifest parses and its files check: the app serves as it is.
    let manifest = micros::Manifest::load(app.path()).unwrap();
    manifest.check_files().unwrap();
    let again = run(&[]);
    assert!(!again.status.success());
    assert!(
        String::from_utf8_lossy(&again.stderr)
            .contains("exists already\n  help: run again with `--force`"),
        "{}",
        String::from_utf8_lossy(&again.stderr)
    );
    assert!(run(&["--force"]).status.success());
}
