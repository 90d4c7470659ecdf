//! How an app is run: the operator's settings, assembled from each feature's own settings type.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::bail;

use crate::app::actions::ActionOverride;
use crate::services::auth::AuthMode;
use crate::services::outbound::OutboundConfig;
use crate::settings::limits::{CompileBudget, DEFAULT_STATE_DIR, FrontDoor, Limits};
use crate::spec::manifest::{EnvName, Manifest, MicroName};

/// How an app is run: its limits, where its state lives, what its Micros are told.
#[derive(Debug, Clone)]
pub struct Config {
    /// The limits of every execution.
    pub limits: Limits,
    /// The limits of the front door.
    pub front_door: FrontDoor,
    /// What compiling each component may cost.
    pub compile: CompileBudget,
    /// Where Micros may send outbound HTTP beyond the public internet, and its limits.
    pub outbound: OutboundConfig,
    /// Where keys and `/tmp` folders live; default `.micros/` beside the manifest.
    pub state_dir: Option<PathBuf>,
    /// `DETA_SPACE_APP_HOSTNAME`; default the address the app is served at.
    pub hostname: Option<String>,
    /// The address the app is served at: sets `PORT` and the default hostname.
    pub address: SocketAddr,
    /// Values for declared presets (`--env`).
    pub env: Vec<EnvSetting>,
    /// The operator's schedules for actions (`--action`).
    pub actions: Vec<ActionOverride>,
    /// Whether routes are private unless the manifest opens them (the default), or all open.
    pub auth: AuthMode,
    /// Take each execution's memory, tables and instance from a pool reserved at load (the
    /// default, and much faster) rather than allocating them per request.
    pub pooling: bool,
    /// Keep what is in each Micro's `/tmp` instead of emptying it at load (for one-off runs,
    /// such as `micros trigger`, beside a running instance of the same app).
    pub keep_tmp: bool,
    /// Benchmark builds only (feature `bench-unlimited`): run without the limits' machinery
    /// (epoch interruption and the time limit, the memory limiter, the `/tmp` books, the payload
    /// caps) to measure what it costs. Never for serving: a guest could run forever and fill
    /// the disk.
    #[cfg(feature = "bench-unlimited")]
    pub unlimited: bool,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            limits: Limits::default(),
            front_door: FrontDoor::default(),
            compile: CompileBudget::default(),
            outbound: OutboundConfig::default(),
            state_dir: None,
            hostname: None,
            address: SocketAddr::from(([127, 0, 0, 1], 4200)),
            env: Vec::new(),
            actions: Vec::new(),
            auth: AuthMode::Required,
            pooling: true,
            keep_tmp: false,
            #[cfg(feature = "bench-unlimited")]
            unlimited: false,
        }
    }
}

impl Config {
    /// Whether executions run under their limits: always, unless a benchmark build says
    /// otherwise (`unlimited`).
    pub(crate) fn enforces_limits(&self) -> bool {
        #[cfg(feature = "bench-unlimited")]
        return !self.unlimited;
        #[cfg(not(feature = "bench-unlimited"))]
        true
    }

    /// The state folder for an app: `state_dir`, or `.micros/` beside its manifest.
    pub fn state_dir_for(&self, manifest: &Manifest) -> PathBuf {
        self.state_dir
            .clone()
            .unwrap_or_else(|| manifest.dir.join(DEFAULT_STATE_DIR))
    }
}

/// `--env MICRO.NAME=VALUE` or `--env NAME=VALUE`: a value for a declared preset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnvSetting {
    /// The Micro it is for; `None` sets it for every Micro that declares it.
    pub micro: Option<MicroName>,
    /// The preset's name.
    pub name: EnvName,
    /// The value.
    pub value: String,
}

impl std::str::FromStr for EnvSetting {
    type Err = anyhow::Error;

    fn from_str(s: &str) -> anyhow::Result<Self> {
        let Some((key, value)) = s.split_once('=') else {
            bail!("`{s}` is not `NAME=VALUE` or `MICRO.NAME=VALUE`");
        };
        let (micro, name) = match key.split_once('.') {
            Some((micro, name)) => (
                Some(micro.parse::<MicroName>().map_err(anyhow::Error::msg)?),
                name,
            ),
            None => (None, key),
        };
        let name = name.parse::<EnvName>().map_err(anyhow::Error::msg)?;
        Ok(Self {
            micro,
            name,
            value: value.to_string(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_settings() {
        let all: EnvSetting = "GREETING=hi=there".parse().unwrap();
        assert_eq!(all.micro, None);
        assert_eq!(all.name.as_str(), "GREETING");
        assert_eq!(all.value, "hi=there");
        let one: EnvSetting = "web.GREETING=".parse().unwrap();
        assert_eq!(one.micro.unwrap().as_str(), "web");
        assert_eq!(one.value, "");
        assert!("GREETING".parse::<EnvSetting>().is_err());
        assert!("PORT=1".parse::<EnvSetting>().is_err());
    }
}
