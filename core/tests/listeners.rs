//! Execution listeners: start listeners run after the input mappings and before the
//! element's work, end listeners after the output mappings; one after the other, in
//! document order; their variables (local for start, propagated for end); on the process,
//! subprocesses, gateways, catch events and multi-instance activities; triggers held while
//! start listeners run; incidents, retries, cancel; replay and snapshots throughout.

mod common;

use common::{Shard, flow, model, vars};
use ringflow_core::{ActivatedJob, Command, RejectionCode};

/// `<zeebe:executionListener>` entries: `(event, type)` pairs.
fn listeners(entries: &[(&str, &str)]) -> String {
    let inner: String = entries
        .iter()
        .map(|(event, job_type)| {
            format!(r#"<zeebe:executionListener eventType="{event}" type="{job_type}"/>"#)
        })
        .collect();
    format!("<zeebe:executionListeners>{inner}</zeebe:executionListeners>")
}

/// A service task `id` of job type `id` with listeners and extra extension elements.
fn task(id: &str, entries: &[(&str, &str)], extra: &str) -> String {
    format!(
        r#"<bpmn:serviceTask id="{id}"><bpmn:extensionElements>
             <zeebe:taskDefinition type="{id}"/>{}{extra}
           </bpmn:extensionElements></bpmn:serviceTask>"#,
        listeners(entries)
    )
}

/// The one job of `job_type`, activated (it must be there, alone).
fn one_job(shard: &mut Shard, job_type: &str) -> ActivatedJob {
    let mut jobs = shard.activate(job_type, 10);
    assert_eq!(jobs.len(), 1, "one `{job_type}` job: {jobs:?}");
    jobs.remove(0)
}

/// Completes the one job of `job_type` with `variables`; returns it as activated.
fn work(shard: &mut Shard, job_type: &str, variables: &str) -> ActivatedJob {
    let job = one_job(shard, job_type);
    shard.complete(job.key, vars(variables));
    shard.check_replay();
    job
}

fn no_job(shard: &mut Shard, job_type: &str) {
    assert!(
        shard.activate(job_type, 10).is_empty(),
        "no `{job_type}` job yet"
    );
}

/// A model whose definitions also hold `definitions` (messages) after the process.
fn model_with(process_id: &str, body: &str, definitions: &str) -> String {
    model(process_id, body).replace("</bpmn:process>", &format!("</bpmn:process>{definitions}"))
}

/// A message `id` named `name`, correlated by the variable `id` when `keyed`.
fn message(id: &str, name: &str, keyed: bool) -> String {
    let subscription = if keyed {
        r#"<bpmn:extensionElements><zeebe:subscription correlationKey="=id"/>
           </bpmn:extensionElements>"#
    } else {
        ""
    };
    format!(r#"<bpmn:message id="{id}" name="{name}">{subscription}</bpmn:message>"#)
}

fn corpus_file(name: &str) -> String {
    let dir = std::env::var_os("RINGFLOW_BPMN_CORPUS")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| {
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/bpmn-corpus")
        });
    std::fs::read_to_string(dir.join(name)).expect("the corpus file is readable")
}

#[test]
fn listeners_run_in_document_order_around_the_task_with_their_retries() {
    // Zeebe's own model test: two start and two end listeners on a service task.
    let mut shard = Shard::new();
    shard.deploy(
        "listeners.bpmn",
        &corpus_file("zeebe-model__ZeebeExecutionListenersTest.bpmn"),
    );
    let (instance, _) = shard.create("Process_1a53s9c", vars("{}"));
    let order = [
        ("task_start_el_1", 4),
        ("task_start_el_2", 8),
        ("task_type", 8),
        ("task_end_el_1", 5),
        ("task_end_el_2", 3),
    ];
    for (n, (job_type, retries)) in order.iter().enumerate() {
        // Only the current one is there: each waits for the one before.
        for (later, _) in &order[n + 1..] {
            no_job(&mut shard, later);
        }
        let job = work(&mut shard, job_type, "{}");
        assert_eq!(job.retries, *retries, "{job_type}");
        assert_eq!(&*job.element_id, "service_task");
        assert_eq!(
            shard.live_element_ids(instance),
            if n + 1 < order.len() {
                vec!["service_task".to_string()]
            } else {
                Vec::new()
            }
        );
    }
    shard.assert_clean();
}

#[test]
fn start_listener_variables_are_local_and_end_listener_variables_propagate() {
    let mut shard = Shard::new();
    let body = format!(
        r#"<bpmn:startEvent id="start"/>{}{}{}{}{}<bpmn:endEvent id="end"/>"#,
        flow("f1", "start", "task"),
        task(
            "task",
            &[("start", "before"), ("end", "after")],
            r#"<zeebe:ioMapping><zeebe:input source="=base + 1" target="mapped"/>
               <zeebe:output source="=result" target="out"/></zeebe:ioMapping>"#
        ),
        flow("f2", "task", "next"),
        task("next", &[], ""),
        flow("f3", "next", "end"),
    );
    shard.deploy("vars.bpmn", &model("vars", &body));
    shard.create("vars", vars(r#"{"base": 1}"#));
    // The start listener sees the input mappings' result.
    let before = work(&mut shard, "before", r#"{"fromStart": "s"}"#);
    assert_eq!(before.variables()["mapped"], serde_json::json!(2));
    // The task sees the start listener's variable, as a local one.
    let job = work(&mut shard, "task", r#"{"result": 7}"#);
    assert_eq!(job.variables()["fromStart"], serde_json::json!("s"));
    // The end listener sees the output mapping's result and the task's locals.
    let after = work(&mut shard, "after", r#"{"fromEnd": "e"}"#);
    assert_eq!(after.variables()["out"], serde_json::json!(7));
    assert_eq!(after.variables()["fromStart"], serde_json::json!("s"));
    // After the task: the end listener's variable propagated, the start listener's was
    // local to the task and went with it.
    let next = one_job(&mut shard, "next");
    assert_eq!(next.variables()["fromEnd"], serde_json::json!("e"));
    assert_eq!(next.variables()["out"], serde_json::json!(7));
    assert!(!next.variables().contains_key("fromStart"), "{next:?}");
    assert!(!next.variables().contains_key("mapped"), "{next:?}");
    shard.complete(next.key, vars("{}"));
    shard.check_replay();
    shard.assert_clean();
}

#[test]
fn a_gateway_start_listener_sets_what_its_conditions_read() {
    let mut shard = Shard::new();
    let body = format!(
        r#"<bpmn:startEvent id="start"/>{}
           <bpmn:exclusiveGateway id="choose" default="low-flow"><bpmn:extensionElements>{}
           </bpmn:extensionElements></bpmn:exclusiveGateway>
           <bpmn:sequenceFlow id="high-flow" sourceRef="choose" targetRef="high">
             <bpmn:conditionExpression>=score &gt; 5</bpmn:conditionExpression>
           </bpmn:sequenceFlow>{}{}{}<bpmn:endEvent id="end"/>{}{}"#,
        flow("f1", "start", "choose"),
        listeners(&[("start", "score")]),
        flow("low-flow", "choose", "low"),
        task("high", &[], ""),
        task("low", &[], ""),
        flow("f2", "high", "end"),
        flow("f3", "low", "end"),
    );
    shard.deploy("gateway.bpmn", &model("gateway", &body));
    shard.create("gateway", vars("{}"));
    shard.create("gateway", vars("{}"));
    let jobs = shard.activate("score", 10);
    assert_eq!(jobs.len(), 2);
    shard.complete(jobs[0].key, vars(r#"{"score": 9}"#));
    shard.complete(jobs[1].key, vars(r#"{"score": 1}"#));
    shard.check_replay();
    work(&mut shard, "high", "{}");
    work(&mut shard, "low", "{}");
    shard.assert_clean();
}

#[test]
fn a_start_listener_sets_the_correlation_key_before_the_subscription_opens() {
    let mut shard = Shard::new();
    let body = format!(
        r#"<bpmn:startEvent id="start"/>{}
           <bpmn:intermediateCatchEvent id="wait"><bpmn:extensionElements>{}
           </bpmn:extensionElements><bpmn:messageEventDefinition messageRef="m"/>
           </bpmn:intermediateCatchEvent>{}<bpmn:endEvent id="end"/>"#,
        flow("f1", "start", "wait"),
        listeners(&[("start", "lookup"), ("end", "done")]),
        flow("f2", "wait", "end"),
    );
    let paid = r#"<bpmn:message id="m" name="paid"><bpmn:extensionElements>
             <zeebe:subscription correlationKey="=orderId"/></bpmn:extensionElements>
           </bpmn:message>"#;
    shard.deploy("catch.bpmn", &model_with("catch", &body, paid));
    let (instance, _) = shard.create("catch", vars("{}"));
    // No subscription before the listener: the correlation key is not known yet.
    assert!(shard.state.subscriptions().next().is_none());
    work(&mut shard, "lookup", r#"{"orderId": "o-7"}"#);
    assert_eq!(
        shard
            .state
            .subscriptions()
            .map(|s| s.correlation_key.clone())
            .collect::<Vec<_>>(),
        vec!["o-7".to_string()]
    );
    shard.publish("paid", "o-7", r#"{"amount": 3}"#, 0);
    shard.check_replay();
    // The end listener runs once the message came, with its variables.
    let done = work(&mut shard, "done", "{}");
    assert_eq!(done.variables()["amount"], serde_json::json!(3));
    assert!(shard.live_element_ids(instance).is_empty());
    shard.assert_clean();
}

#[test]
fn process_listeners_run_before_the_start_event_and_after_the_end_event() {
    let mut shard = Shard::new();
    let body = format!(
        r#"<bpmn:extensionElements>{}</bpmn:extensionElements>
           <bpmn:startEvent id="start"/>{}{}{}<bpmn:endEvent id="end"/>"#,
        listeners(&[("start", "process-start"), ("end", "process-end")]),
        flow("f1", "start", "task"),
        task("task", &[], ""),
        flow("f2", "task", "end"),
    );
    shard.deploy("process.bpmn", &model("process", &body));
    let (instance, _) = shard.create("process", vars(r#"{"a": 1}"#));
    // Nothing inside the process started yet.
    assert!(shard.live_element_ids(instance).is_empty());
    no_job(&mut shard, "task");
    let start = work(&mut shard, "process-start", r#"{"b": 2}"#);
    assert_eq!(start.variables()["a"], serde_json::json!(1));
    assert_eq!(&*start.element_id, "process");
    let job = work(&mut shard, "task", r#"{"c": 3}"#);
    assert_eq!(job.variables()["b"], serde_json::json!(2));
    // Every element ended; the instance waits for its end listener.
    assert!(shard.live_element_ids(instance).is_empty());
    assert!(shard.state.instance(instance).is_some());
    let end = work(&mut shard, "process-end", "{}");
    assert_eq!(end.variables()["c"], serde_json::json!(3));
    assert!(shard.state.instance(instance).is_none());
    shard.assert_clean();
}

#[test]
fn a_message_started_process_holds_the_message_while_its_start_listener_runs() {
    let mut shard = Shard::new();
    let body = format!(
        r#"<bpmn:extensionElements>{}</bpmn:extensionElements>
           <bpmn:startEvent id="start"><bpmn:messageEventDefinition messageRef="m"/>
           </bpmn:startEvent>{}{}{}<bpmn:endEvent id="end"/>"#,
        listeners(&[("start", "process-start")]),
        flow("f1", "start", "task"),
        task("task", &[], ""),
        flow("f2", "task", "end"),
    );
    let placed = message("m", "order-placed", false);
    shard.deploy("message.bpmn", &model_with("message", &body, &placed));
    shard.publish("order-placed", "", r#"{"order": 41}"#, 0);
    assert_eq!(shard.state.instances().count(), 1);
    // The snapshot keeps the held message (check_replay restores it).
    let start = work(&mut shard, "process-start", "{}");
    assert!(!start.variables().contains_key("order"), "{start:?}");
    let job = work(&mut shard, "task", "{}");
    assert_eq!(job.variables()["order"], serde_json::json!(41));
    shard.assert_clean();
}

#[test]
fn an_event_subprocess_and_a_gateway_branch_hold_their_trigger_during_start_listeners() {
    let mut shard = Shard::new();
    let body = format!(
        r#"<bpmn:startEvent id="start"/>{}<bpmn:eventBasedGateway id="gate"/>{}{}
           <bpmn:intermediateCatchEvent id="got-go"><bpmn:extensionElements>{}
             </bpmn:extensionElements><bpmn:messageEventDefinition messageRef="go"/>
           </bpmn:intermediateCatchEvent>
           <bpmn:intermediateCatchEvent id="late"><bpmn:timerEventDefinition>
             <bpmn:timeDuration>PT1H</bpmn:timeDuration></bpmn:timerEventDefinition>
           </bpmn:intermediateCatchEvent>{}{}<bpmn:endEvent id="end"/>
           <bpmn:endEvent id="end-late"/>
           <bpmn:subProcess id="on-poke" triggeredByEvent="true"><bpmn:extensionElements>{}
             </bpmn:extensionElements>
             <bpmn:startEvent id="poked" isInterrupting="false">
               <bpmn:messageEventDefinition messageRef="poke"/></bpmn:startEvent>{}{}
             <bpmn:endEvent id="poke-end"/>{}
           </bpmn:subProcess>"#,
        flow("f1", "start", "gate"),
        flow("f2", "gate", "got-go"),
        flow("f3", "gate", "late"),
        listeners(&[("start", "go-start")]),
        flow("f4", "got-go", "end"),
        flow("f5", "late", "end-late"),
        listeners(&[("start", "esp-start")]),
        flow("p1", "poked", "handle"),
        task("handle", &[], ""),
        flow("p2", "handle", "poke-end"),
    );
    let messages = format!(
        "{}{}",
        message("poke", "poke", true),
        message("go", "go", true)
    );
    shard.deploy("held.bpmn", &model_with("held", &body, &messages));
    let (instance, _) = shard.create("held", vars(r#"{"id": "k"}"#));
    shard.publish("poke", "k", r#"{"poked": "yes"}"#, 0);
    shard.check_replay();
    // The event subprocess waits for its start listener; its start event has not run.
    assert_eq!(
        shard.live_element_ids(instance),
        vec!["gate".to_string(), "on-poke".to_string()]
    );
    work(&mut shard, "esp-start", "{}");
    let handle = work(&mut shard, "handle", "{}");
    assert_eq!(handle.variables()["poked"], serde_json::json!("yes"));
    // The gateway's message branch: the catch event runs its start listener with the
    // message held, then completes with the message's variables.
    shard.publish("go", "k", r#"{"went": true}"#, 0);
    shard.check_replay();
    assert_eq!(shard.live_element_ids(instance), vec!["got-go".to_string()]);
    assert!(
        shard.state.timers().next().is_none(),
        "the other branch closed"
    );
    let start = work(&mut shard, "go-start", "{}");
    assert!(!start.variables().contains_key("went"), "{start:?}");
    assert!(shard.state.instance(instance).is_none());
    shard.assert_clean();
}

#[test]
fn listeners_run_around_each_inner_instance_of_a_multi_instance_activity() {
    let mut shard = Shard::new();
    let body = format!(
        r#"<bpmn:startEvent id="start"/>{}
           <bpmn:serviceTask id="each"><bpmn:extensionElements>
             <zeebe:taskDefinition type="each"/>{}</bpmn:extensionElements>
             <bpmn:multiInstanceLoopCharacteristics isSequential="true">
               <bpmn:extensionElements><zeebe:loopCharacteristics
                 inputCollection="=[10, 20, 30]" inputElement="item"/></bpmn:extensionElements>
             </bpmn:multiInstanceLoopCharacteristics>
           </bpmn:serviceTask>{}<bpmn:endEvent id="end"/>"#,
        flow("f1", "start", "each"),
        listeners(&[("start", "each-start"), ("end", "each-end")]),
        flow("f2", "each", "end"),
    );
    shard.deploy("multi.bpmn", &model("multi", &body));
    shard.create("multi", vars("{}"));
    for item in [10, 20, 30] {
        let start = work(&mut shard, "each-start", "{}");
        assert_eq!(start.variables()["item"], serde_json::json!(item));
        work(&mut shard, "each", "{}");
        let end = work(&mut shard, "each-end", "{}");
        assert_eq!(end.variables()["item"], serde_json::json!(item));
    }
    shard.assert_clean();
}

#[test]
fn end_listeners_of_a_subprocess_run_with_its_event_waits_closed() {
    let mut shard = Shard::new();
    let body = format!(
        r#"<bpmn:startEvent id="start"/>{}
           <bpmn:subProcess id="sub"><bpmn:extensionElements>{}</bpmn:extensionElements>
             <bpmn:startEvent id="sub-start"/>{}{}{}<bpmn:endEvent id="sub-end"/>
           </bpmn:subProcess>
           <bpmn:boundaryEvent id="stopped" attachedToRef="sub">
             <bpmn:messageEventDefinition messageRef="m"/></bpmn:boundaryEvent>{}{}
           <bpmn:endEvent id="end"/><bpmn:endEvent id="end-stopped"/>"#,
        flow("f1", "start", "sub"),
        listeners(&[("end", "sub-end-listener")]),
        flow("s1", "sub-start", "inner"),
        task("inner", &[], ""),
        flow("s2", "inner", "sub-end"),
        flow("f2", "sub", "end"),
        flow("f3", "stopped", "end-stopped"),
    );
    let stop = message("m", "stop", true);
    shard.deploy("sub.bpmn", &model_with("subp", &body, &stop));
    let (instance, _) = shard.create("subp", vars(r#"{"id": "x"}"#));
    assert_eq!(shard.state.subscriptions().count(), 1);
    work(&mut shard, "inner", "{}");
    // Done: the boundary event's subscription closed before the end listener.
    assert_eq!(shard.state.subscriptions().count(), 0);
    shard.publish("stop", "x", "{}", 60_000);
    assert_eq!(shard.live_element_ids(instance), vec!["sub".to_string()]);
    work(&mut shard, "sub-end-listener", "{}");
    assert!(shard.state.instance(instance).is_none(), "ended at `end`");
    shard.assert_clean();
}

#[test]
fn a_failed_listener_job_is_an_incident_and_resolving_retries_only_that_listener() {
    let mut shard = Shard::new();
    let body = format!(
        r#"<bpmn:startEvent id="start"/>{}{}{}<bpmn:endEvent id="end"/>"#,
        flow("f1", "start", "task"),
        task("task", &[("start", "first"), ("start", "second")], ""),
        flow("f2", "task", "end"),
    );
    shard.deploy("fail.bpmn", &model("fail", &body));
    shard.create("fail", vars("{}"));
    work(&mut shard, "first", "{}");
    let second = one_job(&mut shard, "second");
    shard
        .run(Command::FailJob {
            key: second.key,
            retries: 0,
            retry_backoff_millis: 0,
            message: "down".into(),
        })
        .expect("fail");
    let incident = shard.state.incidents().next().expect("an incident").key;
    shard
        .run(Command::UpdateJobRetries {
            key: second.key,
            retries: 1,
        })
        .expect("retries");
    shard
        .run(Command::ResolveIncident { key: incident })
        .expect("resolve");
    // Only the failed listener runs again, with the same job.
    no_job(&mut shard, "first");
    let again = work(&mut shard, "second", "{}");
    assert_eq!(again.key, second.key);
    work(&mut shard, "task", "{}");
    shard.assert_clean();
}

#[test]
fn a_listener_type_that_fails_to_evaluate_is_an_incident_that_runs_the_listeners_again() {
    let mut shard = Shard::new();
    let body = format!(
        r#"<bpmn:startEvent id="start"/>{}{}{}<bpmn:endEvent id="end"/>"#,
        flow("f1", "start", "task"),
        task("task", &[("start", "first"), ("start", "=kind")], ""),
        flow("f2", "task", "end"),
    );
    shard.deploy("feel.bpmn", &model("feel", &body));
    let (instance, _) = shard.create("feel", vars("{}"));
    work(&mut shard, "first", "{}");
    let incident = shard.state.incidents().next().expect("an incident").clone();
    assert!(
        incident.message.contains("job type"),
        "{}",
        incident.message
    );
    shard.fix_and_resolve(instance, r#"{"kind": "dynamic"}"#, incident.key);
    // Every start listener runs again, as Camunda 8 does.
    work(&mut shard, "first", "{}");
    work(&mut shard, "dynamic", "{}");
    work(&mut shard, "task", "{}");
    shard.assert_clean();
}

#[test]
fn a_listener_job_cannot_throw_a_bpmn_error_and_cancel_removes_it() {
    let mut shard = Shard::new();
    let body = format!(
        r#"<bpmn:startEvent id="start"/>{}{}{}<bpmn:endEvent id="end"/>"#,
        flow("f1", "start", "task"),
        task("task", &[("end", "cleanup")], ""),
        flow("f2", "task", "end"),
    );
    shard.deploy("cancel.bpmn", &model("cancel", &body));
    let (instance, _) = shard.create("cancel", vars("{}"));
    work(&mut shard, "task", "{}");
    let cleanup = one_job(&mut shard, "cleanup");
    let rejection = shard
        .run(Command::ThrowError {
            key: cleanup.key,
            error_code: "E".into(),
            message: String::new(),
        })
        .expect_err("refused");
    assert_eq!(rejection.code, RejectionCode::InvalidState);
    assert!(rejection.message.contains("listener"), "{rejection}");
    shard
        .run(Command::CancelInstance { key: instance })
        .expect("cancel");
    shard.check_replay();
    shard.assert_clean();
    let gone = shard
        .run(Command::CompleteJob {
            key: cleanup.key,
            variables: vars("{}"),
        })
        .expect_err("the job went with the instance");
    assert_eq!(gone.code, RejectionCode::JobNotFound);
}

#[test]
fn a_call_activity_child_runs_its_process_listeners() {
    let mut shard = Shard::new();
    let child = format!(
        r#"<bpmn:extensionElements>{}</bpmn:extensionElements>
           <bpmn:startEvent id="start"/>{}<bpmn:endEvent id="end"/>"#,
        listeners(&[("start", "child-start"), ("end", "child-end")]),
        flow("f1", "start", "end"),
    );
    shard.deploy("child.bpmn", &model("child", &child));
    let parent = format!(
        r#"<bpmn:startEvent id="start"/>{}
           <bpmn:callActivity id="call"><bpmn:extensionElements>
             <zeebe:calledElement processId="child"/></bpmn:extensionElements>
           </bpmn:callActivity>{}<bpmn:endEvent id="end"/>"#,
        flow("f1", "start", "call"),
        flow("f2", "call", "end"),
    );
    shard.deploy("parent.bpmn", &model("parent", &parent));
    let (instance, _) = shard.create("parent", vars("{}"));
    work(&mut shard, "child-start", "{}");
    work(&mut shard, "child-end", r#"{"fromChild": 1}"#);
    assert!(shard.state.instance(instance).is_none());
    shard.assert_clean();
}

#[test]
fn a_failing_process_start_listener_keeps_the_message_until_the_incident_is_resolved() {
    let mut shard = Shard::new();
    let body = format!(
        r#"<bpmn:extensionElements>{}</bpmn:extensionElements>
           <bpmn:startEvent id="start"><bpmn:messageEventDefinition messageRef="m"/>
           </bpmn:startEvent>{}{}{}<bpmn:endEvent id="end"/>"#,
        listeners(&[("start", "=kind")]),
        flow("f1", "start", "task"),
        task("task", &[], ""),
        flow("f2", "task", "end"),
    );
    let placed = message("m", "order-placed", false);
    shard.deploy("retry.bpmn", &model_with("retry", &body, &placed));
    shard.publish("order-placed", "", r#"{"order": 5}"#, 0);
    let instance = shard.state.instances().next().expect("started").key;
    let incident = shard.state.incidents().next().expect("an incident").clone();
    assert_eq!(incident.element_instance_key, instance);
    assert!(
        incident.message.contains("job type"),
        "{}",
        incident.message
    );
    shard.check_replay();
    shard.fix_and_resolve(instance, r#"{"kind": "audit"}"#, incident.key);
    work(&mut shard, "audit", "{}");
    // The message started the process at its message start event, with its variables.
    let job = work(&mut shard, "task", "{}");
    assert_eq!(job.variables()["order"], serde_json::json!(5));
    shard.assert_clean();
}

#[test]
fn a_snapshot_naming_a_listener_the_element_does_not_have_is_refused() {
    let mut shard = Shard::new();
    let body = format!(
        r#"<bpmn:startEvent id="start"/>{}{}{}<bpmn:endEvent id="end"/>"#,
        flow("f1", "start", "task"),
        task("task", &[("start", "first")], ""),
        flow("f2", "task", "end"),
    );
    shard.deploy("snap.bpmn", &model("snap", &body));
    shard.create("snap", vars("{}"));
    let bytes = shard.state.encode();
    ringflow_core::State::decode(&bytes).expect("the real snapshot restores");
    // The end: ... listener job (key u64, event u8, index u32), held triggers count u32,
    // conditional subscriptions count u32, fulfilled ad-hoc subprocesses count u32, user
    // tasks count u32, held user tasks count u32, checksum u32.
    let event_at = bytes.len() - 4 - 4 - 4 - 4 - 4 - 4 - 4 - 1;
    assert_eq!(bytes[event_at], 0, "a start listener");
    let with = |patch: &dyn Fn(&mut Vec<u8>)| {
        let mut bytes = bytes.clone();
        patch(&mut bytes);
        let body = bytes.len() - 4;
        let checksum = crc32fast::hash(&bytes[..body]);
        bytes[body..].copy_from_slice(&checksum.to_le_bytes());
        ringflow_core::State::decode(&bytes)
            .expect_err("refused")
            .to_string()
    };
    let index =
        with(&|bytes| bytes[event_at + 1..event_at + 5].copy_from_slice(&7u32.to_le_bytes()));
    assert!(index.contains("names no execution listener"), "{index}");
    let end = with(&|bytes| bytes[event_at] = 1);
    assert!(end.contains("names no execution listener"), "{end}");
    let tag = with(&|bytes| bytes[event_at] = 9);
    assert!(tag.contains("listener event tag 9"), "{tag}");
}
