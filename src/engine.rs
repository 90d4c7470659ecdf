//! The wasmtime engine every Micro runs on, the epoch ticker that lets time limits fire, and
//! compilation under the operator's budget.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use wasmtime::component::Component;

use crate::config::CompileBudget;

/// How often the engine's epoch advances: the granularity of time limits, and how often a busy
/// guest yields its thread to other requests. 10 ms keeps the overhead of the check negligible
/// while a CPU-bound guest is stopped within a few ticks of its deadline.
pub const EPOCH_TICK: Duration = Duration::from_millis(10);

/// A configured wasmtime engine and its epoch ticker; cheap to clone.
#[derive(Clone)]
pub struct Engine {
    engine: wasmtime::Engine,
    _ticker: Arc<EpochTicker>,
}

impl Engine {
    /// Makes an engine for Micros: components, async calls and epoch interruption.
    pub fn new() -> anyhow::Result<Self> {
        let mut config = wasmtime::Config::new();
        config.wasm_component_model(true).epoch_interruption(true);
        let engine = wasmtime::Engine::new(&config)
            .map_err(anyhow::Error::from)
            .context("failed to configure the wasmtime engine")?;
        let ticker = EpochTicker::start(engine.clone())?;
        Ok(Self {
            engine,
            _ticker: Arc::new(ticker),
        })
    }

    /// The wasmtime engine.
    pub fn wasmtime(&self) -> &wasmtime::Engine {
        &self.engine
    }
}

impl Engine {
    /// Compiles a Micro's component from binary wasm (never text), within `budget`.
    ///
    /// A crafted component can take a long time and much memory to compile, so compilation runs
    /// on a thread of its own while this one watches the clock and the process's resident memory;
    /// past either budget the component is refused. Cranelift cannot be interrupted, so a refused
    /// compilation runs on in the background until it ends (the CLI exits on a refused load).
    /// Time and memory growth are logged for every component.
    pub(crate) fn compile(
        &self,
        name: &str,
        path: &Path,
        budget: &CompileBudget,
    ) -> anyhow::Result<Component> {
        let bytes = std::fs::read(path)
            .with_context(|| format!("failed to read micro `{name}` from `{}`", path.display()))?;
        let engine = self.engine.clone();
        let (done, result) = std::sync::mpsc::channel();
        let rss_before = resident_bytes();
        let started = Instant::now();
        std::thread::Builder::new()
            .name(format!("micros-compile-{name}"))
            .spawn(move || {
                let _ = done.send(Component::from_binary(&engine, &bytes));
            })
            .context("failed to start a compiler thread")?;
        let mut growth = 0;
        loop {
            let received = result.recv_timeout(COMPILE_POLL);
            if let (Some(before), Some(now)) = (rss_before, resident_bytes()) {
                growth = growth.max(now.saturating_sub(before));
            }
            // Checked after the last poll too: a budget is a limit, not a race against the poll.
            if started.elapsed() > budget.time {
                bail!(
                    "micro `{name}`: compiling `{}` took longer than the budget of {}; raise it with \
                     --compile-timeout if the component is trusted",
                    path.display(),
                    humantime::format_duration(budget.time)
                );
            }
            if growth > budget.memory {
                bail!(
                    "micro `{name}`: compiling `{}` took more than the budget of {} bytes of memory; \
                     raise it with --compile-memory if the component is trusted",
                    path.display(),
                    budget.memory
                );
            }
            match received {
                Ok(compiled) => {
                    let component = compiled.map_err(anyhow::Error::from).with_context(|| {
                        format!("failed to compile micro `{name}` from `{}`", path.display())
                    })?;
                    tracing::info!(
                        micro = name,
                        compile_ms = started.elapsed().as_millis() as u64,
                        rss_growth_bytes = growth,
                        "compiled"
                    );
                    return Ok(component);
                }
                Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
                Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
                    bail!("the compiler of micro `{name}` stopped without a result")
                }
            }
        }
    }
}

/// How often a compilation is checked against its budget.
const COMPILE_POLL: Duration = Duration::from_millis(10);

/// The process's resident memory, where the system says (Linux); `None` elsewhere, where the
/// memory budget of compilation is not enforced.
pub(crate) fn resident_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// A thread that advances the engine's epoch every [`EPOCH_TICK`]; stopped and joined on drop.
struct EpochTicker {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl EpochTicker {
    fn start(engine: wasmtime::Engine) -> anyhow::Result<Self> {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::Builder::new()
            .name("micros-epoch".into())
            .spawn(move || {
                while !flag.load(Ordering::Relaxed) {
                    std::thread::sleep(EPOCH_TICK);
                    engine.increment_epoch();
                }
            })
            .context("failed to start the epoch ticker thread")?;
        Ok(Self {
            stop,
            thread: Some(thread),
        })
    }
}

impl Drop for EpochTicker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
