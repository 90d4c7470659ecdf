//! Scheduled actions: each Micro's `[[micros.actions]]`, fired on schedule (or on demand) and
//! delivered through the Micro's own HTTP handler in a fresh sandbox, as Space delivered them.
//! The scheduler itself ([`scheduler`]) knows only jobs given as closures; this module makes
//! them from an app's action plan.

mod scheduler;

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use bytes::Bytes;
use http::header::{CONTENT_LENGTH, CONTENT_TYPE, HOST, HeaderValue};
use http_body_util::{BodyExt as _, Full};
use tracing::Instrument as _;

pub use scheduler::{Clock, Event, SystemClock};

use crate::app::App;
use crate::app::actions::ActionInfo;

/// The path an action is delivered to.
pub const ACTION_PATH: &str = "/__space/v0/actions";

/// How one run of an action went.
#[derive(Debug)]
pub struct ActionReport {
    /// The response status, if the Micro answered.
    pub status: Option<http::StatusCode>,
    /// The response body (what arrived of it).
    pub body: Bytes,
    /// How long the run took.
    pub duration: Duration,
    /// Why the run failed, if it did: a status of 400 or more, a trap, a timeout, a cut body.
    pub failure: Option<String>,
}

impl App {
    /// Runs action `id` once, now, as the scheduler would.
    pub async fn trigger(&self, id: &str) -> anyhow::Result<ActionReport> {
        let action = self
            .inner
            .actions
            .iter()
            .find(|a| a.id == id)
            .with_context(|| {
                let known: Vec<&str> = self.inner.actions.iter().map(|a| a.id.as_str()).collect();
                format!(
                    "the app has no action `{id}` (its actions: {})",
                    if known.is_empty() {
                        "none".into()
                    } else {
                        known.join(", ")
                    }
                )
            })?;
        Ok(self.run_action(action).await)
    }

    /// Delivers one action: `POST /__space/v0/actions` with the event as JSON, through the
    /// Micro's handler in a fresh sandbox, in a span of its own.
    async fn run_action(&self, action: &ActionInfo) -> ActionReport {
        let index = self
            .inner
            .micros
            .iter()
            .position(|m| m.name() == action.micro)
            .unwrap_or(self.inner.primary);
        let crate::app::Runtime::Sandbox(sandbox) = &self.inner.micros[index] else {
            // Validation refuses actions on a static Micro: nothing runs one.
            return ActionReport {
                status: None,
                body: Bytes::new(),
                duration: Duration::ZERO,
                failure: Some(format!(
                    "micro `{}` is static: it runs no actions",
                    action.micro
                )),
            };
        };
        let span = tracing::info_span!("action", micro = %action.micro, action = %action.id);
        let started = Instant::now();
        let at = chrono::Utc::now();
        let body = format!(
            "{{\"event\":{{\"id\":\"{}\",\"trigger\":\"schedule\"}}}}",
            action.id
        );
        let length = HeaderValue::from(body.len());
        let mut request = http::Request::post(ACTION_PATH)
            .body(Full::new(Bytes::from(body)))
            .unwrap_or_default();
        request
            .headers_mut()
            .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        request.headers_mut().insert(CONTENT_LENGTH, length);
        if let Ok(host) = HeaderValue::from_str(&self.inner.hostname) {
            request.headers_mut().insert(HOST, host);
        }
        let request =
            request.map(|b| b.map_err(|never| -> wasmtime_wasi_http::Error { match never {} }));
        async {
            let mut outcome = "ok";
            let (status, body, failure) = match sandbox.handle(request).await {
                Ok(response) => {
                    let status = response.status();
                    match response.into_body().collect().await {
                        Ok(body) if status.as_u16() < 400 => (Some(status), body.to_bytes(), None),
                        Ok(body) => {
                            outcome = "error_status";
                            (
                                Some(status),
                                body.to_bytes(),
                                Some(format!("the Micro answered {status}")),
                            )
                        }
                        Err(error) => {
                            outcome = error.outcome();
                            (Some(status), Bytes::new(), Some(error.to_string()))
                        }
                    }
                }
                Err(error) => {
                    outcome = error.outcome();
                    (Some(error.status()), Bytes::new(), Some(error.to_string()))
                }
            };
            self.inner.metrics.action(&action.micro, outcome);
            let duration = started.elapsed();
            let duration_ms = duration.as_millis() as u64;
            match &failure {
                None => tracing::info!(
                    micro = %action.micro,
                    action = %action.id,
                    status = status.map(|s| s.as_u16()),
                    duration_ms,
                    "action succeeded"
                ),
                Some(reason) => tracing::warn!(
                    micro = %action.micro,
                    action = %action.id,
                    status = status.map(|s| s.as_u16()),
                    duration_ms,
                    "action failed: {reason}"
                ),
            }
            self.inner.last_runs.record(
                &action.id,
                crate::app::actions::LastRun {
                    at,
                    status: status.map(|s| s.as_u16()),
                    duration_ms,
                    failure: failure.clone(),
                },
            );
            ActionReport {
                status,
                body,
                duration,
                failure,
            }
        }
        .instrument(span)
        .await
    }

    /// Runs every enabled action on its schedule until `stop` turns true, then waits for the
    /// runs in flight.
    pub(crate) async fn run_schedule(
        &self,
        clock: Arc<dyn Clock>,
        stop: tokio::sync::watch::Receiver<bool>,
    ) {
        let now = clock.now();
        let mut jobs = Vec::new();
        for action in &self.inner.actions {
            let Some(schedule) = action.schedule.clone() else {
                tracing::info!(micro = %action.micro, action = %action.id, "action is off");
                continue;
            };
            if let Some(next) = schedule.first_after(now) {
                tracing::info!(micro = %action.micro, action = %action.id, %schedule, next_run = %next.format("%Y-%m-%d %H:%M:%S UTC"), "action scheduled");
            }
            let app = self.clone();
            let action = action.clone();
            jobs.push(scheduler::Job {
                id: action.id.clone(),
                schedule,
                run: Arc::new(move || {
                    let app = app.clone();
                    let action = action.clone();
                    Box::pin(async move {
                        app.run_action(&action).await;
                    })
                }),
            });
        }
        if !jobs.is_empty() {
            scheduler::run(jobs, clock, stop, None).await;
        }
    }
}
