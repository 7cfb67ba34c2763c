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
    // u32, "ana"), four absent properties (a flag u8 each), no priority (flag u8), and the
    // checksum u32.
    let priority_at = bytes.len() - 4 - 1;
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
