//! `micros data import` of Deta Space's own export: a folder in its shape (`bases/`, `drives/`,
//! in the one folder a zip unpacks into) read into an app, then served back to its owner; a bad
//! export changes nothing.

use std::path::Path;

use bytes::Bytes;
use http_body_util::Full;
use serde_json::{Value, json};

use crate::data::data_command;
use crate::support::{Reply, send};

/// Writes `files` (path under `root`, contents), making the folders above them.
fn write(root: &Path, files: &[(&str, &[u8])]) {
    for (path, contents) in files {
        let path = root.join(path);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, contents).unwrap();
    }
}

/// The start of a PNG file, and then some bytes that are not UTF-8.
const PNG: &[u8] = b"\x89PNG\r\n\x1a\n\x00\xff\xfe";

#[tokio::test]
async fn deta_export_is_imported_and_served_to_the_owner() {
    let later = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 3600;
    let out = tempfile::tempdir().unwrap();
    // Unzipped into a folder of its own, as a zip's one top folder would be.
    let unzipped = out.path().join("unzipped");
    let export = unzipped.join("space-export");
    let notes = json!([
        {"key": "a", "title": "first", "tags": ["x", 1, null]},
        {"key": "ttl", "__expires": later}
    ])
    .to_string();
    write(
        &export,
        &[
            ("bases/notes.json", notes.as_bytes()),
            (
                "bases/users.json",
                b"{\"key\": \"ada\", \"name\": \"Ada\"}\n",
            ),
            ("drives/media/photos/2023/a.png", PNG),
            ("drives/media/readme.txt", b"hello"),
            ("drives/media/.DS_Store", b"mac"),
        ],
    );
    let (dir, _) = crate::support::write_app(&crate::data::app());
    let app = dir.path().to_str().unwrap();
    let (ok, stderr) = data_command(&["import", "--from", unzipped.to_str().unwrap(), app]).await;
    assert!(ok, "{stderr}");
    assert_eq!(
        stderr,
        format!(
            "skipped `{}`: a Mac's folder metadata\nbase `notes`: 2 item(s)\nbase `users`: 1 \
             item(s)\ndrive `media`: 2 file(s)\nimported 3 item(s) and 2 file(s) from Deta \
             Space's export `{}`\n",
            export.join("drives/media/.DS_Store").display(),
            export.display()
        )
    );

    // A bad export: its good base would replace `a`, its good file `readme.txt`; one item has
    // no key, and all of it is refused before anything is written.
    let bad = out.path().join("bad");
    write(
        &bad,
        &[
            (
                "bases/notes.json",
                br#"[{"key": "a", "title": "replaced"}]"#,
            ),
            ("bases/zz.json", br#"[{"key": "ok"}, {"title": "no key"}]"#),
            ("drives/media/readme.txt", b"replaced"),
        ],
    );
    let (ok, stderr) = data_command(&["import", "--from", bad.to_str().unwrap(), app]).await;
    assert!(!ok);
    assert_eq!(
        stderr,
        format!(
            "error: `{}` item 1: the item has no string `key`: give it one, or remove the item\n",
            bad.join("bases/zz.json").display()
        )
    );

    // An import past the app's data limit (`--data-limit`, as `micros up` takes it) is refused
    // whole, naming the limit.
    let (ok, stderr) = data_command(&[
        "import",
        "--from",
        bad.to_str().unwrap(),
        "--data-limit",
        "4KiB",
        app,
    ])
    .await;
    assert!(!ok);
    assert!(
        stderr.starts_with(&format!(
            "error: `{}` item 1: the item has no string `key`",
            bad.join("bases/zz.json").display()
        )),
        "a bad export is refused for what is wrong in it first: {stderr}"
    );
    let (ok, stderr) = data_command(&[
        "import",
        "--from",
        unzipped.to_str().unwrap(),
        "--data-limit",
        "4KiB",
        app,
    ])
    .await;
    assert!(!ok);
    assert!(
        stderr.contains("bytes, past its limit of 4096 bytes: nothing was imported; raise the limit (`--data-limit`"),
        "{stderr}"
    );

    let state = micros::state::StateDir::open(dir.path().join(".micros")).unwrap();
    let token = micros::Credentials::open(&state)
        .ensure_owner_token()
        .unwrap()
        .unwrap();
    let up = crate::cli::up_private(&[app]).await;
    let owner = |path: &str| {
        send(
            up.addr,
            http::Request::get(path)
                .header("authorization", format!("Bearer {token}"))
                .body(Full::new(Bytes::new()))
                .unwrap(),
        )
    };
    let json = |reply: &Reply| serde_json::from_str::<Value>(&reply.text()).unwrap();
    for (path, item) in [
        (
            "/__space/v0/base/notes/items/a",
            json!({"key": "a", "title": "first", "tags": ["x", 1, null]}),
        ),
        (
            "/__space/v0/base/notes/items/ttl",
            json!({"key": "ttl", "__expires": later}),
        ),
        (
            "/__space/v0/base/users/items/ada",
            json!({"key": "ada", "name": "Ada"}),
        ),
    ] {
        let reply = owner(path).await;
        assert_eq!((reply.status.as_u16(), json(&reply)), (200, item), "{path}");
    }
    assert_eq!(owner("/__space/v0/base/zz/items/ok").await.status, 404);
    let reply = owner("/__space/v0/drive/media/files").await;
    assert_eq!(
        json(&reply),
        json!({"names": ["photos/2023/a.png", "readme.txt"]})
    );
    let reply = owner("/__space/v0/drive/media/files/download?name=photos%2F2023%2Fa.png").await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.header("content-type"), Some("image/png"));
    assert_eq!(reply.body.as_deref().unwrap(), PNG);
    let reply = owner("/__space/v0/drive/media/files/download?name=readme.txt").await;
    assert_eq!(reply.header("content-type"), Some("text/plain"));
    assert_eq!(reply.text(), "hello");
    crate::cli::kill(up).await;
}
