//! Process instances: tokens through tasks, gateways and subprocesses; jobs; variables;
//! cancellation; and that every run replays to the same bytes.

mod common;

use common::{Shard, flow, model, one_task, service_task, vars};
use ringflow_core::{Command, Effect, Event, Key, RejectionCode, Response};

fn element_ids(events: &[Event], pick: fn(&Event) -> Option<&str>) -> Vec<String> {
    events.iter().filter_map(pick).map(str::to_string).collect()
}

fn activated(event: &Event) -> Option<&str> {
    match event {
        Event::ElementActivated { element_id, .. } => Some(element_id),
        _ => None,
    }
}

fn completed(event: &Event) -> Option<&str> {
    match event {
        Event::ElementCompleted { element_id, .. } => Some(element_id),
        _ => None,
    }
}

/// Events, jobs and answers name elements, processes and static job types with the model's
/// own copies (shared, not copied per instance): a one-task instance records ten element
/// events, and copying every name was half the engine's allocations.
#[test]
fn events_and_jobs_share_the_models_names() {
    let mut shard = Shard::new();
    shard.deploy("one-task.bpmn", &one_task());
    let definition = std::sync::Arc::clone(
        &shard
            .state
            .latest_process("one-task")
            .expect("deployed")
            .definition,
    );
    let model_id = |id: &str| {
        let index = definition.find(id).expect("in the model");
        std::sync::Arc::clone(&definition.element(index).id)
    };
    let (_, created) = shard.create("one-task", vars("{}"));
    let mut named = 0;
    for event in &created.events {
        match event {
            Event::ElementActivated { element_id, .. }
            | Event::ElementCompleted { element_id, .. } => {
                let shared = if &**element_id == "one-task" {
                    std::sync::Arc::clone(&definition.bpmn_process_id)
                } else {
                    model_id(element_id)
                };
                assert!(
                    std::sync::Arc::ptr_eq(element_id, &shared),
                    "{element_id} copied"
                );
                named += 1;
            }
            Event::JobCreated { job_type, .. } => {
                let task = definition.element(definition.find("task").expect("task"));
                let ringflow_bpmn::ElementKind::ServiceTask(job) = &task.kind else {
                    panic!("the task is a service task");
                };
                let ringflow_bpmn::Expression::Static(model_type) = &job.job_type else {
                    panic!("the job type is static");
                };
                assert!(
                    std::sync::Arc::ptr_eq(job_type, model_type),
                    "job type copied"
                );
                named += 1;
            }
            _ => {}
        }
    }
    assert_eq!(named, 5, "3 activations, 1 completion and the job");
    let job = shard.activate("work", 1).remove(0);
    assert!(std::sync::Arc::ptr_eq(&job.element_id, &model_id("task")));
    assert!(std::sync::Arc::ptr_eq(
        &job.bpmn_process_id,
        &definition.bpmn_process_id
    ));
}

#[test]
fn one_task_runs_from_start_to_end() {
    let mut shard = Shard::new();
    shard.deploy("one-task.bpmn", &one_task());
    let (instance, created) = shard.create("one-task", vars(r#"{"orderId": "A-1"}"#));
    assert_eq!(
        element_ids(&created.events, activated),
        ["one-task", "start", "task"]
    );
    assert_eq!(element_ids(&created.events, completed), ["start"]);
    assert!(created.effects.contains(&Effect::JobsAvailable {
        job_type: "work".into()
    }));
    assert_eq!(shard.state.jobs().count(), 1);

    let jobs = shard.activate("work", 10);
    assert_eq!(jobs.len(), 1);
    let job = &jobs[0];
    assert_eq!(job.process_instance_key, instance);
    assert_eq!(&*job.element_id, "task");
    assert_eq!(job.retries, 5);
    assert_eq!(job.custom_headers, vec![("k".to_string(), "v".to_string())]);
    assert_eq!(job.variables(), vars(r#"{"orderId": "A-1"}"#));
    assert!(
        shard.activate("work", 10).is_empty(),
        "a leased job is not handed out twice"
    );

    let done = shard.complete(job.key, vars(r#"{"paid": true}"#));
    assert_eq!(
        element_ids(&done.events, completed),
        ["task", "end", "one-task"]
    );
    assert!(
        shard.state.instance(instance).is_none(),
        "the instance is gone"
    );
    assert_eq!(shard.state.element_instances().count(), 0);
    assert_eq!(shard.state.jobs().count(), 0);
    shard.check_replay();
}

#[test]
fn unknown_and_finished_jobs_are_rejected_clearly() {
    let mut shard = Shard::new();
    shard.deploy("one-task.bpmn", &one_task());
    shard.create("one-task", vars("{}"));
    let job = shard.activate("work", 1).remove(0);
    shard.complete(job.key, vars("{}"));
    let again = shard.run(Command::CompleteJob {
        key: job.key,
        variables: vars("{}"),
    });
    let rejection = again.expect_err("completed already");
    assert_eq!(rejection.code, RejectionCode::JobNotFound);
    assert_eq!(
        rejection.to_string(),
        format!(
            "JOB_NOT_FOUND: job {} does not exist or was already completed",
            job.key
        )
    );
    let missing = shard.run(Command::CompleteJob {
        key: Key(4_503_599_627_370_497),
        variables: vars("{}"),
    });
    assert_eq!(
        missing.expect_err("never existed").code,
        RejectionCode::JobNotFound
    );
    let unknown = shard.run(Command::CreateInstance {
        process: ringflow_core::ProcessRef::Latest("nope".to_string()),
        variables: vars("{}"),
        business_key: None,
        await_result: false,
    });
    assert_eq!(
        unknown.expect_err("not deployed").code,
        RejectionCode::ProcessNotFound
    );
    let zero = shard.run(Command::ActivateJobs {
        job_type: "work".into(),
        worker: "w".to_string(),
        max_jobs: 0,
        lease_millis: 1_000,
        fetch_variables: Vec::new(),
    });
    assert_eq!(zero.expect_err("max 0").code, RejectionCode::LimitExceeded);
}

#[test]
fn parallel_split_and_join() {
    let body = common::parallel_body();
    let mut shard = Shard::new();
    shard.deploy("p.bpmn", &model("parallel", &body));
    let (instance, _) = shard.create("parallel", vars("{}"));
    let left = shard.activate("left", 1).remove(0);
    let right = shard.activate("right", 1).remove(0);
    let first = shard.complete(left.key, vars(r#"{"a": 1}"#));
    assert!(
        !element_ids(&first.events, activated).contains(&"join".to_string()),
        "join waits"
    );
    assert!(shard.state.instance(instance).is_some());
    let second = shard.complete(right.key, vars(r#"{"b": 2}"#));
    assert_eq!(element_ids(&second.events, activated), ["join", "end"]);
    assert!(shard.state.instance(instance).is_none());
    shard.check_replay();
}

#[test]
fn subprocess_scopes_and_variables() {
    let body = format!(
        r#"<bpmn:startEvent id="start"/>{}
           <bpmn:subProcess id="sub"><bpmn:startEvent id="s2"/>{}{}{}<bpmn:endEvent id="e2"/>
           </bpmn:subProcess>{}{}{}<bpmn:endEvent id="end"/>"#,
        flow("f1", "start", "sub"),
        flow("g1", "s2", "inner"),
        service_task("inner", "inner"),
        flow("g2", "inner", "e2"),
        flow("f2", "sub", "after"),
        service_task("after", "after"),
        flow("f3", "after", "end"),
    );
    let mut shard = Shard::new();
    shard.deploy("s.bpmn", &model("with-sub", &body));
    let (instance, created) = shard.create("with-sub", vars(r#"{"x": 1}"#));
    assert_eq!(
        element_ids(&created.events, activated),
        ["with-sub", "start", "sub", "s2", "inner"]
    );
    let inner = shard.activate("inner", 1).remove(0);
    assert_eq!(inner.variables(), vars(r#"{"x": 1}"#));
    shard.complete(inner.key, vars(r#"{"x": 2, "y": "new"}"#));
    // New and existing variables propagate to the root scope.
    assert_eq!(
        shard.state.variables(instance),
        Some(&vars(r#"{"x": 2, "y": "new"}"#))
    );
    let after = shard.activate("after", 1).remove(0);
    assert_eq!(after.variables(), vars(r#"{"x": 2, "y": "new"}"#));
    shard.complete(after.key, vars("{}"));
    assert!(shard.state.instance(instance).is_none());
    shard.check_replay();
}

/// `fetch_variables` (Zeebe's `fetchVariables`): a job carries only the named variables, each
/// from the innermost scope that has it; a name not visible is left out; an empty list
/// fetches everything; the list is journaled and replays.
#[test]
fn a_worker_fetches_only_the_variables_it_names() {
    let body = format!(
        r#"<bpmn:startEvent id="start"/>{}
           <bpmn:subProcess id="sub"><bpmn:startEvent id="s2"/>{}{}{}<bpmn:endEvent id="e2"/>
           </bpmn:subProcess>{}<bpmn:endEvent id="end"/>"#,
        flow("f1", "start", "sub"),
        flow("g1", "s2", "inner"),
        service_task("inner", "inner"),
        flow("g2", "inner", "e2"),
        flow("f2", "sub", "end"),
    );
    let mut shard = Shard::new();
    shard.deploy("s.bpmn", &model("with-sub", &body));
    let (_, _) = shard.create(
        "with-sub",
        vars(r#"{"x": 1, "payload": "big", "orderId": "o-7"}"#),
    );
    let (_, _) = shard.create("with-sub", vars(r#"{"x": 1, "payload": "big"}"#));
    // The first instance's subprocess shadows x with a local x.
    let mut subs: Vec<Key> = shard
        .state
        .element_instances()
        .filter(|element| {
            element.scope.is_some()
                && element.job.is_none()
                && shard
                    .state
                    .element_instances()
                    .any(|inner| inner.scope == Some(element.key))
        })
        .map(|element| element.key)
        .collect();
    subs.sort();
    assert_eq!(subs.len(), 2, "one subprocess per instance");
    shard
        .run(Command::SetVariables {
            scope: subs[0],
            variables: vars(r#"{"x": 2}"#),
            local: true,
        })
        .expect("local x");
    let fetch = |names: &[&str]| Command::ActivateJobs {
        job_type: "inner".into(),
        worker: "w".into(),
        max_jobs: 1,
        lease_millis: 60_000,
        fetch_variables: names.iter().map(|name| name.to_string()).collect(),
    };
    let Response::JobsActivated(first) = shard
        .run(fetch(&["x", "orderId", "absent"]))
        .expect("activated")
        .response
    else {
        panic!("not jobs");
    };
    assert_eq!(first.len(), 1);
    assert_eq!(first[0].variables(), vars(r#"{"x": 2, "orderId": "o-7"}"#));
    // Without a list: everything visible, the inner x winning.
    let Response::JobsActivated(second) = shard.run(fetch(&[])).expect("activated").response else {
        panic!("not jobs");
    };
    assert_eq!(second[0].variables(), vars(r#"{"x": 1, "payload": "big"}"#));
    // Over the limit, or an empty name: refused, naming the limit.
    let names: Vec<String> = (0..=ringflow_core::limits::FETCH_VARIABLES_MAX)
        .map(|i| format!("v{i}"))
        .collect();
    let refused = shard
        .run(Command::ActivateJobs {
            job_type: "inner".into(),
            worker: "w".into(),
            max_jobs: 1,
            lease_millis: 60_000,
            fetch_variables: names,
        })
        .expect_err("too many names");
    assert_eq!(refused.code, RejectionCode::LimitExceeded);
    assert!(refused.message.contains("FETCH_VARIABLES_MAX"), "{refused}");
    let empty = shard.run(fetch(&[""])).expect_err("an empty name");
    assert_eq!(empty.code, RejectionCode::InvalidArgument);
    assert!(empty.message.contains("NAME_BYTES_MAX"), "{empty}");
    shard.check_replay();
}

/// `VariablesUpdated` carries what a command set by name, not a copy of the whole document;
/// a new document comes whole. History keeps the latest value per (scope, name), so it sees
/// the same either way.
#[test]
fn variable_events_carry_what_changed() {
    let updates = |events: &[Event]| -> Vec<(Key, ringflow_core::Variables)> {
        events
            .iter()
            .filter_map(|event| match event {
                Event::VariablesUpdated {
                    scope_key,
                    variables,
                    ..
                } => Some((*scope_key, variables.clone())),
                _ => None,
            })
            .collect()
    };
    let mut shard = Shard::new();
    let body = format!(
        r#"<bpmn:startEvent id="start"/>{}{}{}{}{}<bpmn:endEvent id="end"/>"#,
        flow("f1", "start", "a"),
        service_task("a", "a"),
        flow("f2", "a", "b"),
        service_task("b", "b"),
        flow("f3", "b", "end"),
    );
    shard.deploy("two.bpmn", &model("two", &body));
    let (instance, created) = shard.create("two", vars(r#"{"payload": "big", "n": 1}"#));
    assert_eq!(
        updates(&created.events),
        [(instance, vars(r#"{"payload": "big", "n": 1}"#))]
    );
    let a = shard.activate("a", 1).remove(0);
    let completed = shard.complete(a.key, vars(r#"{"n": 2, "fresh": true}"#));
    assert_eq!(
        updates(&completed.events),
        [(instance, vars(r#"{"n": 2, "fresh": true}"#))]
    );
    assert_eq!(
        shard.state.variables(instance),
        Some(&vars(r#"{"payload": "big", "n": 2, "fresh": true}"#))
    );
    // The scope ends in the same command as the change: still only what changed.
    let b = shard.activate("b", 1).remove(0);
    let ended = shard.complete(b.key, vars(r#"{"n": 3}"#));
    assert_eq!(updates(&ended.events), [(instance, vars(r#"{"n": 3}"#))]);
    // Awaited, the whole document goes to the caller (moved out as the instance ends).
    let command = Command::CreateInstance {
        process: ringflow_core::ProcessRef::Latest("two".into()),
        variables: vars(r#"{"payload": "big"}"#),
        business_key: None,
        await_result: true,
    };
    shard.run(command).expect("created");
    let a = shard.activate("a", 1).remove(0);
    shard.complete(a.key, vars(r#"{"n": 1}"#));
    let b = shard.activate("b", 1).remove(0);
    let done = shard.complete(b.key, vars(r#"{"n": 2}"#));
    assert!(
        done.effects.iter().any(|effect| matches!(
            effect,
            Effect::InstanceResult { variables, .. }
                if *variables == vars(r#"{"payload": "big", "n": 2}"#)
        )),
        "{:?}",
        done.effects
    );
    let awaited = updates(&done.events);
    assert_eq!(awaited.len(), 1);
    assert_eq!(awaited[0].1, vars(r#"{"n": 2}"#));
    shard.check_replay();
}

#[test]
fn terminate_end_event_ends_the_other_branches() {
    let body = format!(
        r#"<bpmn:startEvent id="start"/>{}<bpmn:parallelGateway id="split"/>{}{}{}{}{}
           <bpmn:endEvent id="stop"><bpmn:terminateEventDefinition/></bpmn:endEvent>
           {}<bpmn:endEvent id="end"/>"#,
        flow("f1", "start", "split"),
        flow("f2", "split", "slow"),
        flow("f3", "split", "fast"),
        service_task("slow", "slow"),
        service_task("fast", "fast"),
        flow("f4", "fast", "stop"),
        flow("f5", "slow", "end"),
    );
    let mut shard = Shard::new();
    shard.deploy("t.bpmn", &model("terminate", &body));
    let (instance, _) = shard.create("terminate", vars("{}"));
    let fast = shard.activate("fast", 1).remove(0);
    let done = shard.complete(fast.key, vars("{}"));
    assert!(done.events.iter().any(|event| matches!(event,
        Event::ElementTerminated { element_id, .. } if &**element_id == "slow")));
    assert!(shard.state.instance(instance).is_none());
    assert_eq!(
        shard.state.jobs().count(),
        0,
        "the slow branch's job is gone"
    );
    assert!(shard.activate("slow", 1).is_empty());
    shard.check_replay();
}

#[test]
fn cancel_ends_everything() {
    let mut shard = Shard::new();
    shard.deploy("one-task.bpmn", &one_task());
    let (instance, _) = shard.create("one-task", vars("{}"));
    let outcome = shard
        .run(Command::CancelInstance { key: instance })
        .expect("cancel");
    assert_eq!(
        outcome.response,
        Response::InstanceCanceled {
            process_instance_key: instance
        }
    );
    assert!(shard.state.instance(instance).is_none());
    assert_eq!(shard.state.jobs().count(), 0);
    assert_eq!(shard.state.element_instances().count(), 0);
    let again = shard.run(Command::CancelInstance { key: instance });
    assert_eq!(
        again.expect_err("gone").code,
        RejectionCode::InstanceNotFound
    );
    shard.check_replay();
}

#[test]
fn a_loop_without_wait_states_stops_with_an_incident() {
    let body = format!(
        r#"<bpmn:startEvent id="start"/>{}<bpmn:manualTask id="a"/>{}<bpmn:manualTask id="b"/>{}"#,
        flow("f1", "start", "a"),
        flow("f2", "a", "b"),
        flow("f3", "b", "a"),
    );
    let mut shard = Shard::new();
    shard.deploy("loop.bpmn", &model("loop", &body));
    let (instance, created) = shard.create("loop", vars("{}"));
    let incident = created.events.iter().find_map(|event| match event {
        Event::IncidentCreated { message, .. } => Some(message.clone()),
        _ => None,
    });
    assert!(incident.expect("an incident").contains("COMMAND_STEPS_MAX"));
    assert!(
        shard.state.instance(instance).is_some(),
        "the instance waits at the incident"
    );
    assert_eq!(shard.state.incidents().count(), 1);
    shard.check_replay();
}

#[test]
fn await_result_answers_with_the_variables() {
    let mut shard = Shard::new();
    shard.deploy("one-task.bpmn", &one_task());
    let outcome = shard
        .run(Command::CreateInstance {
            process: ringflow_core::ProcessRef::Latest("one-task".to_string()),
            variables: vars(r#"{"a": 1}"#),
            business_key: Some("order-7".to_string()),
            await_result: true,
        })
        .expect("create");
    let Response::InstanceCreated {
        process_instance_key,
        ..
    } = outcome.response
    else {
        panic!("{:?}", outcome.response)
    };
    assert_eq!(
        shard
            .state
            .instance(process_instance_key)
            .expect("live")
            .business_key
            .as_deref(),
        Some("order-7")
    );
    let job = shard.activate("work", 1).remove(0);
    let done = shard.complete(job.key, vars(r#"{"b": 2}"#));
    assert!(done.effects.contains(&Effect::InstanceResult {
        process_instance_key,
        variables: vars(r#"{"a": 1, "b": 2}"#),
    }));
    shard.check_replay();
}
