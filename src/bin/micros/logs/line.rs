//! The text log line without colours (a server's log), written with less of the per-field
//! formatting machinery `tracing-subscriber`'s default uses: the same bytes, at a fraction of the
//! CPU, and control characters escaped in every field, not just in the message.
//!
//! `tracing-subscriber` writes each field through `core::fmt` with its styles (empty without
//! colours, but still formatted), escapes the message a character at a time, and formats the
//! time field by field. The access line and the request span were ~20% of a served hello's CPU
//! that way (BENCHMARKS.md, 27. and 30.).

use std::cell::Cell;
use std::fmt::{self, Write as _};
use std::time::{SystemTime, UNIX_EPOCH};

use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::field::RecordFields;
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields, FormattedFields};
use tracing_subscriber::registry::LookupSpan;

/// Formats an event as `tracing-subscriber`'s default text format does without colours:
/// `<time> <level> <span>{<fields>}:...: <target>: <fields>`.
pub(crate) struct Line;

impl<S> FormatEvent<S, Fields> for Line
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, Fields>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        write_time(&mut writer, SystemTime::now())?;
        let meta = event.metadata();
        writer.write_str(match *meta.level() {
            Level::TRACE => " TRACE ",
            Level::DEBUG => " DEBUG ",
            Level::INFO => "  INFO ",
            Level::WARN => "  WARN ",
            Level::ERROR => " ERROR ",
        })?;
        if let Some(scope) = ctx.event_scope() {
            let mut seen = false;
            for span in scope.from_root() {
                seen = true;
                writer.write_str(span.metadata().name())?;
                let extensions = span.extensions();
                if let Some(fields) = extensions.get::<FormattedFields<Fields>>()
                    && !fields.is_empty()
                {
                    writer.write_char('{')?;
                    writer.write_str(fields)?;
                    writer.write_char('}')?;
                }
                writer.write_char(':')?;
            }
            if seen {
                writer.write_char(' ')?;
            }
        }
        writer.write_str(meta.target())?;
        writer.write_str(": ")?;
        ctx.format_fields(writer.by_ref(), event)?;
        writer.write_char('\n')
    }
}

/// Formats fields as the default does without colours (`name=value`, the message bare, a space
/// between), and escapes terminal control characters in all of them.
pub(crate) struct Fields;

impl<'writer> FormatFields<'writer> for Fields {
    fn format_fields<R: RecordFields>(&self, writer: Writer<'writer>, fields: R) -> fmt::Result {
        let mut visitor = Visitor {
            writer,
            first: true,
            result: Ok(()),
        };
        fields.record(&mut visitor);
        visitor.result
    }
}

/// Writes one set of fields.
struct Visitor<'a> {
    writer: Writer<'a>,
    first: bool,
    result: fmt::Result,
}

impl Visitor<'_> {
    /// Writes `name=` (nothing for the message), after a space unless it is the first field;
    /// `false` for a field the default leaves out.
    fn start(&mut self, field: &Field) -> bool {
        let name = field.name();
        if self.result.is_err() || name.starts_with("log.") {
            return false;
        }
        if !std::mem::take(&mut self.first) {
            self.result = self.writer.write_char(' ');
        }
        if name != "message" {
            let name = name.strip_prefix("r#").unwrap_or(name);
            self.result = self
                .result
                .and_then(|()| self.writer.write_str(name))
                .and_then(|()| self.writer.write_char('='));
        }
        true
    }

    /// Writes `value` with control characters escaped.
    fn escaped(&mut self, value: fmt::Arguments<'_>) {
        self.result = self.result.and_then(|()| {
            Escaping {
                inner: &mut self.writer,
            }
            .write_fmt(value)
        });
    }
}

impl Visit for Visitor<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        if !self.start(field) {
            return;
        }
        if field.name() == "message" {
            self.escaped(format_args!("{value}"));
        } else if value
            .bytes()
            .all(|b| (b' '..=b'~').contains(&b) && b != b'"' && b != b'\\')
        {
            // What `{:?}` writes for a string that needs no escape.
            self.result = self.result.and_then(|()| {
                self.writer.write_char('"')?;
                self.writer.write_str(value)?;
                self.writer.write_char('"')
            });
        } else {
            self.escaped(format_args!("{value:?}"));
        }
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        if self.start(field) {
            self.result = self.result.and_then(|()| write!(self.writer, "{value}"));
        }
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        if self.start(field) {
            self.result = self.result.and_then(|()| write!(self.writer, "{value}"));
        }
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        if self.start(field) {
            self.result = self
                .result
                .and_then(|()| self.writer.write_str(if value { "true" } else { "false" }));
        }
    }

    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        if !self.start(field) {
            return;
        }
        // As the default: the error, then its sources as a list.
        self.escaped(format_args!("{value}"));
        if value.source().is_some() {
            let name = field.name();
            let name = name.strip_prefix("r#").unwrap_or(name);
            self.escaped(format_args!(" {name}.sources=["));
            let mut source = value.source();
            let mut first = true;
            while let Some(error) = source {
                let separator = if std::mem::take(&mut first) { "" } else { ", " };
                self.escaped(format_args!("{separator}{error}"));
                source = error.source();
            }
            self.escaped(format_args!("]"));
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        if self.start(field) {
            self.escaped(format_args!("{value:?}"));
        }
    }
}

/// Passes text through, except the characters a terminal could act on: ESC, BEL, BS, FF, DEL and
/// the C1 controls, written as escapes (as `tracing-subscriber` escapes a message).
struct Escaping<'a, 'b> {
    inner: &'a mut Writer<'b>,
}

impl fmt::Write for Escaping<'_, '_> {
    fn write_str(&mut self, text: &str) -> fmt::Result {
        // A C1 control is U+0080..=U+009F, which UTF-8 writes as 0xC2 then 0x80..=0x9F.
        if !text
            .bytes()
            .any(|b| matches!(b, 0x1b | 0x07 | 0x08 | 0x0c | 0x7f | 0xc2))
        {
            return self.inner.write_str(text);
        }
        for c in text.chars() {
            match c {
                '\x1b' => self.inner.write_str("\\x1b")?,
                '\x07' => self.inner.write_str("\\x07")?,
                '\x08' => self.inner.write_str("\\x08")?,
                '\x0c' => self.inner.write_str("\\x0c")?,
                '\x7f' => self.inner.write_str("\\x7f")?,
                '\u{80}'..='\u{9f}' => write!(self.inner, "\\u{{{:x}}}", c as u32)?,
                c => self.inner.write_char(c)?,
            }
        }
        Ok(())
    }
}

thread_local! {
    /// The second last written by this thread, and its `YYYY-MM-DDTHH:MM:SS.` (20 bytes).
    static SECOND: Cell<(u64, [u8; 20])> = const { Cell::new((u64::MAX, [0; 20])) };
}

/// Writes `time` as RFC 3339 in UTC to the microsecond (`2026-12-06T16:11:45.123456Z`), as the
/// default does; the date and time of day are formatted once a second per thread.
fn write_time(writer: &mut Writer<'_>, time: SystemTime) -> fmt::Result {
    let Ok(since_epoch) = time.duration_since(UNIX_EPOCH) else {
        return write!(writer, "{}", humantime::format_rfc3339_micros(time));
    };
    let seconds = since_epoch.as_secs();
    let (cached, mut prefix) = SECOND.get();
    if cached != seconds {
        let mut whole = String::with_capacity(20);
        write!(whole, "{}", humantime::format_rfc3339_seconds(time))?;
        // `YYYY-MM-DDTHH:MM:SSZ`: a year past 9999 would be longer; such a time is written whole.
        let Some(date_time) = whole.as_bytes().get(..19).filter(|_| whole.len() == 20) else {
            return write!(writer, "{}", humantime::format_rfc3339_micros(time));
        };
        prefix[..19].copy_from_slice(date_time);
        prefix[19] = b'.';
        SECOND.set((seconds, prefix));
    }
    let mut line = [0u8; 27];
    line[..20].copy_from_slice(&prefix);
    let mut micros = since_epoch.subsec_micros();
    for digit in line[20..26].iter_mut().rev() {
        *digit = b'0' + (micros % 10) as u8;
        micros /= 10;
    }
    line[26] = b'Z';
    // Only ASCII digits and the prefix's ASCII were written.
    writer.write_str(std::str::from_utf8(&line).map_err(|_| fmt::Error)?)
}

#[cfg(test)]
mod tests;
