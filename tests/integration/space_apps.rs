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

/// Runs the app's action `id` once, now (`micros trigger`), on its state folder: it must answer
/// `{"ran": id}`.
fn trigger(app: &Path, state: &Path, id: &str) {
    let triggered = std::process::Command::new(MICROS)
        .arg("trigger")
        .arg(app)
        .arg(id)
        .arg("--state-dir")
        .arg(state)
        .output()
        .unwrap();
    assert!(
        triggered.status.success(),
        "{}",
        String::from_utf8_lossy(&triggered.stderr)
    );
    let ran = format!(r#"{{"ran":"{id}"}}"#);
    assert!(String::from_utf8_lossy(&triggered.stdout).contains(&ran));
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
    assert!(notes.contains("`micros_python/deta.py`"), "{notes}");
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
    trigger(app.path(), state.path(), "sweep");
    let events = send(&served, "GET", "/api/events", None).await.body;
    assert!(events.contains("action:sweep"), "{events}");
    terminate(served).await;

    // The note went into the app's Base (through `from deta import Deta`): still there after a
    // restart; an unknown one is FastAPI's 404.
    let served = up(&[
        app.path().to_str().unwrap(),
        "--state-dir",
        state.path().to_str().unwrap(),
    ])
    .await;
    let kept = send(&served, "GET", "/api/notes/1", None).await;
    assert_eq!(
        kept.json(),
        json!({ "key": "1", "text": "milk", "stars": 3 })
    );
    let unknown = send(&served, "GET", "/api/notes/2", None).await;
    assert_eq!(
        (unknown.status, unknown.json()),
        (404, json!({ "detail": "no such note" }))
    );
    // A body the app sends in parts goes out part by part: chunked, no length up front (a whole
    // one keeps its Content-Length); an app failing after its head went out cuts the body, so
    // the client never takes the part for the whole.
    let get = |path: &str| {
        http::Request::get(path)
            .body(http_body_util::Empty::<bytes::Bytes>::new())
            .unwrap()
    };
    let streamed = crate::support::send(served.addr, get("/api/stream")).await;
    assert_eq!(streamed.status, 200);
    assert_eq!(streamed.header("transfer-encoding"), Some("chunked"));
    assert_eq!(streamed.header("content-length"), None);
    assert_eq!(streamed.text(), "part 0\npart 1\npart 2\n");
    let whole = crate::support::send(served.addr, get("/api/notes/1")).await;
    let length = whole.text().len().to_string();
    assert_eq!(whole.header("content-length"), Some(length.as_str()));
    let cut = crate::support::send(served.addr, get("/api/stream-fails")).await;
    assert_eq!(cut.status, 200);
    assert!(
        cut.body.is_err(),
        "a cut body reads as whole: {:?}",
        cut.body
    );
    let log = crate::cli::log_until(&served, |log| {
        log.lines()
            .any(|l| l.contains("micros::access") && l.contains("path=/api/stream-fails"))
    })
    .await;
    assert!(
        log.contains("RuntimeError: the stream failed half way"),
        "the traceback reaches the log:\n{log}"
    );
    terminate(served).await;
}

/// A Flask app using Deta's SDK (`from deta import Deta`) for Drive uploads and a Base, as a
/// Space app: its data outlives a restart.
#[tokio::test(flavor = "multi_thread")]
async fn a_flask_space_app_keeps_its_drive_and_base_across_a_restart() {
    require(
        "python3",
        &["-m", "venv", "--help"],
        "apt-get install -y python3 python3-venv",
    );
    let (app, notes) = imported("flask-drive");
    assert!(notes.contains("`micros_python/deta.py`"), "{notes}");
    build(app.path()).await;
    let state = tempfile::tempdir().unwrap();
    let args = [
        app.path().to_str().unwrap(),
        "--state-dir",
        state.path().to_str().unwrap(),
    ];
    let served = up(&args).await;
    assert_eq!(send(&served, "GET", "/health", None).await.body, "ok");
    let photo: Vec<u8> = (0..=255u8).cycle().take(70_000).collect();
    let mut form =
        b"--XyZ\r\ncontent-disposition: form-data; name=\"file\"; filename=\"cat.png\"\r\n\
        content-type: image/png\r\n\r\n"
            .to_vec();
    form.extend_from_slice(&photo);
    form.extend_from_slice(b"\r\n--XyZ--\r\n");
    let uploaded = send(
        &served,
        "POST",
        "/upload",
        Some(("multipart/form-data; boundary=XyZ", form)),
    )
    .await;
    assert_eq!(uploaded.status, 201, "{}", uploaded.body);
    assert_eq!(uploaded.json(), json!({ "uploaded": "cat.png" }));
    let note = br#"{"key": "n1", "text": "milk"}"#.to_vec();
    let saved = send(&served, "POST", "/notes", Some(("application/json", note))).await;
    assert_eq!(saved.status, 201, "{}", saved.body);
    assert_eq!(saved.json()["text"], "milk");
    assert!(saved.json()["__expires"].as_u64().unwrap() > 1_700_000_000);
    // `requests` goes out through wasi:http too.
    let fetched = send(&served, "GET", "/requests", None).await;
    assert_eq!(fetched.status, 200, "{}", fetched.body);
    assert_eq!(fetched.json()["refused"], 401);
    assert_eq!(fetched.json()["status"], 200);
    assert_eq!(fetched.json()["item"]["text"], "milk");
    let sdk = send(&served, "GET", "/sdk", None).await;
    assert_eq!(sdk.status, 200, "{}", sdk.body);
    assert_eq!(
        sdk.json(),
        json!({
            "put": {"key": "a", "n": 1},
            "put_value": {"key": "v", "value": "plain"},
            "put_many": [{"key": "b", "n": 2}, {"key": "c", "n": 3, "tags": ["x"]}],
            "get": {"key": "a", "n": 1},
            "missing": null,
            "insert_taken": "Item with key 'a' already exists",
            "insert": {"key": "d", "n": 4},
            "updated": {"key": "c", "n": 8, "tags": ["w", "x", "y"]},
            "update_missing": "Key 'nope' not found",
            "pages": [[2, "c", ["b", "c"]], [1, null, ["d"]]],
            "or": ["a", "d"],
            "deleted": null,
            "expire_at": 2_000_000_000,
            "file": "hello| drive",
            "lines": ["hello drive"],
            "list": ["b.bin", "notes/a.txt"],
            "list_prefix": ["notes/a.txt"],
            "list_page": {"names": ["b.bin"], "paging": {"size": 1, "last": "b.bin"}},
            "delete_many": {"deleted": ["b.bin", "nope"], "failed": {}},
            "missing_file": null,
        })
    );
    terminate(served).await;

    let served = up(&args).await;
    assert_eq!(
        send(&served, "GET", "/files", None).await.json(),
        json!(["cat.png"])
    );
    let stored = tokio::time::timeout(
        std::time::Duration::from_secs(60),
        crate::support::send(
            served.addr,
            http::Request::get("/files/cat.png")
                .body(http_body_util::Full::new(bytes::Bytes::new()))
                .unwrap(),
        ),
    )
    .await
    .unwrap();
    assert_eq!(stored.body.as_deref(), Ok(&photo[..]));
    assert_eq!(
        send(&served, "GET", "/notes", None).await.json(),
        json!({ "count": 1, "keys": ["n1"] })
    );
    let deleted = send(&served, "DELETE", "/files/cat.png", None).await;
    assert_eq!(deleted.json(), json!({ "deleted": "cat.png" }));
    assert_eq!(
        send(&served, "GET", "/files/cat.png", None).await.status,
        404
    );
    terminate(served).await;
}

/// Two Node Micros written fetch-style with Hono, as Space apps: one an ES module with Deta's
/// SDK 2.0.0, Base, Drive and a scheduled action, the other CommonJS with the SDK's 1.2.0;
/// both installed from npm and bundled unchanged. Their data outlives a restart.
#[tokio::test(flavor = "multi_thread")]
async fn a_hono_space_app_with_detas_npm_sdk_is_imported_built_and_served() {
    require("npm", &["--version"], "apt-get install -y nodejs npm");
    let (app, notes) = imported("hono-deta");
    assert!(!notes.contains("to do by hand"), "{notes}");
    assert!(notes.contains("`index.js` is served"), "{notes}");
    build(app.path()).await;
    let state = tempfile::tempdir().unwrap();
    let args = [
        app.path().to_str().unwrap(),
        "--state-dir",
        state.path().to_str().unwrap(),
    ];
    let served = up(&args).await;
    assert_eq!(
        send(&served, "GET", "/", None).await.body,
        "hello from hono\n"
    );
    let note = br#"{"key": "n1", "text": "milk"}"#.to_vec();
    let saved = send(&served, "POST", "/notes", Some(("application/json", note))).await;
    assert_eq!(saved.status, 201, "{}", saved.body);
    assert_eq!(saved.json(), json!({ "key": "n1", "text": "milk" }));
    assert_eq!(send(&served, "GET", "/notes/nope", None).await.status, 404);
    let stored = send(
        &served,
        "PUT",
        "/files/a.txt",
        Some(("text/plain", b"hello drive".to_vec())),
    )
    .await;
    assert_eq!(stored.json(), json!({ "name": "a.txt" }));
    assert_eq!(
        send(&served, "GET", "/files/a.txt", None).await.body,
        "hello drive"
    );
    let legacy = send(&served, "GET", "/legacy/sdk", None).await;
    assert_eq!(legacy.status, 200, "{}", legacy.body);
    assert_eq!(
        legacy.json(),
        json!({
            "put": {"key": "k1", "text": "a"},
            "insert": {"key": "k2", "n": 1},
            "taken": "Item with key k2 already exists",
            "updated": {"key": "k2", "n": 3, "tags": ["x"]},
            "missing": null,
            "page": {"count": 1, "items": [{"key": "k2", "n": 3, "tags": ["x"]}]},
            "deleted": null,
        })
    );
    trigger(app.path(), state.path(), "tidy");
    terminate(served).await;

    let served = up(&args).await;
    assert_eq!(
        send(&served, "GET", "/notes", None).await.json(),
        json!({ "count": 2, "keys": ["last-action", "n1"] })
    );
    assert_eq!(
        send(&served, "GET", "/files/a.txt", None).await.body,
        "hello drive"
    );
    terminate(served).await;
}
