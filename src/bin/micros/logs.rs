//! The log subscriber of the binary: lines in the chosen format to stderr, filtered by `RUST_LOG`;
//! while serving, routine lines are written in batches.

use std::io::{self, Write as _};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Condvar, Mutex, PoisonError};
use std::time::Duration;

use tracing::{Level, Metadata};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::MakeWriter;

/// The filter when `RUST_LOG` is not set, or empty.
const DEFAULT_FILTER: &str = "info";

/// The longest a routine line waits in the batch before it is written: short enough for someone
/// watching the log, long enough that a busy server writes once per hundreds of requests.
const FLUSH_INTERVAL: Duration = Duration::from_millis(100);

/// A batch this large is written at once, without waiting for the interval.
const FLUSH_BYTES: usize = 64 * 1024;

/// The format of log lines.
#[derive(Clone, Copy, clap::ValueEnum)]
pub(crate) enum LogFormat {
    Text,
    Json,
}

/// Installs the subscriber for the whole process.
pub(crate) fn install(format: LogFormat) {
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter(std::env::var("RUST_LOG").ok().as_deref()))
        .with_writer(Stderr);
    match format {
        LogFormat::Text => logs
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .init(),
        LogFormat::Json => logs.json().flatten_event(true).init(),
    }
    // A panic's message goes straight to stderr: the lines logged before it go first.
    let report = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |panic| {
        if let Ok(mut batch) = BATCH.lines.try_lock() {
            write_out(&mut batch);
        }
        report(panic);
    }));
}

/// Batches routine lines (info and below) from now until the guard is dropped, which writes what
/// is left. Warnings and errors are never held back: each writes the batch before it, then itself.
///
/// One `write` per line was a tenth of a served request's CPU, and more when stderr is a pipe to
/// a log collector, which each write wakes (BENCHMARKS.md). The cost: on `SIGKILL` or a crash
/// that skips the panic hook, up to [`FLUSH_INTERVAL`] of routine lines is lost.
pub(crate) fn batch() -> Batching {
    if !BATCH.on.swap(true, Ordering::AcqRel) {
        let flusher = std::thread::Builder::new()
            .name("micros-log".into())
            .spawn(|| {
                while BATCH.on.load(Ordering::Acquire) {
                    // Asleep while there is nothing to write: an idle server stays idle.
                    drop(
                        BATCH
                            .started
                            .wait_while(BATCH.lock(), |lines| {
                                lines.is_empty() && BATCH.on.load(Ordering::Acquire)
                            })
                            .unwrap_or_else(PoisonError::into_inner),
                    );
                    std::thread::sleep(FLUSH_INTERVAL);
                    write_out(&mut BATCH.lock());
                }
            });
        if let Err(error) = flusher {
            BATCH.on.store(false, Ordering::Release);
            tracing::warn!("log lines are written one by one: no thread to batch them ({error})");
        }
    }
    Batching(())
}

/// Batching of log lines, on while it lives (see [`batch`]).
pub(crate) struct Batching(());

impl Drop for Batching {
    fn drop(&mut self) {
        BATCH.on.store(false, Ordering::Release);
        write_out(&mut BATCH.lock());
        BATCH.started.notify_all();
    }
}

/// Lines logged and not written yet, and whether lines are batched at all.
struct Batch {
    on: AtomicBool,
    lines: Mutex<Vec<u8>>,
    /// Signalled when a line goes into an empty batch, and when batching stops.
    started: Condvar,
}

impl Batch {
    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<u8>> {
        self.lines.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

static BATCH: Batch = Batch {
    on: AtomicBool::new(false),
    lines: Mutex::new(Vec::new()),
    started: Condvar::new(),
};

/// Writes the batch to stderr and empties it, written or not: a log that cannot be written must
/// not grow without end.
fn write_out(lines: &mut Vec<u8>) {
    if !lines.is_empty() {
        let _ = io::stderr().write_all(lines);
        lines.clear();
    }
}

/// Where the subscriber writes: stderr, through the batch while [`batch`] is on.
struct Stderr;

impl<'a> MakeWriter<'a> for Stderr {
    type Writer = Line;

    fn make_writer(&'a self) -> Line {
        Line { urgent: true }
    }

    fn make_writer_for(&'a self, meta: &Metadata<'_>) -> Line {
        Line {
            urgent: *meta.level() <= Level::WARN,
        }
    }
}

/// One log line on its way to stderr.
struct Line {
    /// A warning or an error: written at once, after the batch.
    urgent: bool,
}

impl io::Write for Line {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        let mut lines = BATCH.lock();
        if !self.urgent && BATCH.on.load(Ordering::Acquire) {
            if lines.is_empty() {
                BATCH.started.notify_one();
            }
            lines.extend_from_slice(bytes);
            if lines.len() >= FLUSH_BYTES {
                write_out(&mut lines);
            }
            return Ok(bytes.len());
        }
        write_out(&mut lines);
        io::stderr().write_all(bytes)?;
        Ok(bytes.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// `RUST_LOG`'s filter, or [`DEFAULT_FILTER`] with a warning if it does not parse: a mistyped
/// filter would otherwise silently log something other than what was asked for.
fn filter(rust_log: Option<&str>) -> EnvFilter {
    let directives = rust_log
        .filter(|d| !d.trim().is_empty())
        .unwrap_or(DEFAULT_FILTER);
    EnvFilter::try_new(directives).unwrap_or_else(|error| {
        eprintln!(
            "warning: RUST_LOG=`{directives}` is not a log filter ({error}); logging at `{DEFAULT_FILTER}` instead"
        );
        EnvFilter::new(DEFAULT_FILTER)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rust_log_is_the_filter_and_info_without_it() {
        assert_eq!(filter(None).to_string(), "info");
        assert_eq!(filter(Some(" ")).to_string(), "info");
        assert_eq!(
            filter(Some("warn,micros::access=off")).to_string(),
            "micros::access=off,warn"
        );
    }

    #[test]
    fn a_filter_that_does_not_parse_falls_back_to_info() {
        assert_eq!(filter(Some("micros=loud")).to_string(), "info");
    }
}
