//! The client side of the admin API: where logins are kept, connections (plain or TLS) to a
//! server, and one request with its JSON answer, its body sent with a progress line if asked.

use std::collections::BTreeMap;
use std::io::{IsTerminal as _, Write as _};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::task::{Context, Poll};

use anyhow::{Context as _, bail};
use bytes::Bytes;
use http_body_util::BodyExt as _;
use hyper_util::rt::TokioIo;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::remote::ServerArg;

/// The deploy tokens `micros login` stored, by server URL.
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Logins {
    /// The server used when none is named.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) default: Option<String>,
    /// Tokens by server URL.
    #[serde(default)]
    pub(crate) servers: BTreeMap<String, Login>,
}

/// The login to one server.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Login {
    /// The deploy token.
    pub(crate) token: String,
}

/// Where `micros login` keeps tokens: `$MICROS_CONFIG`, else `$XDG_CONFIG_HOME/micros/servers.toml`,
/// else `~/.config/micros/servers.toml` (mode 0600).
pub(crate) fn logins_path() -> anyhow::Result<PathBuf> {
    if let Some(path) = std::env::var_os("MICROS_CONFIG").filter(|v| !v.is_empty()) {
        return Ok(PathBuf::from(path));
    }
    let base = std::env::var_os("XDG_CONFIG_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".config")))
        .context("neither XDG_CONFIG_HOME nor HOME is set: set MICROS_CONFIG to a file path")?;
    Ok(base.join("micros").join("servers.toml"))
}

pub(crate) fn read_logins(path: &Path) -> anyhow::Result<Logins> {
    match std::fs::read_to_string(path) {
        Ok(text) => {
            toml::from_str(&text).with_context(|| format!("`{}` is damaged", path.display()))
        }
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(Logins::default()),
        Err(error) => Err(error).with_context(|| format!("cannot read `{}`", path.display())),
    }
}

pub(crate) fn write_logins(path: &Path, logins: &Logins) -> anyhow::Result<()> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("cannot make `{}`", parent.display()))?;
    }
    let text = toml::to_string(logins).context("cannot write the logins")?;
    let tmp = path.with_extension("toml.tmp");
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options
        .open(&tmp)
        .with_context(|| format!("cannot write `{}`", tmp.display()))?;
    std::io::Write::write_all(&mut file, text.as_bytes())?;
    file.sync_all()?;
    std::fs::rename(&tmp, path).with_context(|| format!("cannot write `{}`", path.display()))
}

/// A server to talk to: its address and the token to send.
pub(crate) struct Remote {
    /// The server's URL.
    pub(crate) url: String,
    /// The deploy token sent to it.
    pub(crate) token: String,
}

impl Remote {
    /// The server named by `--server`, or the default one, with its stored token.
    pub(crate) fn from(server: &ServerArg) -> anyhow::Result<Self> {
        let path = logins_path()?;
        let logins = read_logins(&path)?;
        let url = match &server.server {
            Some(url) => normalize_url(url)?,
            None => logins
                .default
                .clone()
                .context("no server: `micros login URL` first, or name one with `--server URL`")?,
        };
        let token = logins
            .servers
            .get(&url)
            .map(|l| l.token.clone())
            .with_context(|| format!("not logged in to {url}: `micros login {url}` first"))?;
        Ok(Self { url, token })
    }

    /// Calls the API: `method path` with `body`; the JSON answer, or the API's error as an error.
    pub(crate) async fn call(
        &self,
        method: http::Method,
        path: &str,
        body: Bytes,
    ) -> anyhow::Result<Value> {
        self.send(method, path, Upload::new(body)).await
    }

    /// As [`Remote::call`], the body sent with a line on stderr saying how much of it went,
    /// and `then` said once all of it went.
    pub(crate) async fn upload(
        &self,
        method: http::Method,
        path: &str,
        body: Bytes,
        then: &'static str,
    ) -> anyhow::Result<Value> {
        self.send(method, path, Upload::with_progress(body, then))
            .await
    }

    /// The URL of an app served at `host` by this server: the server's scheme and port.
    pub(crate) fn app_url(&self, host: &str) -> String {
        let (scheme, rest) = self.url.split_once("://").unwrap_or(("http", &self.url));
        let port = rest
            .parse::<http::uri::Authority>()
            .ok()
            .and_then(|authority| authority.port_u16())
            .map(|port| format!(":{port}"))
            .unwrap_or_default();
        format!("{scheme}://{host}{port}")
    }

    async fn send(&self, method: http::Method, path: &str, body: Upload) -> anyhow::Result<Value> {
        let (status, answer) = request(&self.url, &self.token, method, path, body).await?;
        if status.is_success() {
            Ok(answer)
        } else {
            let message = answer
                .get("error")
                .and_then(Value::as_str)
                .map_or_else(|| answer.to_string(), str::to_string);
            bail!("{message} ({status})")
        }
    }
}

/// `http://host:port` or `https://host:port`, without a trailing slash.
pub(crate) fn normalize_url(url: &str) -> anyhow::Result<String> {
    let url = url.trim().trim_end_matches('/');
    let uri: http::Uri = url
        .parse()
        .with_context(|| format!("`{url}` is not a URL such as http://localhost:4200"))?;
    match uri.scheme_str() {
        Some("http" | "https") => {}
        _ => bail!("`{url}` is not a URL such as http://localhost:4200 or https://example.org"),
    }
    if uri.authority().is_none() {
        bail!("`{url}` names no host");
    }
    Ok(url.to_string())
}

/// Bytes both ways to a server: TCP, or TLS over it.
trait Stream: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send {}

impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send> Stream for T {}

/// A fresh HTTP/1.1 connection to the server at `url`, over TLS for `https://` (see
/// [`tls_client`]): the sender of its requests, and the URL's authority (their `Host`).
pub(crate) async fn connect(
    url: &str,
) -> anyhow::Result<(
    hyper::client::conn::http1::SendRequest<Upload>,
    http::uri::Authority,
)> {
    let uri: http::Uri = url.parse()?;
    let authority = uri.authority().context("the URL names no host")?.clone();
    let https = uri.scheme_str() == Some("https");
    let port = authority.port_u16().unwrap_or(if https { 443 } else { 80 });
    let tcp = if is_localhost(authority.host()) {
        // Names under `localhost` are loopback (RFC 6761), as browsers and curl take them;
        // not every system resolver does.
        tokio::net::TcpStream::connect((std::net::Ipv4Addr::LOCALHOST, port)).await
    } else {
        tokio::net::TcpStream::connect((authority.host(), port)).await
    }
    .with_context(|| format!("cannot reach {url}"))?;
    let stream: Box<dyn Stream> = if https {
        let host = authority
            .host()
            .trim_start_matches('[')
            .trim_end_matches(']');
        let name = rustls::pki_types::ServerName::try_from(host.to_string())
            .with_context(|| format!("`{url}` names no host a certificate can be for"))?;
        let tls = tls_client()?
            .connect(name, tcp)
            .await
            .with_context(|| format!("no TLS with {url}"))?;
        Box::new(tls)
    } else {
        Box::new(tcp)
    };
    let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .with_context(|| format!("cannot speak HTTP with {url}"))?;
    tokio::spawn(connection);
    Ok((sender, authority))
}

/// Whether `host` is `localhost` or a name under it.
fn is_localhost(host: &str) -> bool {
    let host = host.trim_end_matches('.').to_ascii_lowercase();
    host == "localhost" || host.ends_with(".localhost")
}

/// The TLS client of the server commands. It trusts the CAs in the PEM file `$SSL_CERT_FILE`
/// if that is set (a private CA's, as OpenSSL and curl read it), else the Mozilla roots built in.
pub(crate) fn tls_client() -> anyhow::Result<tokio_rustls::TlsConnector> {
    let mut roots = rustls::RootCertStore::empty();
    match std::env::var_os("SSL_CERT_FILE").filter(|v| !v.is_empty()) {
        Some(path) => {
            use rustls::pki_types::pem::PemObject as _;
            let path = PathBuf::from(path);
            let pem = std::fs::read(&path)
                .with_context(|| format!("SSL_CERT_FILE `{}`: cannot read it", path.display()))?;
            for cert in rustls::pki_types::CertificateDer::pem_slice_iter(&pem) {
                let cert = cert.with_context(|| {
                    format!(
                        "SSL_CERT_FILE `{}`: not a PEM file of certificates",
                        path.display()
                    )
                })?;
                roots.add(cert).with_context(|| {
                    format!(
                        "SSL_CERT_FILE `{}`: a certificate cannot be used",
                        path.display()
                    )
                })?;
            }
            if roots.is_empty() {
                bail!(
                    "SSL_CERT_FILE `{}` holds no certificate: give a PEM file of the CAs to \
                     trust, or unset it to trust the usual ones",
                    path.display()
                );
            }
        }
        None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
    }
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("the TLS library refused its own default protocol versions")?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(tokio_rustls::TlsConnector::from(std::sync::Arc::new(
        config,
    )))
}

/// One request to the API over a fresh connection: the status and the JSON answer.
pub(crate) async fn request(
    url: &str,
    token: &str,
    method: http::Method,
    path: &str,
    body: Upload,
) -> anyhow::Result<(http::StatusCode, Value)> {
    let (mut sender, authority) = connect(url).await?;
    let request = http::Request::builder()
        .method(method)
        .uri(format!("{}{path}", micros::server::API_PREFIX))
        .header(http::header::HOST, authority.as_str())
        .header(http::header::AUTHORIZATION, format!("Bearer {token}"))
        .header(http::header::CONTENT_LENGTH, body.len())
        .body(body)?;
    let response = sender
        .send_request(request)
        .await
        .with_context(|| format!("{url} did not answer"))?;
    let status = response.status();
    let bytes = response.into_body().collect().await?.to_bytes();
    let answer = serde_json::from_slice(&bytes)
        .unwrap_or_else(|_| json!({ "error": String::from_utf8_lossy(&bytes).trim().to_string() }));
    Ok((status, answer))
}

/// Bytes of a request body handed to the connection at a time.
const UPLOAD_CHUNK: usize = 256 * 1024;

/// A request body sent in chunks; with progress on, each chunk updates a line on stderr (a
/// terminal only: a log gets the phases, not a line per chunk).
pub(crate) struct Upload {
    rest: Bytes,
    total: u64,
    progress: bool,
    /// Said on stderr once the last byte went, terminal or not.
    then: Option<&'static str>,
}

impl Upload {
    /// `body`, sent quietly.
    pub(crate) fn new(body: Bytes) -> Self {
        Self {
            total: body.len() as u64,
            rest: body,
            progress: false,
            then: None,
        }
    }

    /// `body`, with a progress line on stderr if it is a terminal, and `then` said when it
    /// all went.
    pub(crate) fn with_progress(body: Bytes, then: &'static str) -> Self {
        Self {
            progress: std::io::stderr().is_terminal(),
            then: Some(then),
            ..Self::new(body)
        }
    }

    /// Bytes still to send.
    pub(crate) fn len(&self) -> usize {
        self.rest.len()
    }
}

impl http_body::Body for Upload {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, Self::Error>>> {
        if self.rest.is_empty() {
            return Poll::Ready(None);
        }
        let take = self.rest.len().min(UPLOAD_CHUNK);
        let chunk = self.rest.split_to(take);
        if self.progress {
            let sent = self.total - self.rest.len() as u64;
            let mut stderr = std::io::stderr().lock();
            let _ = write!(
                stderr,
                "\r  {} of {} sent ({}%)",
                bytesize::ByteSize::b(sent),
                bytesize::ByteSize::b(self.total),
                sent * 100 / self.total.max(1)
            );
            if self.rest.is_empty() {
                let _ = writeln!(stderr);
            }
        }
        if self.rest.is_empty()
            && let Some(then) = self.then.take()
        {
            eprintln!("{then}");
        }
        Poll::Ready(Some(Ok(http_body::Frame::data(chunk))))
    }

    fn is_end_stream(&self) -> bool {
        self.rest.is_empty()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        http_body::SizeHint::with_exact(self.rest.len() as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_under_localhost_are_loopback() {
        for host in ["localhost", "micros.localhost", "A.Micros.LOCALHOST."] {
            assert!(is_localhost(host), "{host}");
        }
        for host in [
            "localhost.example.org",
            "notlocalhost",
            "127.0.0.1",
            "example.org",
        ] {
            assert!(!is_localhost(host), "{host}");
        }
    }
}
