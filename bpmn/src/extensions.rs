//! Built-in functions of Camunda 8's FEEL (feel-scala) that DMN FEEL does not have, for the
//! ones DMN FEEL can say: each call is rewritten, before the expression is parsed, into DMN
//! FEEL with the same result.
//!
//! | feel-scala | rewritten to |
//! |---|---|
//! | `trim(s)` | `replace(s, "^[ \t\n\r]+\|[ \t\n\r]+$", "")` |
//! | `is blank(s)` | `string length(trim(s)) = 0` |
//! | `is empty(list)` | `count(list) = 0` |
//! | `is defined(v)` | `v != null` (feel-scala 1.17 and later: false for null) |
//! | `get or else(v, default)` | `if v != null then v else default` |
//!
//! Before 2026-12-07 these names parsed but evaluated to null: `trim(x) = "a"` was never
//! true. Strings, comments, backtick names and member access (`x.trim(...)`) are skipped,
//! and a call with another number of arguments is left for the evaluator (null, as before).

use std::borrow::Cow;

use crate::from_ai::calls_of;

/// Each function: its name, its arguments, and the DMN FEEL it becomes (`{0}`, `{1}`: the
/// arguments, parenthesized).
const REWRITES: &[(&str, usize, &str)] = &[
    ("trim", 1, r#"replace({0}, "^[ \t\n\r]+|[ \t\n\r]+$", "")"#),
    (
        "is blank",
        1,
        r#"(string length(replace({0}, "^[ \t\n\r]+|[ \t\n\r]+$", "")) = 0)"#,
    ),
    ("is empty", 1, "(count({0}) = 0)"),
    ("is defined", 1, "({0} != null)"),
    ("get or else", 2, "(if {0} != null then {0} else {1})"),
];

/// `source` with every call of a function in [`REWRITES`] rewritten, at any depth.
pub(crate) fn rewritten(source: &str) -> Cow<'_, str> {
    let names: Vec<&str> = REWRITES.iter().map(|(name, ..)| *name).collect();
    let found = calls_of(source, &names);
    if found.is_empty() {
        return Cow::Borrowed(source);
    }
    let mut out = String::with_capacity(source.len() + 32);
    let mut last = 0;
    for call in found {
        out.push_str(&source[last..call.start]);
        let (_, arity, template) = REWRITES[call.name];
        if call.arguments.len() == arity {
            expand(template, &call.arguments, &mut out);
        } else {
            // Another number of arguments: left for the evaluator, the calls inside rewritten.
            out.push_str(&source[call.start..=call.open]);
            out.push_str(&rewritten(&source[call.open + 1..call.end - 1]));
            out.push(')');
        }
        last = call.end;
    }
    out.push_str(&source[last..]);
    Cow::Owned(out)
}

/// Appends `template` with `{i}` replaced by argument `i`, parenthesized and rewritten, in
/// one pass (an argument's own text may hold `{1}`).
fn expand(template: &str, arguments: &[&str], out: &mut String) {
    let arguments: Vec<String> = arguments
        .iter()
        .map(|argument| format!("({})", rewritten(argument.trim())))
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

    /// Any text, however broken, is rewritten or left alone without a panic, and whatever
    /// comes out is what the parser then judges.
    #[test]
    fn any_text_is_answered_without_a_panic() {
        let pieces = [
            "trim",
            "is blank",
            "is empty",
            "is defined",
            "get or else",
            "(",
            ")",
            ",",
            "\"",
            "\\",
            "`",
            "/*",
            "*/",
            "//",
            "\n",
            "ä",
            "𝄞",
            "x",
            ".",
            "{1}",
            "{",
            "}",
            " ",
        ];
        for text in
            crate::test_support::random_texts(&pieces, 0x9E37_79B9_7F4A_7C15_u64, 20_000, 20)
        {
            let out = rewritten(&text);
            if !REWRITES.iter().any(|(name, ..)| text.contains(name)) {
                assert_eq!(out, text);
            }
            let _ = crate::FeelExpression::parse(&text);
        }
    }

    #[test]
    fn calls_are_rewritten_where_they_are_calls() {
        assert_eq!(rewritten("x + 1"), "x + 1");
        assert_eq!(rewritten("is empty(items)"), "(count((items)) = 0)");
        assert_eq!(
            rewritten("get or else(a.b, \"none\")"),
            "(if (a.b) != null then (a.b) else (\"none\"))"
        );
        assert_eq!(
            rewritten("is defined(get or else(x, y))"),
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
            assert_eq!(rewritten(kept), kept);
        }
        assert_eq!(
            rewritten("get or else(\"{1}\", y)"),
            "(if (\"{1}\") != null then (\"{1}\") else (y))"
        );
        // Another number of arguments: left for the evaluator.
        assert_eq!(rewritten("trim(a, b)"), "trim(a, b)");
    }
}
