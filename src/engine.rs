//! The wasmtime engine every Micro runs on, the epoch ticker that lets time limits fire, and
//! compilation under the operator's budget.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use wasmtime::component::Component;

mod cache;

pub(crate) use cache::CompileCache;

use crate::settings::limits::CompileBudget;

/// How often the engine's epoch advances: the granularity of time limits, and how often a busy
/// guest yields its thread to other requests. 10 ms keeps the overhead of the check negligible
/// while a CPU-bound guest is stopped within a few ticks of its deadline.
pub const EPOCH_TICK: Duration = Duration::from_millis(10);

/// A configured wasmtime engine and its epoch ticker; cheap to clone.
#[derive(Clone)]
pub struct Engine {
    engine: wasmtime::Engine,
    /// `None` only in a benchmark build with the limits switched off.
    ticker: Option<Arc<EpochTicker>>,
}

/// Guard pages after each linear memory: with explicit bounds checks (the reservation is the
/// memory limit, not 4 GiB) a guard still lets Cranelift fold small constant offsets.
const MEMORY_GUARD: u64 = 32 * 1024 * 1024;
/// Core instances pooled per execution: a Rust component has a handful; more are refused at the
/// store's own limit, or wait for the pool (503) when many run at once.
const CORE_INSTANCES_PER_EXECUTION: u32 = 8;
/// Linear memories and tables pooled per execution: one or two each in a Rust component.
const MEMORIES_PER_EXECUTION: u32 = 2;
/// Bytes of runtime metadata one component instance may take in the pool (its functions,
/// memories, tables, resources): generous enough for a component built from an interpreter.
const COMPONENT_INSTANCE_SIZE: usize = 8 * 1024 * 1024;
/// Bytes of runtime metadata one core instance may take in the pool.
const CORE_INSTANCE_SIZE: usize = 2 * 1024 * 1024;

/// Regions of slots (memories, tables, stacks) given back to the kernel together: each
/// give-back flushes the TLB of every core, so doing it for many at once saves most of that
/// cost (64 measured best, BENCHMARKS.md). A slot waiting in a batch is not reused until it is
/// flushed; wasmtime flushes a batch early when the pool runs short.
const DECOMMIT_BATCH: usize = 64;
/// The same where the kernel can say which pages a request wrote (`PAGEMAP_SCAN`): those in
/// the window are reset in place, so a small guest's give-back is empty and batching saves
/// nothing, while a slot waiting in a batch keeps a large guest's pages resident (a Python
/// Micro held ~340 MiB instead of ~122 after 40 requests) and the next request takes a colder
/// slot. One at a time: each slot is reused at once (BENCHMARKS.md, 16.).
const DECOMMIT_BATCH_SCANNED: usize = 1;
/// Bytes at the start of a memory or table slot reset in place (zeroed) instead of given back
/// to the kernel: cheaper for the small memories Micros touch per request.
const KEEP_RESIDENT: usize = 128 * 1024;
/// The same where the kernel can say which pages a request wrote (Linux 6.7+ `PAGEMAP_SCAN`):
/// the written pages themselves, wherever they lie, are reset in place (copied back from the
/// image or zeroed) up to this many bytes, and only what is written past it is given back. It
/// covers a Rust guest's stack (1 MiB) and heap, and the ~1.7 MB a Python starter's request
/// writes across its 16 MB image, so the next request faults none of it in (BENCHMARKS.md, 29.).
/// A slot that served keeps at most this much resident for its next request.
const KEEP_RESIDENT_SCANNED: usize = 4 * 1024 * 1024;

/// What the engine is sized for.
#[derive(Debug, Clone, Copy)]
pub(crate) struct EngineSize {
    /// Bytes one linear memory may grow to: the memory limit of an execution.
    pub(crate) memory: u64,
    /// Elements one table may hold.
    pub(crate) table_elements: usize,
    /// Memories one module may define: an execution's limit, so that a module past it is
    /// refused at load rather than at every request.
    pub(crate) max_memories: u32,
    /// Tables one module may define, likewise.
    pub(crate) max_tables: u32,
    /// Executions in flight at once, all Micros together; `None` for no pool (each instance
    /// allocated on demand).
    pub(crate) pooled_executions: Option<u32>,
    /// Whether executions run under their limits: always, except in a benchmark build that
    /// measures what the limits cost (`Config::unlimited`).
    pub(crate) enforce_limits: bool,
}

impl Engine {
    /// Makes an engine for Micros: components, async calls, epoch interruption, and (unless
    /// `size` says otherwise) the pooling allocator: the memory, tables, instance metadata and
    /// stack of every execution come from slots reserved once, and a slot's memory is reset
    /// copy-on-write instead of mapped anew, which is most of what a fresh sandbox costs.
    pub(crate) fn new(size: EngineSize) -> anyhow::Result<Self> {
        let mut config = wasmtime::Config::new();
        config
            .wasm_component_model(true)
            .epoch_interruption(size.enforce_limits)
            .memory_init_cow(true)
            // The reservation is the memory limit: a pool slot never needs more, and the address
            // space of thousands of slots stays small.
            .memory_reservation(size.memory.max(64 * 1024))
            .memory_guard_size(MEMORY_GUARD);
        if let Some(executions) = size.pooled_executions {
            let executions = executions.max(1);
            let mut pool = wasmtime::PoolingAllocationConfig::new();
            pool.total_component_instances(executions)
                .total_stacks(executions)
                .total_core_instances(executions.saturating_mul(CORE_INSTANCES_PER_EXECUTION))
                .total_memories(executions.saturating_mul(MEMORIES_PER_EXECUTION))
                .total_tables(executions.saturating_mul(MEMORIES_PER_EXECUTION))
                .max_memory_size(usize::try_from(size.memory).unwrap_or(usize::MAX))
                .table_elements(size.table_elements)
                .max_component_instance_size(COMPONENT_INSTANCE_SIZE)
                .max_core_instance_size(CORE_INSTANCE_SIZE)
                .max_memories_per_module(size.max_memories)
                .max_tables_per_module(size.max_tables);
            let (keep_resident, batch) =
                if wasmtime::PoolingAllocationConfig::is_pagemap_scan_available() {
                    pool.pagemap_scan(wasmtime::Enabled::Yes);
                    (KEEP_RESIDENT_SCANNED, DECOMMIT_BATCH_SCANNED)
                } else {
                    (KEEP_RESIDENT, DECOMMIT_BATCH)
                };
            pool.decommit_batch_size(batch);
            // Tables stay at the small window: 128 KiB of a table is 16,384 function references,
            // more than a Micro's tables hold, and a wider window is scanned for nothing.
            pool.linear_memory_keep_resident(keep_resident)
                .table_keep_resident(KEEP_RESIDENT);
            config.allocation_strategy(wasmtime::InstanceAllocationStrategy::Pooling(pool));
        }
        let engine = wasmtime::Engine::new(&config)
            .map_err(anyhow::Error::from)
            .context("failed to configure the wasmtime engine")?;
        let ticker = if size.enforce_limits {
            Some(Arc::new(EpochTicker::start(engine.clone())?))
        } else {
            None
        };
        Ok(Self { engine, ticker })
    }

    /// Whether executions run under their limits (see [`EngineSize::enforce_limits`]).
    pub(crate) fn enforces_limits(&self) -> bool {
        self.ticker.is_some()
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
        cache: Option<&CompileCache>,
    ) -> anyhow::Result<Component> {
        let bytes = std::fs::read(path)
            .with_context(|| format!("failed to read micro `{name}` from `{}`", path.display()))?;
        if let Some(cache) = cache {
            let started = Instant::now();
            if let Some(component) = cache.load(&self.engine, &bytes) {
                tracing::info!(
                    micro = name,
                    load_ms = started.elapsed().as_millis() as u64,
                    "loaded from the compile cache"
                );
                return Ok(component);
            }
        }
        let bytes = Arc::new(bytes);
        let engine = self.engine.clone();
        let (done, result) = std::sync::mpsc::channel();
        let rss_before = resident_bytes();
        let started = Instant::now();
        let source = Arc::clone(&bytes);
        let thread = format!("micros-compile-{name}");
        std::thread::Builder::new()
            .name(thread.clone())
            .spawn(move || {
                // Cranelift compiles a component's functions in parallel on rayon's threads: here
                // on a pool of this compilation's own, whose threads have ended when it returns.
                // The threads of rayon's global pool would live on, idle, and an allocator keeps
                // what a live thread freed: the compiler's peak, ~330 MiB for a Python component
                // (BENCHMARKS.md). An ended thread's is the allocator's to give back.
                let compile = || Component::from_binary(&engine, &source);
                let compiled = rayon::ThreadPoolBuilder::new()
                    .thread_name(move |i| format!("{thread}-{i}"))
                    .build_scoped(|worker| worker.run(), |pool| pool.install(compile))
                    .unwrap_or_else(|_| compile());
                let _ = done.send(compiled);
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
                    if let Some(cache) = cache {
                        match cache.store(&self.engine, &bytes, &component) {
                            Ok(mapped) => return Ok(mapped),
                            // Not written, or written but not mapped: served as compiled.
                            Err(error) => tracing::warn!(micro = name, "compile cache: {error:#}"),
                        }
                    }
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
