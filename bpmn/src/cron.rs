//! Cron cycles for `timeCycle`, as Camunda 8 reads them (Spring's `CronExpression`), in UTC.
//!
//! Six fields, separated by spaces: second, minute, hour, day of month, month, day of week.
//!
//! | field | values | also |
//! |---|---|---|
//! | second, minute | 0-59 | |
//! | hour | 0-23 | |
//! | day of month | 1-31 | `?` (any), `L` (last day), `L-n` (n days before the last), `nW` (the weekday nearest day n, in its month), `LW` (the last weekday) |
//! | month | 1-12 or `JAN`-`DEC` | |
//! | day of week | 0-7 or `SUN`-`SAT` (0 and 7 are Sunday) | `?` (any), `dL` (the last day d of the month, `5L` or `FRIL`), `d#n` (the n-th day d, `MON#2`) |
//!
//! Every field takes `*`, lists (`1,15`), ranges (`MON-FRI`) and steps (`*/15`, `5/10`,
//! `10-40/5`). When both day fields are restricted, a day must match both (Spring's rule, not
//! classic cron's "either"). The macros `@yearly` (`@annually`), `@monthly`, `@weekly`,
//! `@daily` (`@midnight`) and `@hourly` stand for their six fields. A cycle runs without end;
//! an expression that can never fire (`0 0 0 30 2 *`) is refused.

use crate::timer::{civil_from_days, days_in_month};

/// A parsed cron expression.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Cron {
    source: String,
    seconds: u64,
    minutes: u64,
    hours: u64,
    months: u64,
    /// `None`: any day of the month.
    month_days: Option<Vec<MonthDay>>,
    /// `None`: any day of the week.
    week_days: Option<Vec<WeekDay>>,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum MonthDay {
    /// Days 1-31, as bits.
    Days(u64),
    /// The last day, less this many days.
    Last(u32),
    /// The weekday (Monday to Friday) nearest this day, within its month.
    NearestWeekday(u32),
    /// The last weekday of the month.
    LastWeekday,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum WeekDay {
    /// Days of the week, Sunday as bit 0.
    Days(u64),
    /// The last such day of the month.
    Last(u32),
    /// The n-th such day of the month.
    Nth(u32, u32),
}

const MONTHS: [&str; 12] = [
    "JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC",
];
const DAYS: [&str; 7] = ["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"];

/// How far ahead a firing is looked for: the Gregorian calendar repeats every 400 years.
const SEARCH_DAYS: i64 = 146_097;

/// Whether a cycle text is meant as cron rather than an ISO 8601 repeating interval.
pub fn looks_like_cron(text: &str) -> bool {
    let text = text.trim();
    text.starts_with('@') || (!text.starts_with('R') && text.split_whitespace().count() >= 5)
}

impl Cron {
    /// Parses a cron expression; the error says which field is wrong and why.
    pub fn parse(text: &str) -> Result<Cron, String> {
        let source = text.trim();
        let expanded = match source.to_ascii_lowercase().as_str() {
            "@yearly" | "@annually" => "0 0 0 1 1 *",
            "@monthly" => "0 0 0 1 * *",
            "@weekly" => "0 0 0 * * 0",
            "@daily" | "@midnight" => "0 0 0 * * *",
            "@hourly" => "0 0 * * * *",
            _ if source.starts_with('@') => {
                return Err(format!(
                    "`{source}` is not a cron macro (@yearly, @monthly, @weekly, @daily, @hourly)"
                ));
            }
            _ => source,
        };
        let fields: Vec<&str> = expanded.split_whitespace().collect();
        if fields.len() != 6 {
            return Err(format!(
                "`{source}` has {} fields; a cron cycle has six: second, minute, hour, day of \
                 month, month, day of week (e.g. `0 0 9 * * MON-FRI`)",
                fields.len()
            ));
        }
        let upper: Vec<String> = fields.iter().map(|f| f.to_ascii_uppercase()).collect();
        let field = |index: usize, what: &str, min: u32, max: u32, names: &[&str]| {
            mask(&upper[index], min, max, names).map_err(|problem| {
                format!("`{source}`: the {what} field `{}` {problem}", fields[index])
            })
        };
        let cron = Cron {
            source: source.to_string(),
            seconds: field(0, "second", 0, 59, &[])?,
            minutes: field(1, "minute", 0, 59, &[])?,
            hours: field(2, "hour", 0, 23, &[])?,
            months: field(4, "month", 1, 12, &MONTHS)?,
            month_days: month_days(&upper[3]).map_err(|problem| {
                format!(
                    "`{source}`: the day-of-month field `{}` {problem}",
                    fields[3]
                )
            })?,
            week_days: week_days(&upper[5]).map_err(|problem| {
                format!(
                    "`{source}`: the day-of-week field `{}` {problem}",
                    fields[5]
                )
            })?,
        };
        if cron.next_after(0).is_none() {
            return Err(format!("`{source}` never fires: no date matches it"));
        }
        Ok(cron)
    }

    /// The expression as written.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// The first firing strictly after `millis` (milliseconds since the Unix epoch, UTC), at a
    /// whole second; `None` if there is none before the year 10000.
    pub fn next_after(&self, millis: i64) -> Option<i64> {
        let start = millis.div_euclid(1_000) + 1;
        let first_day = start.div_euclid(86_400);
        for day in first_day..=first_day + SEARCH_DAYS {
            let (year, month, date) = civil_from_days(day);
            if year > 9999 {
                return None;
            }
            let from = if day == first_day {
                start.rem_euclid(86_400)
            } else {
                0
            };
            if self.months & (1 << month) != 0
                && self.day_matches(day, year, month, date)
                && let Some(second) = self.first_second_from(from)
            {
                return Some((day * 86_400 + second) * 1_000);
            }
        }
        None
    }

    /// The first second of a day, at or after `from`, that the time fields allow.
    fn first_second_from(&self, from: i64) -> Option<i64> {
        let (hour, minute, second) = (from / 3_600, from / 60 % 60, from % 60);
        for h in hour..24 {
            if self.hours & (1 << h) == 0 {
                continue;
            }
            let first_minute = if h == hour { minute } else { 0 };
            for m in first_minute..60 {
                if self.minutes & (1 << m) == 0 {
                    continue;
                }
                let first_second = if h == hour && m == minute { second } else { 0 };
                if let Some(s) = (first_second..60).find(|s| self.seconds & (1 << s) != 0) {
                    return Some(h * 3_600 + m * 60 + s);
                }
            }
        }
        None
    }

    fn day_matches(&self, day: i64, year: i64, month: i64, date: i64) -> bool {
        let last = days_in_month(year, month);
        let weekday = (day + 4).rem_euclid(7); // 1970-01-01 was a Thursday; Sunday is 0.
        let month_ok = self.month_days.as_ref().is_none_or(|items| {
            items.iter().any(|item| match *item {
                MonthDay::Days(bits) => bits & (1 << date) != 0,
                MonthDay::Last(offset) => date == last - i64::from(offset),
                MonthDay::NearestWeekday(target) => {
                    date == nearest_weekday(i64::from(target).min(last), last, weekday, date)
                }
                MonthDay::LastWeekday => date == nearest_weekday(last, last, weekday, date),
            })
        });
        let week_ok = self.week_days.as_ref().is_none_or(|items| {
            items.iter().any(|item| match *item {
                WeekDay::Days(bits) => bits & (1 << weekday) != 0,
                WeekDay::Last(d) => i64::from(d) == weekday && date + 7 > last,
                WeekDay::Nth(d, n) => i64::from(d) == weekday && (date - 1) / 7 + 1 == i64::from(n),
            })
        });
        month_ok && week_ok
    }
}

impl std::fmt::Display for Cron {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.source)
    }
}

/// The date of the weekday nearest `target` within its month, given the weekday of `date`.
fn nearest_weekday(target: i64, last: i64, weekday_of_date: i64, date: i64) -> i64 {
    let weekday = (weekday_of_date + target - date).rem_euclid(7);
    match weekday {
        6 if target == 1 => 3,             // Saturday the 1st: Monday the 3rd.
        6 => target - 1,                   // Saturday: the Friday before.
        0 if target == last => target - 2, // Sunday the last: the Friday before.
        0 => target + 1,                   // Sunday: the Monday after.
        _ => target,
    }
}

fn number(text: &str, min: u32, max: u32, names: &[&str]) -> Result<u32, String> {
    let value = match names.iter().position(|name| *name == text) {
        Some(index) => index as u32 + min,
        None => text
            .parse::<u32>()
            .map_err(|_| format!("has `{text}`, which is not a number or a name"))?,
    };
    if value < min || value > max {
        return Err(format!("has {value}, outside {min}-{max}"));
    }
    Ok(value)
}

/// The bits a field of plain values sets: `*`, `?`, lists, ranges, steps and names.
fn mask(text: &str, min: u32, max: u32, names: &[&str]) -> Result<u64, String> {
    let mut bits = 0u64;
    for part in text.split(',') {
        let (range, step) = match part.split_once('/') {
            Some((range, step)) => {
                let step = step
                    .parse::<u32>()
                    .ok()
                    .filter(|step| *step > 0)
                    .ok_or_else(|| format!("has the step `{step}`, not a whole number above 0"))?;
                (range, Some(step))
            }
            None => (part, None),
        };
        let (low, high) = match range {
            "*" | "?" => (min, max),
            _ => match range.split_once('-') {
                Some((low, high)) => {
                    let (low, high) = (
                        number(low, min, max, names)?,
                        number(high, min, max, names)?,
                    );
                    if low > high {
                        return Err(format!("has the range {low}-{high}, which runs backwards"));
                    }
                    (low, high)
                }
                // `5/10`: from 5 to the end, every 10.
                None if step.is_some() => (number(range, min, max, names)?, max),
                None => {
                    let value = number(range, min, max, names)?;
                    (value, value)
                }
            },
        };
        let mut value = low;
        while value <= high {
            bits |= 1 << value;
            value += step.unwrap_or(1);
        }
    }
    Ok(bits)
}

fn month_days(text: &str) -> Result<Option<Vec<MonthDay>>, String> {
    if text == "*" || text == "?" {
        return Ok(None);
    }
    let mut items = Vec::new();
    let mut plain = Vec::new();
    for part in text.split(',') {
        if part == "L" {
            items.push(MonthDay::Last(0));
        } else if part == "LW" {
            items.push(MonthDay::LastWeekday);
        } else if let Some(offset) = part.strip_prefix("L-") {
            let offset = number(offset, 0, 30, &[])?;
            items.push(MonthDay::Last(offset));
        } else if let Some(day) = part.strip_suffix('W') {
            items.push(MonthDay::NearestWeekday(number(day, 1, 31, &[])?));
        } else {
            plain.push(part);
        }
    }
    if !plain.is_empty() {
        items.push(MonthDay::Days(mask(&plain.join(","), 1, 31, &[])?));
    }
    Ok(Some(items))
}

fn week_days(text: &str) -> Result<Option<Vec<WeekDay>>, String> {
    if text == "*" || text == "?" {
        return Ok(None);
    }
    let day = |text: &str| number(text, 0, 7, &DAYS).map(|day| day % 7);
    let mut items = Vec::new();
    let mut plain = Vec::new();
    for part in text.split(',') {
        if let Some((d, n)) = part.split_once('#') {
            items.push(WeekDay::Nth(day(d)?, number(n, 1, 5, &[])?));
        } else if let Some(d) = part.strip_suffix('L').filter(|d| !d.is_empty()) {
            items.push(WeekDay::Last(day(d)?));
        } else {
            plain.push(part);
        }
    }
    if !plain.is_empty() {
        let bits = mask(&plain.join(","), 0, 7, &DAYS)?;
        // 7 is Sunday too.
        let bits = (bits | (bits >> 7)) & 0x7f;
        items.push(WeekDay::Days(bits));
    }
    Ok(Some(items))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::timer::parse_date_time;

    fn at(text: &str) -> i64 {
        parse_date_time(text).expect(text)
    }

    fn next(cron: &str, after: &str) -> String {
        let cron = Cron::parse(cron).expect(cron);
        let millis = cron.next_after(at(after)).expect("fires");
        let (seconds, day) = (millis / 1_000 % 86_400, millis / 86_400_000);
        let (y, m, d) = civil_from_days(day);
        format!(
            "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
            seconds / 3_600,
            seconds / 60 % 60,
            seconds % 60
        )
    }

    #[test]
    fn times_of_day_and_steps() {
        // 2026-12-04 is a Friday.
        assert_eq!(
            next("0 0 9 * * *", "2026-12-04T08:59:59Z"),
            "2026-12-04T09:00:00Z"
        );
        assert_eq!(
            next("0 0 9 * * *", "2026-12-04T09:00:00Z"),
            "2026-12-05T09:00:00Z"
        );
        assert_eq!(
            next("*/15 * * * * *", "2026-12-04T10:00:07.500Z"),
            "2026-12-04T10:00:15Z"
        );
        assert_eq!(
            next("0 10-40/15 * * * *", "2026-12-04T10:26:00Z"),
            "2026-12-04T10:40:00Z"
        );
        assert_eq!(
            next("0 10-40/15 * * * *", "2026-12-04T10:41:00Z"),
            "2026-12-04T11:10:00Z"
        );
        assert_eq!(
            next("5/20 * * * * *", "2026-12-04T10:00:26Z"),
            "2026-12-04T10:00:45Z"
        );
        assert_eq!(
            next("0 0 0 * * *", "2026-12-31T23:59:59Z"),
            "2027-01-01T00:00:00Z"
        );
        assert_eq!(
            next("@hourly", "2026-12-04T10:00:00Z"),
            "2026-12-04T11:00:00Z"
        );
        assert_eq!(
            next("@yearly", "2026-12-04T10:00:00Z"),
            "2027-01-01T00:00:00Z"
        );
        // Quartz's form, as Camunda 7 models write it.
        assert_eq!(
            next("0/5 0/1 * 1/1 * ?", "2026-12-04T10:00:01Z"),
            "2026-12-04T10:00:05Z"
        );
    }

    #[test]
    fn days_of_week_and_month() {
        // Camunda's own example: on the hour from 9 to 17 on weekdays.
        let cron = "0 0 9-17 * * MON-FRI";
        assert_eq!(next(cron, "2026-12-04T17:00:00Z"), "2026-12-07T09:00:00Z");
        assert_eq!(next(cron, "2026-12-07T09:30:00Z"), "2026-12-07T10:00:00Z");
        assert_eq!(
            next("0 0 12 * * 0", "2026-12-04T00:00:00Z"),
            "2026-12-06T12:00:00Z"
        );
        assert_eq!(
            next("0 0 12 * * 7", "2026-12-04T00:00:00Z"),
            "2026-12-06T12:00:00Z"
        );
        assert_eq!(
            next("0 0 0 29 FEB *", "2026-01-01T00:00:00Z"),
            "2028-02-29T00:00:00Z"
        );
        assert_eq!(
            next("0 0 0 L * *", "2026-02-10T00:00:00Z"),
            "2026-02-28T00:00:00Z"
        );
        assert_eq!(
            next("0 0 0 L-2 * *", "2026-04-10T00:00:00Z"),
            "2026-04-28T00:00:00Z"
        );
        // The weekday nearest the 1st of August 2026 (a Saturday) is Monday the 3rd.
        assert_eq!(
            next("0 0 0 1W * *", "2026-07-15T00:00:00Z"),
            "2026-08-03T00:00:00Z"
        );
        // Nearest the 15th of November 2026 (a Sunday): Monday the 16th.
        assert_eq!(
            next("0 0 0 15W * *", "2026-11-01T00:00:00Z"),
            "2026-11-16T00:00:00Z"
        );
        // The last weekday of January 2027 (the 31st is a Sunday): Friday the 29th.
        assert_eq!(
            next("0 0 0 LW * *", "2027-01-01T00:00:00Z"),
            "2027-01-29T00:00:00Z"
        );
        assert_eq!(
            next("0 0 0 * * FRIL", "2026-12-01T00:00:00Z"),
            "2026-12-25T00:00:00Z"
        );
        assert_eq!(
            next("0 0 0 * * MON#2", "2026-12-01T00:00:00Z"),
            "2026-12-14T00:00:00Z"
        );
        // Both day fields restricted: both must hold (Friday the 13th).
        assert_eq!(
            next("0 0 0 13 * FRI", "2026-01-01T00:00:00Z"),
            "2026-02-13T00:00:00Z"
        );
    }

    #[test]
    fn bad_expressions_say_what_is_wrong() {
        for (text, says) in [
            ("0 0 9 * *", "has 5 fields"),
            ("0 0 25 * * *", "hour field `25` has 25, outside 0-23"),
            ("0 0 0 * FOO *", "month field `FOO`"),
            ("0 0 17-9 * * *", "runs backwards"),
            ("*/0 * * * * *", "step `0`"),
            ("0 0 0 30 2 *", "never fires"),
            ("@sometimes", "not a cron macro"),
            ("0 0 0 * * MON#6", "outside 1-5"),
        ] {
            let error = Cron::parse(text).expect_err(text);
            assert!(error.contains(says), "{text}: {error}");
        }
        assert!(looks_like_cron("0 0 9 * * MON-FRI"));
        assert!(looks_like_cron("@daily"));
        assert!(!looks_like_cron("R5/PT10S"));
    }
}
