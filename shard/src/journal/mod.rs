//! The journal: every accepted command, framed and checksummed, in preallocated segment
//! files (see `DESIGN.md`, "The shard").
//!
//! **Status:** the record format ([`record`]) exists and is tested; segments, group commit,
//! the storage seam with its fault-injecting simulation, and recovery are being built
//! (issue "The shard").

pub mod record;
pub mod scan;
pub mod storage;
pub mod writer;
