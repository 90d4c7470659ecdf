//! micros runs small server apps ("Micros") as WebAssembly components, each request in a fresh
//! wasmtime sandbox under Deta Space's limits.
//!
//! ```no_run
//! # async fn run() -> anyhow::Result<()> {
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
//! let config = micros::Config { address: listener.local_addr()?, ..Default::default() };
//! let manifest = micros::Manifest::load("examples/demo")?;
//! let app = micros::App::load(manifest, &config)?;
//! micros::serve(app, listener, async { let _ = tokio::signal::ctrl_c().await; }).await
//! # }
//! ```
#![deny(missing_docs)]

pub mod actions;
mod app;
pub mod auth;
mod builder;
pub mod config;
pub mod data;
mod engine;
mod http;
pub mod manifest;
mod metrics;
pub mod outbound;
mod sandbox;
pub mod sqlite;
pub mod starter;
pub mod state;
mod watch;

pub use actions::{ActionOverride, ActionReport};
pub use app::App;
pub use auth::{AuthMode, Credentials};
pub use builder::build;
pub use config::{CompileBudget, Config, EnvSetting, FrontDoor, Limits};
pub use http::{
    ACCESS_TARGET, ClientAddr, METRICS_PATH, REQUEST_ID_HEADER, Route, Router, serve, serve_admin,
};
pub use manifest::{Manifest, ManifestError};
pub use outbound::{AllowOutbound, OutboundConfig};
pub use sandbox::{ExecutionError, ResponseBody};
pub use watch::{DEFAULT_SETTLE, IGNORED_FOLDERS, watch};
