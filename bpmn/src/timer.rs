//! Timer definitions: ISO 8601 durations, date-times and repeating intervals, and cron cycles.
//!
//! | BPMN element    | accepted forms                                   | example                 |
//! |-----------------|--------------------------------------------------|-------------------------|
//! | `timeDuration`  | `PnYnMnWnDTnHnMnS` (fractional seconds allowed)  | `PT15M`, `P1DT12H`      |
//! | `timeDate`      | `YYYY-MM-DDThh:mm[:ss[.fff]]` with `Z`, an offset or a region | `2026-12-01T09:00:00Z`, `2026-12-01T09:00:00@Europe/Berlin` |
//! | `timeCycle`     | `R[n]/duration`, `R[n]/start/duration`, or cron (see [`crate::cron`]) | `R5/PT10S`, `R/P1D`, `0 0 9 * * MON-FRI` |
//! | any of them     | a FEEL expression (`=...`) evaluated at runtime  | `=reminderInterval`     |
//!
//! Date-times must carry a zone: a bare local time would fire at a different instant on each
//! server. The zone is `Z`, an offset (`+01:00`) or an IANA region id, Camunda's way
//! (`2026-12-01T09:00:00@Europe/Berlin`) or Java's (`2026-12-01T09:00:00+01:00[Europe/Berlin]`,
//! where the offset wins), resolved with the time zone database built into the binary
//! (chrono-tz) and Java's rules for clock changes: in an overlap the earlier offset, in a
//! gap the time moved forward by the gap.

use crate::expression::FeelExpression;

/// An ISO 8601 duration. Years and months are kept apart from the exact part because their
/// length depends on the date they are added to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct IsoDuration {
    /// Calendar years.
    pub years: u32,
    /// Calendar months.
    pub months: u32,
    /// Days (weeks are folded in as 7 days). Days are taken as 24 hours: offsets, not zones.
    pub days: u32,
    /// Hours, minutes and seconds, in milliseconds.
    pub millis: u64,
}

impl IsoDuration {
    /// The length in milliseconds, when it does not depend on the calendar (no years or months).
    pub fn fixed_millis(&self) -> Option<u64> {
        if self.years == 0 && self.months == 0 {
            Some(u64::from(self.days) * 86_400_000 + self.millis)
        } else {
            None
        }
    }
}

/// How a cycle repeats.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Repeat {
    /// Every interval (an ISO 8601 repeating interval).
    Every(IsoDuration),
    /// At the times a cron expression gives, in UTC.
    Cron(std::sync::Arc<crate::cron::Cron>),
}

/// A cycle: a repeating interval `R[n]/[start/]duration`, or a cron expression.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Cycle {
    /// How often it fires; `None` means without end (`R/...`).
    pub repetitions: Option<u32>,
    /// When the first interval starts, in milliseconds since the Unix epoch; `None` means when
    /// the timer is created.
    pub start_millis: Option<i64>,
    /// When it fires next, after each firing.
    pub repeat: Repeat,
}

/// A value that is fixed in the model or computed by FEEL when the timer is created.
#[derive(Clone, Debug)]
pub enum TimerValue<T> {
    /// Parsed at deploy time.
    Fixed(T),
    /// Evaluated when the timer is created; the result is parsed with the same rules.
    Expression(FeelExpression),
}

/// What a timer event waits for.
#[derive(Clone, Debug)]
pub enum TimerDefinition {
    /// Fire once after a duration.
    Duration(TimerValue<IsoDuration>),
    /// Fire once at a date-time (milliseconds since the Unix epoch).
    Date(TimerValue<i64>),
    /// Fire repeatedly.
    Cycle(TimerValue<Cycle>),
}

/// Parses `PnYnMnWnDTnHnMnS`.
pub fn parse_duration(text: &str) -> Result<IsoDuration, String> {
    let text = text.trim();
    let invalid = || {
        format!("`{text}` is not an ISO 8601 duration (expected e.g. PT30S, PT15M, P1DT12H, P2W)")
    };
    let body = text.strip_prefix('P').ok_or_else(invalid)?;
    if body.is_empty() || body == "T" || body.ends_with('T') {
        return Err(invalid());
    }
    let (date_part, time_part) = match body.split_once('T') {
        Some((date, time)) => (date, Some(time)),
        None => (body, None),
    };
    let mut duration = IsoDuration {
        years: 0,
        months: 0,
        days: 0,
        millis: 0,
    };
    let mut order = 0;
    for (number, unit) in components(date_part).map_err(|_| invalid())? {
        let rank = match unit {
            'Y' => 1,
            'M' => 2,
            'W' => 3,
            'D' => 4,
            _ => return Err(invalid()),
        };
        if rank <= order || number.fraction.is_some() {
            return Err(invalid());
        }
        order = rank;
        let value = u32::try_from(number.whole).map_err(|_| invalid())?;
        match unit {
            'Y' => duration.years = value,
            'M' => duration.months = value,
            'W' => duration.days = value.checked_mul(7).ok_or_else(invalid)?,
            _ => duration.days = duration.days.checked_add(value).ok_or_else(invalid)?,
        }
    }
    if let Some(time_part) = time_part {
        let mut order = 0;
        for (number, unit) in components(time_part).map_err(|_| invalid())? {
            let (rank, unit_millis) = match unit {
                'H' => (1, 3_600_000),
                'M' => (2, 60_000),
                'S' => (3, 1_000),
                _ => return Err(invalid()),
            };
            if rank <= order || (number.fraction.is_some() && unit != 'S') {
                return Err(invalid());
            }
            order = rank;
            let millis = number
                .whole
                .checked_mul(unit_millis)
                .and_then(|value| value.checked_add(number.fraction.unwrap_or(0)))
                .and_then(|value| duration.millis.checked_add(value))
                .ok_or_else(invalid)?;
            duration.millis = millis;
        }
    }
    Ok(duration)
}

struct Number {
    whole: u64,
    /// Milliseconds from a fractional part (only meaningful for seconds).
    fraction: Option<u64>,
}

fn components(text: &str) -> Result<Vec<(Number, char)>, ()> {
    let mut result = Vec::new();
    let mut rest = text;
    while !rest.is_empty() {
        let end = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == ','))
            .ok_or(())?;
        if end == 0 {
            return Err(());
        }
        let digits = &rest[..end];
        let unit = rest[end..].chars().next().ok_or(())?;
        let (whole, fraction) = match digits.split_once(['.', ',']) {
            Some((whole, fraction)) => {
                if whole.is_empty() || fraction.is_empty() || fraction.len() > 9 {
                    return Err(());
                }
                if !fraction.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(());
                }
                let millis: String = fraction.chars().chain("000".chars()).take(3).collect();
                (whole, Some(millis.parse::<u64>().map_err(|_| ())?))
            }
            None => (digits, None),
        };
        let whole = whole.parse::<u64>().map_err(|_| ())?;
        result.push((Number { whole, fraction }, unit));
        rest = &rest[end + unit.len_utf8()..];
    }
    Ok(result)
}

/// Parses `YYYY-MM-DDThh:mm[:ss[.fff]](Z|±hh:mm)` into milliseconds since the Unix epoch.
pub fn parse_date_time(text: &str) -> Result<i64, String> {
    let text = text.trim();
    let invalid = || {
        format!(
            "`{text}` is not an ISO 8601 date-time with a zone offset \
             (expected e.g. 2026-12-01T09:00:00Z or 2026-12-01T09:00:00+01:00)"
        )
    };
    let (local, region) = split_region(text)?;
    let (date, time) = local.split_once('T').ok_or_else(invalid)?;
    let mut date_parts = date.split('-');
    let year = fixed_digits(date_parts.next(), 4).ok_or_else(invalid)?;
    let month = fixed_digits(date_parts.next(), 2).ok_or_else(invalid)?;
    let day = fixed_digits(date_parts.next(), 2).ok_or_else(invalid)?;
    if date_parts.next().is_some() || !(1..=12).contains(&month) {
        return Err(invalid());
    }
    if day < 1 || day > days_in_month(year, month) {
        return Err(invalid());
    }
    let (clock, offset_minutes) = match (split_offset(time), region) {
        (Some((clock, offset)), _) => (clock, Some(offset)),
        (None, Some(_)) => (time, None),
        (None, None) => {
            return Err(format!(
                "`{text}` has no zone offset; add Z (UTC), an offset such as +01:00 or a \
                 region such as @Europe/Berlin"
            ));
        }
    };
    let (hms, fraction) = match clock.split_once('.') {
        Some((hms, fraction)) => (hms, Some(fraction)),
        None => (clock, None),
    };
    let mut clock_parts = hms.split(':');
    let hour = fixed_digits(clock_parts.next(), 2).ok_or_else(invalid)?;
    let minute = fixed_digits(clock_parts.next(), 2).ok_or_else(invalid)?;
    let second = match clock_parts.next() {
        Some(part) => fixed_digits(Some(part), 2).ok_or_else(invalid)?,
        None => 0,
    };
    if clock_parts.next().is_some() || hour > 23 || minute > 59 || second > 59 {
        return Err(invalid());
    }
    let millis = match fraction {
        None => 0,
        Some(digits) if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) => {
            let padded: String = digits.chars().chain("000".chars()).take(3).collect();
            padded.parse::<i64>().map_err(|_| invalid())?
        }
        Some(_) => return Err(invalid()),
    };
    let days = days_from_civil(year, month, day);
    let local_seconds = days * 86_400 + hour * 3_600 + minute * 60 + second;
    let seconds = match (offset_minutes, region) {
        (Some(offset), _) => local_seconds - offset * 60,
        (None, Some(zone)) => local_seconds - zone_offset_seconds(zone, local_seconds),
        (None, None) => unreachable!("a date-time without an offset or a region was refused"),
    };
    Ok(seconds * 1_000 + millis)
}

/// Splits a zone region id off a date-time: Camunda's `...@Europe/Berlin`, or Java's
/// `...+01:00[Europe/Berlin]`. The region must be an IANA time zone id.
fn split_region(text: &str) -> Result<(&str, Option<chrono_tz::Tz>), String> {
    let split = match text.split_once('@') {
        Some((local, region)) => Some((local, region)),
        None => text
            .strip_suffix(']')
            .and_then(|inner| inner.split_once('[')),
    };
    let Some((local, region)) = split else {
        if text.contains('[') || text.contains(']') {
            return Err(format!(
                "`{text}`: a zone region id goes in brackets at the end, as in \
                 2026-12-01T09:00:00+01:00[Europe/Berlin]"
            ));
        }
        return Ok((text, None));
    };
    match region.parse::<chrono_tz::Tz>() {
        Ok(zone) => Ok((local, Some(zone))),
        Err(_) => Err(format!(
            "`{text}`: `{region}` is not a time zone region id of the IANA database (e.g. \
             Europe/Berlin, America/New_York, UTC)"
        )),
    }
}

/// The offset from UTC, in seconds, that `zone` has at the local time `local_seconds`
/// (seconds since 1970-01-01T00:00 of the local clock), with Java's rules, as Camunda uses:
/// in an overlap (clocks going back) the earlier offset; in a gap (clocks going forward)
/// the offset before the gap, so that 02:30 in a gap from 02:00 to 03:00 is 03:30 after it.
fn zone_offset_seconds(zone: chrono_tz::Tz, local_seconds: i64) -> i64 {
    use chrono::{LocalResult, Offset, TimeZone};
    let naive = |seconds: i64| {
        chrono::DateTime::from_timestamp(seconds, 0)
            .expect("a four-digit year is in chrono's range")
            .naive_utc()
    };
    match zone.offset_from_local_datetime(&naive(local_seconds)) {
        LocalResult::Single(offset) | LocalResult::Ambiguous(offset, _) => {
            i64::from(offset.fix().local_minus_utc())
        }
        LocalResult::None => {
            // In a gap: the offset in force a day earlier (transitions are months apart).
            let before = zone.offset_from_utc_datetime(&naive(local_seconds - 86_400));
            i64::from(before.fix().local_minus_utc())
        }
    }
}

fn fixed_digits(part: Option<&str>, width: usize) -> Option<i64> {
    let part = part?;
    if part.len() != width || !part.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    part.parse().ok()
}

fn split_offset(time: &str) -> Option<(&str, i64)> {
    if let Some(clock) = time.strip_suffix('Z') {
        return Some((clock, 0));
    }
    let sign_at = time.rfind(['+', '-'])?;
    let (clock, offset) = time.split_at(sign_at);
    let sign = if offset.starts_with('-') { -1 } else { 1 };
    let (hours, minutes) = offset[1..].split_once(':').unwrap_or((&offset[1..], "00"));
    let hours = fixed_digits(Some(hours), 2)?;
    let minutes = fixed_digits(Some(minutes), 2)?;
    if hours > 18 || minutes > 59 {
        return None;
    }
    Some((clock, sign * (hours * 60 + minutes)))
}

fn is_leap(year: i64) -> bool {
    (year % 4 == 0 && year % 100 != 0) || year % 400 == 0
}

/// The number of days of a month (1-12) of a proleptic Gregorian year.
pub fn days_in_month(year: i64, month: i64) -> i64 {
    match month {
        2 if is_leap(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
pub fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let month_index = (month + 9) % 12;
    let day_of_year = (153 * month_index + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

/// `millis` plus an ISO 8601 duration: years and months by the calendar (the day clamped to
/// the month's length, in UTC), the rest exactly.
pub fn add_duration(millis: i64, duration: &IsoDuration) -> Result<i64, String> {
    let overflow = || format!("the timer lies beyond the year 9999 ({duration:?})");
    let mut result = millis;
    if duration.years > 0 || duration.months > 0 {
        let day_millis = millis.rem_euclid(86_400_000);
        let (year, month, day) = civil_from_days(millis.div_euclid(86_400_000));
        let months =
            year * 12 + (month - 1) + i64::from(duration.years) * 12 + i64::from(duration.months);
        let (year, month) = (months.div_euclid(12), months.rem_euclid(12) + 1);
        if year > 9999 {
            return Err(overflow());
        }
        let day = day.min(days_in_month(year, month));
        result = days_from_civil(year, month, day) * 86_400_000 + day_millis;
    }
    let exact = i64::from(duration.days) * 86_400_000 + duration.millis as i64;
    result.checked_add(exact).ok_or_else(overflow)
}

/// The date of a day number since 1970-01-01.
pub fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let days = days + 719_468;
    let era = days.div_euclid(146_097);
    let day_of_era = days - era * 146_097;
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_index = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * month_index + 2) / 5 + 1;
    let month = if month_index < 10 {
        month_index + 3
    } else {
        month_index - 9
    };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// Parses `R[n]/duration`, `R[n]/start/duration` or a cron expression (see [`crate::cron`]).
pub fn parse_cycle(text: &str) -> Result<Cycle, String> {
    let text = text.trim();
    if crate::cron::looks_like_cron(text) {
        return Ok(Cycle {
            repetitions: None,
            start_millis: None,
            repeat: Repeat::Cron(std::sync::Arc::new(crate::cron::Cron::parse(text)?)),
        });
    }
    let invalid = || {
        format!("`{text}` is not an ISO 8601 repeating interval (expected e.g. R5/PT10S, R/P1D)")
    };
    // `R[n]`, then the start (which may hold a `/` of its own, in a region id such as
    // `@Europe/Berlin`), then the duration.
    let (repeat, rest) = text.split_once('/').ok_or_else(invalid)?;
    let repeat = repeat.strip_prefix('R').ok_or_else(invalid)?;
    let repetitions = if repeat.is_empty() {
        None
    } else {
        Some(repeat.parse::<u32>().map_err(|_| invalid())?)
    };
    let (start_millis, interval) = match rest.rsplit_once('/') {
        None => (None, parse_duration(rest)?),
        Some((start, duration)) => (Some(parse_date_time(start)?), parse_duration(duration)?),
    };
    if interval.fixed_millis() == Some(0) {
        return Err(format!(
            "`{text}`: the interval of a cycle must be longer than zero"
        ));
    }
    Ok(Cycle {
        repetitions,
        start_millis,
        repeat: Repeat::Every(interval),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        let duration = parse_duration("PT1H30M").expect("valid");
        assert_eq!(duration.fixed_millis(), Some(5_400_000));
        assert_eq!(parse_duration("PT0.1S").expect("valid").millis, 100);
        assert_eq!(parse_duration("P2W").expect("valid").days, 14);
        assert_eq!(
            parse_duration("P1DT1S").expect("valid").fixed_millis(),
            Some(86_401_000)
        );
        let calendar = parse_duration("P1Y2M").expect("valid");
        assert_eq!(
            (calendar.years, calendar.months, calendar.fixed_millis()),
            (1, 2, None)
        );
        for bad in [
            "", "P", "PT", "1H", "PT1H1H", "PT1M1H", "P1.5D", "PTxS", "P1DT", "-PT1S",
        ] {
            assert!(parse_duration(bad).is_err(), "{bad:?} should be rejected");
        }
    }

    #[test]
    fn date_times() {
        assert_eq!(parse_date_time("1970-01-01T00:00:00Z"), Ok(0));
        assert_eq!(parse_date_time("1970-01-01T01:00:00+01:00"), Ok(0));
        assert_eq!(
            parse_date_time("2000-03-01T00:00:00.5Z"),
            Ok(951_868_800_500)
        );
        assert_eq!(parse_date_time("2024-02-29T12:00Z"), Ok(1_709_208_000_000));
        for bad in [
            "2019-10-01T12:00:00",
            "2019-13-01T12:00:00Z",
            "2023-02-29T12:00:00Z",
            "2019-10-01 12:00:00Z",
            "2019-10-01T25:00:00Z",
        ] {
            assert!(parse_date_time(bad).is_err(), "{bad:?} should be rejected");
        }
        let unknown = parse_date_time("2019-10-01T12:00:00@Europe/Atlantis").expect_err("region");
        assert!(unknown.contains("IANA"), "{unknown}");
    }

    #[test]
    fn date_times_with_a_region() {
        let utc = |text: &str| parse_date_time(text).expect(text);
        // Summer time in Berlin: +02:00.
        assert_eq!(
            utc("2019-10-01T12:00:00@Europe/Berlin"),
            utc("2019-10-01T10:00:00Z")
        );
        // Java's form; the offset given wins.
        assert_eq!(
            utc("2019-10-01T12:00:00+02:00[Europe/Berlin]"),
            utc("2019-10-01T10:00:00Z")
        );
        assert_eq!(
            utc("2019-12-01T12:00:00.250[Europe/Berlin]"),
            utc("2019-12-01T11:00:00.250Z")
        );
        assert_eq!(
            utc("2026-07-04T09:00:00@America/New_York"),
            utc("2026-07-04T13:00:00Z")
        );
        assert_eq!(utc("2026-07-04T09:00:00@UTC"), utc("2026-07-04T09:00:00Z"));
        // Clocks go forward from 02:00 to 03:00: 02:30 is 03:30 summer time.
        assert_eq!(
            utc("2026-03-29T02:30:00@Europe/Berlin"),
            utc("2026-03-29T03:30:00+02:00")
        );
        // Clocks go back from 03:00 to 02:00: 02:30 happens twice; the first one counts.
        assert_eq!(
            utc("2026-10-25T02:30:00@Europe/Berlin"),
            utc("2026-10-25T02:30:00+02:00")
        );
        for bad in [
            "2019-10-01T12:00:00[Europe/Berlin",
            "2019-10-01T12:00:00@",
            "2019-10-01T12:00:00@Berlin",
        ] {
            assert!(parse_date_time(bad).is_err(), "{bad:?} should be rejected");
        }
    }

    #[test]
    fn cycles() {
        let cycle = parse_cycle("R5/PT10S").expect("valid");
        assert_eq!(cycle.repetitions, Some(5));
        assert_eq!(
            cycle.repeat,
            Repeat::Every(parse_duration("PT10S").expect("valid"))
        );
        assert_eq!(parse_cycle("R/P1D").expect("valid").repetitions, None);
        let in_berlin = parse_cycle("R3/2026-01-01T01:00:00@Europe/Berlin/PT1H").expect("region");
        assert_eq!(in_berlin.start_millis, Some(1_767_225_600_000));
        assert!(parse_cycle("R3/2026-01-01T00:00:00Z/PT1H/PT1H").is_err());
        let started = parse_cycle("R3/2026-01-01T00:00:00Z/PT1H").expect("valid");
        assert_eq!(started.start_millis, Some(1_767_225_600_000));
        assert!(parse_cycle("R5").is_err());
        assert!(parse_cycle("R/PT0S").is_err());
        let cron = parse_cycle("0 0 9-17 * * MON-FRI").expect("cron");
        assert!(matches!(cron.repeat, Repeat::Cron(_)));
        assert_eq!(cron.repetitions, None);
        let bad = parse_cycle("0 0 9-17 * *").expect_err("five fields");
        assert!(bad.contains("six"), "{bad}");
    }

    fn millis(text: &str) -> i64 {
        parse_date_time(text).expect("a date-time")
    }

    #[test]
    fn calendar_durations_clamp_to_the_month() {
        let month = IsoDuration {
            years: 0,
            months: 1,
            days: 0,
            millis: 0,
        };
        let cases = [
            ("2026-01-31T10:00:00Z", "2026-02-28T10:00:00Z"),
            ("2028-01-31T10:00:00Z", "2028-02-29T10:00:00Z"),
            ("2026-12-15T00:00:00Z", "2027-01-15T00:00:00Z"),
            ("1969-12-31T23:59:59Z", "1970-01-31T23:59:59Z"),
        ];
        for (from, to) in cases {
            assert_eq!(add_duration(millis(from), &month), Ok(millis(to)), "{from}");
        }
        let mixed = IsoDuration {
            years: 1,
            months: 2,
            days: 3,
            millis: 4_000,
        };
        assert_eq!(
            add_duration(millis("2026-11-21T12:00:00Z"), &mixed),
            Ok(millis("2028-01-24T12:00:04Z"))
        );
        let far = IsoDuration {
            years: 10_000,
            months: 0,
            days: 0,
            millis: 0,
        };
        assert!(add_duration(0, &far).is_err());
    }

    #[test]
    fn civil_dates_round_trip() {
        for days in (-1_000_000..1_000_000).step_by(997) {
            let (year, month, day) = civil_from_days(days);
            assert_eq!(days_from_civil(year, month, day), days);
        }
    }
}
