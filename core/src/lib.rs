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
//! **Status:** the engine is being built (issue "Engine core I"). Implemented: keys
//! ([`key`]); `Deploy` with versions and idempotent redeploys; `CreateInstance`,
//! `CancelInstance`, `ActivateJobs`, `CompleteJob`, `FailJob` (retries, backoff),
//! `JobLeaseExpired`, `JobRetryDue`, `UpdateJobRetries`, `ThrowError`, `ResolveIncident` and
//! `SetVariables`, `PublishMessage` and `ExpireMessage` (messages are buffered, not yet
//! correlated); the token machine for none, terminate and error end events, job-based
//! tasks and events, script tasks, manual and undefined tasks, exclusive gateways,
//! inclusive fork and join, parallel fork and join, embedded subprocesses, error boundary events and
//! error event subprocesses; FEEL conditions and input/output mappings evaluated against
//! JSON variables (one document per scope) with the clock from [`Ctx`]; incidents for what
//! is not executed yet; and the deterministic snapshot of all of it. The README's element
//! table says which elements run.

mod call;
mod cancel;
pub mod codec;
mod create;
mod deploy;
mod engine;
mod errors;
mod failures;
mod feel;
pub mod instance;
mod jobs;
pub mod key;
pub mod limits;
pub mod messages;
mod multi;
mod run;
mod snapshot;
mod state;
mod support;
pub mod timers;
mod variables;
mod waits;

pub use engine::{
    ActivatedJob, Command, Ctx, DeployedProcess, Deployment, Effect, Event, Outcome, ProcessRef,
    Rejection, RejectionCode, Resource, Response, Variables, process,
};
pub use instance::{
    ElementInstance, ElementRole, Incident, IncidentRetry, Job, JobState, MultiBody,
    ProcessInstance, Subscription, Timer,
};
pub use key::Key;
pub use ringflow_bpmn::ProcessDefinition;
pub use snapshot::SnapshotError;
pub use state::{ProcessVersion, State};
