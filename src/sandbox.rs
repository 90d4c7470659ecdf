//! The sandbox of one execution: the only place a `Store` is made, with every limit applied, and
//! the one path (HTTP requests now, scheduled actions later) by which a Micro runs.

mod body;
mod filesystem;
mod limiter;
mod outcome;
mod output;
mod quota;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context as _;
use bytes::Bytes;
use tokio::sync::Semaphore;
use tracing::Instrument as _;
use wasmtime::component::{Linker, ResourceTable};
use wasmtime::{Store, UpdateDeadline};
use wasmtime_wasi::{FsPerms, WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};
use wasmtime_wasi_http::p2::bindings::ProxyPre;
use wasmtime_wasi_http::p2::bindings::http::types::Scheme;
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpView};

pub(crate) use body::BodyEnd;
pub use body::ResponseBody;
pub use outcome::ExecutionError;
use outcome::{classify, setup_error};

use crate::config::{CompileBudget, Limits};
use crate::engine::Engine;
use crate::outbound::{OutboundHooks, OutboundPolicy};
use filesystem::TmpFiles;
use limiter::MemoryLimiter;
use output::GuestOutput;
use quota::TmpQuota;

/// Compiles a Micro's component, links it against the Micro world and pre-instantiates it: all
/// the per-Micro work, done once at load (and all that `micros check` needs to prove).
pub(crate) fn prepare(
    engine: &Engine,
    name: &str,
    path: &Path,
    budget: &CompileBudget,
    cache: Option<&crate::engine::CompileCache>,
) -> anyhow::Result<ProxyPre<Host>> {
    let component = engine.compile(name, path, budget, cache)?;
    let mut linker = Linker::<Host>::new(engine.wasmtime());
    wasmtime_wasi::p2::add_to_linker_async(&mut linker)
        .map_err(anyhow::Error::from)
        .context("failed to link WASI")?;
    wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut linker)
        .map_err(anyhow::Error::from)
        .context("failed to link wasi:http")?;
    filesystem::add_to_linker(&mut linker).context("failed to link the /tmp quota")?;
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

/// What a store holds for one execution: WASI, wasi-http, the resource table and the limiter.
pub(crate) struct Host {
    /// Keeps the epoch ticker running while this store exists: a guest spinning in wasm is only
    /// stopped by the ticker, so it must outlive every store, even one outliving its app.
    _engine: Engine,
    table: ResourceTable,
    wasi: WasiCtx,
    http: WasiHttpCtx,
    limiter: MemoryLimiter,
    tmp: TmpFiles,
    outbound: OutboundHooks,
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
            hooks: &mut self.outbound,
        }
    }
}

/// Everything a Micro's executions share: the pre-instantiated component, its environment and
/// folders, and the limits. Built once at load; each execution makes a fresh store from it.
pub(crate) struct Sandbox {
    name: String,
    engine: Engine,
    pre: ProxyPre<Host>,
    env: Vec<(String, String)>,
    root: PathBuf,
    tmp: PathBuf,
    /// Where this Micro's outbound HTTP may go.
    outbound: Arc<OutboundPolicy>,
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
    pub root: PathBuf,
    pub tmp: PathBuf,
    pub limits: Limits,
    pub outbound: OutboundPolicy,
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
        Ok(Self {
            name: spec.name,
            engine: engine.clone(),
            pre,
            env: spec.env,
            root: spec.root,
            tmp: spec.tmp,
            tmp_quota: Arc::new(tmp_quota),
            outbound: Arc::new(spec.outbound),
            in_flight: Arc::new(Semaphore::new(spec.limits.max_in_flight)),
            limits: spec.limits,
        })
    }

    /// The Micro's name.
    pub(crate) fn name(&self) -> &str {
        &self.name
    }

    /// The limits every execution of this Micro runs under.
    pub(crate) fn limits(&self) -> &Limits {
        &self.limits
    }

    /// The one place a store is made: environment, filesystem, output capture, no sockets, the
    /// memory limiter, and an epoch deadline that yields to other tasks every tick and traps
    /// once `deadline` has passed.
    fn new_store(
        &self,
        deadline: Instant,
        stdout: GuestOutput,
        stderr: GuestOutput,
    ) -> anyhow::Result<Store<Host>> {
        let mut wasi = WasiCtxBuilder::new();
        wasi.envs(&self.env)
            .stdout(stdout)
            .stderr(stderr)
            .allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false)
            .socket_addr_check(|_, _| Box::pin(async { false }));
        wasi.preopened_dir(&self.root, "/", FsPerms::ReadOnly)
            .map_err(anyhow::Error::from)
            .with_context(|| {
                format!(
                    "failed to open `{}` for micro `{}`",
                    self.root.display(),
                    self.name
                )
            })?;
        wasi.preopened_dir(&self.tmp, "/tmp", FsPerms::ReadWrite)
            .map_err(anyhow::Error::from)
            .with_context(|| {
                format!(
                    "failed to open `{}` for micro `{}`",
                    self.tmp.display(),
                    self.name
                )
            })?;
        let host = Host {
            _engine: self.engine.clone(),
            table: {
                let mut table = ResourceTable::new();
                table.set_max_capacity(self.limits.max_handles);
                table
            },
            wasi: wasi.build(),
            http: WasiHttpCtx::new(),
            limiter: MemoryLimiter::new(&self.limits),
            tmp: TmpFiles::new(Arc::clone(&self.tmp_quota)),
            outbound: OutboundHooks::new(Arc::clone(&self.outbound)),
        };
        let mut store = Store::new(self.engine.wasmtime(), host);
        store.limiter(|host| &mut host.limiter);
        store.set_epoch_deadline(1);
        store.epoch_deadline_callback(move |_| {
            Ok(if Instant::now() >= deadline {
                UpdateDeadline::Interrupt
            } else {
                UpdateDeadline::Yield(1)
            })
        });
        Ok(store)
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
    /// than ending early) if the execution does. The execution runs in its own task so requests
    /// use every core; it is bounded by the time limit twice over: the epoch deadline stops a
    /// guest spinning in wasm, and a timer around the whole task stops one blocked in a host call.
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
        let mut store = self
            .new_store(deadline, stdout, stderr)
            .map_err(|e| setup_error(&e))?;
        let (head_tx, head_rx) = tokio::sync::oneshot::channel();
        let (done_tx, done_rx) = tokio::sync::oneshot::channel();
        let mut http = store.data_mut().http();
        let request = http
            .new_incoming_request(Scheme::Http, request)
            .map_err(|e| setup_error(&anyhow::Error::from(e)))?;
        let out = http
            .new_response_outparam(head_tx)
            .map_err(|e| setup_error(&anyhow::Error::from(e)))?;
        let pre = self.pre.clone();
        let limits = self.limits.clone();

        let execution = async move {
            let run = async {
                let proxy = pre.instantiate_async(&mut store).await?;
                proxy
                    .wasi_http_incoming_handler()
                    .call_handle(&mut store, request, out)
                    .await
            };
            let result = match tokio::time::timeout_at(deadline.into(), run).await {
                Ok(Ok(())) => Ok(()),
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
        let task = tokio::spawn(execution.in_current_span());
        // If the caller goes away before the head (the client closed the connection), the
        // execution is abandoned work: stop it rather than let it run to the time limit.
        let mut guard = AbortOnDrop(Some(task.abort_handle()));

        match head_rx.await {
            Ok(Ok(response)) => {
                let declared = response
                    .headers()
                    .get(http::header::CONTENT_LENGTH)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.parse::<u64>().ok());
                if declared.is_some_and(|len| len > self.limits.response_body) {
                    return Err(ExecutionError::ResponseTooLarge {
                        limit: self.limits.response_body,
                    });
                }
                // From here the body owns the execution: dropping it unfinished stops it.
                let abort = guard.0.take();
                let bodiless = is_head || matches!(response.status().as_u16(), 204 | 304);
                let abort = if bodiless { None } else { abort };
                Ok(response.map(|body| {
                    ResponseBody::guest(body, self.limits.response_body, done_rx, abort)
                }))
            }
            Ok(Err(code)) => Err(ExecutionError::GuestError(format!("{code:?}"))),
            Err(_) => match done_rx.await {
                Ok(Err(error)) => Err(error),
                Ok(Ok(())) => Err(ExecutionError::NoResponse),
                Err(_) => Err(ExecutionError::Aborted),
            },
        }
    }
}

/// Aborts an execution when dropped, unless its handle was taken.
struct AbortOnDrop(Option<tokio::task::AbortHandle>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        if let Some(handle) = self.0.take() {
            handle.abort();
        }
    }
}
