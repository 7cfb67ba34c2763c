//! # ringflow-core
//!
//! The deterministic engine: `process(&mut State, Command, &Ctx) -> Result<Outcome, Rejection>`
//! over the instance table, with no I/O, clock, randomness or threads (see `DESIGN.md`).
//!
//! **Status:** not built yet. This crate holds its place in the workspace; the engine arrives
//! with the "Engine core I" issue. It depends only on `ringflow-bpmn`, whose compiled
//! [`ProcessDefinition`](ringflow_bpmn::ProcessDefinition) it will execute.

pub use ringflow_bpmn::ProcessDefinition;
