//! HTTP in front of the Micros: the server, request checks, and error responses.

mod access;
mod admin;
mod body;
mod conformance;
mod forwarded;
mod linger;
mod server;
mod tls;

use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use bytes::Bytes;
use http::header::{
    CONTENT_LENGTH, CONTENT_TYPE, HOST, HeaderValue, RETRY_AFTER, UPGRADE, WWW_AUTHENTICATE,
};
use http::{Request, Response, Uri};
use http_body::Body;
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt as _, Full, LengthLimitError, Limited};
use rand::RngExt as _;
use tracing::Instrument as _;

pub use access::ACCESS_TARGET;
pub use admin::{METRICS_PATH, serve_admin};
pub use forwarded::ClientAddr;
pub(crate) use server::{AbortOnDrop, FrontDoorRequest, Handler, SHUTDOWN_GRACE, accept};
pub use server::{H2_MAX_CONCURRENT_STREAMS, serve};
pub(crate) use tls::Tls;
pub use tls::{RELOAD_SETTLE, TlsConfig};

use crate::app::App;
use crate::sandbox::{ExecutionError, OverTls, ResponseBody};
use crate::spec::routing::Route;

/// The header that carries a request's id, in every response and in the log.
pub const REQUEST_ID_HEADER: &str = "x-request-id";

/// `Retry-After` of a 503: executions are short, so a second is a fair wait.
const RETRY_AFTER_SECONDS: &str = "1";

/// A request body as a guest reads it.
type GuestBody = UnsyncBoxBody<Bytes, wasmtime_wasi_http::Error>;

impl App {
    /// Serves one request: routes it to a Micro, checks it against the limits and runs it in a
    /// fresh sandbox. Never fails: every error becomes a response from the status table.
    ///
    /// Tests and embedders call this without a socket; [`serve`] calls it for each request.
    /// The execution runs on the caller's task until the response head is ready (and on a task
    /// of its own after, if it is not done by then): to run requests in parallel, call this from
    /// tasks of their own, as [`serve`] does with one task per connection.
    pub async fn handle<B>(&self, request: Request<B>) -> Response<ResponseBody>
    where
        B: Body<Data = Bytes> + Send + 'static,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let request_id = format!("{:016x}", rand::rng().random::<u64>());
        let route = self.inner.router.route(request.uri());
        let (Route::Micro(index, _) | Route::Reserved(index)) = route;
        let micro = &self.inner.micros[index];
        let span = tracing::info_span!(
            "request",
            micro = micro.name(),
            method = %request.method(),
            path = %request.uri().path(),
            request_id = %request_id,
            auth = tracing::field::Empty,
        );
        let started = std::time::Instant::now();
        // A browser asking for a private page gets a link to the login page with its 401.
        let wants_page = request.method() == http::Method::GET
            && request
                .headers()
                .get(http::header::ACCEPT)
                .and_then(|v| v.to_str().ok())
                .is_some_and(|v| v.contains("text/html"));
        let original = wants_page.then(|| {
            request
                .uri()
                .path_and_query()
                .map_or_else(|| "/".to_string(), ToString::to_string)
        });
        let peer = request.extensions().get::<ClientAddr>().map(|c| c.0.ip());
        let mut record = access::AccessRecord {
            started,
            client: forwarded::client_ip(
                request.headers(),
                peer,
                &self.inner.front_door.trusted_proxies,
            ),
            method: request.method().to_string(),
            path: request.uri().path().to_string(),
            micro: micro.name().to_string(),
            status: 0,
            outcome: "ok",
            auth: None,
            bytes_in: Arc::new(AtomicU64::new(0)),
            bodiless: request.method() == http::Method::HEAD,
            request_id: request_id.clone(),
            metrics: Arc::clone(&self.inner.metrics),
        };
        let result = match route {
            Route::Reserved(_) if request.uri().path() == crate::services::auth::LOGIN_PATH => {
                let secure = self.via_tls(&request);
                // The form's body is held to the same pace as any other: a stalled sender is cut.
                let request = request.map(|body| self.timed(body, &record));
                Ok(
                    crate::services::auth::login(request, &self.inner.credentials, secure)
                        .instrument(span.clone())
                        .await,
                )
            }
            Route::Reserved(_) if request.uri().path() == crate::services::auth::LOGOUT_PATH => {
                Ok(crate::services::auth::logout(self.via_tls(&request)))
            }
            Route::Reserved(_)
                if crate::services::data::Service::at_path(request.uri().path()).is_some() =>
            {
                self.data(request, &mut record)
                    .instrument(span.clone())
                    .await
            }
            // Nobody outside may reach the runtime's namespace through a Micro, e.g. to fire an
            // action; with a prefix stripped (`/api/__space/...`) neither.
            Route::Reserved(_) => Err(ExecutionError::Reserved),
            Route::Micro(index, uri) => {
                self.run(index, uri, request, &mut record)
                    .instrument(span.clone())
                    .await
            }
        };
        let mut response = match result {
            Ok(response) => response,
            Err(error) => {
                let _enter = span.enter();
                let elapsed_ms = started.elapsed().as_millis() as u64;
                let status = error.status();
                record.outcome = error.outcome();
                if matches!(error, ExecutionError::Unauthorized) {
                    // Expected from every scanner on the internet: not a warning.
                    tracing::info!(status = status.as_u16(), elapsed_ms, error.type = error.kind(), "request refused: {error}");
                } else {
                    tracing::warn!(micro = micro.name(), request_id = %request_id, status = status.as_u16(), elapsed_ms, error.type = error.kind(), "request failed: {error}");
                }
                let (text, content_type) = match (&error, &original) {
                    (ExecutionError::Unauthorized, Some(original)) => (
                        crate::services::auth::private_page(original),
                        "text/html; charset=utf-8",
                    ),
                    _ => (
                        format!("micro `{}`: {}\n", micro.name(), error.client_message()),
                        "text/plain; charset=utf-8",
                    ),
                };
                let mut response = Response::new(ResponseBody::full(text));
                *response.status_mut() = status;
                response
                    .headers_mut()
                    .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
                if matches!(error, ExecutionError::Unauthorized) {
                    response.headers_mut().insert(
                        WWW_AUTHENTICATE,
                        HeaderValue::from_static("Bearer realm=\"micros\""),
                    );
                }
                if matches!(
                    error,
                    ExecutionError::Overloaded { .. } | ExecutionError::PoolFull { .. }
                ) {
                    response
                        .headers_mut()
                        .insert(RETRY_AFTER, HeaderValue::from_static(RETRY_AFTER_SECONDS));
                }
                response
            }
        };
        if let Ok(value) = HeaderValue::from_str(&request_id) {
            response.headers_mut().insert(REQUEST_ID_HEADER, value);
        }
        record.status = response.status().as_u16();
        record.bodiless |= matches!(record.status, 204 | 304);
        // The access line is written in the caller's span (a server's `app` span, which routes
        // the line to the app's own log), though the body ends outside it.
        let caller = tracing::Span::current();
        response.map(|body| {
            body.on_end(move |end| {
                let _entered = caller.enter();
                record.finish(end);
            })
        })
    }

    /// Serves the owner's request for the app's Base or Drive.
    async fn data<B>(
        &self,
        mut request: Request<B>,
        record: &mut access::AccessRecord,
    ) -> Result<Response<ResponseBody>, ExecutionError>
    where
        B: Body<Data = Bytes> + Send + 'static,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let access = crate::services::auth::check_owner(
            self.inner.auth,
            &self.inner.credentials,
            request.headers_mut(),
        )
        .map_err(|()| ExecutionError::Unauthorized)?;
        record.auth = Some(access.label());
        let request = request.map(|body| self.timed(body, record));
        let response = self.inner.data.answer_owner(request).await;
        let (parts, body) = response.into_parts();
        let bytes = body
            .collect()
            .await
            .map(http_body_util::Collected::to_bytes)
            .unwrap_or_default();
        Ok(Response::from_parts(parts, ResponseBody::full(bytes)))
    }

    /// A request body held to the front door's pace (a stalled sender is cut), its bytes counted
    /// for the access log.
    fn timed<B>(&self, body: B, record: &access::AccessRecord) -> body::TimedBody<B> {
        body::TimedBody::new(
            body,
            self.inner.front_door.body_read_timeout,
            Arc::clone(&record.bytes_in),
        )
    }

    /// Whether a request came over TLS: the server's own (`micros server --tls-cert`), or a
    /// trusted proxy's, as only a trusted proxy can say.
    fn via_tls<B>(&self, request: &Request<B>) -> bool {
        if request.extensions().get::<OverTls>().is_some() {
            return true;
        }
        let peer = request.extensions().get::<ClientAddr>().map(|c| c.0.ip());
        forwarded::via_tls(
            request.headers(),
            peer,
            &self.inner.front_door.trusted_proxies,
        )
    }

    /// Checks a request's credentials and limits, then runs it in the Micro's sandbox.
    async fn run<B>(
        &self,
        index: usize,
        uri: Uri,
        mut request: Request<B>,
        record: &mut access::AccessRecord,
    ) -> Result<Response<ResponseBody>, ExecutionError>
    where
        B: Body<Data = Bytes> + Send + 'static,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        // Before anything else: a stranger learns nothing about the Micro, not even its limits.
        let access = crate::services::auth::check(
            self.inner.auth,
            &self.inner.access[index],
            &self.inner.credentials,
            uri.path(),
            request.headers_mut(),
        )
        .map_err(|()| ExecutionError::Unauthorized)?;
        let label = access.label();
        tracing::Span::current().record("auth", label.as_str());
        record.auth = Some(label);
        let sandbox = match &self.inner.micros[index] {
            crate::app::Runtime::Sandbox(sandbox) => sandbox,
            crate::app::Runtime::Site(site) => {
                let asked = crate::services::site::Asked {
                    method: request.method(),
                    path: uri.path(),
                    original_path: request.uri().path(),
                    query: request.uri().query(),
                    headers: request.headers(),
                };
                return Ok(site.answer(&asked).await);
            }
        };
        let cap = sandbox.request_cap();
        let limit = cap.unwrap_or(u64::MAX);
        if request.headers().contains_key(UPGRADE) {
            return Err(ExecutionError::UpgradeUnsupported);
        }
        let declared = match request.headers().get(CONTENT_LENGTH) {
            None => None,
            Some(value) => Some(
                value
                    .to_str()
                    .ok()
                    .and_then(|v| v.parse::<u64>().ok())
                    .ok_or_else(|| ExecutionError::BadRequest("invalid content-length".into()))?,
            ),
        };
        if declared.is_some_and(|len| len > limit) {
            return Err(ExecutionError::RequestTooLarge { limit });
        }
        if request
            .headers()
            .get(HOST)
            .is_some_and(|host| host.to_str().is_err())
        {
            return Err(ExecutionError::BadRequest(
                "the host header is not text".into(),
            ));
        }
        let (mut parts, body) = request.into_parts();
        parts.uri = uri;
        let peer = parts.extensions.get::<ClientAddr>().map(|c| c.0.ip());
        forwarded::apply(
            &mut parts.headers,
            peer,
            &self.inner.front_door.trusted_proxies,
        );
        if !parts.headers.contains_key(HOST)
            && let Ok(host) = HeaderValue::from_str(&self.inner.hostname)
        {
            parts.headers.insert(HOST, host);
        }
        let body = self.timed(body, record);
        let body: GuestBody = if cap.is_none() {
            // A benchmark build with the limits off: the body as it comes.
            body.map_err(guest_body_error).boxed_unsync()
        } else if declared.is_some() || body.is_end_stream() {
            // The length is known and within the limit: stream it, still counting.
            Limited::new(body, limit as usize)
                .map_err(guest_body_error)
                .boxed_unsync()
        } else {
            // A streamed body of unknown length is read up to the limit first, so that an
            // oversized one is refused before the guest runs.
            let bytes = Limited::new(body, limit as usize)
                .collect()
                .await
                .map_err(|e| {
                    if e.is::<LengthLimitError>() {
                        ExecutionError::RequestTooLarge { limit }
                    } else if let Some(timeout) = e.downcast_ref::<body::BodyTimeout>() {
                        ExecutionError::RequestTimeout { limit: timeout.0 }
                    } else {
                        ExecutionError::BadRequest(e.to_string())
                    }
                })?;
            Full::new(bytes.to_bytes())
                .map_err(|never| match never {})
                .boxed_unsync()
        };
        sandbox.handle(Request::from_parts(parts, body)).await
    }
}

fn guest_body_error(error: Box<dyn std::error::Error + Send + Sync>) -> wasmtime_wasi_http::Error {
    if error.is::<LengthLimitError>() {
        wasmtime_wasi_http::Error::HttpRequestBodySize(None)
    } else {
        wasmtime_wasi_http::Error::InternalError(Some(error.to_string()))
    }
}
