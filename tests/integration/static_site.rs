//! Static Micros (`engine = "static"`): files served from a folder with their types, the folder's
//! `index.html`, a 404 page, ETag and 304, ranges (206, 416), gzip, HEAD, 405; private by
//! default like any Micro; and no path, however spelled, that reaches a file outside the folder
//! or a hidden one.

use std::io::Read as _;
use std::time::Duration;

use bytes::Bytes;
use http::Request;
use http_body_util::Full;
use micros::{AuthMode, Credentials};
use micros_guests as guests;

use crate::support::{MicroSpec, Reply, Server, micro, raw, send, serve_config, static_micro};

/// The page at `/`: long enough to be worth compressing.
fn page() -> String {
    format!(
        "<!doctype html><title>front</title>{}",
        "<p>hello, static</p>".repeat(200)
    )
}

/// A file over the size held in memory: read from disk for each request.
fn big() -> Vec<u8> {
    (0..(micros::site::MAX_CACHED_FILE as usize + 300_000))
        .map(|i| (i % 251) as u8)
        .collect()
}

/// The front end: a static primary Micro serving `dist`, beside a component Micro at `/api`.
fn front(public: bool) -> Vec<MicroSpec> {
    let mut web = static_micro("web", Some("dist"))
        .primary()
        .file("dist/index.html", page().as_bytes())
        .file("dist/css/site.css", b"body { color: teal }")
        .file("dist/docs/index.html", b"<p>docs</p>")
        .file("dist/404.html", b"<p>not here</p>")
        .file("dist/big.bin", &big())
        .file("dist/.env", b"SECRET=1")
        .file("notes.txt", b"outside the served folder")
        .link("dist/link.txt", "web/notes.txt")
        .link("dist/up", "web");
    if public {
        web = web.toml("public = true");
    }
    vec![
        web,
        micro("api", guests::HELLO)
            .path("/api")
            .toml("public = true"),
    ]
}

async fn serve_front(public: bool) -> Server {
    serve_config(&front(public), |config| config.auth = AuthMode::Required).await
}

async fn get(server: &Server, path: &str, headers: &[(&str, &str)]) -> Reply {
    request(server, "GET", path, headers).await
}

async fn request(server: &Server, method: &str, path: &str, headers: &[(&str, &str)]) -> Reply {
    let mut request = Request::builder().method(method).uri(path);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    send(server.addr, request.body(Full::new(Bytes::new())).unwrap()).await
}

#[tokio::test(flavor = "multi_thread")]
async fn a_static_micro_is_private_by_default() {
    let server = serve_front(false).await;
    let state = micros::state::StateDir::open(server.dir.path().join(".micros")).unwrap();
    let token = Credentials::open(&state)
        .ensure_owner_token()
        .unwrap()
        .unwrap();
    let refused = get(&server, "/", &[]).await;
    assert_eq!(refused.status, 401);
    assert!(!refused.text().contains("hello, static"));
    let bearer = format!("Bearer {token}");
    let page = get(&server, "/", &[("authorization", &bearer)]).await;
    assert_eq!(page.status, 200);
    assert_eq!(page.text(), self::page());
}

#[tokio::test(flavor = "multi_thread")]
async fn files_are_served_with_their_types_index_and_404_page() {
    let server = serve_front(true).await;
    let home = get(&server, "/", &[]).await;
    assert_eq!(home.status, 200);
    assert_eq!(
        home.header("content-type"),
        Some("text/html; charset=utf-8")
    );
    assert_eq!(home.header("cache-control"), Some("no-cache"));
    assert_eq!(home.header("accept-ranges"), Some("bytes"));
    assert_eq!(home.header("content-encoding"), None);
    assert_eq!(home.text(), page());
    let etag = home.header("etag").unwrap();
    assert!(etag.starts_with('"') && etag.len() == 34, "{etag}");
    assert_eq!(get(&server, "/index.html", &[]).await.text(), page());
    let css = get(&server, "/css/site.css", &[]).await;
    assert_eq!(css.header("content-type"), Some("text/css; charset=utf-8"));
    assert_eq!(css.text(), "body { color: teal }");
    // A folder without its `/` is sent to it, the query kept; with it, its page.
    let folder = get(&server, "/docs?x=1", &[]).await;
    assert_eq!(folder.status, 308);
    assert_eq!(folder.header("location"), Some("/docs/?x=1"));
    assert_eq!(get(&server, "/docs/", &[]).await.text(), "<p>docs</p>");
    let missing = get(&server, "/nope.js", &[]).await;
    assert_eq!(missing.status, 404);
    assert_eq!(
        missing.header("content-type"),
        Some("text/html; charset=utf-8")
    );
    assert_eq!(missing.text(), "<p>not here</p>");
    // The other Micro is routed to as before.
    assert_eq!(
        get(&server, "/api", &[]).await.text(),
        "hello from micros\n"
    );
    // HEAD: the head of GET, no body; other methods: 405.
    let head = request(&server, "HEAD", "/", &[]).await;
    assert_eq!(head.status, 200);
    assert_eq!(
        head.header("content-length"),
        Some(page().len().to_string().as_str())
    );
    assert_eq!(head.body.as_deref(), Ok(&b""[..]));
    let post = request(&server, "POST", "/", &[]).await;
    assert_eq!(post.status, 405);
    assert_eq!(post.header("allow"), Some("GET, HEAD"));
    assert_eq!(
        post.text(),
        "micro `web`: a static Micro answers GET and HEAD only\n"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn etag_304_ranges_and_gzip() {
    let server = serve_front(true).await;
    let home = get(&server, "/", &[]).await;
    let etag = home.header("etag").unwrap().to_string();
    let again = get(&server, "/", &[("if-none-match", &etag)]).await;
    assert_eq!(again.status, 304);
    assert_eq!(again.header("etag"), Some(etag.as_str()));
    assert_eq!(again.body.as_deref(), Ok(&b""[..]));
    let stale = get(&server, "/", &[("if-none-match", "\"0000\"")]).await;
    assert_eq!(stale.status, 200);

    let len = page().len();
    let part = get(&server, "/", &[("range", "bytes=0-14")]).await;
    assert_eq!(part.status, 206);
    assert_eq!(
        part.header("content-range"),
        Some(format!("bytes 0-14/{len}").as_str())
    );
    assert_eq!(part.text(), &page()[..15]);
    let tail = get(&server, "/", &[("range", "bytes=-5")]).await;
    assert_eq!(tail.text(), &page()[len - 5..]);
    let past = get(&server, "/", &[("range", &format!("bytes={len}-"))]).await;
    assert_eq!(past.status, 416);
    assert_eq!(
        past.header("content-range"),
        Some(format!("bytes */{len}").as_str())
    );
    let changed = get(
        &server,
        "/",
        &[("range", "bytes=0-14"), ("if-range", "\"old\"")],
    )
    .await;
    assert_eq!((changed.status.as_u16(), changed.text().len()), (200, len));

    // The big file comes from disk, whole or in part.
    let big = big();
    let whole = get(&server, "/big.bin", &[]).await;
    assert_eq!(
        whole.header("content-type"),
        Some("application/octet-stream")
    );
    assert_eq!(whole.body.as_deref(), Ok(&big[..]));
    let middle = get(&server, "/big.bin", &[("range", "bytes=1048570-1048599")]).await;
    assert_eq!(middle.status, 206);
    assert_eq!(middle.body.as_deref(), Ok(&big[1_048_570..1_048_600]));

    let zipped = get(&server, "/", &[("accept-encoding", "gzip, br")]).await;
    assert_eq!(zipped.header("content-encoding"), Some("gzip"));
    assert_eq!(zipped.header("vary"), Some("accept-encoding"));
    let compressed = zipped.body.unwrap();
    assert!(compressed.len() < len / 10, "{} of {len}", compressed.len());
    let mut unzipped = String::new();
    flate2::read::GzDecoder::new(&compressed[..])
        .read_to_string(&mut unzipped)
        .unwrap();
    assert_eq!(unzipped, page());
    let refused = get(&server, "/", &[("accept-encoding", "gzip;q=0")]).await;
    assert_eq!(refused.header("content-encoding"), None);
    // A range is of the file itself, never of its compressed form.
    let ranged = get(
        &server,
        "/",
        &[("accept-encoding", "gzip"), ("range", "bytes=0-9")],
    )
    .await;
    assert_eq!(
        (ranged.header("content-encoding"), ranged.text()),
        (None, page()[..10].to_string())
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn no_path_reaches_outside_the_folder_or_a_hidden_file() {
    let server = serve_front(true).await;
    for path in [
        "/../notes.txt",
        "/%2e%2e/notes.txt",
        "/..%2fnotes.txt",
        "/css/..%2f..%2fnotes.txt",
        "/%2E%2E%5cnotes.txt",
        "/link.txt",
        "/up/notes.txt",
        "/.env",
        "/%2eenv",
        "/notes.txt",
        "/../../Spacefile.toml",
    ] {
        // Raw bytes: a client library would resolve the dots before sending.
        let reply = raw(
            server.addr,
            format!("GET {path} HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n").as_bytes(),
            Duration::from_secs(10),
        )
        .await;
        assert!(reply.starts_with("HTTP/1.1 404"), "{path}: {reply}");
        assert!(reply.ends_with("<p>not here</p>"), "{path}: {reply}");
        assert!(!reply.contains("outside the served folder") && !reply.contains("SECRET"));
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_static_micro_is_pushed_and_served_by_a_server() {
    use crate::server::{api, get_with, start};
    let state = tempfile::tempdir().unwrap();
    let (server, token) = start(state.path(), |_| {}).await;
    let token = token.unwrap();
    // Links are refused while packing, as a bundle holds files only.
    let (_dir, manifest) = crate::support::write_app(&front(true));
    let refused = micros::server::pack(&micros::Manifest::load(&manifest).unwrap()).unwrap_err();
    assert!(
        refused
            .to_string()
            .contains("is a symlink, which a bundle cannot hold"),
        "{refused}"
    );
    let plain: Vec<MicroSpec> = vec![
        static_micro("web", Some("dist"))
            .primary()
            .toml("public = true")
            .file("dist/index.html", page().as_bytes())
            .file("dist/404.html", b"<p>not here</p>"),
    ];
    let (_dir, manifest) = crate::support::write_app(&plain);
    let packed = micros::server::pack(&micros::Manifest::load(&manifest).unwrap()).unwrap();
    let (status, pushed) = api(
        &server,
        &token,
        http::Method::POST,
        "/apps/front/releases",
        Bytes::from(packed),
    )
    .await;
    assert_eq!(status, http::StatusCode::CREATED, "{pushed}");
    let home = get_with(&server, "front.localhost", "/", &[]).await;
    assert_eq!((home.status.as_u16(), home.text()), (200, page()));
    let missing = get_with(&server, "front.localhost", "/x", &[]).await;
    assert_eq!(
        (missing.status.as_u16(), missing.text()),
        (404, "<p>not here</p>".into())
    );
}
