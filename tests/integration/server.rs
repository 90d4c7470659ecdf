//! `micros server`: many apps on one listener, each at its own host, deployed through the admin
//! API with releases and rollback; tenants kept apart; bad bundles changing nothing.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::Full;
use micros::server::{Server, ServerConfig};
use micros_guests as guests;
use serde_json::{Value, json};
use tokio::sync::oneshot;

use crate::support::{MicroSpec, Reply, micro, raw, send, write_app};

/// A running server on a loopback port, stopped when dropped.
pub(crate) struct Running {
    pub(crate) addr: std::net::SocketAddr,
    /// The plain HTTP listener that redirects to HTTPS, if asked for.
    pub(crate) redirect: Option<std::net::SocketAddr>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
}

impl Running {
    /// Stops it and waits until it has.
    pub(crate) async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            task.await.unwrap().unwrap();
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// Starts a server on `state`; the operator's token if this is its first start.
pub(crate) async fn start(
    state: &Path,
    configure: impl FnOnce(&mut ServerConfig),
) -> (Running, Option<String>) {
    start_server(state, false, configure).await
}

/// Starts a server on `state` with the settings `configure` adjusts, and a plain listener that
/// redirects to HTTPS if `redirect`; the operator's token if this is its first start.
pub(crate) async fn start_server(
    state: &Path,
    redirect: bool,
    configure: impl FnOnce(&mut ServerConfig),
) -> (Running, Option<String>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let plain = if redirect {
        Some(tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap())
    } else {
        None
    };
    let redirect = plain.as_ref().map(|l| l.local_addr().unwrap());
    let mut config = ServerConfig::new(state);
    config.app.address = addr;
    configure(&mut config);
    let (server, token) = tokio::task::spawn_blocking(move || Server::open(config))
        .await
        .unwrap()
        .unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    let shutdown = async {
        let _ = stopped.await;
    };
    let task = match plain {
        Some(plain) => tokio::spawn(server.serve_with_redirect(listener, plain, shutdown)),
        None => tokio::spawn(server.serve(listener, shutdown)),
    };
    (
        Running {
            addr,
            redirect,
            stop: Some(stop),
            task: Some(task),
        },
        token,
    )
}

/// Calls the admin API with `token`: the status and the JSON answer.
pub(crate) async fn api(
    server: &Running,
    token: &str,
    method: http::Method,
    path: &str,
    body: impl Into<Bytes>,
) -> (StatusCode, Value) {
    let request = Request::builder()
        .method(method)
        .uri(format!("{}{path}", micros::server::API_PREFIX))
        .header("host", "localhost")
        .header("authorization", format!("Bearer {token}"))
        .body(Full::new(body.into()))
        .unwrap();
    let reply = send(server.addr, request).await;
    let json = serde_json::from_str(&reply.text()).unwrap_or(Value::Null);
    (reply.status, json)
}

/// Adds each of `names` as a user (the operator's call); their deploy tokens, in order.
pub(crate) async fn add_users(server: &Running, operator: &str, names: &[&str]) -> Vec<String> {
    let mut tokens = Vec::new();
    for name in names {
        let (status, added) = api(
            server,
            operator,
            http::Method::POST,
            "/users",
            json!({ "name": name }).to_string(),
        )
        .await;
        assert_eq!(status, StatusCode::CREATED, "{added}");
        tokens.push(added["token"].as_str().unwrap().to_string());
    }
    tokens
}

/// `GET path` at `host`.
pub(crate) async fn get(server: &Running, host: &str, path: &str) -> Reply {
    get_with(server, host, path, &[]).await
}

pub(crate) async fn get_with(
    server: &Running,
    host: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> Reply {
    let mut request = Request::get(path).header("host", host);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    send(server.addr, request.body(Full::new(Bytes::new())).unwrap()).await
}

/// An app folder packed as `micros push` packs it, its manifest at `version`.
pub(crate) fn bundle(micros: &[MicroSpec], version: &str) -> (tempfile::TempDir, Bytes) {
    let (dir, manifest) = write_app(micros);
    let text = std::fs::read_to_string(&manifest).unwrap();
    std::fs::write(
        &manifest,
        text.replace("version = \"1.2.3\"", &format!("version = \"{version}\"")),
    )
    .unwrap();
    let packed = micros::server::pack(&micros::Manifest::load(dir.path()).unwrap()).unwrap();
    (dir, Bytes::from(packed))
}

pub(crate) fn hello() -> Vec<MicroSpec> {
    vec![micro("web", guests::HELLO).primary().toml("public = true")]
}

pub(crate) fn echo() -> Vec<MicroSpec> {
    vec![micro("web", guests::ECHO).primary().toml("public = true")]
}

pub(crate) async fn push(
    server: &Running,
    token: &str,
    app: &str,
    bundle: Bytes,
) -> (StatusCode, Value) {
    api(
        server,
        token,
        http::Method::POST,
        &format!("/apps/{app}/releases"),
        bundle,
    )
    .await
}

/// The release folders of `app` on disk.
pub(crate) fn release_dirs(state: &Path, app: &str) -> Vec<String> {
    let mut dirs: Vec<String> = std::fs::read_dir(state.join("apps").join(app).join("releases"))
        .map(|entries| {
            entries
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    dirs.sort();
    dirs
}

#[tokio::test(flavor = "multi_thread")]
async fn push_serves_the_app_at_its_host_and_rollback_swaps_back() {
    let state = tempfile::tempdir().unwrap();
    let (server, token) = start(state.path(), |_| {}).await;
    let token = token.expect("the operator's token on the first start");
    let (status, answer) = push(&server, &token, "notes", bundle(&hello(), "1.0").1).await;
    assert_eq!(status, StatusCode::CREATED, "{answer}");
    assert_eq!(answer["release"], 1);
    assert_eq!(answer["version"], "1.0");
    assert_eq!(answer["host"], "notes.localhost");
    let served = get(&server, "notes.localhost", "/").await;
    assert_eq!(served.text(), "hello from micros\n");
    // The Micros are told their host.
    let (status, answer) = push(&server, &token, "notes", bundle(&echo(), "2.0").1).await;
    assert_eq!(status, StatusCode::CREATED, "{answer}");
    let served = get(&server, "notes.localhost", "/x").await;
    assert_eq!(served.header("x-echo-path"), Some("/x"));
    assert_eq!(served.header("x-echo-authority"), Some("notes.localhost"));
    let (_, listed) = api(
        &server,
        &token,
        http::Method::GET,
        "/apps/notes/releases",
        "",
    )
    .await;
    let ids: Vec<(u64, bool, String)> = listed["releases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["id"].as_u64().unwrap(),
                r["current"].as_bool().unwrap(),
                r["version"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(ids, [(2, true, "2.0".into()), (1, false, "1.0".into())]);
    // Back one release, then forward to a named one.
    let (status, answer) = api(
        &server,
        &token,
        http::Method::POST,
        "/apps/notes/rollback",
        "",
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer["release"], 1);
    assert_eq!(
        get(&server, "notes.localhost", "/").await.text(),
        "hello from micros\n"
    );
    let (status, _) = api(
        &server,
        &token,
        http::Method::POST,
        "/apps/notes/rollback",
        json!({"release": 2}).to_string(),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        get(&server, "notes.localhost", "/")
            .await
            .header("x-echo-path")
            .is_some()
    );
    let (status, answer) = api(
        &server,
        &token,
        http::Method::POST,
        "/apps/notes/rollback",
        json!({"release": 9}).to_string(),
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(
        answer["error"].as_str().unwrap().contains("kept: 2, 1"),
        "{answer}"
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn only_the_newest_releases_are_kept() {
    let state = tempfile::tempdir().unwrap();
    let (server, token) = start(state.path(), |config| config.keep_releases = 2).await;
    let token = token.unwrap();
    for version in ["1", "2", "3"] {
        let (status, _) = push(&server, &token, "notes", bundle(&hello(), version).1).await;
        assert_eq!(status, StatusCode::CREATED);
    }
    assert_eq!(release_dirs(state.path(), "notes"), ["2", "3"]);
    let (_, listed) = api(
        &server,
        &token,
        http::Method::GET,
        "/apps/notes/releases",
        "",
    )
    .await;
    assert_eq!(listed["releases"].as_array().unwrap().len(), 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_restart_brings_every_app_back_with_its_release_data_and_owner_token() {
    let state = tempfile::tempdir().unwrap();
    let (server, token) = start(state.path(), |_| {}).await;
    let token = token.unwrap();
    let private = vec![micro("web", guests::HELLO).primary()];
    push(&server, &token, "notes", bundle(&private, "1.0").1).await;
    push(&server, &token, "todo", bundle(&echo(), "0.1").1).await;
    let (_, rotated) = api(
        &server,
        &token,
        http::Method::POST,
        "/apps/notes/owner-token",
        "",
    )
    .await;
    let owner = rotated["owner_token"].as_str().unwrap().to_string();
    let bearer = format!("Bearer {owner}");
    // The owner's data, written through the app's own routes.
    let put = Request::put("/__space/v0/base/things/items")
        .header("host", "notes.localhost")
        .header("authorization", &bearer)
        .body(Full::new(Bytes::from(r#"{"items":[{"key":"a","n":1}]}"#)))
        .unwrap();
    assert_eq!(
        send(server.addr, put).await.status,
        StatusCode::MULTI_STATUS
    );
    server.stop().await;

    let (server, again) = start(state.path(), |_| {}).await;
    assert_eq!(
        again, None,
        "the operator's token is shown on the first start only"
    );
    let served = get_with(
        &server,
        "notes.localhost",
        "/",
        &[("authorization", &bearer)],
    )
    .await;
    assert_eq!(served.text(), "hello from micros\n");
    assert_eq!(
        get(&server, "notes.localhost", "/").await.status,
        StatusCode::UNAUTHORIZED
    );
    let item = get_with(
        &server,
        "notes.localhost",
        "/__space/v0/base/things/items/a",
        &[("authorization", &bearer)],
    )
    .await;
    assert_eq!(item.status, StatusCode::OK, "{}", item.text());
    assert!(item.text().contains("\"n\":1"), "{}", item.text());
    assert!(
        get(&server, "todo.localhost", "/")
            .await
            .header("x-echo-path")
            .is_some()
    );
    let (status, whoami) = api(&server, &token, http::Method::GET, "/whoami", "").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(whoami, json!({"user": "operator", "operator": true}));
}

#[tokio::test(flavor = "multi_thread")]
async fn no_user_can_touch_another_users_app() {
    let state = tempfile::tempdir().unwrap();
    let (server, operator) = start(state.path(), |_| {}).await;
    let operator = operator.unwrap();
    let tokens = add_users(&server, &operator, &["ada", "bob"]).await;
    let (ada, bob) = (&tokens[0], &tokens[1]);
    let private = vec![micro("web", guests::HELLO).primary()];
    assert_eq!(
        push(&server, ada, "notes", bundle(&private, "1").1).await.0,
        StatusCode::CREATED
    );
    // Bob can neither push to Ada's app nor see, roll back, name, open or delete it.
    let (status, refused) = push(&server, bob, "notes", bundle(&echo(), "2").1).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(
        refused["error"]
            .as_str()
            .unwrap()
            .contains("taken by another user")
    );
    for (method, path, body) in [
        (http::Method::GET, "/apps/notes/releases", ""),
        (http::Method::POST, "/apps/notes/rollback", ""),
        (http::Method::DELETE, "/apps/notes", ""),
        (
            http::Method::POST,
            "/apps/notes/domains",
            r#"{"host":"notes.example.org"}"#,
        ),
        (http::Method::POST, "/apps/notes/owner-token", ""),
    ] {
        let (status, answer) = api(&server, bob, method.clone(), path, body).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{method} {path}: {answer}");
        assert!(
            answer["error"]
                .as_str()
                .unwrap()
                .contains("you have no app `notes`")
        );
    }
    let (_, bobs) = api(&server, bob, http::Method::GET, "/apps", "").await;
    assert_eq!(bobs, json!({"apps": []}));
    let (_, all) = api(&server, &operator, http::Method::GET, "/apps", "").await;
    assert_eq!(all["apps"][0]["owner"], "ada");
    // Only the operator adds users; a wrong or missing token is 401, as JSON that says why.
    let (status, _) = api(
        &server,
        bob,
        http::Method::POST,
        "/users",
        r#"{"name":"eve"}"#,
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, answer) = api(&server, "nope", http::Method::GET, "/apps", "").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(
        answer["error"].as_str().unwrap().contains("not known"),
        "{answer}"
    );
    // Still Ada's, serving her release.
    let (status, _) = api(&server, ada, http::Method::GET, "/apps/notes/releases", "").await;
    assert_eq!(status, StatusCode::OK);
    // Ada's app's owner token opens her app, and nothing of Bob's, even as a cookie sent to
    // the parent domain.
    let (_, rotated) = api(
        &server,
        ada,
        http::Method::POST,
        "/apps/notes/owner-token",
        "",
    )
    .await;
    let ada_owner = rotated["owner_token"].as_str().unwrap().to_string();
    assert_eq!(
        push(&server, bob, "todo", bundle(&private, "1").1).await.0,
        StatusCode::CREATED
    );
    let cookie = format!("micros_owner={ada_owner}");
    let bearer = format!("Bearer {ada_owner}");
    for headers in [
        [("authorization", bearer.as_str())],
        [("cookie", cookie.as_str())],
    ] {
        assert_eq!(
            get_with(&server, "notes.localhost", "/", &headers)
                .await
                .status,
            StatusCode::OK
        );
        assert_eq!(
            get_with(&server, "todo.localhost", "/", &headers)
                .await
                .status,
            StatusCode::UNAUTHORIZED
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn hosts_are_matched_normalised_and_tricks_are_refused() {
    let state = tempfile::tempdir().unwrap();
    let (server, token) = start(state.path(), |_| {}).await;
    let token = token.unwrap();
    push(&server, &token, "notes", bundle(&hello(), "1").1).await;
    for host in [
        "notes.localhost",
        "NOTES.LocalHost",
        "notes.localhost.",
        "notes.localhost:8080",
    ] {
        assert_eq!(
            get(&server, host, "/").await.text(),
            "hello from micros\n",
            "{host}"
        );
    }
    let none = get(&server, "todo.localhost", "/").await;
    assert_eq!(none.status, StatusCode::NOT_FOUND);
    assert!(
        none.text().contains("no app is served at `todo.localhost`"),
        "{}",
        none.text()
    );
    let elsewhere = get(&server, "notes.example.com", "/").await;
    assert_eq!(elsewhere.status, StatusCode::NOT_FOUND);
    // The server's own host is the API's, not an app's.
    assert_eq!(
        get(&server, "localhost", "/").await.status,
        StatusCode::NOT_FOUND
    );
    // An absolute-form target is the host; one that disagrees with Host is refused.
    let agreed = raw(
        server.addr,
        b"GET http://notes.localhost/ HTTP/1.1\r\nhost: notes.localhost\r\nconnection: close\r\n\r\n",
        Duration::from_secs(10),
    )
    .await;
    assert!(agreed.starts_with("HTTP/1.1 200"), "{agreed}");
    let disagreed = raw(
        server.addr,
        b"GET http://todo.localhost/ HTTP/1.1\r\nhost: notes.localhost\r\nconnection: close\r\n\r\n",
        Duration::from_secs(10),
    )
    .await;
    assert!(disagreed.starts_with("HTTP/1.1 400"), "{disagreed}");
    assert!(disagreed.contains("send one host"), "{disagreed}");
    // A custom domain serves the same app.
    let (status, answer) = api(
        &server,
        &token,
        http::Method::POST,
        "/apps/notes/domains",
        r#"{"host":"Notes.Example.org."}"#,
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{answer}");
    assert_eq!(
        get(&server, "notes.example.org", "/").await.text(),
        "hello from micros\n"
    );
    let (status, _) = api(
        &server,
        &token,
        http::Method::POST,
        "/apps/notes/domains",
        r#"{"host":"x.localhost"}"#,
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_bundles_and_failing_checks_change_nothing() {
    let state = tempfile::tempdir().unwrap();
    let (server, token) = start(state.path(), |_| {}).await;
    let token = token.unwrap();
    push(&server, &token, "notes", bundle(&hello(), "1").1).await;
    // Not a bundle at all.
    let (status, answer) = push(&server, &token, "notes", Bytes::from_static(b"hello")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        answer["error"].as_str().unwrap().contains("gzip"),
        "{answer}"
    );
    // A manifest that does not load: the same words `micros check` would say.
    let (dir, _) = write_app(&hello());
    std::fs::write(
        dir.path().join("Spacefile.toml"),
        "v = 1\n[[micros]]\nname = \"Web\"\n",
    )
    .unwrap();
    let broken = tar_gz(dir.path());
    let (status, answer) = push(&server, &token, "notes", broken).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let error = answer["error"].as_str().unwrap();
    assert!(error.starts_with("Spacefile.toml"), "{error}");
    assert!(!error.contains(state.path().to_str().unwrap()), "{error}");
    // A component that is not WebAssembly: refused at compile, before the swap.
    let (dir, _) = write_app(&hello());
    std::fs::write(dir.path().join("web/micro.wasm"), b"not wasm").unwrap();
    let packed = micros::server::pack(&micros::Manifest::load(dir.path()).unwrap()).unwrap();
    let (status, answer) = push(&server, &token, "notes", Bytes::from(packed)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{answer}");
    assert!(
        answer["error"].as_str().unwrap().contains("web"),
        "{answer}"
    );
    // Still release 1, nothing left on disk of the others.
    assert_eq!(
        get(&server, "notes.localhost", "/").await.text(),
        "hello from micros\n"
    );
    let (_, listed) = api(
        &server,
        &token,
        http::Method::GET,
        "/apps/notes/releases",
        "",
    )
    .await;
    assert_eq!(listed["releases"].as_array().unwrap().len(), 1);
    assert_eq!(release_dirs(state.path(), "notes"), ["1"]);
    // A first push that fails leaves no app behind.
    let (status, _) = push(&server, &token, "ghost", Bytes::from_static(b"nope")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (_, apps) = api(&server, &token, http::Method::GET, "/apps", "").await;
    assert_eq!(apps["apps"].as_array().unwrap().len(), 1, "{apps}");
    assert!(!state.path().join("apps/ghost").exists());
}

/// A folder as a gzip'd tar, as a hand-made bundle.
fn tar_gz(dir: &Path) -> Bytes {
    let mut builder = tar::Builder::new(flate2::write::GzEncoder::new(
        Vec::new(),
        flate2::Compression::fast(),
    ));
    builder.append_dir_all(".", dir).unwrap();
    Bytes::from(builder.into_inner().unwrap().finish().unwrap())
}

#[tokio::test(flavor = "multi_thread")]
async fn one_flooded_app_leaves_the_others_answered() {
    let state = tempfile::tempdir().unwrap();
    let (server, token) = start(state.path(), |config| config.app_max_in_flight = 4).await;
    let token = token.unwrap();
    let slow = vec![
        micro("web", guests::SLEEPER)
            .primary()
            .toml("public = true"),
    ];
    push(&server, &token, "slow", bundle(&slow, "1").1).await;
    push(&server, &token, "quick", bundle(&hello(), "1").1).await;
    let server = std::sync::Arc::new(server);
    // Twelve hung requests on `slow`: four run, the rest are refused at once.
    let flood: Vec<_> = (0..12)
        .map(|_| {
            let server = server.clone();
            tokio::spawn(async move { get(&server, "slow.localhost", "/?ms=3000").await.status })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(500)).await;
    // Meanwhile `quick` answers at once.
    for _ in 0..20 {
        let started = Instant::now();
        let reply = get(&server, "quick.localhost", "/").await;
        assert_eq!(reply.text(), "hello from micros\n");
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "answered in {:?}",
            started.elapsed()
        );
    }
    let mut statuses = Vec::new();
    for request in flood {
        statuses.push(request.await.unwrap().as_u16());
    }
    statuses.sort();
    assert_eq!(
        statuses,
        [200, 200, 200, 200, 503, 503, 503, 503, 503, 503, 503, 503]
    );
}

/// The commands as a user runs them: `micros server`, `login`, `push`, `releases`, `apps`.
#[tokio::test(flavor = "multi_thread")]
async fn the_cli_logs_in_pushes_and_lists() {
    use tokio::io::AsyncBufReadExt as _;
    const MICROS: &str = env!("CARGO_BIN_EXE_micros");
    let state = tempfile::tempdir().unwrap();
    let home = tempfile::tempdir().unwrap();
    let logins: PathBuf = home.path().join("servers.toml");
    let mut child = tokio::process::Command::new(MICROS)
        .args(["server", "--listen", "127.0.0.1:0", "--state-dir"])
        .arg(state.path())
        .stdin(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = tokio::io::BufReader::new(child.stderr.take().unwrap()).lines();
    let mut addr = None;
    let mut token = None;
    while token.is_none() {
        let line = tokio::time::timeout(Duration::from_secs(60), lines.next_line())
            .await
            .unwrap()
            .unwrap()
            .expect("stderr until the token");
        if let Some(rest) = line.strip_prefix("micros server listening on http://") {
            addr = Some(rest.to_string());
        }
        if line.starts_with("    ") && !line.trim().is_empty() && addr.is_some() {
            token = Some(line.trim().to_string());
        }
    }
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    let url = format!("http://{}", addr.unwrap());
    let run = |args: Vec<String>| {
        let logins = logins.clone();
        async move {
            let output = tokio::process::Command::new(MICROS)
                .args(&args)
                .env("MICROS_CONFIG", &logins)
                .output()
                .await
                .unwrap();
            (
                output.status.success(),
                String::from_utf8_lossy(&output.stdout).into_owned(),
                String::from_utf8_lossy(&output.stderr).into_owned(),
            )
        }
    };
    let (ok, _, err) = run(vec![
        "login".into(),
        url.clone(),
        "--token".into(),
        "wrong".into(),
    ])
    .await;
    assert!(!ok && err.contains("refused the token"), "{err}");
    let (ok, _, err) = run(vec![
        "login".into(),
        url.clone(),
        "--token".into(),
        token.unwrap(),
    ])
    .await;
    assert!(ok, "{err}");
    assert!(err.contains("logged in"), "{err}");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(&logins).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    let (app, _) = write_app(&hello());
    let path = app.path().to_str().unwrap().to_string();
    let (ok, _, err) = run(vec![
        "push".into(),
        path.clone(),
        "--app".into(),
        "notes".into(),
    ])
    .await;
    assert!(ok, "{err}");
    let port = url.rsplit(':').next().unwrap();
    assert!(
        err.contains(&format!(
            "release 1 of `notes` (version 1.2.3) is serving at http://notes.localhost:{port}\n"
        )),
        "{err}"
    );
    let phases: Vec<&str> = err.lines().filter_map(|l| l.split(' ').next()).collect();
    assert_eq!(
        phases,
        ["building...", "packing...", "uploading", "the", "release"],
        "{err}"
    );
    let served = raw(
        url.trim_start_matches("http://").parse().unwrap(),
        format!("GET / HTTP/1.1\r\nhost: notes.localhost:{port}\r\nconnection: close\r\n\r\n")
            .as_bytes(),
        Duration::from_secs(10),
    )
    .await;
    assert!(served.contains("\r\nhello from micros\n"), "{served}");
    // The app's log: its access lines, kept, and streamed to a follower as they come.
    let (ok, out, err) = run(vec!["logs".into(), "notes".into()]).await;
    assert!(ok, "{err}");
    assert!(
        out.lines().any(|l| l.contains("INFO access")
            && l.contains("status=200")
            && l.contains("micro=web")),
        "{out}"
    );
    let mut follower = tokio::process::Command::new(MICROS)
        .args(["logs", "notes", "--follow"])
        .env("MICROS_CONFIG", &logins)
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut followed = tokio::io::BufReader::new(follower.stdout.take().unwrap()).lines();
    let seen = async {
        loop {
            // Sent until the follower sees it: it may subscribe after the first one.
            raw(
                url.trim_start_matches("http://").parse().unwrap(),
                format!("GET /followed HTTP/1.1\r\nhost: notes.localhost:{port}\r\nconnection: close\r\n\r\n").as_bytes(),
                Duration::from_secs(10),
            )
            .await;
            while let Ok(Ok(Some(line))) =
                tokio::time::timeout(Duration::from_millis(500), followed.next_line()).await
            {
                if line.contains("path=/followed") {
                    return line;
                }
            }
        }
    };
    let line = tokio::time::timeout(Duration::from_secs(30), seen)
        .await
        .unwrap();
    assert!(line.contains("status=200"), "{line}");
    follower.kill().await.unwrap();
    let (ok, out, err) = run(vec!["releases".into(), "notes".into()]).await;
    assert!(ok, "{err}");
    assert!(out.starts_with("1 (current)  version 1.2.3"), "{out}");
    let (ok, _, err) = run(vec![
        "install".into(),
        "notes".into(),
        "--as".into(),
        "notes-2".into(),
    ])
    .await;
    assert!(ok, "{err}");
    assert!(
        err.contains(&format!(
            "installed `notes-2` (release 1 of `notes`, owner operator) at http://notes-2.localhost:{port}\n"
        )),
        "{err}"
    );
    let (ok, _, err) = run(vec!["update".into(), "notes-2".into()]).await;
    assert!(ok && err.contains("already serves release 1"), "{err}");
    let (ok, out, _) = run(vec!["apps".into()]).await;
    assert!(
        ok && out.starts_with("notes  release 1  notes.localhost")
            && out.contains("\nnotes-2  release 1 of notes  notes-2.localhost"),
        "{out}"
    );
    let (ok, _, err) = run(vec![
        "apps".into(),
        "delete".into(),
        "notes-2".into(),
        "--yes".into(),
    ])
    .await;
    assert!(ok, "{err}");
    let (ok, _, err) = run(vec!["apps".into(), "delete".into(), "notes".into()]).await;
    assert!(!ok && err.contains("--yes"), "{err}");
    let (ok, _, err) = run(vec![
        "apps".into(),
        "delete".into(),
        "notes".into(),
        "--yes".into(),
    ])
    .await;
    assert!(ok, "{err}");
    assert!(!state.path().join("apps/notes").exists());
}

#[tokio::test(flavor = "multi_thread")]
async fn preset_values_keys_and_actions_through_the_api() {
    let state = tempfile::tempdir().unwrap();
    let (server, token) = start(state.path(), |_| {}).await;
    let token = token.unwrap();
    let app = vec![
        micro("web", guests::ENV).primary().toml(
            "public = true\n[[micros.presets.env]]\nname = \"GREETING\"\ndefault = \"hello\"",
        ),
        micro("api", guests::RECORDER).path("/api").toml(
            "[micros.presets]\napi_keys = true\n[[micros.actions]]\nid = \"tidy\"\nname = \"Tidy\"\ntrigger = \"schedule\"\ndefault_interval = \"1 hour\"",
        ),
    ];
    assert_eq!(
        push(&server, &token, "notes", bundle(&app, "1").1).await.0,
        StatusCode::CREATED
    );
    let before = get(&server, "notes.localhost", "/").await.text();
    assert!(before.contains("GREETING=hello\n"), "{before}");
    assert!(
        before.contains("DETA_SPACE_APP_HOSTNAME=notes.localhost\n"),
        "{before}"
    );
    // A preset value, in effect from the next execution, and kept for later releases.
    let (status, answer) = api(
        &server,
        &token,
        http::Method::POST,
        "/apps/notes/env",
        r#"{"set":"web.GREETING=bonjour"}"#,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert!(
        get(&server, "notes.localhost", "/")
            .await
            .text()
            .contains("GREETING=bonjour\n")
    );
    push(&server, &token, "notes", bundle(&app, "2").1).await;
    assert!(
        get(&server, "notes.localhost", "/")
            .await
            .text()
            .contains("GREETING=bonjour\n")
    );
    let (status, answer) = api(
        &server,
        &token,
        http::Method::POST,
        "/apps/notes/env",
        r#"{"set":"NOPE=1"}"#,
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        answer["error"]
            .as_str()
            .unwrap()
            .contains("declares a preset `NOPE`"),
        "{answer}"
    );
    let (_, listed) = api(&server, &token, http::Method::GET, "/apps/notes/env", "").await;
    assert_eq!(
        listed,
        json!({"env": [{"micro": "web", "name": "GREETING", "value": "bonjour"}]})
    );
    // An app key opens the API Micro; revoked, it no longer does.
    let (status, created) = api(
        &server,
        &token,
        http::Method::POST,
        "/apps/notes/keys",
        r#"{"name":"ci"}"#,
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let key = created["key"].as_str().unwrap().to_string();
    let opened = get_with(
        &server,
        "notes.localhost",
        "/api/x",
        &[("x-space-app-key", &key)],
    )
    .await;
    assert_eq!(opened.status, StatusCode::OK);
    let (status, _) = api(
        &server,
        &token,
        http::Method::DELETE,
        "/apps/notes/keys/ci",
        "",
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let closed = get_with(
        &server,
        "notes.localhost",
        "/api/x",
        &[("x-space-app-key", &key)],
    )
    .await;
    assert_eq!(closed.status, StatusCode::UNAUTHORIZED);
    // Actions: listed with their next run, and run now.
    let (_, actions) = api(
        &server,
        &token,
        http::Method::GET,
        "/apps/notes/actions",
        "",
    )
    .await;
    assert_eq!(actions["actions"][0]["id"], "tidy");
    assert_eq!(actions["actions"][0]["schedule"], "1 hour");
    assert!(actions["actions"][0]["next_run"].is_string(), "{actions}");
    assert_eq!(actions["actions"][0]["last_run"], Value::Null, "{actions}");
    let (status, ran) = api(
        &server,
        &token,
        http::Method::POST,
        "/apps/notes/actions/tidy",
        "",
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{ran}");
    assert_eq!(ran["status"], 200);
    assert!(
        ran["body"]
            .as_str()
            .unwrap()
            .contains("/__space/v0/actions"),
        "{ran}"
    );
    let (status, _) = api(
        &server,
        &token,
        http::Method::POST,
        "/apps/notes/actions/nope",
        "",
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    // The last run is listed, and kept when a new release is swapped in.
    for release in ["1", "2"] {
        if release == "2" {
            assert_eq!(
                push(&server, &token, "notes", bundle(&app, "2").1).await.0,
                StatusCode::CREATED
            );
        }
        let (_, actions) = api(
            &server,
            &token,
            http::Method::GET,
            "/apps/notes/actions",
            "",
        )
        .await;
        let last = &actions["actions"][0]["last_run"];
        assert_eq!(
            (&last["status"], &last["outcome"], &last["failure"]),
            (&json!(200), &json!("ok"), &Value::Null),
            "release {release}: {actions}"
        );
        assert!(last["at"].as_str().unwrap().starts_with("20"), "{last}");
    }
}
