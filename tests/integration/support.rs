//! Test support: apps made from the guest components in a temporary folder, served on a real
//! loopback socket, and a small HTTP client that reports a cut body as an error.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt as _, Full, StreamBody};
use hyper::body::Frame;
use hyper_util::rt::TokioIo;
use micros::{App, Config, EnvSetting, Limits, Manifest};
use tokio::net::TcpStream;
use tokio::sync::oneshot;

/// One Micro of a test app.
pub struct MicroSpec {
    name: String,
    guest: &'static str,
    primary: bool,
    path: Option<String>,
    extra: String,
    files: Vec<(String, Vec<u8>)>,
    links: Vec<(String, String)>,
}

/// A Micro named `name` running the guest component at `guest`.
pub fn micro(name: &str, guest: &'static str) -> MicroSpec {
    MicroSpec {
        name: name.into(),
        guest,
        primary: false,
        path: None,
        extra: String::new(),
        files: Vec::new(),
        links: Vec::new(),
    }
}

/// A static Micro named `name` (`engine = "static"`), serving `src/<serve>` when given.
pub fn static_micro(name: &str, serve: Option<&str>) -> MicroSpec {
    let mut spec = micro(name, "");
    spec.extra = "engine = \"static\"\n".into();
    if let Some(serve) = serve {
        spec.extra.push_str(&format!("serve = \"{serve}\"\n"));
    }
    spec
}

impl MicroSpec {
    /// Marks it primary.
    pub fn primary(mut self) -> Self {
        self.primary = true;
        self
    }

    /// Serves it at `path`.
    pub fn path(mut self, path: &str) -> Self {
        self.path = Some(path.into());
        self
    }

    /// Adds TOML lines after the Micro's table (presets, actions...).
    pub fn toml(mut self, extra: &str) -> Self {
        self.extra.push_str(extra);
        self.extra.push('\n');
        self
    }

    /// Adds a symbolic link at `path` in the Micro's folder to `target` (relative to the app
    /// folder), as a careless build might leave one.
    pub fn link(mut self, path: &str, target: &str) -> Self {
        self.links.push((path.into(), target.into()));
        self
    }

    /// Bundles a file with the Micro (read-only at `/<path>` inside it).
    pub fn file(mut self, path: &str, contents: &[u8]) -> Self {
        self.files.push((path.into(), contents.to_vec()));
        self
    }
}

/// Writes an app folder with these Micros and returns it with its manifest path.
pub fn write_app(micros: &[MicroSpec]) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut toml = String::from("v = 1\napp_name = \"test\"\nversion = \"1.2.3\"\n");
    for spec in micros {
        let src = dir.path().join(&spec.name);
        std::fs::create_dir_all(&src).expect("micro folder");
        if !spec.guest.is_empty() {
            std::fs::copy(spec.guest, src.join("micro.wasm")).expect("copy the guest component");
        }
        for (path, contents) in &spec.files {
            let file = src.join(path);
            std::fs::create_dir_all(file.parent().expect("parent")).expect("file folder");
            std::fs::write(file, contents).expect("bundled file");
        }
        for (path, target) in &spec.links {
            std::os::unix::fs::symlink(dir.path().join(target), src.join(path)).expect("link");
        }
        toml.push_str(&format!(
            "\n[[micros]]\nname = \"{}\"\nsrc = \"{}\"\n",
            spec.name, spec.name
        ));
        if !spec.guest.is_empty() {
            toml.push_str("component = \"micro.wasm\"\n");
        }
        if spec.primary {
            toml.push_str("primary = true\n");
        }
        if let Some(path) = &spec.path {
            toml.push_str(&format!("path = \"{path}\"\n"));
        }
        toml.push_str(&spec.extra);
    }
    let manifest = dir.path().join("Spacefile.toml");
    std::fs::write(&manifest, toml).expect("write manifest");
    (dir, manifest)
}

/// Loads the app of `manifest` with access control off, to be called without a socket.
pub fn load_open(manifest: &Path) -> App {
    let config = Config {
        auth: micros::AuthMode::Off,
        ..Config::default()
    };
    App::load(Manifest::load(manifest).expect("valid manifest"), &config).expect("app loads")
}

/// `GET path` through `App::handle`, no socket: the status and the whole body as text.
pub async fn handle_get(app: &App, path: &str) -> (u16, String) {
    let reply = app
        .handle(
            Request::get(path)
                .header("host", "x")
                .body(http_body_util::Empty::<Bytes>::new())
                .expect("request"),
        )
        .await;
    let status = reply.status().as_u16();
    let body = reply.into_body().collect().await.expect("body").to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned())
}

/// A test app served on `127.0.0.1:0`; stops when dropped.
pub struct Server {
    pub addr: SocketAddr,
    pub dir: tempfile::TempDir,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
}

/// Serves these Micros with default limits.
pub async fn serve(micros: &[MicroSpec]) -> Server {
    serve_with(micros, Limits::default(), Vec::new()).await
}

/// Serves these Micros with the given limits and preset values.
pub async fn serve_with(micros: &[MicroSpec], limits: Limits, env: Vec<EnvSetting>) -> Server {
    serve_config(micros, |config| {
        config.limits = limits;
        config.env = env;
    })
    .await
}

/// Serves these Micros with a configuration the caller adjusts.
pub async fn serve_config(micros: &[MicroSpec], configure: impl FnOnce(&mut Config)) -> Server {
    let (dir, manifest) = write_app(micros);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("local addr");
    // Most tests are about something else than access control: they start open, and the tests
    // of `auth` turn it on.
    let mut config = Config {
        address: addr,
        auth: micros::AuthMode::Off,
        ..Config::default()
    };
    configure(&mut config);
    let app =
        App::load(Manifest::load(&manifest).expect("valid manifest"), &config).expect("app loads");
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(micros::serve(app, listener, async {
        let _ = stopped.await;
    }));
    Server {
        addr,
        dir,
        stop: Some(stop),
        task: Some(task),
    }
}

impl Server {
    /// Stops accepting and waits for the server to finish its in-flight requests.
    pub async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            task.await
                .expect("server task")
                .expect("server ends cleanly");
        }
    }

    /// The Micro's `/tmp` folder on the host.
    pub fn tmp_dir(&self, micro: &str) -> PathBuf {
        self.dir.path().join(".micros").join("tmp").join(micro)
    }

    /// `GET path`.
    pub async fn get(&self, path: &str) -> Reply {
        send(
            self.addr,
            Request::get(path)
                .body(Full::new(Bytes::new()))
                .expect("request"),
        )
        .await
    }

    /// `GET path`, for a response that may be cut before or after its head: `Err` if cut.
    pub async fn get_cut(&self, path: &str) -> Result<Reply, String> {
        let reply = try_send(
            self.addr,
            Request::get(path)
                .body(Full::new(Bytes::new()))
                .expect("request"),
        )
        .await?;
        match &reply.body {
            Ok(_) => Ok(reply),
            Err(e) => Err(e.clone()),
        }
    }

    /// `POST path` with a body of known length.
    pub async fn post(&self, path: &str, body: impl Into<Bytes>) -> Reply {
        send(
            self.addr,
            Request::post(path)
                .body(Full::new(body.into()))
                .expect("request"),
        )
        .await
    }

    /// `POST path` with a chunked body (no `content-length`).
    pub async fn post_chunked(&self, path: &str, chunks: Vec<Bytes>) -> Reply {
        let stream = futures::stream::iter(
            chunks
                .into_iter()
                .map(|c| Ok::<_, std::convert::Infallible>(Frame::data(c))),
        );
        send(
            self.addr,
            Request::post(path)
                .body(StreamBody::new(stream))
                .expect("request"),
        )
        .await
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// A response as a client saw it; `body` is an error if the connection was cut mid-body.
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub headers: http::HeaderMap,
    pub body: Result<Bytes, String>,
}

impl Reply {
    /// The body as text; panics if the body was cut.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(self.body.as_ref().expect("a complete body")).into_owned()
    }

    /// A header's value as text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// Sends one request on a new connection and reads the whole response.
pub async fn send<B>(addr: SocketAddr, request: Request<B>) -> Reply
where
    B: hyper::body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    try_send(addr, request).await.expect("response head")
}

/// Sends one request; an error if the server could not be reached or the connection closed
/// before a response head arrived.
pub async fn try_send<B>(addr: SocketAddr, mut request: Request<B>) -> Result<Reply, String>
where
    B: hyper::body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let stream = TcpStream::connect(addr)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| format!("handshake: {e}"))?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    if !request.headers().contains_key(http::header::HOST) {
        request.headers_mut().insert(
            http::header::HOST,
            http::HeaderValue::from_static("micros.test"),
        );
    }
    let response: Response<hyper::body::Incoming> = sender
        .send_request(request)
        .await
        .map_err(|e| e.to_string())?;
    let (parts, body) = response.into_parts();
    let body = body
        .collect()
        .await
        .map(|c| c.to_bytes())
        .map_err(|e| e.to_string());
    Ok(Reply {
        status: parts.status,
        headers: parts.headers,
        body,
    })
}

/// Limits with a short execution time, so that time-limit tests stay fast.
pub fn short_limits(time: Duration) -> Limits {
    Limits {
        execution_time: time,
        ..Limits::default()
    }
}

/// Sends raw bytes on a new connection and reads until the server closes it (or `wait` passes).
pub async fn raw(addr: SocketAddr, bytes: &[u8], wait: Duration) -> String {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    stream.write_all(bytes).await.expect("send");
    let mut response = Vec::new();
    let _ = tokio::time::timeout(wait, stream.read_to_end(&mut response)).await;
    String::from_utf8_lossy(&response).into_owned()
}

/// The folder holding the manifest snapshot cases.
pub fn manifests_dir() -> &'static Path {
    Path::new("tests/manifests")
}

/// Checks each case folder under `root` (at least `min` of them) against its `expected.txt`:
/// `render` of the folder must equal it. With `BLESS=1` set, the files are rewritten instead.
pub fn check_snapshots(root: &Path, min: usize, render: impl Fn(&Path) -> String) {
    let mut cases: Vec<PathBuf> = std::fs::read_dir(root)
        .expect("the snapshot folder")
        .map(|e| e.expect("a case").path())
        .collect();
    cases.sort();
    assert!(cases.len() >= min, "the snapshot cases are missing");
    let bless = std::env::var_os("BLESS").is_some();
    let mut failures = Vec::new();
    for case in cases {
        let actual = render(&case);
        let expected_file = case.join("expected.txt");
        if bless {
            std::fs::write(&expected_file, &actual).expect("write a snapshot");
            continue;
        }
        let expected = std::fs::read_to_string(&expected_file).unwrap_or_default();
        if actual != expected {
            failures.push(format!(
                "{}:\n--- expected\n{expected}--- actual\n{actual}",
                case.display()
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} snapshot(s) differ:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
