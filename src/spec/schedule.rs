//! When an action runs: a five-field cron expression (UTC, Unix meaning) or a rate.
//!
//! Cron expressions are evaluated by the `croner` crate, which follows POSIX/Vixie cron: day of
//! week 0-7 with both 0 and 7 meaning Sunday, names for months and days. (The `cron` crate the
//! design first named counts days of the week from 1 = Sunday and wants a seconds field; croner
//! needs no translation, so there is none to get wrong.) Before croner sees an expression it is
//! held to the subset Space documented: five fields of digits, names, `*`, `,`, `-` and `/`, no
//! `/` in the day of week, and not both day fields restricted. croner's extensions (`L`, `W`,
//! `#`, `?`, `@hourly`, seconds) are refused.

use std::fmt;
use std::str::FromStr as _;

use chrono::{DateTime, Datelike as _, Duration, DurationRound as _, TimeZone as _, Utc};

/// The largest rate count: about ten years in minutes; anything larger is surely a mistake.
pub const MAX_RATE: u32 = 5_256_000;

/// When an action runs.
#[derive(Clone)]
pub enum Schedule {
    /// `0/15 * * * *`: a cron expression, evaluated in UTC.
    Cron {
        /// The expression as written.
        expression: String,
        /// The parsed expression.
        cron: Box<croner::Cron>,
    },
    /// `5 minutes`: every `count` units, the first at the next whole unit after start.
    Rate {
        /// How many units between runs.
        count: u32,
        /// The unit.
        unit: RateUnit,
    },
}

/// The unit of a rate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RateUnit {
    /// Minutes; the first run at the next whole minute.
    Minute,
    /// Hours; the first run at the next whole hour.
    Hour,
    /// Days; the first run at the next midnight (UTC).
    Day,
}

impl RateUnit {
    fn duration(self) -> Duration {
        match self {
            Self::Minute => Duration::minutes(1),
            Self::Hour => Duration::hours(1),
            Self::Day => Duration::days(1),
        }
    }
}

impl fmt::Debug for Schedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl fmt::Display for Schedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Cron { expression, .. } => write!(f, "{expression}"),
            Self::Rate { count, unit } => {
                let unit = match unit {
                    RateUnit::Minute => "minute",
                    RateUnit::Hour => "hour",
                    RateUnit::Day => "day",
                };
                write!(f, "{count} {unit}{}", if *count == 1 { "" } else { "s" })
            }
        }
    }
}

impl PartialEq for Schedule {
    fn eq(&self, other: &Self) -> bool {
        self.to_string() == other.to_string()
    }
}

impl Schedule {
    /// Parses a cron expression or a rate, saying exactly what is wrong.
    pub fn parse(text: &str) -> Result<Self, String> {
        let fields: Vec<&str> = text.split_whitespace().collect();
        match fields.as_slice() {
            [count, unit] => parse_rate(text, count, unit),
            [_, _, _, _, _] => parse_cron(text, &fields),
            _ => Err(format!(
                "`{text}` is neither a cron expression of five fields (minute hour day-of-month month day-of-week, \
                 e.g. `0/15 * * * *`) nor a rate (`5 minutes`, `1 hour`, `2 days`)"
            )),
        }
    }

    /// The first run strictly after `start`: a rate rounds up to the next whole minute, hour or
    /// midnight; a cron expression gives its next match.
    pub fn first_after(&self, start: DateTime<Utc>) -> Option<DateTime<Utc>> {
        match self {
            Self::Cron { cron, .. } => cron.find_next_occurrence(&start, false).ok(),
            Self::Rate { unit, .. } => {
                let step = unit.duration();
                let floor = match unit {
                    RateUnit::Day => Utc
                        .with_ymd_and_hms(start.year(), start.month(), start.day(), 0, 0, 0)
                        .single()?,
                    _ => start.duration_trunc(step).ok()?,
                };
                Some(floor + step)
            }
        }
    }

    /// The run after one due at `previous`.
    pub fn next_after(&self, previous: DateTime<Utc>) -> Option<DateTime<Utc>> {
        match self {
            Self::Cron { cron, .. } => cron.find_next_occurrence(&previous, false).ok(),
            Self::Rate { count, unit } => {
                previous.checked_add_signed(unit.duration() * i32::try_from(*count).ok()?)
            }
        }
    }
}

fn parse_rate(text: &str, count: &str, unit: &str) -> Result<Schedule, String> {
    let unit = match unit {
        "minute" | "minutes" => RateUnit::Minute,
        "hour" | "hours" => RateUnit::Hour,
        "day" | "days" => RateUnit::Day,
        _ => {
            return Err(format!(
                "`{text}`: a rate's unit is `minute(s)`, `hour(s)` or `day(s)`, not `{unit}`"
            ));
        }
    };
    match count.parse::<u32>() {
        Ok(count) if (1..=MAX_RATE).contains(&count) => Ok(Schedule::Rate { count, unit }),
        _ => Err(format!(
            "`{text}`: a rate needs a whole number from 1 to {MAX_RATE}, not `{count}`"
        )),
    }
}

const FIELD_NAMES: [&str; 5] = ["minute", "hour", "day of month", "month", "day of week"];
const FIELD_MIN: [u32; 5] = [0, 0, 1, 1, 0];
const FIELD_MAX: [u32; 5] = [59, 23, 31, 12, 7];

/// Checks that every number of a field is in its range and every step is at least 1.
fn check_numbers(text: &str, field: &str, name: &str, min: u32, max: u32) -> Result<(), String> {
    for part in field.split(',') {
        let (range, step) = match part.split_once('/') {
            Some((range, step)) => (range, Some(step)),
            None => (part, None),
        };
        if let Some(step) = step
            && !step.parse::<u32>().is_ok_and(|s| s >= 1)
        {
            return Err(format!(
                "`{text}`: the step `{step}` in the {name} field must be a whole number of at least 1"
            ));
        }
        for bound in range.split('-') {
            if let Ok(n) = bound.parse::<u32>()
                && !(min..=max).contains(&n)
            {
                return Err(format!(
                    "`{text}`: {n} is out of range for the {name} field ({min}-{max})"
                ));
            }
        }
    }
    Ok(())
}

/// Rewrites each `N/S` of a field as `N-MAX/S`.
fn spell_out_steps(field: &str, max: u32) -> String {
    field
        .split(',')
        .map(|part| match part.split_once('/') {
            Some((start, step)) if start.parse::<u32>().is_ok() => format!("{start}-{max}/{step}"),
            _ => part.to_string(),
        })
        .collect::<Vec<_>>()
        .join(",")
}

fn parse_cron(text: &str, fields: &[&str]) -> Result<Schedule, String> {
    for (field, name) in fields.iter().zip(FIELD_NAMES) {
        if let Some(bad) = field
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || "*,-/".contains(*c)))
        {
            return Err(format!(
                "`{text}`: `{bad}` is not allowed in the {name} field; use digits, names, `*`, `,`, `-` and `/`"
            ));
        }
        let names_allowed = matches!(name, "month" | "day of week");
        if !names_allowed && field.chars().any(|c| c.is_ascii_alphabetic()) {
            return Err(format!(
                "`{text}`: the {name} field `{field}` takes numbers only"
            ));
        }
    }
    for ((field, name), (min, max)) in fields
        .iter()
        .zip(FIELD_NAMES)
        .zip(FIELD_MIN.into_iter().zip(FIELD_MAX))
    {
        check_numbers(text, field, name, min, max)?;
    }
    if fields[4].contains('/') {
        return Err(format!(
            "`{text}`: `/` is not allowed in the day of week field"
        ));
    }
    if fields[2] != "*" && fields[4] != "*" {
        return Err(format!(
            "`{text}`: day of month (`{}`) and day of week (`{}`) are both restricted; restrict one and set the other to `*`",
            fields[2], fields[4]
        ));
    }
    // Vixie cron reads `0/15` as "from 0 to the end, every 15"; croner wants that spelled out.
    let spelled: Vec<String> = fields
        .iter()
        .zip(FIELD_MAX)
        .map(|(field, max)| spell_out_steps(field, max))
        .collect();
    let cron = croner::Cron::from_str(&spelled.join(" ")).map_err(|e| format!("`{text}`: {e}"))?;
    let probe = Utc
        .with_ymd_and_hms(2000, 1, 1, 0, 0, 0)
        .single()
        .ok_or("clock")?;
    if cron.find_next_occurrence(&probe, false).is_err() {
        return Err(format!("`{text}` never matches a real date"));
    }
    Ok(Schedule::Cron {
        expression: text.to_string(),
        cron: Box::new(cron),
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// An instant from RFC 3339 text, for tests.
    pub(crate) fn at(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text)
            .unwrap()
            .with_timezone(&Utc)
    }

    fn next(expression: &str, from: &str) -> String {
        let schedule = Schedule::parse(expression).unwrap();
        schedule.first_after(at(from)).unwrap().to_rfc3339()
    }

    #[test]
    fn cron_has_its_unix_meaning_in_utc() {
        // 2026-11-29 is a Sunday.
        assert_eq!(
            next("0 9 * * 1", "2026-11-29T12:00:00Z"),
            "2026-11-30T09:00:00+00:00"
        );
        assert_eq!(
            next("0 9 * * mon", "2026-11-29T12:00:00Z"),
            "2026-11-30T09:00:00+00:00"
        );
        assert_eq!(
            next("0 0 * * 0", "2026-11-28T12:00:00Z"),
            "2026-11-29T00:00:00+00:00"
        );
        assert_eq!(
            next("0 0 * * 7", "2026-11-28T12:00:00Z"),
            "2026-11-29T00:00:00+00:00"
        );
        assert_eq!(
            next("0 0 * * sun", "2026-11-28T12:00:00Z"),
            "2026-11-29T00:00:00+00:00"
        );
        assert_eq!(
            next("30 8 * * 1-5", "2026-11-28T12:00:00Z"),
            "2026-11-30T08:30:00+00:00"
        );
        assert_eq!(
            next("0/15 * * * *", "2026-11-28T10:07:00Z"),
            "2026-11-28T10:15:00+00:00"
        );
        assert_eq!(
            next("5/20 * * * *", "2026-11-28T10:26:00Z"),
            "2026-11-28T10:45:00+00:00"
        );
        assert_eq!(
            next("0 1/12 * * *", "2026-11-28T10:00:00Z"),
            "2026-11-28T13:00:00+00:00"
        );
        assert_eq!(
            next("*/15 * * * *", "2026-11-28T10:15:00Z"),
            "2026-11-28T10:30:00+00:00"
        );
        assert_eq!(
            next("5,35 * * * *", "2026-11-28T10:06:00Z"),
            "2026-11-28T10:35:00+00:00"
        );
        assert_eq!(
            next("0 12 1 jan *", "2026-11-28T10:00:00Z"),
            "2027-01-01T12:00:00+00:00"
        );
        assert_eq!(
            next("0 12 1 1 *", "2026-11-28T10:00:00Z"),
            "2027-01-01T12:00:00+00:00"
        );
        assert_eq!(
            next("0 0 29 2 *", "2026-11-28T10:00:00Z"),
            "2028-02-29T00:00:00+00:00"
        );
        assert_eq!(
            next("10-20/5 3 * * *", "2026-11-28T03:11:00Z"),
            "2026-11-28T03:15:00+00:00"
        );
        let schedule = Schedule::parse("0 0 * * 0").unwrap();
        assert_eq!(
            schedule
                .next_after(at("2026-11-29T00:00:00Z"))
                .unwrap()
                .to_rfc3339(),
            "2026-12-06T00:00:00+00:00"
        );
    }

    #[test]
    fn rates_round_up_from_start() {
        assert_eq!(
            next("1 minute", "2026-11-28T10:03:20Z"),
            "2026-11-28T10:04:00+00:00"
        );
        assert_eq!(
            next("5 minutes", "2026-11-28T10:03:00Z"),
            "2026-11-28T10:04:00+00:00"
        );
        assert_eq!(
            next("2 hours", "2026-11-28T10:03:00Z"),
            "2026-11-28T11:00:00+00:00"
        );
        assert_eq!(
            next("1 day", "2026-11-28T10:03:00Z"),
            "2026-11-29T00:00:00+00:00"
        );
        assert_eq!(
            next("3 days", "2026-11-28T00:00:00Z"),
            "2026-11-29T00:00:00+00:00"
        );
        let every_five = Schedule::parse("5 minutes").unwrap();
        assert_eq!(
            every_five
                .next_after(at("2026-11-28T10:04:00Z"))
                .unwrap()
                .to_rfc3339(),
            "2026-11-28T10:09:00+00:00"
        );
        let every_two_days = Schedule::parse("2 days").unwrap();
        assert_eq!(
            every_two_days
                .next_after(at("2026-11-29T00:00:00Z"))
                .unwrap()
                .to_rfc3339(),
            "2026-12-01T00:00:00+00:00"
        );
        assert_eq!(Schedule::parse("1 hours").unwrap().to_string(), "1 hour");
    }

    #[test]
    fn bad_expressions_say_what_is_wrong() {
        let error = |text: &str| Schedule::parse(text).unwrap_err();
        assert_eq!(
            error("0 0 1 * 1"),
            "`0 0 1 * 1`: day of month (`1`) and day of week (`1`) are both restricted; restrict one and set the other to `*`"
        );
        assert_eq!(
            error("0 0 * * */2"),
            "`0 0 * * */2`: `/` is not allowed in the day of week field"
        );
        assert_eq!(
            error("0 0 L * *"),
            "`0 0 L * *`: the day of month field `L` takes numbers only"
        );
        assert_eq!(
            error("0 0 * * 5#2"),
            "`0 0 * * 5#2`: `#` is not allowed in the day of week field; use digits, names, `*`, `,`, `-` and `/`"
        );
        assert_eq!(
            error("0 0 31 2 *"),
            "`0 0 31 2 *` never matches a real date"
        );
        assert_eq!(
            error("60 * * * *"),
            "`60 * * * *`: 60 is out of range for the minute field (0-59)"
        );
        assert_eq!(
            error("0 0 * * 8"),
            "`0 0 * * 8`: 8 is out of range for the day of week field (0-7)"
        );
        assert_eq!(
            error("0 0 0 * *"),
            "`0 0 0 * *`: 0 is out of range for the day of month field (1-31)"
        );
        assert_eq!(
            error("*/0 * * * *"),
            "`*/0 * * * *`: the step `0` in the minute field must be a whole number of at least 1"
        );
        assert!(
            error("0 0 * foo *").starts_with("`0 0 * foo *`: "),
            "{}",
            error("0 0 * foo *")
        );
        assert!(error("0 0 * * 0 2026").starts_with("`0 0 * * 0 2026` is neither"));
        assert!(error("@hourly").starts_with("`@hourly` is neither"));
        assert_eq!(
            error("0 minutes"),
            "`0 minutes`: a rate needs a whole number from 1 to 5256000, not `0`"
        );
        assert_eq!(
            error("5 weeks"),
            "`5 weeks`: a rate's unit is `minute(s)`, `hour(s)` or `day(s)`, not `weeks`"
        );
        assert_eq!(
            error("-1 hours"),
            "`-1 hours`: a rate needs a whole number from 1 to 5256000, not `-1`"
        );
    }
}
