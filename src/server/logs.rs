//! Each app's live log: the log lines and access lines of its requests and actions, kept (the
//! last [`KEPT_LINES`]) and sent to whoever follows them (`micros logs APP --follow`). A
//! `tracing` layer, installed by the binary beside its own, tells an app's lines by the `app`
//! span the server opens around each of its requests.

use std::collections::{HashMap, VecDeque};
use std::fmt::Write as _;
use std::sync::{Mutex, OnceLock, PoisonError};

use serde_json::{Map, Value};
use tokio::sync::broadcast;
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id};
use tracing::{Event, Subscriber};
use tracing_subscriber::layer::Context;
use tracing_subscriber::registry::LookupSpan;

/// Lines kept per app for `micros logs APP` without `--follow`.
pub(crate) const KEPT_LINES: usize = 200;
/// Lines a follower may fall behind before it misses some (and is told how many).
const FOLLOW_BUFFER: usize = 1024;
/// The name of the span the server opens around an app's work.
pub(crate) const APP_SPAN: &str = "app";

/// Every app's log.
#[derive(Default)]
pub(crate) struct Logs {
    apps: Mutex<HashMap<String, AppLog>>,
}

/// One app's log: the last lines, and the channel to its followers.
struct AppLog {
    kept: VecDeque<String>,
    followers: broadcast::Sender<String>,
}

impl AppLog {
    fn new() -> Self {
        Self {
            kept: VecDeque::with_capacity(KEPT_LINES),
            followers: broadcast::channel(FOLLOW_BUFFER).0,
        }
    }
}

/// The process's logs: tracing's subscriber is process-wide, and so is this.
pub(crate) fn logs() -> &'static Logs {
    static LOGS: OnceLock<Logs> = OnceLock::new();
    LOGS.get_or_init(Logs::default)
}

impl Logs {
    /// Keeps `line` for `app` and sends it to its followers.
    fn push(&self, app: &str, line: String) {
        let mut apps = self.apps.lock().unwrap_or_else(PoisonError::into_inner);
        let log = apps.entry(app.to_string()).or_insert_with(AppLog::new);
        if log.kept.len() == KEPT_LINES {
            log.kept.pop_front();
        }
        log.kept.push_back(line.clone());
        let _ = log.followers.send(line);
    }

    /// The lines kept for `app`, oldest first, and (to follow) what comes after them.
    pub(crate) fn read(&self, app: &str) -> (Vec<String>, broadcast::Receiver<String>) {
        let mut apps = self.apps.lock().unwrap_or_else(PoisonError::into_inner);
        let log = apps.entry(app.to_string()).or_insert_with(AppLog::new);
        (
            log.kept.iter().cloned().collect(),
            log.followers.subscribe(),
        )
    }

    /// Forgets an app's log (the app was deleted).
    pub(crate) fn forget(&self, app: &str) {
        self.apps
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(app);
    }
}

/// The app a span belongs to, kept in the `app` span's extensions.
struct AppOf(String);

/// The fields of a span, kept in its extensions so that its events' lines carry them (`micro`,
/// `request_id`, `action`).
struct SpanFields(Map<String, Value>);

/// The layer that sends each app's lines to its log. Install it beside the subscriber's own
/// (the binary does for `micros server`).
pub struct LogLayer;

impl<S> tracing_subscriber::Layer<S> for LogLayer
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_new_span(&self, attributes: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        let Some(span) = ctx.span(id) else { return };
        let is_app = attributes.metadata().name() == APP_SPAN;
        // Only spans of an app's work are recorded: the rest of the process costs nothing here.
        if !is_app
            && !span
                .scope()
                .skip(1)
                .any(|s| s.extensions().get::<AppOf>().is_some())
        {
            return;
        }
        let mut fields = Fields::default();
        attributes.record(&mut fields);
        let mut extensions = span.extensions_mut();
        if is_app {
            if let Some(Value::String(app)) = fields.0.get(APP_SPAN) {
                extensions.insert(AppOf(app.clone()));
            }
        } else {
            extensions.insert(SpanFields(fields.0));
        }
    }

    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        let Some(scope) = ctx.event_scope(event) else {
            return;
        };
        let mut app = None;
        let mut fields = Map::new();
        for span in scope {
            let extensions = span.extensions();
            if let Some(AppOf(name)) = extensions.get::<AppOf>() {
                app = Some(name.clone());
                break;
            }
            if let Some(SpanFields(span_fields)) = extensions.get::<SpanFields>() {
                for (name, value) in span_fields {
                    fields.entry(name.clone()).or_insert_with(|| value.clone());
                }
            }
        }
        let Some(app) = app else { return };
        let mut own = Fields::default();
        event.record(&mut own);
        let message = own
            .0
            .remove("message")
            .and_then(|m| m.as_str().map(str::to_string))
            .unwrap_or_default();
        for (name, value) in own.0 {
            fields.insert(name, value);
        }
        let metadata = event.metadata();
        let line = serde_json::json!({
            "time": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            "level": metadata.level().as_str(),
            "target": metadata.target(),
            "message": message,
            "fields": fields,
        });
        logs().push(&app, line.to_string());
    }
}

/// An event's or span's fields as JSON values.
#[derive(Default)]
struct Fields(Map<String, Value>);

impl Visit for Fields {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().into(), Value::from(value));
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.0.insert(field.name().into(), Value::from(value));
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.0.insert(field.name().into(), Value::from(value));
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.0.insert(field.name().into(), Value::from(value));
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        let mut text = String::new();
        let _ = write!(text, "{value:?}");
        self.0.insert(field.name().into(), Value::from(text));
    }
}
