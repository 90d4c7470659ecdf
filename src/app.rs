//! Layer 6, a loaded app: its manifest checked, every Micro compiled and pre-instantiated, ready
//! to serve, with its data, credentials and action plan.

pub(crate) mod actions;
pub(crate) mod config;

use std::sync::Arc;

use anyhow::{Context as _, bail};

use crate::engine::Engine;
use crate::sandbox::{self, Sandbox, SandboxSpec};
use crate::sandbox::{HostPlugin, Plugins};
use crate::services::data::{Data, Service};
use crate::services::outbound::LocalHosts;
use crate::services::site::Site;
use crate::services::sqlite::Sqlite;
use crate::settings::state::StateDir;
use crate::spec::manifest::Manifest;
use config::Config;

/// An app ready to serve: cheap to clone, shared by every connection.
#[derive(Clone)]
pub struct App {
    pub(crate) inner: Arc<AppInner>,
}

pub(crate) struct AppInner {
    pub(crate) manifest: Manifest,
    /// One sandbox per Micro, in manifest order.
    pub(crate) micros: Vec<Runtime>,
    /// The index of the primary Micro in `micros`.
    pub(crate) primary: usize,
    /// Which Micro each path reaches.
    pub(crate) router: crate::spec::routing::Router,
    /// The host name requests without a `Host` header are given.
    pub(crate) hostname: String,
    /// Every action with its effective schedule.
    pub(crate) actions: Vec<crate::app::actions::ActionInfo>,
    /// How each action's last run went.
    pub(crate) last_runs: crate::app::actions::LastRuns,
    /// The front door's limits.
    pub(crate) front_door: crate::settings::limits::FrontDoor,
    /// Whether credentials are checked.
    pub(crate) auth: crate::services::auth::AuthMode,
    /// The owner token and app keys.
    pub(crate) credentials: crate::services::auth::Credentials,
    /// Each Micro's access rule, in manifest order.
    pub(crate) access: Vec<crate::services::auth::MicroAccess>,
    /// What the runtime counts.
    pub(crate) metrics: Arc<crate::services::metrics::Metrics>,
    /// The app's Base and Drive, shared by its Micros and its owner.
    pub(crate) data: Arc<Data>,
    /// What a rebuilt Micro is compiled with ([`App::reload`]): the engine the app's sandboxes
    /// run on, the compile budget and the compile cache.
    pub(crate) compiler: Compiler,
}

/// How one Micro answers: its component, run in a fresh sandbox for each execution, or the
/// files of a static Micro.
#[expect(
    clippy::large_enum_variant,
    reason = "at most five per app, made once at load: boxing would only add a pointer chase"
)]
pub(crate) enum Runtime {
    /// A component Micro.
    Sandbox(Sandbox),
    /// A static Micro (`engine = "static"`).
    Site(Site),
}

impl Runtime {
    /// The Micro's name.
    pub(crate) fn name(&self) -> &str {
        match self {
            Self::Sandbox(sandbox) => sandbox.name(),
            Self::Site(site) => site.name(),
        }
    }

    /// Executions in flight: a static Micro runs none.
    pub(crate) fn in_flight(&self) -> usize {
        match self {
            Self::Sandbox(sandbox) => sandbox.in_flight(),
            Self::Site(_) => 0,
        }
    }
}

/// How many of an app's Micros run a component (at least one, for the engine's sizing).
fn components(manifest: &Manifest) -> usize {
    manifest
        .micros
        .iter()
        .filter(|m| !m.is_static())
        .count()
        .max(1)
}

/// What compiling a Micro's component needs, kept for [`App::reload`].
pub(crate) struct Compiler {
    engine: Engine,
    budget: crate::settings::limits::CompileBudget,
    cache: Option<crate::engine::CompileCache>,
    /// The host interfaces every Micro is linked with.
    plugins: Plugins,
}

/// The host interfaces a Micro may import beyond WASI and wasi:http.
fn plugins() -> Plugins {
    let sqlite: Arc<dyn HostPlugin> = Arc::new(Sqlite);
    Arc::from([sqlite])
}

/// Deta's Base and Drive hosts, answered for a Micro's outbound requests from the app's data.
#[derive(Debug)]
struct DataHosts(Arc<Data>);

impl LocalHosts for DataHosts {
    fn answers(&self, host: &str) -> bool {
        Service::at_host(host).is_some()
    }

    fn answer(
        &self,
        host: &str,
        request: http::Request<wasmtime_wasi_http::WasiBody>,
    ) -> std::pin::Pin<Box<dyn Future<Output = http::Response<wasmtime_wasi_http::WasiBody>> + Send>>
    {
        use http_body_util::BodyExt as _;
        let data = Arc::clone(&self.0);
        let service = Service::at_host(host);
        Box::pin(async move {
            let Some(service) = service else {
                // Not one of its hosts (`answers` said so first): nothing is there.
                let empty = http_body_util::Empty::new().map_err(|never| match never {});
                let mut response = http::Response::new(empty.boxed_unsync());
                *response.status_mut() = http::StatusCode::NOT_FOUND;
                return response;
            };
            let response = data.answer_micro(service, request).await;
            response.map(|body| body.map_err(|never| match never {}).boxed_unsync())
        })
    }
}

impl App {
    /// Loads an app: checks the manifest's files, prepares the state folder (keys, fresh `/tmp`
    /// folders), compiles every component and pre-instantiates it.
    pub fn load(manifest: Manifest, config: &Config) -> anyhow::Result<Self> {
        let engine = Engine::new(engine_size(config, components(&manifest)))?;
        Self::load_on(manifest, config, engine)
    }

    /// [`App::load`] on an engine shared with other apps (a server's: see [`shared_engine`]).
    pub(crate) fn load_on(
        manifest: Manifest,
        config: &Config,
        engine: Engine,
    ) -> anyhow::Result<Self> {
        manifest.check_files()?;
        check_env_settings(&manifest, config)?;
        let actions = crate::app::actions::resolve(&manifest, &config.actions)?;
        let state = StateDir::open(config.state_dir_for(&manifest))?;
        let names: Vec<&str> = manifest.micros.iter().map(|m| m.name.as_str()).collect();
        let keys = state.keys(&names)?;
        let cache = open_cache(&state);
        let hostname = config
            .hostname
            .clone()
            .unwrap_or_else(|| config.address.to_string());

        let project_keys = names
            .iter()
            .map(|name| keys.project_key(name).context("a Micro has no key"))
            .collect::<anyhow::Result<Vec<_>>>()?;
        let plugins = plugins();
        let data = Arc::new(Data::open(
            &state,
            keys.project_id.clone(),
            project_keys,
            config.limits.data_bytes,
        )?);
        let metrics = Arc::new(crate::services::metrics::Metrics::new());
        let mut micros = Vec::with_capacity(manifest.micros.len());
        for micro in &manifest.micros {
            let name = micro.name.as_str();
            if micro.is_static() {
                let site = Site::load(name, &micro.serve_dir(&manifest))?;
                tracing::info!(micro = name, files = site.files(), "static files ready");
                micros.push(Runtime::Site(site));
                continue;
            }
            let pre = sandbox::prepare(
                &engine,
                name,
                &micro.component_path(&manifest),
                &config.compile,
                cache.as_ref(),
                &plugins,
            )?;
            let mut env = vec![
                (
                    "DETA_PROJECT_KEY".to_string(),
                    keys.project_key(name).context("a Micro has no key")?,
                ),
                ("DETA_SPACE_APP".to_string(), "true".to_string()),
                (
                    "DETA_SPACE_APP_VERSION".to_string(),
                    manifest.version.clone(),
                ),
                ("DETA_SPACE_APP_HOSTNAME".to_string(), hostname.clone()),
                ("DETA_SPACE_APP_MICRO_NAME".to_string(), name.to_string()),
                (
                    "DETA_SPACE_APP_MICRO_TYPE".to_string(),
                    if micro.is_primary() {
                        "primary"
                    } else {
                        "normal"
                    }
                    .to_string(),
                ),
                ("PORT".to_string(), config.address.port().to_string()),
            ];
            for preset in &micro.presets.env {
                let set = config.env.iter().rev().find(|s| {
                    s.name == preset.name && s.micro.as_ref().is_none_or(|m| m == &micro.name)
                });
                if let Some(value) = set
                    .map(|s| s.value.clone())
                    .or_else(|| preset.default.clone())
                {
                    env.push((preset.name.to_string(), value));
                }
            }
            let spec = SandboxSpec {
                name: name.to_string(),
                env,
                root: micro
                    .src_dir(&manifest)
                    .canonicalize()
                    .with_context(|| format!("micro `{name}`: cannot open its `src`"))?,
                tmp: state.tmp(name, config.keep_tmp)?,
                limits: config.limits.clone(),
                outbound: Arc::new(Arc::new(
                    crate::services::outbound::OutboundPolicy::new(
                        &config.outbound,
                        micro.allowed_outbound_hosts.clone(),
                    )
                    .count_denials_in(metrics.breach_counter("outbound"))
                    .answer_locally(Arc::new(DataHosts(Arc::clone(&data)))),
                )),
                plugins: Arc::clone(&plugins),
                tmp_refusals: metrics.breach_counter("tmp"),
            };
            micros.push(Runtime::Sandbox(Sandbox::new(&engine, pre, spec)?));
        }
        let primary = manifest
            .micros
            .iter()
            .position(|m| m.is_primary())
            .context("the app has no primary Micro")?;
        let router = crate::spec::routing::Router::new(&manifest);
        let access = manifest
            .micros
            .iter()
            .map(crate::services::auth::MicroAccess::new)
            .collect::<anyhow::Result<Vec<_>>>()?;
        let credentials = crate::services::auth::Credentials::open(&state);
        tracing::info!(
            app = manifest.app_name.as_deref().unwrap_or(""),
            micros = manifest.micros.len(),
            "app loaded"
        );
        Ok(Self {
            inner: Arc::new(AppInner {
                manifest,
                micros,
                primary,
                router,
                hostname,
                actions,
                last_runs: crate::app::actions::LastRuns::default(),
                front_door: config.front_door.clone(),
                auth: config.auth,
                credentials,
                access,
                metrics,
                data,
                compiler: Compiler {
                    engine,
                    budget: config.compile.clone(),
                    cache,
                    plugins,
                },
            }),
        })
    }

    /// Compiles the Micro `name`'s component again from its file and swaps it in: requests and
    /// actions starting from now run the new one, those in flight finish on the old one. On any
    /// error (a missing or invalid component, one that does not link), the old one stays.
    /// Blocking: it compiles (unless the cache has the component).
    pub fn reload(&self, name: &str) -> anyhow::Result<()> {
        let inner = &*self.inner;
        let index = inner
            .manifest
            .micros
            .iter()
            .position(|m| m.name.as_str() == name)
            .with_context(|| format!("the app has no Micro `{name}`"))?;
        inner.manifest.check_files()?;
        let sandbox = match &inner.micros[index] {
            Runtime::Sandbox(sandbox) => sandbox,
            Runtime::Site(site) => {
                site.reload()?;
                tracing::info!(
                    micro = name,
                    files = site.files(),
                    "read the static files again"
                );
                return Ok(());
            }
        };
        let compiler = &inner.compiler;
        let pre = sandbox::prepare(
            &compiler.engine,
            name,
            &inner.manifest.micros[index].component_path(&inner.manifest),
            &compiler.budget,
            compiler.cache.as_ref(),
            &compiler.plugins,
        )?;
        sandbox.replace(pre);
        tracing::info!(micro = name, "swapped in the rebuilt component");
        if let Some(cache) = &compiler.cache {
            let current: Vec<_> = inner
                .manifest
                .micros
                .iter()
                .filter(|m| !m.is_static())
                .map(|m| m.component_path(&inner.manifest))
                .collect();
            let removed = cache.keep_only(compiler.engine.wasmtime(), &current);
            tracing::debug!(
                removed,
                "compile cache pruned to the app's current components"
            );
        }
        Ok(())
    }

    /// Checks an app without running it: the manifest's files, and every component compiled,
    /// linked against the Micro world and pre-instantiated. Of the state folder it touches only
    /// the compile cache, which it fills (atomically), so it is safe beside a running instance
    /// of the same app and makes the next start fast.
    pub fn check(manifest: &Manifest) -> anyhow::Result<()> {
        Self::check_with(manifest, &Config::default())
    }

    /// [`App::check`] with the operator's settings: the compile budget, the state folder and the
    /// limits that shape compiled code (the memory limit), as `up` will use them.
    pub fn check_with(manifest: &Manifest, config: &Config) -> anyhow::Result<()> {
        manifest.check_files()?;
        let engine = Engine::new(engine_size(config, 1))?;
        let cache = StateDir::open(config.state_dir_for(manifest))
            .ok()
            .and_then(|state| open_cache(&state));
        let plugins = plugins();
        for micro in &manifest.micros {
            if micro.is_static() {
                Site::load(micro.name.as_str(), &micro.serve_dir(manifest))?;
                continue;
            }
            sandbox::prepare(
                &engine,
                micro.name.as_str(),
                &micro.component_path(manifest),
                &config.compile,
                cache.as_ref(),
                &plugins,
            )?;
        }
        Ok(())
    }

    /// The runtime's metrics in the Prometheus text format (OpenMetrics), as
    /// `/__space/metrics` on the admin listener serves them.
    pub fn metrics_text(&self) -> String {
        let in_flight: Vec<(&str, usize)> = self
            .inner
            .micros
            .iter()
            .map(|m| (m.name(), m.in_flight()))
            .collect();
        self.inner.metrics.render(&in_flight)
    }

    /// The app's manifest.
    pub fn manifest(&self) -> &Manifest {
        &self.inner.manifest
    }
}

/// The app's compile cache, or none (said in the log) if it cannot be opened: compiling
/// without it is slower, never wrong.
fn open_cache(state: &StateDir) -> Option<crate::engine::CompileCache> {
    match crate::engine::CompileCache::open(state) {
        Ok(cache) => Some(cache),
        Err(error) => {
            tracing::warn!("compiling without the cache: {error:#}");
            None
        }
    }
}

/// What the engine of an app with `micros` Micros is sized for. Pooled executions: every
/// execution the limits allow at once, which HTTP/1.1 bounds by the connection cap (one request
/// in flight per connection) plus the app's scheduled actions.
fn engine_size(config: &Config, micros: usize) -> crate::engine::EngineSize {
    let allowed = micros.saturating_mul(config.limits.max_in_flight);
    let reachable = config
        .front_door
        .max_connections
        .saturating_add(crate::spec::manifest::MAX_ACTIONS_PER_APP);
    crate::engine::EngineSize {
        memory: config.limits.memory,
        table_elements: config.limits.max_table_elements,
        max_memories: u32::try_from(config.limits.max_memories).unwrap_or(u32::MAX),
        max_tables: u32::try_from(config.limits.max_tables).unwrap_or(u32::MAX),
        pooled_executions: config
            .pooling
            .then(|| u32::try_from(allowed.min(reachable)).unwrap_or(u32::MAX)),
        enforce_limits: config.enforces_limits(),
    }
}

/// An engine for many apps at once, all under `config`'s limits: its pool holds as many
/// executions as the front door lets in (one per connection) plus `actions` scheduled runs.
pub(crate) fn shared_engine(config: &Config, actions: usize) -> anyhow::Result<Engine> {
    let mut size = engine_size(config, 1);
    size.pooled_executions = config.pooling.then(|| {
        u32::try_from(config.front_door.max_connections.saturating_add(actions)).unwrap_or(u32::MAX)
    });
    Engine::new(size)
}

/// Every `--env` must name a preset that a Micro declares.
fn check_env_settings(manifest: &Manifest, config: &Config) -> anyhow::Result<()> {
    for setting in &config.env {
        let declared = manifest.micros.iter().any(|m| {
            setting.micro.as_ref().is_none_or(|name| name == &m.name)
                && m.presets.env.iter().any(|p| p.name == setting.name)
        });
        if !declared {
            match &setting.micro {
                Some(micro) if !manifest.micros.iter().any(|m| &m.name == micro) => {
                    bail!(
                        "--env {micro}.{}: the app has no Micro `{micro}`",
                        setting.name
                    )
                }
                Some(micro) => bail!(
                    "--env {micro}.{}: micro `{micro}` declares no preset `{}`; only variables under `[[micros.presets.env]]` can be set",
                    setting.name,
                    setting.name
                ),
                None => bail!(
                    "--env {}: no Micro declares a preset `{}`; only variables under `[[micros.presets.env]]` can be set",
                    setting.name,
                    setting.name
                ),
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pool_holds_what_the_limits_and_the_front_door_allow() {
        let config = Config::default();
        // One Micro: its 1024 executions.
        assert_eq!(engine_size(&config, 1).pooled_executions, Some(1024));
        // Five Micros could have 5120, but 4096 connections carry at most 4096 requests, plus
        // the app's 25 actions.
        assert_eq!(engine_size(&config, 5).pooled_executions, Some(4121));
        let off = Config {
            pooling: false,
            ..Config::default()
        };
        assert_eq!(engine_size(&off, 5).pooled_executions, None);
        assert_eq!(engine_size(&config, 1).memory, config.limits.memory);
    }
}
