//! BPMN errors: boundary events, event subprocesses (which take precedence), error end
//! events, catch-all catches, and incidents for errors nothing catches.

mod common;

use common::{Shard, flow, model, service_task, vars};
use ringflow_core::{Command, Event, RejectionCode};

const ERRORS: &str = r#"<bpmn:error id="declined" errorCode="DECLINED"/>"#;

fn with_errors(process_id: &str, body: &str) -> String {
    model(process_id, body).replace(
        "</bpmn:definitions>",
        &format!("{ERRORS}</bpmn:definitions>"),
    )
}

fn throw(shard: &mut Shard, job: ringflow_core::Key, code: &str) -> ringflow_core::Outcome {
    shard
        .run(Command::ThrowError {
            key: job,
            error_code: code.to_string(),
            message: "no".to_string(),
        })
        .expect("throw error")
}

fn boundary_process(reference: &str) -> String {
    with_errors(
        "pay",
        &format!(
            r#"<bpmn:startEvent id="start"/>{}{}{}<bpmn:endEvent id="end"/>
               <bpmn:boundaryEvent id="caught" attachedToRef="charge">
                 <bpmn:errorEventDefinition {reference}/></bpmn:boundaryEvent>
               {}{}{}<bpmn:endEvent id="failed"/>"#,
            flow("f1", "start", "charge"),
            service_task("charge", "charge"),
            flow("f2", "charge", "end"),
            flow("f3", "caught", "notify"),
            service_task("notify", "notify"),
            flow("f4", "notify", "failed"),
        ),
    )
}

#[test]
fn an_error_boundary_event_takes_over_from_the_task() {
    let mut shard = Shard::new();
    shard.deploy("pay.bpmn", &boundary_process(r#"errorRef="declined""#));
    let (instance, _) = shard.create("pay", vars("{}"));
    let job = shard.activate("charge", 1).remove(0);
    let outcome = throw(&mut shard, job.key, "DECLINED");
    assert!(outcome.events.iter().any(|e| matches!(e,
        Event::ElementTerminated { element_id, .. } if &**element_id == "charge")));
    assert!(outcome.events.iter().any(|e| matches!(e,
        Event::ElementActivated { element_id, .. } if &**element_id == "caught")));
    let notify = shard.activate("notify", 1).remove(0);
    shard.complete(notify.key, vars("{}"));
    assert!(shard.state.instance(instance).is_none());
    shard.check_replay();
}

#[test]
fn a_code_nothing_catches_is_an_incident() {
    let mut shard = Shard::new();
    shard.deploy("pay.bpmn", &boundary_process(r#"errorRef="declined""#));
    let (instance, _) = shard.create("pay", vars("{}"));
    let job = shard.activate("charge", 1).remove(0);
    let outcome = throw(&mut shard, job.key, "TIMEOUT");
    assert!(outcome.events.iter().any(|e| matches!(e,
        Event::IncidentCreated { message, .. } if message.contains("TIMEOUT"))));
    assert!(shard.state.instance(instance).is_some());
    let again = shard.run(Command::ThrowError {
        key: job.key,
        error_code: "DECLINED".to_string(),
        message: String::new(),
    });
    assert_eq!(
        again.expect_err("not activated").code,
        RejectionCode::InvalidState
    );
    shard.check_replay();
}

#[test]
fn a_catch_without_reference_catches_every_code() {
    let mut shard = Shard::new();
    shard.deploy("pay.bpmn", &boundary_process(""));
    shard.create("pay", vars("{}"));
    let job = shard.activate("charge", 1).remove(0);
    throw(&mut shard, job.key, "ANYTHING");
    assert_eq!(shard.activate("notify", 1).len(), 1);
    shard.check_replay();
}

#[test]
fn an_event_subprocess_inside_takes_precedence_over_a_boundary_outside() {
    let body = format!(
        r#"<bpmn:startEvent id="start"/>{}
           <bpmn:subProcess id="sub">
             <bpmn:startEvent id="s2"/>{}{}{}<bpmn:endEvent id="e2"/>
             <bpmn:subProcess id="handler" triggeredByEvent="true">
               <bpmn:startEvent id="hs"><bpmn:errorEventDefinition errorRef="declined"/></bpmn:startEvent>
               {}{}{}<bpmn:endEvent id="he"/>
             </bpmn:subProcess>
           </bpmn:subProcess>
           <bpmn:boundaryEvent id="outer" attachedToRef="sub"><bpmn:errorEventDefinition/></bpmn:boundaryEvent>
           {}{}{}<bpmn:endEvent id="end"/><bpmn:endEvent id="outer-end"/>"#,
        flow("f1", "start", "sub"),
        flow("g1", "s2", "charge"),
        service_task("charge", "charge"),
        flow("g2", "charge", "e2"),
        flow("h1", "hs", "repair"),
        service_task("repair", "repair"),
        flow("h2", "repair", "he"),
        flow("f2", "sub", "end"),
        flow("f3", "outer", "outer-end"),
        "",
    );
    let mut shard = Shard::new();
    shard.deploy("nested.bpmn", &with_errors("nested", &body));
    let (instance, _) = shard.create("nested", vars("{}"));
    let job = shard.activate("charge", 1).remove(0);
    let outcome = throw(&mut shard, job.key, "DECLINED");
    assert!(outcome.events.iter().any(|e| matches!(e,
        Event::ElementActivated { element_id, .. } if &**element_id == "handler")));
    assert!(!outcome.events.iter().any(|e| matches!(e,
        Event::ElementActivated { element_id, .. } if &**element_id == "outer")));
    let repair = shard.activate("repair", 1).remove(0);
    let done = shard.complete(repair.key, vars("{}"));
    // The handler ends the subprocess, which then completes normally.
    assert!(done.events.iter().any(|e| matches!(e,
        Event::ElementCompleted { element_id, .. } if &**element_id == "sub")));
    assert!(shard.state.instance(instance).is_none());
    shard.check_replay();
}

#[test]
fn an_error_end_event_is_caught_by_a_boundary_on_its_subprocess() {
    let body = format!(
        r#"<bpmn:startEvent id="start"/>{}
           <bpmn:subProcess id="sub"><bpmn:startEvent id="s2"/>{}
             <bpmn:endEvent id="boom"><bpmn:errorEventDefinition errorRef="declined"/></bpmn:endEvent>
           </bpmn:subProcess>
           <bpmn:boundaryEvent id="caught" attachedToRef="sub"><bpmn:errorEventDefinition errorRef="declined"/></bpmn:boundaryEvent>
           {}{}{}{}<bpmn:endEvent id="end"/><bpmn:endEvent id="handled"/>"#,
        flow("f1", "start", "sub"),
        flow("g1", "s2", "boom"),
        flow("f2", "sub", "end"),
        flow("f3", "caught", "fix"),
        service_task("fix", "fix"),
        flow("f4", "fix", "handled"),
    );
    let mut shard = Shard::new();
    shard.deploy("end.bpmn", &with_errors("end-error", &body));
    let (instance, created) = shard.create("end-error", vars("{}"));
    assert!(created.events.iter().any(|e| matches!(e,
        Event::ElementTerminated { element_id, .. } if &**element_id == "sub")));
    let fix = shard.activate("fix", 1).remove(0);
    shard.complete(fix.key, vars("{}"));
    assert!(shard.state.instance(instance).is_none());
    shard.check_replay();
}
