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
//!
//! # Layers
//!
//! The crate is built in layers, read bottom-up; each module imports only from the layers below
//! it (`.ci/layers.py` checks this in CI; `docs/architecture.md` walks through them):
//!
//! 1. `spec`: what an app is: the manifest ([`manifest`]), cron schedules, path routing ([`Router`]).
//! 2. `settings`: plain data: [`Limits`], [`FrontDoor`], [`CompileBudget`], the state folder ([`state`]).
//! 3. `engine`: the wasmtime engine, its pool and epoch ticker, the compile cache.
//! 4. `sandbox`: one execution: the only place a store is made, with every limit applied; other
//!    host interfaces plug in through one trait.
//! 5. `services`: [`data`] (Base and Drive), [`auth`], [`outbound`], [`sqlite`], metrics, [`build`]
//!    commands, the [`starter`]s.
//! 6. `app`: a loaded [`App`], its [`Config`] and its action plan.
//! 7. `serving`: the status table, the action scheduler, the HTTP front door ([`serve`]) and
//!    [`watch`].
//! 8. `server`: many apps at their own host names, deployed to through the admin API
//!    ([`server::Server`]).
//!
//! The binary (`src/bin/micros`) is a thin command line over this library.
#![deny(missing_docs)]

mod app;
mod engine;
mod sandbox;
pub mod server;
mod services;
mod serving;
mod settings;
mod spec;

pub use services::{auth, data, import, outbound, site, sqlite, starter};
pub use settings::state;
pub use spec::manifest;

/// Scheduled actions: schedules, the operator's overrides, the plan of an app and the reports of
/// its runs.
pub mod actions {
    pub use crate::app::actions::{ActionInfo, ActionOverride, next_run, resolve};
    pub use crate::serving::actions::{ACTION_PATH, ActionReport, Clock, Event, SystemClock};
    pub use crate::spec::schedule::{RateUnit, Schedule};
}

/// The operator's settings: limits and their defaults, and how an app is run.
pub mod config {
    pub use crate::app::config::{Config, EnvSetting};
    pub use crate::settings::limits::*;
}

pub use actions::{ActionOverride, ActionReport};
pub use app::App;
pub use auth::{AuthMode, Credentials};
pub use config::{CompileBudget, Config, EnvSetting, FrontDoor, Limits};
pub use manifest::{Manifest, ManifestError};
pub use outbound::{AllowOutbound, OutboundConfig};
pub use sandbox::{ExecutionError, ResponseBody};
pub use services::builder::build;
pub use serving::http::{
    ACCESS_TARGET, ClientAddr, METRICS_PATH, REQUEST_ID_HEADER, serve, serve_admin,
};
pub use serving::watch::{DEFAULT_SETTLE, IGNORED_FOLDERS, watch};
pub use spec::routing::{Route, Router};
