//! The HTTP/1.1 server: accepts connections, serves each on its own task, shuts down gracefully.

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use http::header::{CONNECTION, CONTENT_TYPE, HeaderValue};
use http::{Request, Response};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tracing::Instrument as _;

use super::body::WatchedBody;
use super::conformance::{self, Refusal};
use super::linger::Linger;
use crate::app::App;
use crate::sandbox::ResponseBody;
use crate::serving::actions::SystemClock;
use crate::settings::limits::FrontDoor;

/// Aborts a task when dropped.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

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
    let graceful = accept(app.clone(), listener, &front_door, shutdown).await;
    let _ = stop_schedule.send(true);
    let wait = app
        .inner
        .micros
        .iter()
        .map(|m| m.limits().execution_time)
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
/// for with [`GracefulShutdown::shutdown`].
pub(crate) async fn accept<H: Handler>(
    handler: H,
    listener: TcpListener,
    front_door: &FrontDoor,
    shutdown: impl Future<Output = ()>,
) -> GracefulShutdown {
    let graceful = GracefulShutdown::new();
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(front_door.header_read_timeout)
        .max_headers(front_door.max_headers)
        .max_header_size(front_door.max_header_bytes);
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
        // Whether the request being answered still has body bytes on the way.
        let unread = Arc::new(AtomicBool::new(false));
        let service = {
            let handler = handler.clone();
            let unread = Arc::clone(&unread);
            service_fn(move |request: hyper::Request<hyper::body::Incoming>| {
                let handler = handler.clone();
                let (mut parts, body) = request.into_parts();
                let body = WatchedBody::new(body, &unread);
                let unread = Arc::clone(&unread);
                parts.extensions.insert(super::ClientAddr(peer));
                let refusal = conformance::check(parts.version, &parts.headers);
                let request = Request::from_parts(parts, body);
                async move {
                    let mut response = match refusal {
                        Some(refusal) => refused(refusal),
                        None => handler.handle(request).await,
                    };
                    // An error answered before the body was read: the client is still sending,
                    // so the connection ends after this answer, with a lingering close.
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
        };
        let connection = graceful.watch(builder.serve_connection(TokioIo::new(stream), service));
        let span = tracing::debug_span!("connection", %peer);
        tokio::spawn(
            async move {
                let ended = connection.await;
                if let Err(error) = &ended {
                    tracing::debug!("connection ended with an error: {error}");
                }
                // After a request hyper refused (400, 431: answered, the rest unread) or an answer
                // given before the body was read, the client may still be sending. A header
                // timeout answers nothing, so there is nothing to wait for.
                let unread = match &ended {
                    Err(error) => !error.is_timeout(),
                    Ok(()) => unread.load(Ordering::Relaxed),
                };
                if let Some(linger) = linger {
                    // Boxed: a connection that does not linger does not carry its state.
                    Box::pin(linger.close(unread)).await;
                }
                drop(permit);
            }
            .instrument(span),
        );
    }
    drop(listener);
    graceful
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
