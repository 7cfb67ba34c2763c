//! Published messages: `PublishMessage` buffers a message for its time to live,
//! `ExpireMessage` (the shard's timer) drops it when that is over.
//!
//! A message with a message id is unique while it is buffered: publishing the same name,
//! correlation key and message id again is refused with `ALREADY_EXISTS` (as in Camunda 8).
//! A message with a TTL of 0 is not buffered, so it is never a duplicate. Correlating
//! buffered messages to instances that wait for them comes with the message events.

use crate::engine::{
    Ctx, Effect, Event, Keys, Outcome, Rejection, RejectionCode, Response, Variables,
};
use crate::key::Key;
use crate::limits::{BUFFERED_MESSAGES_MAX, MESSAGE_TTL_MILLIS_MAX, NAME_BYTES_MAX};
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
    let too_long = |text: &str| text.len() > NAME_BYTES_MAX;
    if name.is_empty() || too_long(&name) || too_long(&correlation_key) {
        return Err(Rejection::new(
            RejectionCode::InvalidArgument,
            format!(
                "the message name must be 1 to NAME_BYTES_MAX ({NAME_BYTES_MAX}) bytes, the correlation key at most that"
            ),
        ));
    }
    if message_id
        .as_deref()
        .is_some_and(|id| id.is_empty() || too_long(id))
    {
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
    check_document_size(&variables)?;
    let mut message = Message {
        key: Key(0),
        name,
        correlation_key,
        variables,
        deadline_millis: ctx.now_millis.saturating_add(ttl_millis as i64),
        message_id,
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
    let mut keys = Keys::new(ctx);
    let key = keys.take()?;
    message.key = key;
    let events = vec![Event::MessagePublished {
        key,
        name: message.name.clone(),
        correlation_key: message.correlation_key.clone(),
    }];
    let mut effects = Vec::new();
    if buffered {
        effects.push(Effect::MessageTtl {
            key,
            deadline_millis: message.deadline_millis,
        });
        if let Some(id_key) = message.id_key() {
            state.message_ids.insert(id_key, key);
        }
        state.messages.insert(key, message);
    }
    Ok(Outcome {
        response: Response::MessagePublished { key },
        events,
        effects,
        next_key: keys.next(),
    })
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
    let message = state.messages.remove(&key).expect("checked");
    if let Some(id_key) = message.id_key() {
        state.message_ids.remove(&id_key);
    }
    Ok(Outcome {
        response: Response::MessageExpired { key },
        events: vec![Event::MessageExpired { key }],
        effects: Vec::new(),
        next_key: ctx.next_key,
    })
}
