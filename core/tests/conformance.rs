//! Conformance on real models written by others (`../shared/bpmn-corpus/`, see its
//! MANIFEST.md): every model the parser accepts deploys on the engine; and the executable models of lib-bpmn-engine
//! (`gobpmn__`), zeebe-process-test (`zeebe-pt__`) and camunda-8-js-sdk (`c8sdk__`) run to
//! completion, driven the way their own test suites drive them: create or publish, let
//! workers complete jobs (or throw errors), publish messages, let time pass.

mod common;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use common::{Shard, vars};
use ringflow_core::{Command, Key, RejectionCode, Resource, Response};

fn corpus_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("RINGFLOW_BPMN_CORPUS") {
        return PathBuf::from(dir);
    }
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/bpmn-corpus")
}

fn corpus(name: &str) -> String {
    let path = corpus_dir().join(name);
    std::fs::read_to_string(&path)
        .unwrap_or_else(|error| panic!("{} is not readable: {error}", path.display()))
}

fn deploy_file(shard: &mut Shard, name: &str) {
    shard.deploy(name, &corpus(name));
}

/// Lets workers take and complete every ready job until none is left, answering a job of
/// type `t` with `answer(t)`. Returns the job types in the order they were completed.
fn work(shard: &mut Shard, answer: impl Fn(&str) -> &'static str) -> Vec<String> {
    let mut done = Vec::new();
    for _ in 0..100 {
        let ready: Vec<String> = shard
            .state
            .jobs()
            .filter(|job| shard.state.is_ready(job.key))
            .map(|job| job.job_type.to_string())
            .collect();
        let Some(job_type) = ready.first().cloned() else {
            return done;
        };
        for job in shard.activate(&job_type, 100) {
            shard.complete(job.key, vars(answer(&job.job_type)));
            done.push(job.job_type.to_string());
        }
    }
    panic!("jobs never ran out");
}

fn nothing(_: &str) -> &'static str {
    "{}"
}

#[test]
fn every_model_the_parser_accepts_deploys_or_is_refused_with_a_reason() {
    let mut names: Vec<String> = std::fs::read_dir(corpus_dir())
        .expect("the corpus folder")
        .map(|entry| {
            entry
                .expect("an entry")
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .filter(|name| name.ends_with(".bpmn") || name.ends_with(".xml"))
        .collect();
    names.sort();
    let mut refused = Vec::new();
    let mut deployed = 0;
    for name in names {
        let bytes = std::fs::read(corpus_dir().join(&name)).expect("readable");
        if ringflow_bpmn::parse(&bytes).is_err() {
            continue;
        }
        let mut shard = Shard::new();
        let outcome = shard.run(Command::Deploy {
            resources: vec![Resource {
                name: name.clone(),
                content: Arc::from(bytes.as_slice()),
            }],
        });
        match outcome {
            Ok(_) => deployed += 1,
            Err(rejection) => {
                assert_eq!(rejection.code, RejectionCode::InvalidModel, "{name}");
                refused.push(format!("{name}: {}", rejection.message));
            }
        }
        shard.check_replay();
    }
    // A change here is a change in what the engine runs: update the numbers on purpose.
    assert!(refused.is_empty(), "refused: {refused:#?}");
    assert_eq!(
        deployed, 41,
        "the number of corpus models that deploy changed"
    );
}

#[test]
fn bpmnlint_compensation_end_event_runs_the_handler_of_the_completed_task() {
    let mut shard = Shard::new();
    deploy_file(
        &mut shard,
        "bpmnlint__no-disconnected__valid-compensation.bpmn",
    );
    let (instance, created) = shard.create("Process_1ey596u", vars("{}"));
    let activated: Vec<String> = created
        .events
        .iter()
        .filter_map(|event| match event {
            ringflow_core::Event::ElementActivated { element_id, .. } => {
                Some(element_id.to_string())
            }
            _ => None,
        })
        .collect();
    assert_eq!(
        activated,
        vec![
            "Process_1ey596u",
            "StartEvent_1",
            "Activity_02vrk4f",
            "Event_09gv6eq",
            "Activity_0qb6zkz",
        ],
        "the task, the compensation end event, then the handler inside it"
    );
    assert!(shard.state.instance(instance).is_none());
    shard.assert_clean();
    shard.check_replay();
}

#[test]
fn lib_bpmn_engine_event_based_gateway_takes_the_published_message() {
    let mut shard = Shard::new();
    deploy_file(&mut shard, "gobpmn__message-EventBasedGateway.bpmn");
    let (instance, _) = shard.create("message-EventBasedGateway", vars(r#"{"key": "k"}"#));
    shard.publish("msg-b", "k", "{}", 0);
    assert_eq!(work(&mut shard, nothing), vec!["task-b"]);
    assert!(shard.state.instance(instance).is_none());
    shard.assert_clean();
    shard.check_replay();
}

#[test]
fn lib_bpmn_engine_event_based_gateway_with_a_timer_and_a_message() {
    let name = "gobpmn__message-intermediate-timer-event.bpmn";
    let id = "message-intermediate-timer-event";
    let mut shard = Shard::new();
    deploy_file(&mut shard, name);
    let (by_timer, _) = shard.create(id, vars(r#"{"message": "t"}"#));
    shard.fire_timers_until(shard.now_millis + 1_000);
    assert_eq!(work(&mut shard, nothing), vec!["task-for-timer"]);
    assert!(shard.state.instance(by_timer).is_none());
    let (by_message, _) = shard.create(id, vars(r#"{"message": "m"}"#));
    shard.publish("message", "m", "{}", 0);
    assert_eq!(work(&mut shard, nothing), vec!["task-for-message"]);
    assert!(shard.state.instance(by_message).is_none());
    shard.assert_clean();
    shard.check_replay();
}

#[test]
fn lib_bpmn_engine_ordering_items_workflow_with_a_reminder_then_payment() {
    let mut shard = Shard::new();
    deploy_file(&mut shard, "gobpmn__ordering-items-workflow.bpmn");
    let (instance, _) = shard.create("ordering-items-workflow", vars(r#"{"orderId": "o-1"}"#));
    assert_eq!(
        work(&mut shard, nothing),
        vec!["validate-order", "send-payment-notification"]
    );
    // Five minutes without payment: a reminder, then the payment arrives.
    shard.fire_timers_until(shard.now_millis + 5 * 60_000);
    assert_eq!(work(&mut shard, nothing), vec!["send-friendly-reminder"]);
    shard.publish("payment-received", "o-1", "{}", 0);
    let mut rest = work(&mut shard, nothing);
    rest.sort();
    assert_eq!(rest, vec!["package-and-deliver", "send-bill"]);
    assert!(shard.state.instance(instance).is_none());
    // Without payment at all: the reminder, then the cancellation after ten more minutes.
    let (unpaid, _) = shard.create("ordering-items-workflow", vars(r#"{"orderId": "o-2"}"#));
    work(&mut shard, nothing);
    shard.fire_timers_until(shard.now_millis + 5 * 60_000);
    work(&mut shard, nothing);
    shard.fire_timers_until(shard.now_millis + 10 * 60_000);
    assert_eq!(work(&mut shard, nothing), vec!["send-cancellation"]);
    assert!(shard.state.instance(unpaid).is_none());
    shard.assert_clean();
    shard.check_replay();
}

#[test]
fn lib_bpmn_engine_link_events_and_gateways() {
    let mut shard = Shard::new();
    deploy_file(&mut shard, "gobpmn__simple-link-events.bpmn");
    let (instance, _) = shard.create("simple-link-events", vars("{}"));
    assert_eq!(work(&mut shard, nothing), vec!["task", "task"]);
    assert!(shard.state.instance(instance).is_none());

    deploy_file(&mut shard, "gobpmn__inclusive-gateway-multiple-tasks.bpmn");
    shard.create("inclusive-gateway-multiple-tasks", vars(r#"{"price": 0}"#));
    let mut taken = work(&mut shard, nothing);
    taken.sort();
    assert_eq!(taken, vec!["task-a", "task-b"]);
    shard.create("inclusive-gateway-multiple-tasks", vars(r#"{"price": -1}"#));
    assert_eq!(work(&mut shard, nothing), vec!["task-default"]);

    for (file, id) in [
        (
            "gobpmn__fork-controlled-parallel-join.bpmn",
            "fork-controlled-parallel-join",
        ),
        (
            "gobpmn__subprocess-fork-controlled-parallel-join.bpmn",
            "fork-controlled-exclusive-join",
        ),
    ] {
        deploy_file(&mut shard, file);
        shard.create(id, vars("{}"));
        assert!(!work(&mut shard, nothing).is_empty(), "{id}");
    }
    shard.assert_clean();
    shard.check_replay();
}

#[test]
fn lib_bpmn_engine_input_output_mappings_and_a_failing_output_mapping() {
    let mut shard = Shard::new();
    deploy_file(&mut shard, "gobpmn__service-task-input-output.bpmn");
    let (instance, _) = shard.create("service-task-input-output", vars("{}"));
    let job = shard.activate("input-task-1", 1).remove(0);
    assert_eq!(job.variables()["city"], serde_json::json!("beijing"));
    shard.complete(job.key, vars("{}"));
    let user = shard.activate("io.camunda.zeebe:userTask", 1).remove(0);
    assert_eq!(user.variables()["orderName"], serde_json::json!("order1"));
    assert_eq!(user.variables()["dstcity"], serde_json::json!("beijing"));
    shard.complete(user.key, vars("{}"));
    assert!(shard.state.instance(instance).is_none());

    deploy_file(
        &mut shard,
        "gobpmn__simple-intermediate-message-catch-event-broken.bpmn",
    );
    let id = "simple-intermediate-message-catch-event-broken";
    // lib-bpmn-engine's own FEEL fails on the missing `Y`; Camunda 8 (FEEL 1.17+) and this
    // engine give null for a missing variable, so the instance completes with
    // `mappedFoo = null`; with both variables the mapping divides.
    for (message, expected) in [
        (r#"{"X": 1}"#, serde_json::Value::Null),
        (r#"{"X": 6, "Y": 3}"#, serde_json::json!(2)),
    ] {
        shard
            .run(Command::CreateInstance {
                process: ringflow_core::ProcessRef::Latest(id.into()),
                variables: vars(r#"{"key": "k"}"#),
                business_key: None,
                await_result: true,
            })
            .expect("created");
        let published = shard.publish("msg", "k", message, 0);
        let result = published
            .effects
            .iter()
            .find_map(|effect| match effect {
                ringflow_core::Effect::InstanceResult { variables, .. } => Some(variables.clone()),
                _ => None,
            })
            .expect("the instance completed");
        assert_eq!(result["mappedFoo"], expected, "{message}");
    }
    shard.assert_clean();
    shard.check_replay();
}

#[test]
fn zeebe_process_test_multi_instance_and_timers() {
    let mut shard = Shard::new();
    deploy_file(&mut shard, "zeebe-pt__automated-tests.bpmn");
    let (instance, _) = shard.create("automatedTestsProcess", vars("{}"));
    let jobs = shard.activate("runTests", 10);
    let systems: Vec<String> = jobs
        .iter()
        .map(|job| {
            let variables = job.variables();
            variables["operatingSystem"]
                .as_str()
                .expect("a text")
                .to_string()
        })
        .collect();
    assert_eq!(systems, vec!["ubuntu", "windows", "macos"]);
    for job in jobs {
        shard.complete(job.key, vars("{}"));
    }
    assert!(shard.state.instance(instance).is_none());

    deploy_file(&mut shard, "zeebe-pt__test_timer_events.bpmn");
    let (timed, _) = shard.create("Process_Timer_Test_01", vars("{}"));
    assert_eq!(work(&mut shard, nothing), vec!["SimpleLog01"]);
    assert_eq!(shard.state.timers().count(), 2, "1 s and 30 days");
    shard.fire_timers_until(shard.now_millis + 1_000);
    assert!(
        shard.state.instance(timed).is_none(),
        "the fast flow terminated it"
    );
    shard.assert_clean();
    shard.check_replay();
}

/// The two processes zeebe-process-test's `multiple-call-activity` calls (its test suite
/// deploys its own; these are minimal stand-ins with the same ids).
fn called(id: &str, job_type: &str) -> String {
    common::model(
        id,
        &format!(
            r#"<bpmn:startEvent id="s"/>{}{}{}<bpmn:endEvent id="e"/>"#,
            common::flow("f1", "s", "t"),
            common::service_task("t", job_type),
            common::flow("f2", "t", "e"),
        ),
    )
}

#[test]
fn zeebe_process_test_call_activities_and_the_pr_flow() {
    let mut shard = Shard::new();
    shard.deploy("a.bpmn", &called("alternate-start-end", "first"));
    shard.deploy("b.bpmn", &called("call-activity", "second"));
    deploy_file(&mut shard, "zeebe-pt__multiple-call-activity.bpmn");
    let (instance, _) = shard.create("multiple-call-activity", vars("{}"));
    assert_eq!(
        work(&mut shard, |_| r#"{"fromChild": 1}"#),
        vec!["second", "first"]
    );
    assert!(shard.state.instance(instance).is_none());

    deploy_file(&mut shard, "zeebe-pt__automated-tests.bpmn");
    deploy_file(&mut shard, "zeebe-pt__pr-created.bpmn");
    let started = shard.publish("prCreated", "", r#"{"prId": 7}"#, 0);
    assert!(matches!(
        started.response,
        Response::MessagePublished { .. }
    ));
    let pr: Key = shard
        .state
        .instances()
        .find(|instance| instance.parent.is_none())
        .expect("the message started an instance")
        .key;
    // Tests run in the called process; the review is requested.
    let mut first = work(&mut shard, nothing);
    first.sort();
    assert_eq!(
        first,
        vec![
            "io.camunda.zeebe:userTask",
            "runTests",
            "runTests",
            "runTests"
        ]
    );
    // A day without review: a reminder, then the review arrives approved.
    shard.fire_timers_until(shard.now_millis + 86_400_000);
    assert_eq!(work(&mut shard, nothing), vec!["remindReviewer"]);
    shard.publish("reviewReceived", "7", r#"{"reviewResult": "approved"}"#, 0);
    assert_eq!(
        work(&mut shard, nothing),
        vec!["io.camunda.zeebe:userTask", "deploySnapshot"]
    );
    assert!(shard.state.instance(pr).is_none());
    shard.assert_clean();
    shard.check_replay();
}

#[test]
fn camunda_8_js_sdk_message_starts_errors_and_user_tasks() {
    let mut shard = Shard::new();
    deploy_file(&mut shard, "c8sdk__BpmnParser2.bpmn");
    shard.publish("MSG-START_JOB", "", "{}", 0);
    assert_eq!(work(&mut shard, nothing), vec!["console-log-msg"]);
    shard.publish("MSG-EMIT_FRAME", "", "{}", 0);
    assert_eq!(work(&mut shard, nothing), vec!["console-log"]);
    assert!(shard.state.instances().next().is_none());

    deploy_file(&mut shard, "c8sdk__Client-ThrowError.bpmn");
    let (instance, _) = shard.create("throw-bpmn-error", vars("{}"));
    let job = shard.activate("throw-bpmn-error-task", 1).remove(0);
    shard
        .run(Command::ThrowError {
            key: job.key,
            error_code: "BUSINESS_ERROR".into(),
            message: "the SDK test throws this".into(),
        })
        .expect("thrown");
    assert_eq!(work(&mut shard, nothing), vec!["sad-flow"]);
    assert!(shard.state.instance(instance).is_none());

    deploy_file(&mut shard, "c8sdk__TasklistTestProcess.bpmn");
    let (task, _) = shard.create("TasklistTestProcess", vars("{}"));
    assert_eq!(work(&mut shard, nothing), vec!["io.camunda.zeebe:userTask"]);
    assert!(shard.state.instance(task).is_none());
    shard.assert_clean();
    shard.check_replay();
}
