//! Camunda 8.8's `fromAi(value, description, type, schema, options)`.
//!
//! In the activities of an ad-hoc subprocess, an input mapping such as
//! `= fromAi(toolCall.customerId, "The customer's id", "string")` marks an input of a tool
//! that an AI agent fills. Two things follow from it:
//!
//! - **Evaluated**, the call gives its `value` (the first argument, or the one named
//!   `value:`); the others only describe the parameter. The model compiler rewrites each call
//!   to `(value)` before the expression is parsed, so the evaluator needs no function of
//!   that name. A call with no value, more than five arguments or an argument name that is
//!   not one of the five is refused when the model is deployed.
//! - **Described**, it is a *tool parameter* ([`ToolParameter`]): the model compiler reads the
//!   calls in the input mappings of each element an ad-hoc subprocess can activate, and the
//!   engine lists them as `parameters` in `adHocSubProcessElements`, as Camunda does. There
//!   the value must be a reference (`toolCall.customerId`: the parameter's name is the whole
//!   path, as in Camunda), the description and the type string literals, and the schema and
//!   the options contexts of literals (`null` for any of these four: not given). Anything
//!   else is refused at deploy, naming the element; outside ad-hoc subprocesses nothing is
//!   read from the calls.
//!
//! Strings, comments and backtick names are skipped when calls are looked for, and so is a
//! member access (`x.fromAi(...)`). The arguments of a call are not searched for more calls
//! to describe (Camunda does not either), but they are rewritten for evaluation.

use std::borrow::Cow;

use dsntk_feel_parser::AstNode;

use crate::expression::{FeelExpression, is_name_part, is_name_start, string_literal_end};

/// The function's name, as Camunda spells it (FEEL names are case-sensitive).
pub const FUNCTION: &str = "fromAi";

/// The parameters of `fromAi`, in order.
const PARAMETERS: [&str; 5] = ["value", "description", "type", "schema", "options"];

/// One input of an ad-hoc subprocess's activity that an AI agent fills: one `fromAi(...)`
/// call in its input mappings (Camunda's `AdHocActivityParameter`).
#[derive(Clone, Debug, PartialEq)]
pub struct ToolParameter {
    /// The reference the value reads, its segments joined by dots (`toolCall.customerId`).
    pub name: String,
    /// The description, a string literal.
    pub description: Option<String>,
    /// The type (`"string"`, `"number"`, `"array"`, ...), a string literal.
    pub type_name: Option<String>,
    /// A JSON schema for the value, from a context of literals.
    pub schema: Option<serde_json::Map<String, serde_json::Value>>,
    /// Options (`{ required: false }`), from a context of literals.
    pub options: Option<serde_json::Map<String, serde_json::Value>>,
}

/// One call found in FEEL source: which of the names looked for it calls, where it starts
/// (at the name), where its `(` is, where it ends (after its `)`), and its arguments' text,
/// split at the commas between them.
pub(crate) struct Call<'s> {
    pub(crate) name: usize,
    pub(crate) start: usize,
    pub(crate) open: usize,
    pub(crate) end: usize,
    pub(crate) arguments: Vec<&'s str>,
}

/// The outermost calls in `source` of the functions `names` (a name may be several words,
/// `get or else`), in order. Strings, comments, backtick names and member access
/// (`x.name(...)`) are skipped; a call whose parentheses do not close is not one (the parser
/// refuses it later).
pub(crate) fn calls_of<'s>(source: &'s str, names: &[&str]) -> Vec<Call<'s>> {
    let mut found = Vec::new();
    if !names.iter().any(|name| source.contains(name)) {
        return found;
    }
    let mut at = 0;
    while at < source.len() {
        let rest = &source[at..];
        let Some(character) = rest.chars().next() else {
            break;
        };
        let skip = if character == '"' {
            string_literal_end(rest)
        } else if rest.starts_with("//") {
            Some(rest.find('\n').unwrap_or(rest.len()))
        } else if let Some(comment) = rest.strip_prefix("/*") {
            comment.find("*/").map(|close| close + 4)
        } else if character == '`' {
            rest[1..].find('`').map(|close| close + 2)
        } else if is_name_start(character) {
            let member = source[..at].trim_end().ends_with('.');
            let called = names.iter().position(|name| {
                rest.starts_with(name) && !rest[name.len()..].starts_with(is_name_part)
            });
            if let Some(name) = called.filter(|_| !member) {
                let after = rest[names[name].len()..].trim_start();
                if after.starts_with('(')
                    && let Some((arguments, close)) = arguments(after)
                {
                    let open = at + (rest.len() - after.len());
                    found.push(Call {
                        name,
                        start: at,
                        open,
                        end: open + close + 1,
                        arguments,
                    });
                    at = open + close + 1;
                    continue;
                }
            }
            Some(rest.find(|c: char| !is_name_part(c)).unwrap_or(rest.len()))
        } else {
            Some(character.len_utf8())
        };
        // Unclosed strings and comments: nothing more to find.
        match skip {
            Some(length) => at += length,
            None => break,
        }
    }
    found
}

/// The outermost `fromAi(...)` calls in `source`, in order.
fn calls(source: &str) -> Vec<Call<'_>> {
    calls_of(source, &[FUNCTION])
}

/// For `text` starting with `(`: the arguments (split at commas outside parentheses,
/// brackets, braces, strings and comments; none for `()`) and the index of the matching `)`.
fn arguments(text: &str) -> Option<(Vec<&str>, usize)> {
    let bytes = text.as_bytes();
    let mut depth = 0usize;
    let mut start = 1;
    let mut found = Vec::new();
    let mut index = 0;
    while index < bytes.len() {
        match bytes[index] {
            b'"' => {
                index += string_literal_end(&text[index..])?;
                continue;
            }
            b'`' => {
                index += text[index + 1..].find('`')? + 2;
                continue;
            }
            b'/' if text[index..].starts_with("/*") => {
                index += text[index + 2..].find("*/")? + 4;
                continue;
            }
            b'/' if text[index..].starts_with("//") => {
                index += text[index..].find('\n')?;
                continue;
            }
            b'(' | b'[' | b'{' => depth += 1,
            b')' | b']' | b'}' => {
                depth = depth.checked_sub(1)?;
                if depth == 0 {
                    let last = &text[start..index];
                    if !(found.is_empty() && without_comments(last).trim().is_empty()) {
                        found.push(last);
                    }
                    return Some((found, index));
                }
            }
            b',' if depth == 1 => {
                found.push(&text[start..index]);
                start = index + 1;
            }
            _ => {}
        }
        index += 1;
    }
    None
}

/// `text` with its comments left out (for telling an empty argument list).
fn without_comments(text: &str) -> Cow<'_, str> {
    if !text.contains('/') {
        return Cow::Borrowed(text);
    }
    let mut out = String::new();
    let mut rest = text;
    while !rest.is_empty() {
        if rest.starts_with("//") {
            rest = &rest[rest.find('\n').unwrap_or(rest.len())..];
        } else if let Some(comment) = rest.strip_prefix("/*") {
            rest = &comment[comment.find("*/").map_or(comment.len(), |close| close + 2)..];
        } else {
            let next = rest.chars().next().map_or(1, char::len_utf8);
            out.push_str(&rest[..next]);
            rest = &rest[next..];
        }
    }
    Cow::Owned(out)
}

/// The arguments of one call by parameter name, or why they are not `fromAi`'s.
fn by_name<'s>(arguments: &[&'s str]) -> Result<[Option<&'s str>; 5], String> {
    let mut named: [Option<&str>; 5] = [None; 5];
    let is_named = arguments
        .first()
        .is_some_and(|first| named_argument(first).is_some());
    if !is_named {
        if arguments.len() > PARAMETERS.len() {
            return Err(format!(
                "`{FUNCTION}` takes at most {} arguments (value, description, type, schema, \
                 options), not {}",
                PARAMETERS.len(),
                arguments.len()
            ));
        }
        if let Some(named) = arguments
            .iter()
            .find(|argument| named_argument(argument).is_some())
        {
            return Err(format!(
                "`{FUNCTION}` mixes positional and named arguments (`{}`)",
                named.trim()
            ));
        }
        for (slot, argument) in named.iter_mut().zip(arguments) {
            *slot = Some(argument);
        }
    } else {
        for argument in arguments {
            let Some((name, value)) = named_argument(argument) else {
                return Err(format!(
                    "`{FUNCTION}` mixes named and positional arguments (`{}`)",
                    argument.trim()
                ));
            };
            let Some(slot) = PARAMETERS.iter().position(|known| *known == name) else {
                return Err(format!(
                    "`{FUNCTION}` has no parameter `{name}` (it has value, description, type, \
                     schema and options)"
                ));
            };
            if named[slot].replace(value).is_some() {
                return Err(format!("`{FUNCTION}` is given `{name}` twice"));
            }
        }
    }
    if named[0].is_none() {
        return Err(format!(
            "`{FUNCTION}` needs its value, the first argument or `value:` (the variable the \
             agent fills, such as `toolCall.customerId`)"
        ));
    }
    Ok(named)
}

/// `name: value` for a named argument: its name and its value's text.
fn named_argument(argument: &str) -> Option<(&str, &str)> {
    let trimmed = argument.trim_start();
    let end = trimmed
        .find(|c: char| !is_name_part(c))
        .unwrap_or(trimmed.len());
    if end == 0 || !trimmed.starts_with(is_name_start) {
        return None;
    }
    let value = trimmed[end..].trim_start().strip_prefix(':')?;
    Some((&trimmed[..end], value))
}

/// `source` with each `fromAi(...)` call rewritten to `(value)`, at any depth. Borrowed when
/// there is none; an error when a call's arguments are not `fromAi`'s.
pub(crate) fn without_calls(source: &str) -> Result<Cow<'_, str>, String> {
    let found = calls(source);
    if found.is_empty() {
        return Ok(Cow::Borrowed(source));
    }
    let mut out = String::with_capacity(source.len());
    let mut last = 0;
    for call in found {
        out.push_str(&source[last..call.start]);
        let value = by_name(&call.arguments)?[0].expect("by_name requires the value");
        out.push('(');
        out.push_str(&without_calls(value)?);
        out.push(')');
        last = call.end;
    }
    out.push_str(&source[last..]);
    Ok(Cow::Owned(out))
}

/// The tool parameters that the `fromAi(...)` calls in `source` (FEEL, without its `=`)
/// describe, in order, or why one cannot be described.
pub fn tool_parameters<'s>(source: &'s str) -> Result<Vec<ToolParameter>, String> {
    calls(source)
        .iter()
        .map(|call| {
            let [value, description, type_name, schema, options] = by_name(&call.arguments)?;
            // `null` for a description, type, schema or options: not given (a template may
            // pass options after an empty schema: `fromAi(x, "d", "boolean", null, {...})`).
            let given = |text: Option<&'s str>| -> Option<&'s str> {
                text.filter(|text| without_comments(text).trim() != "null")
            };
            let (description, type_name) = (given(description), given(type_name));
            let (schema, options) = (given(schema), given(options));
            Ok(ToolParameter {
                name: reference(value.expect("by_name requires the value"))?,
                description: description
                    .map(|text| string(text, "description"))
                    .transpose()?,
                type_name: type_name.map(|text| string(text, "type")).transpose()?,
                schema: schema.map(|text| context(text, "schema")).transpose()?,
                options: options.map(|text| context(text, "options")).transpose()?,
            })
        })
        .collect()
}

/// A reference's segments joined by dots (`toolCall.customerId`; backtick names unquoted).
fn reference(text: &str) -> Result<String, String> {
    let refuse = || {
        format!(
            "the value of `{FUNCTION}` must be a variable or a path in one (such as \
             `toolCall.customerId`), not `{}`",
            text.trim()
        )
    };
    let uncommented = without_comments(text);
    let mut segments = Vec::new();
    for segment in uncommented.split('.') {
        let segment = segment.trim();
        let name = match segment.strip_prefix('`') {
            Some(quoted) => quoted
                .strip_suffix('`')
                .filter(|name| !name.is_empty() && !name.contains('`'))
                .ok_or_else(refuse)?,
            None if segment.starts_with(is_name_start) && segment.chars().all(is_name_part) => {
                segment
            }
            None => return Err(refuse()),
        };
        segments.push(name);
    }
    Ok(segments.join("."))
}

/// A literal argument, parsed.
fn literal(text: &str, parameter: &str, what: &str) -> Result<AstNode, String> {
    FeelExpression::parse(text)
        .map(|parsed| parsed.ast().clone())
        .map_err(|_| {
            format!(
                "the {parameter} of `{FUNCTION}` must be {what}, not `{}`",
                text.trim()
            )
        })
}

fn string(text: &str, parameter: &str) -> Result<String, String> {
    match literal(text, parameter, "a string literal")? {
        AstNode::String(value) => Ok(value),
        _ => Err(format!(
            "the {parameter} of `{FUNCTION}` must be a string literal, not `{}`",
            text.trim()
        )),
    }
}

fn context(
    text: &str,
    parameter: &str,
) -> Result<serde_json::Map<String, serde_json::Value>, String> {
    let what = "a context of literals (such as `{ enum: [\"A\", \"B\"] }`)";
    let refuse = || {
        format!(
            "the {parameter} of `{FUNCTION}` must be {what}, not `{}`",
            text.trim()
        )
    };
    match json(&literal(text, parameter, what)?).ok_or_else(refuse)? {
        serde_json::Value::Object(map) => Ok(map),
        _ => Err(refuse()),
    }
}

/// A literal (string, number, boolean, null, list or context of literals) as JSON.
fn json(node: &AstNode) -> Option<serde_json::Value> {
    use serde_json::Value;
    Some(match node {
        AstNode::String(value) => Value::String(value.clone()),
        AstNode::Boolean(value) => Value::Bool(*value),
        AstNode::Null => Value::Null,
        AstNode::Numeric(..) => Value::Number(number(node, false)?),
        AstNode::Neg(inner) => Value::Number(number(inner, true)?),
        AstNode::List(items) => Value::Array(items.iter().map(json).collect::<Option<_>>()?),
        AstNode::Context(entries) => {
            let mut map = serde_json::Map::new();
            for entry in entries {
                let AstNode::ContextEntry(key, value) = entry else {
                    return None;
                };
                let AstNode::ContextEntryKey(name) = key.as_ref() else {
                    return None;
                };
                map.insert(name.to_string(), json(value)?);
            }
            Value::Object(map)
        }
        _ => return None,
    })
}

/// A numeric literal as a JSON number: an integer when it has no fraction or exponent and
/// fits 64 bits, else the nearest double.
fn number(node: &AstNode, negative: bool) -> Option<serde_json::Number> {
    let AstNode::Numeric(whole, fraction, exponent_sign, exponent) = node else {
        return None;
    };
    let sign = if negative { "-" } else { "" };
    let whole = match whole.trim_start_matches('0') {
        "" => "0",
        digits => digits,
    };
    if fraction.is_empty() && exponent.is_empty() {
        let text = format!("{sign}{whole}");
        if let Ok(integer) = text.parse::<i64>() {
            return Some(integer.into());
        }
        if let Ok(integer) = text.parse::<u64>() {
            return Some(integer.into());
        }
    }
    let mut text = format!("{sign}{whole}");
    if !fraction.is_empty() {
        text.push('.');
        text.push_str(fraction);
    }
    if !exponent.is_empty() {
        text.push('e');
        if *exponent_sign == '-' {
            text.push('-');
        }
        text.push_str(exponent);
    }
    text.parse::<f64>()
        .ok()
        .and_then(serde_json::Number::from_f64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parameters(source: &str) -> Vec<serde_json::Value> {
        tool_parameters(source)
            .unwrap_or_else(|error| panic!("{source}: {error}"))
            .into_iter()
            .map(|parameter| {
                json!({
                    "name": parameter.name,
                    "description": parameter.description,
                    "type": parameter.type_name,
                    "schema": parameter.schema,
                    "options": parameter.options,
                })
            })
            .collect()
    }

    fn refused(source: &str) -> String {
        tool_parameters(source).expect_err(source)
    }

    #[test]
    fn positional_and_named_calls_describe_the_same_parameter() {
        let full = json!([{
            "name": "toolCall.aSimpleValue",
            "description": "A simple value",
            "type": "string",
            "schema": {"enum": ["A", "B", "C"]},
            "options": {"optional": true},
        }]);
        assert_eq!(
            parameters(
                r#"fromAi(toolCall.aSimpleValue, "A simple value", "string", { enum: ["A", "B", "C"] }, { optional: true })"#
            ),
            full.as_array().expect("array").clone()
        );
        assert_eq!(
            parameters(
                r#"fromAi(
                  description: "A simple value",
                  options: { optional: true },
                  schema: { enum: ["A", "B", "C"] },
                  type: "string",
                  value: toolCall.aSimpleValue
                )"#
            ),
            full.as_array().expect("array").clone()
        );
        assert_eq!(
            parameters(
                r#"fromAi(toolCall.urgent, "Urgent?", "boolean", null, { required: false })"#
            ),
            [json!({
                "name": "toolCall.urgent", "description": "Urgent?", "type": "boolean",
                "schema": null, "options": {"required": false},
            })]
        );
        assert_eq!(
            parameters("fromAi(aSimpleValue)"),
            [
                json!({"name": "aSimpleValue", "description": null, "type": null, "schema": null, "options": null})
            ]
        );
    }

    #[test]
    fn every_call_is_found_in_order_at_any_depth() {
        let source = r#"{
          foo: "bar",
          list: [fromAi(firstValue), string(fromAi(toolCall.secondValue, "The second value", "integer"))],
          bar: { baz: fromAi(description: "The third", value: toolCall.thirdValue) },
          url: "https://example.com/" + fromAi(toolCall.`url path`, "The path") // fromAi(not, "this")
          /* nor fromAi(this) */, s: "fromAi(nor, this)", m: x.fromAi(y)
        }"#;
        let names: Vec<String> = tool_parameters(source)
            .expect("parameters")
            .into_iter()
            .map(|parameter| parameter.name)
            .collect();
        assert_eq!(
            names,
            [
                "firstValue",
                "toolCall.secondValue",
                "toolCall.thirdValue",
                "toolCall.url path"
            ]
        );
        assert!(tool_parameters(r#""hello" + x"#).expect("none").is_empty());
    }

    #[test]
    fn schemas_hold_nested_literals() {
        let found = parameters(
            r#"fromAi(toolCall.multiValue, "Select values", "array", {
              "items": { "type": "string", "enum": ["foo", "bar"] },
              minItems: 1, maxItems: -2.5e1, uniqueItems: true, default: null, big: 18446744073709551615
            })"#,
        );
        assert_eq!(
            found[0]["schema"],
            json!({
                "items": {"type": "string", "enum": ["foo", "bar"]},
                "minItems": 1, "maxItems": -25.0, "uniqueItems": true, "default": null,
                "big": 18446744073709551615u64
            })
        );
        assert_eq!(
            parameters(r#"fromAi(x, "a \"quoted\"\nline")"#)[0]["description"],
            json!("a \"quoted\"\nline")
        );
    }

    #[test]
    fn what_cannot_be_described_is_refused_with_the_reason() {
        for (source, expected) in [
            (r#"fromAi("toolCall.x")"#, "must be a variable or a path"),
            ("fromAi(10)", "must be a variable or a path"),
            ("fromAi([])", "must be a variable or a path"),
            ("fromAi(fromAi(toolCall.x))", "must be a variable or a path"),
            ("fromAi(a + b)", "must be a variable or a path"),
            (
                "fromAi(x, 10)",
                "description of `fromAi` must be a string literal",
            ),
            (
                r#"fromAi(x, string join(["A", "b"], " "))"#,
                "must be a string literal",
            ),
            (
                r#"fromAi(x, "d", "str" + "ing")"#,
                "type of `fromAi` must be a string",
            ),
            (
                r#"fromAi(x, "d", "t", "dummy")"#,
                "schema of `fromAi` must be a context",
            ),
            (
                r#"fromAi(x, "d", "t", context put({}, "enum", ["A"]))"#,
                "must be a context",
            ),
            (
                r#"fromAi(x, "d", "t", {a: y})"#,
                "must be a context of literals",
            ),
            (
                r#"fromAi(x, options: {a: 1})"#,
                "mixes positional and named",
            ),
            (
                r#"fromAi(value: x, options: "o")"#,
                "options of `fromAi` must be a context",
            ),
            (
                r#"fromAi(value: x, colour: "red")"#,
                "has no parameter `colour`",
            ),
            (r#"fromAi(value: x, value: y)"#, "is given `value` twice"),
            (r#"fromAi(description: "d")"#, "needs its value"),
            ("fromAi()", "needs its value"),
            ("fromAi( /* nothing */ )", "needs its value"),
            ("fromAi(a, b, c, d, e, f)", "at most 5 arguments"),
        ] {
            let error = refused(source);
            assert!(error.contains(expected), "{source}: {error}");
        }
    }

    /// Any text, however broken, gives an answer: never a panic (the scanner slices
    /// strings, and a slice off a character boundary would panic).
    #[test]
    fn any_text_is_answered_without_a_panic() {
        let pieces = [
            &[
                "fromAi",
                "value",
                ":",
                "[",
                "]",
                "1",
                "-",
                "description",
                "e",
            ],
            crate::test_support::FEEL_SYNTAX,
        ]
        .concat();
        for text in
            crate::test_support::random_texts(&pieces, 0x2545_F491_4F6C_DD1D_u64, 20_000, 24)
        {
            let described = tool_parameters(&text);
            let found = calls(&text).len();
            match without_calls(&text) {
                // A rewrite drops at least each call's name: always shorter.
                Ok(rewritten) if found > 0 => assert!(rewritten.len() < text.len(), "{text:?}"),
                Ok(rewritten) => assert_eq!(rewritten, text),
                // What cannot be evaluated cannot be described either.
                Err(_) => assert!(described.is_err(), "{text:?}"),
            }
        }
    }

    #[test]
    fn calls_are_rewritten_to_their_value() {
        let rewrite = |source: &str| {
            without_calls(source)
                .unwrap_or_else(|error| panic!("{source}: {error}"))
                .into_owned()
        };
        assert_eq!(rewrite("x + 1"), "x + 1");
        assert_eq!(
            rewrite(r#"fromAi(toolCall.a, "d, e", "t") * 2"#),
            "(toolCall.a) * 2"
        );
        assert_eq!(
            rewrite(r#"fromAi(description: "d", value: toolCall.a)"#),
            "( toolCall.a)"
        );
        assert_eq!(rewrite(r#"fromAi(fromAi(x, "in"), "out")"#), "((x))");
        assert_eq!(
            rewrite(r#"a.fromAi(x) + "fromAi(y)""#),
            r#"a.fromAi(x) + "fromAi(y)""#
        );
        assert_eq!(
            rewrite("fromAi(x"),
            "fromAi(x",
            "left for the parser to refuse"
        );
        assert!(without_calls("fromAi(description: \"d\")").is_err());
    }
}
