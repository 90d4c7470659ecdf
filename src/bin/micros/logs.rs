//! The log subscriber of the binary: lines in the chosen format to stderr, filtered by `RUST_LOG`.

use tracing_subscriber::EnvFilter;

/// The filter when `RUST_LOG` is not set, or empty.
const DEFAULT_FILTER: &str = "info";

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
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => logs
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .init(),
        LogFormat::Json => logs.json().flatten_event(true).init(),
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
