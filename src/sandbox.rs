//! The sandbox of one execution: the only place a `Store` is made, with every limit applied, and
//! the one path (HTTP requests now, scheduled actions later) by which a Micro runs.

mod body;
mod filesystem;
mod limiter;
mod outcome;
mod output;
mod plugin;
mod quota;

use std::any::Any;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::{Arc, PoisonError, RwLock};
use std::task::Poll;
use std::time::Instant;

use anyhow::Context as _;
use bytes::Bytes;
use tokio::sync::Semaphore;
use tracing::Instrument as _;
use wasmtime::component::{Linker, ResourceTable};
use wasmtime::{Store, UpdateDeadline};
use wasmtime_wasi::filesystem::WasiFilesystemCtx;
use wasmtime_wasi::{FsPerms, WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};
use wasmtime_wasi_http::p2::bindings::ProxyPre;
use wasmtime_wasi_http::p2::bindings::http::types::Scheme;
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpHooks, WasiHttpView};

pub(crate) use body::BodyEnd;
pub use body::ResponseBody;
pub use outcome::ExecutionError;
use outcome::{classify, setup_error};
pub(crate) use plugin::{ExecutionInfo, HostPlugin, OutgoingHttp, Plugins};

use crate::engine::{CompileCache, Engine};
use crate::settings::limits::{CompileBudget, Limits};
use filesystem::TmpFiles;
use limiter::MemoryLimiter;
use output::GuestOutput;
use quota::TmpQuota;

/// The mark of a request that reached the server over TLS the server ended itself (`micros
/// server --tls-cert`), in its extensions: the guest is told its scheme is `https`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct OverTls;

/// Compiles a Micro's component, links it against the Micro world and pre-instantiates it: all
/// the per-Micro work, done once at load (and all that `micros check` needs to prove).
pub(crate) fn prepare(
    engine: &Engine,
    name: &str,
    path: &Path,
    budget: &CompileBudget,
    cache: Option<&CompileCache>,
    plugins: &[Arc<dyn HostPlugin>],
) -> anyhow::Result<ProxyPre<Host>> {
    let component = engine.compile(name, path, budget, cache)?;
    let mut linker = Linker::<Host>::new(engine.wasmtime());
    wasmtime_wasi::p2::add_to_linker_async(&mut linker)
        .map_err(anyhow::Error::from)
        .context("failed to link WASI")?;
    wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut linker)
        .map_err(anyhow::Error::from)
        .context("failed to link wasi:http")?;
    for plugin in plugins {
        plugin.add_to_linker(&mut linker)?;
    }
    if engine.enforces_limits() {
        filesystem::add_to_linker(&mut linker).context("failed to link the /tmp quota")?;
    }
    let pre = linker
        .instantiate_pre(&component)
        .map_err(anyhow::Error::from)
        .with_context(|| {
            format!("micro `{name}` imports something outside the Micro world (wit/micro.wit)")
        })?;
    ProxyPre::new(pre).map_err(anyhow::Error::from).with_context(|| {
        format!("micro `{name}` does not export `wasi:http/incoming-handler`: build it as a wasi:http proxy")
    })
}

/// What a store holds for one execution: WASI, wasi-http, the resource table, the limiter, and
/// the state of each plug-in.
pub(crate) struct Host {
    /// Keeps the epoch ticker running while this store exists: a guest spinning in wasm is only
    /// stopped by the ticker, so it must outlive every store, even one outliving its app.
    _engine: Engine,
    table: ResourceTable,
    wasi: WasiCtx,
    http: WasiHttpCtx,
    limiter: MemoryLimiter,
    tmp: TmpFiles,
    outbound: Box<dyn WasiHttpHooks + Send>,
    plugins: Vec<Box<dyn Any + Send>>,
}

impl Host {
    /// The store's resource table.
    pub(crate) fn table(&mut self) -> &mut ResourceTable {
        &mut self.table
    }

    /// The state a plug-in made for this execution ([`HostPlugin::new_state`]).
    pub(crate) fn plugin<T: Any>(&mut self) -> wasmtime::Result<&mut T> {
        self.plugins
            .iter_mut()
            .find_map(|state| state.downcast_mut::<T>())
            .ok_or_else(|| {
                wasmtime::format_err!(
                    "no plug-in state `{}` in this store",
                    std::any::type_name::<T>()
                )
            })
    }
}

impl WasiView for Host {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl WasiHttpView for Host {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView {
            ctx: &mut self.http,
            table: &mut self.table,
            hooks: &mut *self.outbound,
        }
    }
}

/// Everything a Micro's executions share: the pre-instantiated component, its environment and
/// folders, and the limits. Built once at load; each execution makes a fresh store from it.
pub(crate) struct Sandbox {
    name: String,
    engine: Engine,
    /// The component each new execution instantiates. `micros up --watch` replaces it with a
    /// rebuilt one; an execution takes its own handle when it starts, so those in flight finish
    /// on the component they started with.
    pre: RwLock<ProxyPre<Host>>,
    env: Vec<(String, String)>,
    /// The Micro's folders as the guest sees them (`/` read-only, `/tmp` writable), opened once
    /// at load: every store shares the two handles instead of opening the paths again (about 5%
    /// of a request's CPU, BENCHMARKS.md). A directory handle carries no state of its own that
    /// one execution could leave for the next: reads and writes go to files opened under it.
    preopens: WasiFilesystemCtx,
    /// The Micro's `src`, canonical (`App::load` resolves it): where its SQLite databases may
    /// be opened.
    root: Arc<Path>,
    /// Where this Micro's outbound HTTP goes.
    outbound: Arc<dyn OutgoingHttp>,
    /// The host interfaces beyond WASI and wasi:http.
    plugins: Plugins,
    /// The books of `tmp`, shared by every execution of this Micro.
    tmp_quota: Arc<TmpQuota>,
    limits: Limits,
    /// One permit per execution that may be in flight.
    in_flight: Arc<Semaphore>,
}

/// What a Micro needs besides its component: who it is, what it sees, what it may use.
pub(crate) struct SandboxSpec {
    pub name: String,
    pub env: Vec<(String, String)>,
    /// The Micro's `src`, canonical.
    pub root: PathBuf,
    pub tmp: PathBuf,
    pub limits: Limits,
    /// Where its outbound HTTP goes.
    pub outbound: Arc<dyn OutgoingHttp>,
    /// The host interfaces it was linked with ([`prepare`]).
    pub plugins: Plugins,
    /// Where writes refused at the `/tmp` limits are counted.
    pub tmp_refusals: prometheus_client::metrics::counter::Counter,
}

impl Sandbox {
    /// A sandbox for a Micro from its prepared component (see [`prepare`]).
    pub(crate) fn new(
        engine: &Engine,
        pre: ProxyPre<Host>,
        spec: SandboxSpec,
    ) -> anyhow::Result<Self> {
        let mut tmp_quota =
            TmpQuota::load(&spec.tmp, spec.limits.tmp_bytes, spec.limits.tmp_entries)
                .with_context(|| format!("micro `{}`: cannot count its /tmp", spec.name))?;
        tmp_quota.count_refusals_in(spec.tmp_refusals);
        let preopens = open_folders(&spec.name, &spec.root, &spec.tmp)?;
        Ok(Self {
            root: spec.root.clone().into(),
            name: spec.name,
            engine: engine.clone(),
            pre: RwLock::new(pre),
            env: spec.env,
            preopens,
            tmp_quota: Arc::new(tmp_quota),
            outbound: spec.outbound,
            plugins: spec.plugins,
            in_flight: Arc::new(Semaphore::new(spec.limits.max_in_flight)),
            limits: spec.limits,
        })
    }

    /// The Micro's name.
    pub(crate) fn name(&self) -> &str {
        &self.name
    }

    /// Makes `pre` the component that executions starting from now instantiate; those in flight
    /// go on with theirs.
    pub(crate) fn replace(&self, pre: ProxyPre<Host>) {
        *self.pre.write().unwrap_or_else(PoisonError::into_inner) = pre;
    }

    /// The limits every execution of this Micro runs under.
    pub(crate) fn limits(&self) -> &Limits {
        &self.limits
    }

    /// The one place a store is made: environment, the folders opened at load, output capture,
    /// no sockets, the memory limiter, and an epoch deadline that yields to other tasks every
    /// tick and traps once `deadline` has passed.
    fn new_store(
        &self,
        deadline: Instant,
        stdout: GuestOutput,
        stderr: GuestOutput,
    ) -> Store<Host> {
        let mut wasi = WasiCtxBuilder::new();
        wasi.envs(&self.env)
            .stdout(stdout)
            .stderr(stderr)
            .allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false)
            .socket_addr_check(|_, _| Box::pin(async { false }));
        let host = Host {
            _engine: self.engine.clone(),
            table: {
                let mut table = ResourceTable::new();
                table.set_max_capacity(self.limits.max_handles);
                table
            },
            wasi: {
                let mut wasi = wasi.build();
                *wasi.filesystem() = self.preopens.clone();
                wasi
            },
            http: WasiHttpCtx::new(),
            limiter: MemoryLimiter::new(&self.limits),
            tmp: TmpFiles::new(Arc::clone(&self.tmp_quota)),
            outbound: self.outbound.hooks(),
            plugins: {
                let execution = ExecutionInfo {
                    root: &self.root,
                    deadline: self.engine.enforces_limits().then_some(deadline),
                };
                self.plugins
                    .iter()
                    .map(|plugin| plugin.new_state(&execution))
                    .collect()
            },
        };
        let mut store = Store::new(self.engine.wasmtime(), host);
        if !self.engine.enforces_limits() {
            return store;
        }
        store.limiter(|host| &mut host.limiter);
        store.set_epoch_deadline(1);
        store.epoch_deadline_callback(move |_| {
            Ok(if Instant::now() >= deadline {
                UpdateDeadline::Interrupt
            } else {
                UpdateDeadline::Yield(1)
            })
        });
        store
    }

    /// The most bytes a request body may have: the limit, or none at all in a benchmark build
    /// with the limits off.
    pub(crate) fn request_cap(&self) -> Option<u64> {
        self.engine
            .enforces_limits()
            .then_some(self.limits.request_body)
    }

    /// The most bytes a response body may have, likewise.
    fn response_cap(&self) -> u64 {
        if self.engine.enforces_limits() {
            self.limits.response_body
        } else {
            u64::MAX
        }
    }

    /// Executions running now.
    pub(crate) fn in_flight(&self) -> usize {
        self.limits
            .max_in_flight
            .saturating_sub(self.in_flight.available_permits())
    }

    /// Runs one request through the Micro's `wasi:http` handler in a fresh store.
    ///
    /// Returns once the response head is known. The body streams afterwards and fails (rather
    /// than ending early) if the execution does. The execution runs on the caller's task until
    /// the head is known, then (if it is not done yet) on a task of its own. It is bounded by the
    /// time limit twice over: the epoch deadline stops a guest spinning in wasm, and a timer
    /// around the whole execution stops one blocked in a host call.
    pub(crate) async fn handle<B>(
        &self,
        request: http::Request<B>,
    ) -> Result<http::Response<ResponseBody>, ExecutionError>
    where
        B: http_body::Body<Data = Bytes> + Send + 'static,
        B::Error: Into<wasmtime_wasi_http::Error>,
    {
        // Held until the execution ends, body included: a refused request never instantiates.
        let permit =
            self.in_flight
                .clone()
                .try_acquire_owned()
                .map_err(|_| ExecutionError::Overloaded {
                    limit: self.limits.max_in_flight,
                })?;
        let started = Instant::now();
        let is_head = request.method() == http::Method::HEAD;
        let limit = self.limits.execution_time;
        let deadline = started + limit;
        let (stdout, stderr, log) = GuestOutput::pair(&self.name, self.limits.guest_output);
        let mut store = self.new_store(deadline, stdout, stderr);
        let (head_tx, mut head_rx) = tokio::sync::oneshot::channel();
        let (done_tx, done_rx) = tokio::sync::oneshot::channel();
        let scheme = if request.extensions().get::<OverTls>().is_some() {
            Scheme::Https
        } else {
            Scheme::Http
        };
        let mut http = store.data_mut().http();
        let request = http
            .new_incoming_request(scheme, request)
            .map_err(|e| setup_error(&anyhow::Error::from(e)))?;
        let out = http
            .new_response_outparam(head_tx)
            .map_err(|e| setup_error(&anyhow::Error::from(e)))?;
        let pre = self
            .pre
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        let limits = self.limits.clone();
        let timed = self.engine.enforces_limits();

        let execution = async move {
            let run = async {
                let proxy = pre.instantiate_async(&mut store).await?;
                proxy
                    .wasi_http_incoming_handler()
                    .call_handle(&mut store, request, out)
                    .await
            };
            let ran = if timed {
                tokio::time::timeout_at(deadline.into(), run).await
            } else {
                Ok(run.await)
            };
            let result = match ran {
                Ok(Ok(())) => {
                    if store.data().limiter.was_hit() {
                        // The guest's runtime turned the refused growth into its own error
                        // (CPython's MemoryError, a JavaScript exception) and answered: the
                        // breach is still the operator's to see.
                        tracing::warn!(
                            error.type = "memory",
                            limit = limits.memory,
                            "a memory growth was refused at the execution's limit; the guest \
                             recovered and answered itself"
                        );
                    }
                    Ok(())
                }
                Err(_elapsed) => Err(ExecutionError::Timeout { limit }),
                Ok(Err(error)) => Err(classify(&error, store.data().limiter.was_hit(), &limits)),
            };
            drop(store);
            log.lock().unwrap_or_else(|e| e.into_inner()).finish();
            let elapsed_ms = started.elapsed().as_millis() as u64;
            match &result {
                Ok(()) => tracing::debug!(elapsed_ms, "execution finished"),
                Err(error) => {
                    tracing::warn!(elapsed_ms, error.type = error.kind(), "execution failed: {error}")
                }
            }
            let _ = done_tx.send(result);
            drop(permit);
        };
        // The execution runs on the caller's task until the head is known: a small response is
        // usually complete by then, and running it here saves two hand-offs between threads per
        // request (the largest cost measured in BENCHMARKS.md). Dropping this future before the
        // head (the client went away) drops the execution with it, which stops it.
        // Outside tokio's cooperative budget: a caller's task that answers many requests in one
        // poll (an embedder's loop, a benchmark) would otherwise run out of it part-way through an
        // execution, which then yields after its head and goes to a task of its own, costing the
        // hand-offs this saves. The epoch deadline still makes a long execution yield every tick.
        // Polled here, it runs in the caller's span already; only the rest, if spawned, is
        // given the span (entering a span costs, and this is polled several times a request).
        let mut execution: Option<Execution> = Some(Box::pin(execution));
        let head = tokio::task::coop::unconstrained(std::future::poll_fn(|cx| {
            if let Poll::Ready(head) = Pin::new(&mut head_rx).poll(cx) {
                return Poll::Ready(head.ok());
            }
            if let Some(running) = &mut execution
                && running.as_mut().poll(cx).is_ready()
            {
                execution = None;
                // The store, and the head's sender in it, is gone: the channel holds its answer.
                // Read without `poll`, which may say "not yet" when the task has used up its
                // tokio budget: the answer is there, and this is the only chance to read it.
                return Poll::Ready(head_rx.try_recv().ok());
            }
            Poll::Pending
        }))
        .await;

        match head {
            Some(Ok(response)) => {
                let declared = response
                    .headers()
                    .get(http::header::CONTENT_LENGTH)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.parse::<u64>().ok());
                let cap = self.response_cap();
                if declared.is_some_and(|len| len > cap) {
                    return Err(ExecutionError::ResponseTooLarge {
                        limit: self.limits.response_body,
                    });
                }
                // Still running (a body larger than its channel, a guest working after the head):
                // the rest goes to a task of its own, so the time limit holds even while the
                // client reads slowly. From here the body owns it: dropping the body unfinished
                // stops it, unless the response has no body to send (HEAD, 204, 304).
                let bodiless = is_head || matches!(response.status().as_u16(), 204 | 304);
                let abort =
                    execution.map(|rest| tokio::spawn(rest.in_current_span()).abort_handle());
                let abort = if bodiless { None } else { abort };
                Ok(response.map(|body| ResponseBody::guest(body, cap, declared, done_rx, abort)))
            }
            Some(Err(code)) => Err(ExecutionError::GuestError(format!("{code:?}"))),
            None => {
                // No head (the guest dropped its outparam): the outcome says why, once the
                // execution has ended.
                if let Some(rest) = execution {
                    rest.await;
                }
                match done_rx.await {
                    Ok(Err(error)) => Err(error),
                    Ok(Ok(())) => Err(ExecutionError::NoResponse),
                    Err(_) => Err(ExecutionError::Aborted),
                }
            }
        }
    }
}

/// Opens a Micro's folders as its guests see them: `root` read-only as `/`, `tmp` writable as
/// `/tmp`.
fn open_folders(name: &str, root: &Path, tmp: &Path) -> anyhow::Result<WasiFilesystemCtx> {
    let mut wasi = WasiCtxBuilder::new();
    for (path, guest, perms) in [
        (root, "/", FsPerms::ReadOnly),
        (tmp, "/tmp", FsPerms::ReadWrite),
    ] {
        wasi.preopened_dir(path, guest, perms)
            .map_err(anyhow::Error::from)
            .with_context(|| format!("failed to open `{}` for micro `{name}`", path.display()))?;
    }
    Ok(wasi.build().filesystem().clone())
}

/// An execution in progress: instantiation, the handler call and the report of its outcome.
type Execution = Pin<Box<dyn Future<Output = ()> + Send>>;
