//! Conditional events (Camunda 8.9): intermediate catch events, boundary events (interrupting
//! or not), event subprocess starts and event-based gateway branches fire when their FEEL
//! condition holds as their wait opens, or after a change of a watched variable in a scope
//! they see; variable filters; top-down order; incidents; replay and snapshots throughout.

mod common;

use common::{Shard, flow, model, service_task, vars};
use ringflow_core::{Command, Key, Response};

/// A `conditionalEventDefinition` with `condition` and optional filter attributes.
fn conditional(condition: &str, filter: &str) -> String {
    let filter = if filter.is_empty() {
        String::new()
    } else {
        format!(
            "<bpmn:extensionElements><zeebe:conditionalFilter {filter}/></bpmn:extensionElements>"
        )
    };
    format!(
        r#"<bpmn:conditionalEventDefinition>{filter}<bpmn:condition xsi:type="bpmn:tFormalExpression">{condition}</bpmn:condition></bpmn:conditionalEventDefinition>"#
    )
}

/// The model with the `xsi` namespace declared (conditions carry `xsi:type`).
fn xsi_model(process_id: &str, body: &str) -> String {
    model(process_id, body).replace(
        r#"id="d">"#,
        r#"id="d" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">"#,
    )
}

fn set(shard: &mut Shard, scope: Key, variables: &str, local: bool) {
    let outcome = shard
        .run(Command::SetVariables {
            scope,
            variables: vars(variables),
            local,
        })
        .expect("variables set");
    assert!(matches!(outcome.response, Response::VariablesSet { .. }));
    shard.check_replay();
}

fn jobs(shard: &mut Shard, job_type: &str) -> usize {
    shard.activate(job_type, 100).len()
}

fn finish(shard: &mut Shard, job_type: &str) {
    let found = shard.activate(job_type, 100);
    assert!(!found.is_empty(), "a `{job_type}` job");
    for job in found {
        shard.complete(job.key, vars("{}"));
    }
    shard.check_replay();
}

/// start -> catch (`condition`) -> task `after` -> end.
fn waiting(condition: &str, filter: &str) -> String {
    xsi_model(
        "wait",
        &format!(
            r#"<bpmn:startEvent id="start"/>{}
               <bpmn:intermediateCatchEvent id="catch">{}</bpmn:intermediateCatchEvent>{}{}{}
               <bpmn:endEvent id="end"/>"#,
            flow("f1", "start", "catch"),
            conditional(condition, filter),
            flow("f2", "catch", "after"),
            service_task("after", "after"),
            flow("f3", "after", "end"),
        ),
    )
}

#[test]
fn a_catch_event_waits_until_its_condition_holds() {
    let mut shard = Shard::new();
    shard.deploy("wait.bpmn", &waiting("= x &gt; 10", ""));
    let (instance, _) = shard.create("wait", vars(r#"{"x": 5}"#));
    assert_eq!(shard.live_element_ids(instance), ["catch"]);
    assert_eq!(shard.state.conditional_subscriptions().count(), 1);
    set(&mut shard, instance, r#"{"x": 7}"#, false);
    assert_eq!(shard.live_element_ids(instance), ["catch"]);
    // A variable the condition does not mention changes nothing.
    set(&mut shard, instance, r#"{"other": 99}"#, false);
    assert_eq!(shard.live_element_ids(instance), ["catch"]);
    set(&mut shard, instance, r#"{"x": 11}"#, false);
    assert_eq!(shard.live_element_ids(instance), ["after"]);
    assert_eq!(shard.state.conditional_subscriptions().count(), 0);
    finish(&mut shard, "after");
    shard.assert_clean();
}

#[test]
fn a_catch_event_whose_condition_holds_on_entry_passes_at_once() {
    let mut shard = Shard::new();
    shard.deploy("wait.bpmn", &waiting("= x &gt; 10", ""));
    let (instance, _) = shard.create("wait", vars(r#"{"x": 11}"#));
    assert_eq!(shard.live_element_ids(instance), ["after"]);
    // A missing variable makes the comparison null: the event waits.
    let (other, _) = shard.create("wait", vars("{}"));
    assert_eq!(shard.live_element_ids(other), ["catch"]);
    shard.check_replay();
    set(&mut shard, other, r#"{"x": 12}"#, false);
    assert_eq!(shard.live_element_ids(other), ["after"]);
    finish(&mut shard, "after");
    shard.assert_clean();
}

/// start -> service task `a` (with a conditional boundary `b` -> task `c`) -> end.
fn guarded(condition: &str, interrupting: bool) -> String {
    xsi_model(
        "guarded",
        &format!(
            r#"<bpmn:startEvent id="start"/>{}{}
               <bpmn:boundaryEvent id="b" attachedToRef="a" cancelActivity="{interrupting}">{}</bpmn:boundaryEvent>
               {}{}{}{}
               <bpmn:endEvent id="end"/><bpmn:endEvent id="end2"/>"#,
            flow("f1", "start", "a"),
            service_task("a", "a"),
            conditional(condition, ""),
            flow("f2", "a", "end"),
            flow("f3", "b", "c"),
            service_task("c", "c"),
            flow("f4", "c", "end2"),
        ),
    )
}

#[test]
fn an_interrupting_boundary_event_ends_the_activity_when_its_condition_comes_true() {
    let mut shard = Shard::new();
    shard.deploy("guarded.bpmn", &guarded("= x &gt; 10", true));
    let (instance, _) = shard.create("guarded", vars(r#"{"x": 5}"#));
    assert_eq!(shard.live_element_ids(instance), ["a"]);
    set(&mut shard, instance, r#"{"x": 11}"#, false);
    assert_eq!(shard.live_element_ids(instance), ["c"]);
    assert_eq!(jobs(&mut shard, "a"), 0, "the task's job was cancelled");
    finish(&mut shard, "c");
    shard.assert_clean();
}

#[test]
fn a_boundary_condition_that_holds_as_the_activity_starts_fires_at_once() {
    let mut shard = Shard::new();
    shard.deploy("guarded.bpmn", &guarded("= x &gt; 10", true));
    let (instance, _) = shard.create("guarded", vars(r#"{"x": 11}"#));
    // As in Camunda: the task's job is made, then cancelled by the boundary event.
    assert_eq!(shard.live_element_ids(instance), ["c"]);
    assert_eq!(jobs(&mut shard, "a"), 0);
    shard.check_replay();
    finish(&mut shard, "c");
    shard.assert_clean();
}

#[test]
fn a_task_completing_with_a_value_that_meets_its_own_boundary_condition_just_completes() {
    let mut shard = Shard::new();
    shard.deploy("guarded.bpmn", &guarded("= x &gt; 10", true));
    let (instance, _) = shard.create("guarded", vars(r#"{"x": 1}"#));
    let job = shard.activate("a", 1).remove(0);
    shard.complete(job.key, vars(r#"{"x": 50}"#));
    shard.check_replay();
    assert!(shard.live_element_ids(instance).is_empty());
    shard.assert_clean();
}

#[test]
fn a_non_interrupting_boundary_event_fires_on_every_watched_change_that_meets_it() {
    let mut shard = Shard::new();
    shard.deploy("guarded.bpmn", &guarded("= x &gt; 10", false));
    let (instance, _) = shard.create("guarded", vars(r#"{"x": 5}"#));
    set(&mut shard, instance, r#"{"x": 11}"#, false);
    assert_eq!(shard.live_element_ids(instance), ["a", "c"]);
    set(&mut shard, instance, r#"{"x": 12}"#, false);
    assert_eq!(shard.live_element_ids(instance), ["a", "c", "c"]);
    // The same value again is no change; an unwatched variable is not watched.
    set(&mut shard, instance, r#"{"x": 12}"#, false);
    set(&mut shard, instance, r#"{"y": 1}"#, false);
    assert_eq!(shard.live_element_ids(instance), ["a", "c", "c"]);
    // Two watched changes in one command fire it once.
    set(&mut shard, instance, r#"{"x": 13, "y": 2}"#, false);
    assert_eq!(shard.live_element_ids(instance), ["a", "c", "c", "c"]);
    assert_eq!(shard.state.conditional_subscriptions().count(), 1);
    finish(&mut shard, "c");
    finish(&mut shard, "a");
    shard.assert_clean();
}

#[test]
fn variable_events_limit_what_re_evaluates_the_condition() {
    let mut shard = Shard::new();
    shard.deploy(
        "wait.bpmn",
        &waiting("= x &gt; 10", r#"variableEvents="create""#),
    );
    // Updated: x existed.
    let (updated, _) = shard.create("wait", vars(r#"{"x": 5}"#));
    set(&mut shard, updated, r#"{"x": 11}"#, false);
    assert_eq!(shard.live_element_ids(updated), ["catch"]);
    // Created.
    let (created, _) = shard.create("wait", vars("{}"));
    set(&mut shard, created, r#"{"x": 11}"#, false);
    assert_eq!(shard.live_element_ids(created), ["after"]);

    let mut shard = Shard::new();
    shard.deploy(
        "wait.bpmn",
        &waiting("= x &gt; 10", r#"variableEvents="update""#),
    );
    let (created, _) = shard.create("wait", vars("{}"));
    set(&mut shard, created, r#"{"x": 11}"#, false);
    assert_eq!(shard.live_element_ids(created), ["catch"]);
    set(&mut shard, created, r#"{"x": 12}"#, false);
    assert_eq!(shard.live_element_ids(created), ["after"]);
}

#[test]
fn variable_names_choose_the_variables_that_re_evaluate_the_condition() {
    let mut shard = Shard::new();
    shard.deploy(
        "wait.bpmn",
        &waiting("= x &gt; 10", r#"variableNames="go, again""#),
    );
    let (instance, _) = shard.create("wait", vars(r#"{"x": 5}"#));
    set(&mut shard, instance, r#"{"x": 11}"#, false);
    assert_eq!(shard.live_element_ids(instance), ["catch"]);
    set(&mut shard, instance, r#"{"again": true}"#, false);
    assert_eq!(shard.live_element_ids(instance), ["after"]);
}

/// A task `work`, and an event subprocess started by a conditional start (`interrupting`)
/// with a task `handle`.
fn with_event_subprocess(condition: &str, interrupting: bool) -> String {
    xsi_model(
        "esp",
        &format!(
            r#"<bpmn:startEvent id="start"/>{}{}{}<bpmn:endEvent id="end"/>
               <bpmn:subProcess id="on-change" triggeredByEvent="true">
                 <bpmn:startEvent id="cs" isInterrupting="{interrupting}">{}</bpmn:startEvent>
                 {}{}{}<bpmn:endEvent id="esp-end"/>
               </bpmn:subProcess>"#,
            flow("f1", "start", "work"),
            service_task("work", "work"),
            flow("f2", "work", "end"),
            conditional(condition, ""),
            flow("f3", "cs", "handle"),
            service_task("handle", "handle"),
            flow("f4", "handle", "esp-end"),
        ),
    )
}

#[test]
fn an_interrupting_event_subprocess_starts_when_its_condition_comes_true() {
    let mut shard = Shard::new();
    shard.deploy("esp.bpmn", &with_event_subprocess("= cancelled", true));
    let (instance, _) = shard.create("esp", vars(r#"{"cancelled": false}"#));
    assert_eq!(shard.live_element_ids(instance), ["work"]);
    set(&mut shard, instance, r#"{"cancelled": true}"#, false);
    assert_eq!(shard.live_element_ids(instance), ["handle", "on-change"]);
    assert_eq!(jobs(&mut shard, "work"), 0);
    assert_eq!(shard.state.conditional_subscriptions().count(), 0);
    finish(&mut shard, "handle");
    shard.assert_clean();
}

#[test]
fn a_non_interrupting_event_subprocess_starts_beside_the_work_each_time() {
    let mut shard = Shard::new();
    shard.deploy("esp.bpmn", &with_event_subprocess("= count &gt; 1", false));
    let (instance, _) = shard.create("esp", vars(r#"{"count": 0}"#));
    set(&mut shard, instance, r#"{"count": 2}"#, false);
    set(&mut shard, instance, r#"{"count": 3}"#, false);
    assert_eq!(
        shard.live_element_ids(instance),
        ["handle", "handle", "on-change", "on-change", "work"]
    );
    finish(&mut shard, "handle");
    finish(&mut shard, "work");
    shard.assert_clean();
}

#[test]
fn a_completed_job_can_fire_a_conditional_event_on_another_branch() {
    let mut shard = Shard::new();
    let body = format!(
        r#"<bpmn:startEvent id="start"/>{}<bpmn:parallelGateway id="split"/>{}{}{}
           <bpmn:intermediateCatchEvent id="catch">{}</bpmn:intermediateCatchEvent>
           <bpmn:parallelGateway id="join"/>{}{}{}<bpmn:endEvent id="end"/>"#,
        flow("f1", "start", "split"),
        flow("f2", "split", "a"),
        flow("f3", "split", "catch"),
        service_task("a", "a"),
        conditional("= done = true", ""),
        flow("f4", "a", "join"),
        flow("f5", "catch", "join"),
        flow("f6", "join", "end"),
    );
    shard.deploy("branches.bpmn", &xsi_model("branches", &body));
    let (instance, _) = shard.create("branches", vars("{}"));
    assert_eq!(shard.live_element_ids(instance), ["a", "catch"]);
    let job = shard.activate("a", 1).remove(0);
    shard.complete(job.key, vars(r#"{"done": true}"#));
    shard.check_replay();
    assert!(
        shard.live_element_ids(instance).is_empty(),
        "both branches joined"
    );
    shard.assert_clean();
}

/// A subprocess `sub` (input mapping `x` = 0, local) with an interrupting conditional
/// boundary `outer` (`outer_condition`); inside it a task `inner-task` with an interrupting
/// boundary `inner` (`inner_condition`).
fn nested(outer_condition: &str, inner_condition: &str, local_x: bool) -> String {
    let inputs = if local_x {
        r#"<bpmn:extensionElements><zeebe:ioMapping><zeebe:input source="=0" target="x"/></zeebe:ioMapping></bpmn:extensionElements>"#
    } else {
        ""
    };
    xsi_model(
        "nested",
        &format!(
            r#"<bpmn:startEvent id="start"/>{}
               <bpmn:subProcess id="sub">{inputs}
                 <bpmn:startEvent id="sub-start"/>{}{}
                 <bpmn:boundaryEvent id="inner" attachedToRef="inner-task">{}</bpmn:boundaryEvent>
                 {}{}<bpmn:endEvent id="sub-end"/><bpmn:endEvent id="inner-end"/>
               </bpmn:subProcess>
               <bpmn:boundaryEvent id="outer" attachedToRef="sub">{}</bpmn:boundaryEvent>
               {}{}{}{}<bpmn:endEvent id="end"/><bpmn:endEvent id="outer-end"/>"#,
            flow("f1", "start", "sub"),
            flow("f2", "sub-start", "inner-task"),
            service_task("inner-task", "inner-task"),
            conditional(inner_condition, ""),
            flow("f3", "inner-task", "sub-end"),
            flow("f4", "inner", "inner-end"),
            conditional(outer_condition, ""),
            flow("f5", "sub", "end"),
            flow("f6", "outer", "outer-task"),
            service_task("outer-task", "outer-task"),
            flow("f7", "outer-task", "outer-end"),
        ),
    )
}

#[test]
fn the_outermost_condition_is_evaluated_first_and_its_interruption_wins() {
    let mut shard = Shard::new();
    shard.deploy("nested.bpmn", &nested("= x &gt; 10", "= x &gt; 5", false));
    let (instance, _) = shard.create("nested", vars(r#"{"x": 0}"#));
    assert_eq!(shard.live_element_ids(instance), ["inner-task", "sub"]);
    assert_eq!(shard.state.conditional_subscriptions().count(), 2);
    set(&mut shard, instance, r#"{"x": 11}"#, false);
    // The subprocess's boundary fired first and ended everything inside it.
    assert_eq!(shard.live_element_ids(instance), ["outer-task"]);
    assert_eq!(shard.state.conditional_subscriptions().count(), 0);
    finish(&mut shard, "outer-task");
    shard.assert_clean();

    // When only the inner condition holds, the inner boundary fires: its path ends the
    // subprocess, and the instance ends without the outer path.
    let (instance, _) = shard.create("nested", vars(r#"{"x": 0}"#));
    set(&mut shard, instance, r#"{"x": 6}"#, false);
    assert!(shard.live_element_ids(instance).is_empty());
    assert_eq!(jobs(&mut shard, "outer-task"), 0);
    shard.assert_clean();
}

#[test]
fn a_change_hidden_by_a_local_variable_of_the_same_name_is_not_seen() {
    let mut shard = Shard::new();
    shard.deploy("nested.bpmn", &nested("= false", "= x &gt; 10", true));
    let (instance, _) = shard.create("nested", vars(r#"{"x": 0}"#));
    assert_eq!(shard.live_element_ids(instance), ["inner-task", "sub"]);
    // The root's x changes, but the inner task sees the subprocess's own x.
    set(&mut shard, instance, r#"{"x": 50}"#, true);
    assert_eq!(shard.live_element_ids(instance), ["inner-task", "sub"]);
    // The subprocess's x is the one it sees.
    let sub = shard
        .state
        .element_instances()
        .find(|element| {
            element.process_instance_key == instance
                && element.tokens > 0
                && element.scope.is_some()
        })
        .expect("the subprocess")
        .key;
    set(&mut shard, sub, r#"{"x": 50}"#, true);
    assert!(
        shard.live_element_ids(instance).is_empty(),
        "the inner boundary fired"
    );
    assert_eq!(jobs(&mut shard, "inner-task"), 0);
    shard.assert_clean();
}

#[test]
fn an_event_based_gateway_can_wait_for_a_condition() {
    let mut shard = Shard::new();
    let body = format!(
        r#"<bpmn:startEvent id="start"/>{}<bpmn:eventBasedGateway id="g"/>{}{}
           <bpmn:intermediateCatchEvent id="ready">{}</bpmn:intermediateCatchEvent>
           <bpmn:intermediateCatchEvent id="late"><bpmn:timerEventDefinition><bpmn:timeDuration>PT1H</bpmn:timeDuration></bpmn:timerEventDefinition></bpmn:intermediateCatchEvent>
           {}{}{}<bpmn:endEvent id="end"/><bpmn:endEvent id="end-late"/>"#,
        flow("f1", "start", "g"),
        flow("f2", "g", "ready"),
        flow("f3", "g", "late"),
        conditional("= ready", ""),
        flow("f4", "ready", "go"),
        service_task("go", "go"),
        flow("f5", "go", "end"),
    )
    .replace(
        r#"<bpmn:endEvent id="end-late"/>"#,
        &format!(r#"<bpmn:endEvent id="end-late"/>{}"#, flow("f6", "late", "end-late")),
    );
    shard.deploy("gateway.bpmn", &xsi_model("gateway", &body));
    let (instance, _) = shard.create("gateway", vars("{}"));
    assert_eq!(shard.live_element_ids(instance), ["g"]);
    set(&mut shard, instance, r#"{"ready": true}"#, false);
    assert_eq!(shard.live_element_ids(instance), ["go"]);
    assert_eq!(
        shard.state.timers().filter(|t| t.owner.is_some()).count(),
        0
    );
    finish(&mut shard, "go");
    shard.assert_clean();
}

#[test]
fn a_condition_that_gives_no_boolean_as_its_wait_opens_is_an_incident() {
    let mut shard = Shard::new();
    shard.deploy("wait.bpmn", &waiting("= x", ""));
    let (instance, _) = shard.create("wait", vars(r#"{"x": "yes"}"#));
    let incident = shard.state.incidents().next().expect("an incident").clone();
    assert!(
        incident.message.contains("not a boolean") && incident.message.contains("catch"),
        "{}",
        incident.message
    );
    assert_eq!(shard.state.conditional_subscriptions().count(), 0);
    shard.fix_and_resolve(instance, r#"{"x": true}"#, incident.key);
    shard.check_replay();
    assert_eq!(shard.live_element_ids(instance), ["after"]);
    finish(&mut shard, "after");
    shard.assert_clean();
}

#[test]
fn cancelling_an_instance_closes_its_conditional_subscriptions() {
    let mut shard = Shard::new();
    shard.deploy("esp.bpmn", &with_event_subprocess("= cancelled", false));
    let (instance, _) = shard.create("esp", vars("{}"));
    assert_eq!(shard.state.conditional_subscriptions().count(), 1);
    shard
        .run(Command::CancelInstance { key: instance })
        .expect("cancelled");
    shard.check_replay();
    shard.assert_clean();
}

#[test]
fn a_subscription_survives_a_snapshot_and_fires_after_it() {
    let mut shard = Shard::new();
    shard.deploy("guarded.bpmn", &guarded("= x &gt; 10", false));
    let (instance, _) = shard.create("guarded", vars(r#"{"x": 5}"#));
    let bytes = shard.state.encode();
    shard.state = ringflow_core::State::decode(&bytes).expect("restores");
    assert_eq!(shard.state.conditional_subscriptions().count(), 1);
    assert!(shard.state.indexes_consistent());
    set(&mut shard, instance, r#"{"x": 11}"#, false);
    assert_eq!(shard.live_element_ids(instance), ["a", "c"]);
}

#[test]
fn an_event_subprocess_that_keeps_meeting_its_own_condition_stops_at_the_step_limit() {
    let mut shard = Shard::new();
    // Each run of the non-interrupting event subprocess raises x, which meets its condition
    // again: a loop without a wait state.
    let xml = with_event_subprocess("= x &gt; 0", false).replace(
        &service_task("handle", "handle"),
        r#"<bpmn:scriptTask id="handle"><bpmn:extensionElements><zeebe:script expression="=x + 1" resultVariable="x"/></bpmn:extensionElements></bpmn:scriptTask>"#,
    );
    shard.deploy("loop.bpmn", &xml);
    let (instance, _) = shard.create("esp", vars(r#"{"x": 0}"#));
    set(&mut shard, instance, r#"{"x": 1}"#, false);
    let incident = shard
        .state
        .incidents()
        .next()
        .expect("an incident stops the loop");
    assert!(
        incident.message.contains("COMMAND_STEPS_MAX"),
        "{}",
        incident.message
    );
}

/// Process `orders` with two conditional start events (`large`: amount over 100, `vip`:
/// vip), each leading to its own task, and no none start event.
fn started_by_conditions() -> String {
    xsi_model(
        "orders",
        &format!(
            r#"<bpmn:startEvent id="large">{}</bpmn:startEvent>
               <bpmn:startEvent id="vip">{}</bpmn:startEvent>{}{}{}{}{}{}
               <bpmn:endEvent id="end"/><bpmn:endEvent id="vip-end"/>"#,
            conditional("= amount &gt; 100", ""),
            conditional("= vip = true", ""),
            flow("f1", "large", "review"),
            service_task("review", "review"),
            flow("f2", "review", "end"),
            flow("f3", "vip", "welcome"),
            service_task("welcome", "welcome"),
            flow("f4", "welcome", "vip-end"),
        ),
    )
}

fn evaluate(
    shard: &mut Shard,
    process: Option<&str>,
    variables: &str,
) -> Result<Vec<ringflow_core::StartedInstance>, ringflow_core::Rejection> {
    let outcome = shard.run(Command::EvaluateConditional {
        bpmn_process_id: process.map(str::to_string),
        variables: vars(variables),
    })?;
    shard.check_replay();
    match outcome.response {
        Response::ConditionalEvaluated(started) => Ok(started),
        other => panic!("unexpected answer {other:?}"),
    }
}

#[test]
fn evaluate_conditional_starts_an_instance_at_each_start_whose_condition_holds() {
    let mut shard = Shard::new();
    let rejection = evaluate(&mut shard, None, "{}").expect_err("nothing deployed");
    assert_eq!(
        rejection.code,
        ringflow_core::RejectionCode::ProcessNotFound
    );
    shard.deploy("orders.bpmn", &started_by_conditions());

    let started = evaluate(&mut shard, None, r#"{"amount": 150}"#).expect("evaluated");
    assert_eq!(started.len(), 1);
    assert_eq!(&*started[0].start_event_id, "large");
    assert_eq!(&*started[0].bpmn_process_id, "orders");
    let instance = started[0].process_instance_key;
    assert_eq!(shard.live_element_ids(instance), ["review"]);
    let job = shard.activate("review", 1).remove(0);
    assert_eq!(
        job.variables()["amount"],
        150,
        "the instance got the variables"
    );
    shard.complete(job.key, vars("{}"));

    // Both conditions: two instances, in document order.
    let started = evaluate(
        &mut shard,
        Some("orders"),
        r#"{"amount": 500, "vip": true}"#,
    )
    .expect("evaluated");
    let ids: Vec<&str> = started.iter().map(|s| &*s.start_event_id).collect();
    assert_eq!(ids, ["large", "vip"]);

    // None holds (and a missing variable is null, not an error): nothing starts.
    assert!(
        evaluate(&mut shard, None, r#"{"amount": 5}"#)
            .expect("evaluated")
            .is_empty()
    );
    assert!(
        evaluate(&mut shard, None, "{}")
            .expect("evaluated")
            .is_empty()
    );
    // A process without conditional starts, or none deployed under that id: refused.
    shard.deploy("one.bpmn", &common::one_task());
    let rejection = evaluate(&mut shard, Some("one-task"), "{}").expect_err("no condition");
    assert_eq!(
        rejection.code,
        ringflow_core::RejectionCode::InvalidArgument
    );
    let rejection = evaluate(&mut shard, Some("nope"), "{}").expect_err("unknown");
    assert_eq!(
        rejection.code,
        ringflow_core::RejectionCode::ProcessNotFound
    );
    // CreateInstance cannot start it: it has no none start event.
    let created = shard.run(Command::CreateInstance {
        process: ringflow_core::ProcessRef::Latest("orders".into()),
        variables: vars("{}"),
        business_key: None,
        await_result: false,
    });
    assert!(created.is_err());
    finish(&mut shard, "review");
    finish(&mut shard, "welcome");
    shard.assert_clean();
}

#[test]
fn only_the_latest_version_s_conditional_starts_are_evaluated() {
    let mut shard = Shard::new();
    shard.deploy("orders.bpmn", &started_by_conditions());
    // Version 2 has only a none start event.
    let plain = common::model(
        "orders",
        &format!(
            r#"<bpmn:startEvent id="start"/>{}<bpmn:endEvent id="end"/>"#,
            flow("f1", "start", "end")
        ),
    );
    shard.deploy("orders.bpmn", &plain);
    let rejection = evaluate(&mut shard, None, r#"{"amount": 150}"#).expect_err("none left");
    assert_eq!(
        rejection.code,
        ringflow_core::RejectionCode::ProcessNotFound
    );
    assert!(shard.state.instances().next().is_none());
}

/// A parallel multi-instance task `each` over [1, 2, 3] (input element `item`) with a
/// conditional boundary event `b` (`condition`) leading to task `c`.
fn multi_guarded(condition: &str, interrupting: bool) -> String {
    xsi_model(
        "multi",
        &format!(
            r#"<bpmn:startEvent id="start"/>{}
               <bpmn:serviceTask id="each"><bpmn:extensionElements><zeebe:taskDefinition type="each"/></bpmn:extensionElements>
                 <bpmn:multiInstanceLoopCharacteristics><bpmn:extensionElements>
                   <zeebe:loopCharacteristics inputCollection="=[1, 2, 3]" inputElement="item"/>
                 </bpmn:extensionElements></bpmn:multiInstanceLoopCharacteristics></bpmn:serviceTask>
               <bpmn:boundaryEvent id="b" attachedToRef="each" cancelActivity="{interrupting}">{}</bpmn:boundaryEvent>
               {}{}{}{}<bpmn:endEvent id="end"/><bpmn:endEvent id="end2"/>"#,
            flow("f1", "start", "each"),
            conditional(condition, ""),
            flow("f2", "each", "end"),
            flow("f3", "b", "c"),
            service_task("c", "c"),
            flow("f4", "c", "end2"),
        ),
    )
}

#[test]
fn a_multi_instance_boundary_condition_is_evaluated_for_each_inner_instance() {
    let mut shard = Shard::new();
    shard.deploy("multi.bpmn", &multi_guarded("= go and item &gt;= 2", false));
    let (instance, _) = shard.create("multi", vars(r#"{"go": false}"#));
    assert_eq!(jobs(&mut shard, "each"), 3);
    // A change every inner instance sees: each evaluates with its own `item`.
    set(&mut shard, instance, r#"{"go": true}"#, false);
    assert_eq!(jobs(&mut shard, "c"), 2, "inner instances 2 and 3 fired it");
    // A local change of one inner instance: only that one.
    let inner = shard
        .state
        .element_instances()
        .find(|e| {
            e.process_instance_key == instance
                && e.role != ringflow_core::ElementRole::Plain
                && e.role != ringflow_core::ElementRole::Body
                && e.job.is_some()
        })
        .expect("an inner instance")
        .key;
    set(&mut shard, inner, r#"{"item": 9}"#, true);
    assert_eq!(jobs(&mut shard, "c"), 1);
}

#[test]
fn an_interrupting_multi_instance_boundary_condition_ends_every_inner_instance() {
    let mut shard = Shard::new();
    shard.deploy("multi.bpmn", &multi_guarded("= go and item = 2", true));
    let (instance, _) = shard.create("multi", vars(r#"{"go": false}"#));
    set(&mut shard, instance, r#"{"go": true}"#, false);
    assert_eq!(shard.live_element_ids(instance), ["c"]);
    assert_eq!(jobs(&mut shard, "each"), 0);
    finish(&mut shard, "c");
    shard.assert_clean();
}

/// A command that draws (`uuid()`) but hands out no key still moves the next command's first
/// key on, so that the next command's draws differ; one that does not draw leaves it.
#[test]
fn a_command_that_draws_moves_the_keys_on() {
    for (condition, draws) in [
        ("= x &gt; 10", false),
        ("= x &gt; 10 and string length(uuid()) = 36", true),
    ] {
        let mut shard = Shard::new();
        shard.deploy("wait.bpmn", &waiting(condition, ""));
        let (instance, _) = shard.create("wait", vars(r#"{"x": 5}"#));
        let before = shard.next_key;
        set(&mut shard, instance, r#"{"x": 7}"#, false);
        assert_eq!(shard.live_element_ids(instance), ["catch"]);
        assert_eq!(shard.next_key > before, draws, "{condition}");
        set(&mut shard, instance, r#"{"x": 11}"#, false);
        assert_eq!(shard.live_element_ids(instance), ["after"], "{condition}");
    }
}
