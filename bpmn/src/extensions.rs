//! Built-in functions of Camunda 8's FEEL (feel-scala) that DMN FEEL does not have.
//!
//! Those DMN FEEL can say are rewritten, before the expression is parsed, into DMN FEEL with
//! the same result:
//!
//! | feel-scala | rewritten to |
//! |---|---|
//! | `trim(s)` | `replace(s, "^[ \t\n\r]+\|[ \t\n\r]+$", "")` |
//! | `is blank(s)` | `string length(trim(s)) = 0` |
//! | `is empty(list)` | `count(list) = 0` |
//! | `is defined(v)` | `v != null` (feel-scala 1.17 and later: false for null) |
//! | `get or else(v, default)` | `if v != null then v else default` |
//! | `number(from)`, `number(from, grouping separator)` | DMN's `number` with the missing separators `null` |
//!
//! Named arguments are put in order by feel-scala's parameter names (`get or else(default:
//! 0, value: x)`); a call that mixes named and positional ones, or names another parameter,
//! is left for the evaluator.
//!
//! The others ([`NATIVE_FUNCTIONS`]) are evaluated by the engine: a call is renamed to the
//! function's [`NativeFunction::bound_as`], a name no model can write, and
//! [`FeelExpression::native_functions`](crate::FeelExpression::native_functions) says which
//! ones an expression calls, so that the engine binds only those.
//!
//! Before 2026-12-07 these names parsed but evaluated to null: `trim(x) = "a"` was never
//! true. Strings, comments, backtick names and member access (`x.trim(...)`) are skipped,
//! and a call with another number of arguments is left for the evaluator (null, as before,
//! or DMN's function of that name).

use std::borrow::Cow;
use std::sync::LazyLock;

use crate::from_ai::calls_of;

/// Each function: its name, its parameters (feel-scala's names, for calls with named
/// arguments), and the DMN FEEL it becomes (`{0}`, `{1}`: the arguments, parenthesized).
const REWRITES: &[(&str, &[&str], &str)] = &[
    (
        "trim",
        &["string"],
        r#"replace({0}, "^[ \t\n\r]+|[ \t\n\r]+$", "")"#,
    ),
    (
        "is blank",
        &["string"],
        r#"(string length(replace({0}, "^[ \t\n\r]+|[ \t\n\r]+$", "")) = 0)"#,
    ),
    ("is empty", &["list"], "(count({0}) = 0)"),
    ("is defined", &["value"], "({0} != null)"),
    (
        "get or else",
        &["value", "default"],
        "(if {0} != null then {0} else {1})",
    ),
    // DMN's number() takes three arguments; feel-scala's also one or two (the separators
    // null: none).
    ("number", &["from"], "number({0}, null, null)"),
    (
        "number",
        &["from", "grouping separator"],
        "number({0}, {1}, null)",
    ),
];

/// A feel-scala built-in that the engine evaluates itself (DMN FEEL cannot say it).
#[derive(Debug)]
pub struct NativeFunction {
    /// The name a model calls it by.
    pub name: &'static str,
    /// Its parameters, as feel-scala names them (for calls with named arguments); a call
    /// with another number of arguments is not this function.
    pub parameters: &'static [&'static str],
    /// The name a call is renamed to, which the engine binds: it starts with `ringflow `,
    /// which no name in Camunda 8 FEEL can (names there have no spaces).
    pub bound_as: &'static str,
    /// DMN FEEL has a function of this name with other arguments (`string join` with one or
    /// two, `get value` with a key): only positional calls are renamed, so that a named
    /// call of DMN's function keeps working.
    pub positional_only: bool,
    /// Whether a call draws random numbers (`uuid()`, `random number()`).
    pub draws: bool,
}

const fn native(
    name: &'static str,
    parameters: &'static [&'static str],
    bound_as: &'static str,
) -> NativeFunction {
    NativeFunction {
        name,
        parameters,
        bound_as,
        positional_only: false,
        draws: false,
    }
}

/// The feel-scala built-ins the engine evaluates, in the order of the bits of
/// [`FeelExpression::native_functions`](crate::FeelExpression::native_functions).
pub const NATIVE_FUNCTIONS: &[NativeFunction] = &[
    native("to json", &["value"], "ringflow to json"),
    native("from json", &["value"], "ringflow from json"),
    native("extract", &["string", "pattern"], "ringflow extract"),
    NativeFunction {
        draws: true,
        ..native("uuid", &[], "ringflow uuid")
    },
    native("to base64", &["value"], "ringflow to base64"),
    native("duplicate values", &["list"], "ringflow duplicate values"),
    native("partition", &["list", "size"], "ringflow partition"),
    // Not "last day of month": `of` is a keyword to the parser.
    native("last day of month", &["date"], "ringflow month end"),
    NativeFunction {
        draws: true,
        ..native("random number", &[], "ringflow random number")
    },
    native("assert", &["value", "condition"], "ringflow assert"),
    native(
        "assert",
        &["value", "condition", "cause"],
        "ringflow assert with cause",
    ),
    NativeFunction {
        positional_only: true,
        ..native(
            "string join",
            &["list", "delimiter", "prefix", "suffix"],
            "ringflow string join affixed",
        )
    },
    NativeFunction {
        positional_only: true,
        ..native("get value", &["context", "keys"], "ringflow get value")
    },
    // Not a feel-scala function: what the operands of date-time comparisons are wrapped in
    // (see `crate::instants`).
    native(
        crate::instants::INSTANT,
        &["value"],
        crate::instants::INSTANT,
    ),
    // DMN's `date and time(date, time)` and feel-scala's `date and time(date and time,
    // timezone)`: which one, the engine tells by the second argument's type.
    NativeFunction {
        positional_only: true,
        ..native(
            "date and time",
            &["date", "timezone"],
            "ringflow zoned date time",
        )
    },
];

/// Every name [`rewritten`] looks for, once each.
static NAMES: LazyLock<Vec<&'static str>> = LazyLock::new(|| {
    let mut names: Vec<&'static str> = REWRITES.iter().map(|(name, ..)| *name).collect();
    for function in NATIVE_FUNCTIONS {
        if !names.contains(&function.name) {
            names.push(function.name);
        }
    }
    names
});

/// `source` with every call of a function in [`REWRITES`] rewritten and every call of one in
/// [`NATIVE_FUNCTIONS`] renamed, at any depth, and which native functions it calls (bit `i`:
/// `NATIVE_FUNCTIONS[i]`).
pub(crate) fn rewritten(source: &str) -> (Cow<'_, str>, u32) {
    let mut natives = 0;
    let text = rewrite(source, &mut natives, true);
    (text, natives)
}

/// `source` with every call of a function the module docs list as rewritten rewritten into
/// DMN FEEL, and nothing else changed: for FEEL that another evaluator runs (a DMN file's,
/// which dsntk's DMN engine parses; the engine binds no native function there).
pub fn rewritten_to_dmn_feel(source: &str) -> Cow<'_, str> {
    rewrite(source, &mut 0, false)
}

fn rewrite<'s>(source: &'s str, natives: &mut u32, rename: bool) -> Cow<'s, str> {
    let found = calls_of(source, &NAMES);
    if found.is_empty() {
        return Cow::Borrowed(source);
    }
    let mut out = String::with_capacity(source.len() + 32);
    let mut last = 0;
    for call in found {
        out.push_str(&source[last..call.start]);
        let name = NAMES[call.name];
        let arity = call.arguments.len();
        let named = call.arguments.iter().any(|argument| is_named(argument));
        let textual = REWRITES
            .iter()
            .find(|(rewrite, parameters, _)| *rewrite == name && parameters.len() == arity)
            .and_then(|(_, parameters, template)| {
                in_order(&call.arguments, parameters).map(|arguments| (template, arguments))
            });
        if let Some((template, arguments)) = textual {
            expand(template, &arguments, natives, rename, &mut out);
        } else if let Some((index, function)) =
            NATIVE_FUNCTIONS.iter().enumerate().find(|(_, function)| {
                rename
                    && function.name == name
                    && function.parameters.len() == arity
                    && !(named && function.positional_only)
            })
        {
            *natives |= 1 << index;
            out.push_str(function.bound_as);
            out.push('(');
            out.push_str(&rewrite(
                &source[call.open + 1..call.end - 1],
                natives,
                rename,
            ));
            out.push(')');
        } else {
            // Another number of arguments: left for the evaluator, the calls inside rewritten.
            out.push_str(&source[call.start..=call.open]);
            out.push_str(&rewrite(
                &source[call.open + 1..call.end - 1],
                natives,
                rename,
            ));
            out.push(')');
        }
        last = call.end;
    }
    out.push_str(&source[last..]);
    Cow::Owned(out)
}

/// The arguments' texts in the order of `parameters`: positional ones as they are, named ones
/// (all of them named) by their names. `None` for a mix, or a name that is not a parameter:
/// such a call is left for the evaluator.
fn in_order<'s>(arguments: &[&'s str], parameters: &[&str]) -> Option<Vec<&'s str>> {
    if !arguments.iter().any(|argument| is_named(argument)) {
        return Some(arguments.to_vec());
    }
    parameters
        .iter()
        .map(|parameter| {
            arguments.iter().find_map(|argument| {
                let (name, value) = argument.split_once(':')?;
                (is_named(argument) && name.trim() == *parameter).then_some(value)
            })
        })
        .collect()
}

/// Whether an argument's text is a named argument (`name: value`): a name, perhaps of
/// several words, then a colon. (A context, a string or a range starts otherwise.)
fn is_named(argument: &str) -> bool {
    let Some((before, _)) = argument.split_once(':') else {
        return false;
    };
    let before = before.trim();
    before.starts_with(crate::expression::is_name_start)
        && before
            .chars()
            .all(|c| crate::expression::is_name_part(c) || c == ' ')
}

/// Appends `template` with `{i}` replaced by argument `i`, parenthesized and rewritten, in
/// one pass (an argument's own text may hold `{1}`).
fn expand(template: &str, arguments: &[&str], natives: &mut u32, rename: bool, out: &mut String) {
    let arguments: Vec<String> = arguments
        .iter()
        .map(|argument| format!("({})", rewrite(argument.trim(), natives, rename)))
        .collect();
    let mut pieces = template.split('{');
    out.push_str(pieces.next().unwrap_or_default());
    for piece in pieces {
        let (index, tail) = piece.split_once('}').expect("templates close each {");
        let index: usize = index.parse().expect("templates number their arguments");
        out.push_str(&arguments[index]);
        out.push_str(tail);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text_of(source: &str) -> String {
        rewritten(source).0.into_owned()
    }

    /// Any text, however broken, is rewritten or left alone without a panic, and whatever
    /// comes out is what the parser then judges.
    #[test]
    fn any_text_is_answered_without_a_panic() {
        let pieces = [
            &[
                "trim",
                "to json",
                "uuid",
                "string join",
                "a:",
                "is blank",
                "is empty",
                "is defined",
                "get or else",
                "{1}",
            ],
            crate::test_support::FEEL_SYNTAX,
        ]
        .concat();
        for text in
            crate::test_support::random_texts(&pieces, 0x9E37_79B9_7F4A_7C15_u64, 20_000, 20)
        {
            let (out, _) = rewritten(&text);
            if !NAMES.iter().any(|name| text.contains(name)) {
                assert_eq!(out, text);
            }
            let _ = crate::FeelExpression::parse(&text);
        }
    }

    #[test]
    fn calls_are_rewritten_where_they_are_calls() {
        assert_eq!(text_of("x + 1"), "x + 1");
        assert_eq!(text_of("is empty(items)"), "(count((items)) = 0)");
        assert_eq!(
            text_of("get or else(a.b, \"none\")"),
            "(if (a.b) != null then (a.b) else (\"none\"))"
        );
        assert_eq!(
            text_of("is defined(get or else(x, y))"),
            "(((if (x) != null then (x) else (y))) != null)"
        );
        // Not calls: a string, a comment, a member, a longer name, a variable.
        for kept in [
            "\"trim(x)\"",
            "x // trim(y)",
            "order.trim(x)",
            "trimmed(x)",
            "trim + 1",
            "is emptyish(x)",
        ] {
            assert_eq!(text_of(kept), kept);
        }
        assert_eq!(
            text_of("get or else(\"{1}\", y)"),
            "(if (\"{1}\") != null then (\"{1}\") else (y))"
        );
        // Another number of arguments: left for the evaluator.
        assert_eq!(text_of("trim(a, b)"), "trim(a, b)");
        // Named arguments, in any order; a mix or an unknown name is left alone.
        assert_eq!(
            text_of("get or else(default: 0, value: x)"),
            "(if (x) != null then (x) else (0))"
        );
        assert_eq!(text_of("number(from: s)"), "number((s), null, null)");
        assert_eq!(
            text_of("get or else(x, default: 0)"),
            "get or else(x, default: 0)"
        );
        assert_eq!(text_of("trim(text: s)"), "trim(text: s)");
        assert_eq!(text_of("number(s, \",\")"), "number((s), (\",\"), null)");
        assert_eq!(
            text_of("number(s, \",\", \".\")"),
            "number(s, \",\", \".\")"
        );
    }

    #[test]
    fn native_calls_are_renamed_and_noted() {
        let native = |name: &str| {
            NATIVE_FUNCTIONS
                .iter()
                .position(|function| function.bound_as == name)
                .expect("a native function")
        };
        let (text, natives) = rewritten("to json({a: uuid()}) + trim(extract(s, \"x\")[1])");
        assert_eq!(
            text,
            "ringflow to json({a: ringflow uuid()}) + replace((ringflow extract(s, \"x\")[1]), \
             \"^[ \\t\\n\\r]+|[ \\t\\n\\r]+$\", \"\")"
        );
        assert_eq!(
            natives,
            1 << native("ringflow to json")
                | 1 << native("ringflow uuid")
                | 1 << native("ringflow extract")
        );
        // The arity picks the function: DMN's `string join` keeps its one and two arguments.
        assert_eq!(
            rewritten("string join(l, \", \")"),
            ("string join(l, \", \")".into(), 0)
        );
        assert_eq!(
            text_of("string join(l, \", \", \"[\", \"]\")"),
            "ringflow string join affixed(l, \", \", \"[\", \"]\")"
        );
        assert_eq!(text_of("assert(x, x > 1)"), "ringflow assert(x, x > 1)");
        assert_eq!(
            text_of("assert(x, x > 1, \"too small\")"),
            "ringflow assert with cause(x, x > 1, \"too small\")"
        );
        // Named arguments: renamed where DMN has no function of the name, kept where it has.
        assert_eq!(
            text_of("partition(list: l, size: 2)"),
            "ringflow partition(list: l, size: 2)"
        );
        assert_eq!(
            text_of("get value(m: c, key: \"a\")"),
            "get value(m: c, key: \"a\")"
        );
        assert_eq!(
            text_of("get value(c, [\"a\", \"b\"])"),
            "ringflow get value(c, [\"a\", \"b\"])"
        );
        // Not calls.
        for kept in [
            "uuid",
            "x.uuid()",
            "\"uuid()\"",
            "uuids(1)",
            "to jsonish(x)",
        ] {
            assert_eq!(rewritten(kept), (kept.into(), 0));
        }
        // A context or a string with a colon is not a named argument.
        assert!(!is_named("{a: 1}"));
        assert!(!is_named("\"a: b\""));
        assert!(is_named(" delimiter : \", \""));
        assert!(is_named("start position: 1"));
    }

    #[test]
    fn every_native_function_has_a_name_the_parser_takes() {
        assert!(
            NATIVE_FUNCTIONS.len() <= 32,
            "the bits of a u32 say which are called"
        );
        for function in NATIVE_FUNCTIONS {
            assert!(function.bound_as.starts_with("ringflow "));
            let arguments = vec!["1"; function.parameters.len()].join(", ");
            let source = format!("{}({arguments})", function.name);
            let parsed = crate::FeelExpression::parse(&source)
                .unwrap_or_else(|error| panic!("{source}: {error}"));
            assert!(parsed.names().is_empty(), "{source}: {:?}", parsed.names());
        }
    }
}
