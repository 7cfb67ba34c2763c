//! Appending to a journal segment with group commit, and opening one again after a crash.
//!
//! Records are appended to the open batch in memory; [`Journal::commit`] writes the batch,
//! padded with zeros to a block boundary, at the end of the log with one write and one sync.
//! Only when the sync returns are the batch's LSNs acknowledged, in order. A failed write or
//! sync is never retried: the journal refuses all further work, and the shard recovers from
//! disk ([`Journal::open`]).

use super::record;
use super::scan::{self, BLOCK_BYTES, End, Found};
use super::storage::{Storage, StorageError};

/// Most records in one batch.
pub const BATCH_RECORDS_MAX: usize = 4096;
/// Most bytes in one batch (records plus padding).
pub const BATCH_BYTES_MAX: usize = 4 * 1024 * 1024;

/// Why the journal cannot go on.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum JournalError {
    /// A write or sync failed; the journal refuses further work until it is opened again.
    #[error("journal stopped: {0}; restart the shard to recover from disk")]
    Storage(#[from] StorageError),
    /// An earlier failure stopped the journal.
    #[error("journal stopped by an earlier failure; restart the shard to recover from disk")]
    Stopped,
    /// The batch is full: commit first.
    #[error("the batch is full (BATCH_RECORDS_MAX or BATCH_BYTES_MAX); commit it first")]
    BatchFull,
    /// Damage in the middle of the log: recovery stops here rather than lose later records.
    #[error(
        "journal corrupt at offset {offset}, LSN {lsn}: {reason}; inspect it with `ringflow \
         journal inspect`"
    )]
    Corrupt {
        /// Where the damaged record starts.
        offset: usize,
        /// The LSN expected there.
        lsn: u64,
        /// What is wrong with it.
        reason: String,
    },
}

/// One shard's journal over one storage file.
pub struct Journal<S: Storage> {
    storage: S,
    shard: u16,
    next_lsn: u64,
    write_offset: u64,
    batch: Vec<u8>,
    batch_records: usize,
    durable_lsn: u64,
    stopped: bool,
}

impl<S: Storage> Journal<S> {
    /// Opens the journal in `storage` (empty or written before), recovering what is there:
    /// returns the journal ready to append and every record found, in order. A torn tail is
    /// cut off (and zeroed, so later batches do not sit behind garbage); damage in the middle
    /// is an error. On an error the storage comes back with it, to be opened again later.
    #[allow(clippy::type_complexity)]
    pub fn open(mut storage: S, shard: u16) -> Result<(Journal<S>, Vec<Found>), (JournalError, S)> {
        let bytes = match storage.read_all() {
            Ok(bytes) => bytes,
            Err(error) => return Err((error.into(), storage)),
        };
        let scan = scan::scan(&bytes, shard, 1);
        let next_write_offset = match scan.end {
            End::Clean { next_write_offset } => next_write_offset,
            End::TornTail { offset, .. } => {
                let end = bytes.len().max(offset);
                let zeros = vec![0; end - offset];
                let cut = storage
                    .write(offset as u64, &zeros)
                    .and_then(|()| storage.sync());
                if let Err(error) = cut {
                    return Err((error.into(), storage));
                }
                offset.div_ceil(BLOCK_BYTES) * BLOCK_BYTES
            }
            End::Corrupt { offset, lsn, error } => {
                let error = JournalError::Corrupt {
                    offset,
                    lsn,
                    reason: error.to_string(),
                };
                return Err((error, storage));
            }
        };
        let next_lsn = scan.records.last().map_or(1, |record| record.lsn + 1);
        let journal = Journal {
            storage,
            shard,
            next_lsn,
            write_offset: next_write_offset as u64,
            batch: Vec::new(),
            batch_records: 0,
            durable_lsn: next_lsn - 1,
            stopped: false,
        };
        Ok((journal, scan.records))
    }

    /// Adds a record to the open batch; returns its LSN (not durable until committed).
    pub fn append(&mut self, payload: &[u8]) -> Result<u64, JournalError> {
        if self.stopped {
            return Err(JournalError::Stopped);
        }
        let size = record::RECORD_HEADER_BYTES + payload.len();
        if self.batch_records >= BATCH_RECORDS_MAX || self.batch.len() + size > BATCH_BYTES_MAX {
            return Err(JournalError::BatchFull);
        }
        let lsn = self.next_lsn;
        record::encode(
            &mut self.batch,
            self.shard,
            lsn,
            payload,
            self.batch_records == 0,
        );
        self.next_lsn += 1;
        self.batch_records += 1;
        Ok(lsn)
    }

    /// Writes and syncs the open batch. Returns the highest durable LSN: every record up to
    /// it may be acknowledged now, in LSN order.
    pub fn commit(&mut self) -> Result<u64, JournalError> {
        if self.stopped {
            return Err(JournalError::Stopped);
        }
        if self.batch_records == 0 {
            return Ok(self.durable_lsn);
        }
        let mut batch = std::mem::take(&mut self.batch);
        batch.resize(batch.len().div_ceil(BLOCK_BYTES) * BLOCK_BYTES, 0);
        let result = self
            .storage
            .write(self.write_offset, &batch)
            .and_then(|()| self.storage.sync());
        if let Err(error) = result {
            self.stopped = true;
            return Err(error.into());
        }
        self.write_offset += batch.len() as u64;
        self.durable_lsn = self.next_lsn - 1;
        self.batch_records = 0;
        Ok(self.durable_lsn)
    }

    /// The highest LSN made durable.
    pub fn durable_lsn(&self) -> u64 {
        self.durable_lsn
    }

    /// Gives the storage back (to crash it, in tests).
    pub fn into_storage(self) -> S {
        self.storage
    }
}
