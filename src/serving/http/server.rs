//! The HTTP server: accepts connections, serves each on its own task, shuts down gracefully.
//! Plain connections speak HTTP/1.1; with TLS (`micros server --tls-cert`), each is handshaken
//! on its own task and speaks HTTP/2 or HTTP/1.1, as ALPN chose.

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use http::header::{CONNECTION, CONTENT_TYPE, HOST, HeaderValue};
use http::{Request, Response};
use hyper::server::conn::{http1, http2};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::graceful::{GracefulShutdown, Watcher};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::Instant;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;
use tracing::Instrument as _;

use super::body::WatchedBody;
use super::conformance::{self, Refusal};
use super::linger::Linger;
use crate::app::App;
use crate::sandbox::{OverTls, ResponseBody};
use crate::serving::actions::SystemClock;
use crate::settings::limits::FrontDoor;

/// Requests one HTTP/2 connection may have open at once (its `SETTINGS_MAX_CONCURRENT_STREAMS`),
/// the figure RFC 9113 recommends as the least: a browser loading a page asks for a few dozen
/// things at once, and one client cannot hold more than this many executions through one
/// connection (each app's cap, and the pool's, still hold past it).
pub const H2_MAX_CONCURRENT_STREAMS: u32 = 100;

/// Aborts a task when dropped.
pub(crate) struct AbortOnDrop(pub(crate) tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Turns off Nagle's algorithm on an accepted connection. Otherwise a response whose body
/// follows its head in a second write (an execution still running after its head) waits for the
/// client's delayed ACK of the head: up to 40 ms on Linux, the whole p99 of a loaded server.
fn send_without_delay(stream: &tokio::net::TcpStream, peer: std::net::SocketAddr) {
    if let Err(error) = stream.set_nodelay(true) {
        tracing::debug!("could not turn off Nagle's algorithm for {peer}: {error}");
    }
}

/// Extra time, past the execution limit, that shutdown waits for in-flight requests.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// A request as the front door hands it on: its body tells the connection whether it was read.
pub(crate) type FrontDoorRequest = Request<WatchedBody<hyper::body::Incoming>>;

/// What answers the requests a listener accepts: one app, or a server of many.
pub(crate) trait Handler: Clone + Send + Sync + 'static {
    /// The answer to one request; never fails (every error is a response).
    fn handle(
        &self,
        request: FrontDoorRequest,
    ) -> impl Future<Output = Response<ResponseBody>> + Send;
}

impl Handler for App {
    fn handle(
        &self,
        request: FrontDoorRequest,
    ) -> impl Future<Output = Response<ResponseBody>> + Send {
        App::handle(self, request)
    }
}

/// Serves `app` on `listener` until `shutdown` resolves; then stops accepting, lets in-flight
/// requests finish (up to the execution limit plus 5 s of grace) and returns.
pub async fn serve(
    app: App,
    listener: TcpListener,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    match app.inner.auth {
        crate::services::auth::AuthMode::Off => tracing::warn!(
            "AUTHENTICATION IS OFF (--no-auth): every route of every Micro is open to anyone who \
             can reach {}; use this for local development only",
            listener
                .local_addr()
                .map_or_else(|_| "this server".into(), |a| a.to_string())
        ),
        crate::services::auth::AuthMode::Required if !app.inner.credentials.has_owner_token() => {
            tracing::warn!(
                "no owner token yet: private routes are closed to everyone until one is made \
                 with `micros owner-token --rotate`"
            );
        }
        crate::services::auth::AuthMode::Required => {}
    }
    // Scheduled actions run while the app is served; dropping the task stops them.
    let (stop_schedule, schedule_stopped) = tokio::sync::watch::channel(false);
    let mut schedule = {
        let app = app.clone();
        AbortOnDrop(tokio::spawn(async move {
            app.run_schedule(Arc::new(SystemClock), schedule_stopped)
                .await
        }))
    };
    let front_door = app.inner.front_door.clone();
    let graceful = accept(app.clone(), listener, &front_door, None, shutdown).await;
    let _ = stop_schedule.send(true);
    let wait = app
        .inner
        .micros
        .iter()
        .filter_map(|m| match m {
            crate::app::Runtime::Sandbox(sandbox) => Some(sandbox.limits().execution_time),
            crate::app::Runtime::Site(_) => None,
        })
        .max()
        .unwrap_or_default()
        + SHUTDOWN_GRACE;
    tracing::info!(
        "shutting down: waiting up to {} for in-flight requests and actions",
        humantime::format_duration(wait)
    );
    let in_flight = async {
        graceful.shutdown().await;
        let _ = (&mut schedule.0).await;
    };
    match tokio::time::timeout(wait, in_flight).await {
        Ok(()) => tracing::info!("stopped: every request and action in flight finished"),
        Err(_) => tracing::warn!("shutdown: some requests or actions did not finish in time"),
    }
    Ok(())
}

/// Accepts connections on `listener` and answers their requests with `handler`, under the front
/// door's limits, until `shutdown` resolves. Returns the connections still open, to be waited
/// for with [`GracefulShutdown::shutdown`]. With `tls`, each connection is handshaken first
/// (within the header read timeout) and speaks HTTP/2 or HTTP/1.1, as ALPN chose; without it,
/// HTTP/1.1.
pub(crate) async fn accept<H: Handler>(
    handler: H,
    listener: TcpListener,
    front_door: &FrontDoor,
    tls: Option<TlsAcceptor>,
    shutdown: impl Future<Output = ()>,
) -> GracefulShutdown {
    let graceful = GracefulShutdown::new();
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(front_door.header_read_timeout)
        .max_headers(front_door.max_headers)
        .max_header_size(front_door.max_header_bytes);
    let secure = tls.map(|acceptor| {
        Arc::new(Secure {
            handler: handler.clone(),
            acceptor,
            http1: builder.clone(),
            http2: http2_builder(front_door),
            handshake_timeout: front_door.header_read_timeout,
            idle_timeout: front_door.header_read_timeout,
            max_headers: front_door.max_headers,
        })
    });
    // Tells HTTP/2 connections that the server stops: hyper's graceful shutdown reaches only the
    // connections it watches, and an HTTP/2 one also closes itself when idle.
    let stopping = tokio::sync::watch::Sender::new(false);
    let connections = Arc::new(tokio::sync::Semaphore::new(front_door.max_connections));
    tokio::pin!(shutdown);
    loop {
        // At the cap, stop accepting: new clients wait in the listen queue until one closes.
        let permit = tokio::select! {
            permit = connections.clone().acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => break,
            },
            () = &mut shutdown => break,
        };
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    // Running out of file descriptors must not end the server: wait and retry.
                    tracing::warn!("accept failed: {error}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        send_without_delay(&stream, peer);
        let linger = Linger::new(&stream, front_door.linger_time, front_door.linger_bytes);
        let span = tracing::debug_span!("connection", %peer);
        if let Some(secure) = &secure {
            let secure = Arc::clone(secure);
            let watcher = graceful.watcher();
            let shutdown = stopping.subscribe();
            tokio::spawn(
                async move {
                    secure.serve(stream, peer, linger, watcher, shutdown).await;
                    drop(permit);
                }
                .instrument(span),
            );
            continue;
        }
        // Whether the request being answered still has body bytes on the way.
        let unread = Arc::new(AtomicBool::new(false));
        let service = http1_service(handler.clone(), peer, &unread, false);
        let connection = graceful.watch(builder.serve_connection(TokioIo::new(stream), service));
        tokio::spawn(
            async move {
                close_http1(connection.await, &unread, linger).await;
                drop(permit);
            }
            .instrument(span),
        );
    }
    drop(listener);
    stopping.send_replace(true);
    graceful
}

/// The service of an HTTP/1.1 connection from `peer`: the framing rules first, then `handler`;
/// an error answered before the request's body was read ends the connection. `unread` tells the
/// connection whether the request being answered still has body bytes on the way; `over_tls`
/// marks each request as having come over the server's own TLS.
fn http1_service<H: Handler>(
    handler: H,
    peer: std::net::SocketAddr,
    unread: &Arc<AtomicBool>,
    over_tls: bool,
) -> impl hyper::service::Service<
    Request<hyper::body::Incoming>,
    Response = Response<ResponseBody>,
    Error = Infallible,
    Future = impl Future<Output = Result<Response<ResponseBody>, Infallible>> + Send,
> + Send
+ 'static {
    let unread = Arc::clone(unread);
    service_fn(move |request: hyper::Request<hyper::body::Incoming>| {
        let handler = handler.clone();
        let (mut parts, body) = request.into_parts();
        let body = WatchedBody::new(body, &unread);
        let unread = Arc::clone(&unread);
        parts.extensions.insert(super::ClientAddr(peer));
        if over_tls {
            parts.extensions.insert(OverTls);
        }
        let refusal = conformance::check(parts.version, &parts.headers);
        let request = Request::from_parts(parts, body);
        async move {
            let mut response = match refusal {
                Some(refusal) => refused(refusal),
                None => handler.handle(request).await,
            };
            // An error answered before the body was read: the client is still sending, so the
            // connection ends after this answer, with a lingering close.
            let status = response.status();
            if unread.load(Ordering::Relaxed)
                && (status.is_client_error() || status.is_server_error())
            {
                response
                    .headers_mut()
                    .insert(CONNECTION, HeaderValue::from_static("close"));
            }
            Ok::<_, Infallible>(response)
        }
    })
}

/// Closes an HTTP/1.1 connection once hyper is done with it (`ended`): with a lingering close
/// if the client may still be sending.
async fn close_http1(ended: Result<(), hyper::Error>, unread: &AtomicBool, linger: Option<Linger>) {
    if let Err(error) = &ended {
        tracing::debug!("connection ended with an error: {error}");
    }
    // After a request hyper refused (400, 431: answered, the rest unread) or an answer given
    // before the body was read, the client may still be sending. A header timeout answers
    // nothing, so there is nothing to wait for.
    let unread = match &ended {
        Err(error) => !error.is_timeout(),
        Ok(()) => unread.load(Ordering::Relaxed),
    };
    if let Some(linger) = linger {
        // Boxed: a connection that does not linger does not carry its state.
        Box::pin(linger.close(unread)).await;
    }
}

/// The HTTP/2 side of the front door, under its limits: the header list's bytes, the requests
/// open at once ([`H2_MAX_CONCURRENT_STREAMS`]); hyper's own guards against floods of reset
/// streams stay on.
fn http2_builder(front_door: &FrontDoor) -> http2::Builder<TokioExecutor> {
    let mut builder = http2::Builder::new(TokioExecutor::new());
    builder
        .timer(TokioTimer::new())
        .max_concurrent_streams(H2_MAX_CONCURRENT_STREAMS)
        .max_header_list_size(u32::try_from(front_door.max_header_bytes).unwrap_or(u32::MAX));
    builder
}

/// Time an HTTP/2 connection being closed (the server stopping, or the connection idle) is
/// given, once it has no request open, to finish: its client answers the GOAWAY's ping and
/// closes, which takes a round trip. A client that does not (one that never even sent its
/// connection preface) is dropped after it, so that it cannot hold the shutdown.
const H2_CLOSE_GRACE: Duration = Duration::from_secs(1);

/// What a listener with TLS shares among its connections.
struct Secure<H> {
    /// What answers the requests.
    handler: H,
    /// What each handshake goes through (the certificates, ALPN).
    acceptor: TlsAcceptor,
    /// HTTP/1.1 as over a plain connection.
    http1: http1::Builder,
    /// HTTP/2 under the front door's limits ([`http2_builder`]).
    http2: http2::Builder<TokioExecutor>,
    /// Time for the client to finish its handshake.
    handshake_timeout: Duration,
    /// Time an HTTP/2 connection may stay without a request open before it is closed.
    idle_timeout: Duration,
    /// Headers of an HTTP/2 request; 431 past it.
    max_headers: usize,
}

impl<H: Handler> Secure<H> {
    /// Serves one connection: its handshake, then HTTP/2 if ALPN chose it, else HTTP/1.1 as a
    /// plain connection is served (with its lingering close). The server's shutdown waits for
    /// it as long as `watcher` is held; `shutdown` says when the server stops accepting.
    async fn serve(
        &self,
        stream: TcpStream,
        peer: std::net::SocketAddr,
        linger: Option<Linger>,
        watcher: Watcher,
        shutdown: tokio::sync::watch::Receiver<bool>,
    ) {
        let mut stopping = shutdown.clone();
        let handshake = tokio::time::timeout(self.handshake_timeout, self.acceptor.accept(stream));
        let handshake = tokio::select! {
            handshake = handshake => handshake,
            // A handshake not finished yet has nothing to finish: the server need not wait.
            _ = stopping.wait_for(|stop| *stop) => return,
        };
        let stream = match handshake {
            Ok(Ok(stream)) => stream,
            Ok(Err(error)) => {
                tracing::debug!("TLS handshake failed: {error}");
                return;
            }
            Err(_) => {
                tracing::debug!(
                    "no TLS handshake within {}",
                    humantime::format_duration(self.handshake_timeout)
                );
                return;
            }
        };
        if stream.get_ref().1.alpn_protocol() == Some(b"h2") {
            // Streams end on their own in HTTP/2: nothing is left to linger for.
            drop(linger);
            self.serve_http2(stream, peer, watcher, shutdown).await;
            return;
        }
        let unread = Arc::new(AtomicBool::new(false));
        let service = http1_service(self.handler.clone(), peer, &unread, true);
        let connection = watcher.watch(self.http1.serve_connection(TokioIo::new(stream), service));
        close_http1(connection.await, &unread, linger).await;
    }

    /// Serves an HTTP/2 connection until the client closes it, it has had no request open for
    /// the idle timeout, or the server shuts down. Each request carries its `:authority` as its
    /// `Host` (RFC 9113 §8.3.1), as an HTTP/1.1 request would.
    async fn serve_http2(
        &self,
        stream: TlsStream<TcpStream>,
        peer: std::net::SocketAddr,
        watcher: Watcher,
        mut shutdown: tokio::sync::watch::Receiver<bool>,
    ) {
        let idle = Arc::new(Idle::new());
        // No connection-level framing to watch in HTTP/2: the flag is the bodies' to set, and
        // nobody reads it.
        let unread = Arc::new(AtomicBool::new(false));
        let handler = self.handler.clone();
        let max_headers = self.max_headers;
        let service = {
            let idle = Arc::clone(&idle);
            service_fn(move |request: hyper::Request<hyper::body::Incoming>| {
                let open = Open::new(&idle);
                let handler = handler.clone();
                let (mut parts, body) = request.into_parts();
                let body = WatchedBody::new(body, &unread);
                parts.extensions.insert(super::ClientAddr(peer));
                parts.extensions.insert(OverTls);
                if !parts.headers.contains_key(HOST)
                    && let Some(authority) = parts.uri.authority()
                    && let Ok(host) = HeaderValue::from_str(authority.as_str())
                {
                    parts.headers.insert(HOST, host);
                }
                let refusal = if parts.headers.len() > max_headers {
                    Some(Refusal {
                        status: http::StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
                        message: "too many request headers: send fewer",
                    })
                } else {
                    conformance::check(parts.version, &parts.headers)
                };
                let request = Request::from_parts(parts, body);
                async move {
                    let mut response = match refusal {
                        Some(refusal) => refused(refusal),
                        None => handler.handle(request).await,
                    };
                    // A connection header means nothing in HTTP/2 (RFC 9113 §8.2.2).
                    response.headers_mut().remove(CONNECTION);
                    Ok::<_, Infallible>(response.map(|body| body.on_end(move |_| drop(open))))
                }
            })
        };
        let mut connection =
            std::pin::pin!(self.http2.serve_connection(TokioIo::new(stream), service));
        // Shuts down gracefully (GOAWAY, then the end of the requests still open) when the
        // server does, or once no request has been open for the idle timeout: HTTP/2's form of
        // HTTP/1.1's header read timeout on an idle keep-alive connection, so that idle clients
        // do not hold the front door's connections. A client that then stays without a request
        // open and does not close is dropped after `H2_CLOSE_GRACE`.
        let mut closing = false;
        loop {
            let wake = if closing {
                Instant::now() + H2_CLOSE_GRACE
            } else {
                idle.deadline(self.idle_timeout)
                    .unwrap_or_else(|| Instant::now() + self.idle_timeout)
            };
            tokio::select! {
                ended = connection.as_mut() => {
                    if let Err(error) = ended {
                        tracing::debug!("HTTP/2 connection ended with an error: {error}");
                    }
                    break;
                }
                _ = shutdown.wait_for(|stop| *stop), if !closing => {
                    closing = true;
                    connection.as_mut().graceful_shutdown();
                }
                () = tokio::time::sleep_until(wake) => {
                    if closing {
                        if idle.open.load(Ordering::Acquire) == 0 {
                            tracing::debug!("HTTP/2 connection not closed by its client: dropped");
                            break;
                        }
                    } else if idle
                        .deadline(self.idle_timeout)
                        .is_some_and(|at| at <= Instant::now())
                    {
                        tracing::debug!("HTTP/2 connection idle: closing it");
                        closing = true;
                        connection.as_mut().graceful_shutdown();
                    }
                }
            }
        }
        // Until now, the server's shutdown waits for this connection.
        drop(watcher);
    }
}

/// When an HTTP/2 connection last had a request open, and how many it has open now.
struct Idle {
    /// The connection's start, which `last` counts from.
    start: Instant,
    /// Milliseconds from `start` to when the last request ended (or the connection began).
    last: AtomicU64,
    /// Requests open now.
    open: AtomicUsize,
}

impl Idle {
    /// A connection starting now, with no request open.
    fn new() -> Self {
        Self {
            start: Instant::now(),
            last: AtomicU64::new(0),
            open: AtomicUsize::new(0),
        }
    }

    /// When the connection will have been idle for `timeout`, or `None` while a request is open.
    fn deadline(&self, timeout: Duration) -> Option<Instant> {
        if self.open.load(Ordering::Acquire) > 0 {
            return None;
        }
        Some(self.start + Duration::from_millis(self.last.load(Ordering::Acquire)) + timeout)
    }
}

/// One request open on an HTTP/2 connection, from its head to the end of its answer (or until
/// either is dropped).
struct Open(Arc<Idle>);

impl Open {
    /// A request opening on the connection of `idle`.
    fn new(idle: &Arc<Idle>) -> Self {
        idle.open.fetch_add(1, Ordering::AcqRel);
        Self(Arc::clone(idle))
    }
}

impl Drop for Open {
    fn drop(&mut self) {
        let since_start = u64::try_from(self.0.start.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.0.last.fetch_max(since_start, Ordering::AcqRel);
        self.0.open.fetch_sub(1, Ordering::AcqRel);
    }
}

/// The answer to a request refused at the front door: its status, one line of text, and the end
/// of the connection.
fn refused(refusal: Refusal) -> Response<ResponseBody> {
    tracing::info!(
        status = refusal.status.as_u16(),
        error.type = "front_door",
        "request refused at the front door: {}",
        refusal.message
    );
    let mut response = Response::new(ResponseBody::full(format!("micros: {}\n", refusal.message)));
    *response.status_mut() = refusal.status;
    let headers = response.headers_mut();
    headers.insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    headers.insert(CONNECTION, HeaderValue::from_static("close"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn accepted_connections_send_without_delay() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = tokio::net::TcpStream::connect(listener.local_addr().unwrap());
        let (client, accepted) = tokio::join!(client, listener.accept());
        let (stream, peer) = accepted.unwrap();
        assert!(
            !stream.nodelay().unwrap(),
            "Linux's default changed: the test shows nothing"
        );
        send_without_delay(&stream, peer);
        assert!(stream.nodelay().unwrap());
        drop(client);
    }
}
