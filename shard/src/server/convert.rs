//! Between the wire's messages and the engine's commands and answers.

use std::sync::Arc;

use ringflow_core::{ActivatedJob, Key, ProcessRef, Rejection, Response as Answer, Variables};
use ringflow_wire::{
    Deployed, DeployedProcess, ErrorCode, InstanceCreated, Job, Resource, Response, WireError,
};

use crate::shard::SubmitError;

/// Parses variables: empty text is no variables; anything else must be a JSON object.
pub(crate) fn variables(text: &str) -> Result<Variables, WireError> {
    if text.trim().is_empty() {
        return Ok(Variables::new());
    }
    match serde_json::from_str::<serde_json::Value>(text) {
        Ok(serde_json::Value::Object(map)) => Ok(map),
        Ok(other) => Err(WireError::new(
            ErrorCode::InvalidArgument,
            format!("variables must be a JSON object, not {}", json_kind(&other)),
        )),
        Err(error) => Err(WireError::new(
            ErrorCode::InvalidArgument,
            format!("variables are not valid JSON: {error}"),
        )),
    }
}

fn json_kind(value: &serde_json::Value) -> &'static str {
    match value {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "a boolean",
        serde_json::Value::Number(_) => "a number",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Array(_) => "an array",
        serde_json::Value::Object(_) => "an object",
    }
}

/// The elements of an `ActivateAdHocActivities` request, each variables text parsed.
pub(crate) fn ad_hoc_activations(
    elements: Vec<(String, String)>,
) -> Result<Vec<ringflow_core::adhoc::AdHocActivation>, WireError> {
    elements
        .into_iter()
        .map(|(element_id, text)| match variables(&text) {
            Ok(variables) => Ok(ringflow_core::adhoc::AdHocActivation {
                element_id,
                variables,
            }),
            Err(error) => Err(WireError::new(
                ErrorCode::InvalidArgument,
                format!("element `{element_id}`: {}", error.message),
            )),
        })
        .collect()
}

pub(crate) fn variables_text(variables: &Variables) -> String {
    ringflow_core::to_json_string(variables)
}

pub(crate) fn resources(resources: Vec<Resource>) -> Vec<ringflow_core::Resource> {
    resources
        .into_iter()
        .map(|resource| ringflow_core::Resource {
            name: resource.name,
            content: Arc::from(resource.content),
        })
        .collect()
}

pub(crate) fn process_ref(
    bpmn_process_id: String,
    process_definition_key: u64,
) -> Result<ProcessRef, WireError> {
    if process_definition_key != 0 {
        Ok(ProcessRef::Key(Key(process_definition_key)))
    } else if bpmn_process_id.is_empty() {
        Err(WireError::new(
            ErrorCode::InvalidArgument,
            "CreateInstance names neither a bpmn_process_id nor a process_definition_key",
        ))
    } else {
        Ok(ProcessRef::Latest(bpmn_process_id))
    }
}

/// The retry-after sent with BUSY when the cold store is too far behind: the exporter needs
/// time to catch up, so clients back off longer than for a full connection budget.
pub const EXPORT_BUSY_RETRY_AFTER_MS: u32 = 500;

/// The wire error for a refused command.
pub(crate) fn rejection(rejection: Rejection) -> WireError {
    WireError::new(
        ErrorCode::from_name(rejection.code.code()),
        rejection.message,
    )
}

pub(crate) fn submit_error(error: SubmitError) -> WireError {
    match error {
        SubmitError::Rejected(refused) => rejection(refused),
        SubmitError::Busy(reason) => WireError {
            retry_after_ms: EXPORT_BUSY_RETRY_AFTER_MS,
            ..WireError::new(ErrorCode::Busy, reason)
        },
        SubmitError::Stopped(reason) => WireError::new(
            ErrorCode::Unavailable,
            format!("the shard stopped: {reason}; it recovers when the server restarts"),
        ),
    }
}

/// A job for the wire: the engine already left out what its `fetch_variables` did not name.
pub(crate) fn job(job: ActivatedJob) -> Job {
    let variables = job.variables_json;
    Job {
        key: job.key.0,
        job_type: job.job_type,
        process_instance_key: job.process_instance_key.0,
        bpmn_process_id: job.bpmn_process_id,
        element_id: job.element_id,
        element_instance_key: job.element_instance_key.0,
        retries: job.retries,
        deadline_ms: job.deadline_millis,
        custom_headers: job.custom_headers,
        variables,
        listener: job.listener.map(|event| match event {
            ringflow_core::ListenerEvent::Start => ringflow_wire::JobListener::Start,
            ringflow_core::ListenerEvent::End => ringflow_wire::JobListener::End,
            ringflow_core::ListenerEvent::Creating => ringflow_wire::JobListener::Creating,
            ringflow_core::ListenerEvent::Completing => ringflow_wire::JobListener::Completing,
            ringflow_core::ListenerEvent::Assigning => ringflow_wire::JobListener::Assigning,
            ringflow_core::ListenerEvent::Updating => ringflow_wire::JobListener::Updating,
        }),
    }
}

/// The answer to `EvaluateConditional` (out of line: rare, and `answer` is on every
/// command's path).
#[cold]
#[inline(never)]
fn instances_started(started: Vec<ringflow_core::StartedInstance>) -> Response {
    Response::InstancesStarted(
        started
            .into_iter()
            .map(|one| ringflow_wire::StartedInstance {
                created: InstanceCreated {
                    process_instance_key: one.process_instance_key.0,
                    process_definition_key: one.process_definition_key.0,
                    bpmn_process_id: one.bpmn_process_id,
                    version: one.version,
                },
                start_event_id: one.start_event_id.to_string(),
            })
            .collect(),
    )
}

pub(crate) fn created(answer: &Answer) -> Option<InstanceCreated> {
    match answer {
        Answer::InstanceCreated {
            process_instance_key,
            process_definition_key,
            bpmn_process_id,
            version,
        } => Some(InstanceCreated {
            process_instance_key: process_instance_key.0,
            process_definition_key: process_definition_key.0,
            bpmn_process_id: bpmn_process_id.clone(),
            version: *version,
        }),
        _ => None,
    }
}

/// The wire answer for an engine outcome.
pub(crate) fn outcome(outcome: ringflow_core::Outcome) -> Response {
    let incident_key = outcome
        .events
        .iter()
        .find_map(|event| match event {
            ringflow_core::Event::IncidentCreated { key, .. } => Some(key.0),
            _ => None,
        })
        .unwrap_or(0);
    match answer(outcome.response) {
        Response::Done { key, .. } => Response::Done { key, incident_key },
        other => other,
    }
}

/// The wire answer for an engine answer.
pub(crate) fn answer(answer: Answer) -> Response {
    let done = |key: Key| Response::Done {
        key: key.0,
        incident_key: 0,
    };
    match answer {
        Answer::Deployed(deployment) => Response::Deployed(Deployed {
            deployment_key: deployment.key.0,
            processes: deployment
                .processes
                .into_iter()
                .map(|process| DeployedProcess {
                    bpmn_process_id: process.bpmn_process_id,
                    version: process.version,
                    process_definition_key: process.process_definition_key.0,
                    resource_name: process.resource_name,
                    duplicate: process.duplicate,
                })
                .collect(),
            decisions: deployment
                .decisions
                .into_iter()
                .map(|decision| ringflow_wire::DeployedDecision {
                    decision_id: decision.decision_id,
                    name: decision.name,
                    version: decision.version,
                    decision_key: decision.decision_key.0,
                    resource_name: decision.resource_name,
                    duplicate: decision.duplicate,
                })
                .collect(),
        }),
        Answer::InstanceCreated { .. } => {
            Response::InstanceCreated(created(&answer).expect("an InstanceCreated answer"))
        }
        Answer::InstanceCanceled {
            process_instance_key,
        } => done(process_instance_key),
        Answer::JobsActivated(jobs) => Response::Jobs(jobs.into_iter().map(job).collect()),
        Answer::JobCompleted { key }
        | Answer::JobUpdated { key }
        | Answer::IncidentResolved { key }
        | Answer::UserTaskTransitionHeld { key, .. } => done(key),
        Answer::VariablesSet { scope } => done(scope),
        Answer::AdHocActivitiesActivated { key } => done(key),
        Answer::ConditionalEvaluated(started) => instances_started(started),
        Answer::MessagePublished { key }
        | Answer::SignalBroadcast { key }
        | Answer::SignalContinued { key }
        | Answer::CompensationContinued { key }
        | Answer::MessageExpired { key }
        | Answer::TimerTriggered { key } => done(key),
        // Mail between shards is not a client request; its answers never reach a client.
        Answer::MailTaken { seq, .. } | Answer::MailAcknowledged { seq, .. } => Response::Done {
            key: seq,
            incident_key: 0,
        },
    }
}

/// A task listener's decision as the engine takes it (the engine checks the values).
pub(crate) fn task_listener_result(
    decision: ringflow_wire::TaskListenerDecision,
) -> Box<ringflow_core::usertasks::TaskListenerResult> {
    Box::new(ringflow_core::usertasks::TaskListenerResult {
        denied: decision.denied,
        denied_reason: decision.denied_reason,
        corrections: ringflow_core::usertasks::UserTaskCorrections {
            assignee: decision.assignee,
            candidate_groups: decision.candidate_groups,
            candidate_users: decision.candidate_users,
            due_date: decision.due_date,
            follow_up_date: decision.follow_up_date,
            priority: decision.priority,
        },
    })
}

/// The answer to a user task's completion, assignment or update (`event`, of the task whose
/// job is `key`) that waited for its task listeners, as it ended.
pub(crate) fn transition_end(
    key: Key,
    event: ringflow_core::ListenerEvent,
    end: ringflow_core::TransitionEnd,
) -> Response {
    let what = transition_name(event);
    match end {
        ringflow_core::TransitionEnd::Done => Response::Done {
            key: key.0,
            incident_key: 0,
        },
        ringflow_core::TransitionEnd::Denied(reason) => Response::Error(WireError::new(
            ErrorCode::InvalidState,
            if reason.is_empty() {
                format!("the {what} of the user task of job {key} was denied by a task listener")
            } else {
                format!(
                    "the {what} of the user task of job {key} was denied by a task listener: \
                     {reason}"
                )
            },
        )),
        ringflow_core::TransitionEnd::Terminated => Response::Error(WireError::new(
            ErrorCode::InvalidState,
            format!(
                "the user task of job {key} was terminated before its task listeners were done \
                 with its {what}"
            ),
        )),
    }
}

/// "completion", "assignment" or "update".
pub(crate) fn transition_name(event: ringflow_core::ListenerEvent) -> &'static str {
    match event {
        ringflow_core::ListenerEvent::Completing => "completion",
        ringflow_core::ListenerEvent::Assigning => "assignment",
        _ => "update",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `ActivatedJob::answer_bytes`, which `ACTIVATION_ANSWER_BYTES_MAX` bounds, is at least
    /// what the job takes in a frame, for jobs small and large, with and without headers.
    #[test]
    fn a_jobs_answer_bytes_are_at_least_its_encoded_size() {
        use std::sync::Arc;
        let make = |headers: usize, text: usize| ringflow_core::ActivatedJob {
            key: Key(u64::MAX - 1),
            job_type: Arc::from("t".repeat(text.min(1024))),
            process_instance_key: Key(u64::MAX - 2),
            bpmn_process_id: Arc::from("p".repeat(text.min(1024))),
            element_id: Arc::from("e".repeat(text.min(1024))),
            element_instance_key: Key(u64::MAX - 3),
            retries: u32::MAX,
            deadline_millis: i64::MAX,
            custom_headers: (0..headers)
                .map(|n| (format!("h{n}"), "v".repeat(text % 7)))
                .collect(),
            variables_json: format!(r#"{{"v":"{}"}}"#, "x".repeat(text)),
            listener: Some(ringflow_core::ListenerEvent::Completing),
        };
        for (count, headers, text) in [
            (1, 0, 0),
            (1, 0, 1),
            (1, 3, 5),
            (7, 2, 3),
            (100, 0, 0),
            (100, 20, 1),
            (3, 1, 1 << 20),
        ] {
            let jobs: Vec<_> = (0..count).map(|_| make(headers, text)).collect();
            let estimated: usize = jobs
                .iter()
                .map(ringflow_core::ActivatedJob::answer_bytes)
                .sum();
            let mut encoder = ringflow_wire::FrameEncoder::default();
            let response = Response::Jobs(jobs.into_iter().map(job).collect());
            encoder.push_response(u64::MAX, &response);
            let mut frame = Vec::new();
            encoder.finish_into(&mut frame);
            assert!(
                frame.len() <= estimated,
                "{count} jobs, {headers} headers, texts of {text}: {} bytes encoded, {estimated} counted",
                frame.len()
            );
        }
    }

    #[test]
    fn variables_must_be_an_object() {
        assert!(variables("").expect("empty is none").is_empty());
        assert_eq!(variables(r#"{"a":1}"#).expect("object")["a"], 1);
        let error = variables("[1]").expect_err("array");
        assert_eq!(error.code, ErrorCode::InvalidArgument);
        assert_eq!(
            error.message,
            "variables must be a JSON object, not an array"
        );
        let error = variables("{").expect_err("broken");
        assert!(
            error.message.starts_with("variables are not valid JSON"),
            "{}",
            error.message
        );
    }

    #[test]
    fn a_held_transition_is_answered_as_it_ended() {
        use ringflow_core::{ListenerEvent, TransitionEnd};
        let key = Key(7);
        assert_eq!(
            transition_end(key, ListenerEvent::Completing, TransitionEnd::Done),
            Response::Done {
                key: 7,
                incident_key: 0
            }
        );
        let error = |event, end| match transition_end(key, event, end) {
            Response::Error(error) => (error.code, error.message),
            other => panic!("expected an error, got {other:?}"),
        };
        assert_eq!(
            error(
                ListenerEvent::Updating,
                TransitionEnd::Denied(String::new())
            ),
            (
                ErrorCode::InvalidState,
                "the update of the user task of job 7 was denied by a task listener".into()
            )
        );
        assert_eq!(
            error(
                ListenerEvent::Completing,
                TransitionEnd::Denied("no".into())
            )
            .1,
            "the completion of the user task of job 7 was denied by a task listener: no"
        );
        assert_eq!(
            error(ListenerEvent::Assigning, TransitionEnd::Terminated),
            (
                ErrorCode::InvalidState,
                "the user task of job 7 was terminated before its task listeners were done \
                 with its assignment"
                    .into()
            )
        );
    }

    #[test]
    fn every_engine_rejection_code_has_a_wire_code() {
        use ringflow_core::RejectionCode as R;
        for code in [
            R::InvalidArgument,
            R::InvalidModel,
            R::LimitExceeded,
            R::KeysExhausted,
            R::ProcessNotFound,
            R::InstanceNotFound,
            R::JobNotFound,
            R::InvalidState,
            R::IncidentNotFound,
            R::AlreadyExists,
        ] {
            let wire = ErrorCode::from_name(code.code());
            assert_ne!(wire, ErrorCode::Unknown, "{code}");
            assert_eq!(wire.name(), code.code());
        }
    }
}
