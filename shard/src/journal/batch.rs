//! The open batch: records appended in memory while the previous batch is being written.

use super::record;
use super::scan::BLOCK_BYTES;

/// The batch is full; commit it and append to the next one.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("the batch is full ({records} records, {bytes} bytes); commit it first")]
pub struct BatchFull {
    /// Records in the batch.
    pub records: usize,
    /// Bytes in the batch.
    pub bytes: usize,
}

/// The caps of one batch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BatchLimits {
    /// Most records in one batch.
    pub records_max: usize,
    /// Most bytes in one batch, headers included, before padding to a block. A single
    /// record larger than this goes alone in its batch.
    pub bytes_max: usize,
    /// Most bytes of one record, header included.
    pub record_bytes_max: usize,
}

/// Whether a record can join the open batch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Room {
    /// It fits now.
    Now,
    /// It fits in a later batch: commit this one first.
    AfterCommit,
    /// It is over `record_bytes_max` and never fits.
    Never,
}

/// Records with consecutive LSNs, framed, to be written with one write and one fdatasync.
#[derive(Debug)]
pub struct Batch {
    shard: u16,
    limits: BatchLimits,
    first_lsn: u64,
    next_lsn: u64,
    bytes: Vec<u8>,
}

impl Batch {
    /// An empty batch whose first record will get `first_lsn`.
    pub fn new(shard: u16, limits: BatchLimits, first_lsn: u64) -> Batch {
        Batch {
            shard,
            limits,
            first_lsn,
            next_lsn: first_lsn,
            bytes: Vec::new(),
        }
    }

    /// Whether a record with a payload of `payload_bytes` can be appended.
    pub fn room_for(&self, payload_bytes: usize) -> Room {
        let size = record::RECORD_HEADER_BYTES.saturating_add(payload_bytes);
        if size > self.limits.record_bytes_max {
            Room::Never
        } else if self.is_empty() {
            Room::Now
        } else if self.records() >= self.limits.records_max
            || self.bytes.len() + size > self.limits.bytes_max
        {
            Room::AfterCommit
        } else {
            Room::Now
        }
    }

    /// Appends a record; returns its LSN (durable only once the batch is committed).
    pub fn append(&mut self, payload: &[u8]) -> Result<u64, BatchFull> {
        let records = self.records();
        if self.room_for(payload.len()) != Room::Now {
            return Err(BatchFull {
                records,
                bytes: self.bytes.len(),
            });
        }
        let lsn = self.next_lsn;
        record::encode(&mut self.bytes, self.shard, lsn, payload, records == 0);
        self.next_lsn += 1;
        Ok(lsn)
    }

    /// Bytes of the framed records so far.
    pub fn bytes(&self) -> usize {
        self.bytes.len()
    }

    /// The empty batch that follows this one.
    pub fn successor(&self) -> Batch {
        Batch::new(self.shard, self.limits, self.next_lsn)
    }

    /// Records in the batch.
    pub fn records(&self) -> usize {
        (self.next_lsn - self.first_lsn) as usize
    }

    /// Whether it holds no record.
    pub fn is_empty(&self) -> bool {
        self.next_lsn == self.first_lsn
    }

    /// The LSN of its first record.
    pub fn first_lsn(&self) -> u64 {
        self.first_lsn
    }

    /// The LSN the next record will get.
    pub fn next_lsn(&self) -> u64 {
        self.next_lsn
    }

    /// Bytes it takes on disk, padded to a block boundary.
    pub fn padded_bytes(&self) -> usize {
        self.bytes.len().div_ceil(BLOCK_BYTES) * BLOCK_BYTES
    }

    /// The framed records, padded with zeros to a block boundary.
    pub fn into_padded_bytes(self) -> Vec<u8> {
        let padded = self.padded_bytes();
        let mut bytes = self.bytes;
        bytes.resize(padded, 0);
        bytes
    }
}
