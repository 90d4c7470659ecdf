//! Serving: routing and prefix stripping, the variables each Micro sees, files, logs, concurrency.

use micros::EnvSetting;
use micros_guests as guests;

use crate::support::{micro, serve, serve_with};

#[tokio::test(flavor = "multi_thread")]
async fn routes_by_first_segment_and_strips_the_prefix() {
    let server = serve(&[
        micro("web", guests::ECHO).primary(),
        micro("api", guests::ECHO).path("/api"),
        micro("admin", guests::ECHO),
    ])
    .await;
    let cases = [
        ("/", "web", "/"),
        ("/x/y?z=1", "web", "/x/y?z=1"),
        ("/api/x?q=1", "api", "/x?q=1"),
        ("/api", "api", "/"),
        ("/api/", "api", "/"),
        ("/api?q=1", "api", "/?q=1"),
        ("/apix", "web", "/apix"),
        ("/admin/users", "admin", "/users"),
        ("/API/x", "web", "/API/x"),
    ];
    for (path, _micro, seen) in cases {
        let reply = server.get(path).await;
        assert_eq!(reply.status, 200, "{path}");
        assert_eq!(reply.header("x-echo-path"), Some(seen), "{path}");
        assert_eq!(reply.header("x-echo-method"), Some("Method::Get"), "{path}");
        assert_eq!(
            reply.header("x-echo-authority"),
            Some("micros.test"),
            "{path}"
        );
        let id = reply.header("x-request-id").expect("x-request-id");
        assert_eq!(id.len(), 16, "{path}");
    }
    // Which Micro answered: the environment guest names itself.
    let server = serve(&[
        micro("web", guests::ENV).primary(),
        micro("api", guests::ENV).path("/api"),
    ])
    .await;
    assert!(
        server
            .get("/api/anything")
            .await
            .text()
            .contains("DETA_SPACE_APP_MICRO_NAME=api\n")
    );
    assert!(
        server
            .get("/anything")
            .await
            .text()
            .contains("DETA_SPACE_APP_MICRO_NAME=web\n")
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn every_variable_and_nothing_from_the_host() {
    // SAFETY-free check that host variables do not leak: the test process has PATH and HOME.
    let server = serve_with(
        &[
            micro("web", guests::ENV)
                .primary()
                .toml("[[micros.presets.env]]\nname = \"GREETING\"\ndefault = \"hello\"\n[[micros.presets.env]]\nname = \"UNSET\"\n[[micros.presets.env]]\nname = \"SHARED\"\ndefault = \"d\""),
            micro("api", guests::ENV).path("/api").toml("[[micros.presets.env]]\nname = \"SHARED\"\ndefault = \"d\""),
        ],
        micros::Limits::default(),
        vec!["SHARED=everyone".parse::<EnvSetting>().unwrap(), "api.SHARED=only-api".parse().unwrap()],
    )
    .await;
    let web = server.get("/").await.text();
    let api = server.get("/api").await.text();
    let keys = std::fs::read_to_string(server.dir.path().join(".micros/keys.toml")).unwrap();
    let keys: micros::state::Keys = toml::from_str(&keys).unwrap();
    let port = server.addr.port();
    let expected_web = format!(
        "DETA_PROJECT_KEY={}_{}\nDETA_SPACE_APP=true\nDETA_SPACE_APP_HOSTNAME=127.0.0.1:{port}\nDETA_SPACE_APP_MICRO_NAME=web\n\
         DETA_SPACE_APP_MICRO_TYPE=primary\nDETA_SPACE_APP_VERSION=1.2.3\nGREETING=hello\nPORT={port}\nSHARED=everyone\nargs=0\n",
        keys.project_id, keys.secrets["web"]
    );
    assert_eq!(web, expected_web);
    let expected_api = format!(
        "DETA_PROJECT_KEY={}_{}\nDETA_SPACE_APP=true\nDETA_SPACE_APP_HOSTNAME=127.0.0.1:{port}\nDETA_SPACE_APP_MICRO_NAME=api\n\
         DETA_SPACE_APP_MICRO_TYPE=normal\nDETA_SPACE_APP_VERSION=1.2.3\nPORT={port}\nSHARED=only-api\nargs=0\n",
        keys.project_id, keys.secrets["api"]
    );
    assert_eq!(api, expected_api);
    assert_ne!(keys.secrets["web"], keys.secrets["api"]);
    assert!(
        keys.secrets["web"].len() >= 22,
        "at least 128 bits of base62"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn keys_survive_a_restart() {
    let (dir, manifest) = crate::support::write_app(&[micro("web", guests::ENV).primary()]);
    let mut seen = Vec::new();
    for _ in 0..2 {
        let app = crate::support::load_open(&manifest);
        let (_, text) = crate::support::handle_get(&app, "/").await;
        seen.push(
            text.lines()
                .find(|l| l.starts_with("DETA_PROJECT_KEY="))
                .unwrap()
                .to_string(),
        );
    }
    assert_eq!(seen[0], seen[1]);
    drop(dir);
}

#[tokio::test(flavor = "multi_thread")]
async fn files_read_only_root_and_a_private_tmp() {
    let server = serve(&[
        micro("web", guests::FILES)
            .primary()
            .file("bundled.txt", b"bundled content"),
        micro("other", guests::FILES),
    ])
    .await;
    // The Micro's own files are readable at `/`, relative paths too.
    assert_eq!(
        server.get("/read?path=/bundled.txt").await.text(),
        "bundled content"
    );
    assert_eq!(
        server.get("/read?path=bundled.txt").await.text(),
        "bundled content"
    );
    // `/tmp` is writable and lasts between requests of the same Micro.
    assert_eq!(
        server
            .get("/write?path=/tmp/note.txt&data=kept")
            .await
            .text(),
        "ok"
    );
    assert_eq!(server.get("/read?path=/tmp/note.txt").await.text(), "kept");
    assert_eq!(
        std::fs::read_to_string(server.tmp_dir("web").join("note.txt")).unwrap(),
        "kept"
    );
    // Another Micro has its own `/tmp`.
    assert_eq!(
        server.get("/other/read?path=/tmp/note.txt").await.text(),
        "error: NotFound: No such file or directory (os error 44)"
    );
    // Writing anywhere else fails inside the guest.
    assert_eq!(
        server.get("/write?path=/bundled.txt&data=x").await.text(),
        "error: PermissionDenied: Operation not permitted (os error 63)"
    );
    assert_eq!(
        server.get("/write?path=/new.txt").await.text(),
        "error: PermissionDenied: Operation not permitted (os error 63)"
    );
    assert_eq!(
        server.get("/read?path=/bundled.txt").await.text(),
        "bundled content"
    );
    // Nothing outside the Micro's folder is reachable.
    assert!(
        server
            .get("/read?path=/../Spacefile.toml")
            .await
            .text()
            .starts_with("error: ")
    );
    assert!(
        server
            .get("/read?path=/etc/passwd")
            .await
            .text()
            .starts_with("error: NotFound")
    );
    // Nor through `/tmp`: `..` cannot climb out of it, to read or to write.
    let keys = server.get("/read?path=/tmp/../../keys.toml").await.text();
    assert!(keys.starts_with("error: "), "{keys}");
    let escape = server.get("/write?path=/tmp/../escape.txt").await.text();
    assert!(escape.starts_with("error: "), "{escape}");
    assert!(!server.dir.path().join(".micros/tmp/escape.txt").exists());
    assert_eq!(
        server.get("/list?path=/").await.text(),
        "bundled.txt\nmicro.wasm"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn tmp_is_emptied_when_the_runtime_starts() {
    let (dir, manifest) = crate::support::write_app(&[micro("web", guests::FILES).primary()]);
    let tmp = dir.path().join(".micros/tmp/web");
    std::fs::create_dir_all(&tmp).unwrap();
    std::fs::write(tmp.join("stale.txt"), "old").unwrap();
    let _app = micros::App::load(
        micros::Manifest::load(&manifest).unwrap(),
        &micros::Config::default(),
    )
    .unwrap();
    assert!(tmp.is_dir());
    assert!(!tmp.join("stale.txt").exists());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_hundred_concurrent_requests() {
    let server = std::sync::Arc::new(serve(&[micro("web", guests::SLEEPER).primary()]).await);
    let started = std::time::Instant::now();
    let requests = (0..100).map(|_| {
        let server = server.clone();
        tokio::spawn(async move { server.get("/?ms=500").await })
    });
    for reply in futures::future::join_all(requests).await {
        let reply = reply.unwrap();
        assert_eq!(reply.status, 200);
        assert_eq!(reply.text(), "slept 500 ms\n");
    }
    // Run one after another they would take 50 s; in parallel they overlap.
    assert!(
        started.elapsed() < std::time::Duration::from_secs(25),
        "requests did not run in parallel"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn bodies_stream_both_ways() {
    let server = serve(&[micro("web", guests::ECHO).primary()]).await;
    let body: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
    let reply = server.post("/", body.clone()).await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.header("x-echo-method"), Some("Method::Post"));
    assert_eq!(reply.body.unwrap().as_ref(), body.as_slice());
    let chunks = vec![
        bytes::Bytes::from_static(b"one,"),
        bytes::Bytes::from_static(b"two,"),
        bytes::Bytes::from_static(b"three"),
    ];
    assert_eq!(
        server.post_chunked("/", chunks).await.text(),
        "one,two,three"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_request_without_host_gets_the_app_hostname() {
    let server = serve(&[micro("web", guests::ECHO).primary()]).await;
    // HTTP/1.0 allows a request without `Host`.
    let mut stream = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    tokio::io::AsyncWriteExt::write_all(&mut stream, b"GET /x HTTP/1.0\r\n\r\n")
        .await
        .unwrap();
    let mut response = String::new();
    tokio::io::AsyncReadExt::read_to_string(&mut stream, &mut response)
        .await
        .unwrap();
    assert!(response.starts_with("HTTP/1.0 200 OK\r\n"), "{response}");
    assert!(
        response.contains(&format!(
            "x-echo-authority: 127.0.0.1:{}\r\n",
            server.addr.port()
        )),
        "{response}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_host_header_that_is_not_text_gets_400() {
    let server = serve(&[micro("web", guests::ECHO).primary()]).await;
    let mut stream = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    tokio::io::AsyncWriteExt::write_all(
        &mut stream,
        b"GET / HTTP/1.1\r\nhost: caf\xe9\r\nconnection: close\r\n\r\n",
    )
    .await
    .unwrap();
    let mut response = Vec::new();
    tokio::io::AsyncReadExt::read_to_end(&mut stream, &mut response)
        .await
        .unwrap();
    let response = String::from_utf8_lossy(&response);
    assert!(
        response.starts_with("HTTP/1.1 400 Bad Request\r\n"),
        "{response}"
    );
    assert!(
        response.ends_with("micro `web`: the request could not be read\n"),
        "{response}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn sockets_are_denied() {
    // A real listener the guest would reach if sockets were allowed.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let target = listener.local_addr().unwrap();
    let server = serve(&[micro("web", guests::SOCKETS).primary()]).await;
    let reply = server.get(&format!("/?target={target}")).await;
    assert_eq!(reply.status, 200);
    assert_eq!(
        reply.text(),
        "tcp connect: denied (PermissionDenied)\nudp bind: denied (PermissionDenied)\nname lookup: denied (Uncategorized)\n"
    );
    let accepted =
        tokio::time::timeout(std::time::Duration::from_millis(200), listener.accept()).await;
    assert!(accepted.is_err(), "the guest reached the host's listener");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_guest_sees_who_called_and_nothing_forged() {
    let request = |forwarded_for: &str| {
        http::Request::get("/")
            .header("x-forwarded-for", forwarded_for)
            .header("forwarded", format!("for={forwarded_for}"))
            .header("x-real-ip", forwarded_for)
            .header("connection", "x-secret")
            .header("x-secret", "1")
            .body(http_body_util::Full::new(bytes::Bytes::new()))
            .unwrap()
    };
    // A client straight from the internet: what it claims is replaced by its address.
    let server = serve(&[micro("web", guests::RECORDER).primary()]).await;
    let seen = crate::support::send(server.addr, request("6.6.6.6"))
        .await
        .text();
    assert!(seen.contains("\nx-forwarded-for: 127.0.0.1\n"), "{seen}");
    assert!(seen.contains("\nforwarded: for=127.0.0.1\n"), "{seen}");
    assert!(!seen.contains("6.6.6.6"), "{seen}");
    // A header that `Connection` names is for this hop only.
    assert!(!seen.contains("x-secret"), "{seen}");
    // Behind a trusted proxy, the chain it sent is extended.
    let server = crate::support::serve_config(&[micro("web", guests::RECORDER).primary()], |c| {
        c.front_door.trusted_proxies = vec!["127.0.0.1/32".parse().unwrap()];
    })
    .await;
    let seen = crate::support::send(server.addr, request("203.0.113.7"))
        .await
        .text();
    assert!(
        seen.contains("\nx-forwarded-for: 203.0.113.7, 127.0.0.1\n"),
        "{seen}"
    );
    assert!(
        seen.contains("\nforwarded: for=203.0.113.7, for=127.0.0.1\n"),
        "{seen}"
    );
    assert!(seen.contains("\nx-real-ip: 203.0.113.7\n"), "{seen}");
}

/// Every execution starts from fresh memory, whether its pool slot is reset in place or given
/// back to the kernel, one after another and many at once: no count, data, stack or heap of a
/// past execution is ever seen.
#[tokio::test(flavor = "multi_thread")]
async fn no_execution_sees_what_a_past_one_left_in_memory() {
    const FRESH: &str = "count=0 text=initial contents stack=0 heap=0\n";
    for pooling in [true, false] {
        let server = crate::support::serve_config(&[micro("web", guests::FRESH).primary()], |c| {
            c.pooling = pooling
        })
        .await;
        // One at a time the pool hands the same slot back: its reset is what is tested.
        for mib in [8, 1, 0, 8, 2] {
            for _ in 0..5 {
                let reply = server.get(&format!("/?mib={mib}")).await;
                assert_eq!(reply.status, 200);
                assert_eq!(reply.text(), FRESH, "pooling {pooling}, {mib} MiB");
            }
        }
        let replies = futures::future::join_all((0..16).map(|_| server.get("/"))).await;
        for reply in replies {
            assert_eq!(reply.text(), FRESH, "pooling {pooling}, at once");
        }
    }
}

/// An embedder's loop of requests on one task gets every response: a task that has used up its
/// tokio budget must not lose a finished execution's head (it once answered 500, "returned
/// without a response", after a few dozen requests in a row).
#[tokio::test(flavor = "multi_thread")]
async fn many_requests_in_a_row_on_one_task_all_get_their_response() {
    let (_dir, manifest) = crate::support::write_app(&[micro("web", guests::HELLO).primary()]);
    let app = crate::support::load_open(&manifest);
    for i in 0..500 {
        let reply = crate::support::handle_get(&app, "/").await;
        assert_eq!(
            (reply.0, reply.1.as_str()),
            (200, "hello from micros\n"),
            "request {i}"
        );
    }
}
