//! # ringflow-shard
//!
//! The runtime: one glommio executor per core, the io_uring journal with group commit,
//! recovery, snapshots, timers, job push and the exporter (see `DESIGN.md`). It also holds the
//! `ringflow` binary, whose subcommands live in [`cli`].
//!
//! **Status:** the runtime arrives with the shard issue. Today the binary offers
//! `ringflow validate`.

pub mod cli;
pub mod journal;
pub mod preflight;
pub mod runtime;
pub mod shard;
pub mod snapshot;
pub mod storage;
pub mod wait;
