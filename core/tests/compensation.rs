//! Compensation: throw and end events run the handlers of what completed in their scope,
//! wait for them, and never run one twice; `activityRef`; subprocesses (lifted, or kept as
//! one when they have a handler of their own); multi-instance activities; what a
//! terminated scope drops; a throw from an event subprocess; cancel and incidents while
//! handlers run; replay and snapshots throughout.

mod common;

use common::{Shard, flow, model, service_task, vars};
use ringflow_core::{Command, Key};

/// A service task `id` (job type `id`) with a compensation boundary event associated with
/// the service task `undo-{id}` (job type `undo-{id}`), and the `inputs` mapping given.
fn compensable(id: &str, inputs: &str) -> String {
    format!(
        r#"<bpmn:serviceTask id="{id}"><bpmn:extensionElements>
             <zeebe:taskDefinition type="{id}"/>
             <zeebe:ioMapping>{inputs}</zeebe:ioMapping>
           </bpmn:extensionElements></bpmn:serviceTask>
           <bpmn:boundaryEvent id="{id}-compensation" attachedToRef="{id}">
             <bpmn:compensateEventDefinition/></bpmn:boundaryEvent>
           <bpmn:serviceTask id="undo-{id}" isForCompensation="true"><bpmn:extensionElements>
             <zeebe:taskDefinition type="undo-{id}"/></bpmn:extensionElements>
           </bpmn:serviceTask>
           <bpmn:association id="{id}-association" associationDirection="One"
             sourceRef="{id}-compensation" targetRef="undo-{id}"/>"#
    )
}

fn throw(id: &str, activity_ref: Option<&str>) -> String {
    let reference = activity_ref
        .map(|activity| format!(r#" activityRef="{activity}""#))
        .unwrap_or_default();
    format!(
        r#"<bpmn:intermediateThrowEvent id="{id}">
             <bpmn:compensateEventDefinition{reference}/></bpmn:intermediateThrowEvent>"#
    )
}

fn compensation_end(id: &str) -> String {
    format!(r#"<bpmn:endEvent id="{id}"><bpmn:compensateEventDefinition/></bpmn:endEvent>"#)
}

/// Activates every job of `job_type` and completes it; returns the activated jobs.
fn work(shard: &mut Shard, job_type: &str) -> Vec<ringflow_core::ActivatedJob> {
    let jobs = shard.activate(job_type, 100);
    for job in &jobs {
        shard.complete(job.key, vars("{}"));
    }
    jobs
}

fn one(shard: &mut Shard, job_type: &str) -> ringflow_core::ActivatedJob {
    let mut jobs = work(shard, job_type);
    assert_eq!(jobs.len(), 1, "one `{job_type}` job");
    jobs.remove(0)
}

#[test]
fn a_throw_runs_the_handlers_of_completed_activities_waits_for_them_and_never_twice() {
    let mut shard = Shard::new();
    let body = format!(
        r#"<bpmn:startEvent id="start"/>{}{}{}{}{}{}{}{}{}{}{}<bpmn:endEvent id="end"/>"#,
        flow("f1", "start", "book"),
        compensable(
            "book",
            r#"<zeebe:input source="=order + &quot;-room&quot;" target="booking"/>"#
        ),
        flow("f2", "book", "charge"),
        compensable("charge", ""),
        flow("f3", "charge", "undo"),
        throw("undo", None),
        flow("f4", "undo", "after"),
        service_task("after", "after"),
        flow("f5", "after", "again"),
        throw("again", None),
        flow("f6", "again", "end"),
    );
    shard.deploy("saga.bpmn", &model("saga", &body));
    let (instance, _) = shard.create("saga", vars(r#"{"order": "o-1"}"#));
    one(&mut shard, "book");
    assert_eq!(shard.state.compensations().count(), 1);
    shard.check_replay();
    one(&mut shard, "charge");
    // The throw started both handlers inside itself and waits.
    assert_eq!(
        shard.live_element_ids(instance),
        vec!["undo", "undo-book", "undo-charge"]
    );
    assert_eq!(shard.state.compensations().count(), 0, "both were taken");
    shard.check_replay();
    let undo_book = shard.activate("undo-book", 10);
    assert_eq!(undo_book.len(), 1);
    assert_eq!(
        undo_book[0].variables()["booking"],
        "o-1-room",
        "the handler sees the activity's local variables as they were"
    );
    assert_eq!(undo_book[0].variables()["order"], "o-1");
    shard.complete(undo_book[0].key, vars("{}"));
    assert!(
        shard.activate("after", 10).is_empty(),
        "the throw waits for every handler"
    );
    one(&mut shard, "undo-charge");
    // Then it goes on; the second throw finds nothing left and passes.
    one(&mut shard, "after");
    assert!(shard.activate("undo-book", 10).is_empty());
    assert!(shard.activate("undo-charge", 10).is_empty());
    shard.assert_clean();
    shard.check_replay();
}

#[test]
fn activity_ref_compensates_that_activity_and_an_end_event_the_rest() {
    let mut shard = Shard::new();
    let body = format!(
        r#"<bpmn:startEvent id="start"/>{}{}{}{}{}{}{}{}"#,
        flow("f1", "start", "a"),
        compensable("a", ""),
        flow("f2", "a", "b"),
        compensable("b", ""),
        flow("f3", "b", "only-b"),
        throw("only-b", Some("b")),
        flow("f4", "only-b", "end"),
        compensation_end("end"),
    );
    shard.deploy("refs.bpmn", &model("refs", &body));
    let (instance, _) = shard.create("refs", vars("{}"));
    one(&mut shard, "a");
    one(&mut shard, "b");
    assert_eq!(
        shard.live_element_ids(instance),
        vec!["only-b", "undo-b"],
        "only b is compensated by the throw that names it"
    );
    one(&mut shard, "undo-b");
    // The end event compensates what is left (a), and the instance ends once it is done.
    assert_eq!(shard.live_element_ids(instance), vec!["end", "undo-a"]);
    one(&mut shard, "undo-a");
    shard.assert_clean();
    shard.check_replay();
}

/// start -> sub(start -> {inner} -> end) -> {after} -> end, with an input mapping on sub.
fn in_subprocess(sub_extra: &str, inner: &str, after: &str) -> String {
    let body = format!(
        r#"<bpmn:startEvent id="start"/>{}
           <bpmn:subProcess id="sub"><bpmn:extensionElements><zeebe:ioMapping>
             <zeebe:input source="=&quot;north&quot;" target="region"/>
             </zeebe:ioMapping></bpmn:extensionElements>
             <bpmn:startEvent id="sub-start"/>{}{inner}{}<bpmn:endEvent id="sub-end"/>
           </bpmn:subProcess>{sub_extra}{}{after}{}<bpmn:endEvent id="end"/>"#,
        flow("f1", "start", "sub"),
        flow("s1", "sub-start", "a"),
        flow("s2", "a", "sub-end"),
        flow("f2", "sub", "throw"),
        flow("f3", "throw", "end"),
    );
    model("outer", &body)
}

#[test]
fn a_completed_subprocess_lifts_its_compensations_with_its_variables() {
    for activity_ref in [None, Some("sub")] {
        let mut shard = Shard::new();
        let xml = in_subprocess("", &compensable("a", ""), &throw("throw", activity_ref));
        shard.deploy("sub.bpmn", &xml);
        let (instance, _) = shard.create("outer", vars("{}"));
        one(&mut shard, "a");
        let handler = shard.activate("undo-a", 10);
        assert_eq!(handler.len(), 1, "{activity_ref:?}");
        assert_eq!(
            handler[0].variables()["region"],
            "north",
            "the subprocess's local variables as it completed"
        );
        assert_eq!(shard.live_element_ids(instance), vec!["throw", "undo-a"]);
        shard.complete(handler[0].key, vars("{}"));
        shard.assert_clean();
        shard.check_replay();
    }
}

#[test]
fn a_subprocess_with_its_own_handler_is_compensated_as_one() {
    let mut shard = Shard::new();
    let own = r#"<bpmn:boundaryEvent id="sub-compensation" attachedToRef="sub">
             <bpmn:compensateEventDefinition/></bpmn:boundaryEvent>
           <bpmn:serviceTask id="undo-sub" isForCompensation="true"><bpmn:extensionElements>
             <zeebe:taskDefinition type="undo-sub"/></bpmn:extensionElements>
           </bpmn:serviceTask>
           <bpmn:association id="sub-association" sourceRef="sub-compensation"
             targetRef="undo-sub"/>"#;
    let xml = in_subprocess(own, &compensable("a", ""), &throw("throw", None));
    shard.deploy("sub.bpmn", &xml);
    let (instance, _) = shard.create("outer", vars("{}"));
    one(&mut shard, "a");
    assert_eq!(shard.live_element_ids(instance), vec!["throw", "undo-sub"]);
    assert!(
        shard.activate("undo-a", 10).is_empty(),
        "the subprocess's handler undoes it all"
    );
    one(&mut shard, "undo-sub");
    shard.assert_clean();
    shard.check_replay();
}

#[test]
fn a_multi_instance_activity_is_compensated_once_and_its_inner_scopes_each() {
    // The multi-instance task has the handler: it runs once.
    let mut shard = Shard::new();
    let multi = compensable("a", "").replacen(
        "</bpmn:extensionElements></bpmn:serviceTask>",
        r#"</bpmn:extensionElements><bpmn:multiInstanceLoopCharacteristics>
             <bpmn:extensionElements><zeebe:loopCharacteristics inputCollection="=items"
               inputElement="item"/></bpmn:extensionElements>
           </bpmn:multiInstanceLoopCharacteristics></bpmn:serviceTask>"#,
        1,
    );
    let body = format!(
        r#"<bpmn:startEvent id="start"/>{}{multi}{}{}{}<bpmn:endEvent id="end"/>"#,
        flow("f1", "start", "a"),
        flow("f2", "a", "throw"),
        throw("throw", None),
        flow("f3", "throw", "end"),
    );
    shard.deploy("multi.bpmn", &model("multi", &body));
    shard.create("multi", vars(r#"{"items": [1, 2, 3]}"#));
    assert_eq!(work(&mut shard, "a").len(), 3);
    one(&mut shard, "undo-a");
    shard.assert_clean();
    shard.check_replay();

    // A multi-instance subprocess without a handler: the task inside each inner instance
    // is compensated, each with its own item.
    let mut shard = Shard::new();
    let xml = in_subprocess("", &compensable("a", ""), &throw("throw", None)).replacen(
        "</zeebe:ioMapping></bpmn:extensionElements>",
        r#"</zeebe:ioMapping></bpmn:extensionElements>
           <bpmn:multiInstanceLoopCharacteristics isSequential="true">
             <bpmn:extensionElements><zeebe:loopCharacteristics inputCollection="=items"
               inputElement="item"/></bpmn:extensionElements>
           </bpmn:multiInstanceLoopCharacteristics>"#,
        1,
    );
    shard.deploy("sub.bpmn", &xml);
    shard.create("outer", vars(r#"{"items": ["x", "y", "z"]}"#));
    for _ in 0..3 {
        one(&mut shard, "a");
    }
    let handlers = shard.activate("undo-a", 10);
    let mut items: Vec<String> = handlers
        .iter()
        .map(|job| job.variables()["item"].as_str().unwrap().to_string())
        .collect();
    items.sort();
    assert_eq!(items, vec!["x", "y", "z"]);
    shard.check_replay();
    for job in handlers {
        shard.complete(job.key, vars("{}"));
    }
    shard.assert_clean();
    shard.check_replay();
}

#[test]
fn a_terminated_scope_and_an_active_activity_are_not_compensated() {
    // The subprocess is interrupted by a message after `a` completed inside it: `a` is
    // not compensated by the end event the boundary event leads to.
    let mut shard = Shard::new();
    let xml = in_subprocess(
        r#"<bpmn:boundaryEvent id="stop" attachedToRef="sub">
             <bpmn:messageEventDefinition messageRef="m"/></bpmn:boundaryEvent>
           <bpmn:sequenceFlow id="f9" sourceRef="stop" targetRef="stopped"/>
           <bpmn:endEvent id="stopped"><bpmn:compensateEventDefinition/></bpmn:endEvent>"#,
        &format!(
            "{}{}{}",
            compensable("a", ""),
            flow("s3", "a", "wait"),
            service_task("wait", "wait")
        ),
        &throw("throw", None),
    )
    .replace(
        r#"<bpmn:sequenceFlow id="s2" sourceRef="a" targetRef="sub-end"/>"#,
        "",
    )
    .replace(
        "<bpmn:endEvent id=\"sub-end\"/>",
        &format!(
            "{}<bpmn:endEvent id=\"sub-end\"/>",
            flow("s2", "wait", "sub-end")
        ),
    )
    .replace(
        "</bpmn:process>",
        r#"</bpmn:process><bpmn:message id="m" name="stop"><bpmn:extensionElements>
             <zeebe:subscription correlationKey="=id"/></bpmn:extensionElements></bpmn:message>"#,
    );
    shard.deploy("sub.bpmn", &xml);
    shard.create("outer", vars(r#"{"id": "k"}"#));
    one(&mut shard, "a");
    assert_eq!(shard.state.compensations().count(), 1);
    shard.publish("stop", "k", "{}", 0);
    assert_eq!(
        shard.state.compensations().count(),
        0,
        "dropped with the subprocess"
    );
    assert!(shard.activate("undo-a", 10).is_empty());
    shard.assert_clean();
    shard.check_replay();

    // In parallel: `a` completed, `b` is still active when the other branch throws.
    let mut shard = Shard::new();
    let body = format!(
        r#"<bpmn:startEvent id="start"/>{}<bpmn:parallelGateway id="split"/>{}{}{}{}{}{}{}
           {}<bpmn:endEvent id="end-a"/><bpmn:endEvent id="end-b"/>"#,
        flow("f1", "start", "split"),
        flow("f2", "split", "a"),
        flow("f3", "split", "b"),
        compensable("a", ""),
        compensable("b", ""),
        flow("f4", "a", "throw"),
        throw("throw", None),
        flow("f5", "throw", "end-a"),
        flow("f6", "b", "end-b"),
    );
    shard.deploy("par.bpmn", &model("par", &body));
    let (instance, _) = shard.create("par", vars("{}"));
    one(&mut shard, "a");
    assert_eq!(
        shard.live_element_ids(instance),
        vec!["b", "throw", "undo-a"]
    );
    one(&mut shard, "undo-a");
    one(&mut shard, "b");
    // `b` completed after the throw: kept until the instance completes, then dropped.
    assert!(shard.activate("undo-b", 10).is_empty());
    shard.assert_clean();
    assert_eq!(shard.state.compensations().count(), 0);
    shard.check_replay();
}

#[test]
fn a_throw_in_an_event_subprocess_compensates_the_scope_that_holds_it() {
    let mut shard = Shard::new();
    let body = format!(
        r#"<bpmn:startEvent id="start"/>{}{}{}{}{}<bpmn:endEvent id="end"/>
           <bpmn:subProcess id="on-cancel" triggeredByEvent="true">
             <bpmn:startEvent id="cancelled">
               <bpmn:messageEventDefinition messageRef="m"/></bpmn:startEvent>
             {}{}
           </bpmn:subProcess>"#,
        flow("f1", "start", "a"),
        compensable("a", ""),
        flow("f2", "a", "wait"),
        service_task("wait", "wait"),
        flow("f3", "wait", "end"),
        flow("e1", "cancelled", "undo-all"),
        compensation_end("undo-all"),
    );
    let xml = model("esp", &body).replace(
        "</bpmn:process>",
        r#"</bpmn:process><bpmn:message id="m" name="cancel"><bpmn:extensionElements>
             <zeebe:subscription correlationKey="=id"/></bpmn:extensionElements></bpmn:message>"#,
    );
    shard.deploy("esp.bpmn", &xml);
    let (instance, _) = shard.create("esp", vars(r#"{"id": "k"}"#));
    one(&mut shard, "a");
    shard.publish("cancel", "k", "{}", 0);
    assert_eq!(
        shard.live_element_ids(instance),
        vec!["on-cancel", "undo-a", "undo-all"]
    );
    one(&mut shard, "undo-a");
    shard.assert_clean();
    shard.check_replay();
}

#[test]
fn cancelling_while_handlers_run_ends_them_and_a_handler_incident_holds_the_throw() {
    let mut shard = Shard::new();
    let body = format!(
        r#"<bpmn:startEvent id="start"/>{}{}{}{}{}{}{}<bpmn:endEvent id="end"/>"#,
        flow("f1", "start", "a"),
        compensable("a", ""),
        flow("f2", "a", "throw"),
        throw("throw", None),
        flow("f3", "throw", "after"),
        service_task("after", "after"),
        flow("f4", "after", "end"),
    );
    shard.deploy("saga.bpmn", &model("saga", &body));
    let (instance, _) = shard.create("saga", vars("{}"));
    one(&mut shard, "a");
    assert!(shard.state.jobs().any(|job| &*job.job_type == "undo-a"));
    shard
        .run(Command::CancelInstance { key: instance })
        .expect("cancelled");
    shard.assert_clean();
    shard.check_replay();

    // A handler that fails for good raises an incident; the throw waits for it.
    let (instance, _) = shard.create("saga", vars("{}"));
    one(&mut shard, "a");
    let job = shard.activate("undo-a", 1).remove(0);
    shard
        .run(Command::FailJob {
            key: job.key,
            retries: 0,
            retry_backoff_millis: 0,
            message: "the room cannot be released".into(),
        })
        .expect("failed");
    assert_eq!(shard.state.incidents().count(), 1);
    assert!(shard.activate("after", 10).is_empty());
    let job_key: Key = job.key;
    shard
        .run(Command::UpdateJobRetries {
            key: job_key,
            retries: 1,
        })
        .expect("retries");
    let incident = shard.state.incidents().next().unwrap().key;
    shard
        .run(Command::ResolveIncident { key: incident })
        .expect("resolved");
    one(&mut shard, "undo-a");
    one(&mut shard, "after");
    assert!(shard.state.instance(instance).is_none());
    shard.assert_clean();
    shard.check_replay();
}

#[test]
fn a_handler_may_be_a_subprocess_or_a_multi_instance_task() {
    let mut shard = Shard::new();
    let handler_subprocess = r#"<bpmn:subProcess id="undo-a" isForCompensation="true">
             <bpmn:startEvent id="h-start"/>
             <bpmn:sequenceFlow id="h1" sourceRef="h-start" targetRef="release"/>
             <bpmn:serviceTask id="release"><bpmn:extensionElements>
               <zeebe:taskDefinition type="release"/></bpmn:extensionElements></bpmn:serviceTask>
             <bpmn:sequenceFlow id="h2" sourceRef="release" targetRef="notify"/>
             <bpmn:serviceTask id="notify"><bpmn:extensionElements>
               <zeebe:taskDefinition type="notify"/></bpmn:extensionElements>
               <bpmn:multiInstanceLoopCharacteristics><bpmn:extensionElements>
                 <zeebe:loopCharacteristics inputCollection="=people" inputElement="person"/>
               </bpmn:extensionElements></bpmn:multiInstanceLoopCharacteristics>
             </bpmn:serviceTask>
             <bpmn:sequenceFlow id="h3" sourceRef="notify" targetRef="h-end"/>
             <bpmn:endEvent id="h-end"/>
           </bpmn:subProcess>"#;
    let a = compensable("a", "");
    let start = a.find(r#"<bpmn:serviceTask id="undo-a""#).unwrap();
    let end = a[start..].find("</bpmn:serviceTask>").unwrap() + start + "</bpmn:serviceTask>".len();
    let a = format!("{}{handler_subprocess}{}", &a[..start], &a[end..]);
    let body = format!(
        r#"<bpmn:startEvent id="start"/>{}{a}{}{}"#,
        flow("f1", "start", "a"),
        flow("f2", "a", "end"),
        compensation_end("end"),
    );
    shard.deploy("handlers.bpmn", &model("handlers", &body));
    let (instance, _) = shard.create("handlers", vars(r#"{"people": ["ann", "bo"]}"#));
    one(&mut shard, "a");
    assert_eq!(
        shard.live_element_ids(instance),
        vec!["end", "release", "undo-a"]
    );
    one(&mut shard, "release");
    assert_eq!(work(&mut shard, "notify").len(), 2);
    shard.assert_clean();
    shard.check_replay();

    // A call activity as the handler: the instance it calls undoes the work.
    let child = model(
        "undo-child",
        &format!(
            r#"<bpmn:startEvent id="cs"/>{}{}{}<bpmn:endEvent id="ce"/>"#,
            flow("c1", "cs", "refund"),
            service_task("refund", "refund"),
            flow("c2", "refund", "ce"),
        ),
    );
    shard.deploy("child.bpmn", &child);
    let a = compensable("b", "");
    let start = a.find(r#"<bpmn:serviceTask id="undo-b""#).unwrap();
    let end = a[start..].find("</bpmn:serviceTask>").unwrap() + start + "</bpmn:serviceTask>".len();
    let call = r#"<bpmn:callActivity id="undo-b" isForCompensation="true"><bpmn:extensionElements>
             <zeebe:calledElement processId="undo-child"/></bpmn:extensionElements>
           </bpmn:callActivity>"#;
    let b = format!("{}{call}{}", &a[..start], &a[end..]);
    let body = format!(
        r#"<bpmn:startEvent id="start"/>{}{b}{}{}"#,
        flow("f1", "start", "b"),
        flow("f2", "b", "end"),
        compensation_end("end"),
    );
    shard.deploy("called.bpmn", &model("called", &body));
    let (instance, _) = shard.create("called", vars("{}"));
    one(&mut shard, "b");
    assert_eq!(shard.live_element_ids(instance), vec!["end", "undo-b"]);
    one(&mut shard, "refund");
    assert!(shard.state.instance(instance).is_none());
    shard.assert_clean();
    shard.check_replay();
}

#[test]
fn a_multi_instance_handler_runs_once_per_item() {
    let mut shard = Shard::new();
    let a = compensable("a", "");
    let multi = a.replacen(
        r#"<zeebe:taskDefinition type="undo-a"/></bpmn:extensionElements>"#,
        r#"<zeebe:taskDefinition type="undo-a"/></bpmn:extensionElements>
           <bpmn:multiInstanceLoopCharacteristics><bpmn:extensionElements>
             <zeebe:loopCharacteristics inputCollection="=rooms" inputElement="room"/>
           </bpmn:extensionElements></bpmn:multiInstanceLoopCharacteristics>"#,
        1,
    );
    assert_ne!(multi, a, "the handler became multi-instance");
    let body = format!(
        r#"<bpmn:startEvent id="start"/>{}{multi}{}{}"#,
        flow("f1", "start", "a"),
        flow("f2", "a", "end"),
        compensation_end("end"),
    );
    shard.deploy("rooms.bpmn", &model("rooms", &body));
    let (instance, _) = shard.create("rooms", vars(r#"{"rooms": ["r1", "r2", "r3"]}"#));
    one(&mut shard, "a");
    let jobs = shard.activate("undo-a", 10);
    let mut rooms: Vec<String> = jobs
        .iter()
        .map(|job| job.variables()["room"].as_str().unwrap().to_string())
        .collect();
    rooms.sort();
    assert_eq!(rooms, vec!["r1", "r2", "r3"]);
    for job in &jobs {
        shard.complete(job.key, vars("{}"));
    }
    assert!(shard.state.instance(instance).is_none());
    shard.assert_clean();
    shard.check_replay();
}

/// A parallel multi-instance subprocess of `n` items completes a compensable plain task in
/// each (its handler a plain task too); then `hold` (a job) and a compensation throw.
fn many(n: usize) -> (String, String) {
    let body = format!(
        r#"<bpmn:startEvent id="start"/>{}
           <bpmn:subProcess id="each"><bpmn:multiInstanceLoopCharacteristics>
             <bpmn:extensionElements><zeebe:loopCharacteristics
               inputCollection="=for i in 1..{n} return i" inputElement="item"/>
             </bpmn:extensionElements></bpmn:multiInstanceLoopCharacteristics>
             <bpmn:startEvent id="each-start"/>{}<bpmn:task id="book"/>
             <bpmn:boundaryEvent id="cb" attachedToRef="book">
               <bpmn:compensateEventDefinition/></bpmn:boundaryEvent>
             <bpmn:task id="undo-book" isForCompensation="true"/>
             <bpmn:association id="as" sourceRef="cb" targetRef="undo-book"/>
             {}<bpmn:endEvent id="each-end"/>
           </bpmn:subProcess>{}{}{}{}{}<bpmn:endEvent id="end"/>"#,
        flow("f1", "start", "each"),
        flow("e1", "each-start", "book"),
        flow("e2", "book", "each-end"),
        flow("f2", "each", "hold"),
        service_task("hold", "hold"),
        flow("f3", "hold", "undo"),
        throw("undo", None),
        flow("f4", "undo", "end"),
    );
    ("many".to_string(), model("many", &body))
}

#[test]
fn a_throw_starts_at_most_a_thousand_handlers_per_command_and_the_rest_after() {
    use ringflow_core::{Effect, RejectionCode};
    let mut shard = Shard::new();
    let (id, xml) = many(2_500);
    shard.deploy("many.bpmn", &xml);
    let (instance, _) = shard.create(&id, vars("{}"));
    assert_eq!(shard.state.compensations().count(), 2_500);
    let hold = shard.activate("hold", 1).remove(0);
    let outcome = shard.complete(hold.key, vars("{}"));
    let continue_key = |outcome: &ringflow_core::Outcome| {
        outcome.effects.iter().find_map(|effect| match effect {
            Effect::ContinueCompensation { key, .. } => Some(*key),
            _ => None,
        })
    };
    let throw = continue_key(&outcome).expect("the rest is left for ContinueCompensation");
    assert_eq!(
        shard.state.compensations().count(),
        1_500,
        "waiting under the throw"
    );
    assert!(shard.state.compensation_throw_pending(throw));
    // The handlers left to start are the throw's tokens (its 1,000 handlers are done).
    assert_eq!(shard.state.element_instance(throw).unwrap().tokens, 1_500);
    assert_eq!(shard.state.compensation_throws(), vec![throw]);
    assert_eq!(shard.live_element_ids(instance), vec!["undo"]);
    shard.check_replay();
    let outcome = shard
        .run(Command::ContinueCompensation { key: throw })
        .expect("continues");
    assert_eq!(continue_key(&outcome), Some(throw));
    assert_eq!(shard.state.compensations().count(), 500);
    let outcome = shard
        .run(Command::ContinueCompensation { key: throw })
        .expect("continues");
    assert_eq!(continue_key(&outcome), None, "all started");
    assert!(shard.state.instance(instance).is_none(), "and all done");
    let stale = shard.run(Command::ContinueCompensation { key: throw });
    assert_eq!(stale.expect_err("gone").code, RejectionCode::InvalidState);
    shard.assert_clean();
    shard.check_replay();

    // Cancelled between two of its commands: what waits under the throw goes with it.
    let (instance, _) = shard.create(&id, vars("{}"));
    let hold = shard.activate("hold", 1).remove(0);
    let outcome = shard.complete(hold.key, vars("{}"));
    let throw = continue_key(&outcome).expect("more left");
    shard
        .run(Command::CancelInstance { key: instance })
        .expect("cancelled");
    assert_eq!(shard.state.compensations().count(), 0);
    assert!(!shard.state.compensation_throw_pending(throw));
    shard.assert_clean();
    shard.check_replay();
}
