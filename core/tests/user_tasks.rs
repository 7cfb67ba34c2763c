//! User tasks: assignment, schedule, priority and form key, evaluated when the task's job is
//! created and handed to the worker as `io.camunda.zeebe:` headers.

mod common;

use std::sync::Arc;

use common::{Shard, flow, model, vars};
use ringflow_core::{ActivatedJob, Command, RejectionCode, Resource};

const USER_TASK_JOB: &str = "io.camunda.zeebe:userTask";

/// start -> the user task (its extension elements given) -> end, as process `review`.
fn review(task: &str) -> String {
    let body = format!(
        r#"<bpmn:startEvent id="start"/>{}{task}{}<bpmn:endEvent id="end"/>"#,
        flow("f1", "start", "task"),
        flow("f2", "task", "end")
    );
    model("review", &body)
}

fn user_task(extensions: &str) -> String {
    format!(
        r#"<bpmn:userTask id="task"><bpmn:extensionElements>{extensions}
           </bpmn:extensionElements></bpmn:userTask>"#
    )
}

fn header<'j>(job: &'j ActivatedJob, name: &str) -> Option<&'j str> {
    job.custom_headers
        .iter()
        .find(|(key, _)| key == name)
        .map(|(_, value)| value.as_str())
}

fn only_job(shard: &mut Shard, job_type: &str) -> ActivatedJob {
    let mut jobs = shard.activate(job_type, 10);
    assert_eq!(jobs.len(), 1, "{jobs:?}");
    jobs.remove(0)
}

#[test]
fn static_properties_are_headers_of_the_job() {
    let mut shard = Shard::new();
    shard.deploy(
        "review.bpmn",
        &review(&user_task(
            r#"<zeebe:assignmentDefinition assignee="ana" candidateGroups="sales, ops"
                  candidateUsers="ana,bo"/>
               <zeebe:taskSchedule dueDate="2026-12-24T12:00:00+01:00"
                  followUpDate="2026-12-20T09:00:00@Europe/Berlin"/>
               <zeebe:formDefinition formKey="camunda-forms:bpmn:form_1"/>
               <zeebe:taskHeaders><zeebe:header key="team" value="blue"/></zeebe:taskHeaders>"#,
        )),
    );
    shard.create("review", vars("{}"));
    let job = only_job(&mut shard, USER_TASK_JOB);
    assert_eq!(
        job.custom_headers,
        [
            ("team", "blue"),
            ("io.camunda.zeebe:assignee", "ana"),
            ("io.camunda.zeebe:candidateGroups", r#"["sales","ops"]"#),
            ("io.camunda.zeebe:candidateUsers", r#"["ana","bo"]"#),
            ("io.camunda.zeebe:dueDate", "2026-12-24T12:00:00+01:00"),
            (
                "io.camunda.zeebe:followUpDate",
                "2026-12-20T09:00:00@Europe/Berlin"
            ),
            ("io.camunda.zeebe:formKey", "camunda-forms:bpmn:form_1"),
        ]
        .map(|(k, v)| (k.to_string(), v.to_string()))
    );
    shard.check_replay();
    shard.complete(job.key, vars("{}"));
    shard.assert_clean();
}

#[test]
fn feel_properties_are_evaluated_in_the_task_scope_when_the_job_is_made() {
    let mut shard = Shard::new();
    shard.deploy(
        "review.bpmn",
        &review(&user_task(
            r#"<zeebe:userTask/>
               <zeebe:ioMapping><zeebe:input source="=owner + &quot;@acme&quot;" target="who"/></zeebe:ioMapping>
               <zeebe:assignmentDefinition assignee="=who"
                  candidateGroups="=[region, &quot;ops&quot;]" candidateUsers="=reviewers"/>
               <zeebe:taskSchedule dueDate="=date and time(&quot;2026-12-01T10:00:00Z&quot;) + duration(&quot;P2D&quot;)"
                  followUpDate="=followUp"/>
               <zeebe:priorityDefinition priority="=urgency * 10"/>"#,
        )),
    );
    let (instance, _) = shard.create(
        "review",
        vars(r#"{"owner": "ana", "region": "emea", "reviewers": ["bo", "cy"], "followUp": null, "urgency": 8}"#),
    );
    // Variables changed after the job was made do not change its headers.
    shard
        .run(Command::SetVariables {
            scope: instance,
            variables: vars(r#"{"owner": "zed", "urgency": 1}"#),
            local: false,
        })
        .expect("set");
    let job = only_job(&mut shard, USER_TASK_JOB);
    assert_eq!(header(&job, "io.camunda.zeebe:assignee"), Some("ana@acme"));
    assert_eq!(
        header(&job, "io.camunda.zeebe:candidateGroups"),
        Some(r#"["emea","ops"]"#)
    );
    assert_eq!(
        header(&job, "io.camunda.zeebe:candidateUsers"),
        Some(r#"["bo","cy"]"#)
    );
    assert_eq!(
        header(&job, "io.camunda.zeebe:dueDate"),
        Some("2026-12-03T10:00:00Z")
    );
    // A FEEL null leaves the property out.
    assert_eq!(header(&job, "io.camunda.zeebe:followUpDate"), None);
    assert_eq!(header(&job, "io.camunda.zeebe:priority"), Some("80"));
    // The properties survive a snapshot and a replay.
    shard.check_replay();
    shard.complete(job.key, vars("{}"));
    shard.assert_clean();
}

#[test]
fn a_camunda_user_task_has_priority_50_unless_the_model_says_otherwise() {
    let mut shard = Shard::new();
    shard.deploy("review.bpmn", &review(&user_task("<zeebe:userTask/>")));
    shard.create("review", vars("{}"));
    let job = only_job(&mut shard, USER_TASK_JOB);
    assert_eq!(
        job.custom_headers,
        [("io.camunda.zeebe:priority".to_string(), "50".to_string())]
    );
    // A job-based user task has no priority, and without properties no headers at all.
    let mut shard = Shard::new();
    shard.deploy(
        "review.bpmn",
        &review(&user_task(r#"<zeebe:priorityDefinition priority="90"/>"#)),
    );
    shard.create("review", vars("{}"));
    assert!(
        only_job(&mut shard, USER_TASK_JOB)
            .custom_headers
            .is_empty()
    );
}

#[test]
fn a_property_of_the_wrong_type_is_an_incident_until_fixed_and_resolved() {
    let cases = [
        (
            r#"<zeebe:assignmentDefinition assignee="=who"/>"#,
            r#"{"who": 7}"#,
            "the user task's assignee `=who` gave 7, not a string",
            r#"{"who": "ana"}"#,
            ("io.camunda.zeebe:assignee", "ana"),
        ),
        (
            r#"<zeebe:assignmentDefinition candidateGroups="=groups"/>"#,
            r#"{"groups": ["a", 1]}"#,
            "gave a list holding 1, not a list of strings",
            r#"{"groups": ["a"]}"#,
            ("io.camunda.zeebe:candidateGroups", r#"["a"]"#),
        ),
        (
            r#"<zeebe:assignmentDefinition candidateUsers="=users"/>"#,
            r#"{"users": "ana"}"#,
            "gave \"ana\", not a list of strings",
            r#"{"users": ["ana"]}"#,
            ("io.camunda.zeebe:candidateUsers", r#"["ana"]"#),
        ),
        (
            r#"<zeebe:taskSchedule dueDate="=due"/>"#,
            r#"{"due": "2026-12-24T12:00:00"}"#,
            "has no zone offset",
            r#"{"due": "2026-12-24T12:00:00Z"}"#,
            ("io.camunda.zeebe:dueDate", "2026-12-24T12:00:00Z"),
        ),
        (
            r#"<zeebe:taskSchedule followUpDate="=due"/>"#,
            r#"{"due": 5}"#,
            "the user task's follow-up date `=due` gave 5, not a date and time",
            r#"{"due": "2026-12-24T12:00:00+02:00"}"#,
            ("io.camunda.zeebe:followUpDate", "2026-12-24T12:00:00+02:00"),
        ),
        (
            r#"<zeebe:userTask/><zeebe:priorityDefinition priority="=p"/>"#,
            r#"{"p": 101}"#,
            "the user task's priority `=p` gave 101, not a whole number from 0 to 100",
            r#"{"p": 0}"#,
            ("io.camunda.zeebe:priority", "0"),
        ),
        (
            r#"<zeebe:assignmentDefinition assignee="=assert(who, who = null, &quot;who must be empty&quot;)"/>"#,
            r#"{"who": "ana"}"#,
            "the user task's assignee: `assert(who, who = null, \"who must be empty\")` failed an assertion: who must be empty",
            r#"{"who": null}"#,
            ("", ""),
        ),
    ];
    for (extensions, bad, expected, good, (name, value)) in cases {
        let mut shard = Shard::new();
        shard.deploy("review.bpmn", &review(&user_task(extensions)));
        let (instance, created) = shard.create("review", vars(bad));
        let incident = shard
            .state
            .incidents()
            .find(|incident| incident.process_instance_key == instance)
            .unwrap_or_else(|| panic!("{extensions}: an incident, got {:?}", created.events));
        assert!(
            incident.message.contains(expected),
            "{extensions}: {}",
            incident.message
        );
        let (incident_key, element) = (incident.key, incident.element_instance_key);
        assert!(shard.activate(USER_TASK_JOB, 10).is_empty(), "no job yet");
        shard.fix_and_resolve(element, good, incident_key);
        let job = only_job(&mut shard, USER_TASK_JOB);
        if name.is_empty() {
            // The assertion gives null: the property is left out.
            assert!(
                !job.custom_headers
                    .iter()
                    .any(|(key, _)| key.starts_with("io.camunda.zeebe:assignee")),
                "{job:?}"
            );
        } else {
            assert_eq!(header(&job, name), Some(value), "{extensions}");
        }
        shard.check_replay();
    }
}

#[test]
fn static_values_that_cannot_be_used_are_refused_at_deploy() {
    let cases = [
        (
            r#"<zeebe:taskSchedule dueDate="2026-12-24T12:00:00"/>"#,
            "zeebe:taskSchedule dueDate: `2026-12-24T12:00:00` has no zone offset",
        ),
        (
            r#"<zeebe:taskSchedule followUpDate="next week"/>"#,
            "zeebe:taskSchedule followUpDate: `next week` is not an ISO 8601 date-time",
        ),
        (
            r#"<zeebe:userTask/><zeebe:priorityDefinition priority="101"/>"#,
            "zeebe:priorityDefinition priority `101` is not a whole number from 0 to 100",
        ),
        (
            r#"<zeebe:assignmentDefinition assignee="=who +"/>"#,
            "the assignee:",
        ),
    ];
    for (extensions, expected) in cases {
        let mut shard = Shard::new();
        let rejection = shard
            .run(Command::Deploy {
                resources: vec![Resource {
                    name: "review.bpmn".into(),
                    content: Arc::from(review(&user_task(extensions)).as_bytes()),
                }],
            })
            .expect_err(extensions);
        assert_eq!(rejection.code, RejectionCode::InvalidModel, "{extensions}");
        assert!(
            rejection.message.contains(expected),
            "{extensions}: {}",
            rejection.message
        );
    }
}

#[test]
fn an_execution_listener_job_of_a_user_task_carries_no_task_properties() {
    let mut shard = Shard::new();
    shard.deploy(
        "review.bpmn",
        &review(&user_task(
            r#"<zeebe:assignmentDefinition assignee="ana"/>
               <zeebe:executionListeners>
                 <zeebe:executionListener eventType="end" type="audit"/>
               </zeebe:executionListeners>"#,
        )),
    );
    shard.create("review", vars("{}"));
    let job = only_job(&mut shard, USER_TASK_JOB);
    assert_eq!(header(&job, "io.camunda.zeebe:assignee"), Some("ana"));
    shard.complete(job.key, vars("{}"));
    let listener = only_job(&mut shard, "audit");
    assert_eq!(header(&listener, "io.camunda.zeebe:assignee"), None);
    shard.complete(listener.key, vars("{}"));
    shard.check_replay();
    shard.assert_clean();
}

#[test]
fn a_snapshot_with_damaged_user_task_properties_is_refused() {
    let mut shard = Shard::new();
    shard.deploy(
        "review.bpmn",
        &review(&user_task(
            r#"<zeebe:assignmentDefinition assignee="ana"/>"#,
        )),
    );
    shard.create("review", vars("{}"));
    let bytes = shard.state.encode();
    ringflow_core::State::decode(&bytes).expect("the real snapshot restores");
    // The end: user tasks count u32, then the job key u64, the assignee (flag u8, length
    // u32, "ana"), four absent properties (a flag u8 each), no priority (flag u8), no denied
    // reason (flag u8), held user tasks count u32, and the checksum u32.
    let priority_at = bytes.len() - 4 - 4 - 1 - 1;
    let key_at = priority_at - 4 - (1 + 4 + 3) - 8;
    assert_eq!(
        &bytes[key_at - 4..key_at],
        &1u32.to_le_bytes(),
        "one user task"
    );
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
    let key = with(&|bytes| bytes[key_at] ^= 0x40);
    assert!(key.contains("is not an open job"), "{key}");
    let flag = with(&|bytes| bytes[priority_at] = 7);
    assert!(flag.contains("priority flag 7"), "{flag}");
}

// Task listeners (`zeebe:taskListeners`, Camunda user tasks).

use ringflow_core::ListenerEvent;
use ringflow_core::usertasks::{TaskListenerResult, UserTaskCorrections};

fn listened(listeners: &str, more: &str) -> String {
    review(&user_task(&format!(
        r#"<zeebe:userTask/>
           <zeebe:assignmentDefinition assignee="ana" candidateGroups="sales"/>
           <zeebe:taskListeners>{listeners}</zeebe:taskListeners>{more}"#
    )))
}

fn decide(shard: &mut Shard, key: ringflow_core::Key, result: TaskListenerResult) {
    shard
        .run(Command::CompleteTaskListenerJob {
            key,
            result: Box::new(result),
        })
        .expect("the listener's decision is taken");
}

#[test]
fn creating_listeners_correct_the_task_before_its_job_is_made() {
    let mut shard = Shard::new();
    shard.deploy(
        "review.bpmn",
        &listened(
            r#"<zeebe:taskListener eventType="creating" type="enrich"/>
               <zeebe:taskListener eventType="create" type="schedule"/>"#,
            "",
        ),
    );
    let (instance, _) = shard.create("review", vars(r#"{"amount": 30}"#));
    assert!(shard.activate(USER_TASK_JOB, 10).is_empty(), "no task yet");
    let enrich = only_job(&mut shard, "enrich");
    assert_eq!(enrich.listener, Some(ListenerEvent::Creating));
    assert_eq!(header(&enrich, "io.camunda.zeebe:assignee"), Some("ana"));
    assert_eq!(enrich.variables()["amount"], serde_json::json!(30));
    decide(
        &mut shard,
        enrich.key,
        TaskListenerResult {
            corrections: UserTaskCorrections {
                assignee: Some("bo".into()),
                candidate_groups: Some(Vec::new()),
                due_date: Some("2026-12-24T12:00:00Z".into()),
                ..UserTaskCorrections::default()
            },
            ..TaskListenerResult::default()
        },
    );
    // The snapshot and replay hold the task between its listeners.
    shard.check_replay();
    let schedule = only_job(&mut shard, "schedule");
    assert_eq!(header(&schedule, "io.camunda.zeebe:assignee"), Some("bo"));
    assert_eq!(header(&schedule, "io.camunda.zeebe:candidateGroups"), None);
    // A plain completion of a listener's job goes on with nothing corrected.
    shard.complete(schedule.key, vars("{}"));
    let task = only_job(&mut shard, USER_TASK_JOB);
    assert_eq!(task.listener, None);
    assert_eq!(header(&task, "io.camunda.zeebe:assignee"), Some("bo"));
    assert_eq!(
        header(&task, "io.camunda.zeebe:dueDate"),
        Some("2026-12-24T12:00:00Z")
    );
    assert_eq!(header(&task, "io.camunda.zeebe:candidateGroups"), None);
    shard.complete(task.key, vars(r#"{"approved": true}"#));
    assert!(shard.state.instances().next().is_none(), "{instance} done");
    shard.check_replay();
    shard.assert_clean();
}

#[test]
fn completing_listeners_see_the_completion_and_can_deny_it() {
    let mut shard = Shard::new();
    shard.deploy(
        "review.bpmn",
        &listened(
            r#"<zeebe:taskListener eventType="completing" type="check"/>
               <zeebe:taskListener eventType="completing" type="audit"/>"#,
            "",
        ),
    );
    let (instance, _) = shard.create("review", vars(r#"{"amount": 30}"#));
    let task = only_job(&mut shard, USER_TASK_JOB);
    shard.complete(task.key, vars(r#"{"approved": false}"#));
    // The task's job is gone while its completion is checked; nothing is set yet.
    assert!(shard.activate(USER_TASK_JOB, 10).is_empty());
    assert!(
        !shard
            .state
            .variables(instance)
            .expect("root")
            .contains_key("approved")
    );
    let check = only_job(&mut shard, "check");
    assert_eq!(check.listener, Some(ListenerEvent::Completing));
    assert_eq!(check.variables()["approved"], serde_json::json!(false));
    assert_eq!(check.variables()["amount"], serde_json::json!(30));
    assert_eq!(header(&check, "io.camunda.zeebe:assignee"), Some("ana"));
    shard.check_replay();
    decide(
        &mut shard,
        check.key,
        TaskListenerResult {
            denied: true,
            denied_reason: "say why it is not approved".into(),
            ..TaskListenerResult::default()
        },
    );
    // Denied: the task is open again, as it was, with the reason.
    let again = only_job(&mut shard, USER_TASK_JOB);
    assert_ne!(again.key, task.key);
    assert_eq!(header(&again, "io.camunda.zeebe:assignee"), Some("ana"));
    assert_eq!(
        header(&again, "ringflow:deniedReason"),
        Some("say why it is not approved")
    );
    assert!(
        !shard
            .state
            .variables(instance)
            .expect("root")
            .contains_key("approved")
    );
    shard.complete(again.key, vars(r#"{"approved": false, "why": "too much"}"#));
    let check = only_job(&mut shard, "check");
    shard.complete(check.key, vars("{}"));
    let audit = only_job(&mut shard, "audit");
    assert_eq!(audit.variables()["why"], serde_json::json!("too much"));
    shard.complete(audit.key, vars("{}"));
    // Approved by both: the completion's variables are set and the task is left.
    assert!(shard.state.instances().next().is_none());
    shard.check_replay();
    shard.assert_clean();
}

#[test]
fn a_listener_decision_that_cannot_be_taken_is_refused_and_changes_nothing() {
    let mut shard = Shard::new();
    shard.deploy(
        "review.bpmn",
        &listened(
            r#"<zeebe:taskListener eventType="creating" type="enrich"/>
               <zeebe:taskListener eventType="completing" type="check"/>"#,
            "",
        ),
    );
    shard.create("review", vars("{}"));
    let enrich = only_job(&mut shard, "enrich");
    let refused = |shard: &mut Shard, key, result: TaskListenerResult, expected: &str| {
        let rejection = shard
            .run(Command::CompleteTaskListenerJob {
                key,
                result: Box::new(result),
            })
            .expect_err(expected);
        assert_eq!(rejection.code, RejectionCode::InvalidArgument);
        assert!(
            rejection.message.contains(expected),
            "{}",
            rejection.message
        );
    };
    let thrown = shard
        .run(Command::ThrowError {
            key: enrich.key,
            error_code: "rejected".into(),
            message: String::new(),
        })
        .expect_err("a listener throws no BPMN error");
    assert!(
        thrown.message.contains("is a task listener's job"),
        "{}",
        thrown.message
    );
    let deny = TaskListenerResult {
        denied: true,
        ..TaskListenerResult::default()
    };
    refused(
        &mut shard,
        enrich.key,
        deny.clone(),
        "only completing, assigning and updating listeners can deny",
    );
    let bad_date = TaskListenerResult {
        corrections: UserTaskCorrections {
            due_date: Some("tomorrow".into()),
            ..UserTaskCorrections::default()
        },
        ..TaskListenerResult::default()
    };
    refused(
        &mut shard,
        enrich.key,
        bad_date,
        "the corrected due date: `tomorrow`",
    );
    let bad_priority = TaskListenerResult {
        corrections: UserTaskCorrections {
            priority: Some(101),
            ..UserTaskCorrections::default()
        },
        ..TaskListenerResult::default()
    };
    refused(
        &mut shard,
        enrich.key,
        bad_priority,
        "the corrected priority 101 is not from 0 to 100",
    );
    let rejection = shard
        .run(Command::CompleteJob {
            key: enrich.key,
            variables: vars(r#"{"x": 1}"#),
        })
        .expect_err("variables");
    assert!(
        rejection.message.contains("it takes no variables"),
        "{}",
        rejection.message
    );
    shard.complete(enrich.key, vars("{}"));
    let task = only_job(&mut shard, USER_TASK_JOB);
    refused(
        &mut shard,
        task.key,
        TaskListenerResult::default(),
        "is not a task listener's job",
    );
    shard.complete(task.key, vars("{}"));
    let check = only_job(&mut shard, "check");
    let both = TaskListenerResult {
        denied: true,
        corrections: UserTaskCorrections {
            assignee: Some("bo".into()),
            ..UserTaskCorrections::default()
        },
        ..TaskListenerResult::default()
    };
    refused(&mut shard, check.key, both, "a denial takes no corrections");
    let reason_only = TaskListenerResult {
        denied_reason: "why".into(),
        ..TaskListenerResult::default()
    };
    refused(
        &mut shard,
        check.key,
        reason_only,
        "a denied reason without a denial",
    );
    decide(&mut shard, check.key, TaskListenerResult::default());
    shard.check_replay();
    shard.assert_clean();
}

#[test]
fn an_interrupting_event_takes_the_held_task_and_its_listener_job_away() {
    let mut shard = Shard::new();
    let body = format!(
        r#"<bpmn:startEvent id="start"/>{}{}{}<bpmn:endEvent id="end"/>
           <bpmn:boundaryEvent id="late" attachedToRef="task">
             <bpmn:timerEventDefinition><bpmn:timeDuration>PT1M</bpmn:timeDuration>
             </bpmn:timerEventDefinition></bpmn:boundaryEvent>
           {}<bpmn:endEvent id="expired"/>"#,
        flow("f1", "start", "task"),
        user_task(
            r#"<zeebe:userTask/><zeebe:taskListeners>
                 <zeebe:taskListener eventType="completing" type="check"/>
               </zeebe:taskListeners>"#
        ),
        flow("f2", "task", "end"),
        flow("f3", "late", "expired"),
    );
    shard.deploy("review.bpmn", &model("review", &body));
    shard.create("review", vars("{}"));
    let task = only_job(&mut shard, USER_TASK_JOB);
    shard.complete(task.key, vars(r#"{"done": true}"#));
    let check = only_job(&mut shard, "check");
    assert_eq!(shard.state.user_task_holds().count(), 1);
    shard.fire_timers_until(shard.now_millis + 61_000);
    assert!(
        shard.state.instances().next().is_none(),
        "ended by the timer"
    );
    let rejection = shard
        .run(Command::CompleteTaskListenerJob {
            key: check.key,
            result: Box::default(),
        })
        .expect_err("the listener's job went with the task");
    assert_eq!(rejection.code, RejectionCode::JobNotFound);
    shard.check_replay();
    shard.assert_clean();
}

#[test]
fn a_completing_listener_that_cannot_be_made_is_an_incident_that_runs_them_again() {
    let mut shard = Shard::new();
    shard.deploy(
        "review.bpmn",
        &listened(
            r#"<zeebe:taskListener eventType="completing" type="check"/>
               <zeebe:taskListener eventType="completing" type="=auditor" retries="1"/>"#,
            "",
        ),
    );
    let (instance, _) = shard.create("review", vars("{}"));
    let task = only_job(&mut shard, USER_TASK_JOB);
    shard.complete(task.key, vars(r#"{"done": true}"#));
    let check = only_job(&mut shard, "check");
    shard.complete(check.key, vars("{}"));
    // `auditor` is not set: the second listener's type fails.
    let incident = shard.state.incidents().next().expect("an incident").clone();
    assert!(
        incident.message.contains("job type"),
        "{}",
        incident.message
    );
    shard.fix_and_resolve(instance, r#"{"auditor": "audit"}"#, incident.key);
    // Resolved: the completing listeners run again, from the first.
    let check = only_job(&mut shard, "check");
    shard.complete(check.key, vars("{}"));
    let audit = only_job(&mut shard, "audit");
    // A listener job that fails with no retries left is an incident too.
    shard
        .run(Command::FailJob {
            key: audit.key,
            retries: 0,
            retry_backoff_millis: 0,
            message: "down".into(),
        })
        .expect("failed");
    let incident = shard.state.incidents().next().expect("an incident").key;
    shard
        .run(Command::UpdateJobRetries {
            key: audit.key,
            retries: 1,
        })
        .expect("retries");
    shard
        .run(Command::ResolveIncident { key: incident })
        .expect("resolved");
    let audit = only_job(&mut shard, "audit");
    shard.complete(audit.key, vars("{}"));
    assert!(shard.state.instances().next().is_none());
    shard.check_replay();
    shard.assert_clean();
}

#[test]
fn a_user_task_is_assigned_and_unassigned_by_its_job_key() {
    let mut shard = Shard::new();
    shard.deploy(
        "review.bpmn",
        &review(&user_task(
            r#"<zeebe:userTask/><zeebe:assignmentDefinition assignee="ana"/>"#,
        )),
    );
    shard.create("review", vars("{}"));
    shard.create("review", vars("{}"));
    let held = shard.activate(USER_TASK_JOB, 1).remove(0);
    let assign = |shard: &mut Shard, key, assignee: Option<&str>| {
        shard.run(Command::AssignUserTask {
            key,
            assignee: assignee.map(String::from),
        })
    };
    let outcome = assign(&mut shard, held.key, Some("bo")).expect("assigned");
    assert!(
        outcome.events.iter().any(|event| matches!(
            event,
            ringflow_core::Event::UserTaskAssigned { key, assignee }
                if *key == held.key && assignee.as_deref() == Some("bo")
        )),
        "{:?}",
        outcome.events
    );
    // The job keeps its key and its lease; it knows its new assignee.
    let job = shard
        .state
        .jobs()
        .find(|job| job.key == held.key)
        .expect("still open");
    assert!(matches!(
        job.state,
        ringflow_core::JobState::Activated { .. }
    ));
    assert_eq!(
        job.user_task
            .as_ref()
            .and_then(|task| task.assignee.as_deref()),
        Some("bo")
    );
    // The other task, unassigned, is handed out without an assignee.
    let other = shard.activate(USER_TASK_JOB, 10).remove(0);
    assign(&mut shard, other.key, None).expect("unassigned");
    shard
        .run(Command::FailJob {
            key: other.key,
            retries: 2,
            retry_backoff_millis: 0,
            message: "handed back".into(),
        })
        .expect("handed back");
    let again = only_job(&mut shard, USER_TASK_JOB);
    assert_eq!(again.key, other.key);
    assert_eq!(header(&again, "io.camunda.zeebe:assignee"), None);
    assert_eq!(header(&again, "io.camunda.zeebe:priority"), Some("50"));
    shard.check_replay();
    // What cannot be assigned.
    let refused = |shard: &mut Shard, key, assignee: Option<&str>, code, text: &str| {
        let rejection = assign(shard, key, assignee).expect_err(text);
        assert_eq!(rejection.code, code, "{}", rejection.message);
        assert!(rejection.message.contains(text), "{}", rejection.message);
    };
    refused(
        &mut shard,
        held.key,
        Some(""),
        RejectionCode::InvalidArgument,
        "the assignee is empty",
    );
    let long = "x".repeat(1025);
    refused(
        &mut shard,
        held.key,
        Some(&long),
        RejectionCode::InvalidArgument,
        "over NAME_BYTES_MAX",
    );
    shard
        .run(Command::FailJob {
            key: held.key,
            retries: 0,
            retry_backoff_millis: 0,
            message: "down".into(),
        })
        .expect("failed");
    refused(
        &mut shard,
        held.key,
        Some("bo"),
        RejectionCode::InvalidState,
        "resolve its incident before the user task is assigned or updated",
    );
    shard
        .run(Command::UpdateJobRetries {
            key: held.key,
            retries: 1,
        })
        .expect("retries");
    let incident = shard.state.incidents().next().expect("an incident").key;
    shard
        .run(Command::ResolveIncident { key: incident })
        .expect("resolved");
    shard.complete(held.key, vars("{}"));
    refused(
        &mut shard,
        held.key,
        Some("bo"),
        RejectionCode::JobNotFound,
        "no open user task has it",
    );
    let mut service = Shard::new();
    service.deploy("one.bpmn", &common::one_task());
    service.create("one-task", vars("{}"));
    let work = service.activate("work", 1).remove(0);
    refused(
        &mut service,
        work.key,
        Some("bo"),
        RejectionCode::InvalidArgument,
        "is not a user task's job",
    );
}

#[test]
fn assigning_listeners_see_the_new_assignee_and_may_correct_or_deny_it() {
    let mut shard = Shard::new();
    shard.deploy(
        "review.bpmn",
        &listened(
            r#"<zeebe:taskListener eventType="assigning" type="notify"/>"#,
            "",
        ),
    );
    // Made with an assignee: made unassigned, then assigned through the listener.
    let (instance, created) = shard.create("review", vars("{}"));
    let made = created
        .events
        .iter()
        .find_map(|event| match event {
            ringflow_core::Event::UserTaskCreated(task) => Some(task.clone()),
            _ => None,
        })
        .expect("the task is recorded");
    assert_eq!(made.properties.assignee, None, "made unassigned");
    assert!(shard.activate(USER_TASK_JOB, 10).is_empty(), "held");
    let notify = only_job(&mut shard, "notify");
    assert_eq!(notify.listener, Some(ListenerEvent::Assigning));
    assert_eq!(header(&notify, "io.camunda.zeebe:assignee"), Some("ana"));
    shard.check_replay();
    let done = shard.complete(notify.key, vars("{}"));
    assert!(done.events.iter().any(|event| matches!(
        event,
        ringflow_core::Event::UserTaskAssigned { key, assignee }
            if *key == made.job_key && assignee.as_deref() == Some("ana")
    )));
    let task = only_job(&mut shard, USER_TASK_JOB);
    assert_eq!(task.key, made.job_key, "the job keeps its key");
    assert_eq!(header(&task, "io.camunda.zeebe:assignee"), Some("ana"));
    // Reassigned while a worker holds it: the listener corrects the assignee.
    shard
        .run(Command::AssignUserTask {
            key: task.key,
            assignee: Some("bo".into()),
        })
        .expect("assigning");
    let notify = only_job(&mut shard, "notify");
    assert_eq!(header(&notify, "io.camunda.zeebe:assignee"), Some("bo"));
    decide(
        &mut shard,
        notify.key,
        TaskListenerResult {
            corrections: UserTaskCorrections {
                assignee: Some("cy".into()),
                ..UserTaskCorrections::default()
            },
            ..TaskListenerResult::default()
        },
    );
    let task = only_job(&mut shard, USER_TASK_JOB);
    assert_eq!(header(&task, "io.camunda.zeebe:assignee"), Some("cy"));
    // Denied: the assignee stays.
    shard
        .run(Command::AssignUserTask {
            key: task.key,
            assignee: None,
        })
        .expect("unassigning");
    let notify = only_job(&mut shard, "notify");
    assert_eq!(header(&notify, "io.camunda.zeebe:assignee"), None);
    shard.check_replay();
    decide(
        &mut shard,
        notify.key,
        TaskListenerResult {
            denied: true,
            denied_reason: "the task needs someone".into(),
            ..TaskListenerResult::default()
        },
    );
    let task = only_job(&mut shard, USER_TASK_JOB);
    assert_eq!(header(&task, "io.camunda.zeebe:assignee"), Some("cy"));
    // While the task is being assigned it cannot be assigned or completed again.
    shard
        .run(Command::AssignUserTask {
            key: task.key,
            assignee: Some("dee".into()),
        })
        .expect("assigning");
    let again = shard
        .run(Command::AssignUserTask {
            key: task.key,
            assignee: Some("eve".into()),
        })
        .expect_err("held");
    assert_eq!(again.code, RejectionCode::InvalidState, "{again}");
    let complete = shard
        .run(Command::CompleteJob {
            key: task.key,
            variables: vars("{}"),
        })
        .expect_err("held");
    assert_eq!(complete.code, RejectionCode::InvalidState, "{complete}");
    // Cancelling the instance takes the held job with it.
    shard
        .run(Command::CancelInstance { key: instance })
        .expect("cancelled");
    shard.check_replay();
    shard.assert_clean();
}

#[test]
fn a_user_task_is_updated_through_its_updating_listeners_or_at_once() {
    // Without updating listeners: at once.
    let mut shard = Shard::new();
    shard.deploy(
        "review.bpmn",
        &review(&user_task(
            r#"<zeebe:userTask/><zeebe:assignmentDefinition candidateGroups="sales"/>"#,
        )),
    );
    shard.create("review", vars("{}"));
    let task = only_job(&mut shard, USER_TASK_JOB);
    let update = |shard: &mut Shard, key, changes: UserTaskCorrections| {
        shard.run(Command::UpdateUserTask {
            key,
            changes: Box::new(changes),
        })
    };
    let outcome = update(
        &mut shard,
        task.key,
        UserTaskCorrections {
            candidate_groups: Some(vec!["ops".into()]),
            due_date: Some("2026-12-24T12:00:00Z".into()),
            priority: Some(90),
            ..UserTaskCorrections::default()
        },
    )
    .expect("updated");
    assert!(outcome.events.iter().any(|event| matches!(
        event,
        ringflow_core::Event::UserTaskUpdated { key, properties }
            if *key == task.key && properties.priority == Some(90)
    )));
    let properties = shard
        .state
        .jobs()
        .find(|job| job.key == task.key)
        .and_then(|job| job.user_task.clone())
        .expect("properties");
    assert_eq!(properties.candidate_groups, Some(vec!["ops".to_string()]));
    assert_eq!(properties.due_date.as_deref(), Some("2026-12-24T12:00:00Z"));
    for (changes, expected) in [
        (
            UserTaskCorrections {
                assignee: Some("ana".into()),
                ..UserTaskCorrections::default()
            },
            "does not change the assignee",
        ),
        (UserTaskCorrections::default(), "changes nothing"),
        (
            UserTaskCorrections {
                follow_up_date: Some("soon".into()),
                ..UserTaskCorrections::default()
            },
            "the corrected follow-up date: `soon`",
        ),
    ] {
        let rejection = update(&mut shard, task.key, changes).expect_err(expected);
        assert_eq!(rejection.code, RejectionCode::InvalidArgument);
        assert!(
            rejection.message.contains(expected),
            "{}",
            rejection.message
        );
    }
    shard.check_replay();

    // With an updating listener: the job is held until it approves; a denial keeps the task
    // as it was.
    let mut shard = Shard::new();
    shard.deploy(
        "review.bpmn",
        &listened(
            r#"<zeebe:taskListener eventType="updating" type="vet"/>"#,
            "",
        ),
    );
    shard.create("review", vars("{}"));
    let task = only_job(&mut shard, USER_TASK_JOB);
    let changes = UserTaskCorrections {
        priority: Some(10),
        ..UserTaskCorrections::default()
    };
    update(&mut shard, task.key, changes.clone()).expect("updating");
    assert!(shard.activate(USER_TASK_JOB, 10).is_empty(), "held");
    let vet = only_job(&mut shard, "vet");
    assert_eq!(vet.listener, Some(ListenerEvent::Updating));
    assert_eq!(header(&vet, "io.camunda.zeebe:priority"), Some("10"));
    shard.check_replay();
    decide(
        &mut shard,
        vet.key,
        TaskListenerResult {
            denied: true,
            ..TaskListenerResult::default()
        },
    );
    let back = only_job(&mut shard, USER_TASK_JOB);
    assert_eq!(back.key, task.key);
    assert_eq!(header(&back, "io.camunda.zeebe:priority"), Some("50"));
    update(&mut shard, task.key, changes).expect("updating again");
    let vet = only_job(&mut shard, "vet");
    let done = shard.complete(vet.key, vars("{}"));
    assert!(done.events.iter().any(|event| matches!(
        event,
        ringflow_core::Event::UserTaskUpdated { key, properties }
            if *key == task.key && properties.priority == Some(10)
    )));
    let back = only_job(&mut shard, USER_TASK_JOB);
    assert_eq!(header(&back, "io.camunda.zeebe:priority"), Some("10"));
    assert_eq!(header(&back, "io.camunda.zeebe:assignee"), Some("ana"));
    shard.complete(back.key, vars("{}"));
    shard.check_replay();
    shard.assert_clean();
}

#[test]
fn a_snapshot_with_a_damaged_held_job_is_refused() {
    let mut shard = Shard::new();
    shard.deploy(
        "review.bpmn",
        &review(&user_task(
            r#"<zeebe:userTask/><zeebe:taskListeners>
                 <zeebe:taskListener eventType="assigning" type="notify"/>
               </zeebe:taskListeners>"#,
        )),
    );
    shard.create("review", vars("{}"));
    let task = only_job(&mut shard, USER_TASK_JOB);
    shard
        .run(Command::AssignUserTask {
            key: task.key,
            assignee: None,
        })
        .expect("held for the listener");
    let bytes = shard.state.encode();
    ringflow_core::State::decode(&bytes).expect("the real snapshot restores");
    // The end: the held job's properties (no assignee, four absent properties, priority 50,
    // no denied reason: 8 bytes) behind their flag, before the checksum; before them its
    // retries u32, its type (u32 length + 25 bytes), its key u64 and its flag.
    let properties_flag_at = bytes.len() - 4 - 8 - 1;
    let job_flag_at = properties_flag_at - 4 - (4 + USER_TASK_JOB.len()) - 8 - 1;
    assert_eq!(bytes[properties_flag_at], 1);
    assert_eq!(bytes[job_flag_at], 1);
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
    let properties = with(&|bytes| bytes[properties_flag_at] = 9);
    assert!(properties.contains("properties flag 9"), "{properties}");
    let job = with(&|bytes| bytes[job_flag_at] = 7);
    assert!(job.contains("held job flag 7"), "{job}");
    let open = with(&|bytes| {
        // The held job's key made the listener job's: it is open already.
        let listener = shard
            .state
            .jobs()
            .find(|job| job.listener.is_some())
            .expect("the listener's job")
            .key;
        bytes[job_flag_at + 1..job_flag_at + 9].copy_from_slice(&listener.0.to_le_bytes());
    });
    assert!(open.contains("is also an open job"), "{open}");
}

/// How the held transitions that `outcome` ended, ended.
fn transitions_ended(
    outcome: &ringflow_core::Outcome,
) -> Vec<(ringflow_core::Key, ringflow_core::TransitionEnd)> {
    outcome
        .effects
        .iter()
        .filter_map(|effect| match effect {
            ringflow_core::Effect::UserTaskTransitionEnded {
                element_instance_key,
                end,
            } => Some((*element_instance_key, end.clone())),
            _ => None,
        })
        .collect()
}

/// A completion, assignment or update that waits for task listeners is answered
/// `UserTaskTransitionHeld`, and the command that ends it carries
/// `Effect::UserTaskTransitionEnded` with how it ended (the shard answers the caller then):
/// done, denied with the listener's reason, or terminated with the task.
#[test]
fn a_held_transition_is_answered_as_held_and_its_end_is_an_effect() {
    use ringflow_core::{Response, TransitionEnd};
    let mut shard = Shard::new();
    shard.deploy(
        "review.bpmn",
        &listened(
            r#"<zeebe:taskListener eventType="completing" type="check"/>
               <zeebe:taskListener eventType="assigning" type="notify"/>
               <zeebe:taskListener eventType="updating" type="route"/>"#,
            "",
        ),
    );
    let (instance, _) = shard.create("review", vars("{}"));
    // Made with an assignee: made unassigned, then assigned through the listener. Nobody
    // asked for that transition, but its end is told all the same (the shard ignores it).
    let notify = only_job(&mut shard, "notify");
    let element = notify.element_instance_key;
    let outcome = shard.complete(notify.key, vars("{}"));
    assert_eq!(
        transitions_ended(&outcome),
        [(element, TransitionEnd::Done)]
    );
    let task = only_job(&mut shard, USER_TASK_JOB);
    let held = |event| Response::UserTaskTransitionHeld {
        key: task.key,
        element_instance_key: element,
        event,
        seq: 0,
    };

    // An assignment, denied with a reason.
    let outcome = shard
        .run(Command::AssignUserTask {
            key: task.key,
            assignee: Some("bo".into()),
        })
        .expect("assigning");
    assert_eq!(outcome.response, held(ListenerEvent::Assigning));
    assert!(transitions_ended(&outcome).is_empty(), "it waits");
    // Meanwhile the task's job is held: commands about it say so (not JOB_NOT_FOUND).
    for command in [
        Command::CompleteJob {
            key: task.key,
            variables: vars("{}"),
        },
        Command::AssignUserTask {
            key: task.key,
            assignee: Some("cy".into()),
        },
        Command::FailJob {
            key: task.key,
            retries: 1,
            retry_backoff_millis: 0,
            message: String::new(),
        },
    ] {
        let refused = shard.run(command).expect_err("held");
        assert_eq!(refused.code, RejectionCode::InvalidState, "{refused}");
        assert!(
            refused
                .message
                .contains("is held while its user task's task listeners run"),
            "{refused}"
        );
    }
    let notify = only_job(&mut shard, "notify");
    let denial = TaskListenerResult {
        denied: true,
        denied_reason: "bo is away".into(),
        ..TaskListenerResult::default()
    };
    let outcome = shard
        .run(Command::CompleteTaskListenerJob {
            key: notify.key,
            result: Box::new(denial.clone()),
        })
        .expect("denied");
    assert_eq!(
        transitions_ended(&outcome),
        [(element, TransitionEnd::Denied("bo is away".into()))]
    );

    // An update, done.
    let outcome = shard
        .run(Command::UpdateUserTask {
            key: task.key,
            changes: Box::new(UserTaskCorrections {
                priority: Some(80),
                ..UserTaskCorrections::default()
            }),
        })
        .expect("updating");
    assert_eq!(outcome.response, held(ListenerEvent::Updating));
    let route = only_job(&mut shard, "route");
    let outcome = shard.complete(route.key, vars("{}"));
    assert_eq!(
        transitions_ended(&outcome),
        [(element, TransitionEnd::Done)]
    );

    // A completion, denied without a reason, then done: the instance ends with it.
    let task = only_job(&mut shard, USER_TASK_JOB);
    let outcome = shard.complete(task.key, vars(r#"{"ok": true}"#));
    assert_eq!(outcome.response, held(ListenerEvent::Completing));
    let check = only_job(&mut shard, "check");
    let outcome = shard
        .run(Command::CompleteTaskListenerJob {
            key: check.key,
            result: Box::new(TaskListenerResult {
                denied: true,
                ..TaskListenerResult::default()
            }),
        })
        .expect("denied");
    assert_eq!(
        transitions_ended(&outcome),
        [(element, TransitionEnd::Denied(String::new()))]
    );
    let task = only_job(&mut shard, USER_TASK_JOB);
    let outcome = shard.complete(task.key, vars(r#"{"ok": true}"#));
    assert!(matches!(
        outcome.response,
        Response::UserTaskTransitionHeld {
            event: ListenerEvent::Completing,
            ..
        }
    ));
    let check = only_job(&mut shard, "check");
    let outcome = shard.complete(check.key, vars("{}"));
    assert_eq!(
        transitions_ended(&outcome),
        [(element, TransitionEnd::Done)]
    );
    assert!(shard.state.instances().next().is_none(), "{instance} done");

    // How the held transitions of `instance` end when it is cancelled.
    let cancelled = |shard: &mut Shard, instance| {
        let outcome = shard
            .run(Command::CancelInstance { key: instance })
            .expect("cancelled");
        transitions_ended(&outcome)
    };
    // A completion whose instance is cancelled while it waits: terminated.
    let (instance, _) = shard.create("review", vars("{}"));
    let notify = only_job(&mut shard, "notify");
    shard.complete(notify.key, vars("{}"));
    let task = only_job(&mut shard, USER_TASK_JOB);
    shard.complete(task.key, vars("{}"));
    assert_eq!(
        cancelled(&mut shard, instance),
        [(task.element_instance_key, TransitionEnd::Terminated)]
    );
    // Cancelled while its assignment at creation waits: terminated too (nobody asked).
    let (instance, _) = shard.create("review", vars("{}"));
    let notify = only_job(&mut shard, "notify");
    assert_eq!(
        cancelled(&mut shard, instance),
        [(notify.element_instance_key, TransitionEnd::Terminated)]
    );
    // A task with nothing held ends with nothing to tell.
    let (instance, _) = shard.create("review", vars("{}"));
    let notify = only_job(&mut shard, "notify");
    shard.complete(notify.key, vars("{}"));
    assert!(cancelled(&mut shard, instance).is_empty());
    shard.check_replay();
    shard.assert_clean();
}
