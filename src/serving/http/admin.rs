//! The admin listener: the runtime's own endpoints for the operator, on an address of their own
//! (off by default), today `GET /__space/metrics`.

use std::convert::Infallible;
use std::future::Future;

use http::header::{CONTENT_TYPE, HeaderValue};
use http::{Method, Response, StatusCode};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;

use crate::app::App;
use crate::sandbox::ResponseBody;

/// The metrics endpoint.
pub const METRICS_PATH: &str = "/__space/metrics";

/// Serves the admin endpoints of `app` on `listener` until `shutdown` resolves. The caller
/// chooses the address: keep it on loopback or a private network, for it needs no credentials.
pub async fn serve_admin(
    app: App,
    listener: TcpListener,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(app.inner.front_door.header_read_timeout);
    tokio::pin!(shutdown);
    loop {
        let (stream, _) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    tracing::warn!("admin accept failed: {error}");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => return Ok(()),
        };
        let app = app.clone();
        let service = service_fn(move |request: hyper::Request<hyper::body::Incoming>| {
            let app = app.clone();
            async move {
                let found = request.uri().path() == METRICS_PATH;
                let response = match (found, request.method()) {
                    (true, &Method::GET | &Method::HEAD) => {
                        let mut response = Response::new(ResponseBody::full(app.metrics_text()));
                        response.headers_mut().insert(
                            CONTENT_TYPE,
                            HeaderValue::from_static(crate::services::metrics::CONTENT_TYPE),
                        );
                        response
                    }
                    (true, _) => plain(StatusCode::METHOD_NOT_ALLOWED, "use GET\n"),
                    (false, _) => plain(StatusCode::NOT_FOUND, "not found: try /__space/metrics\n"),
                };
                Ok::<_, Infallible>(response)
            }
        });
        let connection = builder.serve_connection(TokioIo::new(stream), service);
        tokio::spawn(async move {
            if let Err(error) = connection.await {
                tracing::debug!("admin connection ended with an error: {error}");
            }
        });
    }
}

fn plain(status: StatusCode, text: &'static str) -> Response<ResponseBody> {
    let mut response = Response::new(ResponseBody::full(text));
    *response.status_mut() = status;
    response.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}
