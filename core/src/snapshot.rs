//! The deterministic binary form of the [`State`], for snapshots.
//!
//! Equal states encode to equal bytes: maps are walked in key order and nothing depends on
//! addresses or hashing. A process version is stored as its resource bytes and restored by
//! compiling them again, so the compiled form never needs a stable encoding of its own.
//!
//! | field | encoding |
//! |---|---|
//! | magic | `RFSNAP` then format version `0x00 0x0B` (formats 3, without the cross-shard fields, 4, without remote incidents and pending throws, 5, without signal subscriptions and deliveries, 6, without compensations, 7, without execution listeners, 8, without conditional subscriptions, 9, without ad-hoc subprocesses, and 10, without user tasks' properties, are still read) |
//! | shard | u16 |
//! | last key | u64 |
//! | process versions | u32 count, then per version in key order: key u64, version u32, deployment key u64, process id, resource name, resource (each u32 length + bytes) |
//! | process instances | u32 count, then key, definition key, business key (optional text), await-result u8, live elements u32, parent call activity (optional key), message start correlation key (optional text) |
//! | element instances | u32 count, then key, instance key, element u32, scope (optional key), tokens u32, job and incident (optional keys), role u8 (0 plain, 1 multi-instance body, 2 inner + loop counter u32, 3 (format 10) an ad-hoc subprocess's inner instance), called instance (optional key) |
//! | variables | u32 count, then scope key and the scope's document as JSON bytes |
//! | join tokens | u32 count, then scope key, gateway element u32, counts (u32 length + u32s) |
//! | jobs | u32 count, then key, type, element instance key, instance key, retries u32, state u8 (0 ready, 1 leased + worker + deadline i64, 2 backoff + due i64, 3 failed) |
//! | incidents | u32 count, then key, instance key, element instance key, message, retry u8 (0 activation, 1 completion, 2 job, 3 (format 11) a user task's completing listeners, 4 (format 11) its assigning listeners, 5 (format 11) its updating listeners) |
//! | messages | u32 count, then key, name, correlation key, variables (JSON bytes), deadline i64, message id (optional text), correlated process ids (u32 count + texts) |
//! | timers | u32 count, then key, due i64, definition key, element u32, owner (optional key), repetitions (optional u32), interval (u8 tag: 0 none, 1 years u32, months u32, days u32, millis u64, 2 (format 7) a cron expression as text) |
//! | subscriptions | u32 count, then key, name, correlation key, definition key, element u32, owner key, instance key |
//! | multi-instance bodies | u32 count, then key, items (JSON array bytes), started u32, completed u32, terminated u32 |
//! | decision versions | u32 count, then per version in key order: key, version u32, deployment key, decision id, resource name, resource (restored by parsing the DMN again) |
//! | cross shard (format 4) | cluster shard count u16; mail numbers sent and taken (each u32 count, then shard u16 and number u64); outbox (u32 count, then destination u16, number u64, the mail as `remote::encode_mail` writes it); remote subscriptions (u32 count, then key, name, correlation key, process id, the message being correlated (optional key)); from format 5: remote incidents (u32 count, then call activity key and the incident as above), pending throws (u32 count, then throw key and tag u8: 0 thrower (element key, escalation u8, code, message, job u8), 1 relay (shard u16, the child's throw key)) |
//! | signal subscriptions (format 6) | u32 count, then key, name, definition key, element u32, owner key, instance key |
//! | signal deliveries (format 6) | u32 count, then signal key, name, variables (JSON bytes), the last subscription key delivered to |
//! | compensations (format 7) | u32 count, then key, instance key, scope key, via element u32, activity element u32, handler element u32, variables (JSON bytes) |
//! | execution listeners (format 8) | listener jobs (u32 count, then job key, event u8 (0 start, 1 end; from format 11 the task listeners' 2 creating, 3 completing, 4 assigning, 5 updating), the listener's index u32); held triggers (u32 count, then element instance key, the event element u32, variables (JSON bytes)) |
//! | conditional subscriptions (format 9) | u32 count, then per subscription in key order: key, process definition key, the event element u32, owner, process instance key |
//! | ad-hoc subprocesses (format 10) | u32 count, then in key order the element instance keys of ad-hoc subprocesses whose worker said they are done |
//! | user tasks (format 11) | u32 count, then per user task job with properties, in key order: job key, assignee (optional text), candidate groups and candidate users (each u8 flag, then u32 count + texts), due date and follow-up date (optional texts), priority (u8 flag, then u8), denied reason (optional text); then user tasks held for their task listeners: u32 count, then per element instance key in order: the key, its properties as above, the completion's variables (u8 flag, then JSON bytes), the job held while it is assigned (u8 flag, then key, type, retries u32, properties (u8 flag, then as above)) |
//! | checksum | CRC32 (crc32fast) of everything before it, u32 |
//!
//! Optional values are a u8 flag (0 or 1) and the value. The children index, the ready-job
//! queues and the lookups of `state::Indexes` (waits by owner, subscriptions and messages by
//! name, message and timer starts) are derived on restore, not stored.
//!
//! All integers are little-endian.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use ringflow_bpmn::ElementIndex;

use crate::engine::Variables;
use ringflow_bpmn::timer::{IsoDuration, Repeat};

use crate::instance::{
    ElementInstance, ElementRole, Incident, IncidentRetry, Job, JobState, Listener, ListenerEvent,
    MultiBody, ProcessInstance, Subscription, Timer,
};
use crate::key::Key;
use crate::state::{ProcessVersion, State};

const MAGIC: &[u8; 8] = b"RFSNAP\x00\x0B";
/// Format 10: without user tasks' properties.
const MAGIC_10: &[u8; 8] = b"RFSNAP\x00\x0A";
/// Format 9: without ad-hoc subprocesses.
const MAGIC_9: &[u8; 8] = b"RFSNAP\x00\x09";
/// Format 8: without conditional subscriptions.
const MAGIC_8: &[u8; 8] = b"RFSNAP\x00\x08";
/// Format 7: without execution listeners.
const MAGIC_7: &[u8; 8] = b"RFSNAP\x00\x07";
/// Format 6: without compensations.
const MAGIC_6: &[u8; 8] = b"RFSNAP\x00\x06";
/// Format 5: without signal subscriptions and deliveries.
const MAGIC_5: &[u8; 8] = b"RFSNAP\x00\x05";
/// Format 4 (before remote incidents and pending throws): still read.
const MAGIC_4: &[u8; 8] = b"RFSNAP\x00\x04";
/// Format 3 (before the cross-shard fields): still read, as a state with an empty outbox.
const MAGIC_3: &[u8; 8] = b"RFSNAP\x00\x03";

/// Why a snapshot could not be restored. Any of these means the file is damaged or from an
/// incompatible version; the shard stops and says which.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum SnapshotError {
    /// The bytes do not start with the snapshot magic and format version.
    #[error("not a ringflow snapshot of format 3, 4, 5, 6, 7, 8 or 9 (bad magic)")]
    BadMagic,
    /// The checksum does not match: the snapshot is corrupt.
    #[error("snapshot checksum mismatch: stored {stored:#010x}, computed {computed:#010x}")]
    ChecksumMismatch {
        /// The checksum in the snapshot.
        stored: u32,
        /// The checksum of the bytes read.
        computed: u32,
    },
    /// The snapshot ends in the middle of a field.
    #[error("snapshot truncated at byte {offset}")]
    Truncated {
        /// Where the missing field starts.
        offset: usize,
    },
    /// The fields are readable but contradict each other.
    #[error("snapshot corrupt: {0}")]
    Corrupt(String),
}

impl State {
    /// Encodes the state; equal states give equal bytes.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&self.shard().to_le_bytes());
        out.extend_from_slice(&self.last_key().0.to_le_bytes());
        let count = u32::try_from(self.processes.len()).expect("process count fits u32");
        out.extend_from_slice(&count.to_le_bytes());
        for process in self.processes.values() {
            out.extend_from_slice(&process.key.0.to_le_bytes());
            out.extend_from_slice(&process.version.to_le_bytes());
            out.extend_from_slice(&process.deployment_key.0.to_le_bytes());
            put_bytes(&mut out, process.bpmn_process_id.as_bytes());
            put_bytes(&mut out, process.resource_name.as_bytes());
            put_bytes(&mut out, &process.resource);
        }
        self.encode_runtime(&mut out);
        let checksum = crc32fast::hash(&out);
        out.extend_from_slice(&checksum.to_le_bytes());
        out
    }

    /// Restores a state from [`State::encode`]'s bytes, checking everything it reads.
    pub fn decode(bytes: &[u8]) -> Result<State, SnapshotError> {
        if bytes.len() < MAGIC.len() {
            return Err(SnapshotError::BadMagic);
        }
        let format = match &bytes[..MAGIC.len()] {
            magic if magic == MAGIC => 11,
            magic if magic == MAGIC_10 => 10,
            magic if magic == MAGIC_9 => 9,
            magic if magic == MAGIC_8 => 8,
            magic if magic == MAGIC_7 => 7,
            magic if magic == MAGIC_6 => 6,
            magic if magic == MAGIC_5 => 5,
            magic if magic == MAGIC_4 => 4,
            magic if magic == MAGIC_3 => 3,
            _ => return Err(SnapshotError::BadMagic),
        };
        let body_len = bytes
            .len()
            .checked_sub(4)
            .ok_or(SnapshotError::Truncated { offset: 0 })?;
        let stored = u32::from_le_bytes(bytes[body_len..].try_into().expect("four bytes"));
        let computed = crc32fast::hash(&bytes[..body_len]);
        if stored != computed {
            return Err(SnapshotError::ChecksumMismatch { stored, computed });
        }
        let mut reader = Reader {
            bytes: &bytes[..body_len],
            offset: MAGIC.len(),
        };
        let shard = u16::from_le_bytes(reader.array()?);
        if shard > crate::key::SHARD_ID_MAX {
            return Err(corrupt(format!("shard id {shard} is over SHARD_ID_MAX")));
        }
        let last_key = Key(u64::from_le_bytes(reader.array()?));
        let mut state = State::new(shard);
        if last_key.shard() != shard {
            return Err(corrupt(format!(
                "last key {last_key} is not of shard {shard}"
            )));
        }
        state.set_last_key(last_key);
        let count = u32::from_le_bytes(reader.array()?);
        let mut versions: BTreeMap<String, Vec<(u32, Key)>> = BTreeMap::new();
        for _ in 0..count {
            let process = read_process(&mut reader, shard, last_key)?;
            versions
                .entry(process.bpmn_process_id.clone())
                .or_default()
                .push((process.version, process.key));
            if state.processes.insert(process.key, process).is_some() {
                return Err(corrupt(
                    "a process definition key appears twice".to_string(),
                ));
            }
        }
        for (id, mut list) in versions {
            list.sort_unstable();
            let contiguous = list
                .iter()
                .enumerate()
                .all(|(i, (version, _))| *version as usize == i + 1);
            if !contiguous {
                return Err(corrupt(format!(
                    "the versions of `{id}` are not 1, 2, 3, ..."
                )));
            }
            state
                .versions
                .insert(id, list.into_iter().map(|(_, key)| key).collect());
        }
        decode_runtime(&mut reader, &mut state, format)?;
        if reader.offset != reader.bytes.len() {
            return Err(corrupt(format!(
                "{} bytes after the last field",
                reader.bytes.len() - reader.offset
            )));
        }
        Ok(state)
    }
}

fn read_process(
    reader: &mut Reader<'_>,
    shard: u16,
    last_key: Key,
) -> Result<ProcessVersion, SnapshotError> {
    let key = Key(u64::from_le_bytes(reader.array()?));
    let version = u32::from_le_bytes(reader.array()?);
    let deployment_key = Key(u64::from_le_bytes(reader.array()?));
    let bpmn_process_id = reader.string()?;
    let resource_name = reader.string()?;
    let resource: Arc<[u8]> = Arc::from(reader.bytes()?);
    if key.shard() != shard || key > last_key || deployment_key > last_key {
        return Err(corrupt(format!(
            "process key {key} does not belong to shard {shard}"
        )));
    }
    let model = ringflow_bpmn::parse(&resource).map_err(|error| {
        corrupt(format!(
            "the resource {resource_name} of `{bpmn_process_id}` no longer validates:\n{error}"
        ))
    })?;
    let definition = model
        .processes
        .into_iter()
        .find(|process| *process.bpmn_process_id == *bpmn_process_id)
        .ok_or_else(|| {
            corrupt(format!(
                "the resource {resource_name} has no process `{bpmn_process_id}`"
            ))
        })?;
    Ok(ProcessVersion {
        key,
        bpmn_process_id,
        version,
        deployment_key,
        resource_name,
        resource,
        definition: Arc::new(definition),
    })
}

impl State {
    fn encode_runtime(&self, out: &mut Vec<u8>) {
        put_count(out, self.instances.len());
        for instance in crate::key::sorted_values(&self.instances) {
            put_key(out, instance.key);
            put_key(out, instance.process_definition_key);
            put_optional_text(out, instance.business_key.as_deref());
            out.push(u8::from(instance.await_result));
            out.extend_from_slice(&instance.live_elements.to_le_bytes());
            put_optional_key(out, instance.parent);
            put_optional_text(out, instance.message_start_key.as_deref());
        }
        put_count(out, self.elements.len());
        for element in crate::key::sorted_values(&self.elements) {
            put_key(out, element.key);
            put_key(out, element.process_instance_key);
            out.extend_from_slice(&element.element.0.to_le_bytes());
            put_optional_key(out, element.scope);
            out.extend_from_slice(&element.tokens.to_le_bytes());
            put_optional_key(out, element.job);
            put_optional_key(out, element.incident);
            match element.role {
                ElementRole::Plain => out.push(0),
                ElementRole::Body => out.push(1),
                ElementRole::Inner { loop_counter } => {
                    out.push(2);
                    out.extend_from_slice(&loop_counter.to_le_bytes());
                }
                ElementRole::AdHocInner => out.push(3),
            }
            put_optional_key(out, element.called);
        }
        put_count(out, self.variables.len());
        for (scope, document) in crate::key::sorted_entries(&self.variables) {
            put_key(out, *scope);
            put_json(out, document);
        }
        put_count(out, self.joins.len());
        for ((scope, gateway), counts) in &self.joins {
            put_key(out, *scope);
            out.extend_from_slice(&gateway.0.to_le_bytes());
            put_count(out, counts.len());
            for count in counts {
                out.extend_from_slice(&count.to_le_bytes());
            }
        }
        put_count(out, self.jobs.len());
        for job in crate::key::sorted_values(&self.jobs) {
            put_key(out, job.key);
            put_bytes(out, job.job_type.as_bytes());
            put_key(out, job.element_instance_key);
            put_key(out, job.process_instance_key);
            out.extend_from_slice(&job.retries.to_le_bytes());
            match &job.state {
                JobState::Activatable => out.push(0),
                JobState::Activated {
                    worker,
                    deadline_millis,
                } => {
                    out.push(1);
                    put_bytes(out, worker.as_bytes());
                    out.extend_from_slice(&deadline_millis.to_le_bytes());
                }
                JobState::Backoff { due_millis } => {
                    out.push(2);
                    out.extend_from_slice(&due_millis.to_le_bytes());
                }
                JobState::Failed => out.push(3),
            }
        }
        put_count(out, self.incidents.len());
        for incident in self.incidents.values() {
            put_incident(out, incident);
        }
        put_count(out, self.messages.len());
        for message in self.messages.values() {
            put_key(out, message.key);
            put_bytes(out, message.name.as_bytes());
            put_bytes(out, message.correlation_key.as_bytes());
            put_json(out, &message.variables);
            out.extend_from_slice(&message.deadline_millis.to_le_bytes());
            put_optional_text(out, message.message_id.as_deref());
            put_count(out, message.correlated.len());
            for process_id in &message.correlated {
                put_bytes(out, process_id.as_bytes());
            }
        }
        self.encode_waits(out);
        crate::remote::encode_remote(self, out);
        put_count(out, self.signal_subscriptions.len());
        for subscription in self.signal_subscriptions.values() {
            put_key(out, subscription.key);
            put_bytes(out, subscription.name.as_bytes());
            put_key(out, subscription.process_definition_key);
            out.extend_from_slice(&subscription.element.0.to_le_bytes());
            put_key(out, subscription.owner);
            put_key(out, subscription.process_instance_key);
        }
        put_count(out, self.signal_deliveries.len());
        for (key, delivery) in &self.signal_deliveries {
            put_key(out, *key);
            put_bytes(out, delivery.name.as_bytes());
            crate::codec::put_variables(out, &delivery.variables);
            put_key(out, delivery.after);
        }
        put_count(out, self.compensations.len());
        for compensation in self.compensations.values() {
            put_key(out, compensation.key);
            put_key(out, compensation.process_instance_key);
            put_key(out, compensation.scope);
            for element in [
                compensation.via,
                compensation.activity,
                compensation.handler,
            ] {
                out.extend_from_slice(&element.0.to_le_bytes());
            }
            crate::codec::put_variables(out, &compensation.variables);
        }
        let listener_jobs: Vec<&Job> = crate::key::sorted_values(&self.jobs)
            .into_iter()
            .filter(|job| job.listener.is_some())
            .collect();
        put_count(out, listener_jobs.len());
        for job in listener_jobs {
            let listener = job.listener.expect("filtered");
            put_key(out, job.key);
            out.push(match listener.event {
                ListenerEvent::Start => 0,
                ListenerEvent::End => 1,
                ListenerEvent::Creating => 2,
                ListenerEvent::Completing => 3,
                ListenerEvent::Assigning => 4,
                ListenerEvent::Updating => 5,
            });
            out.extend_from_slice(&listener.index.to_le_bytes());
        }
        put_count(out, self.held_triggers.len());
        for (key, (element, variables)) in &self.held_triggers {
            put_key(out, *key);
            out.extend_from_slice(&element.0.to_le_bytes());
            crate::codec::put_variables(out, variables);
        }
        put_count(out, self.conditional_subscriptions.len());
        for subscription in self.conditional_subscriptions.values() {
            put_key(out, subscription.key);
            put_key(out, subscription.process_definition_key);
            out.extend_from_slice(&subscription.element.0.to_le_bytes());
            put_key(out, subscription.owner);
            put_key(out, subscription.process_instance_key);
        }
        put_count(out, self.ad_hoc_fulfilled.len());
        for key in &self.ad_hoc_fulfilled {
            put_key(out, *key);
        }
        let user_tasks: Vec<&Job> = crate::key::sorted_values(&self.jobs)
            .into_iter()
            .filter(|job| job.user_task.is_some())
            .collect();
        put_count(out, user_tasks.len());
        for job in user_tasks {
            put_key(out, job.key);
            put_user_task(out, job.user_task.as_deref().expect("filtered"));
        }
        put_count(out, self.user_task_holds.len());
        for (key, hold) in &self.user_task_holds {
            put_key(out, *key);
            put_user_task(out, &hold.properties);
            match &hold.completion {
                Some(variables) => {
                    out.push(1);
                    crate::codec::put_variables(out, variables);
                }
                None => out.push(0),
            }
            match &hold.job {
                Some(job) => {
                    out.push(1);
                    put_key(out, job.key);
                    put_bytes(out, job.job_type.as_bytes());
                    out.extend_from_slice(&job.retries.to_le_bytes());
                    match job.user_task.as_deref() {
                        Some(properties) => {
                            out.push(1);
                            put_user_task(out, properties);
                        }
                        None => out.push(0),
                    }
                }
                None => out.push(0),
            }
        }
    }

    fn encode_waits(&self, out: &mut Vec<u8>) {
        put_count(out, self.timers.len());
        for timer in self.timers.values() {
            put_key(out, timer.key);
            out.extend_from_slice(&timer.due_millis.to_le_bytes());
            put_key(out, timer.process_definition_key);
            out.extend_from_slice(&timer.element.0.to_le_bytes());
            put_optional_key(out, timer.owner);
            match timer.repetitions {
                Some(left) => {
                    out.push(1);
                    out.extend_from_slice(&left.to_le_bytes());
                }
                None => out.push(0),
            }
            match &timer.interval {
                Some(Repeat::Every(interval)) => {
                    out.push(1);
                    out.extend_from_slice(&interval.years.to_le_bytes());
                    out.extend_from_slice(&interval.months.to_le_bytes());
                    out.extend_from_slice(&interval.days.to_le_bytes());
                    out.extend_from_slice(&interval.millis.to_le_bytes());
                }
                Some(Repeat::Cron(cron)) => {
                    out.push(2);
                    put_bytes(out, cron.source().as_bytes());
                }
                None => out.push(0),
            }
        }
        put_count(out, self.subscriptions.len());
        for subscription in self.subscriptions.values() {
            put_key(out, subscription.key);
            put_bytes(out, subscription.name.as_bytes());
            put_bytes(out, subscription.correlation_key.as_bytes());
            put_key(out, subscription.process_definition_key);
            out.extend_from_slice(&subscription.element.0.to_le_bytes());
            put_key(out, subscription.owner);
            put_key(out, subscription.process_instance_key);
        }
        put_count(out, self.multi.len());
        for (key, body) in &self.multi {
            put_key(out, *key);
            let json = serde_json::to_vec(&body.items).expect("JSON values serialize");
            put_bytes(out, &json);
            out.extend_from_slice(&body.started.to_le_bytes());
            out.extend_from_slice(&body.completed.to_le_bytes());
            out.extend_from_slice(&body.terminated.to_le_bytes());
        }
        put_count(out, self.decisions.len());
        for decision in self.decisions.values() {
            put_key(out, decision.key);
            out.extend_from_slice(&decision.version.to_le_bytes());
            put_key(out, decision.deployment_key);
            put_bytes(out, decision.decision_id.as_bytes());
            put_bytes(out, decision.resource_name.as_bytes());
            put_bytes(out, &decision.resource);
        }
    }
}

fn decode_runtime(
    reader: &mut Reader<'_>,
    state: &mut State,
    format: u8,
) -> Result<(), SnapshotError> {
    for _ in 0..reader.count()? {
        let instance = ProcessInstance {
            key: reader.key()?,
            process_definition_key: reader.key()?,
            business_key: reader.optional_text()?,
            await_result: reader.flag()?,
            live_elements: u32::from_le_bytes(reader.array()?),
            parent: reader.optional_key()?,
            message_start_key: reader.optional_text()?,
        };
        if !state
            .processes
            .contains_key(&instance.process_definition_key)
        {
            return Err(corrupt(format!(
                "instance {} runs an unknown process",
                instance.key
            )));
        }
        state.instances.insert(instance.key, instance);
    }
    for _ in 0..reader.count()? {
        let element = ElementInstance {
            key: reader.key()?,
            process_instance_key: reader.key()?,
            element: ElementIndex(u32::from_le_bytes(reader.array()?)),
            scope: reader.optional_key()?,
            tokens: u32::from_le_bytes(reader.array()?),
            job: reader.optional_key()?,
            incident: reader.optional_key()?,
            role: match reader.array::<1>()?[0] {
                0 => ElementRole::Plain,
                1 => ElementRole::Body,
                2 => ElementRole::Inner {
                    loop_counter: u32::from_le_bytes(reader.array()?),
                },
                3 if format >= 10 => ElementRole::AdHocInner,
                other => return Err(corrupt(format!("element role tag {other}"))),
            },
            called: reader.optional_key()?,
        };
        let Some(instance) = state.instances.get(&element.process_instance_key) else {
            return Err(corrupt(format!(
                "element {} of an unknown instance",
                element.key
            )));
        };
        let definition = &state.processes[&instance.process_definition_key].definition;
        if element.element.0 as usize >= definition.elements().len() {
            return Err(corrupt(format!(
                "element {} names no element of its process",
                element.key
            )));
        }
        if let Some(scope) = element.scope {
            state.children.add(scope, element.key);
        }
        state.elements.insert(element.key, element);
    }
    for _ in 0..reader.count()? {
        let scope = reader.key()?;
        let json = reader.bytes()?;
        let document: Variables = serde_json::from_slice(json)
            .map_err(|error| corrupt(format!("the variables of scope {scope}: {error}")))?;
        state.variables.insert(scope, document);
    }
    for _ in 0..reader.count()? {
        let scope = reader.key()?;
        let gateway = ElementIndex(u32::from_le_bytes(reader.array()?));
        let counts = (0..reader.count()?)
            .map(|_| reader.array().map(u32::from_le_bytes))
            .collect::<Result<Vec<u32>, _>>()?;
        state.joins.insert((scope, gateway), counts);
    }
    // Jobs of one type share one name, as they do when the engine makes them.
    let mut job_types: BTreeSet<Arc<str>> = BTreeSet::new();
    let mut worker_names: BTreeSet<Arc<str>> = BTreeSet::new();
    for _ in 0..reader.count()? {
        let key = reader.key()?;
        let job_type = intern(&mut job_types, &reader.string()?);
        let element_instance_key = reader.key()?;
        let process_instance_key = reader.key()?;
        let retries = u32::from_le_bytes(reader.array()?);
        let job_state = match reader.array::<1>()?[0] {
            0 => JobState::Activatable,
            1 => JobState::Activated {
                worker: intern(&mut worker_names, &reader.string()?),
                deadline_millis: i64::from_le_bytes(reader.array()?),
            },
            2 => JobState::Backoff {
                due_millis: i64::from_le_bytes(reader.array()?),
            },
            3 => JobState::Failed,
            other => return Err(corrupt(format!("job {key} has state tag {other}"))),
        };
        if job_state == JobState::Activatable {
            state
                .ready_jobs
                .entry(Arc::clone(&job_type))
                .or_default()
                .insert(key);
        }
        let job = Job {
            key,
            job_type,
            element_instance_key,
            process_instance_key,
            retries,
            state: job_state,
            listener: None,
            user_task: None,
        };
        state.jobs.insert(key, job);
    }
    for _ in 0..reader.count()? {
        let incident = read_incident(reader)?;
        state.incidents.insert(incident.key, incident);
    }
    for _ in 0..reader.count()? {
        let message = crate::messages::Message {
            key: reader.key()?,
            name: reader.string()?,
            correlation_key: reader.string()?,
            variables: serde_json::from_slice(reader.bytes()?)
                .map_err(|error| corrupt(format!("message variables: {error}")))?,
            deadline_millis: i64::from_le_bytes(reader.array()?),
            message_id: reader.optional_text()?,
            correlated: (0..reader.count()?)
                .map(|_| reader.string())
                .collect::<Result<_, _>>()?,
        };
        if let Some(id_key) = message.id_key()
            && state.message_ids.insert(id_key, message.key).is_some()
        {
            return Err(corrupt(format!(
                "message {} repeats a message id",
                message.key
            )));
        }
        if state.messages.insert(message.key, message).is_some() {
            return Err(corrupt("a message key repeats".to_string()));
        }
    }
    decode_waits(reader, state)?;
    if format >= 4 {
        crate::remote::decode_remote(reader, state, format)?;
    }
    if format >= 6 {
        for _ in 0..reader.count()? {
            let subscription = crate::instance::SignalSubscription {
                key: reader.key()?,
                name: reader.string()?,
                process_definition_key: reader.key()?,
                element: ElementIndex(u32::from_le_bytes(reader.array()?)),
                owner: reader.key()?,
                process_instance_key: reader.key()?,
            };
            let key = subscription.key;
            check_waiter(
                state,
                key,
                subscription.process_definition_key,
                subscription.element,
                Some(subscription.owner),
            )?;
            if state
                .signal_subscriptions
                .insert(key, subscription)
                .is_some()
            {
                return Err(corrupt(format!("signal subscription {key} repeats")));
            }
        }
        for _ in 0..reader.count()? {
            let key = reader.key()?;
            let delivery = crate::signals::PendingDelivery {
                name: reader.string()?,
                variables: crate::codec::read_variables(reader)?,
                after: reader.key()?,
            };
            if state.signal_deliveries.insert(key, delivery).is_some() {
                return Err(corrupt(format!("signal delivery {key} repeats")));
            }
        }
    }
    if format >= 7 {
        decode_compensations(reader, state)?;
    }
    if format >= 8 {
        decode_listeners(reader, state, format)?;
    }
    if format >= 9 {
        decode_conditionals(reader, state)?;
    }
    if format >= 10 {
        for _ in 0..reader.count()? {
            let key = reader.key()?;
            let ad_hoc = state.elements.get(&key).is_some_and(|element| {
                let instance = &state.instances[&element.process_instance_key];
                let definition = &state.processes[&instance.process_definition_key].definition;
                element.role != ElementRole::AdHocInner
                    && matches!(
                        definition.element(element.element).kind,
                        ringflow_bpmn::ElementKind::AdHocSubProcess(_)
                    )
            });
            if !ad_hoc || !state.ad_hoc_fulfilled.insert(key) {
                return Err(corrupt(format!(
                    "ad-hoc subprocess {key} is not a live ad-hoc subprocess, or repeats"
                )));
            }
        }
    }
    if format >= 11 {
        decode_user_tasks(reader, state)?;
    }
    state.rebuild_indexes();
    Ok(())
}

/// A user task's properties: assignee (optional text), candidate groups and candidate users
/// (each u8 flag, then u32 count + texts), due date and follow-up date (optional texts),
/// priority (u8 flag, then u8), denied reason (optional text).
fn put_user_task(out: &mut Vec<u8>, properties: &crate::instance::UserTaskProperties) {
    put_optional_text(out, properties.assignee.as_deref());
    put_optional_texts(out, &properties.candidate_groups);
    put_optional_texts(out, &properties.candidate_users);
    put_optional_text(out, properties.due_date.as_deref());
    put_optional_text(out, properties.follow_up_date.as_deref());
    put_optional_u8(out, properties.priority);
    put_optional_text(out, properties.denied_reason.as_deref());
}

fn read_user_task(
    reader: &mut Reader<'_>,
    key: Key,
) -> Result<crate::instance::UserTaskProperties, SnapshotError> {
    let assignee = reader.optional_text()?;
    let (candidate_groups, candidate_users) = (reader.optional_texts()?, reader.optional_texts()?);
    let due_date = reader.optional_text()?;
    let follow_up_date = reader.optional_text()?;
    let priority = match reader.array::<1>()?[0] {
        0 => None,
        1 => Some(reader.array::<1>()?[0]),
        other => {
            return Err(corrupt(format!(
                "user task {key} has a priority flag {other}"
            )));
        }
    };
    Ok(crate::instance::UserTaskProperties {
        assignee,
        candidate_groups,
        candidate_users,
        due_date,
        follow_up_date,
        priority,
        denied_reason: reader.optional_text()?,
    })
}

fn decode_user_tasks(reader: &mut Reader<'_>, state: &mut State) -> Result<(), SnapshotError> {
    for _ in 0..reader.count()? {
        let key = reader.key()?;
        let properties = read_user_task(reader, key)?;
        let Some(job) = state.jobs.get_mut(&key) else {
            return Err(corrupt(format!("user task job {key} is not an open job")));
        };
        if job.user_task.is_some() || job.listener.is_some() {
            return Err(corrupt(format!(
                "user task job {key} repeats, or is a listener's job"
            )));
        }
        job.user_task = Some(Box::new(properties));
    }
    for _ in 0..reader.count()? {
        let key = reader.key()?;
        let properties = read_user_task(reader, key)?;
        let completion = match reader.array::<1>()?[0] {
            0 => None,
            1 => Some(crate::codec::read_variables(reader)?),
            other => {
                return Err(corrupt(format!(
                    "user task {key} has a completion flag {other}"
                )));
            }
        };
        let held_by_listener = state.elements.get(&key).is_some_and(|element| {
            element
                .job
                .and_then(|job| state.jobs.get(&job))
                .is_some_and(|job| {
                    job.listener
                        .is_some_and(|listener| listener.event.is_task_listener())
                })
                || element.incident.is_some()
        });
        if !held_by_listener {
            return Err(corrupt(format!(
                "user task {key} is held, but runs no task listener and has no incident"
            )));
        }
        let job = match reader.array::<1>()?[0] {
            0 => None,
            1 => {
                let job_key = reader.key()?;
                let job_type: Arc<str> = reader.string()?.into();
                let retries = u32::from_le_bytes(reader.array()?);
                let user_task = match reader.array::<1>()?[0] {
                    0 => None,
                    1 => Some(Box::new(read_user_task(reader, job_key)?)),
                    other => {
                        return Err(corrupt(format!(
                            "held job {job_key} has a properties flag {other}"
                        )));
                    }
                };
                let Some(element) = state.elements.get(&key) else {
                    return Err(corrupt(format!(
                        "user task {key} is held, but is not a live element"
                    )));
                };
                let process_instance_key = element.process_instance_key;
                if state.jobs.contains_key(&job_key) {
                    return Err(corrupt(format!("held job {job_key} is also an open job")));
                }
                Some(Box::new(Job {
                    key: job_key,
                    job_type,
                    element_instance_key: key,
                    process_instance_key,
                    retries,
                    state: JobState::Activatable,
                    listener: None,
                    user_task,
                }))
            }
            other => {
                return Err(corrupt(format!(
                    "user task {key} has a held job flag {other}"
                )));
            }
        };
        let hold = crate::instance::UserTaskHold {
            properties,
            completion,
            job,
        };
        if state.user_task_holds.insert(key, hold).is_some() {
            return Err(corrupt(format!("user task {key} is held twice")));
        }
    }
    Ok(())
}

fn decode_compensations(reader: &mut Reader<'_>, state: &mut State) -> Result<(), SnapshotError> {
    for _ in 0..reader.count()? {
        let (key, process_instance_key, scope) = (reader.key()?, reader.key()?, reader.key()?);
        let mut element = || -> Result<ElementIndex, SnapshotError> {
            Ok(ElementIndex(u32::from_le_bytes(reader.array()?)))
        };
        let (via, activity, handler) = (element()?, element()?, element()?);
        let compensation = crate::instance::Compensation {
            key,
            process_instance_key,
            scope,
            via,
            activity,
            handler,
            variables: crate::codec::read_variables(reader)?,
        };
        let in_instance = state
            .elements
            .get(&scope)
            .is_some_and(|element| element.process_instance_key == process_instance_key);
        if !in_instance {
            return Err(corrupt(format!(
                "compensation {key} belongs to no live scope of its instance"
            )));
        }
        let instance = &state.instances[&process_instance_key];
        let definition = &state.processes[&instance.process_definition_key].definition;
        let elements = definition.elements().len();
        if [via, activity, handler]
            .iter()
            .any(|element| element.0 as usize >= elements)
        {
            return Err(corrupt(format!(
                "compensation {key} names no element of its process"
            )));
        }
        if state.compensations.insert(key, compensation).is_some() {
            return Err(corrupt(format!("compensation {key} repeats")));
        }
    }
    Ok(())
}

fn decode_listeners(
    reader: &mut Reader<'_>,
    state: &mut State,
    format: u8,
) -> Result<(), SnapshotError> {
    for _ in 0..reader.count()? {
        let key = reader.key()?;
        let event = match reader.array::<1>()?[0] {
            0 => ListenerEvent::Start,
            1 => ListenerEvent::End,
            2 if format >= 11 => ListenerEvent::Creating,
            3 if format >= 11 => ListenerEvent::Completing,
            4 if format >= 11 => ListenerEvent::Assigning,
            5 if format >= 11 => ListenerEvent::Updating,
            other => return Err(corrupt(format!("job {key} has listener event tag {other}"))),
        };
        let index = u32::from_le_bytes(reader.array()?);
        let Some(job) = state.jobs.get_mut(&key) else {
            return Err(corrupt(format!("listener job {key} is not an open job")));
        };
        let Some(element) = state.elements.get(&job.element_instance_key) else {
            return Err(corrupt(format!(
                "listener job {key} belongs to no live element"
            )));
        };
        let instance = &state.instances[&element.process_instance_key];
        let definition = &state.processes[&instance.process_definition_key].definition;
        let count = crate::listeners::listeners_of(definition, element.element, event).len();
        if index as usize >= count || job.listener.is_some() {
            return Err(corrupt(format!(
                "job {key} names no execution listener of its element"
            )));
        }
        job.listener = Some(Listener { event, index });
    }
    for _ in 0..reader.count()? {
        let key = reader.key()?;
        let element = ElementIndex(u32::from_le_bytes(reader.array()?));
        let variables = crate::codec::read_variables(reader)?;
        let Some(instance) = state.elements.get(&key) else {
            return Err(corrupt(format!(
                "a trigger is held for element {key}, which is not live"
            )));
        };
        let process = &state.instances[&instance.process_instance_key];
        let definition = &state.processes[&process.process_definition_key].definition;
        if element.0 as usize >= definition.elements().len() {
            return Err(corrupt(format!(
                "the trigger held for element {key} names no element of its process"
            )));
        }
        if state
            .held_triggers
            .insert(key, (element, variables))
            .is_some()
        {
            return Err(corrupt(format!("a trigger for element {key} repeats")));
        }
    }
    Ok(())
}

fn decode_conditionals(reader: &mut Reader<'_>, state: &mut State) -> Result<(), SnapshotError> {
    for _ in 0..reader.count()? {
        let subscription = crate::instance::ConditionalSubscription {
            key: reader.key()?,
            process_definition_key: reader.key()?,
            element: ElementIndex(u32::from_le_bytes(reader.array()?)),
            owner: reader.key()?,
            process_instance_key: reader.key()?,
        };
        let key = subscription.key;
        check_waiter(
            state,
            key,
            subscription.process_definition_key,
            subscription.element,
            Some(subscription.owner),
        )?;
        let definition = &state.processes[&subscription.process_definition_key].definition;
        if crate::conditionals::condition_of(definition, subscription.element).is_none() {
            return Err(corrupt(format!(
                "conditional subscription {key} names an element that is no conditional event"
            )));
        }
        if state
            .conditional_subscriptions
            .insert(key, subscription)
            .is_some()
        {
            return Err(corrupt(format!("conditional subscription {key} repeats")));
        }
    }
    Ok(())
}

fn decode_waits(reader: &mut Reader<'_>, state: &mut State) -> Result<(), SnapshotError> {
    for _ in 0..reader.count()? {
        let timer = Timer {
            key: reader.key()?,
            due_millis: i64::from_le_bytes(reader.array()?),
            process_definition_key: reader.key()?,
            element: ElementIndex(u32::from_le_bytes(reader.array()?)),
            owner: reader.optional_key()?,
            repetitions: if reader.flag()? {
                Some(u32::from_le_bytes(reader.array()?))
            } else {
                None
            },
            interval: match reader.array::<1>()?[0] {
                0 => None,
                1 => Some(Repeat::Every(IsoDuration {
                    years: u32::from_le_bytes(reader.array()?),
                    months: u32::from_le_bytes(reader.array()?),
                    days: u32::from_le_bytes(reader.array()?),
                    millis: u64::from_le_bytes(reader.array()?),
                })),
                2 => {
                    let text = reader.string()?;
                    let cron = ringflow_bpmn::cron::Cron::parse(&text)
                        .map_err(|problem| corrupt(format!("a timer's cron cycle: {problem}")))?;
                    Some(Repeat::Cron(Arc::new(cron)))
                }
                other => return Err(corrupt(format!("timer interval tag {other}"))),
            },
        };
        check_waiter(
            state,
            timer.key,
            timer.process_definition_key,
            timer.element,
            timer.owner,
        )?;
        state.timers.insert(timer.key, timer);
    }
    for _ in 0..reader.count()? {
        let subscription = Subscription {
            key: reader.key()?,
            name: reader.string()?,
            correlation_key: reader.string()?,
            process_definition_key: reader.key()?,
            element: ElementIndex(u32::from_le_bytes(reader.array()?)),
            owner: reader.key()?,
            process_instance_key: reader.key()?,
        };
        let (key, definition, element) = (
            subscription.key,
            subscription.process_definition_key,
            subscription.element,
        );
        check_waiter(state, key, definition, element, Some(subscription.owner))?;
        state.subscriptions.insert(key, subscription);
    }
    for _ in 0..reader.count()? {
        let key = reader.key()?;
        let items: Vec<serde_json::Value> = serde_json::from_slice(reader.bytes()?)
            .map_err(|error| corrupt(format!("multi-instance items of {key}: {error}")))?;
        let body = MultiBody {
            items,
            started: u32::from_le_bytes(reader.array()?),
            completed: u32::from_le_bytes(reader.array()?),
            terminated: u32::from_le_bytes(reader.array()?),
        };
        if !state.elements.contains_key(&key) {
            return Err(corrupt(format!(
                "multi-instance body {key} is not a live element"
            )));
        }
        state.multi.insert(key, body);
    }
    decode_decisions(reader, state)
}

fn decode_decisions(reader: &mut Reader<'_>, state: &mut State) -> Result<(), SnapshotError> {
    // Decisions of one resource share its parsed model.
    let mut parsed: Vec<(Arc<[u8]>, crate::decisions::DmnModel)> = Vec::new();
    for _ in 0..reader.count()? {
        let key = reader.key()?;
        let version = u32::from_le_bytes(reader.array()?);
        let deployment_key = reader.key()?;
        let decision_id = reader.string()?;
        let resource_name = reader.string()?;
        let bytes = reader.bytes()?;
        let (resource, model) = match parsed.iter().find(|(known, _)| &known[..] == bytes) {
            Some((resource, model)) => (Arc::clone(resource), model.clone()),
            None => {
                let model = crate::decisions::parse(bytes).map_err(|error| {
                    corrupt(format!(
                        "the DMN resource {resource_name} no longer parses: {error}"
                    ))
                })?;
                let resource: Arc<[u8]> = Arc::from(bytes);
                parsed.push((Arc::clone(&resource), model.clone()));
                (resource, model)
            }
        };
        let Some((_, name)) = model.decisions().iter().find(|(id, _)| *id == decision_id) else {
            return Err(corrupt(format!(
                "the DMN resource {resource_name} has no decision `{decision_id}`"
            )));
        };
        let versions = state
            .decision_versions
            .entry(decision_id.clone())
            .or_default();
        if versions.len() + 1 != version as usize {
            return Err(corrupt(format!(
                "the versions of decision `{decision_id}` are not 1, 2, 3, ..."
            )));
        }
        versions.push(key);
        let decision = crate::decisions::DecisionVersion {
            key,
            decision_id,
            name: name.clone(),
            version,
            deployment_key,
            resource_name,
            resource,
            model,
        };
        state.decisions.insert(key, decision);
    }
    Ok(())
}

/// A timer or subscription must belong to a live element and name an element of its process.
fn check_waiter(
    state: &State,
    key: Key,
    process_definition_key: Key,
    element: ElementIndex,
    owner: Option<Key>,
) -> Result<(), SnapshotError> {
    let Some(process) = state.processes.get(&process_definition_key) else {
        return Err(corrupt(format!("wait {key} names an unknown process")));
    };
    if element.0 as usize >= process.definition.elements().len() {
        return Err(corrupt(format!(
            "wait {key} names no element of its process"
        )));
    }
    if owner.is_some_and(|owner| !state.elements.contains_key(&owner)) {
        return Err(corrupt(format!("wait {key} belongs to no live element")));
    }
    Ok(())
}

/// An incident: key, instance key, element instance key, message, retry u8 (0 activation,
/// 1 completion, 2 job, 3 a user task's completing listeners). Also the form of `ChildIncident` mail.
pub(crate) fn put_incident(out: &mut Vec<u8>, incident: &Incident) {
    put_key(out, incident.key);
    put_key(out, incident.process_instance_key);
    put_key(out, incident.element_instance_key);
    put_bytes(out, incident.message.as_bytes());
    out.push(match incident.retry {
        IncidentRetry::Activation => 0,
        IncidentRetry::Completion => 1,
        IncidentRetry::Job => 2,
        IncidentRetry::Completing => 3,
        IncidentRetry::Assigning => 4,
        IncidentRetry::Updating => 5,
    });
}

pub(crate) fn read_incident(reader: &mut Reader<'_>) -> Result<Incident, SnapshotError> {
    Ok(Incident {
        key: reader.key()?,
        process_instance_key: reader.key()?,
        element_instance_key: reader.key()?,
        message: reader.string()?,
        retry: match reader.array::<1>()?[0] {
            0 => IncidentRetry::Activation,
            1 => IncidentRetry::Completion,
            2 => IncidentRetry::Job,
            3 => IncidentRetry::Completing,
            4 => IncidentRetry::Assigning,
            5 => IncidentRetry::Updating,
            other => return Err(corrupt(format!("incident retry tag {other}"))),
        },
    })
}

pub(crate) fn put_count(out: &mut Vec<u8>, count: usize) {
    let count = u32::try_from(count).expect("counts are capped far below u32::MAX");
    out.extend_from_slice(&count.to_le_bytes());
}

pub(crate) fn put_key(out: &mut Vec<u8>, key: Key) {
    out.extend_from_slice(&key.0.to_le_bytes());
}

pub(crate) fn put_optional_key(out: &mut Vec<u8>, key: Option<Key>) {
    match key {
        Some(key) => {
            out.push(1);
            put_key(out, key);
        }
        None => out.push(0),
    }
}

/// An optional list of texts: a u8 flag, then a u32 count and the texts.
pub(crate) fn put_optional_texts(out: &mut Vec<u8>, list: &Option<Vec<String>>) {
    match list {
        Some(items) => {
            out.push(1);
            put_count(out, items.len());
            for item in items {
                put_bytes(out, item.as_bytes());
            }
        }
        None => out.push(0),
    }
}

/// An optional byte: a u8 flag, then the byte.
pub(crate) fn put_optional_u8(out: &mut Vec<u8>, value: Option<u8>) {
    match value {
        Some(value) => out.extend_from_slice(&[1, value]),
        None => out.push(0),
    }
}

pub(crate) fn put_optional_text(out: &mut Vec<u8>, text: Option<&str>) {
    match text {
        Some(text) => {
            out.push(1);
            put_bytes(out, text.as_bytes());
        }
        None => out.push(0),
    }
}

/// `variables` as JSON, as a byte string (`put_bytes` of its text), written in place.
pub(crate) fn put_json(out: &mut Vec<u8>, variables: &crate::Variables) {
    let at = out.len();
    out.extend_from_slice(&[0; 4]);
    crate::variables::write_json(variables, out);
    let len = u32::try_from(out.len() - at - 4).expect("documents are capped far below 4 GiB");
    out[at..at + 4].copy_from_slice(&len.to_le_bytes());
}

pub(crate) fn put_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
    let len = u32::try_from(bytes.len()).expect("resources are capped far below 4 GiB");
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(bytes);
}

fn corrupt(message: String) -> SnapshotError {
    SnapshotError::Corrupt(message)
}

pub(crate) struct Reader<'a> {
    bytes: &'a [u8],
    offset: usize,
}

impl<'a> Reader<'a> {
    pub(crate) fn new(bytes: &'a [u8]) -> Reader<'a> {
        Reader { bytes, offset: 0 }
    }

    pub(crate) fn remaining(&self) -> usize {
        self.bytes.len() - self.offset
    }

    pub(crate) fn take(&mut self, len: usize) -> Result<&'a [u8], SnapshotError> {
        let end = self
            .offset
            .checked_add(len)
            .filter(|end| *end <= self.bytes.len());
        let end = end.ok_or(SnapshotError::Truncated {
            offset: self.offset,
        })?;
        let slice = &self.bytes[self.offset..end];
        self.offset = end;
        Ok(slice)
    }

    pub(crate) fn array<const N: usize>(&mut self) -> Result<[u8; N], SnapshotError> {
        Ok(self.take(N)?.try_into().expect("take returns N bytes"))
    }

    pub(crate) fn bytes(&mut self) -> Result<&'a [u8], SnapshotError> {
        let len = u32::from_le_bytes(self.array()?) as usize;
        self.take(len)
    }

    pub(crate) fn count(&mut self) -> Result<u32, SnapshotError> {
        Ok(u32::from_le_bytes(self.array()?))
    }

    pub(crate) fn key(&mut self) -> Result<Key, SnapshotError> {
        Ok(Key(u64::from_le_bytes(self.array()?)))
    }

    /// What [`put_optional_texts`] wrote.
    pub(crate) fn optional_texts(&mut self) -> Result<Option<Vec<String>>, SnapshotError> {
        if !self.flag()? {
            return Ok(None);
        }
        (0..self.count()?)
            .map(|_| self.string())
            .collect::<Result<_, _>>()
            .map(Some)
    }

    pub(crate) fn flag(&mut self) -> Result<bool, SnapshotError> {
        let offset = self.offset;
        match self.array::<1>()?[0] {
            0 => Ok(false),
            1 => Ok(true),
            other => Err(corrupt(format!(
                "byte {offset} is a flag of {other}, not 0 or 1"
            ))),
        }
    }

    pub(crate) fn optional_key(&mut self) -> Result<Option<Key>, SnapshotError> {
        Ok(if self.flag()? {
            Some(self.key()?)
        } else {
            None
        })
    }

    pub(crate) fn optional_text(&mut self) -> Result<Option<String>, SnapshotError> {
        Ok(if self.flag()? {
            Some(self.string()?)
        } else {
            None
        })
    }

    pub(crate) fn string(&mut self) -> Result<String, SnapshotError> {
        let offset = self.offset;
        let bytes = self.bytes()?;
        String::from_utf8(bytes.to_vec())
            .map_err(|_| corrupt(format!("the text at byte {offset} is not UTF-8")))
    }
}

/// The shared copy of `name` in `names`, made on first sight.
fn intern(names: &mut BTreeSet<Arc<str>>, name: &str) -> Arc<str> {
    if let Some(shared) = names.get(name) {
        return Arc::clone(shared);
    }
    let shared: Arc<str> = name.into();
    names.insert(Arc::clone(&shared));
    shared
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_format_3_snapshot_is_read_as_a_state_with_no_cross_shard_fields() {
        let mut state = State::new(2);
        state.set_last_key(Key::new(2, 40));
        let current = state.encode();
        // Format 3 is the current format without the cross-shard section, which for this
        // state is the shard count (u16) and six empty counts (u32 each), and without the
        // empty counts of signal subscriptions, signal deliveries, compensations, listener
        // jobs and held triggers.
        let v3 = older(&current, 2 + 6 * 4 + 9 * 4, MAGIC_3);
        let restored = State::decode(&v3).expect("format 3 is read");
        assert_eq!(restored.encode(), current);
        let mut other = v3.clone();
        other[7] = 2;
        assert_eq!(State::decode(&other).unwrap_err(), SnapshotError::BadMagic);
    }

    #[test]
    fn a_format_4_snapshot_is_read_as_a_state_with_no_remote_incidents_or_throws() {
        let mut state = State::new(1);
        state.set_cluster_shards(4);
        state.set_last_key(Key::new(1, 7));
        let current = state.encode();
        // Format 4 lacks the last two counts of the cross-shard section, the two signal
        // counts, the compensations' count and the two execution listener counts.
        let v4 = older(&current, 11 * 4, MAGIC_4);
        let restored = State::decode(&v4).expect("format 4 is read");
        assert_eq!(restored.encode(), current);
        assert_eq!(restored.cluster_shards(), 4);
        // Read as the current format, the same bytes are short.
        assert!(matches!(
            State::decode(&as_current(&v4)),
            Err(SnapshotError::Truncated { .. })
        ));
    }

    #[test]
    fn a_format_5_snapshot_is_read_as_a_state_with_no_signal_subscriptions() {
        let mut state = State::new(3);
        state.set_cluster_shards(2);
        state.set_last_key(Key::new(3, 9));
        let current = state.encode();
        // Format 5 lacks the counts of signal subscriptions, signal deliveries,
        // compensations, listener jobs, held triggers and conditional subscriptions at the
        // end.
        let v5 = older(&current, 9 * 4, MAGIC_5);
        let restored = State::decode(&v5).expect("format 5 is read");
        assert_eq!(restored.encode(), current);
        assert!(matches!(
            State::decode(&as_current(&v5)),
            Err(SnapshotError::Truncated { .. })
        ));
    }

    #[test]
    fn a_format_6_snapshot_is_read_as_a_state_with_no_compensations() {
        let mut state = State::new(4);
        state.set_last_key(Key::new(4, 11));
        let current = state.encode();
        // Format 6 lacks the counts of compensations, listener jobs, held triggers and
        // conditional subscriptions.
        let v6 = older(&current, 7 * 4, MAGIC_6);
        let restored = State::decode(&v6).expect("format 6 is read");
        assert_eq!(restored.encode(), current);
        assert!(matches!(
            State::decode(&as_current(&v6)),
            Err(SnapshotError::Truncated { .. })
        ));
    }

    #[test]
    fn a_format_7_snapshot_is_read_as_a_state_with_no_execution_listeners() {
        let mut state = State::new(5);
        state.set_last_key(Key::new(5, 12));
        let current = state.encode();
        // Format 7 lacks the counts of listener jobs, held triggers and conditional
        // subscriptions at the end.
        let v7 = older(&current, 6 * 4, MAGIC_7);
        let restored = State::decode(&v7).expect("format 7 is read");
        assert_eq!(restored.encode(), current);
        assert!(matches!(
            State::decode(&as_current(&v7)),
            Err(SnapshotError::Truncated { .. })
        ));
    }

    #[test]
    fn a_format_8_snapshot_is_read_as_a_state_with_no_conditional_subscriptions() {
        let mut state = State::new(6);
        state.set_last_key(Key::new(6, 13));
        let current = state.encode();
        // Format 8 lacks the count of conditional subscriptions at the end.
        let v8 = older(&current, 4 * 4, MAGIC_8);
        let restored = State::decode(&v8).expect("format 8 is read");
        assert_eq!(restored.encode(), current);
        assert!(matches!(
            State::decode(&as_current(&v8)),
            Err(SnapshotError::Truncated { .. })
        ));
    }

    #[test]
    fn a_format_9_snapshot_is_read_as_a_state_with_no_ad_hoc_subprocesses() {
        let mut state = State::new(7);
        state.set_last_key(Key::new(7, 14));
        let current = state.encode();
        // Format 9 lacks the count of fulfilled ad-hoc subprocesses at the end.
        let v9 = older(&current, 3 * 4, MAGIC_9);
        let restored = State::decode(&v9).expect("format 9 is read");
        assert_eq!(restored.encode(), current);
        assert!(matches!(
            State::decode(&as_current(&v9)),
            Err(SnapshotError::Truncated { .. })
        ));
    }

    #[test]
    fn a_format_10_snapshot_is_read_as_a_state_with_no_user_task_properties() {
        let mut state = State::new(8);
        state.set_last_key(Key::new(8, 15));
        let current = state.encode();
        // Format 10 lacks the counts of user tasks with properties and of held user tasks at
        // the end.
        let v10 = older(&current, 2 * 4, MAGIC_10);
        let restored = State::decode(&v10).expect("format 10 is read");
        assert_eq!(restored.encode(), current);
        assert!(matches!(
            State::decode(&as_current(&v10)),
            Err(SnapshotError::Truncated { .. })
        ));
    }

    #[test]
    fn a_fulfilled_ad_hoc_subprocess_that_is_not_live_is_refused() {
        let mut state = State::new(1);
        state.set_last_key(Key::new(1, 20));
        state.ad_hoc_fulfilled.insert(Key::new(1, 4));
        let error = State::decode(&state.encode()).expect_err("refused");
        assert!(error.to_string().contains("ad-hoc subprocess"), "{error}");
    }

    #[test]
    fn a_trigger_held_for_no_live_element_is_refused() {
        let mut state = State::new(1);
        state.set_last_key(Key::new(1, 20));
        state
            .held_triggers
            .insert(Key::new(1, 4), (ElementIndex(1), Variables::new()));
        let error = State::decode(&state.encode()).expect_err("refused");
        assert!(error.to_string().contains("which is not live"), "{error}");
    }

    #[test]
    fn a_compensation_of_no_live_scope_is_refused() {
        let mut state = State::new(1);
        state.set_last_key(Key::new(1, 20));
        let compensation = crate::instance::Compensation {
            key: Key::new(1, 9),
            process_instance_key: Key::new(1, 3),
            scope: Key::new(1, 4),
            via: ElementIndex(1),
            activity: ElementIndex(1),
            handler: ElementIndex(2),
            variables: Variables::new(),
        };
        state.compensations.insert(compensation.key, compensation);
        let error = State::decode(&state.encode()).expect_err("refused");
        assert!(
            error.to_string().contains("belongs to no live scope"),
            "{error}"
        );
    }

    /// `older`'s bytes labelled as the current format, with their checksum made again.
    fn as_current(older: &[u8]) -> Vec<u8> {
        let mut bytes = older.to_vec();
        bytes[..MAGIC.len()].copy_from_slice(MAGIC);
        let body = bytes.len() - 4;
        let checksum = crc32fast::hash(&bytes[..body]);
        bytes[body..].copy_from_slice(&checksum.to_le_bytes());
        bytes
    }

    /// `current` without its last `section` bytes (before the checksum), as format `magic`.
    fn older(current: &[u8], section: usize, magic: &[u8; 8]) -> Vec<u8> {
        let mut bytes = current[..current.len() - 4 - section].to_vec();
        bytes[..magic.len()].copy_from_slice(magic);
        let checksum = crc32fast::hash(&bytes);
        bytes.extend_from_slice(&checksum.to_le_bytes());
        bytes
    }
}
