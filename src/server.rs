//! Layer 8, the server: many apps hosted at once from one state folder, each at its own host
//! name and its current release, deployed to with `micros push` through the admin API.

mod api;
mod bundle;
mod config;
mod hosts;
mod logs;
mod registry;
mod space;

use std::future::Future;
use std::net::Ipv6Addr;
use std::sync::Arc;

use anyhow::{Context as _, bail};

use http::header::{HeaderValue, LOCATION, RETRY_AFTER};
use http::{Response, StatusCode};
use tokio::net::TcpListener;
use tracing::Instrument as _;

use crate::sandbox::ResponseBody;
use crate::serving::http::{AbortOnDrop, FrontDoorRequest, Handler, SHUTDOWN_GRACE, Tls, accept};
pub use crate::serving::http::{H2_MAX_CONCURRENT_STREAMS, RELOAD_SETTLE, TlsConfig};
pub use config::{
    DEFAULT_APP_MAX_IN_FLIGHT, DEFAULT_DOMAIN, DEFAULT_KEEP_RELEASES, ServerConfig,
    default_state_dir,
};
use hosts::{Destination, request_host};
pub use logs::LogLayer;
use space::{Space, page};

/// The path of the admin API on the server's own host.
pub const API_PREFIX: &str = api::PREFIX;

/// Packs the app of `manifest` for `micros push`: its `Spacefile.toml` and each Micro's `src`
/// (with its component), less what `.spaceignore` and the default ignores leave out, as a gzip'd
/// tar; the same app always packs to the same bytes.
pub fn pack(manifest: &crate::spec::manifest::Manifest) -> anyhow::Result<Vec<u8>> {
    bundle::pack(manifest)
}

/// A server of many apps, loaded from its state folder.
#[derive(Clone)]
pub struct Server {
    space: Arc<Space>,
    /// The certificates, with [`ServerConfig::tls`].
    tls: Option<Tls>,
}

impl Server {
    /// Reads the certificates (with [`ServerConfig::tls`]; a file missing or unusable is an error
    /// naming it and its flag), opens the state folder and loads every app at its current
    /// release. On the first start it makes the operator and returns their deploy token: the
    /// only time it is shown.
    pub fn open(config: ServerConfig) -> anyhow::Result<(Self, Option<String>)> {
        let tls = config.tls.as_ref().map(Tls::load).transpose()?;
        let (space, token) = Space::open(config)?;
        Ok((
            Self {
                space: Arc::new(space),
                tls,
            },
            token,
        ))
    }

    /// Serves every app on `listener` until `shutdown` resolves, then lets the requests in
    /// flight finish (up to the execution limit plus a grace). With [`ServerConfig::tls`] the
    /// listener speaks HTTPS (HTTP/2 and HTTP/1.1, as ALPN chooses), and the certificates are
    /// reloaded whenever their files change; without, plain HTTP/1.1.
    pub async fn serve(
        self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()>,
    ) -> anyhow::Result<()> {
        self.serve_all(listener, None, shutdown).await
    }

    /// As [`Server::serve`] with TLS, and beside it a plain HTTP listener, `redirect`, that
    /// answers every request with a permanent redirect (308) to the same host, path and query
    /// over HTTPS, at `listener`'s port. Fails without [`ServerConfig::tls`].
    pub async fn serve_with_redirect(
        self,
        listener: TcpListener,
        redirect: TcpListener,
        shutdown: impl Future<Output = ()>,
    ) -> anyhow::Result<()> {
        if self.tls.is_none() {
            bail!(
                "a redirect listener sends clients to HTTPS, which this server does not speak: \
                 give it certificates (--tls-cert and --tls-key)"
            );
        }
        self.serve_all(listener, Some(redirect), shutdown).await
    }

    /// Serves `listener`, and `redirect` if given, until `shutdown` resolves.
    async fn serve_all(
        self,
        listener: TcpListener,
        redirect: Option<TcpListener>,
        shutdown: impl Future<Output = ()>,
    ) -> anyhow::Result<()> {
        let front_door = self.space.config().app.front_door.clone();
        let wait = self.space.config().app.limits.execution_time + SHUTDOWN_GRACE;
        let https_port = listener
            .local_addr()
            .context("cannot read the listen address")?
            .port();
        let (acceptor, _reloading) = match &self.tls {
            Some(tls) => {
                tracing::info!(
                    hosts = tls.hosts().len(),
                    "TLS: serving HTTPS (HTTP/2 and HTTP/1.1) with the default certificate, and \
                     those of the hosts with their own; reloaded when their files change"
                );
                let reloading = AbortOnDrop(tokio::spawn(tls.watch()?));
                (Some(tls.acceptor()), Some(reloading))
            }
            None => (None, None),
        };
        let (stop, mut stopped) = tokio::sync::watch::channel(false);
        let main = async {
            let graceful = accept(self, listener, &front_door, acceptor, shutdown).await;
            stop.send_replace(true);
            graceful
        };
        let plain = async {
            match redirect {
                Some(redirect) => Some(
                    accept(
                        Redirect { https_port },
                        redirect,
                        &front_door,
                        None,
                        async move {
                            let _ = stopped.wait_for(|stop| *stop).await;
                        },
                    )
                    .await,
                ),
                None => None,
            }
        };
        let (graceful, redirected) = tokio::join!(main, plain);
        let in_flight = async {
            graceful.shutdown().await;
            if let Some(redirected) = redirected {
                redirected.shutdown().await;
            }
        };
        if tokio::time::timeout(wait, in_flight).await.is_err() {
            tracing::warn!("shutdown: some requests did not finish in time");
        }
        Ok(())
    }
}

impl Handler for Server {
    fn handle(
        &self,
        request: FrontDoorRequest,
    ) -> impl Future<Output = Response<ResponseBody>> + Send {
        dispatch(Arc::clone(&self.space), request)
    }
}

/// Answers one request: by its host, an app's, the admin API's, or a page that says no app
/// is there.
async fn dispatch(space: Arc<Space>, request: FrontDoorRequest) -> Response<ResponseBody> {
    let host = match request_host(request.uri(), request.headers()) {
        Ok(host) => host.unwrap_or_default(),
        Err(message) => return page(StatusCode::BAD_REQUEST, &message),
    };
    match space.destination(&host) {
        Destination::Server if request.uri().path().starts_with(api::PREFIX) => {
            api::handle(&space, request).await
        }
        Destination::Server => page(
            StatusCode::NOT_FOUND,
            &format!(
                "this is the micros server; apps are served at <app>.{}, and its API at {}",
                space.config().domain,
                api::PREFIX
            ),
        ),
        Destination::App(name) => match space.hosted(&name).and_then(|h| h.serve()) {
            Some((live, permit)) => match permit {
                Some(permit) => {
                    let response = live.app.handle(request).instrument(live.span.clone()).await;
                    response.map(|body| body.on_end(move |_| drop(permit)))
                }
                None => {
                    tracing::warn!(
                        app = %name,
                        error.type = "app_in_flight",
                        limit = space.config().app_max_in_flight,
                        "request refused: the app has its limit of executions in flight"
                    );
                    let mut response = page(
                        StatusCode::SERVICE_UNAVAILABLE,
                        &format!(
                            "app `{name}`: {} executions already in flight, the app's limit; \
                             retry shortly",
                            space.config().app_max_in_flight
                        ),
                    );
                    response
                        .headers_mut()
                        .insert(RETRY_AFTER, HeaderValue::from_static("1"));
                    response
                }
            },
            None => page(
                StatusCode::NOT_FOUND,
                &format!("no app is served at `{host}`: push one named `{name}` to serve it here"),
            ),
        },
        Destination::Unknown => page(
            StatusCode::NOT_FOUND,
            &format!("no app is served at `{host}` on this micros server"),
        ),
    }
}

/// What answers on the plain HTTP listener beside HTTPS: a permanent redirect (308, which keeps
/// the method and the body) of every request to the same host, path and query over HTTPS.
#[derive(Clone)]
struct Redirect {
    /// The port of the HTTPS listener, named in the redirect unless it is 443.
    https_port: u16,
}

impl Handler for Redirect {
    fn handle(
        &self,
        request: FrontDoorRequest,
    ) -> impl Future<Output = Response<ResponseBody>> + Send {
        std::future::ready(redirect(self.https_port, &request))
    }
}

/// The redirect of `request` to HTTPS at `https_port`: its host (normalised), path and query;
/// 400 if it names no host, or something that is not a host name.
fn redirect<B>(https_port: u16, request: &http::Request<B>) -> Response<ResponseBody> {
    let host = match request_host(request.uri(), request.headers()) {
        Ok(Some(host)) if !host.is_empty() => host,
        Ok(_) => {
            return page(
                StatusCode::BAD_REQUEST,
                "this listener sends every request on to HTTPS at its host: send a Host header",
            );
        }
        Err(message) => return page(StatusCode::BAD_REQUEST, &message),
    };
    let is_name = host
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.' || b == b'_');
    let is_ipv6 = host
        .strip_prefix('[')
        .and_then(|rest| rest.strip_suffix(']'))
        .is_some_and(|ip| ip.parse::<Ipv6Addr>().is_ok());
    if !is_name && !is_ipv6 {
        return page(
            StatusCode::BAD_REQUEST,
            &format!("`{host}` is not a host name: send the Host header of the site you want"),
        );
    }
    let port = if https_port == 443 {
        String::new()
    } else {
        format!(":{https_port}")
    };
    let path = request
        .uri()
        .path_and_query()
        .map(http::uri::PathAndQuery::as_str)
        .filter(|path| path.starts_with('/'))
        .unwrap_or("/");
    let location = format!("https://{host}{port}{path}");
    let Ok(value) = HeaderValue::from_str(&location) else {
        return page(
            StatusCode::BAD_REQUEST,
            "the request's target cannot be sent on to HTTPS: send a plain path",
        );
    };
    let mut response = page(
        StatusCode::PERMANENT_REDIRECT,
        &format!("this server speaks HTTPS: {location}"),
    );
    response.headers_mut().insert(LOCATION, value);
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn location(port: u16, target: &str, host: Option<&str>) -> (u16, Option<String>) {
        let mut request = http::Request::get(target);
        if let Some(host) = host {
            request = request.header("host", host);
        }
        let response = redirect(port, &request.body(()).unwrap());
        (
            response.status().as_u16(),
            response
                .headers()
                .get(LOCATION)
                .map(|v| v.to_str().unwrap().to_string()),
        )
    }

    #[test]
    fn the_redirect_keeps_host_path_and_query_and_names_the_https_port() {
        assert_eq!(
            location(8443, "/path?q=1", Some("Notes.Localhost:8080")),
            (308, Some("https://notes.localhost:8443/path?q=1".into()))
        );
        assert_eq!(
            location(443, "/", Some("example.org.")),
            (308, Some("https://example.org/".into()))
        );
        assert_eq!(
            location(443, "http://a.example/x", None),
            (308, Some("https://a.example/x".into()))
        );
        assert_eq!(
            location(443, "*", Some("[::1]:80")),
            (308, Some("https://[::1]/".into()))
        );
    }

    #[test]
    fn the_redirect_refuses_what_names_no_host() {
        assert_eq!(location(443, "/", None), (400, None));
        assert_eq!(location(443, "/", Some("a@b")), (400, None));
        assert_eq!(location(443, "/", Some("a/b")), (400, None));
        assert_eq!(location(443, "http://a/", Some("b")), (400, None));
    }
}
