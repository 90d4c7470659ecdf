//! How a server runs: its state folder, its domain, the settings every app runs under, the
//! server's own limits, with their defaults, and its certificates.

use std::path::PathBuf;

use crate::app::config::Config;
use crate::serving::http::TlsConfig;

/// Executions one app may have in flight at once, all its Micros together: a flood on one app
/// takes at most this many of the pool's slots (sized for every connection the front door
/// admits, 4096 by default), so the other apps keep theirs.
pub const DEFAULT_APP_MAX_IN_FLIGHT: usize = 256;
/// Releases kept per app, the current one always among them: enough to roll back a few steps.
pub const DEFAULT_KEEP_RELEASES: usize = 10;
/// The domain apps are served under by default: browsers resolve `*.localhost` to loopback, so
/// `notes.localhost:4200` works with no DNS.
pub const DEFAULT_DOMAIN: &str = "localhost";
/// How a server runs.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Where everything lives: the registry, and each app's releases, data, keys and caches.
    pub state_dir: PathBuf,
    /// Apps are served at `<app>.<domain>`; the admin API at the domain itself.
    pub domain: String,
    /// The limits and settings every app runs under (its state folder and host name are the
    /// server's to set).
    pub app: Config,
    /// Executions one app may have in flight at once ([`DEFAULT_APP_MAX_IN_FLIGHT`]).
    pub app_max_in_flight: usize,
    /// Releases kept per app ([`DEFAULT_KEEP_RELEASES`]).
    pub keep_releases: usize,
    /// The certificates to speak HTTPS with (HTTP/2 and HTTP/1.1); `None`: plain HTTP/1.1.
    pub tls: Option<TlsConfig>,
}

impl ServerConfig {
    /// The defaults, with state in `state_dir`.
    pub fn new(state_dir: impl Into<PathBuf>) -> Self {
        Self {
            state_dir: state_dir.into(),
            domain: DEFAULT_DOMAIN.into(),
            app: Config::default(),
            app_max_in_flight: DEFAULT_APP_MAX_IN_FLIGHT,
            keep_releases: DEFAULT_KEEP_RELEASES,
            tls: None,
        }
    }
}

/// The default state folder of `micros server`: `$XDG_DATA_HOME/micros`, else
/// `~/.local/share/micros`.
pub fn default_state_dir() -> Option<PathBuf> {
    std::env::var_os("XDG_DATA_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".local/share")))
        .map(|base| base.join("micros"))
}
