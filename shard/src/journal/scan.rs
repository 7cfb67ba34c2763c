//! Reading a segment back at recovery: which records are there, and what the end looks like.
//!
//! Writes go out in batches that start on a `BLOCK_BYTES` boundary; the space between a
//! batch's last record and the next boundary is zero padding, and a preallocated segment is
//! zeros beyond the last batch. So, reading from the start:
//!
//! | found at the expected position                  | meaning                       | action          |
//! |-------------------------------------------------|-------------------------------|-----------------|
//! | a valid record with the next LSN                | a record                      | take it, go on  |
//! | zeros (no magic)                                | padding, or the end           | next boundary   |
//! | zeros at a boundary, or the end of the bytes    | the end of the log            | stop: clean     |
//! | anything else, and no valid later record        | a write torn by a crash       | stop: torn tail |
//! | anything else, and a valid later record exists  | damage in the middle          | stop: corrupt   |
//!
//! A "later record" is a valid record of this shard with a higher LSN, flagged as the start
//! of a batch, at a later block boundary. Batches are written only after the one before was
//! synced, so only then is the damage provably in data that was durable: a torn last batch
//! can contain valid records after a damaged sector, but never the start of a later batch.

use super::record::{self, RecordError};

/// Writes (and so batches) start on multiples of this many bytes: the O_DIRECT alignment.
pub const BLOCK_BYTES: usize = 4096;

/// One record found by [`scan`].
#[derive(Debug, PartialEq, Eq)]
pub struct Found {
    /// Its LSN.
    pub lsn: u64,
    /// Where it starts in the segment.
    pub offset: usize,
    /// Its payload.
    pub payload: Vec<u8>,
}

/// How a segment ends.
#[derive(Debug, PartialEq, Eq)]
pub enum End {
    /// After the last record there are only zeros (or nothing).
    Clean {
        /// Where the next batch would be written (a block boundary).
        next_write_offset: usize,
    },
    /// The last write was torn; everything from `offset` on is to be discarded.
    TornTail {
        /// Where the torn record starts (the log is cut here).
        offset: usize,
        /// Why the bytes there are not a record.
        error: RecordError,
    },
    /// Damage before records that were written later: never truncated, the shard stops.
    Corrupt {
        /// Where the damaged record starts.
        offset: usize,
        /// The LSN expected there.
        lsn: u64,
        /// Why the bytes there are not that record.
        error: RecordError,
    },
}

/// Everything [`scan`] learned about one segment.
#[derive(Debug, PartialEq, Eq)]
pub struct Scan {
    /// The valid records, in order.
    pub records: Vec<Found>,
    /// How it ends.
    pub end: End,
}

fn next_boundary(offset: usize) -> usize {
    offset.div_ceil(BLOCK_BYTES) * BLOCK_BYTES
}

/// Reads the records of `shard` from `bytes`, the first with LSN `first_lsn`.
pub fn scan(bytes: &[u8], shard: u16, first_lsn: u64) -> Scan {
    let mut records = Vec::new();
    let mut offset = 0;
    let mut lsn = first_lsn;
    loop {
        if offset >= bytes.len() {
            return Scan {
                records,
                end: End::Clean {
                    next_write_offset: next_boundary(offset),
                },
            };
        }
        // A record never starts with a zero byte (the magic is not zero), so zeros up to the
        // next boundary are padding, or the end of what was ever written.
        if zeros_to_boundary(bytes, offset) {
            if offset % BLOCK_BYTES == 0 {
                return Scan {
                    records,
                    end: End::Clean {
                        next_write_offset: offset,
                    },
                };
            }
            offset = next_boundary(offset + 1);
            continue;
        }
        match record::decode(&bytes[offset..], shard, lsn) {
            Ok(record) => {
                records.push(Found {
                    lsn,
                    offset,
                    payload: record.payload.to_vec(),
                });
                offset += record.total_bytes;
                lsn += 1;
            }
            Err(error) => {
                let end = if later_record_exists(bytes, offset, shard, lsn) {
                    End::Corrupt { offset, lsn, error }
                } else {
                    End::TornTail { offset, error }
                };
                return Scan { records, end };
            }
        }
    }
}

/// Whether everything from `offset` to the next block boundary is zero.
fn zeros_to_boundary(bytes: &[u8], offset: usize) -> bool {
    let end = next_boundary(offset + 1).min(bytes.len());
    bytes[offset..end].iter().all(|byte| *byte == 0)
}

/// Whether a valid record of `shard` with an LSN above `lsn` starts at a later boundary.
fn later_record_exists(bytes: &[u8], offset: usize, shard: u16, lsn: u64) -> bool {
    let mut boundary = next_boundary(offset + 1);
    while boundary < bytes.len() {
        // The LSN there is unknown; try the plausible ones by reading the header's LSN
        // through a decode with the right shard and any LSN above the damaged one.
        if let Some(found) = header_lsn(&bytes[boundary..])
            && found > lsn
            && record::decode(&bytes[boundary..], shard, found).is_ok_and(|r| r.batch_start)
        {
            return true;
        }
        boundary += BLOCK_BYTES;
    }
    false
}

/// The LSN field of what may be a record header (bytes 16..24), if there are enough bytes.
fn header_lsn(bytes: &[u8]) -> Option<u64> {
    let field = bytes.get(16..24)?;
    Some(u64::from_le_bytes(field.try_into().expect("eight bytes")))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Writes batches the way the journal does: records, then zero padding to a boundary.
    fn log(batches: &[&[&[u8]]], shard: u16) -> Vec<u8> {
        let mut bytes = Vec::new();
        let mut lsn = 1;
        for batch in batches {
            for (index, payload) in batch.iter().enumerate() {
                record::encode(&mut bytes, shard, lsn, payload, index == 0);
                lsn += 1;
            }
            bytes.resize(next_boundary(bytes.len()), 0);
        }
        bytes
    }

    fn lsns(scan: &Scan) -> Vec<u64> {
        scan.records.iter().map(|record| record.lsn).collect()
    }

    #[test]
    fn a_clean_log_reads_back_whole() {
        let mut bytes = log(&[&[b"a", b"bb"], &[b"ccc"], &[&[7; 5000]]], 1);
        let written = bytes.len();
        bytes.resize(written + 3 * BLOCK_BYTES, 0); // preallocated space
        let scan = scan(&bytes, 1, 1);
        assert_eq!(lsns(&scan), [1, 2, 3, 4]);
        assert_eq!(scan.records[3].payload, vec![7; 5000]);
        assert_eq!(
            scan.end,
            End::Clean {
                next_write_offset: written
            }
        );
        let empty = super::scan(&[0; 8192], 1, 1);
        assert_eq!(
            (empty.records.len(), empty.end),
            (
                0,
                End::Clean {
                    next_write_offset: 0
                }
            )
        );
    }

    #[test]
    fn a_torn_last_write_is_a_torn_tail() {
        let whole = log(&[&[b"a", b"bb"], &[&[9; 3000], b"last"]], 1);
        // Cut in the middle of the second batch, then zeros (the rest was never written).
        let mut torn = whole[..BLOCK_BYTES + 1000].to_vec();
        torn.resize(whole.len() + BLOCK_BYTES, 0);
        let scan = scan(&torn, 1, 1);
        assert_eq!(lsns(&scan), [1, 2]);
        assert!(matches!(scan.end, End::TornTail { offset, .. } if offset == BLOCK_BYTES));
        // Garbage in the last sector is also a torn tail.
        let mut garbage = whole.clone();
        let last = garbage.len() - 100;
        garbage[last..].fill(0x5A);
        assert!(matches!(
            super::scan(&garbage, 1, 1).end,
            End::TornTail { .. }
        ));
    }

    #[test]
    fn damage_before_later_records_is_corruption_not_truncation() {
        let mut bytes = log(&[&[b"a", b"bb"], &[b"ccc"], &[b"dddd"]], 1);
        bytes[BLOCK_BYTES + 33] ^= 0x01; // in the payload of record 3, in the second batch
        let scan = scan(&bytes, 1, 1);
        assert_eq!(lsns(&scan), [1, 2]);
        match scan.end {
            End::Corrupt { offset, lsn, error } => {
                assert_eq!((offset, lsn), (BLOCK_BYTES, 3));
                assert!(matches!(error, RecordError::ChecksumMismatch { .. }));
            }
            other => panic!("expected corruption, got {other:?}"),
        }
    }

    #[test]
    fn records_of_another_shard_are_never_taken() {
        let bytes = log(&[&[b"a"]], 2);
        let scan = scan(&bytes, 1, 1);
        assert!(scan.records.is_empty());
        assert!(matches!(
            scan.end,
            End::TornTail {
                error: RecordError::WrongShard { .. },
                ..
            }
        ));
    }
}
