//! feel-scala's built-ins that DMN FEEL cannot say, evaluated here (the list and the renaming
//! of calls: `ringflow_bpmn::extensions`).
//!
//! Each is bound, for an expression that calls it, as a FEEL function definition whose body
//! is Rust: it reads its arguments by parameter name from the scope the evaluator pushes.
//! What feel-scala gives null for (a wrong type, a bad pattern) gives null here, with the
//! reason kept for an incident's message.
//!
//! `uuid()` and `random number()` read no random source (the engine is deterministic): each
//! call takes 128 bits from a bijection of (the command's first key, which evaluation of the
//! command, which call of the evaluation), so replaying the journal gives the same values,
//! and no two calls of a shard, or of a cluster (keys name their shard), give the same 128
//! bits. `engine::process` makes a command that drew hand out at least one key, so that the
//! next command's first key differs.

use std::cell::Cell;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

use base64::Engine as _;
use dsntk_feel::closure::Closure;
use dsntk_feel::context::FeelContext;
use dsntk_feel::values::Value;
use dsntk_feel::{FeelNumber, FeelScope, FeelType, FunctionBody, Name};
use dsntk_feel_temporal::{FeelDate, FeelDateTime, FeelTime, FeelZone};
use ringflow_bpmn::extensions::NativeFunction;

use crate::key::Key;
use crate::limits::EXTRACT_PATTERN_BYTES_MAX;

/// Where `uuid()` and `random number()` draw from while a command runs (see the module
/// docs). Kept in the state, never encoded or compared.
#[derive(Clone, Debug, Default)]
pub(crate) struct Draws {
    first_key: Cell<u64>,
    evaluations: Cell<u64>,
}

impl Draws {
    /// A command with this first key starts.
    pub(crate) fn start(&self, first_key: Key) {
        self.first_key.set(first_key.0);
        self.evaluations.set(0);
    }

    /// Whether an evaluation of the running command drew.
    pub(crate) fn drawn(&self) -> bool {
        self.evaluations.get() > 0
    }

    /// The stream of one evaluation.
    fn stream(&self) -> Stream {
        let evaluation = self.evaluations.get() + 1;
        self.evaluations.set(evaluation);
        Stream {
            first_key: self.first_key.get(),
            evaluation,
            calls: AtomicU64::new(0),
        }
    }
}

/// The draws of one evaluation: call `i` gets the bijection of
/// (first key, evaluation << 32 | i).
struct Stream {
    first_key: u64,
    evaluation: u64,
    calls: AtomicU64,
}

impl Stream {
    fn next(&self) -> [u8; 16] {
        let call = self.calls.fetch_add(1, Ordering::Relaxed);
        let (high, low) = permute(self.first_key, self.evaluation << 32 | (call & 0xFFFF_FFFF));
        let mut bytes = [0; 16];
        bytes[..8].copy_from_slice(&high.to_be_bytes());
        bytes[8..].copy_from_slice(&low.to_be_bytes());
        bytes
    }
}

/// A bijection of 128 bits that looks random: four Feistel rounds with SplitMix64's mixer.
fn permute(mut left: u64, mut right: u64) -> (u64, u64) {
    const ROUND_KEYS: [u64; 4] = [
        0x9E37_79B9_7F4A_7C15,
        0xD1B5_4A32_D192_ED03,
        0x8CB9_2BA7_2F3D_8DD7,
        0xC2B2_AE3D_27D4_EB4F,
    ];
    for round_key in ROUND_KEYS {
        (left, right) = (right, left ^ mix(right ^ round_key));
    }
    (left, right)
}

fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// What an evaluation's native functions share: the draws, and the first failed assertion.
pub(crate) struct Session {
    stream: Option<Arc<Stream>>,
    failed: Arc<OnceLock<String>>,
}

impl Session {
    /// For an expression that draws, a stream from `draws` (none where no command runs: a
    /// timer worked out at deploy; there `uuid()` gives null).
    pub(crate) fn new(draws: Option<&Draws>, draws_needed: bool) -> Session {
        Session {
            stream: draws
                .filter(|_| draws_needed)
                .map(|draws| Arc::new(draws.stream())),
            failed: Arc::new(OnceLock::new()),
        }
    }

    /// The cause of the first assertion that failed, if one did.
    pub(crate) fn failed_assertion(&self) -> Option<&str> {
        self.failed.get().map(String::as_str)
    }

    /// The function value to bind as `function.bound_as`.
    pub(crate) fn bind(&self, function: &NativeFunction) -> Value {
        let body: Box<dyn Fn(&Args) -> Value + Send + Sync> = match function.bound_as {
            "ringflow to json" => Box::new(|args| to_json(args.get(0))),
            "ringflow from json" => Box::new(|args| from_json(args.get(0))),
            "ringflow extract" => Box::new(|args| extract(args.get(0), args.get(1))),
            "ringflow uuid" => {
                let stream = self.stream.clone();
                Box::new(move |_| match &stream {
                    Some(stream) => Value::String(
                        uuid::Builder::from_random_bytes(stream.next())
                            .into_uuid()
                            .hyphenated()
                            .to_string(),
                    ),
                    None => null("uuid() gives no value where no command runs"),
                })
            }
            "ringflow to base64" => Box::new(|args| to_base64(args.get(0))),
            "ringflow duplicate values" => Box::new(|args| duplicate_values(args.get(0))),
            "ringflow partition" => Box::new(|args| partition(args.get(0), args.get(1))),
            "ringflow month end" => Box::new(|args| last_day_of_month(args.get(0))),
            "ringflow random number" => {
                let stream = self.stream.clone();
                Box::new(move |_| match &stream {
                    Some(stream) => random_number(stream.next()),
                    None => null("random number() gives no value where no command runs"),
                })
            }
            "ringflow assert" | "ringflow assert with cause" => {
                let failed = Arc::clone(&self.failed);
                Box::new(move |args| {
                    let cause = args.values.get(2);
                    assert(args.get(0), args.get(1), cause, &failed)
                })
            }
            "ringflow string join affixed" => {
                Box::new(|args| string_join(args.get(0), args.get(1), args.get(2), args.get(3)))
            }
            "ringflow get value" => Box::new(|args| get_value(args.get(0), args.get(1))),
            "ringflow instant" => Box::new(|args| instant(args.get(0))),
            "ringflow zoned date time" => Box::new(|args| date_and_time(args.get(0), args.get(1))),
            other => unreachable!("no native function is bound as `{other}`"),
        };
        let names: Vec<Name> = function
            .parameters
            .iter()
            .map(|parameter| Name::from(*parameter))
            .collect();
        let parameters = names
            .iter()
            .map(|name| (name.clone(), FeelType::Any))
            .collect();
        let evaluator: dsntk_feel::Evaluator = Box::new(move |scope: &FeelScope| {
            let values = names
                .iter()
                .map(|name| scope.get_value(name).unwrap_or(Value::Null(None)))
                .collect();
            body(&Args { values })
        });
        Value::FunctionDefinition(
            parameters,
            FunctionBody::LiteralExpression(Arc::new(evaluator)),
            false,
            Closure::default(),
            FeelContext::default(),
            FeelType::Any,
        )
    }
}

/// A function of no arguments that gives `value`: what a DMN decision's `now()` and
/// `today()` are bound to (see `decisions`), shadowing dsntk's, which read the machine's
/// clock.
pub(crate) fn constant(value: Value) -> Value {
    let evaluator: dsntk_feel::Evaluator = Box::new(move |_: &FeelScope| value.clone());
    Value::FunctionDefinition(
        Vec::new(),
        FunctionBody::LiteralExpression(Arc::new(evaluator)),
        false,
        Closure::default(),
        FeelContext::default(),
        FeelType::Any,
    )
}

/// A call's arguments, in the order of the function's parameters.
struct Args {
    values: Vec<Value>,
}

impl Args {
    fn get(&self, index: usize) -> &Value {
        &self.values[index]
    }
}

fn null(why: impl Into<String>) -> Value {
    Value::Null(Some(why.into()))
}

fn to_json(value: &Value) -> Value {
    match super::to_json(value) {
        Ok(json) => Value::String(json.to_string()),
        Err(what) => null(format!("to json: {what} has no JSON form")),
    }
}

fn from_json(value: &Value) -> Value {
    let Value::String(text) = value else {
        return null(format!(
            "from json: expected a string, got {}",
            value.type_of()
        ));
    };
    match serde_json::from_str::<serde_json::Value>(text) {
        Ok(json) => super::to_feel(&json),
        Err(error) => null(format!("from json: not JSON ({error})")),
    }
}

fn extract(text: &Value, pattern: &Value) -> Value {
    let (Value::String(text), Value::String(pattern)) = (text, pattern) else {
        return null("extract: expected a string and a pattern");
    };
    match regex::RegexBuilder::new(pattern)
        .size_limit(EXTRACT_PATTERN_BYTES_MAX)
        .build()
    {
        Ok(regex) => Value::List(
            regex
                .find_iter(text)
                .map(|found| Value::String(found.as_str().to_string()))
                .collect(),
        ),
        Err(error) => null(format!("extract: the pattern is not valid ({error})")),
    }
}

fn to_base64(value: &Value) -> Value {
    match value {
        Value::String(text) => {
            Value::String(base64::engine::general_purpose::STANDARD.encode(text.as_bytes()))
        }
        other => null(format!(
            "to base64: expected a string, got {}",
            other.type_of()
        )),
    }
}

/// The values that occur more than once, each once, in the order of their first occurrence.
fn duplicate_values(list: &Value) -> Value {
    let Value::List(items) = list else {
        return null(format!(
            "duplicate values: expected a list, got {}",
            list.type_of()
        ));
    };
    let mut duplicates: Vec<Value> = Vec::new();
    for (index, item) in items.iter().enumerate() {
        if !duplicates.contains(item) && items[index + 1..].contains(item) {
            duplicates.push(item.clone());
        }
    }
    Value::List(duplicates)
}

fn partition(list: &Value, size: &Value) -> Value {
    let Value::List(items) = list else {
        return null(format!(
            "partition: expected a list, got {}",
            list.type_of()
        ));
    };
    let size = match size {
        Value::Number(size) if size.is_integer() && size.is_positive() => {
            usize::try_from(*size).unwrap_or(usize::MAX)
        }
        other => {
            return null(format!(
                "partition: the size must be a whole number over 0, got {other}"
            ));
        }
    };
    Value::List(
        items
            .chunks(size)
            .map(|chunk| Value::List(chunk.to_vec()))
            .collect(),
    )
}

fn last_day_of_month(date: &Value) -> Value {
    let date = match date {
        Value::Date(date) => date.clone(),
        Value::DateTime(date_time) => date_time.date(),
        other => {
            return null(format!(
                "last day of month: expected a date or a date and time, got {}",
                other.type_of()
            ));
        }
    };
    (28..=31)
        .rev()
        .find_map(|day| FeelDate::new(date.year(), date.month(), day))
        .map(Value::Date)
        .unwrap_or_else(|| null("last day of month: no valid date"))
}

/// A number in [0, 1) with 15 decimal places.
fn random_number(bits: [u8; 16]) -> Value {
    const SCALE: u64 = 1_000_000_000_000_000;
    let drawn = u64::from_be_bytes(bits[..8].try_into().expect("8 bytes")) % SCALE;
    Value::Number(FeelNumber::new(
        i64::try_from(drawn).expect("under 10^15"),
        15,
    ))
}

fn assert(
    value: &Value,
    condition: &Value,
    cause: Option<&Value>,
    failed: &OnceLock<String>,
) -> Value {
    if *condition == Value::Boolean(true) {
        return value.clone();
    }
    let cause = match cause {
        Some(Value::String(cause)) => cause.clone(),
        _ => "The condition is not fulfilled".to_string(),
    };
    let _ = failed.set(cause.clone());
    null(cause)
}

fn string_join(list: &Value, delimiter: &Value, prefix: &Value, suffix: &Value) -> Value {
    let Value::List(items) = list else {
        return null(format!(
            "string join: expected a list, got {}",
            list.type_of()
        ));
    };
    let text = |value: &Value| match value {
        Value::String(text) => Some(text.clone()),
        _ => None,
    };
    let (Some(delimiter), Some(prefix), Some(suffix)) =
        (text(delimiter), text(prefix), text(suffix))
    else {
        return null("string join: the delimiter, prefix and suffix must be strings");
    };
    let mut parts = Vec::with_capacity(items.len());
    for item in items {
        match item {
            Value::String(part) => parts.push(part.as_str()),
            Value::Null(_) => {}
            other => {
                return null(format!(
                    "string join: the list holds {}, not only strings",
                    other.type_of()
                ));
            }
        }
    }
    Value::String(format!("{prefix}{}{suffix}", parts.join(&delimiter)))
}

/// `get value(context, key)` of DMN, and feel-scala's `get value(context, keys)`: the
/// entry at the path the keys make.
fn get_value(context: &Value, keys: &Value) -> Value {
    let Value::Context(context) = context else {
        return null(format!(
            "get value: expected a context, got {}",
            context.type_of()
        ));
    };
    let path: Vec<Name> = match keys {
        Value::String(key) => vec![Name::from(key.as_str())],
        Value::List(keys) if !keys.is_empty() => {
            let mut path = Vec::with_capacity(keys.len());
            for key in keys {
                match key {
                    Value::String(key) => path.push(Name::from(key.as_str())),
                    other => {
                        return null(format!(
                            "get value: the keys must be strings, got {}",
                            other.type_of()
                        ));
                    }
                }
            }
            path
        }
        other => {
            return null(format!(
                "get value: expected a key or a non-empty list of keys, got {other}"
            ));
        }
    };
    let mut at = context;
    let (last, inner) = path.split_last().expect("the path is not empty");
    for name in inner {
        match at.get_entry(name) {
            Some(Value::Context(inner)) => at = inner,
            _ => return Value::Null(None),
        }
    }
    at.get_entry(last).cloned().unwrap_or(Value::Null(None))
}

/// A comparison operand (see `ringflow_bpmn::instants`): a date-time with a zone as the same
/// instant in UTC, a time with an offset as the same time of day in UTC; anything else (a
/// date-time or time without a zone too) as it is.
fn instant(value: &Value) -> Value {
    match value {
        Value::DateTime(date_time)
            if !matches!(date_time.time().zone(), FeelZone::Utc | FeelZone::Local) =>
        {
            in_zone(date_time, "Z")
                .and_then(|text| FeelDateTime::try_from(text.as_str()).ok())
                .map_or_else(|| value.clone(), Value::DateTime)
        }
        Value::Time(time) => match time.zone() {
            FeelZone::Offset(offset) => {
                let seconds = (i64::from(time.hour()) * 3600
                    + i64::from(time.minute()) * 60
                    + i64::from(time.second())
                    - i64::from(*offset))
                .rem_euclid(86_400);
                FeelTime::zone_opt(
                    (seconds / 3600) as u8,
                    (seconds / 60 % 60) as u8,
                    (seconds % 60) as u8,
                    time.nanos(),
                    FeelZone::Utc,
                )
                .map_or_else(|| value.clone(), Value::Time)
            }
            _ => value.clone(),
        },
        other => other.clone(),
    }
}

/// DMN's `date and time(date, time)` (a date, or the date of a date and time, at a time),
/// and feel-scala's `date and time(date and time, timezone)`: the same instant on the clock
/// of `timezone` (`"Z"`, an offset such as `"+01:00"`, or an IANA region such as
/// `"Europe/Berlin"`). A date and time without a zone is taken as UTC (feel-scala takes the
/// server's zone; ringflow reads no clock setting of the machine).
fn date_and_time(date: &Value, second: &Value) -> Value {
    let timezone = match second {
        Value::Time(time) => {
            let date = match date {
                Value::Date(date) => date.clone(),
                Value::DateTime(date_time) => date_time.date(),
                other => {
                    return null(format!(
                        "date and time: expected a date or a date and time, got {}",
                        other.type_of()
                    ));
                }
            };
            return Value::DateTime(FeelDateTime::new(date, time.clone()));
        }
        Value::String(timezone) => timezone,
        other => {
            return null(format!(
                "date and time: expected a time or a timezone, got {}",
                other.type_of()
            ));
        }
    };
    let Value::DateTime(date_time) = date else {
        return null(format!(
            "date and time: expected a date and time to move to {timezone}, got {}",
            date.type_of()
        ));
    };
    match in_zone(date_time, timezone) {
        Some(text) => match FeelDateTime::try_from(text.as_str()) {
            Ok(moved) => Value::DateTime(moved),
            Err(_) => null(format!("date and time: {text} is not a date and time")),
        },
        None => null(format!(
            "date and time: cannot move {date_time} to the timezone `{timezone}`"
        )),
    }
}

/// `date_time` on the clock of `timezone`, as FEEL date and time text.
fn in_zone(date_time: &FeelDateTime, timezone: &str) -> Option<String> {
    use chrono::{FixedOffset, NaiveDate, TimeZone, Utc};
    let (year, month, day) = date_time.date().as_tuple();
    let time = date_time.time();
    let naive = NaiveDate::from_ymd_opt(year, month, day)?.and_hms_nano_opt(
        u32::from(time.hour()),
        u32::from(time.minute()),
        u32::from(time.second()),
        u32::try_from(time.nanos()).ok()?,
    )?;
    let instant = match time.zone() {
        FeelZone::Utc | FeelZone::Local => Utc.from_utc_datetime(&naive),
        FeelZone::Offset(seconds) => FixedOffset::east_opt(*seconds)?
            .from_local_datetime(&naive)
            .single()?
            .with_timezone(&Utc),
        FeelZone::Zone(name) => name
            .parse::<chrono_tz::Tz>()
            .ok()?
            .from_local_datetime(&naive)
            .earliest()?
            .with_timezone(&Utc),
    };
    const CLOCK: &str = "%Y-%m-%dT%H:%M:%S%.f";
    let timezone = timezone.trim();
    if timezone == "Z" || timezone == "UTC" {
        return Some(format!("{}Z", instant.format(CLOCK)));
    }
    if let Some(offset) = parse_offset(timezone) {
        let local = instant.with_timezone(&FixedOffset::east_opt(offset)?);
        return Some(format!("{}{timezone}", local.format(CLOCK)));
    }
    let zone = timezone.parse::<chrono_tz::Tz>().ok()?;
    Some(format!(
        "{}@{timezone}",
        instant.with_timezone(&zone).format(CLOCK)
    ))
}

/// `+hh:mm` or `-hh:mm`, in seconds east of UTC.
fn parse_offset(text: &str) -> Option<i32> {
    let (sign, rest) = match text.as_bytes().first()? {
        b'+' => (1, &text[1..]),
        b'-' => (-1, &text[1..]),
        _ => return None,
    };
    let (hours, minutes) = rest.split_once(':')?;
    if hours.len() != 2 || minutes.len() != 2 {
        return None;
    }
    let hours: i32 = hours.parse().ok()?;
    let minutes: i32 = minutes.parse().ok()?;
    (hours <= 18 && minutes < 60).then_some(sign * (hours * 3600 + minutes * 60))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every function the model crate lists has a body here (`bind` would panic on one
    /// without), with the parameters the list names.
    #[test]
    fn every_listed_function_is_bound() {
        let session = Session::new(None, false);
        for function in ringflow_bpmn::extensions::NATIVE_FUNCTIONS {
            match session.bind(function) {
                Value::FunctionDefinition(parameters, ..) => {
                    let names: Vec<String> = parameters
                        .iter()
                        .map(|(name, _)| name.to_string())
                        .collect();
                    assert_eq!(names, function.parameters, "{}", function.bound_as);
                }
                other => panic!("{} bound as {other:?}", function.bound_as),
            }
        }
    }

    /// Every native function, on arguments of every type (and odd values of each), gives a
    /// value that can be stored, without a panic: the wrong type gives null.
    #[test]
    fn any_arguments_give_a_storable_value() {
        let values: Vec<Value> = [
            "null",
            "true",
            "0",
            "-1",
            "2.5",
            "1e30",
            "\"\"",
            "\"x\"",
            "\"(\"",
            "\"12[0-9]*\"",
            "\"Europe/Berlin\"",
            "\"+01:00\"",
            "\"+99:99\"",
            "\"Z\"",
            "\"{\\\"a\\\": [1]}\"",
            "[]",
            "[1, 1, \"a\", null, [2]]",
            "[\"a\", \"b\"]",
            "{\"a\": {\"b\": 1}}",
        ]
        .iter()
        .map(|json| super::super::to_feel(&serde_json::from_str(json).expect("JSON")))
        .chain(
            [
                "date(\"2024-02-29\")",
                "date and time(\"2020-07-31T14:27:30@Europe/Berlin\")",
                "date and time(\"2020-07-31T14:27:30.5+02:00\")",
                "date and time(\"2020-07-31T14:27:30\")",
                "time(\"10:00:00+01:00\")",
                "time(\"23:59:59-11:00\")",
                "duration(\"P1D\")",
                "duration(\"P1Y\")",
            ]
            .iter()
            .map(|source| {
                let expression = ringflow_bpmn::FeelExpression::parse(source).expect("FEEL");
                let evaluator = dsntk_feel_evaluator::prepare(expression.ast());
                evaluator(&FeelScope::default())
            }),
        )
        .collect();
        // The temporal values were made (a null there would test nothing new).
        assert!(
            values[values.len() - 8..]
                .iter()
                .all(|value| !matches!(value, Value::Null(_))),
            "{:?}",
            &values[values.len() - 8..]
        );
        let storable = |name: &str, result: Value| {
            assert!(
                super::super::to_json(&result).is_ok(),
                "{name} gave {result:?}, which cannot be stored"
            );
        };
        let failed = OnceLock::new();
        let mut seed = 0x2545_F491_4F6C_DD1D_u64;
        let mut pick = || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            &values[(seed % values.len() as u64) as usize]
        };
        for a in &values {
            storable("to json", to_json(a));
            storable("from json", from_json(a));
            storable("to base64", to_base64(a));
            storable("duplicate values", duplicate_values(a));
            storable("last day of month", last_day_of_month(a));
            storable("instant", instant(a));
            storable("random number", random_number([0xFF; 16]));
            for b in &values {
                storable("extract", extract(a, b));
                storable("partition", partition(a, b));
                storable("date and time", date_and_time(a, b));
                storable("get value", get_value(a, b));
                storable("assert", assert(a, b, Some(a), &failed));
            }
        }
        for _ in 0..20_000 {
            let (a, b, c, d) = (
                pick().clone(),
                pick().clone(),
                pick().clone(),
                pick().clone(),
            );
            storable("string join", string_join(&a, &b, &c, &d));
        }
    }

    #[test]
    fn the_permutation_is_one_to_one_on_a_sample() {
        let mut seen = std::collections::BTreeSet::new();
        for key in 0..64_u64 {
            for counter in 0..64_u64 {
                assert!(seen.insert(permute(key, counter)), "({key}, {counter})");
            }
        }
        // The inverse exists: run the rounds backwards.
        let (left, right) = permute(7, 9);
        let (mut a, mut b) = (left, right);
        for round_key in [
            0xC2B2_AE3D_27D4_EB4F_u64,
            0x8CB9_2BA7_2F3D_8DD7,
            0xD1B5_4A32_D192_ED03,
            0x9E37_79B9_7F4A_7C15,
        ] {
            (a, b) = (b ^ mix(a ^ round_key), a);
        }
        assert_eq!((a, b), (7, 9));
    }
}
