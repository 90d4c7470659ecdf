//! Layer 7, serving: the one table from outcomes to HTTP statuses, the action scheduler, the
//! front door (hyper, request checks, the access log) and the watcher of `up --watch`.

pub mod actions;
pub mod http;
pub mod status;
pub mod watch;
