//! # ringflow-core
//!
//! The deterministic engine (see `DESIGN.md`, "The engine"):
//!
//! ```text
//! process(&mut State, Command, &Ctx) -> Result<Outcome, Rejection>
//! ```
//!
//! No I/O, no clock, no randomness, no threads: the time and the first free key come in
//! through [`Ctx`], so replaying the journal of accepted commands with their contexts rebuilds
//! the [`State`] byte for byte ([`State::encode`]). A [`Rejection`] changes nothing. Maps are
//! `BTreeMap`s, so nothing depends on hash iteration order.
//!
//! **Status:** implemented: keys ([`key`]); `Deploy` with versions and idempotent redeploys;
//! `CreateInstance`, `CancelInstance`, `ActivateJobs`, `CompleteJob`, `FailJob` (retries,
//! backoff), `JobLeaseExpired`, `JobRetryDue`, `UpdateJobRetries`, `ThrowError`,
//! `ResolveIncident`, `SetVariables`, `PublishMessage` (correlation under the Camunda 8
//! rules, buffering, deduplication), `BroadcastSignal` ([`signals`]), `EvaluateConditional`,
//! `ActivateAdHocActivities` and `CompleteAdHocJob` ([`adhoc`]), `CompleteTaskListenerJob`
//! ([`usertasks`]), `ExpireMessage` and
//! `TriggerTimer`; the token machine for every element the README's table
//! marks "yes": events (none, message, timer, signal, conditional, error, escalation,
//! compensation, link, terminate),
//! tasks, gateways (exclusive, parallel, inclusive,
//! event-based), embedded, event and ad-hoc subprocesses, multi-instance activities and call
//! activities; execution listeners ([`listeners`]); user tasks' properties and task
//! listeners ([`usertasks`]); FEEL conditions and mappings against
//! JSON variables with the clock from [`Ctx`]; and the deterministic snapshot of all of it.
//! Module docs: `waits` (what element instances wait for), `conditionals`, [`adhoc`],
//! [`timers`],
//! `messages`,
//! [`signals`], [`compensation`], [`listeners`], `multi`, `call`,
//! `errors`,
//! `support`.

pub mod adhoc;
mod call;
mod cancel;
pub mod codec;
pub mod compensation;
mod conditionals;
mod create;
pub mod decisions;
mod deploy;
mod engine;
mod errors;
mod failures;
mod feel;
pub mod instance;
mod jobs;
pub mod key;
pub mod limits;
pub mod listeners;
pub mod messages;
mod multi;
pub mod remote;
mod run;
pub mod signals;
mod snapshot;
mod state;
mod support;
pub mod timers;
pub mod usertasks;
mod variables;
mod waits;

pub use engine::{
    ActivatedJob, Command, Ctx, DeployedDecision, DeployedProcess, Deployment, Effect, Event,
    Outcome, ProcessRef, Rejection, RejectionCode, Resource, Response, StartedInstance,
    TransitionEnd, UserTaskCreated, Variables, process,
};
pub use instance::{
    Compensation, ConditionalSubscription, ElementInstance, ElementRole, Incident, IncidentRetry,
    Job, JobState, Listener, ListenerEvent, MultiBody, ProcessInstance, SignalSubscription,
    Subscription, Timer, UserTaskHold, UserTaskProperties,
};
pub use jobs::check_fetch_variables;
pub use key::Key;
pub use remote::{Mail, RemoteSubscription};
pub use ringflow_bpmn::ProcessDefinition;
pub use snapshot::SnapshotError;
pub use state::{ProcessVersion, State};
pub use support::{Refusal, refusals};
pub use variables::{json_len, to_json_string, write_json, write_json_value};
