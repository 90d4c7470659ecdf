//! The apps a server hosts: each at its current release, swapped atomically on a push or a
//! rollback, all on one engine, each under its own cap of executions in flight; and the request
//! path from a host name to an app.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, PoisonError, RwLock};

use anyhow::{Context as _, bail};
use http::header::{CONTENT_TYPE, HeaderValue};
use http::{Response, StatusCode};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tracing::Instrument as _;

use super::config::ServerConfig;
use super::hosts::{AppName, Destination, Hosts};
use super::logs::APP_SPAN;
use super::registry::{Registry, Release, SqliteRegistry, User};
use crate::app::App;
use crate::app::config::{Config, EnvSetting};
use crate::engine::Engine;
use crate::sandbox::ResponseBody;
use crate::services::auth::AuthMode;
use crate::services::auth::Credentials;
use crate::serving::actions::SystemClock;
use crate::settings::state::{ALPHANUMERIC, StateDir, random_string};
use crate::spec::manifest::{MAX_ACTIONS_PER_APP, Manifest};

/// Characters of a deploy token: 40 of 62 symbols (about 238 bits), kept only as a hash.
const TOKEN_LEN: usize = 40;
/// The registry's file in the state folder.
pub(crate) const REGISTRY_FILE: &str = "server.db";
/// The name of the user made on the first start.
pub(crate) const OPERATOR: &str = "operator";

/// Everything a server hosts, shared by its connections.
pub(crate) struct Space {
    config: ServerConfig,
    engine: Engine,
    pub(crate) registry: Arc<dyn Registry>,
    hosts: RwLock<Hosts>,
    apps: RwLock<HashMap<AppName, Arc<Hosted>>>,
    /// One change of releases at a time (push, rollback, delete): each is short next to the
    /// compile it waits for, and the registry and the folders stay in step.
    pub(crate) deploys: tokio::sync::Mutex<()>,
}

/// One app as it is served.
pub(crate) struct Hosted {
    /// The release serving now; `None` between the app's creation and its first release.
    live: RwLock<Option<Arc<Live>>>,
    /// The app's executions in flight, all its Micros together: one app flooded cannot take
    /// the pool's slots the other apps need.
    in_flight: Arc<Semaphore>,
}

/// A loaded release and its running schedule.
pub(crate) struct Live {
    pub(crate) app: App,
    /// The span of the app's work: its lines go to its own log (`super::logs`).
    pub(crate) span: tracing::Span,
    /// Stops the release's scheduled actions (they finish the runs in flight).
    stop: tokio::sync::watch::Sender<bool>,
}

impl Drop for Live {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
    }
}

impl Space {
    /// Opens the server's state folder: the registry, made on the first start with the operator
    /// (whose deploy token is returned then, and never again), and every app at its current
    /// release, from the compile cache.
    pub(crate) fn open(config: ServerConfig) -> anyhow::Result<(Self, Option<String>)> {
        std::fs::create_dir_all(config.state_dir.join("apps")).with_context(|| {
            format!(
                "failed to make the state folder `{}`",
                config.state_dir.display()
            )
        })?;
        let registry = SqliteRegistry::open(&config.state_dir.join(REGISTRY_FILE))?;
        let operator_token = if registry.users()?.is_empty() {
            registry.add_user(&User {
                name: OPERATOR.into(),
                operator: true,
            })?;
            let token = new_token();
            registry.add_token(OPERATOR, &token)?;
            Some(token)
        } else {
            None
        };
        let engine = crate::app::shared_engine(&config.app, MAX_ACTIONS_PER_APP * 4)?;
        let space = Self {
            hosts: RwLock::new(Hosts::default()),
            config,
            engine,
            registry: Arc::new(registry),
            apps: RwLock::new(HashMap::new()),
            deploys: tokio::sync::Mutex::new(()),
        };
        space.reload_hosts()?;
        for record in space.registry.apps()? {
            let Ok(name) = record.name.parse::<AppName>() else {
                continue;
            };
            let hosted = space.hosted_or_new(&name);
            if let Some(release) = record.current {
                match space.load_release(&name, release) {
                    Ok(app) => hosted.swap(Some(Live::start(app, &name))),
                    Err(error) => tracing::error!(
                        app = %name,
                        release,
                        "the app's current release did not load; it is not served: {error:#}"
                    ),
                }
            }
        }
        Ok((space, operator_token))
    }

    /// The server's settings.
    pub(crate) fn config(&self) -> &ServerConfig {
        &self.config
    }

    /// The folder of everything of `app`'s.
    pub(crate) fn app_dir(&self, app: &AppName) -> PathBuf {
        self.config.state_dir.join("apps").join(app.as_str())
    }

    /// The folder of one release of `app`.
    pub(crate) fn release_dir(&self, app: &AppName, release: u64) -> PathBuf {
        self.app_dir(app).join("releases").join(release.to_string())
    }

    /// The app whose releases `app` runs: its source for an instance, else itself.
    pub(crate) fn release_owner(&self, app: &AppName) -> anyhow::Result<AppName> {
        let source = self
            .registry
            .app(app.as_str())?
            .and_then(|record| record.source);
        Ok(match source {
            Some(source) => source
                .parse()
                .map_err(|e| anyhow::anyhow!("the registry names a bad source app: {e}"))?,
            None => app.clone(),
        })
    }

    /// The primary host of `app`.
    pub(crate) fn primary_host(&self, app: &AppName) -> String {
        self.hosts
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .primary(app)
    }

    /// How `app` is run: the server's settings, its own state folder and host name.
    pub(crate) fn app_config(&self, app: &AppName) -> Config {
        Config {
            state_dir: Some(self.state_dir(app)),
            hostname: Some(self.primary_host(app)),
            auth: AuthMode::Required,
            env: Vec::new(),
            actions: Vec::new(),
            ..self.config.app.clone()
        }
    }

    /// Loads (and, unless the compile cache has them, compiles) one release of `app`. Blocking.
    pub(crate) fn load_release(&self, app: &AppName, release: u64) -> anyhow::Result<App> {
        let dir = self.release_dir(&self.release_owner(app)?, release);
        let manifest = Manifest::load(&dir).map_err(|e| anyhow::anyhow!(strip(&e, &dir)))?;
        let mut config = self.app_config(app);
        config.env = self.env_settings(app, &manifest)?;
        App::load_on(manifest, &config, self.engine.clone())
            .map_err(|e| anyhow::anyhow!(strip(&format!("{e:#}"), &dir)))
    }

    /// The preset values set for `app` that `manifest` declares: a value for a preset a release
    /// no longer has is kept for a later one, not an error.
    fn env_settings(&self, app: &AppName, manifest: &Manifest) -> anyhow::Result<Vec<EnvSetting>> {
        let mut settings = Vec::new();
        for preset in self.registry.presets(app.as_str())? {
            let text = if preset.micro.is_empty() {
                format!("{}={}", preset.name, preset.value)
            } else {
                format!("{}.{}={}", preset.micro, preset.name, preset.value)
            };
            let Ok(setting) = text.parse::<EnvSetting>() else {
                continue;
            };
            let declared = manifest.micros.iter().any(|m| {
                setting.micro.as_ref().is_none_or(|name| name == &m.name)
                    && m.presets.env.iter().any(|p| p.name == setting.name)
            });
            if declared {
                settings.push(setting);
            }
        }
        Ok(settings)
    }

    /// The hosted app `name`, if the server has it.
    pub(crate) fn hosted(&self, name: &AppName) -> Option<Arc<Hosted>> {
        self.apps
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(name)
            .cloned()
    }

    /// The hosted app `name`, made (with no release) if it is new.
    pub(crate) fn hosted_or_new(&self, name: &AppName) -> Arc<Hosted> {
        let mut apps = self.apps.write().unwrap_or_else(PoisonError::into_inner);
        Arc::clone(apps.entry(name.clone()).or_insert_with(|| {
            Arc::new(Hosted {
                live: RwLock::new(None),
                in_flight: Arc::new(Semaphore::new(self.config.app_max_in_flight)),
            })
        }))
    }

    /// Stops serving `name` and forgets it (its folders are the caller's to remove).
    pub(crate) fn remove(&self, name: &AppName) {
        let hosted = self
            .apps
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(name);
        if let Some(hosted) = hosted {
            hosted.swap(None);
        }
        if let Err(error) = self.reload_hosts() {
            tracing::warn!(app = %name, "the host map was not reloaded: {error:#}");
        }
    }

    /// Makes the host map the registry's custom domains, under the server's domain: after a
    /// domain was added or an app deleted.
    pub(crate) fn reload_hosts(&self) -> anyhow::Result<()> {
        let custom = self
            .registry
            .domains()?
            .into_iter()
            .filter_map(|(host, app)| Some((host, app.parse().ok()?)));
        *self.hosts.write().unwrap_or_else(PoisonError::into_inner) =
            Hosts::new(&self.config.domain, custom);
        Ok(())
    }

    /// The credentials (owner token, app keys) of `app`, from its state folder.
    pub(crate) fn credentials(&self, app: &AppName) -> anyhow::Result<Credentials> {
        Ok(Credentials::open(&StateDir::open(self.state_dir(app))?))
    }

    /// The state folder of `app`: keys, data, `/tmp` folders, compile cache.
    fn state_dir(&self, app: &AppName) -> PathBuf {
        self.app_dir(app).join("state")
    }

    /// Where a normalised host leads.
    pub(crate) fn destination(&self, host: &str) -> Destination {
        self.hosts
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .destination(host)
    }

    /// Forgets the releases of `app` past the newest `keep`, except `current` and those an
    /// instance of `app` serves: rows and folders.
    pub(crate) fn prune(&self, app: &AppName, current: u64) -> anyhow::Result<()> {
        let releases: Vec<Release> = self.registry.releases(app.as_str())?;
        let served: Vec<u64> = self
            .registry
            .apps()?
            .into_iter()
            .filter(|record| record.source.as_deref() == Some(app.as_str()))
            .filter_map(|record| record.current)
            .collect();
        for release in releases.iter().skip(self.config.keep_releases) {
            if release.id == current || served.contains(&release.id) {
                continue;
            }
            self.registry.remove_release(app.as_str(), release.id)?;
            let _ = std::fs::remove_dir_all(self.release_dir(app, release.id));
        }
        Ok(())
    }
}

impl Hosted {
    /// The release serving now and a permit to run one request on it (`None` at the app's cap).
    pub(crate) fn serve(&self) -> Option<(Arc<Live>, Option<OwnedSemaphorePermit>)> {
        let live = self
            .live
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()?;
        Some((live, Arc::clone(&self.in_flight).try_acquire_owned().ok()))
    }

    /// The release serving now.
    pub(crate) fn live(&self) -> Option<Arc<Live>> {
        self.live
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Makes `live` the release that requests starting from now get. Those in flight finish on
    /// the one they started with; its scheduled actions stop (the runs in flight finish) before
    /// the new release's start, so none fires twice.
    pub(crate) fn swap(&self, live: Option<Live>) {
        let old = std::mem::replace(
            &mut *self.live.write().unwrap_or_else(PoisonError::into_inner),
            live.map(Arc::new),
        );
        if let Some(old) = old {
            let _ = old.stop.send(true);
            if let Some(new) = self.live() {
                new.app.carry_last_runs(&old.app);
            }
        }
        if let Some(new) = self.live() {
            new.run_schedule();
        }
    }
}

impl Live {
    /// A loaded release, its schedule not started yet.
    pub(crate) fn start(app: App, name: &AppName) -> Self {
        let (stop, _) = tokio::sync::watch::channel(false);
        Self {
            app,
            span: tracing::info_span!(parent: None, APP_SPAN, app = %name),
            stop,
        }
    }

    /// Runs the release's scheduled actions until it is swapped out.
    fn run_schedule(&self) {
        let app = self.app.clone();
        let stopped = self.stop.subscribe();
        if *stopped.borrow() {
            return;
        }
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(
                async move {
                    app.run_schedule(Arc::new(SystemClock), stopped).await;
                }
                .instrument(self.span.clone()),
            );
        }
    }
}

/// A new deploy token.
pub(crate) fn new_token() -> String {
    random_string(TOKEN_LEN, ALPHANUMERIC)
}

/// An error's text without the server's path to a release folder: the user sees
/// `Spacefile.toml`, as `micros check` would show them.
fn strip(error: &impl std::fmt::Display, dir: &Path) -> String {
    error
        .to_string()
        .replace(&format!("{}/", dir.display()), "")
}

/// A plain page: the server's own answers (no app at a host, the app's limit).
pub(crate) fn page(status: StatusCode, text: &str) -> Response<ResponseBody> {
    let mut response = Response::new(ResponseBody::full(format!("micros: {text}\n")));
    *response.status_mut() = status;
    response.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

/// Checks that a release folder holds an app whose manifest loads; the first failure, as
/// `micros check` words it.
pub(crate) fn check_manifest(dir: &Path) -> anyhow::Result<Manifest> {
    match Manifest::load(dir) {
        Ok(manifest) => Ok(manifest),
        Err(error) => bail!(strip(&error, dir)),
    }
}
