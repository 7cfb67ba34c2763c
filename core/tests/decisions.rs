//! Business rule tasks with `zeebe:calledDecision`: DMN resources deploy beside BPMN, are
//! versioned by decision id, and decisions are evaluated with the variables as input data.

mod common;

use std::sync::Arc;

use common::{Shard, flow, model, vars};
use ringflow_core::{Command, Outcome, RejectionCode, Resource, Response};

const DISCOUNT: &str = include_str!("fixtures/discount.dmn");

fn rule_task_process(decision: &str) -> String {
    model(
        "pricing",
        &format!(
            r#"<bpmn:startEvent id="start"/>{}
               <bpmn:businessRuleTask id="decide"><bpmn:extensionElements>
                 <zeebe:calledDecision decisionId="{decision}" resultVariable="discount"/>
               </bpmn:extensionElements></bpmn:businessRuleTask>{}
               <bpmn:userTask id="look"/>{}<bpmn:endEvent id="end"/>"#,
            flow("f1", "start", "decide"),
            flow("f2", "decide", "look"),
            flow("f3", "look", "end"),
        ),
    )
}

fn deploy_both(shard: &mut Shard, dmn: &str, decision: &str) -> Outcome {
    shard
        .run(Command::Deploy {
            resources: vec![
                Resource {
                    name: "discount.dmn".into(),
                    content: Arc::from(dmn.as_bytes()),
                },
                Resource {
                    name: "pricing.bpmn".into(),
                    content: Arc::from(rule_task_process(decision).as_bytes()),
                },
            ],
        })
        .expect("deployed")
}

fn discount_for(shard: &mut Shard, variables: &str) -> serde_json::Value {
    shard.create("pricing", vars(variables));
    let job = shard.activate("io.camunda.zeebe:userTask", 1).remove(0);
    shard.complete(job.key, vars("{}"));
    job.variables()["discount"].clone()
}

#[test]
fn a_business_rule_task_evaluates_the_latest_decision_version() {
    let mut shard = Shard::new();
    let outcome = deploy_both(&mut shard, DISCOUNT, "discount");
    let Response::Deployed(deployment) = outcome.response else {
        panic!("not a deployment");
    };
    assert_eq!(deployment.decisions.len(), 1);
    assert_eq!(deployment.decisions[0].decision_id, "discount");
    assert_eq!(deployment.decisions[0].version, 1);
    assert_eq!(
        discount_for(&mut shard, r#"{"customer": "gold", "total": 150}"#),
        serde_json::json!(0.2)
    );
    assert_eq!(
        discount_for(&mut shard, r#"{"customer": "gold", "total": 50}"#),
        serde_json::json!(0.1)
    );
    assert_eq!(
        discount_for(&mut shard, r#"{"customer": "silver", "total": 50}"#),
        serde_json::json!(0)
    );
    // The same DMN again is a duplicate; a changed one is version 2 and is used from now on.
    let again = deploy_both(&mut shard, DISCOUNT, "discount");
    let Response::Deployed(again) = again.response else {
        panic!("not a deployment");
    };
    assert!(again.decisions[0].duplicate);
    let richer = DISCOUNT.replace("<text>0.2</text>", "<text>0.3</text>");
    deploy_both(&mut shard, &richer, "discount");
    assert_eq!(
        discount_for(&mut shard, r#"{"customer": "gold", "total": 150}"#),
        serde_json::json!(0.3)
    );
    shard.check_replay();
}

#[test]
fn a_missing_decision_is_an_incident_and_a_broken_dmn_is_refused() {
    let mut shard = Shard::new();
    deploy_both(&mut shard, DISCOUNT, "nope");
    let (instance, _) = shard.create("pricing", vars(r#"{"customer": "gold", "total": 1}"#));
    let incident = shard
        .state
        .incidents()
        .find(|incident| incident.process_instance_key == instance)
        .expect("an incident");
    assert!(
        incident.message.contains("no decision `nope`"),
        "{}",
        incident.message
    );
    // Two rules match under the UNIQUE hit policy: the evaluation fails, an incident says why.
    let overlapping = DISCOUNT.replace(r#"<text>&lt; 100</text>"#, "<text>-</text>");
    deploy_both(&mut shard, &overlapping, "discount");
    let (instance, _) = shard.create("pricing", vars(r#"{"customer": "gold", "total": 150}"#));
    let incident = shard
        .state
        .incidents()
        .find(|incident| incident.process_instance_key == instance)
        .expect("an incident");
    assert!(
        incident
            .message
            .contains("err_multiple_rules_match_in_unique_hit_policy"),
        "{}",
        incident.message
    );
    let broken = shard.run(Command::Deploy {
        resources: vec![Resource {
            name: "broken.dmn".into(),
            content: Arc::from(&b"<definitions>"[..]),
        }],
    });
    let rejection = broken.expect_err("refused");
    assert_eq!(rejection.code, RejectionCode::InvalidModel);
    assert!(
        rejection.message.starts_with("broken.dmn: "),
        "{}",
        rejection.message
    );
    shard.check_replay();
}

#[test]
fn no_matching_rule_gives_null_as_in_camunda() {
    let mut shard = Shard::new();
    let only_gold = DISCOUNT.replace(r#"<text>not("gold")</text>"#, r#"<text>"platinum"</text>"#);
    deploy_both(&mut shard, &only_gold, "discount");
    assert_eq!(
        discount_for(&mut shard, r#"{"customer": "bronze", "total": 5}"#),
        serde_json::Value::Null
    );
    shard.assert_clean();
    shard.check_replay();
}

/// A decision table whose input is `today()`, and a literal-expression decision that requires
/// it and reads `now()`.
const CLOCKED: &str = r##"<?xml version="1.0" encoding="UTF-8"?>
<definitions xmlns="https://www.omg.org/spec/DMN/20191111/MODEL/" id="clocked" name="Clocked" namespace="http://ringflow.dev/clocked">
  <decision id="day" name="Day">
    <decisionTable id="dayTable" hitPolicy="FIRST">
      <input id="i1"><inputExpression id="ie1" typeRef="string"><text>string(today())</text></inputExpression></input>
      <output id="o1" name="day" typeRef="string"/>
      <rule id="r1"><inputEntry id="e11"><text>"1970-01-01"</text></inputEntry><outputEntry id="o11"><text>"epoch"</text></outputEntry></rule>
      <rule id="r2"><inputEntry id="e21"><text>-</text></inputEntry><outputEntry id="o21"><text>"later"</text></outputEntry></rule>
    </decisionTable>
  </decision>
  <decision id="stamp" name="Stamp">
    <informationRequirement id="ir1"><requiredDecision href="#day"/></informationRequirement>
    <literalExpression id="le1"><text>Day + " " + string(now())</text></literalExpression>
  </decision>
</definitions>"##;

#[test]
fn now_and_today_in_a_decision_are_the_commands_time_or_refused() {
    let table_only = CLOCKED.replace(
        &CLOCKED[CLOCKED.find("  <decision id=\"stamp\"").expect("stamp")
            ..CLOCKED.rfind("</definitions>").expect("end")],
        "",
    );
    let mut shard = Shard::new();
    deploy_both(&mut shard, &table_only, "day");
    // The shard's clock starts at 1970-01-01T00:00:01Z: not today's date on this machine.
    assert_eq!(discount_for(&mut shard, "{}"), serde_json::json!("epoch"));
    shard.check_replay();
    // A literal expression that requires nothing is evaluated as BPMN FEEL is: feel-scala's
    // built-ins, and the command's time.
    let literal = r#"<definitions xmlns="https://www.omg.org/spec/DMN/20191111/MODEL/" id="l" name="L" namespace="http://ringflow.dev/l">
  <decision id="greeting" name="Greeting">
    <literalExpression id="le"><text>trim(name) + " on " + string(today()) + " " + to json(number("2"))</text></literalExpression>
  </decision>
</definitions>"#;
    let mut shard = Shard::new();
    deploy_both(&mut shard, literal, "greeting");
    assert_eq!(
        discount_for(&mut shard, r#"{"name": "  Ann "}"#),
        serde_json::json!("Ann on 1970-01-01 2")
    );
    shard.check_replay();
    // In a decision with requirements dsntk would read the machine's clock: refused.
    let refused = Shard::new()
        .run(Command::Deploy {
            resources: vec![Resource {
                name: "clocked.dmn".into(),
                content: Arc::from(CLOCKED.as_bytes()),
            }],
        })
        .expect_err("refused");
    assert_eq!(refused.code, RejectionCode::InvalidModel);
    assert!(
        refused.message.contains("decision `stamp` calls now()"),
        "{}",
        refused.message
    );
}

/// feel-scala's built-ins that DMN FEEL can say work in a decision table: its inputs and
/// outputs are rewritten as a BPMN model's expressions are (they evaluated to null).
#[test]
fn feel_scala_built_ins_in_a_decision_table() {
    let table = r#"<definitions xmlns="https://www.omg.org/spec/DMN/20191111/MODEL/" id="t" name="T" namespace="http://ringflow.dev/t">
  <decision id="tier" name="Tier">
    <decisionTable id="tt" hitPolicy="FIRST">
      <input id="i1"><inputExpression id="ie1" typeRef="string"><text>trim(customer)</text></inputExpression></input>
      <input id="i2"><inputExpression id="ie2" typeRef="number"><text>number(amount)</text></inputExpression></input>
      <output id="o1" name="tier" typeRef="string"/>
      <rule id="r1"><inputEntry id="e11"><text>"gold"</text></inputEntry><inputEntry id="e12"><text>&gt;= 100</text></inputEntry><outputEntry id="o11"><text>get or else(label, &quot;trim(unchanged) &amp; more&quot;)</text></outputEntry></rule>
      <rule id="r2"><inputEntry id="e21"><text>-</text></inputEntry><inputEntry id="e22"><text>-</text></inputEntry><outputEntry id="o21"><text>"other"</text></outputEntry></rule>
    </decisionTable>
  </decision>
</definitions>"#;
    let mut shard = Shard::new();
    deploy_both(&mut shard, table, "tier");
    assert_eq!(
        discount_for(&mut shard, r#"{"customer": " gold ", "amount": "150"}"#),
        serde_json::json!("trim(unchanged) & more")
    );
    assert_eq!(
        discount_for(
            &mut shard,
            r#"{"customer": "gold", "amount": "150", "label": "G"}"#
        ),
        serde_json::json!("G")
    );
    assert_eq!(
        discount_for(&mut shard, r#"{"customer": "gold", "amount": "50"}"#),
        serde_json::json!("other")
    );
    shard.check_replay();
}
