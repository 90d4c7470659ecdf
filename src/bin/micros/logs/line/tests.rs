//! The text line against `tracing-subscriber`'s default, byte for byte, and its escaping.

use std::sync::{Arc, Mutex};

use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::fmt::time::FormatTime;

use super::*;

/// Lines written to memory.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for Captured {
    type Writer = Captured;
    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

impl Captured {
    fn text(&self) -> String {
        String::from_utf8(self.0.lock().unwrap().clone()).unwrap()
    }
}

/// Logs a bit of everything micros logs: spans in spans, a field recorded later, an event
/// with no span, numbers, errors with sources, `%` and `?` fields, and `hostile` in the
/// message and in each kind of field.
fn log_everything(hostile: &str) {
    let error = std::io::Error::other(anyhow::anyhow!("outer").context("context"));
    let span = tracing::info_span!(
        "request",
        micro = "web",
        method = %"GET",
        path = %"/a b",
        auth = tracing::field::Empty
    );
    tracing::info!(target: "micros::access", status = 200u16, "no span {hostile}");
    {
        let _request = span.enter();
        span.record("auth", "key:ci");
        let _inner = tracing::info_span!("action", id = 7i64).entered();
        tracing::warn!(error.type = "tmp_full", ok = true, negative = -3i64, "{hostile}");
        tracing::info!(
            target: "micros::guest",
            micro = %hostile,
            text = hostile,
            debug = ?hostile,
            r#type = "x",
            "line"
        );
        tracing::error!(
            error = &error as &(dyn std::error::Error + 'static),
            "failed"
        );
        tracing::debug!("quiet");
    }
    let _empty = tracing::info_span!("empty").entered();
    tracing::info!(plain = "a\"b\\c", unicode = "é ü", "done");
}

/// The same instant for both formatters.
struct Fixed;

impl FormatTime for Fixed {
    fn format_time(&self, w: &mut Writer<'_>) -> fmt::Result {
        write_time(
            w,
            UNIX_EPOCH + std::time::Duration::from_micros(1_796_573_505_000_042),
        )
    }
}

fn both(hostile: &str) -> (String, String) {
    let ours = Captured::default();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(ours.clone())
        .with_ansi(false)
        .with_max_level(Level::INFO)
        .fmt_fields(Fields)
        .event_format(Line)
        .finish();
    tracing::subscriber::with_default(subscriber, || log_everything(hostile));
    let default = Captured::default();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(default.clone())
        .with_ansi(false)
        .with_max_level(Level::INFO)
        .with_timer(Fixed)
        .finish();
    tracing::subscriber::with_default(subscriber, || log_everything(hostile));
    // Each of our lines starts with the time it was written: given the default's instant instead.
    let mut fixed = String::new();
    Fixed.format_time(&mut Writer::new(&mut fixed)).unwrap();
    let ours = ours
        .text()
        .lines()
        .map(|line| format!("{fixed}{}\n", &line[fixed.len()..]))
        .collect();
    (ours, default.text())
}

#[test]
fn lines_are_the_default_formats_byte_for_byte() {
    let (ours, default) = both("plain text, \"quoted\" \\ and é");
    assert_eq!(ours, default);
    assert_eq!(ours.lines().count(), 5, "{ours}");
    assert!(
        ours.contains(
            "\n2026-12-06T16:11:45.000042Z  WARN request{micro=\"web\" method=GET path=/a b \
             auth=\"key:ci\"}:action{id=7}: micros::logs::line::tests: plain text, \"quoted\" \\ \
             and é error.type=\"tmp_full\" ok=true negative=-3\n"
        ),
        "{ours}"
    );
    assert!(
        ours.contains(": failed error=context error.sources=[outer]\n"),
        "{ours}"
    );
}

#[test]
fn the_time_is_the_defaults() {
    // Two of the default's around one of ours: if they agree to the second, so must ours.
    loop {
        let mut times = [String::new(), String::new(), String::new()];
        for (i, time) in times.iter_mut().enumerate() {
            let mut writer = Writer::new(time);
            if i == 1 {
                write_time(&mut writer, SystemTime::now()).unwrap();
            } else {
                tracing_subscriber::fmt::time::SystemTime
                    .format_time(&mut writer)
                    .unwrap();
            }
        }
        if times[0][..19] == times[2][..19] {
            assert_eq!(times[1][..19], times[0][..19]);
            assert_eq!(times[1].len(), times[0].len(), "{times:?}");
            return;
        }
    }
}

#[test]
fn control_characters_are_escaped_in_every_field() {
    let hostile = "\x1b[31mred\x07\x08\x0c\x7f\u{9b}2J";
    let (ours, default) = both(hostile);
    // The default escapes the message and `?` fields; `%` fields it writes raw.
    assert!(default.contains("micro=\x1b[31m"), "{default}");
    assert!(!ours.contains('\x1b'), "{ours}");
    assert!(!ours.contains('\x07') && !ours.contains('\u{9b}'), "{ours}");
    assert!(
        ours.contains(r"micro=\x1b[31mred\x07\x08\x0c\x7f\u{9b}2J"),
        "{ours}"
    );
    // Where the default escapes, both write the same.
    let line = |text: &str, needle: &str| {
        text.lines()
            .find(|l| l.contains(needle))
            .map(str::to_owned)
            .unwrap()
    };
    assert_eq!(line(&ours, "WARN"), line(&default, "WARN"));
    assert_eq!(line(&ours, "no span"), line(&default, "no span"));
}

#[test]
fn the_time_is_rfc_3339_to_the_microsecond() {
    let mut text = String::new();
    for micros in [0, 999_999, 1_796_573_505_123_456, 1_796_573_506_000_001] {
        let time = UNIX_EPOCH + std::time::Duration::from_micros(micros);
        write_time(&mut Writer::new(&mut text), time).unwrap();
        text.push(' ');
    }
    assert_eq!(
        text,
        "1970-01-01T00:00:00.000000Z 1970-01-01T00:00:00.999999Z \
         2026-12-06T16:11:45.123456Z 2026-12-06T16:11:46.000001Z "
    );
}
