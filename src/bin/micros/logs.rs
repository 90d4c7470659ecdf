//! The log subscriber of the binary: lines in the chosen format to stderr, filtered by `RUST_LOG`;
//! while serving, written by a thread of their own, in batches.

mod line;

use std::io;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, Ordering};

use tracing_appender::non_blocking::{NonBlocking, NonBlockingBuilder, WorkerGuard};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::fmt::writer::EitherWriter;

/// The filter when `RUST_LOG` is not set, or empty.
const DEFAULT_FILTER: &str = "info";

/// The most the log thread gathers before it writes: lines logged while it writes one batch
/// are written together in the next.
const BATCH_BYTES: usize = 64 * 1024;

/// The most lines queued for the log thread; a logging thread waits while the queue is full. The
/// queue's slots are allocated up front: `tracing-appender`'s default of 128,000 took 4 MiB of the
/// idle server's memory, and a busy server queues only a few dozen at a time.
const QUEUED_LINES: usize = 4096;

/// The format of log lines.
#[derive(Clone, Copy, clap::ValueEnum)]
pub(crate) enum LogFormat {
    Text,
    Json,
}

/// Installs the subscriber for the whole process; with `app_logs`, also the layer that keeps
/// each hosted app's lines for `micros logs` (at `info` and above, whatever `RUST_LOG` says).
pub(crate) fn install(format: LogFormat, app_logs: bool) {
    if !app_logs {
        let logs = tracing_subscriber::fmt()
            .with_env_filter(filter(std::env::var("RUST_LOG").ok().as_deref()))
            .with_writer(Stderr)
            // A line that cannot be written (the log's reader went away) is dropped. Reported, it
            // would be printed to that same stderr, which panics: a request would fail with it.
            .log_internal_errors(false);
        match format {
            LogFormat::Text if colours() => logs.with_ansi(true).init(),
            LogFormat::Text => logs
                .with_ansi(false)
                .fmt_fields(line::Fields)
                .event_format(line::Line)
                .init(),
            LogFormat::Json => logs.json().flatten_event(true).init(),
        }
        return;
    }
    use tracing_subscriber::Layer as _;
    use tracing_subscriber::layer::SubscriberExt as _;
    use tracing_subscriber::util::SubscriberInitExt as _;
    let stderr = tracing_subscriber::fmt::layer()
        .with_writer(Stderr)
        .log_internal_errors(false);
    let stderr = match format {
        LogFormat::Text if colours() => stderr.with_ansi(true).boxed(),
        LogFormat::Text => stderr
            .with_ansi(false)
            .fmt_fields(line::Fields)
            .event_format(line::Line)
            .boxed(),
        LogFormat::Json => stderr.json().flatten_event(true).boxed(),
    };
    tracing_subscriber::registry()
        .with(stderr.with_filter(filter(std::env::var("RUST_LOG").ok().as_deref())))
        .with(micros::server::LogLayer.with_filter(tracing_subscriber::filter::LevelFilter::INFO))
        .init();
}

/// Whether text lines are coloured: when stderr is a terminal. Lines for a file or a log
/// collector (a server's) are written by micros' own formatter ([`line`]).
fn colours() -> bool {
    std::io::IsTerminal::is_terminal(&std::io::stderr())
}

/// From now until the guard is dropped, log lines go to stderr through a thread of their own
/// (`tracing-appender`), which writes all that has queued up at once. Dropping the guard writes
/// what is still queued (waiting up to a second for it) and sends later lines straight to stderr.
///
/// A `write` per line on the request's thread was a tenth of a served request's CPU, and more
/// when stderr is a pipe to a log collector, which each write wakes (BENCHMARKS.md). The order of
/// lines is kept; no line is dropped (a full queue makes the logging thread wait). What is lost:
/// on `SIGKILL`, the lines still queued; and a panic's message, printed directly, may come before
/// lines logged just before it.
pub(crate) fn batch() -> Batching {
    let (writer, guard) = NonBlockingBuilder::default()
        .lossy(false)
        .buffered_lines_limit(QUEUED_LINES)
        .thread_name("micros-log")
        .finish(io::BufWriter::with_capacity(BATCH_BYTES, io::stderr()));
    if BATCHED.set(writer).is_err() {
        return Batching { _queued: None };
    }
    BATCHING.store(true, Ordering::Release);
    Batching {
        _queued: Some(guard),
    }
}

/// Batching of log lines, on while it lives (see [`batch`]).
pub(crate) struct Batching {
    /// Dropped after [`Drop::drop`] has sent new lines straight to stderr: writes what is queued.
    _queued: Option<WorkerGuard>,
}

impl Drop for Batching {
    fn drop(&mut self) {
        BATCHING.store(false, Ordering::Release);
    }
}

/// The log thread's queue, once [`batch`] has started it.
static BATCHED: OnceLock<NonBlocking> = OnceLock::new();

/// Whether lines go to [`BATCHED`] (while a [`Batching`] lives).
static BATCHING: AtomicBool = AtomicBool::new(false);

/// Where the subscriber writes: stderr, through the log thread while [`batch`] is on.
struct Stderr;

impl<'a> MakeWriter<'a> for Stderr {
    type Writer = EitherWriter<NonBlocking, io::Stderr>;

    fn make_writer(&'a self) -> Self::Writer {
        match BATCHED.get() {
            Some(batched) if BATCHING.load(Ordering::Acquire) => EitherWriter::A(batched.clone()),
            _ => EitherWriter::B(io::stderr()),
        }
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
