//! FEEL evaluation against JSON variables, with the clock taken from the command.
//!
//! Values cross between JSON (how variables are stored) and dsntk's FEEL values at this one
//! boundary. The parser (in `ringflow-bpmn`) turned `now()` and `today()` into reads of two
//! reserved names; they are bound here to the command's time, so evaluation is a pure
//! function of the variables and `Ctx::now_millis`.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::str::FromStr;

use dsntk_feel::context::FeelContext;
use dsntk_feel::values::Value;
use dsntk_feel::{FeelNumber, FeelScope, Name};
use ringflow_bpmn::FeelExpression;
use ringflow_bpmn::expression::{CLOCK_NOW, CLOCK_TODAY};
use serde_json::Value as Json;

use crate::engine::Variables;

mod natives;

pub(crate) use natives::Draws;

/// What an evaluation takes from outside its variables.
#[derive(Clone, Copy)]
pub(crate) struct Inputs<'a> {
    /// The command's time, for `now()` and `today()`.
    pub now_millis: i64,
    /// Where `uuid()` and `random number()` draw from: the running command's. `None` where no
    /// command runs (a start timer worked out at deploy), where they give null.
    pub draws: Option<&'a Draws>,
}

impl Inputs<'static> {
    /// The time only: no draws.
    pub(crate) fn at(now_millis: i64) -> Inputs<'static> {
        Inputs {
            now_millis,
            draws: None,
        }
    }
}

/// The result of an evaluation: as in Camunda 8, a missing variable or a failing operation
/// gives `null`, and `why_null` keeps the reason for the message of an incident it may cause.
#[derive(Debug)]
pub(crate) struct Evaluated {
    pub value: Json,
    pub why_null: Option<String>,
}

/// Evaluates `expression` with `variables` in scope, with `inputs` for the clock and the
/// draws. An error is a result that cannot be stored as JSON, a failed `assert`, or a
/// failure inside the evaluator.
pub(crate) fn evaluate(
    expression: &FeelExpression,
    variables: &Variables,
    inputs: Inputs<'_>,
) -> Result<Evaluated, String> {
    evaluate_with(expression, |name| variables.get(name), inputs)
}

/// [`evaluate`] with the variables looked up by name (innermost scope first, say), so that
/// no document is copied. Only the names the expression mentions are looked up and
/// converted to FEEL values (a variable it does not name cannot change its value), and the
/// clock is bound only for an expression that calls `now()` or `today()`, and feel-scala's
/// built-ins that the engine evaluates (see `natives`) only for one that calls them.
pub(crate) fn evaluate_with<'v>(
    expression: &FeelExpression,
    lookup: impl Fn(&str) -> Option<&'v Json>,
    inputs: Inputs<'_>,
) -> Result<Evaluated, String> {
    let mut context = FeelContext::default();
    for name in expression.mentioned() {
        if let Some(value) = lookup(name) {
            context.set_entry(&Name::from(&**name), to_feel(value));
        }
    }
    if expression.reads_clock() {
        let (date, time) = utc(inputs.now_millis);
        context.set_entry(
            &Name::from(CLOCK_NOW),
            Value::String(format!("{date}T{time}Z")),
        );
        context.set_entry(&Name::from(CLOCK_TODAY), Value::String(date));
    }
    let session = expression
        .calls_native_functions()
        .then(|| natives::Session::new(inputs.draws, expression.draws()));
    if let Some(session) = &session {
        for function in expression.native_functions() {
            context.set_entry(&Name::from(function.bound_as), session.bind(function));
        }
    }
    let scope = FeelScope::from(context);
    // Third-party code on user data: a panic becomes an error, never a crashed shard.
    // The evaluator is built from the syntax tree once per deployed expression and cached
    // on it; each evaluation only runs it.
    let value = catch_unwind(AssertUnwindSafe(|| {
        let evaluator = expression
            .compiled(dsntk_feel_evaluator::prepare)
            .expect("only the engine fills the cache, always with an Evaluator");
        evaluator(&scope)
    }))
    .map_err(|_| {
        format!(
            "evaluating `{}` failed inside the FEEL evaluator",
            expression.source()
        )
    })?;
    if let Some(cause) = session
        .as_ref()
        .and_then(natives::Session::failed_assertion)
    {
        // feel-scala fails the whole evaluation, wherever the assertion sits.
        return Err(format!(
            "`{}` failed an assertion: {cause}",
            expression.source()
        ));
    }
    match value {
        Value::Null(reason) => Ok(Evaluated {
            value: Json::Null,
            why_null: reason,
        }),
        other => to_json(&other)
            .map(|value| Evaluated {
                value,
                why_null: None,
            })
            .map_err(|what| {
                format!(
                    "`{}` gave {what}, which cannot be stored",
                    expression.source()
                )
            }),
    }
}

/// Evaluates a condition, the variables looked up by name (see [`evaluate_with`]): it must
/// give a boolean.
pub(crate) fn condition_with<'v>(
    expression: &FeelExpression,
    lookup: impl Fn(&str) -> Option<&'v Json>,
    inputs: Inputs<'_>,
) -> Result<bool, String> {
    let evaluated = evaluate_with(expression, lookup, inputs)?;
    match evaluated.value {
        Json::Bool(value) => Ok(value),
        other => {
            let why = evaluated
                .why_null
                .map(|why| format!(" ({why})"))
                .unwrap_or_default();
            Err(format!(
                "the condition `{}` gave {other}, not a boolean{why}",
                expression.source()
            ))
        }
    }
}

pub(crate) fn to_feel(value: &Json) -> Value {
    match value {
        Json::Null => Value::Null(None),
        Json::Bool(value) => Value::Boolean(*value),
        Json::Number(number) => match FeelNumber::from_str(&number.to_string()) {
            Ok(number) => Value::Number(number),
            Err(_) => Value::Null(Some(format!("the number {number} is out of FEEL's range"))),
        },
        Json::String(text) => Value::String(text.clone()),
        Json::Array(items) => Value::List(items.iter().map(to_feel).collect()),
        Json::Object(map) => {
            let mut context = FeelContext::default();
            for (name, value) in map {
                context.set_entry(&Name::from(name.as_str()), to_feel(value));
            }
            Value::Context(context)
        }
    }
}

pub(crate) fn to_json(value: &Value) -> Result<Json, String> {
    Ok(match value {
        Value::Null(_) => Json::Null,
        Value::Boolean(value) => Json::Bool(*value),
        Value::Number(number) => {
            let text = number.to_string();
            match serde_json::from_str::<serde_json::Number>(&text) {
                Ok(number) => Json::Number(number),
                Err(_) => return Err(format!("the number {text}")),
            }
        }
        Value::String(text) => Json::String(text.clone()),
        Value::List(items) => Json::Array(items.iter().map(to_json).collect::<Result<_, _>>()?),
        Value::Context(context) => {
            let mut map = Variables::new();
            for (name, value) in context.iter() {
                map.insert(name.to_string(), to_json(value)?);
            }
            Json::Object(map)
        }
        Value::Date(date) => Json::String(date.to_string()),
        Value::DateTime(date_time) => Json::String(date_time.to_string()),
        Value::Time(time) => Json::String(time.to_string()),
        Value::DaysAndTimeDuration(duration) => Json::String(duration.to_string()),
        Value::YearsAndMonthsDuration(duration) => Json::String(duration.to_string()),
        other => return Err(format!("a value of type {}", other.type_of())),
    })
}

/// Binds `now` and `today` in `context` to functions that give the instant `now_millis` (as a
/// UTC date and time) and its date, unless a variable of that name is there: dsntk's own
/// read the machine's clock, which a replay would read again at another time.
pub(crate) fn bind_clock_functions(context: &mut FeelContext, now_millis: i64) {
    let (date, time) = utc(now_millis);
    let now = dsntk_feel_temporal::FeelDateTime::try_from(format!("{date}T{time}Z").as_str())
        .map(Value::DateTime);
    let today = dsntk_feel_temporal::FeelDate::from_str(&date).map(Value::Date);
    for (name, value) in [("now", now), ("today", today)] {
        let name = Name::from(name);
        if let (false, Ok(value)) = (context.contains_entry(&name), value) {
            context.set_entry(&name, natives::constant(value));
        }
    }
}

/// The UTC date (`YYYY-MM-DD`) and time (`hh:mm:ss.fff`) of an instant.
fn utc(millis: i64) -> (String, String) {
    let days = millis.div_euclid(86_400_000);
    let of_day = millis.rem_euclid(86_400_000);
    let (year, month, day) = ringflow_bpmn::timer::civil_from_days(days);
    let date = format!("{year:04}-{month:02}-{day:02}");
    let time = format!(
        "{:02}:{:02}:{:02}.{:03}",
        of_day / 3_600_000,
        of_day / 60_000 % 60,
        of_day / 1_000 % 60,
        of_day % 1_000
    );
    (date, time)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::key::Key;

    fn feel(source: &str) -> FeelExpression {
        FeelExpression::parse(source).expect("valid FEEL")
    }

    fn vars(json: &str) -> Variables {
        match serde_json::from_str(json).expect("JSON") {
            Json::Object(map) => map,
            _ => panic!("not an object"),
        }
    }

    /// Camunda 8.8's `fromAi(value, description, type, ...)` gives its first argument.
    #[test]
    fn from_ai_gives_its_first_argument() {
        let variables = vars(r#"{"toolCall": {"customerId": "c-7", "n": 2}, "x": 5}"#);
        let value = |source: &str| {
            evaluate(&feel(source), &variables, Inputs::at(0))
                .expect("evaluates")
                .value
        };
        assert_eq!(
            value(r#"fromAi(toolCall.customerId, "The customer's id, as in \"c-1\"", "string")"#),
            Json::from("c-7")
        );
        assert_eq!(value("fromAi(x)"), Json::from(5));
        assert_eq!(
            value(r#"fromAi(toolCall.n, "a count (1, 2, ...)", "number", {"minimum": 1}) * 10"#),
            Json::from(20)
        );
        assert_eq!(
            value(r#"{a: fromAi(x, "first"), b: fromAi (toolCall.n , "second")}"#),
            serde_json::json!({"a": 5, "b": 2})
        );
        assert_eq!(
            value(r#"fromAi(fromAi(x, "inner"), "outer")"#),
            Json::from(5)
        );
        assert_eq!(value("fromAi(x /* a, b */, \"d\")"), Json::from(5));
        // A description may span lines, as a multi-line prompt does.
        assert_eq!(
            value("fromAi(x, \"first line\nsecond line\") + 1"),
            Json::from(6)
        );
        assert_eq!(
            value("\"You are an assistant.\r\nUse the 'tools'.\""),
            Json::from("You are an assistant.\r\nUse the 'tools'.")
        );
        // Named arguments, in any order.
        assert_eq!(
            value(r#"fromAi(description: "d", value: toolCall.customerId, type: "string")"#),
            Json::from("c-7")
        );
        assert_eq!(value("fromAi(value: x) + 1"), Json::from(6));
        // Only calls: the text inside strings stays.
        assert_eq!(value(r#""fromAi(x, 1)""#), Json::from("fromAi(x, 1)"));
        assert!(
            !feel("fromAi(x, \"d\")")
                .names()
                .contains(&"fromAi".to_string())
        );
        // A call that does not close is still an error at parse.
        assert!(FeelExpression::parse("fromAi(x, \"d\"").is_err());
    }

    /// feel-scala's `trim`, `is blank`, `is empty`, `is defined` and `get or else`, which
    /// DMN FEEL lacks, give what they give in Camunda 8.
    #[test]
    fn camunda_built_ins_beyond_dmn_evaluate() {
        let variables = vars(
            r#"{"padded": " \t a b \n", "blank": "  ", "empty": "", "items": [], "some": [1],
                "none": null, "zero": 0}"#,
        );
        let value = |source: &str| {
            evaluate(&feel(source), &variables, Inputs::at(0))
                .expect("evaluates")
                .value
        };
        assert_eq!(value("trim(padded)"), Json::from("a b"));
        assert_eq!(
            value("lower case(trim(\" CLEAR \")) = \"clear\""),
            Json::from(true)
        );
        assert_eq!(value("is blank(blank)"), Json::from(true));
        assert_eq!(value("is blank(empty)"), Json::from(true));
        assert_eq!(value("is blank(padded)"), Json::from(false));
        assert_eq!(value("is empty(items)"), Json::from(true));
        assert_eq!(value("is empty(some)"), Json::from(false));
        assert_eq!(value("is defined(zero)"), Json::from(true));
        assert_eq!(value("is defined(none)"), Json::from(false));
        assert_eq!(value("is defined(missing)"), Json::from(false));
        assert_eq!(value("get or else(none, \"d\")"), Json::from("d"));
        assert_eq!(value("get or else(missing, 5) + 1"), Json::from(6));
        assert_eq!(value("get or else(zero, 5)"), Json::from(0));
        // feel-scala's number() of one or two arguments (DMN's takes three).
        assert_eq!(value("number(\"1.5\") + 1"), Json::from(2.5));
        assert_eq!(value("number(\"1,500\", \",\")"), Json::from(1500));
        assert_eq!(value("number(from: \"-12\")"), Json::from(-12));
        assert_eq!(value("number(\"abc\")"), Json::Null);
        assert_eq!(value("trim(string: padded)"), Json::from("a b"));
        assert_eq!(value("get or else(default: 1, value: none)"), Json::from(1));
    }

    /// feel-scala's built-ins that DMN FEEL cannot say, which the engine evaluates itself,
    /// give what Camunda 8's documentation says they give.
    #[test]
    fn feel_scala_built_ins_the_engine_evaluates() {
        let variables = vars(
            r#"{"order": {"id": 7, "lines": [1, 2]}, "text": "{\"a\": [1, true, null]}",
                "refs": "references are 1234, 1256, 1378", "x": 4, "c": {"y": {"z": 0}}}"#,
        );
        let value = |source: &str| {
            evaluate(&feel(source), &variables, Inputs::at(0))
                .expect("evaluates")
                .value
        };
        let json = |text: &str| serde_json::from_str::<Json>(text).expect("JSON");
        assert_eq!(
            value("to json(order)"),
            Json::from(r#"{"id":7,"lines":[1,2]}"#)
        );
        assert_eq!(value("to json(true)"), Json::from("true"));
        assert_eq!(value("to json(\"a\")"), Json::from(r#""a""#));
        assert_eq!(
            value("to json(@\"2023-06-14\")"),
            Json::from(r#""2023-06-14""#)
        );
        assert_eq!(value("from json(text)"), json(r#"{"a": [1, true, null]}"#));
        assert_eq!(value("from json(\"2.5\") * 2"), json("5"));
        assert_eq!(value("from json(to json(order)) = order"), Json::from(true));
        assert_eq!(value("from json(\"{nope\")"), Json::Null);
        assert_eq!(
            value("extract(refs, \"12[0-9]*\")"),
            json(r#"["1234", "1256"]"#)
        );
        assert_eq!(value("extract(\"abc\", \"x\")"), json("[]"));
        assert_eq!(value("extract(\"abc\", \"(\")"), Json::Null);
        assert_eq!(value("to base64(\"FEEL\")"), Json::from("RkVFTA=="));
        assert_eq!(value("duplicate values([1,2,3,2,1])"), json("[1, 2]"));
        assert_eq!(value("duplicate values([\"a\", \"b\"])"), json("[]"));
        assert_eq!(
            value("partition([1,2,3,4,5], 2)"),
            json("[[1, 2], [3, 4], [5]]")
        );
        assert_eq!(value("partition([], 2)"), json("[]"));
        assert_eq!(value("partition([1,2], 0)"), Json::Null);
        assert_eq!(
            value("partition(list: [1,2,3], size: 2)"),
            json("[[1, 2], [3]]")
        );
        assert_eq!(
            value("last day of month(date(\"2022-10-01\"))"),
            Json::from("2022-10-31")
        );
        assert_eq!(
            value("last day of month(date(\"2024-02-10\"))"),
            Json::from("2024-02-29")
        );
        assert_eq!(
            value("last day of month(date and time(\"2023-02-16T12:00:00\"))"),
            Json::from("2023-02-28")
        );
        assert_eq!(value("assert(x, x > 3)"), json("4"));
        assert_eq!(value("assert(x, x > 3, \"too small\") + 1"), json("5"));
        assert_eq!(
            value("string join([\"a\",\"b\",\"c\"], \", \", \"[\", \"]\")"),
            Json::from("[a, b, c]")
        );
        assert_eq!(
            value("string join([\"a\",null,\"c\"], \"-\", \"<\", \">\")"),
            Json::from("<a-c>")
        );
        assert_eq!(
            value("string join([\"a\",\"b\"], \", \")"),
            Json::from("a, b")
        );
        assert_eq!(value("get value(c, [\"y\", \"z\"])"), json("0"));
        assert_eq!(value("get value(c, [\"y\"])"), json(r#"{"z": 0}"#));
        assert_eq!(value("get value(c, [\"z\"])"), Json::Null);
        assert_eq!(value("get value(c, \"y\")"), json(r#"{"z": 0}"#));
        assert_eq!(value("get value(c, [])"), Json::Null);
        // feel-scala's date and time(value, timezone); DMN's date and time(date, time) still.
        assert_eq!(
            value(r#"date and time(@"2020-07-31T14:27:30@Europe/Berlin", "America/Los_Angeles")"#),
            Json::from("2020-07-31T05:27:30@America/Los_Angeles")
        );
        assert_eq!(
            value(r#"date and time(@"2020-07-31T14:27:30+02:00", "Z")"#),
            Json::from("2020-07-31T12:27:30Z")
        );
        assert_eq!(
            value(r#"date and time(@"2020-07-31T23:30:00Z", "+01:30")"#),
            Json::from("2020-08-01T01:00:00+01:30")
        );
        assert_eq!(
            value(r#"date and time(@"2020-07-31T14:27:30.5", "Z")"#),
            Json::from("2020-07-31T14:27:30.5Z")
        );
        assert_eq!(
            value(r#"date and time(date("2012-12-24"), time("23:59:00"))"#),
            Json::from("2012-12-24T23:59:00")
        );
        assert_eq!(
            value(r#"date and time(date and time("2012-12-25T11:00:00"), time("23:59:00Z"))"#),
            Json::from("2012-12-25T23:59:00Z")
        );
        assert_eq!(
            value(r#"date and time(@"2020-07-31T14:27:30Z", "Mars/Olympus")"#),
            Json::Null
        );
        assert_eq!(
            value(
                r#"date and time(@"2020-07-31T14:27:30Z", "America/New_York") < @"2020-07-31T14:27:31Z""#
            ),
            Json::from(true)
        );
        // Without a command (a start timer worked out at deploy) nothing is drawn.
        assert_eq!(value("uuid()"), Json::Null);
    }

    /// Date-times are ordered by the instant they name, whatever their zones (dsntk alone
    /// found neither `<` nor `>` between UTC and an offset).
    #[test]
    fn date_times_in_other_zones_compare_by_instant() {
        let variables = vars(r#"{"deadline": "2020-07-31T07:00:00+01:00", "n": 5}"#);
        let value = |source: &str| {
            evaluate(&feel(source), &variables, Inputs::at(1_700_000_000_000))
                .expect("evaluates")
                .value
        };
        for (source, expected) in [
            (
                r#"@"2020-08-01T01:00:00+02:00" < @"2020-07-31T23:30:00Z""#,
                true,
            ),
            (
                r#"@"2020-08-01T01:00:00+02:00" > @"2020-07-31T23:30:00Z""#,
                false,
            ),
            (
                r#"@"2020-07-31T10:00:00@Europe/Berlin" > @"2020-07-31T07:00:00Z""#,
                true,
            ),
            (
                r#"@"2020-07-31T10:00:00@Europe/Berlin" <= @"2020-07-31T08:00:00Z""#,
                true,
            ),
            ("now() > date and time(deadline)", true),
            ("now() < date and time(deadline)", false),
            (
                r#"date and time(deadline) >= @"2020-07-31T06:00:00Z""#,
                true,
            ),
            (
                r#"date and time(deadline) between @"2020-07-31T05:59:00Z" and @"2020-07-31T06:01:00-00:00""#,
                true,
            ),
            (
                r#"date and time(deadline) in [@"2020-07-31T06:00:00Z"..@"2020-07-31T09:00:00+02:00"]"#,
                true,
            ),
            (
                r#"date and time(deadline) in (@"2020-07-31T06:00:00Z"..@"2020-07-31T09:00:00+02:00"]"#,
                false,
            ),
            (r#"@"10:00:00+01:00" > @"09:30:00Z""#, false),
            (r#"@"10:00:00+01:00" < @"09:30:00Z""#, true),
            (r#"date and time(deadline) = @"2020-07-31T06:00:00Z""#, true),
            // Values keep their zones; numbers and strings compare as before.
            ("n > 3 and \"b\" > \"a\"", true),
        ] {
            assert_eq!(value(source), Json::from(expected), "{source}");
        }
        assert_eq!(
            value(
                r#"if @"2020-08-01T01:00:00+02:00" < @"2020-07-31T23:30:00Z" then date and time(deadline) else null"#
            ),
            Json::from("2020-07-31T07:00:00+01:00")
        );
        assert!(
            !feel("n > 3").calls_native_functions(),
            "an expression that makes no date-time is left as parsed"
        );
    }

    /// A failed assertion fails the evaluation, wherever it sits, with its cause.
    #[test]
    fn a_failed_assertion_fails_the_evaluation() {
        let variables = vars(r#"{"x": 4}"#);
        let error = |source: &str| {
            evaluate(&feel(source), &variables, Inputs::at(0)).expect_err("an assertion fails")
        };
        assert!(error("assert(x, x > 5)").contains("The condition is not fulfilled"));
        assert!(
            error("assert(missing, missing != null, \"'missing' is required\")")
                .contains("'missing' is required")
        );
        let nested = error("list contains(assert([1], x < 0, \"negative only\"), 1) or true");
        assert!(nested.contains("negative only"), "{nested}");
    }

    /// `uuid()` and `random number()` are a function of the command's first key and the
    /// order of the draws: the same on replay, different for every draw.
    #[test]
    fn draws_are_fixed_by_the_command_and_never_repeat() {
        let draw = |first_key: Key, source: &str, evaluations: usize| {
            let draws = Draws::default();
            draws.start(first_key);
            let inputs = Inputs {
                now_millis: 0,
                draws: Some(&draws),
            };
            let values: Vec<Json> = (0..evaluations)
                .map(|_| {
                    evaluate(&feel(source), &Variables::new(), inputs)
                        .expect("evaluates")
                        .value
                })
                .collect();
            assert!(draws.drawn());
            values
        };
        let first = draw(Key::new(1, 10), "[uuid(), uuid(), random number()]", 50);
        assert_eq!(
            first,
            draw(Key::new(1, 10), "[uuid(), uuid(), random number()]", 50)
        );
        let other = draw(Key::new(1, 11), "[uuid(), uuid(), random number()]", 50);
        let mut uuids = std::collections::BTreeSet::new();
        for triple in first.iter().chain(&other) {
            let items = triple.as_array().expect("a list");
            for uuid in &items[..2] {
                let text = uuid.as_str().expect("a string");
                assert_eq!(text.len(), 36);
                assert_eq!(&text[14..15], "4", "version 4: {text}");
                assert!(uuids.insert(text.to_string()), "{text} twice");
            }
            let number = items[2].as_f64().expect("a number");
            assert!((0.0..1.0).contains(&number), "{number}");
        }
        let draws = Draws::default();
        draws.start(Key::new(1, 12));
        evaluate(
            &feel("x + 1"),
            &vars(r#"{"x": 1}"#),
            Inputs {
                now_millis: 0,
                draws: Some(&draws),
            },
        )
        .expect("evaluates");
        assert!(!draws.drawn(), "an expression without draws draws nothing");
    }

    #[test]
    fn arithmetic_paths_and_lists_over_json() {
        let variables = vars(r#"{"order": {"total": 120.5, "items": [1, 2, 3]}, "name": "Ann"}"#);
        let value = |source| {
            evaluate(&feel(source), &variables, Inputs::at(0))
                .expect("evaluates")
                .value
        };
        assert_eq!(value("order.total > 100"), Json::Bool(true));
        assert_eq!(value("count(order.items)"), serde_json::json!(3));
        assert_eq!(value("order.items[item > 1]"), serde_json::json!([2, 3]));
        assert_eq!(value("\"Hi \" + name"), Json::String("Hi Ann".to_string()));
        assert_eq!(
            value("{a: 1, b: [true, null]}"),
            serde_json::json!({"a": 1, "b": [true, null]})
        );
        assert_eq!(value("missing"), Json::Null);
    }

    #[test]
    fn the_clock_is_the_command_time() {
        let at = 1_767_225_600_000 + 3_723_004; // 2026-01-01T01:02:03.004Z
        let variables = Variables::new();
        let value = |source| {
            evaluate(&feel(source), &variables, Inputs::at(at))
                .expect("evaluates")
                .value
        };
        let today = value("string(today())");
        assert_eq!(today, Json::String("2026-01-01".to_string()));
        assert_eq!(value("now().year"), serde_json::json!(2026));
        assert_eq!(value("now().second"), serde_json::json!(3));
    }

    #[test]
    fn only_the_names_an_expression_mentions_are_looked_up() {
        let variables = vars(r#"{"x": 5, "payload": "big", "other": [1, 2]}"#);
        let asked = std::cell::RefCell::new(Vec::new());
        let lookup = |name: &str| {
            asked.borrow_mut().push(name.to_string());
            variables.get(name)
        };
        let evaluated = evaluate_with(
            &feel("if list = null then x * 2 else 0"),
            lookup,
            Inputs::at(0),
        )
        .expect("ok");
        assert_eq!(evaluated.value, serde_json::json!(10));
        let mut asked = asked.into_inner();
        asked.sort();
        assert_eq!(asked, ["list", "x"], "`payload` and `other` are never read");
        let evaluated =
            evaluate_with(&feel("x * 2"), |name| variables.get(name), Inputs::at(0)).expect("ok");
        assert_eq!(evaluated.value, serde_json::json!(10));
    }

    #[test]
    fn conditions_must_be_booleans() {
        let variables = vars(r#"{"x": 5}"#);
        assert_eq!(
            condition_with(&feel("x > 3"), |n| variables.get(n), Inputs::at(0)),
            Ok(true)
        );
        let error = condition_with(&feel("x + 1"), |n| variables.get(n), Inputs::at(0))
            .expect_err("a number");
        assert!(error.contains("not a boolean"), "{error}");
        let error = condition_with(&feel("y > 1"), |n| variables.get(n), Inputs::at(0))
            .expect_err("y is missing");
        assert!(error.contains("gave null"), "{error}");
    }

    #[test]
    fn utc_dates() {
        assert_eq!(
            utc(0),
            ("1970-01-01".to_string(), "00:00:00.000".to_string())
        );
        assert_eq!(utc(951_868_800_500).0, "2000-03-01");
        assert_eq!(utc(-1).0, "1969-12-31");
    }
}

/// The variable an expression names when it is nothing but a variable or a path in one
/// (`result`, `result.text`): what Camunda creates as `null` in each inner instance.
pub(crate) fn plain_reference(source: &str) -> Option<&str> {
    let source = source.trim();
    let root = source.split('.').next()?;
    let word = |part: &str| {
        part.chars()
            .next()
            .is_some_and(|first| first.is_alphabetic() || first == '_')
            && part.chars().all(|c| c.is_alphanumeric() || c == '_')
    };
    let keyword = matches!(
        root,
        "true" | "false" | "null" | "not" | "if" | "for" | "some" | "every"
    );
    (!keyword && source.split('.').all(word)).then_some(root)
}

#[cfg(test)]
mod reference_tests {
    use super::plain_reference;

    #[test]
    fn only_a_variable_or_a_path_in_one_is_a_plain_reference() {
        assert_eq!(plain_reference("result"), Some("result"));
        assert_eq!(plain_reference(" result.text "), Some("result"));
        assert_eq!(plain_reference("_x1.y_2"), Some("_x1"));
        for other in [
            "",
            "result + 1",
            "{a: result}",
            "result[1]",
            "null",
            "true",
            "1abc",
            "a..b",
            "\"text\"",
            "f(x)",
        ] {
            assert_eq!(plain_reference(other), None, "{other:?}");
        }
    }
}
