//! The wasmtime engine every Micro runs on, and the epoch ticker that lets time limits fire.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use anyhow::Context as _;

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
