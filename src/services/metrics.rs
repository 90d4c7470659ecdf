//! What the runtime counts for `/__space/metrics` (Prometheus / OpenMetrics text): requests and
//! their duration by Micro and status, executions in flight, limit breaches by kind, action runs
//! by outcome, and the runtime's memory.

use std::sync::atomic::AtomicU64;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

/// A metric's labels.
type Labels = Vec<(&'static str, String)>;

/// Upper bounds of the request-duration buckets, in seconds: from a cached answer to the 20 s
/// execution limit.
const DURATION_BUCKETS: [f64; 14] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0,
];

/// The content type of the metrics text.
pub(crate) const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// The runtime's metrics, shared by every request of an app.
pub(crate) struct Metrics {
    registry: Registry,
    requests: Family<Labels, Counter>,
    duration: Family<Labels, Histogram, fn() -> Histogram>,
    in_flight: Family<Labels, Gauge>,
    breaches: Family<Labels, Counter>,
    actions: Family<Labels, Counter>,
    resident: Gauge<u64, AtomicU64>,
}

impl Metrics {
    pub(crate) fn new() -> Self {
        let mut registry = Registry::with_prefix("micros");
        let requests = Family::<Labels, Counter>::default();
        registry.register(
            "requests",
            "Requests answered, by Micro and status",
            requests.clone(),
        );
        let duration: Family<Labels, Histogram, fn() -> Histogram> =
            Family::new_with_constructor(|| Histogram::new(DURATION_BUCKETS));
        registry.register(
            "request_duration_seconds",
            "Time from a request's arrival to the end of its response body, by Micro",
            duration.clone(),
        );
        let in_flight = Family::<Labels, Gauge>::default();
        registry.register(
            "executions_in_flight",
            "Executions running now, by Micro",
            in_flight.clone(),
        );
        let breaches = Family::<Labels, Counter>::default();
        registry.register(
            "limit_breaches",
            "Executions stopped or refused at a limit, and guest calls refused at one, by kind",
            breaches.clone(),
        );
        let actions = Family::<Labels, Counter>::default();
        registry.register(
            "action_runs",
            "Scheduled action runs, by Micro and outcome",
            actions.clone(),
        );
        let resident = Gauge::<u64, AtomicU64>::default();
        registry.register(
            "resident_memory_bytes",
            "Resident memory of the runtime process",
            resident.clone(),
        );
        Self {
            registry,
            requests,
            duration,
            in_flight,
            breaches,
            actions,
            resident,
        }
    }

    /// Counts one answered request.
    pub(crate) fn request(&self, micro: &str, status: u16, seconds: f64, outcome: &str) {
        self.requests
            .get_or_create(&vec![
                ("micro", micro.to_string()),
                ("status", status.to_string()),
            ])
            .inc();
        self.duration
            .get_or_create(&vec![("micro", micro.to_string())])
            .observe(seconds);
        if let Some(kind) = breach_kind(outcome) {
            self.breach(kind);
        }
    }

    /// Counts one limit breach of `kind`.
    pub(crate) fn breach(&self, kind: &str) {
        self.breaches
            .get_or_create(&vec![("kind", kind.to_string())])
            .inc();
    }

    /// The counter of breaches of `kind`, for a part that counts its own (the `/tmp` quota,
    /// the outbound guard).
    pub(crate) fn breach_counter(&self, kind: &str) -> Counter {
        self.breaches
            .get_or_create(&vec![("kind", kind.to_string())])
            .clone()
    }

    /// Counts one action run: `ok`, `error_status` (the Micro answered 4xx/5xx) or the outcome
    /// of the failure; a breach is also counted as one.
    pub(crate) fn action(&self, micro: &str, outcome: &str) {
        if let Some(kind) = breach_kind(outcome) {
            self.breach(kind);
        }
        self.actions
            .get_or_create(&vec![
                ("micro", micro.to_string()),
                ("outcome", outcome.to_string()),
            ])
            .inc();
    }

    /// The metrics as text, with the gauges read now: `in_flight` by Micro.
    pub(crate) fn render(&self, in_flight: &[(&str, usize)]) -> String {
        for (micro, count) in in_flight {
            self.in_flight
                .get_or_create(&vec![("micro", (*micro).to_string())])
                .set(i64::try_from(*count).unwrap_or(i64::MAX));
        }
        if let Some(bytes) = crate::engine::resident_bytes() {
            self.resident.set(bytes);
        }
        let mut text = String::new();
        if let Err(error) = prometheus_client::encoding::text::encode(&mut text, &self.registry) {
            tracing::error!("failed to encode the metrics: {error}");
        }
        text
    }
}

/// The breach a request outcome is, if it is one (see [`crate::sandbox::ExecutionError::outcome`]).
fn breach_kind(outcome: &str) -> Option<&str> {
    match outcome {
        "timeout" | "memory" | "payload" | "limit" | "overloaded" => Some(outcome),
        _ => None,
    }
}
