//! The engine's entry point and the types that go in and come out.

use std::fmt;
use std::sync::Arc;

use crate::key::Key;
use crate::state::State;

/// What the engine takes from outside for one command. The shard journals it with the
/// command, so that replay sees the same inputs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ctx {
    /// The shard's clock when the command was accepted, in milliseconds since the Unix epoch.
    pub now_millis: i64,
    /// The first key this command may hand out; [`Outcome::next_key`] says where it stopped.
    pub next_key: Key,
}

/// A command for the engine.
#[derive(Clone, Debug)]
pub enum Command {
    /// Deploy one or more BPMN resources in one atomic step.
    Deploy {
        /// The resources, in the order given.
        resources: Vec<Resource>,
    },
}

/// One named BPMN file of a deployment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Resource {
    /// The name, usually the file name (`order-process.bpmn`).
    pub name: String,
    /// The file's bytes.
    pub content: Arc<[u8]>,
}

/// What an accepted command did.
#[derive(Clone, Debug)]
pub struct Outcome {
    /// The answer for the caller.
    pub response: Response,
    /// What happened, in order: for history and export.
    pub events: Vec<Event>,
    /// What the shard must do once the command is durable.
    pub effects: Vec<Effect>,
    /// The first key not handed out by this command.
    pub next_key: Key,
}

/// The answer to a command.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Response {
    /// A deployment was made.
    Deployed(Deployment),
}

/// The result of a deployment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Deployment {
    /// The deployment's key.
    pub key: Key,
    /// Every process of every resource, in order.
    pub processes: Vec<DeployedProcess>,
}

/// One process of a deployment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeployedProcess {
    /// The BPMN process id.
    pub bpmn_process_id: String,
    /// Its version: 1 for the first deployment of this id.
    pub version: u32,
    /// The key of this process definition version.
    pub process_definition_key: Key,
    /// The resource it came from.
    pub resource_name: String,
    /// Whether this exact XML was the latest version already, so no version was made.
    pub duplicate: bool,
}

/// Something that happened, for history and export.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// A new process definition version exists.
    ProcessDeployed {
        /// The process definition key.
        key: Key,
        /// The BPMN process id.
        bpmn_process_id: String,
        /// The version.
        version: u32,
        /// The deployment it came with.
        deployment_key: Key,
    },
}

/// Work for the shard once the command that caused it is durable. None exist yet: deploying
/// has no effect beyond its response.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Effect {}

/// Why a command was refused. A rejection changes nothing.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{code}: {message}")]
pub struct Rejection {
    /// What kind of refusal.
    pub code: RejectionCode,
    /// What was wrong, for a person.
    pub message: String,
}

/// The kinds of refusal, as stable codes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RejectionCode {
    /// A request that cannot be carried out as given (empty deployment, duplicate names).
    InvalidArgument,
    /// A BPMN resource that does not validate.
    InvalidModel,
    /// Over one of the limits in [`crate::limits`].
    LimitExceeded,
    /// The shard has handed out every key it can.
    KeysExhausted,
}

impl RejectionCode {
    /// The stable code, as used on the wire.
    pub fn code(self) -> &'static str {
        match self {
            RejectionCode::InvalidArgument => "INVALID_ARGUMENT",
            RejectionCode::InvalidModel => "INVALID_MODEL",
            RejectionCode::LimitExceeded => "LIMIT_EXCEEDED",
            RejectionCode::KeysExhausted => "KEYS_EXHAUSTED",
        }
    }
}

impl fmt::Display for RejectionCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

impl Rejection {
    pub(crate) fn new(code: RejectionCode, message: impl Into<String>) -> Rejection {
        Rejection {
            code,
            message: message.into(),
        }
    }
}

/// Hands out keys from [`Ctx::next_key`] for one command.
pub(crate) struct Keys {
    next: Key,
}

impl Keys {
    pub(crate) fn new(ctx: &Ctx) -> Keys {
        Keys { next: ctx.next_key }
    }

    pub(crate) fn take(&mut self) -> Result<Key, Rejection> {
        let key = self.next;
        self.next = key.next().ok_or_else(|| {
            Rejection::new(
                RejectionCode::KeysExhausted,
                format!("shard {} has handed out every key", key.shard()),
            )
        })?;
        Ok(key)
    }

    pub(crate) fn next(&self) -> Key {
        self.next
    }
}

/// Applies one command to the state. On a rejection the state is unchanged.
pub fn process(state: &mut State, command: Command, ctx: &Ctx) -> Result<Outcome, Rejection> {
    assert_eq!(
        ctx.next_key.shard(),
        state.shard(),
        "a key of another shard in the context"
    );
    assert!(
        ctx.next_key > state.last_key(),
        "keys go backwards: {:?}",
        ctx.next_key
    );
    let outcome = match command {
        Command::Deploy { resources } => crate::deploy::deploy(state, resources, ctx)?,
    };
    if outcome.next_key > ctx.next_key {
        state.set_last_key(Key(outcome.next_key.0 - 1));
    }
    Ok(outcome)
}
