//! The journal: every accepted command, framed and checksummed, in preallocated segment
//! files (see `DESIGN.md`, "The shard").
//!
//! - [`record`]: the 32-byte header (magic, version, length, shard, LSN, CRC32) of a record;
//! - [`batch`]: the open batch, filled in memory while the previous one is written;
//! - [`scan`]: reading a segment back: records, and how it ends (clean, torn, corrupt);
//! - [`writer`]: segments, group commit, recovery, and removal of covered segments.

pub mod batch;
pub mod record;
pub mod scan;
pub mod writer;

pub use batch::{Batch, BatchFull, BatchLimits, Room};
pub use writer::{Journal, JournalConfig, JournalError, Recovered, Written};
