//! Expressions in a model: static values, or FEEL (a leading `=`, as in Camunda 8).
//!
//! FEEL is parsed at deploy time with `dsntk-feel-parser`, so that a syntax error is a
//! validation error naming the element, and the engine gets a parsed tree it never re-parses.
//!
//! Camunda 8 (feel-scala) never lets a variable name contain spaces or operators, but DMN FEEL
//! does (`Income / Expenses` can be one name), and dsntk decides what is a name from the names
//! in scope. At deploy time the variables are unknown, so the parser is handed a scope with
//! every identifier that occurs in the expression, plus the multi-word built-in functions.
//! That makes `price * 2` a product (as in Camunda 8) rather than one name `price*2`.
//! Backtick-quoted names (`` `order id` ``) are a feel-scala extension; they are unquoted and
//! declared as names. `now()` and `today()` are parsed as reads of reserved names that the
//! engine binds to the command's time, so that evaluation never reads a clock.

use std::any::Any;
use std::fmt;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::{Arc, OnceLock};

use dsntk_feel::context::FeelContext;
use dsntk_feel::{FeelScope, Name};
use dsntk_feel_parser::AstNode;

use crate::extensions::{NATIVE_FUNCTIONS, NativeFunction};
use crate::limits::EXPRESSION_BYTES_MAX;

/// The bit of [`crate::instants::INSTANT`] in an expression's native functions.
static INSTANT_BIT: std::sync::LazyLock<usize> = std::sync::LazyLock::new(|| {
    NATIVE_FUNCTIONS
        .iter()
        .position(|function| function.bound_as == crate::instants::INSTANT)
        .expect("the instant wrapper is a native function")
});

/// A value in a model attribute that is either fixed or computed by FEEL.
#[derive(Clone, Debug)]
pub enum Expression {
    /// A literal value (no leading `=`).
    Static(Arc<str>),
    /// A FEEL expression (the text had a leading `=`).
    Feel(FeelExpression),
}

impl Expression {
    /// Parses an attribute value: `=...` is FEEL, anything else is a static value.
    pub fn parse(raw: &str) -> Result<Expression, String> {
        match raw.trim_start().strip_prefix('=') {
            Some(source) => FeelExpression::parse(source).map(Expression::Feel),
            None => Ok(Expression::Static(raw.into())),
        }
    }

    /// The static value, if this is not FEEL.
    pub fn as_static(&self) -> Option<&str> {
        match self {
            Expression::Static(value) => Some(value),
            Expression::Feel(_) => None,
        }
    }

    /// Whether this is a FEEL expression.
    pub fn is_feel(&self) -> bool {
        matches!(self, Expression::Feel(_))
    }
}

impl fmt::Display for Expression {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Expression::Static(value) => f.write_str(value),
            Expression::Feel(feel) => write!(f, "={}", feel.source()),
        }
    }
}

/// A parsed FEEL expression with its source text.
#[derive(Clone)]
pub struct FeelExpression {
    source: Box<str>,
    /// Boxed: syntax trees are large, and expressions sit inside every element kind.
    ast: Box<AstNode>,
    /// Every name the source mentions, once each, in order of first appearance (keywords,
    /// built-in multi-word functions and the clock left out): the engine binds only these.
    names: Arc<[Box<str>]>,
    /// Whether it calls `now()` or `today()`.
    reads_clock: bool,
    /// Which of feel-scala's built-ins that the engine evaluates it calls (bit `i`:
    /// [`NATIVE_FUNCTIONS`]`[i]`).
    natives: u32,
    /// Names it calls that no built-in function has (see [`FeelExpression::unknown_functions`]).
    unknown_calls: Box<[Box<str>]>,
    /// What the engine compiles this expression into, built on first use and shared by every
    /// clone. Typed `Any` so that this crate needs no evaluator (the evaluator's dependencies
    /// stay out of the model crate).
    compiled: Arc<OnceLock<Box<dyn Any + Send + Sync>>>,
}

impl fmt::Debug for FeelExpression {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "FeelExpression({:?})", self.source)
    }
}

/// Words FEEL reserves; they are never declared as names.
const KEYWORDS: &[&str] = &[
    "if",
    "then",
    "else",
    "for",
    "in",
    "return",
    "some",
    "every",
    "satisfies",
    "and",
    "or",
    "not",
    "between",
    "instance",
    "of",
    "true",
    "false",
    "null",
    "function",
];

/// Built-in functions whose names contain spaces, from the DMN standard and feel-scala.
const MULTI_WORD_FUNCTIONS: &[&str] = &[
    "date and time",
    "years and months duration",
    "context merge",
    "context put",
    "day of week",
    "day of year",
    "distinct values",
    "duplicate values",
    "ends with",
    "finished by",
    "from json",
    "get entries",
    "get or else",
    "get value",
    "index of",
    "insert before",
    "is blank",
    "is defined",
    "is empty",
    "last day of month",
    "list contains",
    "list replace",
    "lower case",
    "met by",
    "month of year",
    "overlaps after",
    "overlaps before",
    "round down",
    "round half down",
    "round half up",
    "round up",
    "started by",
    "starts with",
    "string join",
    "string length",
    "substring after",
    "substring before",
    "to json",
    "upper case",
    "week of year",
];

impl FeelExpression {
    /// Parses FEEL source text (without the leading `=`).
    pub fn parse(source: &str) -> Result<FeelExpression, String> {
        if source.len() > EXPRESSION_BYTES_MAX {
            return Err(format!(
                "the expression is {} bytes, over EXPRESSION_BYTES_MAX ({EXPRESSION_BYTES_MAX})",
                source.len()
            ));
        }
        let trimmed = source.trim();
        if trimmed.is_empty() {
            return Err("the expression after `=` is empty".to_string());
        }
        let rewritten = crate::from_ai::without_calls(trimmed)
            .map_err(|error| format!("`{trimmed}`: {error}"))?;
        let (extended, natives) = crate::extensions::rewritten(&rewritten);
        let Prepared {
            text,
            scope,
            names,
            unknown_calls,
        } = prepare(&extended)?;
        let reads_clock = text.contains(CLOCK_NOW) || text.contains(CLOCK_TODAY);
        // The parser is third-party code fed with user input: a panic inside it must become a
        // validation error, never take the process down.
        let parsed = catch_unwind(AssertUnwindSafe(|| {
            dsntk_feel_parser::parse_expression(&scope, &text, false)
        }));
        match parsed {
            // External (Java, PMML) functions would call out of the engine, over the
            // network, while it processes a command: never allowed.
            Ok(Ok(ast)) if ast.trace().contains("FunctionBody (external)") => Err(format!(
                "`{trimmed}` defines an external function; ringflow evaluates FEEL only, \
                 with no calls out of the engine"
            )),
            Ok(Ok(mut ast)) => {
                let mut natives = natives;
                if crate::instants::can_make_date_times(&text)
                    && crate::instants::wrap_comparisons(&mut ast)
                {
                    natives |= 1 << *INSTANT_BIT;
                }
                Ok(FeelExpression {
                    source: trimmed.into(),
                    ast: Box::new(ast),
                    names: names.into_iter().map(String::into_boxed_str).collect(),
                    reads_clock,
                    natives,
                    unknown_calls: unknown_calls
                        .into_iter()
                        .map(String::into_boxed_str)
                        .collect(),
                    compiled: Arc::new(OnceLock::new()),
                })
            }
            Ok(Err(_)) => Err(format!("`{trimmed}` is not a valid FEEL expression")),
            Err(_) => Err(format!(
                "`{trimmed}` could not be parsed (the FEEL parser failed)"
            )),
        }
    }

    /// The FEEL source, without the leading `=`.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// Every name the expression mentions (variables, and also context keys, parameters
    /// and one-word function names), sorted, without duplicates: a superset of the
    /// variables it reads. `x.y > 1` mentions `x` and `y`.
    pub fn names(&self) -> Vec<String> {
        let mut names: Vec<String> = self.names.iter().map(|name| name.to_string()).collect();
        names.sort();
        names
    }

    /// The names the expression mentions, once each, unsorted: no variable outside them can
    /// change its value, so an evaluator needs to bind only these.
    pub fn mentioned(&self) -> &[Box<str>] {
        &self.names
    }

    /// Whether it calls `now()` or `today()` (parsed as reads of [`CLOCK_NOW`] and
    /// [`CLOCK_TODAY`]).
    pub fn reads_clock(&self) -> bool {
        self.reads_clock
    }

    /// The feel-scala built-ins it calls that the engine evaluates itself (see
    /// [`NATIVE_FUNCTIONS`]): the engine binds each one's
    /// [`bound_as`](crate::extensions::NativeFunction::bound_as) name.
    pub fn native_functions(&self) -> impl Iterator<Item = &'static NativeFunction> + '_ {
        NATIVE_FUNCTIONS
            .iter()
            .enumerate()
            .filter(|(index, _)| self.natives & (1 << index) != 0)
            .map(|(_, function)| function)
    }

    /// The one-word names it calls as functions that neither DMN FEEL, feel-scala's
    /// built-ins the engine knows, nor the expression itself defines (nothing is reported for
    /// an expression that defines a `function`): such a call evaluates to null. A wrong
    /// number of arguments for a feel-scala built-in (`trim(a, b)`) shows here too. Once each,
    /// in order of first appearance.
    pub fn unknown_functions(&self) -> &[Box<str>] {
        &self.unknown_calls
    }

    /// Whether it calls any of [`NATIVE_FUNCTIONS`] (a bit test, for the evaluation's hot
    /// path).
    pub fn calls_native_functions(&self) -> bool {
        self.natives != 0
    }

    /// Whether it calls `uuid()` or `random number()`, which draw random numbers.
    pub fn draws(&self) -> bool {
        self.native_functions().any(|function| function.draws)
    }

    /// The parsed syntax tree, for the evaluator.
    pub fn ast(&self) -> &AstNode {
        &self.ast
    }

    /// The engine's compiled form of this expression: `compile` runs once, on first use, and
    /// every later call (from any clone) returns the same value. Returns `None` if the cache
    /// already holds a value of another type.
    pub fn compiled<T: Any + Send + Sync>(
        &self,
        compile: impl FnOnce(&AstNode) -> T,
    ) -> Option<&T> {
        self.compiled
            .get_or_init(|| Box::new(compile(&self.ast)))
            .downcast_ref::<T>()
    }
}

/// What [`prepare`] gives the parser, and what it found.
struct Prepared {
    /// The text to parse.
    text: String,
    /// Every name of the text declared.
    scope: FeelScope,
    /// The names declared (keywords, built-in multi-word functions and the clock left out),
    /// in order of first appearance.
    names: Vec<String>,
    /// One-word names called as functions that no built-in has (see
    /// [`FeelExpression::unknown_functions`]).
    unknown_calls: Vec<String>,
}

/// Declares every identifier of `source` as a name, and unquotes backtick names.
fn prepare(source: &str) -> Result<Prepared, String> {
    let mut context = FeelContext::default();
    let mut names: Vec<String> = Vec::new();
    let mut unknown_calls: Vec<String> = Vec::new();
    let mut defines_functions = false;
    let mut declare = |context: &mut FeelContext, name: &str| {
        context.set_null(Name::from(name));
        if !names.iter().any(|known| known == name) {
            names.push(name.to_string());
        }
    };
    for name in MULTI_WORD_FUNCTIONS {
        context.set_null(Name::from(*name));
    }
    for function in NATIVE_FUNCTIONS {
        context.set_null(Name::from(function.bound_as));
    }
    let mut text = String::with_capacity(source.len());
    let mut rest = source;
    while let Some(character) = rest.chars().next() {
        if character == '"' {
            // The FEEL parser takes an unterminated string at the very end for the end of
            // input, so `a "b` would parse as `a`: unterminated strings are caught here.
            let Some(end) = string_literal_end(rest) else {
                return Err(format!("`{source}`: a string literal is not closed"));
            };
            // feel-scala takes line breaks inside a string literal (a multi-line prompt
            // written in Camunda Modeler has them); the parser takes only their escapes,
            // which it turns back into the same characters.
            let literal = &rest[..end];
            if literal.contains(['\n', '\r']) {
                text.push_str(&literal.replace('\n', "\\n").replace('\r', "\\r"));
            } else {
                text.push_str(literal);
            }
            rest = &rest[end..];
        } else if rest.starts_with("//") {
            let end = rest.find('\n').unwrap_or(rest.len());
            text.push_str(&rest[..end]);
            rest = &rest[end..];
        } else if rest.starts_with("/*") {
            let Some(close) = rest[2..].find("*/") else {
                return Err(format!("`{source}`: a /* comment is not closed"));
            };
            let end = 2 + close + 2;
            text.push_str(&rest[..end]);
            rest = &rest[end..];
        } else if character == '`' {
            let Some(close) = rest[1..].find('`') else {
                return Err(format!("`{source}`: a backtick-quoted name is not closed"));
            };
            let name = &rest[1..1 + close];
            declare(&mut context, name);
            text.push_str(name);
            rest = &rest[close + 2..];
        } else if is_name_start(character) {
            if let Some(function) = NATIVE_FUNCTIONS
                .iter()
                .map(|function| function.bound_as)
                .chain(MULTI_WORD_FUNCTIONS.iter().copied())
                .filter(|f| starts_with_words(rest, f))
                .max_by_key(|f| f.len())
            {
                text.push_str(function);
                rest = &rest[function.len()..];
                continue;
            }
            // The first character is a name start, and every name start is a name part, so the
            // word is never empty and the loop always advances.
            let end = rest.find(|c: char| !is_name_part(c)).unwrap_or(rest.len());
            assert!(end > 0, "a name start is a name part");
            let word = &rest[..end];
            if let Some((replacement, call_end)) = clock_call(word, &rest[end..]) {
                context.set_null(Name::from(CLOCK_NOW));
                context.set_null(Name::from(CLOCK_TODAY));
                text.push_str(replacement);
                rest = &rest[end + call_end..];
                continue;
            }
            if !KEYWORDS.contains(&word) {
                let called = rest[end..].trim_start().starts_with('(');
                let member = text.trim_end().ends_with('.');
                if called
                    && !member
                    && word.parse::<dsntk_feel::bif::Bif>().is_err()
                    && !unknown_calls.iter().any(|known| known == word)
                {
                    unknown_calls.push(word.to_string());
                }
                declare(&mut context, word);
            } else if word == "function" {
                defines_functions = true;
            }
            text.push_str(word);
            rest = &rest[end..];
        } else {
            text.push(character);
            rest = &rest[character.len_utf8()..];
        }
    }
    if defines_functions {
        unknown_calls.clear();
    }
    Ok(Prepared {
        text,
        scope: FeelScope::from(context),
        names,
        unknown_calls,
    })
}

/// The name the engine binds to the command's time as an ISO 8601 UTC date-time string.
pub const CLOCK_NOW: &str = "ringflow now";
/// The name the engine binds to the command's date as an ISO 8601 date string.
pub const CLOCK_TODAY: &str = "ringflow today";

/// `now()` and `today()` read the clock; the engine must not. They are parsed as conversions
/// of the reserved names [`CLOCK_NOW`] and [`CLOCK_TODAY`], which the engine binds to the
/// command's time. (Neither name can be written in Camunda 8 FEEL: names have no spaces.)
fn clock_call(word: &str, after: &str) -> Option<(&'static str, usize)> {
    let replacement = match word {
        "now" => "date and time(ringflow now)",
        "today" => "date(ringflow today)",
        _ => return None,
    };
    let open = after.len() - after.trim_start().len();
    let inner = after[open..].strip_prefix('(')?;
    let close = inner.len() - inner.trim_start().len();
    inner[close..]
        .starts_with(')')
        .then_some((replacement, open + 1 + close + 1))
}

fn starts_with_words(text: &str, words: &str) -> bool {
    text.starts_with(words) && !text[words.len()..].starts_with(is_name_part)
}

/// The end of the string literal that `text` starts with, or `None` when it is not closed.
pub(crate) fn string_literal_end(text: &str) -> Option<usize> {
    let bytes = text.as_bytes();
    let mut index = 1;
    while index < bytes.len() {
        match bytes[index] {
            b'\\' => index += 2,
            b'"' => return Some(index + 1),
            _ => index += 1,
        }
    }
    None
}

pub(crate) fn is_name_start(character: char) -> bool {
    character.is_alphabetic() || character == '_' || character == '$'
}

pub(crate) fn is_name_part(character: char) -> bool {
    character.is_alphanumeric() || character == '_' || character == '$'
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ast(source: &str) -> String {
        match FeelExpression::parse(source) {
            Ok(expression) => format!("{:?}", expression.ast()),
            Err(error) => panic!("{source:?}: {error}"),
        }
    }

    #[test]
    fn operators_are_not_part_of_names() {
        assert!(ast("price * 2").starts_with("Mul("));
        assert!(ast("a-b").starts_with("Sub("));
        assert!(ast("order.total > 100").starts_with("Gt(Path("));
    }

    #[test]
    fn camunda_constructs_parse() {
        for source in [
            "if x > 1 then \"big\" else \"small\"",
            "some item in items satisfies item.price > 10",
            "for i in 1..3 return i * 2",
            "is defined(x)",
            "get or else(x, 1)",
            "string join(names, \", \")",
            "date and time(\"2019-10-01T12:00:00Z\")",
            "{a: x.y, b: count(z)}",
            "items[price > 10].name",
            "`order id` + 1",
            "now() + duration(\"PT5M\")",
        ] {
            ast(source);
        }
    }

    /// As in feel-scala: a string literal may span lines, and keeps its line breaks.
    #[test]
    fn string_literals_may_span_lines() {
        for (source, value) in [
            ("\"a\nb\"", "a\nb"),
            ("\"a\r\nb\" + x", "a\r\nb"),
            ("\"first\n\\\"quoted\\\"\n\\n\"", "first\n\"quoted\"\n\n"),
        ] {
            let parsed = ast(source);
            assert!(
                parsed.contains(&format!("{value:?}")),
                "{source:?}: {parsed}"
            );
        }
        // A line break outside a string is only white space.
        assert!(ast("x\n+\r\n1").starts_with("Add("));
    }

    #[test]
    fn syntax_errors_are_reported() {
        let unclosed = ["a \"b", "a \"", "a /* c", "\"x\\\""];
        for source in ["1 +", "((", "a ?? b", "\"open", "`open", "", "   "]
            .iter()
            .chain(&unclosed)
        {
            assert!(
                FeelExpression::parse(source).is_err(),
                "{source:?} should not parse"
            );
        }
    }

    #[test]
    fn external_functions_are_refused() {
        let source = r#"{f: function(a) external {java: {class: "java.lang.Math", method signature: "max(int,int)"}}}"#;
        let error = FeelExpression::parse(source).expect_err("external");
        assert!(error.contains("external function"), "{error}");
        assert!(
            FeelExpression::parse("{f: function(a) a + 1}").is_ok(),
            "FEEL functions are fine"
        );
    }

    #[test]
    fn calls_no_built_in_has_are_found() {
        let unknown = |source: &str| -> Vec<String> {
            FeelExpression::parse(source)
                .expect("parses")
                .unknown_functions()
                .iter()
                .map(|name| name.to_string())
                .collect()
        };
        assert_eq!(
            unknown("format(x) + format(y) + mystery (1)"),
            ["format", "mystery"]
        );
        assert!(unknown("count(x) + string length(s) + uuid() + to json(x)").is_empty());
        assert!(unknown("now() > date(\"2024-01-01\") and not(x)").is_empty());
        // Members, strings, comments and names that are not called are not calls.
        assert!(unknown("a.format(1) + \"f(x)\" + format // f(x)").is_empty());
        // A wrong number of arguments for feel-scala's built-ins.
        assert_eq!(unknown("trim(a, b)"), ["trim"]);
        // Functions the expression defines are not second-guessed.
        assert!(unknown("{f: function(a) a + 1, r: f(2)}.r").is_empty());
    }

    #[test]
    fn comments_are_allowed_and_do_not_declare_names() {
        assert!(ast("a // the total").starts_with("Name("));
        assert!(ast("a /* the total */ + 1").starts_with("Add("));
    }

    #[test]
    fn names_are_every_name_mentioned_sorted_once() {
        let feel =
            FeelExpression::parse(r#"x > 1 and `order id` != "y z" and x.total < limit // w"#)
                .expect("parses");
        assert_eq!(feel.names(), ["limit", "order id", "total", "x"]);
        let feel =
            FeelExpression::parse("string length(name) > 3 and now() != null").expect("parses");
        assert_eq!(feel.names(), ["name"]);
    }

    #[test]
    fn only_expressions_that_call_the_clock_read_it() {
        assert!(
            FeelExpression::parse("now() > x")
                .expect("parses")
                .reads_clock()
        );
        assert!(
            FeelExpression::parse("today()")
                .expect("parses")
                .reads_clock()
        );
        assert!(
            !FeelExpression::parse("x > 1")
                .expect("parses")
                .reads_clock()
        );
        let feel = FeelExpression::parse("a + b * a").expect("parses");
        assert_eq!(feel.mentioned(), ["a".into(), "b".into()] as [Box<str>; 2]);
    }

    #[test]
    fn the_clock_functions_read_reserved_names() {
        let now = ast("now() + duration(\"PT1H\")");
        assert!(now.contains("ringflow now"), "{now}");
        let today = ast("today ( )");
        assert!(today.contains("ringflow today"), "{today}");
        assert!(
            !ast("now").contains("ringflow"),
            "a variable called now stays a variable"
        );
    }

    #[test]
    fn static_and_feel_are_told_apart() {
        assert_eq!(
            Expression::parse("payment").expect("static").as_static(),
            Some("payment")
        );
        assert!(Expression::parse("= orderId").expect("feel").is_feel());
        assert!(Expression::parse("=").is_err());
    }

    #[test]
    fn oversized_expressions_are_rejected() {
        let source = format!("{}a", "a + ".repeat(EXPRESSION_BYTES_MAX / 4 + 1));
        let error = FeelExpression::parse(&source).expect_err("too long");
        assert!(error.contains("EXPRESSION_BYTES_MAX"), "{error}");
    }
}
