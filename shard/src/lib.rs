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
//! pinned executor per shard), [`preflight`] (kernel, io_uring and memlock checks),
//! [`mail`] (mail between shards: couriers and desks), [`server`] (the wire protocol's
//! server), [`cold`] (the cold store and its exporter),
//! [`metrics`] (counters and the Prometheus endpoint) and [`cli`].

#![deny(clippy::print_stdout, clippy::print_stderr)]

#[macro_use]
pub mod say;

pub mod cli;
pub mod cold;
pub mod config;
pub mod journal;
pub mod load;
pub mod mail;
pub mod metrics;
pub mod preflight;
pub mod runtime;
pub mod sched;
pub mod server;
pub mod shard;
pub mod snapshot;
pub mod storage;
pub mod wait;
