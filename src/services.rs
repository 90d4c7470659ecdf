//! Layer 5, the services an app is made of, each knowing nothing of HTTP serving or of `App`:
//! data (Base and Drive), auth (credentials, public routes, the login page), the outbound policy,
//! the SQLite host interface, metrics, static Micros' files, build commands and the starters of
//! `micros new`.

pub mod auth;
pub mod builder;
pub mod data;
pub mod import;
pub mod metrics;
pub mod outbound;
pub mod site;
pub mod sqlite;
pub mod starter;
