//! HTTPS of `micros server`: real TLS handshakes against a test CA made here, HTTP/1.1 and
//! HTTP/2 by ALPN, certificates chosen by SNI for custom domains and reloaded without a restart,
//! and the plain HTTP listener that redirects to HTTPS.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Request, StatusCode, Version};
use http_body_util::{BodyExt as _, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use micros::server::{Server, ServerConfig, TlsConfig};
use micros_guests as guests;
use rustls::pki_types::{CertificateDer, ServerName};
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

use crate::server::{Running, start_server};
use crate::support::{MicroSpec, micro, write_app};

/// The servers' domain. Not `localhost` itself: clients refuse a wildcard certificate for a
/// single label (`*.localhost`), while `*.micros.localhost` is fine, and resolves to loopback.
const DOMAIN: &str = "micros.localhost";

/// A test certificate authority, and the folder its certificates are written to.
struct Pki {
    dir: tempfile::TempDir,
    ca: CertificateDer<'static>,
    ca_pem: String,
    issuer: rcgen::Issuer<'static, rcgen::KeyPair>,
}

/// A certificate the test CA made: its PEM, its key's PEM, its DER.
struct Leaf {
    cert: String,
    key: String,
    der: Vec<u8>,
}

impl Pki {
    fn new() -> Self {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "micros test CA");
        let key = rcgen::KeyPair::generate().unwrap();
        let ca = params.self_signed(&key).unwrap();
        Self {
            dir: tempfile::tempdir().unwrap(),
            ca: ca.der().clone(),
            ca_pem: ca.pem(),
            issuer: rcgen::Issuer::new(params, key),
        }
    }

    /// A certificate for `names` with this serial number, signed by the CA.
    fn leaf(&self, names: &[&str], serial: u64) -> Leaf {
        let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        let mut params = rcgen::CertificateParams::new(names).unwrap();
        params.serial_number = Some(serial.into());
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        Leaf {
            cert: cert.pem(),
            key: key.serialize_pem(),
            der: cert.der().to_vec(),
        }
    }

    /// Writes `leaf` as `<name>.crt` and `<name>.key` under `folder` (in the PKI's folder).
    fn write(&self, folder: &str, name: &str, leaf: &Leaf) -> (PathBuf, PathBuf) {
        let folder = self.dir.path().join(folder);
        std::fs::create_dir_all(&folder).unwrap();
        let (cert, key) = (
            folder.join(format!("{name}.crt")),
            folder.join(format!("{name}.key")),
        );
        // As a renewal does: the new files written beside, then renamed over the old ones.
        for (path, text) in [(&cert, &leaf.cert), (&key, &leaf.key)] {
            let new = path.with_extension("new");
            std::fs::write(&new, text).unwrap();
            std::fs::rename(&new, path).unwrap();
        }
        (cert, key)
    }

    /// The DER of the certificate written as `<name>.crt` under `folder`.
    fn leaf_der_of(&self, folder: &str, name: &str) -> Vec<u8> {
        use rustls::pki_types::pem::PemObject as _;
        let path = self.dir.path().join(folder).join(format!("{name}.crt"));
        CertificateDer::from_pem_file(path).unwrap().to_vec()
    }

    /// A client that trusts only the test CA, offering these protocols by ALPN.
    fn client(&self, alpn: &[&[u8]]) -> TlsConnector {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(self.ca.clone()).unwrap();
        client_with(roots, alpn)
    }
}

/// A TLS client trusting `roots`, offering these protocols by ALPN.
fn client_with(roots: rustls::RootCertStore, alpn: &[&[u8]]) -> TlsConnector {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    TlsConnector::from(Arc::new(config))
}

/// A TLS handshake with the server at `addr`, asking for `name` (SNI).
async fn handshake(
    addr: SocketAddr,
    name: &str,
    client: &TlsConnector,
) -> std::io::Result<TlsStream<TcpStream>> {
    let stream = TcpStream::connect(addr).await?;
    let name = ServerName::try_from(name.to_string()).unwrap();
    client.connect(name, stream).await
}

/// The certificate the server presented on `stream`.
fn presented(stream: &TlsStream<TcpStream>) -> Vec<u8> {
    stream.get_ref().1.peer_certificates().unwrap()[0].to_vec()
}

/// An answer: status, version, headers and body.
struct Answer {
    status: StatusCode,
    version: Version,
    headers: http::HeaderMap,
    body: String,
}

/// Sends `request` over HTTP/1.1 on `stream`.
async fn http1(stream: TlsStream<TcpStream>, request: Request<Full<Bytes>>) -> Answer {
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(connection);
    answer(sender.send_request(request).await.unwrap()).await
}

/// Sends each request over one HTTP/2 connection on `stream`, all at once.
async fn http2(stream: TlsStream<TcpStream>, requests: Vec<Request<Full<Bytes>>>) -> Vec<Answer> {
    let (sender, connection) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
            .await
            .unwrap();
    tokio::spawn(connection);
    let sent = requests.into_iter().map(|request| {
        let mut sender = sender.clone();
        async move { answer(sender.send_request(request).await.unwrap()).await }
    });
    futures::future::join_all(sent).await
}

async fn answer(response: http::Response<hyper::body::Incoming>) -> Answer {
    let (parts, body) = response.into_parts();
    let body = body.collect().await.unwrap().to_bytes();
    Answer {
        status: parts.status,
        version: parts.version,
        headers: parts.headers,
        body: String::from_utf8_lossy(&body).into_owned(),
    }
}

fn get(uri: &str, host: Option<&str>) -> Request<Full<Bytes>> {
    let mut request = Request::get(uri);
    if let Some(host) = host {
        request = request.header("host", host);
    }
    request.body(Full::new(Bytes::new())).unwrap()
}

/// Starts a server with `tls` on `state`, with a redirect listener if `redirect`; the
/// operator's token.
async fn start(state: &Path, tls: TlsConfig, redirect: bool) -> (Running, String) {
    start_with(state, tls, redirect, |_| {}).await
}

/// As [`start`], with settings the caller adjusts.
async fn start_with(
    state: &Path,
    tls: TlsConfig,
    redirect: bool,
    configure: impl FnOnce(&mut ServerConfig),
) -> (Running, String) {
    let (running, token) = start_server(state, redirect, |config| {
        config.domain = DOMAIN.into();
        config.tls = Some(tls);
        configure(config);
    })
    .await;
    (running, token.unwrap())
}

/// Calls the admin API over HTTPS (HTTP/1.1, at the server's own host): the status and the
/// answer.
async fn api(
    server: &Running,
    pki: &Pki,
    token: &str,
    path: &str,
    body: impl Into<Bytes>,
) -> (StatusCode, Value) {
    let stream = handshake(server.addr, DOMAIN, &pki.client(&[b"http/1.1"]))
        .await
        .unwrap();
    let request = Request::post(format!("{}{path}", micros::server::API_PREFIX))
        .header("host", DOMAIN)
        .header("authorization", format!("Bearer {token}"))
        .body(Full::new(body.into()))
        .unwrap();
    let answer = http1(stream, request).await;
    let json = serde_json::from_str(&answer.body).unwrap_or(Value::Null);
    (answer.status, json)
}

/// Packs an app of these Micros as `micros push` does and pushes it as `app`.
async fn push(server: &Running, pki: &Pki, token: &str, app: &str, micros: &[MicroSpec]) {
    let (dir, _) = write_app(micros);
    let packed = micros::server::pack(&micros::Manifest::load(dir.path()).unwrap()).unwrap();
    let (status, answer) = api(server, pki, token, &format!("/apps/{app}/releases"), packed).await;
    assert_eq!(status, StatusCode::CREATED, "{answer}");
}

/// The server's default pair: for the domain and `*.` the domain.
fn default_pair(pki: &Pki) -> (TlsConfig, Leaf) {
    let leaf = pki.leaf(&[DOMAIN, &format!("*.{DOMAIN}")], 1);
    let (cert, key) = pki.write("default", DOMAIN, &leaf);
    (TlsConfig::new(cert, key), leaf)
}

#[tokio::test(flavor = "multi_thread")]
async fn https_serves_http1_and_http2_by_alpn_to_clients_that_trust_the_ca() {
    let pki = Pki::new();
    let state = tempfile::tempdir().unwrap();
    let (config, wildcard) = default_pair(&pki);
    let (server, token) = start(state.path(), config, false).await;
    push(
        &server,
        &pki,
        &token,
        "notes",
        &[micro("web", guests::HELLO).primary().toml("public = true")],
    )
    .await;
    push(
        &server,
        &pki,
        &token,
        "echo",
        &[micro("web", guests::ECHO).primary().toml("public = true")],
    )
    .await;

    // HTTP/1.1: a client offering only it, and one offering no ALPN at all.
    for alpn in [&[b"http/1.1".as_slice()][..], &[]] {
        let stream = handshake(server.addr, "notes.micros.localhost", &pki.client(alpn))
            .await
            .unwrap();
        assert_eq!(presented(&stream), wildcard.der);
        let answer = http1(stream, get("/", Some("notes.micros.localhost"))).await;
        assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
        assert_eq!(answer.version, Version::HTTP_11);
        assert_eq!(answer.body, "hello from micros\n");
    }

    // HTTP/2, chosen by ALPN over HTTP/1.1: requests at once on one connection, each routed by
    // its `:authority`, which the guest sees as its authority.
    let stream = handshake(
        server.addr,
        "notes.micros.localhost",
        &pki.client(&[b"h2", b"http/1.1"]),
    )
    .await
    .unwrap();
    assert_eq!(stream.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    let port = server.addr.port();
    let answers = http2(
        stream,
        vec![
            get(&format!("https://notes.micros.localhost:{port}/"), None),
            get(
                &format!("https://notes.micros.localhost:{port}/again"),
                None,
            ),
            get(&format!("https://echo.micros.localhost:{port}/x?y=1"), None),
        ],
    )
    .await;
    for answer in &answers[..2] {
        assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
        assert_eq!(answer.version, Version::HTTP_2);
        assert_eq!(answer.body, "hello from micros\n");
    }
    let echo = &answers[2];
    assert_eq!(echo.status, StatusCode::OK, "{}", echo.body);
    assert_eq!(echo.headers["x-echo-path"], "/x?y=1");
    assert_eq!(
        echo.headers["x-echo-authority"],
        format!("echo.micros.localhost:{port}").as_str()
    );

    // A request body, and the login cookie: `Secure`, as the request came over TLS.
    let (status, answer) = api(&server, &pki, &token, "/apps/notes/owner-token", "").await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    let owner_token = answer["owner_token"].as_str().unwrap();
    let stream = handshake(server.addr, "notes.micros.localhost", &pki.client(&[b"h2"]))
        .await
        .unwrap();
    let post = |uri: String, content_type: &str, body: String| {
        Request::post(uri)
            .header("content-type", content_type)
            .body(Full::new(Bytes::from(body)))
            .unwrap()
    };
    let answers = http2(
        stream,
        vec![
            post(
                format!("https://echo.micros.localhost:{port}/body"),
                "text/plain",
                "ping over h2".into(),
            ),
            post(
                format!("https://notes.micros.localhost:{port}/__space/login"),
                "application/x-www-form-urlencoded",
                format!("token={owner_token}"),
            ),
        ],
    )
    .await;
    assert_eq!(answers[0].body, "ping over h2");
    assert_eq!(
        answers[1].status,
        StatusCode::SEE_OTHER,
        "{}",
        answers[1].body
    );
    let cookie = answers[1].headers["set-cookie"].to_str().unwrap();
    assert!(cookie.ends_with("; Secure"), "{cookie}");

    // The front door's header limits hold over HTTP/2 too.
    let stream = handshake(server.addr, "notes.micros.localhost", &pki.client(&[b"h2"]))
        .await
        .unwrap();
    let uri = format!("https://notes.micros.localhost:{port}/");
    let mut many = Request::get(&uri);
    for i in 0..120 {
        many = many.header(format!("x-h{i}"), "1");
    }
    let big = Request::get(&uri).header("x-big", "a".repeat(70 * 1024));
    let answers = http2(
        stream,
        vec![
            many.body(Full::new(Bytes::new())).unwrap(),
            big.body(Full::new(Bytes::new())).unwrap(),
        ],
    )
    .await;
    assert_eq!(
        answers[0].status,
        StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE
    );
    assert_eq!(
        answers[1].status,
        StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE
    );

    // A host no app has, over HTTP/2 too: the server's own 404.
    let stream = handshake(
        server.addr,
        "nobody.micros.localhost",
        &pki.client(&[b"h2"]),
    )
    .await
    .unwrap();
    let answers = http2(
        stream,
        vec![get(
            &format!("https://nobody.micros.localhost:{port}/"),
            None,
        )],
    )
    .await;
    assert_eq!(answers[0].status, StatusCode::NOT_FOUND);

    // A client that does not trust the test CA fails the handshake.
    let stranger = Pki::new();
    let refused = handshake(
        server.addr,
        "notes.micros.localhost",
        &stranger.client(&[b"h2", b"http/1.1"]),
    )
    .await;
    let error = refused.expect_err("a client without the CA is refused");
    assert!(
        error.to_string().contains("invalid peer certificate"),
        "{error}"
    );
    // Nor does plain HTTP reach an app on the HTTPS listener.
    let plain =
        crate::support::try_send(server.addr, get("/", Some("notes.micros.localhost"))).await;
    assert!(
        plain.is_err(),
        "plain HTTP was answered on the HTTPS listener"
    );

    // Clients that say nothing do not hold the shutdown: one that has not begun its handshake,
    // one that finished it (HTTP/2 chosen) and never sent its connection preface.
    let _silent = TcpStream::connect(server.addr).await.unwrap();
    let _quiet = handshake(server.addr, "notes.micros.localhost", &pki.client(&[b"h2"]))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let stopping = Instant::now();
    server.stop().await;
    assert!(
        stopping.elapsed() < Duration::from_secs(3),
        "silent clients held the shutdown for {:?}",
        stopping.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn custom_domains_get_their_own_certificate_reloaded_without_restart() {
    let pki = Pki::new();
    let state = tempfile::tempdir().unwrap();
    let (mut config, wildcard) = default_pair(&pki);
    let first = pki.leaf(&["notes.example.org"], 100);
    let (custom_cert, _) = pki.write("hosts", "notes.example.org", &first);
    config.dir = Some(pki.dir.path().join("hosts"));
    let (server, token) = start(state.path(), config, false).await;
    push(
        &server,
        &pki,
        &token,
        "notes",
        &[micro("web", guests::HELLO).primary().toml("public = true")],
    )
    .await;
    let (status, answer) = api(
        &server,
        &pki,
        &token,
        "/apps/notes/domains",
        json!({"host": "notes.example.org"}).to_string(),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{answer}");

    let client = pki.client(&[b"h2", b"http/1.1"]);
    let stream = handshake(server.addr, "notes.example.org", &client)
        .await
        .unwrap();
    assert_eq!(presented(&stream), first.der);
    let answers = http2(stream, vec![get("https://notes.example.org/", None)]).await;
    assert_eq!(answers[0].status, StatusCode::OK, "{}", answers[0].body);
    assert_eq!(answers[0].body, "hello from micros\n");
    // Every other name gets the default certificate.
    let stream = handshake(server.addr, "notes.micros.localhost", &client)
        .await
        .unwrap();
    assert_eq!(presented(&stream), wildcard.der);

    // A renewal: new files, a new serial; served within moments, without a restart.
    let second = pki.leaf(&["notes.example.org"], 101);
    assert_ne!(first.der, second.der);
    pki.write("hosts", "notes.example.org", &second);
    let started = Instant::now();
    loop {
        let stream = handshake(server.addr, "notes.example.org", &client)
            .await
            .unwrap();
        if presented(&stream) == second.der {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "the renewed certificate was not served within 5 s"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let reloaded = started.elapsed();
    assert!(
        reloaded >= micros::server::RELOAD_SETTLE,
        "reloaded before the files settled: {reloaded:?}"
    );

    // A corrupt replacement is refused (and logged): the certificate served before stays.
    std::fs::write(&custom_cert, "-----BEGIN CERTIFICATE-----\nbroken\n").unwrap();
    tokio::time::sleep(micros::server::RELOAD_SETTLE * 3).await;
    let stream = handshake(
        server.addr,
        "notes.example.org",
        &pki.client(&[b"http/1.1"]),
    )
    .await
    .unwrap();
    assert_eq!(presented(&stream), second.der);
    let answer = http1(stream, get("/", Some("notes.example.org"))).await;
    assert_eq!(answer.body, "hello from micros\n");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_idle_http2_connection_is_closed_after_the_header_read_timeout() {
    let pki = Pki::new();
    let state = tempfile::tempdir().unwrap();
    let (config, _) = default_pair(&pki);
    let timeout = Duration::from_millis(700);
    let (server, token) = start_with(state.path(), config, false, |config| {
        config.app.front_door.header_read_timeout = timeout;
    })
    .await;
    push(
        &server,
        &pki,
        &token,
        "notes",
        &[micro("web", guests::HELLO).primary().toml("public = true")],
    )
    .await;
    let stream = handshake(server.addr, "notes.micros.localhost", &pki.client(&[b"h2"]))
        .await
        .unwrap();
    let (mut sender, connection) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
            .await
            .unwrap();
    let connection = tokio::spawn(connection);
    let mut last = Instant::now();
    for _ in 0..3 {
        // Requests keep it open, each one restarting the wait.
        let response = sender
            .send_request(get("https://notes.micros.localhost/", None))
            .await
            .unwrap();
        assert_eq!(answer(response).await.status, StatusCode::OK);
        last = Instant::now();
        tokio::time::sleep(timeout / 2).await;
    }
    assert!(!connection.is_finished(), "closed while in use");
    // Then nothing: the server says goodbye (GOAWAY) and the connection ends.
    tokio::time::timeout(Duration::from_secs(5), connection)
        .await
        .expect("the idle connection was not closed")
        .unwrap()
        .unwrap();
    // Counted by the server from the end of the last answer, a moment before the client read it.
    let idle = last.elapsed();
    assert!(idle >= timeout * 9 / 10, "closed after {idle:?} idle");
    assert!(sender.is_closed());
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn plain_http_beside_https_is_redirected_to_it() {
    let pki = Pki::new();
    let state = tempfile::tempdir().unwrap();
    let (config, _) = default_pair(&pki);
    let (server, _) = start(state.path(), config, true).await;
    let plain = server.redirect.unwrap();
    let port = server.addr.port();
    let reply =
        crate::support::send(plain, get("/path?q", Some("Notes.Micros.Localhost:80"))).await;
    assert_eq!(reply.status, StatusCode::PERMANENT_REDIRECT);
    assert_eq!(
        reply.header("location"),
        Some(format!("https://notes.micros.localhost:{port}/path?q").as_str())
    );
    // The method and the body are the client's to send again (308): a POST is redirected too.
    let post = Request::post("/__micros/v1/whoami")
        .header("host", DOMAIN)
        .body(Full::new(Bytes::from_static(b"{}")))
        .unwrap();
    let reply = crate::support::send(plain, post).await;
    assert_eq!(reply.status, StatusCode::PERMANENT_REDIRECT);
    assert_eq!(
        reply.header("location"),
        Some(format!("https://{DOMAIN}:{port}/__micros/v1/whoami").as_str())
    );
    // Without a host there is nowhere to send it.
    let reply = crate::support::raw(plain, b"GET / HTTP/1.0\r\n\r\n", Duration::from_secs(5)).await;
    assert!(reply.starts_with("HTTP/1.0 400"), "{reply}");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_redirect_listener_needs_tls_and_bad_files_stop_the_start() {
    let state = tempfile::tempdir().unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let plain = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let config = ServerConfig::new(state.path());
    let (server, _) = tokio::task::spawn_blocking(move || Server::open(config))
        .await
        .unwrap()
        .unwrap();
    let error = server
        .serve_with_redirect(listener, plain, async {})
        .await
        .unwrap_err();
    assert!(error.to_string().contains("--tls-cert"), "{error}");

    let pki = Pki::new();
    let (mut config, _) = default_pair(&pki);
    config.key = pki.dir.path().join("missing.key");
    let mut server = ServerConfig::new(state.path());
    server.tls = Some(config);
    let error = tokio::task::spawn_blocking(move || Server::open(server))
        .await
        .unwrap()
        .err()
        .expect("a missing key stops the start");
    let message = format!("{error:#}");
    assert!(
        message.starts_with("--tls-key `") && message.contains("missing.key`"),
        "{message}"
    );
}

/// The command as an operator runs it: `micros server --tls-cert --tls-key --tls-dir
/// --redirect-listen`, and `login` and `push` over HTTPS, trusting the CA of `SSL_CERT_FILE`.
#[tokio::test(flavor = "multi_thread")]
async fn the_cli_serves_https_and_logs_in_and_pushes_over_it() {
    use tokio::io::AsyncBufReadExt as _;
    const MICROS: &str = env!("CARGO_BIN_EXE_micros");
    let pki = Pki::new();
    let (cert, key) = pki.write("default", "localhost", &pki.leaf(&["localhost"], 7));
    pki.write(
        "hosts",
        "notes.example.org",
        &pki.leaf(&["notes.example.org"], 8),
    );
    let ca = pki.dir.path().join("ca.pem");
    std::fs::write(&ca, &pki.ca_pem).unwrap();
    let state = tempfile::tempdir().unwrap();
    let logins = state.path().join("servers.toml");

    // Half a pair, or a file missing: refused, naming the flag.
    let half = std::process::Command::new(MICROS)
        .args(["server", "--tls-cert"])
        .arg(&cert)
        .output()
        .unwrap();
    assert_eq!(half.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&half.stderr).contains("--tls-key"));
    let missing = std::process::Command::new(MICROS)
        .args(["server", "--listen", "127.0.0.1:0", "--tls-key"])
        .arg(&key)
        .arg("--tls-cert")
        .arg(pki.dir.path().join("missing.pem"))
        .arg("--state-dir")
        .arg(state.path().join("unused"))
        .output()
        .unwrap();
    assert_eq!(missing.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&missing.stderr);
    assert!(
        stderr.contains("error: --tls-cert `") && stderr.contains("missing.pem`: cannot read it"),
        "{stderr}"
    );

    let mut child = tokio::process::Command::new(MICROS)
        .args([
            "server",
            "--listen",
            "127.0.0.1:0",
            "--redirect-listen",
            "127.0.0.1:0",
        ])
        .arg("--state-dir")
        .arg(state.path().join("server"))
        .arg("--tls-cert")
        .arg(&cert)
        .arg("--tls-key")
        .arg(&key)
        .arg("--tls-dir")
        .arg(pki.dir.path().join("hosts"))
        .stdin(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = tokio::io::BufReader::new(child.stderr.take().unwrap()).lines();
    let mut next = async || {
        tokio::time::timeout(Duration::from_secs(60), lines.next_line())
            .await
            .unwrap()
            .unwrap()
            .expect("a line on stderr")
    };
    let first = next().await;
    let addr: SocketAddr = first
        .strip_prefix("micros server listening on https://")
        .unwrap_or_else(|| panic!("first line: {first}"))
        .parse()
        .unwrap();
    let second = next().await;
    let redirect: SocketAddr = second
        .strip_prefix("micros server redirecting http://")
        .and_then(|rest| rest.strip_suffix(" to https"))
        .unwrap_or_else(|| panic!("second line: {second}"))
        .parse()
        .unwrap();
    let token = loop {
        let line = next().await;
        if line.starts_with("    ") && !line.trim().is_empty() {
            break line.trim().to_string();
        }
    };
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });

    let url = format!("https://localhost:{}", addr.port());
    let run = |args: &[&str], trust: bool| {
        let mut command = std::process::Command::new(MICROS);
        command.args(args).env("MICROS_CONFIG", &logins);
        if trust {
            command.env("SSL_CERT_FILE", &ca);
        } else {
            command.env_remove("SSL_CERT_FILE");
        }
        let output = command.output().unwrap();
        (
            output.status.success(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    };
    // The usual roots do not know the test CA.
    let (ok, err) = run(&["login", &url, "--token", &token], false);
    assert!(
        !ok && err.contains("no TLS with") && err.contains("certificate"),
        "{err}"
    );
    let (ok, err) = run(&["login", &url, "--token", &token], true);
    assert!(ok, "{err}");
    let (app, _) = write_app(&[micro("web", guests::HELLO).primary().toml("public = true")]);
    let path = app.path().to_str().unwrap();
    let (ok, err) = run(&["push", path, "--app", "notes"], true);
    assert!(ok, "{err}");
    assert!(
        err.contains("is serving at https://notes.localhost"),
        "{err}"
    );

    let stream = handshake(addr, "localhost", &pki.client(&[b"h2"]))
        .await
        .unwrap();
    let answers = http2(
        stream,
        vec![get(
            &format!("https://notes.localhost:{}/", addr.port()),
            None,
        )],
    )
    .await;
    assert_eq!(answers[0].body, "hello from micros\n");
    let stream = handshake(addr, "notes.example.org", &pki.client(&[b"h2"]))
        .await
        .unwrap();
    assert_eq!(
        presented(&stream),
        pki.leaf_der_of("hosts", "notes.example.org")
    );
    let reply = crate::support::send(redirect, get("/x", Some("notes.localhost"))).await;
    assert_eq!(
        reply.header("location"),
        Some(format!("https://notes.localhost:{}/x", addr.port()).as_str())
    );
}
