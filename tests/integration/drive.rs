//! App data: Deta Drive answered by the runtime, from a real guest that talks to
//! `drive.deta.sh` as Deta's SDKs did, and from the owner over `/__space/v0/drive/`.

use bytes::Bytes;
use http_body_util::Full;
use micros::AuthMode;
use serde_json::{Value, json};

use crate::data::app;
use crate::support::{Reply, Server, send, serve, serve_config};

/// Sends `method /drive/{path}` with `body` through the guest to Drive.
async fn drive(
    server: &Server,
    method: &str,
    path: &str,
    body: impl Into<Bytes>,
    content_type: &str,
) -> Reply {
    send(
        server.addr,
        http::Request::builder()
            .method(method)
            .uri(format!("/drive{path}"))
            .header("content-type", content_type)
            .body(Full::new(body.into()))
            .unwrap(),
    )
    .await
}

/// The served app's project id.
fn project_id(server: &Server) -> String {
    let state = micros::state::StateDir::open(server.dir.path().join(".micros")).unwrap();
    state.keys(&["web"]).unwrap().project_id
}

fn json(reply: &Reply) -> Value {
    serde_json::from_str(&reply.text()).unwrap_or_else(|_| panic!("not JSON: {reply:?}"))
}

#[tokio::test]
async fn drive_upload_download_list_delete_from_a_guest() {
    let server = serve(&app()).await;
    let reply = drive(
        &server,
        "POST",
        "/files/files?name=notes/a.txt",
        "hello",
        "text/plain",
    )
    .await;
    assert_eq!(reply.status, 201, "{reply:?}");
    assert_eq!(
        json(&reply),
        json!({"name": "notes/a.txt", "project_id": project_id(&server), "drive_name": "files"})
    );
    let reply = drive(
        &server,
        "GET",
        "/files/files/download?name=notes/a.txt",
        "",
        "",
    )
    .await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.header("content-type"), Some("text/plain"));
    assert_eq!(reply.text(), "hello");
    // Binary data comes back byte for byte.
    let bytes: Vec<u8> = (0..=255).collect();
    let reply = drive(
        &server,
        "POST",
        "/files/files?name=bin",
        bytes.clone(),
        "application/octet-stream",
    )
    .await;
    assert_eq!(reply.status, 201);
    let reply = drive(&server, "GET", "/files/files/download?name=bin", "", "").await;
    assert_eq!(reply.body.as_deref().unwrap(), bytes.as_slice());
    for name in ["notes/b.txt", "notes/c.txt", "other.txt"] {
        drive(
            &server,
            "POST",
            &format!("/files/files?name={name}"),
            name.to_string(),
            "text/plain",
        )
        .await;
    }
    let reply = drive(&server, "GET", "/files/files", "", "").await;
    assert_eq!(
        json(&reply),
        json!({"names": ["bin", "notes/a.txt", "notes/b.txt", "notes/c.txt", "other.txt"]})
    );
    let reply = drive(&server, "GET", "/files/files?prefix=notes/&limit=2", "", "").await;
    assert_eq!(
        json(&reply),
        json!({"paging": {"size": 2, "last": "notes/b.txt"}, "names": ["notes/a.txt", "notes/b.txt"]})
    );
    let reply = drive(
        &server,
        "GET",
        "/files/files?prefix=notes/&limit=2&last=notes/b.txt",
        "",
        "",
    )
    .await;
    assert_eq!(json(&reply), json!({"names": ["notes/c.txt"]}));
    let reply = drive(
        &server,
        "DELETE",
        "/files/files",
        json!({"names": ["notes/a.txt", "missing", " "]}).to_string(),
        "application/json",
    )
    .await;
    assert_eq!(
        json(&reply),
        json!({"deleted": ["notes/a.txt", "missing"], "failed": {" ": "invalid name"}})
    );
    let reply = drive(
        &server,
        "GET",
        "/files/files/download?name=notes/a.txt",
        "",
        "",
    )
    .await;
    assert_eq!(reply.status, 404);
    assert_eq!(
        json(&reply),
        json!({"errors": ["no file called `notes/a.txt`"]})
    );
    // Drives are separate.
    let reply = drive(&server, "GET", "/other/files/download?name=bin", "", "").await;
    assert_eq!(reply.status, 404);
}

#[tokio::test]
async fn drive_chunked_upload_finish_and_abort() {
    let server = serve(&app()).await;
    let reply = drive(
        &server,
        "POST",
        "/big/uploads?name=movie.bin",
        "",
        "video/mp4",
    )
    .await;
    assert_eq!(reply.status, 202, "{reply:?}");
    let started = json(&reply);
    let id = started["upload_id"].as_str().unwrap().to_string();
    assert_eq!(
        started,
        json!({"name": "movie.bin", "project_id": project_id(&server), "drive_name": "big", "upload_id": id})
    );
    // Parts may arrive in any order; they are joined by number.
    for (part, data) in [(2, "second-"), (1, "first-"), (3, "third")] {
        let reply = drive(
            &server,
            "POST",
            &format!("/big/uploads/{id}/parts?name=movie.bin&part={part}"),
            data,
            "application/octet-stream",
        )
        .await;
        assert_eq!(reply.status, 200, "{reply:?}");
        assert_eq!(json(&reply)["part"], json!(part));
    }
    // Not there until finished.
    assert_eq!(
        drive(&server, "GET", "/big/files/download?name=movie.bin", "", "")
            .await
            .status,
        404
    );
    let reply = drive(
        &server,
        "PATCH",
        &format!("/big/uploads/{id}?name=movie.bin"),
        "",
        "",
    )
    .await;
    assert_eq!(reply.status, 200, "{reply:?}");
    let reply = drive(&server, "GET", "/big/files/download?name=movie.bin", "", "").await;
    assert_eq!(reply.text(), "first-second-third");
    assert_eq!(reply.header("content-type"), Some("video/mp4"));
    // A finished upload is gone.
    let reply = drive(
        &server,
        "PATCH",
        &format!("/big/uploads/{id}?name=movie.bin"),
        "",
        "",
    )
    .await;
    assert_eq!(reply.status, 404);
    assert_eq!(
        json(&reply),
        json!({"errors": [format!("no upload `{id}` of `movie.bin`")]})
    );
    // An aborted upload leaves nothing.
    let id = json(&drive(&server, "POST", "/big/uploads?name=gone.bin", "", "").await)["upload_id"]
        .as_str()
        .unwrap()
        .to_string();
    drive(
        &server,
        "POST",
        &format!("/big/uploads/{id}/parts?name=gone.bin&part=1"),
        "x",
        "",
    )
    .await;
    assert_eq!(
        drive(
            &server,
            "DELETE",
            &format!("/big/uploads/{id}?name=gone.bin"),
            "",
            ""
        )
        .await
        .status,
        200
    );
    assert_eq!(
        drive(
            &server,
            "PATCH",
            &format!("/big/uploads/{id}?name=gone.bin"),
            "",
            ""
        )
        .await
        .status,
        404
    );
    assert_eq!(
        drive(&server, "GET", "/big/files/download?name=gone.bin", "", "")
            .await
            .status,
        404
    );
    // A part for another name of the same upload is refused.
    let id = json(&drive(&server, "POST", "/big/uploads?name=one", "", "").await)["upload_id"]
        .as_str()
        .unwrap()
        .to_string();
    let reply = drive(
        &server,
        "POST",
        &format!("/big/uploads/{id}/parts?name=two&part=1"),
        "x",
        "",
    )
    .await;
    assert_eq!(reply.status, 404);
    let reply = drive(
        &server,
        "PATCH",
        &format!("/big/uploads/{id}?name=one"),
        "",
        "",
    )
    .await;
    assert_eq!(reply.status, 200);
    // An upload of no parts is an empty file (what a client uploading nothing sends).
    let reply = drive(&server, "GET", "/big/files/download?name=one", "", "").await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.text(), "");
}

#[tokio::test]
async fn drive_limits_obeyed_and_violated() {
    let server = serve_config(&app(), |config| config.auth = AuthMode::Required).await;
    let state = micros::state::StateDir::open(server.dir.path().join(".micros")).unwrap();
    let token = micros::Credentials::open(&state)
        .ensure_owner_token()
        .unwrap()
        .unwrap();
    // Large bodies go through the owner's route: a guest's own response is capped at 5.5 MiB.
    let owner = |method: &str, path: &str, body: Bytes| {
        send(
            server.addr,
            http::Request::builder()
                .method(method)
                .uri(format!("/__space/v0/drive{path}"))
                .header("authorization", format!("Bearer {token}"))
                .body(Full::new(body))
                .unwrap(),
        )
    };
    let limit = micros::data::MAX_CHUNK_BYTES;
    let reply = owner("POST", "/d/files?name=max", Bytes::from(vec![7u8; limit])).await;
    assert_eq!(
        reply.status,
        201,
        "{:?}",
        reply.body.as_ref().map(|b| b.len())
    );
    let reply = owner("GET", "/d/files/download?name=max", Bytes::new()).await;
    assert_eq!(reply.body.as_ref().unwrap().len(), limit);
    let reply = owner(
        "POST",
        "/d/files?name=over",
        Bytes::from(vec![7u8; limit + 1]),
    )
    .await;
    assert_eq!(reply.status, 413);
    assert_eq!(
        json(&reply),
        json!({"errors": [format!("the request body is past the limit of {limit} bytes")]})
    );
    for (path, error) in [
        ("/d/files", "the file's `name` is missing (`?name=...`)"),
        ("/d/files?name=", "the file's `name` is empty"),
        (
            "/d/files?name=folder/",
            "`folder/` ends with `/`: a file's name cannot be a folder",
        ),
    ] {
        let reply = owner("POST", path, Bytes::from_static(b"x")).await;
        assert_eq!(
            (reply.status.as_u16(), json(&reply)),
            (400, json!({"errors": [error]})),
            "{path}"
        );
    }
    let reply = owner("GET", "/d/files?limit=1001", Bytes::new()).await;
    assert_eq!(
        json(&reply),
        json!({"errors": ["`limit` must be from 1 to 1000"]})
    );
    let names: Vec<String> = (0..=micros::data::MAX_NAMES)
        .map(|i| i.to_string())
        .collect();
    let reply = owner(
        "DELETE",
        "/d/files",
        Bytes::from(json!({"names": names}).to_string()),
    )
    .await;
    assert_eq!(
        json(&reply),
        json!({"errors": ["1001 names in one delete: at most 1000"]})
    );
    // Without the owner's token: 401.
    let reply = send(
        server.addr,
        http::Request::get("/__space/v0/drive/d/files")
            .body(Full::new(Bytes::new()))
            .unwrap(),
    )
    .await;
    assert_eq!(reply.status, 401);
}

#[tokio::test]
async fn drive_refuses_a_wrong_key() {
    let server = serve(&app()).await;
    let reply = drive(&server, "GET", "/files/files?key=abc_wrong", "", "").await;
    assert_eq!(reply.status, 401);
    assert_eq!(json(&reply), json!({"errors": ["Unauthorized"]}));
}
