//! Layer 8, the server: many apps hosted at once from one state folder, each at its own host
//! name and its current release, deployed to with `micros push` through the admin API.

mod api;
mod bundle;
mod config;
mod hosts;
mod registry;
mod space;

use std::future::Future;
use std::sync::Arc;

use http::header::{HeaderValue, RETRY_AFTER};
use http::{Response, StatusCode};
use tokio::net::TcpListener;

use crate::sandbox::ResponseBody;
use crate::serving::http::{FrontDoorRequest, Handler, SHUTDOWN_GRACE, accept};
pub use config::{
    DEFAULT_APP_MAX_IN_FLIGHT, DEFAULT_DOMAIN, DEFAULT_KEEP_RELEASES, ServerConfig,
    default_state_dir,
};
use hosts::{Destination, request_host};
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
}

impl Server {
    /// Opens the state folder and loads every app at its current release. On the first start
    /// it makes the operator and returns their deploy token: the only time it is shown.
    pub fn open(config: ServerConfig) -> anyhow::Result<(Self, Option<String>)> {
        let (space, token) = Space::open(config)?;
        Ok((
            Self {
                space: Arc::new(space),
            },
            token,
        ))
    }

    /// Serves every app on `listener` until `shutdown` resolves, then lets the requests in
    /// flight finish (up to the execution limit plus a grace).
    pub async fn serve(
        self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()>,
    ) -> anyhow::Result<()> {
        let front_door = self.space.config().app.front_door.clone();
        let wait = self.space.config().app.limits.execution_time + SHUTDOWN_GRACE;
        let graceful = accept(self, listener, &front_door, shutdown).await;
        if tokio::time::timeout(wait, graceful.shutdown())
            .await
            .is_err()
        {
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
                    let response = live.app.handle(request).await;
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
