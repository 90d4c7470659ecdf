//! Space apps brought over with `micros import`, as their authors wrote them (a YAML
//! `Spacefile`, `requirements.txt`): imported, built with the real toolchains and served, their
//! routes checked end to end. `tests/space-apps/` holds them.

use std::path::Path;

use serde_json::json;

use crate::cli::{terminate, up};
use crate::starters::{build, require, send};

const MICROS: &str = env!("CARGO_BIN_EXE_micros");

/// A copy of the Space app `name` in a new folder, imported: `micros import`'s stdout.
fn imported(name: &str) -> (tempfile::TempDir, String) {
    let from = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/space-apps")
        .join(name);
    let dir = tempfile::tempdir().unwrap();
    copy(&from, dir.path());
    let output = std::process::Command::new(MICROS)
        .args(["import", dir.path().to_str().unwrap()])
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    (dir, String::from_utf8_lossy(&output.stdout).into_owned())
}

fn copy(from: &Path, to: &Path) {
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            std::fs::create_dir_all(&target).unwrap();
            copy(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

/// A FastAPI back end (ASGI, pydantic models, a form, a background task, lifespan events, a
/// streaming response, a scheduled action) behind a static front end, as a Space app.
#[tokio::test(flavor = "multi_thread")]
async fn a_fastapi_space_app_is_imported_built_and_served() {
    require(
        "python3",
        &["-m", "venv", "--help"],
        "apt-get install -y python3 python3-venv",
    );
    let (app, notes) = imported("fastapi-notes");
    assert!(notes.contains("dropped: `icon`"), "{notes}");
    assert!(notes.contains("written `0/15 * * * *`"), "{notes}");
    assert!(!notes.contains("to do by hand"), "{notes}");
    build(app.path()).await;
    let state = tempfile::tempdir().unwrap();
    let served = up(&[
        app.path().to_str().unwrap(),
        "--state-dir",
        state.path().to_str().unwrap(),
    ])
    .await;

    let page = send(&served, "GET", "/", None).await;
    assert_eq!(
        (page.status, page.content_type.as_str()),
        (200, "text/html; charset=utf-8")
    );
    assert!(page.body.contains("<h1>Notes</h1>"), "{}", page.body);
    let hello = send(&served, "GET", "/api/public/hello", None).await;
    assert_eq!(
        hello.json(),
        json!({ "greeting": "hello", "started": true })
    );
    let item = send(&served, "GET", "/api/items/5?q=x", None).await;
    assert_eq!(item.json(), json!({ "item_id": 5, "q": "x" }));
    // FastAPI's own validation errors, as it sends them.
    let invalid = send(&served, "GET", "/api/items/five", None).await;
    assert_eq!(invalid.status, 422);
    assert_eq!(
        invalid.json(),
        json!({ "detail": [{
            "loc": ["path", "item_id"], "msg": "value is not a valid integer",
            "type": "type_error.integer",
        }]})
    );
    let note = br#"{"text": "milk", "stars": "3"}"#.to_vec();
    let saved = send(
        &served,
        "POST",
        "/api/notes",
        Some(("application/json", note)),
    )
    .await;
    assert_eq!(saved.status, 201, "{}", saved.body);
    assert_eq!(saved.json(), json!({ "id": 1, "text": "milk", "stars": 3 }));
    let missing = send(
        &served,
        "POST",
        "/api/notes",
        Some(("application/json", b"{}".to_vec())),
    )
    .await;
    assert_eq!(missing.status, 422);
    assert_eq!(missing.json()["detail"][0]["loc"], json!(["body", "text"]));
    let form = send(
        &served,
        "POST",
        "/api/form",
        Some(("application/x-www-form-urlencoded", b"name=Ada+L".to_vec())),
    )
    .await;
    assert_eq!(form.json(), json!({ "name": "Ada L" }));
    let streamed = send(&served, "GET", "/api/stream", None).await;
    assert_eq!(streamed.body, "part 0\npart 1\npart 2\n");
    // The background task ran before its execution ended, and each execution's lifespan
    // ended with its shutdown event.
    let events = send(&served, "GET", "/api/events", None).await.json();
    let events: Vec<&str> = events["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e.as_str().unwrap())
        .collect();
    // Seven executions of the back end so far (the 422s too); the fourth added the note.
    let mut expected = vec!["shutdown"; 7];
    expected.insert(3, "background:milk");
    assert_eq!(events, expected);
    // The scheduled action, run now.
    let triggered = std::process::Command::new(MICROS)
        .args([
            "trigger",
            app.path().to_str().unwrap(),
            "sweep",
            "--state-dir",
        ])
        .arg(state.path())
        .output()
        .unwrap();
    assert!(
        triggered.status.success(),
        "{}",
        String::from_utf8_lossy(&triggered.stderr)
    );
    assert!(String::from_utf8_lossy(&triggered.stdout).contains(r#"{"ran":"sweep"}"#));
    let events = send(&served, "GET", "/api/events", None).await.body;
    assert!(events.contains("action:sweep"), "{events}");
    // Private routes stay private: only `/public/*` of the API was opened.
    terminate(served).await;
}
