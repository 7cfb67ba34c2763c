//! Job failures, retries with backoff, lease expiry, incidents and their resolution, and
//! variables set from outside.

mod common;

use common::{Shard, activation, flow, model, one_task, service_task, vars};
use ringflow_core::{Command, Effect, Event, Key, RejectionCode};

fn fail(shard: &mut Shard, key: Key, retries: u32, backoff: u64) -> ringflow_core::Outcome {
    shard
        .run(Command::FailJob {
            key,
            retries,
            retry_backoff_millis: backoff,
            message: "the card was declined".to_string(),
        })
        .expect("fail")
}

#[test]
fn a_failed_job_with_retries_is_handed_out_again() {
    let mut shard = Shard::new();
    shard.deploy("one-task.bpmn", &one_task());
    shard.create("one-task", vars("{}"));
    let job = shard.activate("work", 1).remove(0);
    let outcome = fail(&mut shard, job.key, 4, 0);
    assert!(outcome.effects.contains(&Effect::JobsAvailable {
        job_type: "work".into()
    }));
    let again = shard.activate("work", 1).remove(0);
    assert_eq!((again.key, again.retries), (job.key, 4));
    shard.check_replay();
}

#[test]
fn backoff_holds_the_job_until_its_timer() {
    let mut shard = Shard::new();
    shard.deploy("one-task.bpmn", &one_task());
    shard.create("one-task", vars("{}"));
    let job = shard.activate("work", 1).remove(0);
    let outcome = fail(&mut shard, job.key, 2, 5_000);
    let due = outcome.effects.iter().find_map(|effect| match effect {
        Effect::JobBackoff { key, due_millis } if *key == job.key => Some(*due_millis),
        _ => None,
    });
    let due = due.expect("a backoff timer");
    assert!(
        shard.activate("work", 1).is_empty(),
        "not before the backoff"
    );
    let early = shard.run(Command::JobRetryDue { key: job.key });
    assert_eq!(
        early.expect_err("too early").code,
        RejectionCode::InvalidState
    );
    shard.now_millis = due;
    shard
        .run(Command::JobRetryDue { key: job.key })
        .expect("due");
    assert_eq!(shard.activate("work", 1).len(), 1);
    shard.check_replay();
}

#[test]
fn no_retries_left_raises_an_incident_that_can_be_resolved() {
    let mut shard = Shard::new();
    shard.deploy("one-task.bpmn", &one_task());
    let (instance, _) = shard.create("one-task", vars("{}"));
    let job = shard.activate("work", 1).remove(0);
    let outcome = fail(&mut shard, job.key, 0, 0);
    let incident = outcome.events.iter().find_map(|event| match event {
        Event::IncidentCreated { key, message, .. } => Some((*key, message.clone())),
        _ => None,
    });
    let (incident, message) = incident.expect("an incident");
    assert!(message.contains("the card was declined"), "{message}");
    assert!(
        shard.activate("work", 1).is_empty(),
        "a failed job is not handed out"
    );

    let premature = shard.run(Command::ResolveIncident { key: incident });
    assert_eq!(
        premature.expect_err("no retries").code,
        RejectionCode::InvalidState
    );
    shard
        .run(Command::UpdateJobRetries {
            key: job.key,
            retries: 1,
        })
        .expect("retries");
    shard
        .run(Command::ResolveIncident { key: incident })
        .expect("resolve");
    assert_eq!(shard.state.incidents().count(), 0);
    let retried = shard.activate("work", 1).remove(0);
    shard.complete(retried.key, vars("{}"));
    assert!(shard.state.instance(instance).is_none());
    let gone = shard.run(Command::ResolveIncident { key: incident });
    assert_eq!(
        gone.expect_err("resolved").code,
        RejectionCode::IncidentNotFound
    );
    shard.check_replay();
}

#[test]
fn an_expired_lease_frees_the_job() {
    let mut shard = Shard::new();
    shard.deploy("one-task.bpmn", &one_task());
    shard.create("one-task", vars("{}"));
    let job = shard.activate("work", 1).remove(0);
    let early = shard.run(Command::JobLeaseExpired { key: job.key });
    assert_eq!(
        early.expect_err("not yet").code,
        RejectionCode::InvalidState
    );
    shard.now_millis = job.deadline_millis;
    shard
        .run(Command::JobLeaseExpired { key: job.key })
        .expect("expired");
    assert_eq!(shard.activate("work", 1)[0].key, job.key);
    shard.check_replay();
}

#[test]
fn an_expression_incident_is_retried_after_the_data_is_fixed() {
    let body = format!(
        r#"<bpmn:startEvent id="start"/>{}<bpmn:exclusiveGateway id="gw" default="no"/>
           <bpmn:sequenceFlow id="yes" sourceRef="gw" targetRef="a">
             <bpmn:conditionExpression>=amount &gt; 10</bpmn:conditionExpression></bpmn:sequenceFlow>
           <bpmn:sequenceFlow id="no" sourceRef="gw" targetRef="b"/>{}{}{}{}
           <bpmn:endEvent id="end"/>"#,
        flow("f1", "start", "gw"),
        service_task("a", "big"),
        service_task("b", "small"),
        flow("fa", "a", "end"),
        flow("fb", "b", "end"),
    );
    let mut shard = Shard::new();
    shard.deploy("gw.bpmn", &model("routing", &body));
    let (instance, created) = shard.create("routing", vars("{}"));
    let incident = created.events.iter().find_map(|event| match event {
        Event::IncidentCreated { key, .. } => Some(*key),
        _ => None,
    });
    let incident = incident.expect("amount is missing: an incident");
    shard
        .run(Command::SetVariables {
            scope: instance,
            variables: vars(r#"{"amount": 50}"#),
            local: false,
        })
        .expect("set variables");
    shard
        .run(Command::ResolveIncident { key: incident })
        .expect("resolve");
    assert_eq!(
        shard.activate("big", 1).len(),
        1,
        "the gateway ran again with the new data"
    );
    shard.check_replay();
}

#[test]
fn set_variables_local_and_propagated() {
    let mut shard = Shard::new();
    shard.deploy("one-task.bpmn", &one_task());
    let (instance, _) = shard.create("one-task", vars(r#"{"a": 1}"#));
    let job = shard.activate("work", 1).remove(0);
    let task = job.element_instance_key;
    shard
        .run(Command::SetVariables {
            scope: task,
            variables: vars(r#"{"local": true}"#),
            local: true,
        })
        .expect("local");
    shard
        .run(Command::SetVariables {
            scope: task,
            variables: vars(r#"{"a": 2, "b": 3}"#),
            local: false,
        })
        .expect("propagate");
    assert_eq!(
        shard.state.variables(task),
        Some(&vars(r#"{"local": true}"#))
    );
    assert_eq!(
        shard.state.variables(instance),
        Some(&vars(r#"{"a": 2, "b": 3}"#))
    );
    let missing = shard.run(Command::SetVariables {
        scope: Key(1),
        variables: vars("{}"),
        local: true,
    });
    assert_eq!(
        missing.expect_err("no scope").code,
        RejectionCode::InstanceNotFound
    );
    shard.check_replay();
}

/// A JSON object text with one text variable `name` of about `bytes` bytes.
fn sized(name: &str, bytes: usize) -> String {
    format!(r#"{{"{name}": "{}"}}"#, "x".repeat(bytes))
}

#[test]
fn a_message_that_would_overfill_the_scope_is_kept_until_its_incident_is_resolved() {
    let mut shard = Shard::new();
    let body = format!(
        r#"<bpmn:startEvent id="start"/>{}
           <bpmn:intermediateCatchEvent id="wait">
             <bpmn:messageEventDefinition messageRef="m"/></bpmn:intermediateCatchEvent>{}{}{}
           <bpmn:endEvent id="end"/>"#,
        flow("f1", "start", "wait"),
        flow("f2", "wait", "after"),
        service_task("after", "after"),
        flow("f3", "after", "end"),
    );
    let xml = model("full", &body).replace(
        "</bpmn:process>",
        r#"</bpmn:process><bpmn:message id="m" name="more"><bpmn:extensionElements>
             <zeebe:subscription correlationKey="=&quot;k&quot;"/></bpmn:extensionElements>
           </bpmn:message>"#,
    );
    shard.deploy("full.bpmn", &xml);
    let (instance, _) = shard.create("full", vars(&sized("big", 3 << 20)));
    // 3 MiB in the process and 2 MiB from the message: over VARIABLE_DOCUMENT_BYTES_MAX.
    shard.publish("more", "k", &sized("more", 2 << 20), 0);
    let incident = shard.state.incidents().next().expect("an incident").clone();
    assert!(
        incident.message.contains("VARIABLE_DOCUMENT_BYTES_MAX"),
        "{}",
        incident.message
    );
    shard.check_replay();
    shard.fix_and_resolve(instance, r#"{"big": ""}"#, incident.key);
    // The message's variables went in; no second message is waited for.
    assert_eq!(shard.state.subscriptions().count(), 0);
    let after = shard.activate("after", 1).remove(0);
    assert_eq!(
        after.variables()["more"].as_str().map(str::len),
        Some(2 << 20)
    );
    shard.complete(after.key, vars("{}"));
    shard.assert_clean();
    shard.check_replay();
}

#[test]
fn a_child_result_that_would_overfill_the_parent_does_not_start_another_child() {
    let mut shard = Shard::new();
    shard.deploy(
        "child.bpmn",
        &model(
            "child",
            &format!(
                r#"<bpmn:startEvent id="start"/>{}{}{}<bpmn:endEvent id="end"/>"#,
                flow("f1", "start", "work"),
                service_task("work", "child-work"),
                flow("f2", "work", "end"),
            ),
        ),
    );
    let body = format!(
        r#"<bpmn:startEvent id="start"/>{}
           <bpmn:callActivity id="call"><bpmn:extensionElements>
             <zeebe:calledElement processId="child" propagateAllParentVariables="false"/>
           </bpmn:extensionElements></bpmn:callActivity>{}{}{}<bpmn:endEvent id="end"/>"#,
        flow("f1", "start", "call"),
        flow("f2", "call", "after"),
        service_task("after", "after"),
        flow("f3", "after", "end"),
    );
    shard.deploy("parent.bpmn", &model("parent", &body));
    let (instance, _) = shard.create("parent", vars(&sized("big", 3 << 20)));
    let work = shard.activate("child-work", 1).remove(0);
    shard.complete(work.key, vars(&sized("more", 2 << 20)));
    let incident = shard.state.incidents().next().expect("an incident").clone();
    assert!(
        incident.message.contains("VARIABLE_DOCUMENT_BYTES_MAX"),
        "{}",
        incident.message
    );
    shard.fix_and_resolve(instance, r#"{"big": ""}"#, incident.key);
    assert!(
        shard.activate("child-work", 1).is_empty(),
        "no second child was started"
    );
    let after = shard.activate("after", 1).remove(0);
    assert_eq!(
        after.variables()["more"].as_str().map(str::len),
        Some(2 << 20)
    );
    shard.complete(after.key, vars("{}"));
    shard.assert_clean();
    shard.check_replay();
}

#[test]
fn a_message_that_would_overfill_the_catch_events_own_document_is_an_incident_and_kept() {
    // With output mappings a message's variables stay local to the catch event: that
    // document is held to VARIABLE_DOCUMENT_BYTES_MAX as well.
    let mut shard = Shard::new();
    let body = format!(
        r#"<bpmn:startEvent id="start"/>{}
           <bpmn:intermediateCatchEvent id="wait"><bpmn:extensionElements><zeebe:ioMapping>
               <zeebe:input source="=big" target="copy"/>
               <zeebe:output source="=string length(more)" target="moreLength"/>
             </zeebe:ioMapping></bpmn:extensionElements>
             <bpmn:messageEventDefinition messageRef="m"/></bpmn:intermediateCatchEvent>{}{}{}
           <bpmn:endEvent id="end"/>"#,
        flow("f1", "start", "wait"),
        flow("f2", "wait", "after"),
        service_task("after", "after"),
        flow("f3", "after", "end"),
    );
    let xml = model("local", &body).replace(
        "</bpmn:process>",
        r#"</bpmn:process><bpmn:message id="m" name="more"><bpmn:extensionElements>
             <zeebe:subscription correlationKey="=&quot;k&quot;"/></bpmn:extensionElements>
           </bpmn:message>"#,
    );
    shard.deploy("local.bpmn", &xml);
    let (instance, _) = shard.create("local", vars(&sized("big", 3 << 20)));
    shard.publish("more", "k", &sized("more", 2 << 20), 0);
    let incident = shard.state.incidents().next().expect("an incident").clone();
    assert!(
        incident.message.contains("VARIABLE_DOCUMENT_BYTES_MAX"),
        "{}",
        incident.message
    );
    assert!(
        shard.state.element_instances().all(|element| shard
            .state
            .variables(element.key)
            .map_or(0, |doc| { serde_json::to_string(doc).unwrap().len() })
            <= 4 << 20),
        "no document went over the limit"
    );
    shard.check_replay();
    shard.fix_and_resolve(instance, r#"{"big": ""}"#, incident.key);
    assert_eq!(shard.state.subscriptions().count(), 0);
    let after = shard.activate("after", 1).remove(0);
    assert_eq!(after.variables()["moreLength"], serde_json::json!(2 << 20));
    shard.complete(after.key, vars("{}"));
    shard.assert_clean();
    shard.check_replay();
}

/// A JSON object with one string variable `name` whose document is just under
/// `VARIABLE_DOCUMENT_BYTES_MAX`.
fn big_variables(name: &str) -> ringflow_core::Variables {
    let room = ringflow_core::limits::VARIABLE_DOCUMENT_BYTES_MAX - 1024;
    let mut variables = ringflow_core::Variables::new();
    variables.insert(
        name.to_string(),
        serde_json::Value::String("x".repeat(room)),
    );
    variables
}

#[test]
fn an_answer_carries_at_most_activation_answer_bytes_max_of_jobs() {
    use ringflow_core::limits::ACTIVATION_ANSWER_BYTES_MAX;
    let mut shard = Shard::new();
    shard.deploy("one-task.bpmn", &one_task());
    for _ in 0..6 {
        shard.create("one-task", big_variables("blob"));
    }
    // Six jobs of almost 4 MiB each: four fit in 16 MiB, the other two wait.
    let first = shard.activate("work", 6);
    let bytes: usize = first.iter().map(|job| job.answer_bytes()).sum();
    assert_eq!(first.len(), 4, "{bytes} bytes");
    assert!(bytes <= ACTIVATION_ANSWER_BYTES_MAX, "{bytes} bytes");
    assert!(
        first
            .iter()
            .all(|job| job.answer_bytes() > job.variables_json.len())
    );
    assert_eq!(shard.state.ready_job_count("work"), 2);
    let second = shard.activate("work", 6);
    assert_eq!(second.len(), 2);
    assert_eq!(shard.state.incidents().count(), 0);
    for job in first.iter().chain(&second) {
        shard.complete(job.key, vars("{}"));
    }
    assert_eq!(shard.state.instance_count(), 0);
    shard.check_replay();
}

#[test]
fn a_job_too_large_for_any_answer_raises_an_incident_and_comes_back_when_resolved() {
    use ringflow_core::limits::ACTIVATION_ANSWER_BYTES_MAX;
    let mut shard = Shard::new();
    // A task four subprocesses deep: with the task's own scope, five scopes of almost 4 MiB
    // each are visible to its job, more than any answer carries.
    let mut body = format!(
        r#"<bpmn:startEvent id="s4"/>{}{}{}<bpmn:endEvent id="e4"/>"#,
        flow("f4a", "s4", "task"),
        service_task("task", "work"),
        flow("f4b", "task", "e4"),
    );
    for depth in (0..4).rev() {
        body = format!(
            r#"<bpmn:startEvent id="s{depth}"/>{}<bpmn:subProcess id="sub{depth}">{body}</bpmn:subProcess>{}<bpmn:endEvent id="e{depth}"/>"#,
            flow(
                &format!("f{depth}a"),
                &format!("s{depth}"),
                &format!("sub{depth}")
            ),
            flow(
                &format!("f{depth}b"),
                &format!("sub{depth}"),
                &format!("e{depth}")
            ),
        );
    }
    shard.deploy("deep.bpmn", &model("deep", &body));
    let (instance, _) = shard.create("deep", big_variables("root"));
    // The job's element instance, then each scope above it up to the root.
    let task = shard
        .state
        .jobs()
        .next()
        .expect("the task's job")
        .element_instance_key;
    let mut scope = Some(task);
    let mut names = Vec::new();
    while let Some(key) = scope.filter(|key| *key != instance) {
        let name = format!("scope{}", names.len());
        shard
            .run(Command::SetVariables {
                scope: key,
                variables: big_variables(&name),
                local: true,
            })
            .expect("set");
        names.push(name);
        scope = shard.state.element_instance(key).expect("live").scope;
    }
    assert_eq!(names.len(), 5, "the task and four subprocesses");

    let outcome = shard
        .run(activation("work", 10, Vec::new()))
        .expect("an activation");
    assert!(
        matches!(&outcome.response, ringflow_core::Response::JobsActivated(jobs) if jobs.is_empty())
    );
    let job_key = shard.state.jobs().next().expect("the job").key;
    let failed = outcome.events.iter().find_map(|event| match event {
        Event::JobFailed { key, retries, .. } if *key == job_key => Some(*retries),
        _ => None,
    });
    assert_eq!(failed, Some(5), "failed, its retries kept");
    let (incident, message) = outcome
        .events
        .iter()
        .find_map(|event| match event {
            Event::IncidentCreated { key, message, .. } => Some((*key, message.clone())),
            _ => None,
        })
        .expect("an incident");
    assert!(
        message.contains(&format!(
            "over ACTIVATION_ANSWER_BYTES_MAX ({ACTIVATION_ANSWER_BYTES_MAX})"
        )) && message.contains("fetch_variables"),
        "{message}"
    );
    assert!(
        !shard.state.is_ready(job_key),
        "not handed out again by itself"
    );
    assert!(
        outcome.effects.is_empty(),
        "no lease: {:?}",
        outcome.effects
    );

    // Resolved, it is ready again; a worker that fetches one variable gets it.
    shard
        .run(Command::ResolveIncident { key: incident })
        .expect("resolved");
    assert!(shard.state.is_ready(job_key));
    let outcome = shard
        .run(activation("work", 10, vec!["root".to_string()]))
        .expect("an activation");
    let ringflow_core::Response::JobsActivated(jobs) = outcome.response else {
        panic!("{:?}", outcome.response);
    };
    assert_eq!(jobs.len(), 1);
    assert_eq!(jobs[0].variables().keys().collect::<Vec<_>>(), vec!["root"]);
    shard.complete(jobs[0].key, vars("{}"));
    assert!(shard.state.instance(instance).is_none());
    shard.check_replay();
}
