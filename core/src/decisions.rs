//! DMN decisions for business rule tasks with `zeebe:calledDecision`.
//!
//! A deployment resource whose name ends in `.dmn` is a DMN 1.x model, parsed and made
//! evaluable with the dsntk DMN engine (`dsntk-model`, `dsntk-model-evaluator`). Every
//! decision in it is versioned by its decision id, as processes are by process id: the
//! same bytes again are a duplicate, other bytes a new version. A business rule task
//! evaluates the latest version of the decision `decisionId` (static or FEEL) with the
//! variables it sees as the input data (a decision table that requires nothing, as Camunda
//! Modeler draws it, sees every variable by name; a decision with requirements is evaluated
//! through its decision requirements graph, which sees the declared input data), and stores the decision's result in
//! `resultVariable` the way a script task stores its result. A decision that is not deployed,
//! or whose evaluation fails (a `null` with a reason from dsntk, or a panic inside it), is an
//! incident naming the decision and why.
//!
//! dsntk's `now()` and `today()` read the machine's clock, which the engine must not (a
//! replay would decide otherwise): a standalone decision table gets both bound to the
//! command's time, a standalone literal expression is evaluated by the engine's own FEEL
//! path (`crate::feel`), and a model that calls them anywhere else is refused.

use std::fmt;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;

use dsntk_feel::FeelScope;
use dsntk_feel::context::FeelContext;
use dsntk_feel::values::Value;
use dsntk_model::{DmnElement, ExpressionInstance, NamedElement};
use dsntk_model_evaluator::{ModelEvaluator, build_decision_table_evaluator};

use crate::engine::Variables;
use crate::key::Key;

/// A parsed DMN resource, ready to evaluate its decisions.
#[derive(Clone)]
pub struct DmnModel {
    evaluator: Arc<ModelEvaluator>,
    namespace: String,
    model_name: String,
    /// (decision id, decision name), in document order.
    decisions: Vec<(String, String)>,
    /// Decisions that are a decision table and require nothing, as Camunda Modeler draws
    /// them: evaluated directly with every variable in scope (the DRG evaluator would see only
    /// declared input data). By decision name.
    tables: Vec<(String, Arc<dsntk_feel::Evaluator>)>,
    /// Decisions that are a literal expression and require nothing: evaluated as the FEEL of
    /// a BPMN model is (feel-scala's built-ins, date-times compared by instant, `now()` at
    /// the command's time), with every variable in scope. By decision name. (One whose text
    /// that parser refuses stays with dsntk's evaluator.)
    literals: Vec<(String, ringflow_bpmn::FeelExpression)>,
}

impl fmt::Debug for DmnModel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DmnModel")
            .field("namespace", &self.namespace)
            .field("model_name", &self.model_name)
            .field("decisions", &self.decisions)
            .finish()
    }
}

/// One deployed version of a decision.
#[derive(Clone, Debug)]
pub struct DecisionVersion {
    /// The decision definition key.
    pub key: Key,
    /// The decision id (`<decision id="...">`), which versions are kept under.
    pub decision_id: String,
    /// The decision's name.
    pub name: String,
    /// 1 for the first deployment of this id, then counting up.
    pub version: u32,
    /// The deployment that brought it.
    pub deployment_key: Key,
    /// The name of the resource it came from.
    pub resource_name: String,
    /// The resource's bytes: the source of truth, from which a snapshot restores it.
    pub resource: Arc<[u8]>,
    /// The parsed model.
    pub model: DmnModel,
}

/// Whether a resource is a DMN model (by its name, as Camunda 8 decides).
pub fn is_dmn(resource_name: &str) -> bool {
    resource_name.to_ascii_lowercase().ends_with(".dmn")
}

/// Parses a DMN resource as a deployment does (`ringflow validate` too); the error says
/// what is wrong with it.
pub fn parse(bytes: &[u8]) -> Result<DmnModel, String> {
    let text = std::str::from_utf8(bytes).map_err(|_| "the DMN file is not UTF-8".to_string())?;
    let rewritten = with_dmn_feel(text);
    let text: &str = &rewritten;
    // Third-party code on user data: a panic becomes an error, never a crashed shard.
    let parsed = catch_unwind(AssertUnwindSafe(|| {
        let definitions = dsntk_model::parse(text).map_err(|error| error.to_string())?;
        let evaluator =
            ModelEvaluator::new(std::slice::from_ref(&definitions)).map_err(|e| e.to_string())?;
        let decisions: Vec<(String, String)> = definitions
            .decisions()
            .iter()
            .map(|decision| (decision.id().clone(), decision.name().to_string()))
            .collect();
        let mut tables = Vec::new();
        let mut literals = Vec::new();
        for decision in definitions.decisions() {
            let standalone = decision.information_requirements().is_empty()
                && decision.knowledge_requirements().is_empty();
            match (standalone, decision.decision_logic()) {
                (true, Some(ExpressionInstance::DecisionTable(table))) => {
                    let table = build_decision_table_evaluator(&FeelScope::default(), table)
                        .map_err(|error| format!("decision `{}`: {error}", decision.id()))?;
                    tables.push((decision.name().to_string(), Arc::new(table)));
                }
                (true, Some(ExpressionInstance::LiteralExpression(literal))) => {
                    if let Some(Ok(expression)) = literal
                        .text()
                        .as_deref()
                        .map(ringflow_bpmn::FeelExpression::parse)
                    {
                        literals.push((decision.name().to_string(), expression));
                    }
                }
                _ => {}
            }
        }
        Ok::<_, String>(DmnModel {
            evaluator,
            namespace: definitions.namespace().to_string(),
            model_name: definitions.name().to_string(),
            decisions,
            tables,
            literals,
        })
    }))
    .map_err(|_| "the DMN parser failed on this file".to_string())??;
    if parsed.decisions.is_empty() {
        return Err("the DMN file defines no decision".to_string());
    }
    refuse_unbound_clock(text, &parsed)?;
    Ok(parsed)
}

/// `text` with feel-scala's built-ins that DMN FEEL can say (`trim`, `is defined`,
/// `number(from)`, ... see `ringflow_bpmn::extensions`) rewritten inside every `text`
/// element, which dsntk's DMN engine would otherwise evaluate to null. The element's text is
/// unescaped first (a string literal may be written with `&quot;`), rewritten, and escaped
/// again; one with a CDATA section or an entity other than XML's five and character
/// references is left as it is.
fn with_dmn_feel(text: &str) -> std::borrow::Cow<'_, str> {
    static TEXTS: std::sync::LazyLock<regex::Regex> = std::sync::LazyLock::new(|| {
        regex::Regex::new(r"(?s)(<(?:[\w.-]+:)?text\b[^>]*>)(.*?)(</(?:[\w.-]+:)?text>)")
            .expect("a valid pattern")
    });
    TEXTS.replace_all(text, |found: &regex::Captures<'_>| {
        let inner = &found[2];
        let rewritten =
            unescape(inner).and_then(
                |feel| match ringflow_bpmn::extensions::rewritten_to_dmn_feel(&feel) {
                    std::borrow::Cow::Owned(changed) => Some(escape(&changed)),
                    std::borrow::Cow::Borrowed(_) => None,
                },
            );
        format!(
            "{}{}{}",
            &found[1],
            rewritten.as_deref().unwrap_or(inner),
            &found[3]
        )
    })
}

/// XML element text unescaped: XML's five entities and character references; `None` for
/// anything else (a CDATA section, another entity).
fn unescape(text: &str) -> Option<String> {
    if text.contains("<![CDATA[") {
        return None;
    }
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find('&') {
        out.push_str(&rest[..at]);
        let end = rest[at..].find(';')? + at;
        let entity = &rest[at + 1..end];
        let character = match entity {
            "lt" => '<',
            "gt" => '>',
            "amp" => '&',
            "quot" => '"',
            "apos" => '\'',
            _ => {
                let code = if let Some(hex) = entity.strip_prefix("#x") {
                    u32::from_str_radix(hex, 16).ok()?
                } else {
                    entity.strip_prefix('#')?.parse().ok()?
                };
                char::from_u32(code)?
            }
        };
        out.push(character);
        rest = &rest[end + 1..];
    }
    out.push_str(rest);
    Some(out)
}

/// Text escaped for an XML element (`&`, `<` and `>`).
fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// `now()` and `today()` are bound to the command's time only in a decision table or literal
/// expression that requires nothing (evaluated here directly); elsewhere dsntk's DRG evaluator would read
/// the machine's clock, and a replay would decide otherwise. Such a model is refused, naming
/// the element. The check reads the XML: each `decision` and `businessKnowledgeModel`
/// element's text is searched for a call of either.
fn refuse_unbound_clock(text: &str, model: &DmnModel) -> Result<(), String> {
    static ELEMENTS: std::sync::LazyLock<regex::Regex> = std::sync::LazyLock::new(|| {
        regex::Regex::new(
            r#"(?s)<(?:[\w.-]+:)?(decision|businessKnowledgeModel)\b([^>]*)>(.*?)</(?:[\w.-]+:)?(?:decision|businessKnowledgeModel)>"#,
        )
        .expect("a valid pattern")
    });
    static CLOCK: std::sync::LazyLock<regex::Regex> = std::sync::LazyLock::new(|| {
        regex::Regex::new(r"\b(now|today)\s*\(\s*\)").expect("a valid pattern")
    });
    static ID: std::sync::LazyLock<regex::Regex> = std::sync::LazyLock::new(|| {
        regex::Regex::new(r#"\bid\s*=\s*"([^"]*)""#).expect("a valid pattern")
    });
    for element in ELEMENTS.captures_iter(text) {
        let Some(call) = CLOCK.captures(&element[3]) else {
            continue;
        };
        let id = ID
            .captures(&element[2])
            .map(|id| id[1].to_string())
            .unwrap_or_default();
        let direct = &element[1] == "decision"
            && model
                .decisions
                .iter()
                .find(|(decision, _)| *decision == id)
                .is_some_and(|(_, name)| {
                    model.tables.iter().any(|(table, _)| table == name)
                        || model.literals.iter().any(|(literal, _)| literal == name)
                });
        if !direct {
            return Err(format!(
                "{} `{id}` calls {}(), which ringflow binds to the command's time only in a \
                 decision table or literal expression that requires nothing; here it would read the machine's clock, \
                 and a replay would decide otherwise: pass the time in a variable",
                &element[1], &call[1]
            ));
        }
    }
    Ok(())
}

impl DmnModel {
    /// The (decision id, decision name) pairs of the model, in document order.
    pub fn decisions(&self) -> &[(String, String)] {
        &self.decisions
    }

    /// Evaluates the decision named `name` with `variables` as its input data, `now()` and
    /// `today()` at the command's time.
    pub(crate) fn evaluate(
        &self,
        name: &str,
        variables: &Variables,
        inputs: crate::feel::Inputs<'_>,
    ) -> Result<serde_json::Value, String> {
        if let Some((_, literal)) = self.literals.iter().find(|(literal, _)| literal == name) {
            let evaluated = crate::feel::evaluate(literal, variables, inputs)?;
            return match (evaluated.value, evaluated.why_null) {
                // A null with a reason failed, as one from dsntk's evaluator does.
                (serde_json::Value::Null, Some(reason)) => Err(reason),
                (value, _) => Ok(value),
            };
        }
        let now_millis = inputs.now_millis;
        let mut input = FeelContext::default();
        for (variable, value) in variables {
            input.set_entry(
                &dsntk_feel::Name::from(variable.as_str()),
                crate::feel::to_feel(value),
            );
        }
        crate::feel::bind_clock_functions(&mut input, now_millis);
        let table = self
            .tables
            .iter()
            .find(|(table, _)| table == name)
            .map(|(_, table)| table);
        let value = catch_unwind(AssertUnwindSafe(|| match table {
            Some(table) => table(&FeelScope::from(input.clone())),
            None => {
                self.evaluator
                    .evaluate_invocable(&self.namespace, &self.model_name, name, &input)
            }
        }))
        .map_err(|_| "the DMN evaluator failed".to_string())?;
        match value {
            // No rule matched (and no default output): `null`, as in Camunda 8.
            Value::Null(Some(reason)) if reason.starts_with("no rules matched") => {
                Ok(serde_json::Value::Null)
            }
            Value::Null(Some(reason)) => Err(reason),
            other => crate::feel::to_json(&other)
                .map_err(|what| format!("the decision gave {what}, which cannot be stored")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dmn_texts_are_rewritten_only_where_they_call_a_feel_scala_built_in() {
        let same = r#"<text>x &gt; 1</text><other>trim(x)</other><text><![CDATA[trim(x)]]></text>"#;
        assert_eq!(with_dmn_feel(same), same);
        assert_eq!(
            with_dmn_feel(
                "<dmn:text a=\"1\">is defined(x) &amp;&amp; &quot;is defined(y)&quot;</dmn:text>"
            ),
            "<dmn:text a=\"1\">((x) != null) &amp;&amp; \"is defined(y)\"</dmn:text>"
        );
        // An entity it does not know: left as it is.
        assert_eq!(
            with_dmn_feel("<text>trim(x) &nbsp;</text>"),
            "<text>trim(x) &nbsp;</text>"
        );
        assert_eq!(
            unescape("a&#65;&#x42;&lt;&apos;"),
            Some("aAB<'".to_string())
        );
        assert_eq!(unescape("a & b"), None);
        assert_eq!(escape("a<b>&c"), "a&lt;b&gt;&amp;c");
    }
}
