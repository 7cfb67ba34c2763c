//! Reading a segment back at recovery: which records are there, and what the end looks like.
//!
//! Writes go out in batches that start on a `BLOCK_BYTES` boundary; the space between a
//! batch's last record and the next boundary is zero padding, and a preallocated segment is
//! zeros beyond the last batch. So, reading from the start:
//!
//! | found at the expected position                  | meaning                       | action          |
//! |-------------------------------------------------|-------------------------------|-----------------|
//! | a valid record with the next LSN                | a record                      | take it, go on  |
//! | zeros (no magic) within a block                 | padding                       | next boundary   |
//! | zeros at a boundary, only zeros after           | the end of the log            | stop: clean     |
//! | zeros at a boundary, later a record of this shard with this LSN or higher | a misdirected or lost write | stop: corrupt |
//! | zeros at a boundary, other bytes after          | a write torn by a crash       | stop: torn tail |
//! | anything else, and no valid later record        | a write torn by a crash       | stop: torn tail |
//! | anything else, and a valid later record exists  | damage in the middle          | stop: corrupt   |
//!
//! A "later record" after damage is a valid record of this shard with a higher LSN, flagged
//! as the start of a batch, at a later block boundary. Batches are written only after the one
//! before was synced, so only then is the damage provably in data that was durable: a torn
//! last batch can contain valid records after a damaged sector, but never the start of a
//! later batch. Past the end of the log there must be nothing but zeros (recovery zeroes a
//! torn tail): a record there was written somewhere it did not belong, and the records that
//! belong at the end may have been acknowledged, so that is corruption, not a tail to cut.

use super::record::{self, RecordError};
pub use crate::storage::BLOCK_BYTES;

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
        /// Where the torn record starts (the log is cut here, at a block boundary or inside
        /// the last batch).
        offset: usize,
        /// Why the bytes there are not a record.
        error: RecordError,
    },
    /// Damage before records that were written later, or a record past the end: never
    /// truncated, the shard stops.
    Corrupt {
        /// Where the damaged (or missing) record starts.
        offset: usize,
        /// The LSN expected there.
        lsn: u64,
        /// What is wrong, for a person.
        reason: String,
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
                let end = end_at(bytes, offset, shard, lsn);
                return Scan { records, end };
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
            Err(error @ (RecordError::WrongLsn { .. } | RecordError::WrongShard { .. })) => {
                // A whole, valid record that does not belong here: no torn write makes one,
                // so it was written to the wrong place (or the file to the wrong shard).
                let reason = format!("{error}: a whole record that does not belong here");
                let end = End::Corrupt {
                    offset,
                    lsn,
                    reason,
                };
                return Scan { records, end };
            }
            Err(error) => {
                let end = match later_batch(bytes, offset, shard, lsn + 1) {
                    Some((later_offset, later_lsn)) => End::Corrupt {
                        offset,
                        lsn,
                        reason: format!(
                            "{error}; a later batch (LSN {later_lsn} at offset {later_offset}) \
                             was written after it, so this is damage, not a torn write"
                        ),
                    },
                    None => End::TornTail { offset, error },
                };
                return Scan { records, end };
            }
        }
    }
}

/// Whether everything from `offset` to the next block boundary is zero.
fn zeros_to_boundary(bytes: &[u8], offset: usize) -> bool {
    let end = next_boundary(offset + 1).min(bytes.len());
    all_zero(&bytes[offset..end])
}

/// How the log ends at `offset`, a block boundary with zeros where LSN `lsn` would be.
fn end_at(bytes: &[u8], offset: usize, shard: u16, lsn: u64) -> End {
    if let Some((later_offset, later_lsn)) = later_batch(bytes, offset, shard, lsn) {
        return End::Corrupt {
            offset,
            lsn,
            reason: format!(
                "the log ends here, but a batch with LSN {later_lsn} is at offset \
                 {later_offset}: a write went to the wrong place or was lost"
            ),
        };
    }
    if all_zero(&bytes[offset..]) {
        End::Clean {
            next_write_offset: offset,
        }
    } else {
        End::TornTail {
            offset,
            error: RecordError::BadMagic { found: 0 },
        }
    }
}

/// The first valid batch start of `shard` with an LSN of at least `lsn_min` at a block
/// boundary after `offset`: its offset and LSN.
fn later_batch(bytes: &[u8], offset: usize, shard: u16, lsn_min: u64) -> Option<(usize, u64)> {
    let mut boundary = next_boundary(offset + 1);
    while boundary < bytes.len() {
        // The LSN there is unknown: take the header's word for it, then check the record.
        if let Some(found) = header_lsn(&bytes[boundary..])
            && found >= lsn_min
            && record::decode(&bytes[boundary..], shard, found).is_ok_and(|r| r.batch_start)
        {
            return Some((boundary, found));
        }
        boundary += BLOCK_BYTES;
    }
    None
}

/// Whether every byte is zero, sixteen at a time (recovery checks whole segments).
pub fn all_zero(bytes: &[u8]) -> bool {
    let mut chunks = bytes.chunks_exact(16);
    let words_zero = chunks
        .by_ref()
        .all(|chunk| u128::from_ne_bytes(chunk.try_into().expect("16 bytes")) == 0);
    words_zero && chunks.remainder().iter().all(|byte| *byte == 0)
}

/// The end of the last non-zero byte, rounded up to `BLOCK_BYTES` (0 for all zeros).
pub fn dirty_end(bytes: &[u8]) -> usize {
    let mut end = bytes.len().div_ceil(BLOCK_BYTES) * BLOCK_BYTES;
    while end > 0 {
        let start = end - BLOCK_BYTES;
        if !all_zero(&bytes[start..end.min(bytes.len())]) {
            return end;
        }
        end = start;
    }
    0
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
            End::Corrupt {
                offset,
                lsn,
                reason,
            } => {
                assert_eq!((offset, lsn), (BLOCK_BYTES, 3));
                assert!(reason.contains("checksum mismatch"), "{reason}");
            }
            other => panic!("expected corruption, got {other:?}"),
        }
    }

    #[test]
    fn records_of_another_shard_or_lsn_are_never_taken() {
        let bytes = log(&[&[b"a"]], 2);
        let scan = scan(&bytes, 1, 1);
        assert!(scan.records.is_empty());
        assert!(matches!(scan.end, End::Corrupt { ref reason, .. } if reason.contains("shard 2")));
        // A later batch written over the last one (a misdirected write) is not a torn tail.
        let two = log(&[&[b"a"], &[b"b"]], 1);
        let mut over = two[..BLOCK_BYTES].to_vec();
        let mut later = Vec::new();
        record::encode(&mut later, 1, 7, b"g", true);
        over.extend_from_slice(&later);
        over.resize(3 * BLOCK_BYTES, 0);
        assert!(matches!(scan_fn(&over).end, End::Corrupt { lsn: 2, .. }));
    }

    fn scan_fn(bytes: &[u8]) -> Scan {
        scan(bytes, 1, 1)
    }

    #[test]
    fn a_record_past_the_end_is_corruption_and_garbage_past_it_a_torn_tail() {
        let one = log(&[&[b"a"]], 1);
        let two = log(&[&[b"a"], &[b"b"]], 1);
        // Batch 2 landed two blocks too far: where it belongs there are zeros.
        let mut misdirected = one.clone();
        misdirected.resize(3 * BLOCK_BYTES, 0);
        misdirected.extend_from_slice(&two[BLOCK_BYTES..]);
        misdirected.resize(6 * BLOCK_BYTES, 0);
        match scan(&misdirected, 1, 1).end {
            End::Corrupt {
                offset,
                lsn,
                reason,
            } => {
                assert_eq!((offset, lsn), (BLOCK_BYTES, 2));
                assert!(reason.contains("wrong place"), "{reason}");
            }
            other => panic!("expected corruption, got {other:?}"),
        }
        let mut garbage = one;
        garbage.resize(2 * BLOCK_BYTES, 0);
        garbage.extend_from_slice(&[0x77; 512]);
        assert!(matches!(
            scan(&garbage, 1, 1).end,
            End::TornTail { offset, .. } if offset == BLOCK_BYTES
        ));
    }
}
