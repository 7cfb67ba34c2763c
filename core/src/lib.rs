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
//! **Status:** the engine is being built (issue "Engine core I"). Implemented so far: keys
//! ([`key`]), the command/outcome/rejection shape, the `Deploy` command with versioning per
//! BPMN process id and idempotent redeploys, and the deterministic snapshot of that state.
//! Process instances, jobs, variables and incidents come next.

mod cancel;
mod create;
mod deploy;
mod engine;
pub mod instance;
mod jobs;
pub mod key;
pub mod limits;
mod run;
mod snapshot;
mod state;
mod variables;

pub use engine::{
    ActivatedJob, Command, Ctx, DeployedProcess, Deployment, Effect, Event, Outcome, ProcessRef,
    Rejection, RejectionCode, Resource, Response, Variables, process,
};
pub use key::Key;
pub use ringflow_bpmn::ProcessDefinition;
pub use snapshot::SnapshotError;
pub use state::{ProcessVersion, State};
