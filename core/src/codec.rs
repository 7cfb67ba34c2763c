//! The binary form of a [`Command`] with its [`Ctx`]: the payload of a journal record.
//!
//! The journal stores every accepted command with the inputs the engine took from outside, so
//! that replay calls [`crate::process`] with exactly the same arguments. Equal commands encode
//! to equal bytes.
//!
//! | field | encoding |
//! |---|---|
//! | format | u8, `COMMAND_FORMAT` |
//! | now | i64, milliseconds since the Unix epoch |
//! | next key | u64 |
//! | command | u8 tag, then its fields in declaration order |
//!
//! Texts and byte strings are a u32 length and the bytes; keys are u64; variables are the
//! JSON document's bytes as a byte string; optional values are a u8 flag (0 or 1) and the
//! value; flags are a u8. All integers are little-endian.
//!
//! | tag | command | fields |
//! |---:|---|---|
//! | 1 | Deploy | count, then per resource its name and content |
//! | 2 | CreateInstance | process (u8 0: latest by id + text, 1: key), variables, business key (optional text), await result (flag) |
//! | 3 | CancelInstance | key |
//! | 4 | ActivateJobs | job type, worker, max jobs u32, lease u64 ms |
//! | 5 | CompleteJob | key, variables |
//! | 6 | FailJob | key, retries u32, backoff u64 ms, message |
//! | 7 | ThrowError | key, error code, message |
//! | 8 | JobLeaseExpired | key |
//! | 9 | JobRetryDue | key |
//! | 10 | UpdateJobRetries | key, retries u32 |
//! | 11 | ResolveIncident | key |
//! | 12 | SetVariables | scope key, variables, local (flag) |
//! | 13 | PublishMessage | name, correlation key, variables, TTL u64 ms, message id (optional text) |
//! | 14 | ExpireMessage | key |
//! | 15 | TriggerTimer | key |
//! | 16 | Receive | from u16, number u64, the mail (`remote::encode_mail`) |
//! | 17 | Acknowledge | to u16, number u64 |
//! | 18 | BroadcastSignal | name, variables |
//! | 19 | ContinueSignal | key |
//! | 20 | ContinueCompensation | key |
//! | 21 | EvaluateConditional | BPMN process id (optional text), variables |
//! | 22 | ActivateAdHocActivities | key, count, then per element its id and variables, cancel remaining instances (flag) |
//! | 23 | CompleteAdHocJob | key, variables, count, then per element its id and variables, completion condition fulfilled (flag), cancel remaining instances (flag) |
//! | 24 | ActivateJobs with `fetch_variables` | job type, worker, max jobs u32, lease u64 ms, count, then per name the name (tag 4 when the list is empty) |
//! | 25 | CompleteTaskListenerJob | key, denied (flag), denied reason, corrections: assignee (optional text), candidate groups and candidate users (each u8 flag, then count and texts), due date and follow-up date (optional texts), priority (u8 flag, then u8) |
//! | 26 | AssignUserTask | key, assignee (optional text) |
//! | 27 | UpdateUserTask | key, the changes as CompleteTaskListenerJob's corrections |

use std::sync::Arc;

use crate::engine::{Command, Ctx, ProcessRef, Resource, Variables};
use crate::key::Key;
use crate::snapshot::{
    Reader, put_bytes, put_count, put_key, put_optional_text, put_optional_texts, put_optional_u8,
};

/// The command format this build writes and reads.
pub const COMMAND_FORMAT: u8 = 1;

/// Why bytes are not a command: the journal record is from another version or damaged.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
#[error("not a journaled command: {0}")]
pub struct CommandDecodeError(String);

/// Appends `command` with `ctx` to `out`.
pub fn encode_command(command: &Command, ctx: &Ctx, out: &mut Vec<u8>) {
    out.push(COMMAND_FORMAT);
    out.extend_from_slice(&ctx.now_millis.to_le_bytes());
    put_key(out, ctx.next_key);
    match command {
        Command::Deploy { resources } => {
            out.push(1);
            put_count(out, resources.len());
            for resource in resources {
                put_bytes(out, resource.name.as_bytes());
                put_bytes(out, &resource.content);
            }
        }
        Command::CreateInstance {
            process,
            variables,
            business_key,
            await_result,
        } => {
            out.push(2);
            match process {
                ProcessRef::Latest(id) => {
                    out.push(0);
                    put_bytes(out, id.as_bytes());
                }
                ProcessRef::Key(key) => {
                    out.push(1);
                    put_key(out, *key);
                }
            }
            put_variables(out, variables);
            put_optional_text(out, business_key.as_deref());
            out.push(u8::from(*await_result));
        }
        Command::CancelInstance { key } => tagged_key(out, 3, *key),
        Command::ActivateJobs {
            job_type,
            worker,
            max_jobs,
            lease_millis,
            fetch_variables,
        } => {
            // Tag 4 keeps the form journals had before fetch lists: the common case.
            out.push(if fetch_variables.is_empty() { 4 } else { 24 });
            put_bytes(out, job_type.as_bytes());
            put_bytes(out, worker.as_bytes());
            out.extend_from_slice(&max_jobs.to_le_bytes());
            out.extend_from_slice(&lease_millis.to_le_bytes());
            if !fetch_variables.is_empty() {
                put_count(out, fetch_variables.len());
                for name in fetch_variables {
                    put_bytes(out, name.as_bytes());
                }
            }
        }
        Command::CompleteJob { key, variables } => {
            tagged_key(out, 5, *key);
            put_variables(out, variables);
        }
        Command::FailJob {
            key,
            retries,
            retry_backoff_millis,
            message,
        } => {
            tagged_key(out, 6, *key);
            out.extend_from_slice(&retries.to_le_bytes());
            out.extend_from_slice(&retry_backoff_millis.to_le_bytes());
            put_bytes(out, message.as_bytes());
        }
        Command::ThrowError {
            key,
            error_code,
            message,
        } => {
            tagged_key(out, 7, *key);
            put_bytes(out, error_code.as_bytes());
            put_bytes(out, message.as_bytes());
        }
        Command::JobLeaseExpired { key } => tagged_key(out, 8, *key),
        Command::JobRetryDue { key } => tagged_key(out, 9, *key),
        Command::UpdateJobRetries { key, retries } => {
            tagged_key(out, 10, *key);
            out.extend_from_slice(&retries.to_le_bytes());
        }
        Command::ResolveIncident { key } => tagged_key(out, 11, *key),
        Command::SetVariables {
            scope,
            variables,
            local,
        } => {
            tagged_key(out, 12, *scope);
            put_variables(out, variables);
            out.push(u8::from(*local));
        }
        Command::PublishMessage {
            name,
            correlation_key,
            variables,
            ttl_millis,
            message_id,
        } => {
            out.push(13);
            put_bytes(out, name.as_bytes());
            put_bytes(out, correlation_key.as_bytes());
            put_variables(out, variables);
            out.extend_from_slice(&ttl_millis.to_le_bytes());
            put_optional_text(out, message_id.as_deref());
        }
        Command::ExpireMessage { key } => tagged_key(out, 14, *key),
        Command::TriggerTimer { key } => tagged_key(out, 15, *key),
        Command::Receive { from, seq, mail } => {
            out.push(16);
            out.extend_from_slice(&from.to_le_bytes());
            out.extend_from_slice(&seq.to_le_bytes());
            crate::remote::encode_mail(mail, out);
        }
        Command::Acknowledge { to, seq } => {
            out.push(17);
            out.extend_from_slice(&to.to_le_bytes());
            out.extend_from_slice(&seq.to_le_bytes());
        }
        Command::BroadcastSignal { name, variables } => {
            out.push(18);
            put_bytes(out, name.as_bytes());
            put_variables(out, variables);
        }
        Command::ContinueSignal { key } => tagged_key(out, 19, *key),
        Command::ContinueCompensation { key } => tagged_key(out, 20, *key),
        Command::EvaluateConditional {
            bpmn_process_id,
            variables,
        } => {
            out.push(21);
            put_optional_text(out, bpmn_process_id.as_deref());
            put_variables(out, variables);
        }
        Command::ActivateAdHocActivities {
            key,
            elements,
            cancel_remaining_instances,
        } => {
            tagged_key(out, 22, *key);
            put_activations(out, elements);
            out.push(u8::from(*cancel_remaining_instances));
        }
        Command::CompleteAdHocJob {
            key,
            variables,
            result,
        } => {
            tagged_key(out, 23, *key);
            put_variables(out, variables);
            put_activations(out, &result.activate_elements);
            out.push(u8::from(result.completion_condition_fulfilled));
            out.push(u8::from(result.cancel_remaining_instances));
        }
        Command::AssignUserTask { key, assignee } => {
            tagged_key(out, 26, *key);
            put_optional_text(out, assignee.as_deref());
        }
        Command::CompleteTaskListenerJob { key, result } => {
            tagged_key(out, 25, *key);
            out.push(u8::from(result.denied));
            put_bytes(out, result.denied_reason.as_bytes());
            put_corrections(out, &result.corrections);
        }
        Command::UpdateUserTask { key, changes } => {
            tagged_key(out, 27, *key);
            put_corrections(out, changes);
        }
    }
}

fn put_corrections(out: &mut Vec<u8>, corrections: &crate::usertasks::UserTaskCorrections) {
    put_optional_text(out, corrections.assignee.as_deref());
    put_optional_texts(out, &corrections.candidate_groups);
    put_optional_texts(out, &corrections.candidate_users);
    put_optional_text(out, corrections.due_date.as_deref());
    put_optional_text(out, corrections.follow_up_date.as_deref());
    put_optional_u8(out, corrections.priority);
}

fn put_activations(out: &mut Vec<u8>, elements: &[crate::adhoc::AdHocActivation]) {
    put_count(out, elements.len());
    for element in elements {
        put_bytes(out, element.element_id.as_bytes());
        put_variables(out, &element.variables);
    }
}

fn read_activations(reader: &mut Reader<'_>) -> ReadResult<Vec<crate::adhoc::AdHocActivation>> {
    let count = reader.count()?;
    let mut elements = Vec::new();
    for _ in 0..count {
        elements.push(crate::adhoc::AdHocActivation {
            element_id: reader.string()?,
            variables: read_variables(reader)?,
        });
    }
    Ok(elements)
}

fn tagged_key(out: &mut Vec<u8>, tag: u8, key: Key) {
    out.push(tag);
    put_key(out, key);
}

pub(crate) fn put_variables(out: &mut Vec<u8>, variables: &Variables) {
    crate::snapshot::put_json(out, variables);
}

/// Reads a command written by [`encode_command`], checking everything.
pub fn decode_command(bytes: &[u8]) -> Result<(Command, Ctx), CommandDecodeError> {
    let mut reader = Reader::new(bytes);
    let decoded = read_command(&mut reader).map_err(|error| CommandDecodeError(error.to_string()));
    let decoded = decoded?;
    if reader.remaining() != 0 {
        let extra = reader.remaining();
        return Err(CommandDecodeError(format!(
            "{extra} bytes after the command"
        )));
    }
    Ok(decoded)
}

type ReadResult<T> = Result<T, crate::snapshot::SnapshotError>;

fn read_command(reader: &mut Reader<'_>) -> ReadResult<(Command, Ctx)> {
    let [format] = reader.array::<1>()?;
    if format != COMMAND_FORMAT {
        return Err(invalid(format!(
            "command format {format}, this build reads {COMMAND_FORMAT}"
        )));
    }
    let now_millis = i64::from_le_bytes(reader.array()?);
    let next_key = reader.key()?;
    let [tag] = reader.array::<1>()?;
    let command = match tag {
        1 => {
            let count = reader.count()?;
            let mut resources = Vec::new();
            for _ in 0..count {
                let name = reader.string()?;
                let content: Arc<[u8]> = Arc::from(reader.bytes()?);
                resources.push(Resource { name, content });
            }
            Command::Deploy { resources }
        }
        2 => read_create(reader)?,
        3 => Command::CancelInstance { key: reader.key()? },
        4 | 24 => {
            let job_type = reader.string()?;
            let worker = reader.string()?;
            let max_jobs = u32::from_le_bytes(reader.array()?);
            let lease_millis = u64::from_le_bytes(reader.array()?);
            let mut fetch_variables = Vec::new();
            if tag == 24 {
                let count = reader.count()?;
                if count == 0 {
                    return Err(invalid(
                        "ActivateJobs with fetch_variables names none".into(),
                    ));
                }
                for _ in 0..count {
                    fetch_variables.push(reader.string()?);
                }
            }
            Command::ActivateJobs {
                job_type,
                worker,
                max_jobs,
                lease_millis,
                fetch_variables,
            }
        }
        5 => Command::CompleteJob {
            key: reader.key()?,
            variables: read_variables(reader)?,
        },
        6 => Command::FailJob {
            key: reader.key()?,
            retries: u32::from_le_bytes(reader.array()?),
            retry_backoff_millis: u64::from_le_bytes(reader.array()?),
            message: reader.string()?,
        },
        7 => Command::ThrowError {
            key: reader.key()?,
            error_code: reader.string()?,
            message: reader.string()?,
        },
        8 => Command::JobLeaseExpired { key: reader.key()? },
        9 => Command::JobRetryDue { key: reader.key()? },
        10 => Command::UpdateJobRetries {
            key: reader.key()?,
            retries: u32::from_le_bytes(reader.array()?),
        },
        11 => Command::ResolveIncident { key: reader.key()? },
        12 => Command::SetVariables {
            scope: reader.key()?,
            variables: read_variables(reader)?,
            local: reader.flag()?,
        },
        13 => Command::PublishMessage {
            name: reader.string()?,
            correlation_key: reader.string()?,
            variables: read_variables(reader)?,
            ttl_millis: u64::from_le_bytes(reader.array()?),
            message_id: reader.optional_text()?,
        },
        14 => Command::ExpireMessage { key: reader.key()? },
        15 => Command::TriggerTimer { key: reader.key()? },
        16 => Command::Receive {
            from: u16::from_le_bytes(reader.array()?),
            seq: u64::from_le_bytes(reader.array()?),
            mail: crate::remote::read_mail(reader)?,
        },
        17 => Command::Acknowledge {
            to: u16::from_le_bytes(reader.array()?),
            seq: u64::from_le_bytes(reader.array()?),
        },
        18 => Command::BroadcastSignal {
            name: reader.string()?,
            variables: read_variables(reader)?,
        },
        19 => Command::ContinueSignal { key: reader.key()? },
        20 => Command::ContinueCompensation { key: reader.key()? },
        21 => Command::EvaluateConditional {
            bpmn_process_id: reader.optional_text()?,
            variables: read_variables(reader)?,
        },
        22 => Command::ActivateAdHocActivities {
            key: reader.key()?,
            elements: read_activations(reader)?,
            cancel_remaining_instances: reader.flag()?,
        },
        23 => Command::CompleteAdHocJob {
            key: reader.key()?,
            variables: read_variables(reader)?,
            result: crate::adhoc::AdHocJobResult {
                activate_elements: read_activations(reader)?,
                completion_condition_fulfilled: reader.flag()?,
                cancel_remaining_instances: reader.flag()?,
            },
        },
        25 => read_task_listener_result(reader)?,
        27 => Command::UpdateUserTask {
            key: reader.key()?,
            changes: Box::new(read_corrections(reader)?),
        },
        26 => Command::AssignUserTask {
            key: reader.key()?,
            assignee: reader.optional_text()?,
        },
        other => return Err(invalid(format!("unknown command tag {other}"))),
    };
    Ok((
        command,
        Ctx {
            now_millis,
            next_key,
        },
    ))
}

fn read_task_listener_result(reader: &mut Reader<'_>) -> ReadResult<Command> {
    let key = reader.key()?;
    let denied = reader.flag()?;
    let denied_reason = reader.string()?;
    let corrections = read_corrections(reader)?;
    Ok(Command::CompleteTaskListenerJob {
        key,
        result: Box::new(crate::usertasks::TaskListenerResult {
            denied,
            denied_reason,
            corrections,
        }),
    })
}

fn read_corrections(reader: &mut Reader<'_>) -> ReadResult<crate::usertasks::UserTaskCorrections> {
    let assignee = reader.optional_text()?;
    let (candidate_groups, candidate_users) = (reader.optional_texts()?, reader.optional_texts()?);
    let due_date = reader.optional_text()?;
    let follow_up_date = reader.optional_text()?;
    let priority = if reader.flag()? {
        Some(reader.array::<1>()?[0])
    } else {
        None
    };
    Ok(crate::usertasks::UserTaskCorrections {
        assignee,
        candidate_groups,
        candidate_users,
        due_date,
        follow_up_date,
        priority,
    })
}

fn read_create(reader: &mut Reader<'_>) -> ReadResult<Command> {
    let process = match reader.array::<1>()? {
        [0] => ProcessRef::Latest(reader.string()?),
        [1] => ProcessRef::Key(reader.key()?),
        [other] => return Err(invalid(format!("unknown process reference tag {other}"))),
    };
    Ok(Command::CreateInstance {
        process,
        variables: read_variables(reader)?,
        business_key: reader.optional_text()?,
        await_result: reader.flag()?,
    })
}

pub(crate) fn read_variables(reader: &mut Reader<'_>) -> ReadResult<Variables> {
    let bytes = reader.bytes()?;
    serde_json::from_slice(bytes).map_err(|error| invalid(format!("variables: {error}")))
}

fn invalid(message: String) -> crate::snapshot::SnapshotError {
    crate::snapshot::SnapshotError::Corrupt(message)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn variables() -> Variables {
        let value = json!({"orderId": "A-1", "total": 12.5, "items": [1, 2, {"x": null}]});
        value.as_object().expect("an object").clone()
    }

    fn all_commands() -> Vec<Command> {
        let key = Key::new(3, 77);
        vec![
            Command::Deploy {
                resources: vec![Resource {
                    name: "a.bpmn".to_string(),
                    content: Arc::from(&b"<xml/>"[..]),
                }],
            },
            Command::CreateInstance {
                process: ProcessRef::Latest("order".to_string()),
                variables: variables(),
                business_key: Some("customer-9".to_string()),
                await_result: true,
            },
            Command::CreateInstance {
                process: ProcessRef::Key(key),
                variables: Variables::new(),
                business_key: None,
                await_result: false,
            },
            Command::CancelInstance { key },
            Command::ActivateJobs {
                job_type: "charge".to_string(),
                worker: "w1".to_string(),
                max_jobs: 32,
                lease_millis: 30_000,
                fetch_variables: Vec::new(),
            },
            Command::ActivateJobs {
                job_type: "charge".to_string(),
                worker: "w1".to_string(),
                max_jobs: 1,
                lease_millis: 30_000,
                fetch_variables: vec!["orderId".to_string(), "Größe".to_string()],
            },
            Command::CompleteJob {
                key,
                variables: variables(),
            },
            Command::FailJob {
                key,
                retries: 2,
                retry_backoff_millis: 500,
                message: "timeout".to_string(),
            },
            Command::ThrowError {
                key,
                error_code: "E1".to_string(),
                message: "no stock".to_string(),
            },
            Command::JobLeaseExpired { key },
            Command::JobRetryDue { key },
            Command::UpdateJobRetries { key, retries: 3 },
            Command::ResolveIncident { key },
            Command::SetVariables {
                scope: key,
                variables: variables(),
                local: true,
            },
            Command::PublishMessage {
                name: "paid".to_string(),
                correlation_key: "order-1".to_string(),
                variables: variables(),
                ttl_millis: 60_000,
                message_id: Some("m-1".to_string()),
            },
            Command::PublishMessage {
                name: "paid".to_string(),
                correlation_key: String::new(),
                variables: Variables::new(),
                ttl_millis: 0,
                message_id: None,
            },
            Command::ExpireMessage { key },
            Command::TriggerTimer { key },
            Command::Acknowledge { to: 2, seq: 9 },
            Command::BroadcastSignal {
                name: "stop".to_string(),
                variables: variables(),
            },
            Command::ContinueSignal { key },
            Command::ContinueCompensation { key },
            Command::EvaluateConditional {
                bpmn_process_id: Some("order".to_string()),
                variables: variables(),
            },
            Command::EvaluateConditional {
                bpmn_process_id: None,
                variables: Variables::new(),
            },
            Command::ActivateAdHocActivities {
                key,
                elements: vec![
                    crate::adhoc::AdHocActivation {
                        element_id: "review".to_string(),
                        variables: variables(),
                    },
                    crate::adhoc::AdHocActivation {
                        element_id: "ship".to_string(),
                        variables: Variables::new(),
                    },
                ],
                cancel_remaining_instances: true,
            },
            Command::ActivateAdHocActivities {
                key,
                elements: Vec::new(),
                cancel_remaining_instances: false,
            },
            Command::CompleteAdHocJob {
                key,
                variables: variables(),
                result: crate::adhoc::AdHocJobResult {
                    activate_elements: vec![crate::adhoc::AdHocActivation {
                        element_id: "search".to_string(),
                        variables: variables(),
                    }],
                    completion_condition_fulfilled: false,
                    cancel_remaining_instances: true,
                },
            },
            Command::CompleteAdHocJob {
                key,
                variables: Variables::new(),
                result: crate::adhoc::AdHocJobResult {
                    activate_elements: Vec::new(),
                    completion_condition_fulfilled: true,
                    cancel_remaining_instances: false,
                },
            },
            Command::CompleteTaskListenerJob {
                key,
                result: Box::default(),
            },
            Command::AssignUserTask {
                key,
                assignee: Some("ana".to_string()),
            },
            Command::AssignUserTask {
                key,
                assignee: None,
            },
            Command::UpdateUserTask {
                key,
                changes: Box::new(crate::usertasks::UserTaskCorrections {
                    candidate_users: Some(vec!["kim".to_string()]),
                    follow_up_date: Some(String::new()),
                    priority: Some(10),
                    ..Default::default()
                }),
            },
            Command::CompleteTaskListenerJob {
                key,
                result: Box::new(crate::usertasks::TaskListenerResult {
                    denied: true,
                    denied_reason: "the amount is missing".to_string(),
                    corrections: crate::usertasks::UserTaskCorrections::default(),
                }),
            },
            Command::CompleteTaskListenerJob {
                key,
                result: Box::new(crate::usertasks::TaskListenerResult {
                    denied: false,
                    denied_reason: String::new(),
                    corrections: crate::usertasks::UserTaskCorrections {
                        assignee: Some("ana".to_string()),
                        candidate_groups: Some(vec!["a".to_string(), "b".to_string()]),
                        candidate_users: Some(Vec::new()),
                        due_date: Some("2026-12-24T12:00:00Z".to_string()),
                        follow_up_date: None,
                        priority: Some(70),
                    },
                }),
            },
        ]
        .into_iter()
        .chain(
            all_mail()
                .into_iter()
                .enumerate()
                .map(|(i, mail)| Command::Receive {
                    from: 1,
                    seq: i as u64 + 1,
                    mail,
                }),
        )
        .collect()
    }

    fn all_mail() -> Vec<crate::Mail> {
        use crate::Mail;
        let key = Key::new(1, 5);
        vec![
            Mail::Subscribe {
                subscription: key,
                name: "paid".to_string(),
                correlation_key: "order-1".to_string(),
                process_id: "order".to_string(),
            },
            Mail::Unsubscribe { subscription: key },
            Mail::Correlate {
                subscription: key,
                message: Key::new(2, 9),
                process_id: "order".to_string(),
                variables: variables(),
            },
            Mail::Correlated {
                subscription: key,
                message: Key::new(2, 9),
                process_id: "order".to_string(),
                accepted: true,
            },
            Mail::CreateChild {
                call: key,
                process_id: "child".to_string(),
                version: crate::remote::ChildVersion::Tag("v1".to_string()),
                business_key: "customer-1".to_string(),
                variables: variables(),
            },
            Mail::CreateChild {
                call: key,
                process_id: "child".to_string(),
                version: crate::remote::ChildVersion::Latest,
                business_key: "customer-1".to_string(),
                variables: variables(),
            },
            Mail::CreateChild {
                call: key,
                process_id: "child".to_string(),
                version: crate::remote::ChildVersion::Resource(0x0123_4567_89ab_cdef),
                business_key: "customer-1".to_string(),
                variables: variables(),
            },
            Mail::ChildCreated {
                call: key,
                child: Key::new(2, 3),
            },
            Mail::ChildFailed {
                call: key,
                reason: "no process".to_string(),
            },
            Mail::ChildCompleted {
                call: key,
                child: Key::new(2, 3),
                variables: variables(),
            },
            Mail::CancelChild { call: key },
            Mail::ChildIncident {
                call: key,
                incident: crate::Incident {
                    key: Key::new(2, 11),
                    process_instance_key: Key::new(2, 3),
                    element_instance_key: Key::new(2, 4),
                    message: "no retries left".to_string(),
                    retry: crate::IncidentRetry::Job,
                },
            },
            Mail::ChildIncidentResolved {
                call: key,
                incident: Key::new(2, 11),
            },
            Mail::ChildThrew {
                call: key,
                throw: Key::new(2, 12),
                escalation: true,
                code: "LATE".to_string(),
            },
            Mail::ThrowAnswered {
                throw: Key::new(2, 12),
                caught: crate::remote::Caught::NotInterrupting,
            },
            Mail::Signal {
                name: "stop".to_string(),
                variables: variables(),
            },
        ]
    }

    #[test]
    fn every_command_round_trips_and_truncation_is_caught() {
        let ctx = Ctx {
            now_millis: 1_790_000_000_123,
            next_key: Key::new(3, 100),
        };
        for command in all_commands() {
            let mut bytes = Vec::new();
            encode_command(&command, &ctx, &mut bytes);
            let (decoded, decoded_ctx) = decode_command(&bytes).expect("decodes");
            assert_eq!(decoded_ctx, ctx);
            assert_eq!(format!("{decoded:?}"), format!("{command:?}"));
            let mut again = Vec::new();
            encode_command(&decoded, &decoded_ctx, &mut again);
            assert_eq!(again, bytes, "equal commands encode to equal bytes");
            for cut in 0..bytes.len() {
                assert!(decode_command(&bytes[..cut]).is_err(), "cut at {cut}");
            }
            let mut longer = bytes.clone();
            longer.push(0);
            assert!(decode_command(&longer).is_err());
        }
        assert!(decode_command(&[2, 0]).is_err());
    }

    #[test]
    fn activate_jobs_keeps_tag_4_without_a_fetch_list() {
        let ctx = Ctx {
            now_millis: 5,
            next_key: Key::new(0, 1),
        };
        let activate = |fetch_variables: Vec<String>| Command::ActivateJobs {
            job_type: "t".to_string(),
            worker: "w".to_string(),
            max_jobs: 1,
            lease_millis: 1_000,
            fetch_variables,
        };
        // format, now, next key, then the tag.
        let tag_at = 1 + 8 + 8;
        let mut plain = Vec::new();
        encode_command(&activate(Vec::new()), &ctx, &mut plain);
        assert_eq!(
            plain[tag_at], 4,
            "journals written before fetch lists read the same"
        );
        let mut fetching = Vec::new();
        encode_command(&activate(vec!["a".to_string()]), &ctx, &mut fetching);
        assert_eq!(fetching[tag_at], 24);
        // Tag 24 with an empty list is not what this build writes.
        let mut empty = plain.clone();
        empty[tag_at] = 24;
        empty.extend_from_slice(&0u32.to_le_bytes());
        let error = decode_command(&empty).expect_err("an empty fetch list under tag 24");
        assert!(error.to_string().contains("names none"), "{error}");
    }
}
