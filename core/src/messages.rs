//! Published messages: `PublishMessage` buffers a message for its time to live,
//! `ExpireMessage` (the shard's timer) drops it when that is over.
//!
//! A message with a message id is unique while it is buffered: publishing the same name,
//! correlation key and message id again is refused with `ALREADY_EXISTS` (as in Camunda 8).
//! A message with a TTL of 0 is not buffered, so it is never a duplicate. Correlating
//! buffered messages to instances that wait for them comes with the message events.

use std::collections::BTreeSet;

use crate::engine::{
    Ctx, Effect, Event, Keys, Outcome, Rejection, RejectionCode, Response, Variables,
};
use crate::key::Key;
use crate::limits::{
    BUFFERED_MESSAGES_MAX, LIVE_INSTANCES_MAX, MESSAGE_TTL_MILLIS_MAX, NAME_BYTES_MAX,
};
use crate::run::Run;
use crate::state::State;
use crate::variables::check_document_size;

/// A buffered message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Message {
    /// The message key.
    pub key: Key,
    /// The message name.
    pub name: String,
    /// The correlation key.
    pub correlation_key: String,
    /// Its variables.
    pub variables: Variables,
    /// When it expires, in milliseconds since the Unix epoch.
    pub deadline_millis: i64,
    /// Its message id, if it has one.
    pub message_id: Option<String>,
    /// The BPMN process ids it has correlated to: a message goes to each process at most
    /// once.
    pub correlated: BTreeSet<String>,
}

impl Message {
    /// The key under which the message id is unique.
    pub(crate) fn id_key(&self) -> Option<(String, String, String)> {
        let id = self.message_id.as_ref()?;
        Some((self.name.clone(), self.correlation_key.clone(), id.clone()))
    }
}

pub(crate) fn publish(
    state: &mut State,
    name: String,
    correlation_key: String,
    variables: Variables,
    ttl_millis: u64,
    message_id: Option<String>,
    ctx: &Ctx,
) -> Result<Outcome, Rejection> {
    check_publish(&name, &correlation_key, message_id.as_deref(), ttl_millis)?;
    check_document_size(&variables)?;
    let mut message = Message {
        key: Key(0),
        name,
        correlation_key,
        variables,
        deadline_millis: ctx.now_millis.saturating_add(ttl_millis as i64),
        message_id,
        correlated: BTreeSet::new(),
    };
    let buffered = ttl_millis > 0;
    if buffered {
        if let Some(id_key) = message.id_key()
            && let Some(existing) = state.message_ids.get(&id_key)
        {
            return Err(Rejection::new(
                RejectionCode::AlreadyExists,
                format!(
                    "message {existing} with name {:?}, correlation key {:?} and message id {:?} is still buffered",
                    id_key.0, id_key.1, id_key.2
                ),
            ));
        }
        if state.messages.len() >= BUFFERED_MESSAGES_MAX {
            return Err(Rejection::new(
                RejectionCode::LimitExceeded,
                format!(
                    "shard {} buffers BUFFERED_MESSAGES_MAX ({BUFFERED_MESSAGES_MAX}) messages",
                    state.shard()
                ),
            ));
        }
    }
    let mut run = Run::new(state, Keys::new(ctx), ctx.now_millis);
    let key = run.key();
    message.key = key;
    run.events.push(Event::MessagePublished {
        key,
        name: message.name.clone(),
        correlation_key: message.correlation_key.clone(),
    });
    run.start_by_message(&mut message);
    run.offer(&mut message);
    if buffered {
        run.effects.push(Effect::MessageTtl {
            key,
            deadline_millis: message.deadline_millis,
        });
        run.state.insert_message(message);
    }
    run.run();
    Ok(run.outcome(Response::MessagePublished { key }))
}

fn check_publish(
    name: &str,
    correlation_key: &str,
    message_id: Option<&str>,
    ttl_millis: u64,
) -> Result<(), Rejection> {
    let too_long = |text: &str| text.len() > NAME_BYTES_MAX;
    if name.is_empty() || too_long(name) || too_long(correlation_key) {
        return Err(Rejection::new(
            RejectionCode::InvalidArgument,
            format!(
                "the message name must be 1 to NAME_BYTES_MAX ({NAME_BYTES_MAX}) bytes, the correlation key at most that"
            ),
        ));
    }
    if message_id.is_some_and(|id| id.is_empty() || too_long(id)) {
        return Err(Rejection::new(
            RejectionCode::InvalidArgument,
            format!("a message id must be 1 to NAME_BYTES_MAX ({NAME_BYTES_MAX}) bytes"),
        ));
    }
    if ttl_millis > MESSAGE_TTL_MILLIS_MAX {
        return Err(Rejection::new(
            RejectionCode::LimitExceeded,
            format!(
                "the time to live of {ttl_millis} ms is over MESSAGE_TTL_MILLIS_MAX ({MESSAGE_TTL_MILLIS_MAX})"
            ),
        ));
    }
    Ok(())
}

impl Run<'_> {
    /// Offers a message to the open subscriptions of its name and correlation key: this
    /// shard's, oldest first, then those of instances on other shards (as Correlate mail);
    /// at most one per BPMN process id that has not taken it yet.
    pub(crate) fn offer(&mut self, message: &mut Message) {
        let waiting: Vec<Key> = self
            .state
            .index
            .subscriptions
            .get(&(message.name.clone(), message.correlation_key.clone()))
            .map(|keys| keys.iter().copied().collect())
            .unwrap_or_default();
        for subscription in waiting {
            // An earlier correlation in this loop may have ended this subscription's instance.
            let Some(open) = self.state.subscriptions.get(&subscription) else {
                continue;
            };
            let process_id = self
                .state
                .process_id_of(open.process_definition_key)
                .to_string();
            if message.correlated.insert(process_id) {
                self.correlate(subscription, Some(message.key), message.variables.clone());
            }
        }
        self.offer_remote(message);
    }

    /// Starts an instance of every process whose latest version has a message start event
    /// for this message, unless the message went to that process already or (with a
    /// correlation key) an instance it started with the same key still runs.
    fn start_by_message(&mut self, message: &mut Message) {
        let Some(processes) = self.state.index.message_starts.get(&message.name) else {
            return;
        };
        let processes: Vec<String> = processes.iter().cloned().collect();
        for process_id in processes {
            self.start_process_by_message(&process_id, message);
        }
    }

    /// Starts `process_id` for a message if the Camunda 8 rules allow it; true when started.
    pub(crate) fn start_process_by_message(
        &mut self,
        process_id: &str,
        message: &mut Message,
    ) -> bool {
        if message.correlated.contains(process_id) {
            return false;
        }
        let unique = !message.correlation_key.is_empty();
        if unique
            && self
                .state
                .index
                .message_started
                .contains_key(&(process_id.to_string(), message.correlation_key.clone()))
        {
            return false;
        }
        if self.state.instances.len() >= LIVE_INSTANCES_MAX {
            return false;
        }
        let version = self
            .state
            .latest_process(process_id)
            .expect("the start index names deployed processes");
        let definition = std::sync::Arc::clone(&version.definition);
        let version_key = version.key;
        let start = definition
            .start_events(ringflow_bpmn::ProcessDefinition::ROOT)
            .iter()
            .copied()
            .find(|start| match &definition.element(*start).kind {
                ringflow_bpmn::ElementKind::StartEvent {
                    trigger: ringflow_bpmn::StartTrigger::Message(reference),
                    ..
                } => {
                    crate::timers::static_text(&reference.name).as_deref()
                        == Some(message.name.as_str())
                }
                _ => false,
            })
            .expect("the start index matches the definition");
        message.correlated.insert(process_id.to_string());
        let key_for_uniqueness = unique.then(|| message.correlation_key.clone());
        let instance = self.start_instance_at(
            version_key,
            start,
            message.variables.clone(),
            key_for_uniqueness,
        );
        self.events.push(Event::MessageCorrelated {
            message_key: Some(message.key),
            subscription_key: Key(0),
            process_instance_key: instance,
            element_instance_key: instance,
        });
        true
    }

    /// A subscription just opened: the oldest buffered message for it that has not gone to
    /// this process yet correlates (after the current step, so the owner is fully entered).
    pub(crate) fn correlate_buffered(&mut self, subscription: Key) {
        self.queue_correlation(subscription);
    }

    /// Runs a queued correlation of a buffered message to a subscription.
    pub(crate) fn correlate_now(&mut self, subscription: Key) {
        let Some(open) = self.state.subscriptions.get(&subscription) else {
            return;
        };
        let process_id = self
            .state
            .process_id_of(open.process_definition_key)
            .to_string();
        let name = (open.name.clone(), open.correlation_key.clone());
        let Some((message_key, variables)) = self.take_oldest_buffered(&name, &process_id) else {
            return;
        };
        self.correlate(subscription, Some(message_key), variables);
    }

    /// The oldest buffered message of this (name, correlation key) that has not expired and
    /// has not gone to the process yet.
    pub(crate) fn oldest_buffered(&self, name: &(String, String), process_id: &str) -> Option<Key> {
        let now = self.now_millis();
        let candidates = self.state.index.messages.get(name)?;
        candidates.iter().copied().find(|key| {
            let message = &self.state.messages[key];
            message.deadline_millis > now && !message.correlated.contains(process_id)
        })
    }

    /// [`Run::oldest_buffered`], marked as taken by the process: its key and variables.
    pub(crate) fn take_oldest_buffered(
        &mut self,
        name: &(String, String),
        process_id: &str,
    ) -> Option<(Key, Variables)> {
        let key = self.oldest_buffered(name, process_id)?;
        let message = self
            .state
            .messages
            .get_mut(&key)
            .expect("indexed messages are buffered");
        message.correlated.insert(process_id.to_string());
        Some((key, message.variables.clone()))
    }

    /// A message-started instance ended: a buffered message for one of the process's message
    /// start events with the same correlation key may start the next one (Camunda 8 rule).
    pub(crate) fn start_from_buffer(&mut self, process_id: &str, correlation_key: &str) {
        let Some(version) = self.state.latest_process(process_id) else {
            return;
        };
        let names = crate::timers::message_start_names(&version.definition);
        let now = self.now_millis();
        for name in names {
            let pair = (name, correlation_key.to_string());
            let candidates: Vec<Key> = self
                .state
                .index
                .messages
                .get(&pair)
                .map(|keys| keys.iter().copied().collect())
                .unwrap_or_default();
            for key in candidates {
                let mut message = self.state.messages[&key].clone();
                if message.deadline_millis <= now {
                    continue;
                }
                if self.start_process_by_message(process_id, &mut message) {
                    self.state.messages.insert(key, message);
                    return;
                }
            }
        }
    }
}

pub(crate) fn expire(state: &mut State, key: Key, ctx: &Ctx) -> Result<Outcome, Rejection> {
    let Some(message) = state.messages.get(&key) else {
        return Err(Rejection::new(
            RejectionCode::InvalidState,
            format!("message {key} is not buffered"),
        ));
    };
    if message.deadline_millis > ctx.now_millis {
        return Err(Rejection::new(
            RejectionCode::InvalidState,
            format!(
                "message {key} lives until {}, it is {} now",
                message.deadline_millis, ctx.now_millis
            ),
        ));
    }
    state.remove_message(key).expect("checked");
    Ok(Outcome {
        response: Response::MessageExpired { key },
        events: vec![Event::MessageExpired { key }],
        effects: Vec::new(),
        next_key: ctx.next_key,
    })
}
