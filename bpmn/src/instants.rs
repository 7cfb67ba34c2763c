//! Date-time comparisons across zones.
//!
//! dsntk's evaluator orders two date-times by their dates, then by their times only when
//! both carry the same zone: `now() > @"2020-07-31T07:00:00+01:00"` (UTC against an offset)
//! was false, and so was its opposite, and `@"2020-08-01T01:00:00+02:00"` came after
//! `@"2020-07-31T23:30:00Z"` though it is half an hour earlier. FEEL orders date-times by
//! the instant they name, as feel-scala does.
//!
//! So in an expression that can make a date-time (an `@"..."` literal, `date and time(...)`,
//! `now()`), each operand of `<`, `<=`, `>`, `>=`, `between` and of `in` against a range is
//! wrapped in a call of [`INSTANT`], which the engine binds to a function that gives a
//! date-time with a zone as the same instant in UTC (and a time with an offset as the same
//! time in UTC), and leaves every other value as it is. Equality needs nothing: dsntk
//! compares instants there already. The values the expression gives keep their zones; only
//! the comparisons see UTC.

use dsntk_feel::Name;
use dsntk_feel_parser::AstNode;

/// The name the operands' wrapper is bound as (see the module docs).
pub const INSTANT: &str = "ringflow instant";

/// Whether the prepared text of an expression can make a date-time or a time with a zone.
pub(crate) fn can_make_date_times(text: &str) -> bool {
    text.contains("@\"")
        || text.contains("date and time")
        || text.contains("time(")
        || text.contains(crate::expression::CLOCK_NOW)
}

/// Wraps every comparison operand in `node` (see the module docs); returns whether it
/// wrapped any.
pub(crate) fn wrap_comparisons(node: &mut AstNode) -> bool {
    let mut wrapped = false;
    match node {
        AstNode::Lt(lhs, rhs)
        | AstNode::Le(lhs, rhs)
        | AstNode::Gt(lhs, rhs)
        | AstNode::Ge(lhs, rhs) => {
            wrap(lhs);
            wrap(rhs);
            wrapped = true;
        }
        AstNode::Between(value, low, high) => {
            wrap(value);
            wrap(low);
            wrap(high);
            wrapped = true;
        }
        AstNode::In(value, range) if is_range(range) => {
            wrap(value);
            if let AstNode::Range(start, end) = &mut **range {
                for end in [start, end] {
                    if let AstNode::IntervalStart(inner, _) | AstNode::IntervalEnd(inner, _) =
                        &mut **end
                    {
                        wrap(inner);
                    }
                }
            }
            wrapped = true;
        }
        _ => {}
    }
    for child in children(node) {
        wrapped |= wrap_comparisons(child);
    }
    wrapped
}

fn is_range(node: &AstNode) -> bool {
    matches!(node, AstNode::Range(..))
}

/// Replaces `operand` with `ringflow instant(operand)`.
fn wrap(operand: &mut Box<AstNode>) {
    let inner = std::mem::replace(&mut **operand, AstNode::Null);
    **operand = AstNode::FunctionInvocation(
        Box::new(AstNode::Name(Name::from(INSTANT))),
        Box::new(AstNode::PositionalParameters(vec![inner])),
    );
}

/// The direct children of `node`. (A wrapped operand's call is a child too; its argument is
/// the original operand, walked as well.)
fn children(node: &mut AstNode) -> Vec<&mut AstNode> {
    use AstNode as N;
    match node {
        N::Add(a, b)
        | N::And(a, b)
        | N::ContextEntry(a, b)
        | N::ContextTypeEntry(a, b)
        | N::Div(a, b)
        | N::Eq(a, b)
        | N::Every(a, b)
        | N::Exp(a, b)
        | N::Filter(a, b)
        | N::For(a, b)
        | N::FormalParameter(a, b)
        | N::FunctionDefinition(a, b)
        | N::FunctionInvocation(a, b)
        | N::FunctionType(a, b)
        | N::Ge(a, b)
        | N::Gt(a, b)
        | N::In(a, b)
        | N::InstanceOf(a, b)
        | N::IterationContextSingle(a, b)
        | N::Le(a, b)
        | N::Lt(a, b)
        | N::Mul(a, b)
        | N::NamedParameter(a, b)
        | N::Nq(a, b)
        | N::Or(a, b)
        | N::Out(a, b)
        | N::Path(a, b)
        | N::QuantifiedContext(a, b)
        | N::Range(a, b)
        | N::Some(a, b)
        | N::Sub(a, b) => vec![&mut **a, &mut **b],
        N::Between(a, b, c) | N::If(a, b, c) | N::IterationContextInterval(a, b, c) => {
            vec![&mut **a, &mut **b, &mut **c]
        }
        N::EvaluatedExpression(a)
        | N::FunctionBody(a, _)
        | N::IntervalEnd(a, _)
        | N::IntervalStart(a, _)
        | N::ListType(a)
        | N::Neg(a)
        | N::RangeType(a)
        | N::Satisfies(a)
        | N::UnaryGe(a)
        | N::UnaryGt(a)
        | N::UnaryLe(a)
        | N::UnaryLt(a)
        | N::UnaryEq(a)
        | N::UnaryNe(a) => vec![&mut **a],
        N::CommaList(items)
        | N::Context(items)
        | N::ContextType(items)
        | N::ExpressionList(items)
        | N::FormalParameters(items)
        | N::IterationContexts(items)
        | N::List(items)
        | N::NamedParameters(items)
        | N::NegatedList(items)
        | N::ParameterTypes(items)
        | N::PositionalParameters(items)
        | N::QualifiedName(items)
        | N::QuantifiedContexts(items) => items.iter_mut().collect(),
        N::At(_)
        | N::Boolean(_)
        | N::ContextEntryKey(_)
        | N::ContextTypeEntryKey(_)
        | N::FeelType(_)
        | N::Irrelevant
        | N::Name(_)
        | N::Null
        | N::Numeric(..)
        | N::ParameterName(_)
        | N::QualifiedNameSegment(_)
        | N::String(_) => Vec::new(),
    }
}
