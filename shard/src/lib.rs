//! # ringflow-shard
//!
//! The runtime: one glommio executor per core, the io_uring journal with group commit,
//! recovery, snapshots, timers, job push and the exporter (see `DESIGN.md`). It also holds the
//! `ringflow` binary, whose subcommands live in [`cli`].
//!
//! Modules, from the bottom up: [`storage`] (the seam: glommio `DmaFile`s, blocking std
//! files for tools, and a fault-injecting simulation), [`journal`] (records, batches,
//! segments, recovery), [`snapshot`] (snapshot files), [`shard`] (the engine over the
//! journal: submit, group commit, acknowledgements, timers, snapshots), [`runtime`] (one
//! pinned executor per shard), [`preflight`] (kernel, io_uring and memlock checks) and
//! [`cli`]. The binary offers `ringflow validate` and `ringflow journal inspect`; the server
//! arrives with the wire protocol.

pub mod cli;
pub mod journal;
pub mod preflight;
pub mod runtime;
pub mod server;
pub mod shard;
pub mod snapshot;
pub mod storage;
pub mod wait;
