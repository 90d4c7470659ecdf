//! The access log: one line per request when its response has ended (so it can say how many
//! bytes went out and whether the body was cut), and the request counters of the metrics.

use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use crate::sandbox::BodyEnd;
use crate::services::metrics::Metrics;

/// The log target of access lines, for filtering (`RUST_LOG=micros::access=off`).
pub const ACCESS_TARGET: &str = "micros::access";

/// What the access line of one request says; written when the response body ends.
pub(crate) struct AccessRecord {
    pub(crate) started: Instant,
    pub(crate) request_id: String,
    pub(crate) client: Option<IpAddr>,
    pub(crate) method: String,
    pub(crate) path: String,
    pub(crate) micro: String,
    pub(crate) status: u16,
    /// `ok`, or the outcome of the error that answered the request.
    pub(crate) outcome: &'static str,
    /// How the request got in (`owner`, `key:<name>`, `public`, `open`), if it reached a Micro.
    pub(crate) auth: Option<String>,
    pub(crate) bytes_in: Arc<AtomicU64>,
    /// A HEAD or a bodiless status: the server never reads its body.
    pub(crate) bodiless: bool,
    pub(crate) metrics: Arc<Metrics>,
}

impl AccessRecord {
    /// Writes the line and counts the request.
    pub(crate) fn finish(self, end: BodyEnd) {
        let outcome = match end.failure {
            Some("aborted") if self.bodiless => self.outcome,
            Some(failure) if self.outcome == "ok" => failure,
            _ => self.outcome,
        };
        let elapsed = self.started.elapsed();
        let client = self.client.map(|ip| ip.to_string());
        tracing::info!(
            target: ACCESS_TARGET,
            request_id = %self.request_id,
            client = client.as_deref().unwrap_or("-"),
            method = %self.method,
            path = %self.path,
            micro = %self.micro,
            status = self.status,
            duration_ms = elapsed.as_millis() as u64,
            bytes_in = self.bytes_in.load(Ordering::Relaxed),
            bytes_out = end.bytes,
            outcome,
            auth = self.auth.as_deref().unwrap_or("-"),
            "access"
        );
        self.metrics
            .request(&self.micro, self.status, elapsed.as_secs_f64(), outcome);
    }
}
