//! Inclusive gateways: the fork takes every branch whose condition holds; the join waits
//! only for tokens that can still arrive.

mod common;

use common::{Shard, flow, model, service_task, vars};
use ringflow_core::Event;

fn process() -> String {
    let condition = |expression: &str| {
        format!("<bpmn:conditionExpression>{expression}</bpmn:conditionExpression>")
    };
    model(
        "inclusive",
        &format!(
            r#"<bpmn:startEvent id="start"/>{}<bpmn:inclusiveGateway id="fork" default="plain"/>
               <bpmn:sequenceFlow id="gift" sourceRef="fork" targetRef="wrap">{}</bpmn:sequenceFlow>
               <bpmn:sequenceFlow id="fast" sourceRef="fork" targetRef="express">{}</bpmn:sequenceFlow>
               <bpmn:sequenceFlow id="plain" sourceRef="fork" targetRef="pack"/>
               {}{}{}{}{}{}<bpmn:inclusiveGateway id="merge"/>{}{}{}<bpmn:endEvent id="end"/>"#,
            flow("f1", "start", "fork"),
            condition("=gift"),
            condition("=express"),
            service_task("wrap", "wrap"),
            service_task("express", "express"),
            service_task("pack", "pack"),
            flow("w", "wrap", "merge"),
            flow("e", "express", "merge"),
            flow("p", "pack", "merge"),
            flow("f2", "merge", "ship"),
            service_task("ship", "ship"),
            flow("f3", "ship", "end"),
        ),
    )
}

fn merges(outcome: &ringflow_core::Outcome) -> usize {
    outcome
        .events
        .iter()
        .filter(
            |e| matches!(e, Event::ElementActivated { element_id, .. } if &**element_id == "merge"),
        )
        .count()
}

#[test]
fn the_join_waits_for_every_branch_that_was_taken() {
    let mut shard = Shard::new();
    shard.deploy("i.bpmn", &process());
    shard.create("inclusive", vars(r#"{"gift": true, "express": true}"#));
    let wrap = shard.activate("wrap", 1).remove(0);
    let express = shard.activate("express", 1).remove(0);
    assert!(
        shard.activate("pack", 1).is_empty(),
        "the default is not taken"
    );
    let first = shard.complete(wrap.key, vars("{}"));
    assert_eq!(merges(&first), 0, "the express branch can still arrive");
    let second = shard.complete(express.key, vars("{}"));
    assert_eq!(merges(&second), 1, "both arrived: the join fires once");
    assert_eq!(shard.activate("ship", 5).len(), 1, "one token goes on");
    shard.check_replay();
}

#[test]
fn the_join_does_not_wait_for_branches_that_were_not_taken() {
    let mut shard = Shard::new();
    shard.deploy("i.bpmn", &process());
    shard.create("inclusive", vars(r#"{"gift": true, "express": false}"#));
    let wrap = shard.activate("wrap", 1).remove(0);
    assert_eq!(merges(&shard.complete(wrap.key, vars("{}"))), 1);
    assert_eq!(shard.activate("ship", 5).len(), 1);
    shard.create("inclusive", vars(r#"{"gift": false, "express": false}"#));
    let pack = shard.activate("pack", 1).remove(0);
    assert_eq!(
        merges(&shard.complete(pack.key, vars("{}"))),
        1,
        "the default branch alone"
    );
    shard.check_replay();
}
