//! Instances on `micros server` (`micros install APP --as NAME`): each its own host, data, owner
//! and keys, running the release it was installed at until `micros update`; the releases they
//! run kept past the app's own count; an app with instances not deleted from under them.

use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::Full;
use micros_guests as guests;
use serde_json::{Value, json};

use crate::server::{add_users, api, bundle, get_with, push, release_dirs, start};
use crate::support::{micro, send};

/// A new owner token of `app`, made through the API by `token`'s user.
async fn owner_token(server: &crate::server::Running, token: &str, app: &str) -> String {
    let (status, answer) = api(
        server,
        token,
        http::Method::POST,
        &format!("/apps/{app}/owner-token"),
        "",
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    answer["owner_token"].as_str().unwrap().to_string()
}

/// What `app` answers at `/` to its owner: the hello guest's text, or the echo guest's path.
async fn serves(server: &crate::server::Running, app: &str, owner: &str) -> String {
    let host = format!("{app}.localhost");
    let reply = get_with(
        server,
        &host,
        "/",
        &[("authorization", &format!("Bearer {owner}"))],
    )
    .await;
    assert_eq!(reply.status, StatusCode::OK, "{app}: {}", reply.text());
    match reply.header("x-echo-path") {
        Some(_) => "echo".into(),
        None => reply.text(),
    }
}

async fn install(
    server: &crate::server::Running,
    token: &str,
    app: &str,
    body: Value,
) -> (StatusCode, Value) {
    api(
        server,
        token,
        http::Method::POST,
        &format!("/apps/{app}/instances"),
        body.to_string(),
    )
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn instances_run_their_release_apart_until_updated() {
    let state = tempfile::tempdir().unwrap();
    let (server, operator) = start(state.path(), |config| config.keep_releases = 1).await;
    let operator = operator.unwrap();
    let tokens = add_users(&server, &operator, &["ada", "bob"]).await;
    let (ada, bob) = (tokens[0].as_str(), tokens[1].as_str());
    let hello = vec![micro("web", guests::HELLO).primary()];
    let echo = vec![micro("web", guests::ECHO).primary()];
    assert_eq!(
        push(&server, ada, "notes", bundle(&hello, "1.0").1).await.0,
        StatusCode::CREATED
    );

    // Ada installs her app again for herself; the operator installs it for Bob.
    let (status, mine) = install(&server, ada, "notes", json!({ "name": "notes-2" })).await;
    assert_eq!(status, StatusCode::CREATED, "{mine}");
    assert_eq!(
        mine,
        json!({
            "app": "notes-2", "instance_of": "notes", "release": 1, "owner": "ada",
            "host": "notes-2.localhost",
        })
    );
    let (status, bobs) = install(
        &server,
        &operator,
        "notes",
        json!({ "name": "notes-bob", "user": "bob" }),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{bobs}");
    assert_eq!(bobs["owner"], "bob");

    // Refused: another's app, for another user, a taken name, an unknown user.
    for (token, app, body, status, says) in [
        (
            bob,
            "notes",
            json!({ "name": "x" }),
            StatusCode::NOT_FOUND,
            "you have no app `notes`",
        ),
        (
            ada,
            "notes",
            json!({ "name": "x", "user": "bob" }),
            StatusCode::FORBIDDEN,
            "only the server's operator",
        ),
        (
            ada,
            "notes",
            json!({ "name": "notes-bob" }),
            StatusCode::CONFLICT,
            "is taken",
        ),
        (
            &operator,
            "notes",
            json!({ "name": "x", "user": "eve" }),
            StatusCode::NOT_FOUND,
            "no user `eve`",
        ),
        (
            ada,
            "notes",
            json!({}),
            StatusCode::BAD_REQUEST,
            "send `{\"name\": NAME}`",
        ),
    ] {
        let (got, answer) = install(&server, token, app, body.clone()).await;
        assert_eq!(got, status, "{body}: {answer}");
        assert!(answer["error"].as_str().unwrap().contains(says), "{answer}");
    }
    let (_, listed) = api(&server, bob, http::Method::GET, "/apps", "").await;
    assert_eq!(
        listed,
        json!({ "apps": [{
            "name": "notes-bob", "owner": "bob", "hosts": ["notes-bob.localhost"],
            "release": 1, "instance_of": "notes",
        }]})
    );

    // Each instance has its own owner and its own data.
    let owners = [
        owner_token(&server, ada, "notes").await,
        owner_token(&server, ada, "notes-2").await,
        owner_token(&server, bob, "notes-bob").await,
    ];
    for (app, owner) in ["notes", "notes-2", "notes-bob"].iter().zip(&owners) {
        assert_eq!(serves(&server, app, owner).await, "hello from micros\n");
    }
    let bearer = format!("Bearer {}", owners[0]);
    let elsewhere = get_with(
        &server,
        "notes-2.localhost",
        "/",
        &[("authorization", &bearer)],
    )
    .await;
    assert_eq!(
        elsewhere.status,
        StatusCode::UNAUTHORIZED,
        "an instance opened by another's owner"
    );
    let put = Request::put("/__space/v0/base/things/items")
        .header("host", "notes.localhost")
        .header("authorization", &bearer)
        .body(Full::new(Bytes::from(r#"{"items":[{"key":"a","n":1}]}"#)))
        .unwrap();
    assert_eq!(
        send(server.addr, put).await.status,
        StatusCode::MULTI_STATUS
    );
    let read = get_with(
        &server,
        "notes-2.localhost",
        "/__space/v0/base/things/items/a",
        &[("authorization", &format!("Bearer {}", owners[1]))],
    )
    .await;
    assert_eq!(read.status, StatusCode::NOT_FOUND, "{}", read.text());

    // A new release of the app: the app serves it, the instances keep theirs. An instance is
    // not pushed to.
    assert_eq!(
        push(&server, ada, "notes", bundle(&echo, "2.0").1).await.0,
        StatusCode::CREATED
    );
    assert_eq!(serves(&server, "notes", &owners[0]).await, "echo");
    assert_eq!(
        serves(&server, "notes-2", &owners[1]).await,
        "hello from micros\n"
    );
    assert_eq!(
        serves(&server, "notes-bob", &owners[2]).await,
        "hello from micros\n"
    );
    let (status, refused) = push(&server, ada, "notes-2", bundle(&echo, "2.0").1).await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert!(
        refused["error"]
            .as_str()
            .unwrap()
            .contains("an instance of `notes`"),
        "{refused}"
    );
    // One release is kept, and those the instances run besides: 2 went with the third push.
    assert_eq!(
        push(&server, ada, "notes", bundle(&echo, "3.0").1).await.0,
        StatusCode::CREATED
    );
    assert_eq!(release_dirs(state.path(), "notes"), ["1", "3"]);
    assert_eq!(release_dirs(state.path(), "notes-2"), Vec::<String>::new());
    let (_, releases) = api(
        &server,
        ada,
        http::Method::GET,
        "/apps/notes-2/releases",
        "",
    )
    .await;
    let listed: Vec<(u64, bool)> = releases["releases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r["id"].as_u64().unwrap(), r["current"].as_bool().unwrap()))
        .collect();
    assert_eq!(listed, [(3, false), (1, true)]);

    // Updating is opt-in, per instance.
    let (status, updated) = api(&server, ada, http::Method::POST, "/apps/notes-2/update", "").await;
    assert_eq!(status, StatusCode::OK, "{updated}");
    assert_eq!(
        updated,
        json!({ "app": "notes-2", "release": 3, "updated": true, "from": 1 })
    );
    assert_eq!(serves(&server, "notes-2", &owners[1]).await, "echo");
    assert_eq!(
        serves(&server, "notes-bob", &owners[2]).await,
        "hello from micros\n"
    );
    let (status, again) = api(&server, ada, http::Method::POST, "/apps/notes-2/update", "").await;
    assert_eq!(
        (status, again["updated"].clone()),
        (StatusCode::OK, json!(false))
    );
    let (status, refused) = api(&server, ada, http::Method::POST, "/apps/notes/update", "").await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert!(
        refused["error"]
            .as_str()
            .unwrap()
            .contains("not an instance"),
        "{refused}"
    );
    let (status, _) = api(
        &server,
        ada,
        http::Method::POST,
        "/apps/notes-bob/update",
        "",
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "Ada updated Bob's instance");

    // The app is not deleted from under its instances.
    let (status, refused) = api(&server, ada, http::Method::DELETE, "/apps/notes", "").await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert!(
        refused["error"]
            .as_str()
            .unwrap()
            .contains("(notes-2, notes-bob): delete them first"),
        "{refused}"
    );

    // A restart brings each back at its own release.
    server.stop().await;
    let (server, _) = start(state.path(), |config| config.keep_releases = 1).await;
    assert_eq!(serves(&server, "notes", &owners[0]).await, "echo");
    assert_eq!(serves(&server, "notes-2", &owners[1]).await, "echo");
    assert_eq!(
        serves(&server, "notes-bob", &owners[2]).await,
        "hello from micros\n"
    );

    for (token, app) in [(bob, "notes-bob"), (ada, "notes-2"), (ada, "notes")] {
        let path = format!("/apps/{app}");
        let (status, answer) = api(&server, token, http::Method::DELETE, &path, "").await;
        assert_eq!(status, StatusCode::OK, "{app}: {answer}");
    }
    assert!(!state.path().join("apps").join("notes").exists());
}
