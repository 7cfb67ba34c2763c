//! Message correlation: catch events, receive tasks, boundary events, message start events,
//! message event subprocesses and event-based gateways, under the Camunda 8 rules (a message
//! goes to each process at most once; buffered messages correlate to subscriptions opened
//! later; one message-started instance per correlation key at a time).

mod common;

use common::{Shard, flow, model, service_task, vars};
use ringflow_core::{Command, Event, RejectionCode, Response};

fn message(id: &str, name: &str) -> String {
    format!(r#"<bpmn:message id="{id}" name="{name}"/>"#)
}

fn subscription(key: &str) -> String {
    format!(
        r#"<bpmn:extensionElements><zeebe:subscription correlationKey="{key}"/>
           </bpmn:extensionElements>"#
    )
}

/// start -> catch `paid` (correlation key `=orderId`) -> end, as process `id`.
fn catch_process(id: &str) -> String {
    let body = format!(
        r#"<bpmn:startEvent id="start"/>{}
           <bpmn:intermediateCatchEvent id="wait-paid">
             <bpmn:messageEventDefinition messageRef="m-paid"/></bpmn:intermediateCatchEvent>
           {}<bpmn:endEvent id="end"/>"#,
        flow("f1", "start", "wait-paid"),
        flow("f2", "wait-paid", "end"),
    );
    let xml = model(id, &body);
    xml.replace(
        "</bpmn:process>",
        &format!(
            "</bpmn:process><bpmn:message id=\"m-paid\" name=\"paid\">{}</bpmn:message>",
            subscription("=orderId")
        ),
    )
}

#[test]
fn a_catch_event_takes_the_message_and_its_variables() {
    let mut shard = Shard::new();
    shard.deploy("catch.bpmn", &catch_process("catch"));
    let (instance, _) = shard.create("catch", vars(r#"{"orderId": 42}"#));
    let subscription = shard.state.subscriptions().next().expect("open").clone();
    assert_eq!(
        (
            subscription.name.as_str(),
            subscription.correlation_key.as_str()
        ),
        ("paid", "42"),
        "a number correlation key is used as its text"
    );
    // Another key: nothing happens (the message is not buffered with TTL 0).
    shard.publish("paid", "41", r#"{"amount": 1}"#, 0);
    assert!(shard.state.instance(instance).is_some());
    let outcome = shard.publish("paid", "42", r#"{"amount": 10}"#, 0);
    assert!(outcome.events.iter().any(|event| matches!(
        event,
        Event::MessageCorrelated { process_instance_key, .. } if *process_instance_key == instance
    )));
    assert!(shard.state.instance(instance).is_none(), "completed");
    shard.assert_clean();
    shard.check_replay();
}

#[test]
fn a_buffered_message_correlates_when_the_subscription_opens_once_per_process() {
    let mut shard = Shard::new();
    shard.deploy("catch.bpmn", &catch_process("catch"));
    shard.deploy("other.bpmn", &catch_process("other"));
    shard.publish("paid", "7", r#"{"amount": 3}"#, 60_000);
    let (first, _) = shard.create("catch", vars(r#"{"orderId": "7", "amount": 0}"#));
    assert!(
        shard.state.instance(first).is_none(),
        "the buffered message came at once"
    );
    // The same process does not get the same message twice.
    let (second, _) = shard.create("catch", vars(r#"{"orderId": "7"}"#));
    assert!(shard.state.instance(second).is_some(), "still waiting");
    // Another process does.
    let (other, _) = shard.create("other", vars(r#"{"orderId": "7"}"#));
    assert!(shard.state.instance(other).is_none());
    // An expired message no longer correlates, even before its expiry command ran.
    shard.publish("paid", "8", "{}", 1_000);
    shard.now_millis += 5_000;
    let (late, _) = shard.create("catch", vars(r#"{"orderId": "8"}"#));
    assert!(shard.state.instance(late).is_some());
    shard.check_replay();
}

#[test]
fn one_message_goes_to_one_waiting_instance_of_a_process() {
    let mut shard = Shard::new();
    shard.deploy("catch.bpmn", &catch_process("catch"));
    let (a, _) = shard.create("catch", vars(r#"{"orderId": "x"}"#));
    let (b, _) = shard.create("catch", vars(r#"{"orderId": "x"}"#));
    shard.publish("paid", "x", "{}", 0);
    assert!(
        shard.state.instance(a).is_none(),
        "the oldest subscription first"
    );
    assert!(shard.state.instance(b).is_some());
    shard.publish("paid", "x", "{}", 0);
    assert!(shard.state.instance(b).is_none());
    shard.assert_clean();
    shard.check_replay();
}

#[test]
fn a_correlation_key_that_is_not_text_or_number_is_an_incident_until_fixed() {
    let mut shard = Shard::new();
    shard.deploy("catch.bpmn", &catch_process("catch"));
    let (instance, _) = shard.create("catch", vars(r#"{"orderId": [1]}"#));
    let incident = shard.state.incidents().next().expect("incident").clone();
    assert!(
        incident.message.contains("correlation key"),
        "{}",
        incident.message
    );
    assert_eq!(shard.state.subscriptions().count(), 0);
    shard.fix_and_resolve(instance, r#"{"orderId": "fixed"}"#, incident.key);
    assert_eq!(shard.state.subscriptions().count(), 1);
    shard.publish("paid", "fixed", "{}", 0);
    shard.assert_clean();
    shard.check_replay();
}

fn start_process() -> String {
    let body = format!(
        r#"<bpmn:startEvent id="start"><bpmn:messageEventDefinition messageRef="m-order"/>
           </bpmn:startEvent>{}{}{}<bpmn:endEvent id="end"/>"#,
        flow("f1", "start", "task"),
        service_task("task", "ship"),
        flow("f2", "task", "end"),
    );
    model("by-message", &body).replace(
        "</bpmn:process>",
        &format!("</bpmn:process>{}", message("m-order", "order-placed")),
    )
}

#[test]
fn a_message_start_event_starts_one_instance_per_correlation_key_at_a_time() {
    let mut shard = Shard::new();
    shard.deploy("start.bpmn", &start_process());
    shard.publish("order-placed", "c-1", r#"{"item": "a"}"#, 60_000);
    assert_eq!(shard.state.instances().count(), 1);
    let instance = shard.state.instances().next().expect("one").key;
    assert_eq!(
        shard
            .state
            .variables(instance)
            .and_then(|v| v.get("item"))
            .cloned(),
        Some(serde_json::json!("a")),
        "the message's variables are the instance's"
    );
    // Same key while the first runs: buffered, no second instance.
    shard.publish("order-placed", "c-1", r#"{"item": "b"}"#, 60_000);
    assert_eq!(shard.state.instances().count(), 1);
    // Another key: its own instance.
    shard.publish("order-placed", "c-2", "{}", 0);
    assert_eq!(shard.state.instances().count(), 2);
    // When the first ends, the buffered message starts the next one for c-1.
    let job = shard
        .activate("ship", 10)
        .into_iter()
        .find(|job| job.process_instance_key == instance)
        .expect("the first instance's job");
    shard.complete(job.key, vars("{}"));
    assert_eq!(shard.state.instances().count(), 2);
    let next = shard
        .state
        .instances()
        .map(|i| i.key)
        .max()
        .expect("an instance");
    assert_eq!(
        shard
            .state
            .variables(next)
            .and_then(|v| v.get("item"))
            .cloned(),
        Some(serde_json::json!("b"))
    );
    // A message-only process cannot be created by hand.
    let by_hand = shard.run(Command::CreateInstance {
        process: ringflow_core::ProcessRef::Latest("by-message".into()),
        variables: vars("{}"),
        business_key: None,
        await_result: false,
    });
    assert_eq!(
        by_hand.expect_err("refused").code,
        RejectionCode::InvalidArgument
    );
    shard.check_replay();
}

fn boundary_process(interrupting: bool) -> String {
    let body = format!(
        r#"<bpmn:startEvent id="start"/>{}{}{}<bpmn:endEvent id="end"/>
           <bpmn:boundaryEvent id="cancelled" attachedToRef="task" cancelActivity="{interrupting}">
             <bpmn:messageEventDefinition messageRef="m-cancel"/></bpmn:boundaryEvent>
           {}<bpmn:endEvent id="stopped"/>"#,
        flow("f1", "start", "task"),
        service_task("task", "work"),
        flow("f2", "task", "end"),
        flow("f3", "cancelled", "stopped"),
    );
    model("guarded", &body).replace(
        "</bpmn:process>",
        &format!(
            "</bpmn:process><bpmn:message id=\"m-cancel\" name=\"cancel\">{}</bpmn:message>",
            subscription("=orderId")
        ),
    )
}

#[test]
fn message_boundary_events_interrupt_or_run_beside_the_task() {
    let mut shard = Shard::new();
    shard.deploy("guarded.bpmn", &boundary_process(true));
    let (instance, _) = shard.create("guarded", vars(r#"{"orderId": "o"}"#));
    shard.publish("cancel", "o", r#"{"reason": "customer"}"#, 0);
    assert!(
        shard.state.instance(instance).is_none(),
        "interrupted and ended"
    );
    shard.assert_clean();

    let mut shard = Shard::new();
    shard.deploy("guarded.bpmn", &boundary_process(false));
    let (instance, _) = shard.create("guarded", vars(r#"{"orderId": "o"}"#));
    shard.publish("cancel", "o", "{}", 0);
    assert_eq!(shard.live_element_ids(instance), vec!["task"]);
    assert_eq!(shard.state.subscriptions().count(), 1, "still listening");
    let job = shard.activate("work", 1).remove(0);
    shard.complete(job.key, vars("{}"));
    shard.assert_clean();
    shard.check_replay();
}

#[test]
fn a_receive_task_and_a_message_event_subprocess() {
    let mut shard = Shard::new();
    let body = format!(
        r#"<bpmn:startEvent id="start"/>{}
           <bpmn:receiveTask id="receive" messageRef="m-paid"/>{}<bpmn:endEvent id="end"/>
           <bpmn:subProcess id="on-cancel" triggeredByEvent="true">
             <bpmn:startEvent id="cancel-start">
               <bpmn:messageEventDefinition messageRef="m-cancel"/></bpmn:startEvent>
             {}<bpmn:endEvent id="cancel-end"/></bpmn:subProcess>"#,
        flow("f1", "start", "receive"),
        flow("f2", "receive", "end"),
        flow("f3", "cancel-start", "cancel-end"),
    );
    let xml = model("receiver", &body).replace(
        "</bpmn:process>",
        &format!(
            "</bpmn:process><bpmn:message id=\"m-paid\" name=\"paid\">{0}</bpmn:message>\
             <bpmn:message id=\"m-cancel\" name=\"cancel\">{0}</bpmn:message>",
            subscription("=orderId")
        ),
    );
    shard.deploy("receiver.bpmn", &xml);
    let (paid, _) = shard.create("receiver", vars(r#"{"orderId": "p"}"#));
    let (cancelled, _) = shard.create("receiver", vars(r#"{"orderId": "c"}"#));
    assert_eq!(shard.state.subscriptions().count(), 4);
    shard.publish("paid", "p", r#"{"total": 9}"#, 0);
    assert!(shard.state.instance(paid).is_none());
    shard.publish("cancel", "c", "{}", 0);
    assert!(
        shard.state.instance(cancelled).is_none(),
        "interrupted by the subprocess"
    );
    shard.assert_clean();
    shard.check_replay();
}

fn gateway_process() -> String {
    let body = format!(
        r#"<bpmn:startEvent id="start"/>{}<bpmn:eventBasedGateway id="gate"/>{}{}
           <bpmn:intermediateCatchEvent id="paid">
             <bpmn:messageEventDefinition messageRef="m-paid"/></bpmn:intermediateCatchEvent>
           <bpmn:intermediateCatchEvent id="timeout"><bpmn:timerEventDefinition>
             <bpmn:timeDuration>PT1H</bpmn:timeDuration></bpmn:timerEventDefinition>
           </bpmn:intermediateCatchEvent>{}{}<bpmn:endEvent id="done"/><bpmn:endEvent id="expired"/>"#,
        flow("f1", "start", "gate"),
        flow("f2", "gate", "paid"),
        flow("f3", "gate", "timeout"),
        flow("f4", "paid", "done"),
        flow("f5", "timeout", "expired"),
    );
    model("race", &body).replace(
        "</bpmn:process>",
        &format!(
            "</bpmn:process><bpmn:message id=\"m-paid\" name=\"paid\">{}</bpmn:message>",
            subscription("=orderId")
        ),
    )
}

#[test]
fn the_first_event_after_an_event_based_gateway_wins() {
    let mut shard = Shard::new();
    shard.deploy("race.bpmn", &gateway_process());
    let (by_message, _) = shard.create("race", vars(r#"{"orderId": "m"}"#));
    let (by_timer, _) = shard.create("race", vars(r#"{"orderId": "t"}"#));
    assert_eq!(shard.state.subscriptions().count(), 2);
    assert_eq!(shard.state.timers().count(), 2);
    let outcome = shard.publish("paid", "m", r#"{"paidAt": 1}"#, 0);
    assert!(shard.state.instance(by_message).is_none());
    let completed: Vec<&str> = outcome
        .events
        .iter()
        .filter_map(|event| match event {
            Event::ElementCompleted { element_id, .. } => Some(&**element_id),
            _ => None,
        })
        .collect();
    assert_eq!(completed, vec!["gate", "paid", "done", "race"]);
    assert_eq!(
        shard.state.timers().count(),
        1,
        "the losing timer is disarmed"
    );
    shard.fire_timers_until(shard.now_millis + 3_600_000);
    assert!(shard.state.instance(by_timer).is_none());
    shard.assert_clean();
    // The losing subscription was closed: a late message has nowhere to go.
    let late = shard.publish("paid", "t", "{}", 0);
    assert!(
        !late
            .events
            .iter()
            .any(|e| matches!(e, Event::MessageCorrelated { .. }))
    );
    assert!(matches!(late.response, Response::MessagePublished { .. }));
    shard.check_replay();
}

#[test]
fn a_non_interrupting_message_event_subprocess_runs_for_every_message() {
    let mut shard = Shard::new();
    let body = format!(
        r#"<bpmn:startEvent id="start"/>{}{}{}<bpmn:endEvent id="end"/>
           <bpmn:subProcess id="on-note" triggeredByEvent="true">
             <bpmn:startEvent id="note-start" isInterrupting="false">
               <bpmn:messageEventDefinition messageRef="m-note"/></bpmn:startEvent>
             {}{}{}<bpmn:endEvent id="note-end"/></bpmn:subProcess>"#,
        flow("f1", "start", "task"),
        service_task("task", "work"),
        flow("f2", "task", "end"),
        flow("f3", "note-start", "record"),
        service_task("record", "record"),
        flow("f4", "record", "note-end"),
    );
    let xml = model("noted", &body).replace(
        "</bpmn:process>",
        &format!(
            "</bpmn:process><bpmn:message id=\"m-note\" name=\"note\">{}</bpmn:message>",
            subscription("=orderId")
        ),
    );
    shard.deploy("noted.bpmn", &xml);
    let (instance, _) = shard.create("noted", vars(r#"{"orderId": "n"}"#));
    shard.publish("note", "n", r#"{"text": "one"}"#, 0);
    shard.publish("note", "n", r#"{"text": "two"}"#, 0);
    assert_eq!(
        shard.live_element_ids(instance),
        vec!["on-note", "on-note", "record", "record", "task"]
    );
    assert_eq!(shard.state.subscriptions().count(), 1, "still listening");
    for job in shard.activate("record", 10) {
        shard.complete(job.key, vars("{}"));
    }
    let job = shard.activate("work", 1).remove(0);
    shard.complete(job.key, vars("{}"));
    assert!(shard.state.instance(instance).is_none());
    shard.assert_clean();
    shard.check_replay();
}

#[test]
fn a_gateway_branch_whose_input_mapping_fails_keeps_its_message_until_resolved() {
    // The message that completed the branch's catch event is held with the incident: once
    // resolved, the event completes with it instead of waiting for another message.
    let mut shard = Shard::new();
    let body = format!(
        r#"<bpmn:startEvent id="start"/>{}<bpmn:eventBasedGateway id="gate"/>{}{}
           <bpmn:intermediateCatchEvent id="got-paid"><bpmn:extensionElements>
             <zeebe:ioMapping><zeebe:input source="=if fixed then 1 else [1..3]" target="x"/>
             </zeebe:ioMapping></bpmn:extensionElements>
             <bpmn:messageEventDefinition messageRef="m-paid"/></bpmn:intermediateCatchEvent>
           <bpmn:intermediateCatchEvent id="late"><bpmn:timerEventDefinition>
             <bpmn:timeDuration>PT1H</bpmn:timeDuration></bpmn:timerEventDefinition>
           </bpmn:intermediateCatchEvent>{}{}{}<bpmn:endEvent id="end"/>
           <bpmn:endEvent id="end-late"/>"#,
        flow("f1", "start", "gate"),
        flow("f2", "gate", "got-paid"),
        flow("f3", "gate", "late"),
        flow("f4", "got-paid", "after"),
        service_task("after", "after"),
        flow("f5", "after", "end"),
    );
    let body = format!("{body}{}", flow("f6", "late", "end-late"));
    let xml = model("branch", &body).replace(
        "</bpmn:process>",
        &format!(
            "</bpmn:process><bpmn:message id=\"m-paid\" name=\"paid\">{}</bpmn:message>",
            subscription("=orderId")
        ),
    );
    shard.deploy("branch.bpmn", &xml);
    let (instance, _) = shard.create("branch", vars(r#"{"orderId": "o1", "fixed": false}"#));
    shard.publish("paid", "o1", r#"{"amount": 7}"#, 0);
    let incident = shard.state.incidents().next().expect("an incident").clone();
    assert!(
        incident.message.contains("input mapping to `x`"),
        "{}",
        incident.message
    );
    assert_eq!(shard.state.subscriptions().count(), 0);
    shard.check_replay();
    shard.fix_and_resolve(instance, r#"{"fixed": true}"#, incident.key);
    // No new subscription: the event completed with the message it had.
    assert_eq!(shard.state.subscriptions().count(), 0);
    let jobs = shard.activate("after", 1);
    assert_eq!(jobs.len(), 1, "the branch went on");
    assert_eq!(jobs[0].variables()["amount"], serde_json::json!(7));
    shard.complete(jobs[0].key, vars("{}"));
    shard.assert_clean();
    shard.check_replay();
}
