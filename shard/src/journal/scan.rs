//! Reading a segment back at recovery: which records are there, and what the end looks like.
//!
//! Writes go out in batches that start on a `BLOCK_BYTES` boundary; the space between a
//! batch's last record and the next boundary is zero padding. Beyond the last batch a fresh
//! segment holds zeros, and a recycled one (a segment a snapshot covered, renamed to carry
//! later records; see the writer) holds what it held in its earlier life: records whose LSNs
//! are all below the segment's first LSN, and pieces of them. So, reading from the start:
//!
//! | found at the expected position                  | meaning                       | action          |
//! |-------------------------------------------------|-------------------------------|-----------------|
//! | a valid record with the next LSN                | a record                      | take it, go on  |
//! | zeros (no magic) within a block                 | padding                       | next boundary   |
//! | zeros at a boundary                             | the end of the log            | stop: clean     |
//! | at a block boundary, a valid record of this shard with an LSN below the segment's first | left from the segment's earlier life | stop: clean |
//! | inside a block, such a record | a torn write of the last batch, cut inside a header whose first bytes (the magic) are the old record's too | stop: torn tail |
//! | one of the two ends above, and later a batch of this shard with this LSN or higher (not the one exception below) | a misdirected or lost write | stop: corrupt |
//! | at a block boundary, the start of the last batch, flagged `FLAG_AFTER_UNSYNCED`, with a higher LSN | the rest of the batch before it was lost (the exception below) | stop: torn tail |
//! | a valid record with another shard, or another LSN not below the segment's first | written to the wrong place | stop: corrupt |
//! | anything else, and no valid later batch         | a write torn by a crash (or old bytes) | stop: torn tail |
//! | anything else, and a valid later batch exists (not the one exception below) | damage in the middle | stop: corrupt |
//!
//! A "later batch" after damage is a valid record of this shard with a higher LSN, flagged
//! as the start of a batch, at a later block boundary. The journal writes a batch only once
//! the one before it is durable, or while that one's fdatasync (or, with
//! `writer::JournalSync::Dsync`, its own durable write) is in flight (the pipeline of
//! `writer::UNSYNCED_BATCHES_MAX`, two batches); a batch written that way carries
//! `FLAG_AFTER_UNSYNCED`. So at a crash only the last two batches can be unsynced, and:
//!
//! - **the exception**: if the only later batch has a higher LSN than the one expected and
//!   carries `FLAG_AFTER_UNSYNCED`, the damaged (or missing) batch is the one whose
//!   fdatasync was in flight: a torn (or lost) write, and the later batch was never
//!   acknowledged either (it is acknowledged only when its own fdatasync returns, which makes
//!   the batch before durable too). The end is a torn tail (or clean), and recovery zeroes
//!   the later batch's blocks as leftovers (below);
//! - otherwise the damage is provably in data that was durable: a second later batch was
//!   written only after the damaged one was synced, and a batch without the flag only after
//!   the one before was synced. A torn last batch can contain valid records after a damaged
//!   sector, but never the start of a later batch.
//!
//! The price of the pipeline: damage to a durable batch that is followed by exactly one
//! flagged batch (the last) reads as a torn write, and both are cut off. Without the flag
//! (a batch written when nothing was in flight, as at low load) the rule is as strict as
//! before. Records left from a recycled segment's earlier life never count: their LSNs are
//! below the segment's first.
//!
//! Past the end, a torn write can also leave whole records whose LSNs will be written again
//! (with other commands). A later scan must never take one for the record expected there, so
//! recovery zeroes every block past the end that holds a record header of this shard with
//! the next LSN or higher ([`leftovers`] finds them). Records of the earlier life stay: their
//! LSNs never come round again.

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
    /// Whether it is the first record of its batch (of its write).
    pub batch_start: bool,
    /// Whether its batch was written while the one before was not yet synced (set on a
    /// batch's first record only; see `record::FLAG_AFTER_UNSYNCED`).
    pub after_unsynced: bool,
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
                    batch_start: record.batch_start,
                    after_unsynced: record.after_unsynced,
                });
                offset += record.total_bytes;
                lsn += 1;
            }
            Err(RecordError::WrongLsn { found, .. })
                if found < first_lsn && offset.is_multiple_of(BLOCK_BYTES) =>
            {
                // A whole record from the segment's earlier life (it was recycled): the end.
                let end = end_at(bytes, offset, shard, lsn);
                return Scan { records, end };
            }
            Err(error @ RecordError::WrongLsn { .. })
                if offset.is_multiple_of(BLOCK_BYTES)
                    && pipelined_last_batch(bytes, offset, shard, lsn) =>
            {
                // The batch written after an unsynced one, right where the torn (or lost)
                // rest of that one ended: a torn tail, not a misplaced record (module docs).
                return Scan {
                    records,
                    end: End::TornTail { offset, error },
                };
            }
            Err(error @ RecordError::WrongShard { .. })
            | Err(error @ RecordError::WrongLsn { .. })
                if !matches!(error, RecordError::WrongLsn { found, .. } if found < first_lsn) =>
            {
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
            // Anything else is a torn write (or damage). That includes a whole record of the
            // earlier life inside a block: a batch is written with zeros to its block's end,
            // so one can follow a record of this life mid-block only where a torn write of
            // the last batch stopped inside a record header that began with the magic, as
            // every header does, the old record's at the same offset included.
            Err(error) => {
                let end = match proof_of_damage(bytes, offset, shard, lsn, lsn + 1) {
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

/// How the log ends at `offset`, a block boundary where LSN `lsn` would be and is not (zeros,
/// or a record of the segment's earlier life). What follows is not read, except to look for
/// a later batch: one there means a write went astray.
fn end_at(bytes: &[u8], offset: usize, shard: u16, lsn: u64) -> End {
    if let Some((later_offset, later_lsn)) = proof_of_damage(bytes, offset, shard, lsn, lsn) {
        return End::Corrupt {
            offset,
            lsn,
            reason: format!(
                "the log ends here, but a batch with LSN {later_lsn} is at offset \
                 {later_offset}: a write went to the wrong place or was lost"
            ),
        };
    }
    End::Clean {
        next_write_offset: offset,
    }
}

/// The blocks from `from` (a block boundary) on that hold the header of a record of `shard`
/// with LSN `lsn_min` or higher: pieces of a torn write past the end of the log, which
/// recovery zeroes before it appends records with those LSNs again. Returns (offset, bytes)
/// ranges of whole blocks, in order, adjacent blocks merged. Records of a recycled segment's
/// earlier life have lower LSNs and are left alone.
pub fn leftovers(bytes: &[u8], from: usize, shard: u16, lsn_min: u64) -> Vec<(usize, usize)> {
    let magic = record::RECORD_MAGIC.to_le_bytes();
    let mut ranges: Vec<(usize, usize)> = Vec::new();
    let Some(tail) = bytes.get(from..) else {
        return ranges;
    };
    for at in memchr::memmem::find_iter(tail, &magic) {
        let start = from + at;
        let Some(header) = bytes.get(start..start + record::RECORD_HEADER_BYTES) else {
            // A header cut off by the end of the file can never be read as a record.
            continue;
        };
        let shard_found = u16::from_le_bytes([header[12], header[13]]);
        let lsn_found = header_lsn(header).expect("a whole header");
        if shard_found != shard || lsn_found < lsn_min {
            continue;
        }
        let first = start / BLOCK_BYTES * BLOCK_BYTES;
        // Whole blocks, even past the end of a file whose last write was torn short of one.
        let end = next_boundary(start + record::RECORD_HEADER_BYTES);
        match ranges.last_mut() {
            Some((offset, len)) if *offset + *len >= first => *len = end - *offset,
            _ => ranges.push((first, end - first)),
        }
    }
    ranges
}

/// The later batch that proves the end at `offset` (where LSN `expected` was due, and
/// damage or an early end was found) is not a torn or lost write: the first valid batch start
/// with an LSN of at least `lsn_min` after `offset`, unless it is the exception in the module
/// docs (the only later batch, with an LSN above `expected`, written after an unsynced one).
/// Returns its offset and LSN.
fn proof_of_damage(
    bytes: &[u8],
    offset: usize,
    shard: u16,
    expected: u64,
    lsn_min: u64,
) -> Option<(usize, u64)> {
    let (later_offset, later_lsn, _) = later_batch(bytes, offset, shard, lsn_min)?;
    (!pipelined_last_batch(bytes, later_offset, shard, expected))
        .then_some((later_offset, later_lsn))
}

/// Whether the record at `at` (a block boundary) starts the last batch of the log, written
/// while the batch before it was unsynced, with an LSN above `expected` (the LSN due where
/// the log broke off): the exception in the module docs.
fn pipelined_last_batch(bytes: &[u8], at: usize, shard: u16, expected: u64) -> bool {
    let Some(lsn) = header_lsn(&bytes[at..]) else {
        return false;
    };
    lsn > expected
        && record::decode(&bytes[at..], shard, lsn)
            .is_ok_and(|record| record.batch_start && record.after_unsynced)
        && later_batch(bytes, at, shard, lsn + 1).is_none()
}

/// The first valid batch start of `shard` with an LSN of at least `lsn_min` at a block
/// boundary after `offset`: its offset, LSN, and whether it was written after an unsynced
/// batch.
fn later_batch(
    bytes: &[u8],
    offset: usize,
    shard: u16,
    lsn_min: u64,
) -> Option<(usize, u64, bool)> {
    let mut boundary = next_boundary(offset + 1);
    while boundary < bytes.len() {
        // The LSN there is unknown: take the header's word for it, then check the record.
        if let Some(found) = header_lsn(&bytes[boundary..])
            && found >= lsn_min
            && let Ok(record) = record::decode(&bytes[boundary..], shard, found)
            && record.batch_start
        {
            return Some((boundary, found, record.after_unsynced));
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

    /// Four one-block batches of LSNs 1-2, 3, 4, 5; `marked` batches (by index) carry
    /// FLAG_AFTER_UNSYNCED, as the journal's pipeline writes them.
    fn pipelined(marked: &[usize]) -> Vec<u8> {
        let mut bytes = log(&[&[b"a", b"bb"], &[b"ccc"], &[b"dddd"], &[b"eeeee"]], 1);
        for index in marked {
            record::mark_after_unsynced(&mut bytes[index * BLOCK_BYTES..]);
        }
        bytes.resize(bytes.len() + 2 * BLOCK_BYTES, 0);
        bytes
    }

    #[test]
    fn each_record_found_says_whether_it_starts_a_batch_and_whether_that_was_marked() {
        let scan = scan(&pipelined(&[2, 3]), 1, 1);
        let flags: Vec<(u64, bool, bool)> = scan
            .records
            .iter()
            .map(|record| (record.lsn, record.batch_start, record.after_unsynced))
            .collect();
        assert_eq!(
            flags,
            [
                (1, true, false),
                (2, false, false),
                (3, true, false),
                (4, true, true),
                (5, true, true)
            ]
        );
    }

    #[test]
    fn the_last_two_batches_of_the_pipeline_may_be_torn_or_lost_but_no_earlier() {
        // The third batch torn while its fdatasync was in flight; the fourth, written then
        // (marked), landed whole: a torn tail at the third, never corruption.
        let mut torn = pipelined(&[3]);
        torn[2 * BLOCK_BYTES + 33] ^= 0x01;
        let scan = scan(&torn, 1, 1);
        assert_eq!(lsns(&scan), [1, 2, 3]);
        assert!(matches!(scan.end, End::TornTail { offset, .. } if offset == 2 * BLOCK_BYTES));
        // The third batch's write lost entirely: a clean end there.
        let mut lost = pipelined(&[3]);
        lost[2 * BLOCK_BYTES..3 * BLOCK_BYTES].fill(0);
        let scan = super::scan(&lost, 1, 1);
        assert_eq!(lsns(&scan), [1, 2, 3]);
        assert_eq!(
            scan.end,
            End::Clean {
                next_write_offset: 2 * BLOCK_BYTES
            }
        );
        // The same damage with an unmarked fourth batch: it was written after the third was
        // durable, so the third's damage is corruption.
        for unmarked in [pipelined(&[]), pipelined(&[2])] {
            let mut damaged = unmarked.clone();
            damaged[2 * BLOCK_BYTES + 33] ^= 0x01;
            assert!(matches!(
                super::scan(&damaged, 1, 1).end,
                End::Corrupt { lsn: 4, .. }
            ));
            damaged[2 * BLOCK_BYTES..3 * BLOCK_BYTES].fill(0);
            assert!(matches!(
                super::scan(&damaged, 1, 1).end,
                End::Corrupt { lsn: 4, .. }
            ));
        }
        // Damage in the second batch with two batches after it, even both marked: the third
        // was written only after the second was synced.
        let mut early = pipelined(&[2, 3]);
        early[BLOCK_BYTES + 33] ^= 0x01;
        assert!(matches!(
            super::scan(&early, 1, 1).end,
            End::Corrupt { lsn: 3, .. }
        ));
        // The third batch's last record lost, so that its block reads as padding after the
        // first: the scan reaches the fourth batch where LSN 4 was due. A torn tail there.
        let mut bytes = log(&[&[b"a", b"bb"], &[b"ccc", b"cc"], &[b"dddd"]], 1);
        record::mark_after_unsynced(&mut bytes[2 * BLOCK_BYTES..]);
        bytes.resize(bytes.len() + BLOCK_BYTES, 0);
        let second_record = BLOCK_BYTES + record::RECORD_HEADER_BYTES + 3;
        bytes[second_record..2 * BLOCK_BYTES].fill(0);
        let scan = super::scan(&bytes, 1, 1);
        assert_eq!(lsns(&scan), [1, 2, 3]);
        assert!(
            matches!(scan.end, End::TornTail { offset, .. } if offset == 2 * BLOCK_BYTES),
            "{:?}",
            scan.end
        );
        // Unmarked, the same is a record where it does not belong.
        let mut unmarked = log(&[&[b"a", b"bb"], &[b"ccc", b"cc"], &[b"dddd"]], 1);
        unmarked.resize(unmarked.len() + BLOCK_BYTES, 0);
        unmarked[second_record..2 * BLOCK_BYTES].fill(0);
        assert!(matches!(
            super::scan(&unmarked, 1, 1).end,
            End::Corrupt { lsn: 4, .. }
        ));
        // The expected batch itself found further on (a misdirected write), even marked, is
        // corruption: the exception is only for a batch with a higher LSN.
        let mut moved = pipelined(&[3]);
        let fourth = moved[3 * BLOCK_BYTES..4 * BLOCK_BYTES].to_vec();
        moved[3 * BLOCK_BYTES..4 * BLOCK_BYTES].fill(0);
        moved[5 * BLOCK_BYTES..6 * BLOCK_BYTES].copy_from_slice(&fourth);
        let scan = super::scan(&moved, 1, 1);
        assert_eq!(lsns(&scan), [1, 2, 3, 4]);
        assert!(
            matches!(scan.end, End::Corrupt { lsn: 5, .. }),
            "{:?}",
            scan.end
        );
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
    fn a_record_past_the_end_is_corruption_and_garbage_past_it_is_not_read() {
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
        // Garbage past a zero block is never read: old bytes of a recycled segment, or
        // pieces of a torn write (recovery zeroes those that could pass for records).
        let mut garbage = one.clone();
        garbage.resize(2 * BLOCK_BYTES, 0);
        garbage.extend_from_slice(&[0x77; 512]);
        assert_eq!(
            scan(&garbage, 1, 1).end,
            End::Clean {
                next_write_offset: BLOCK_BYTES
            }
        );
        // Garbage at the end itself is a torn tail.
        let mut torn = one;
        torn.extend_from_slice(&[0x77; 512]);
        torn.resize(3 * BLOCK_BYTES, 0);
        assert!(matches!(
            scan(&torn, 1, 1).end,
            End::TornTail { offset, .. } if offset == BLOCK_BYTES
        ));
    }

    /// A recycled segment: the first life held LSNs 1..=6, the new one starts at 40.
    fn recycled(new_batches: &[&[&[u8]]]) -> Vec<u8> {
        let mut bytes = log(
            &[
                &[b"old-1", b"old-2"],
                &[&[3; 5000]],
                &[b"old-4", b"old-5", b"old-6"],
            ],
            1,
        );
        bytes.resize(8 * BLOCK_BYTES, 0x5A);
        let mut new = Vec::new();
        let mut lsn = 40;
        for batch in new_batches {
            for (index, payload) in batch.iter().enumerate() {
                record::encode(&mut new, 1, lsn, payload, index == 0);
                lsn += 1;
            }
            new.resize(next_boundary(new.len()), 0);
        }
        bytes[..new.len()].copy_from_slice(&new);
        bytes
    }

    #[test]
    fn an_old_record_inside_a_block_is_a_torn_tail_not_the_end() {
        // The first new batch was torn right where an old record of the same layout
        // begins (seen in shard_sim: the cut fell two bytes into a header, on its magic), so
        // an old record follows a new one inside the block. Taken for the end, it would put
        // the next write mid-block, unaligned for O_DIRECT.
        let mut bytes = recycled(&[]);
        let mut new = Vec::new();
        record::encode(&mut new, 1, 40, b"new-1", true);
        bytes[..new.len()].copy_from_slice(&new);
        assert_ne!(new.len() % BLOCK_BYTES, 0);
        let found = scan(&bytes, 1, 40);
        assert_eq!(lsns(&found), [40]);
        assert!(
            matches!(found.end, End::TornTail { offset, .. } if offset == new.len()),
            "{:?}",
            found.end
        );
    }

    #[test]
    fn old_records_of_a_recycled_segment_end_the_log_and_never_count() {
        // One new batch in the first block; an old record starts at the next boundary.
        let bytes = recycled(&[&[b"new-40", b"new-41"]]);
        let found = scan(&bytes, 1, 40);
        assert_eq!(lsns(&found), [40, 41]);
        assert_eq!(
            found.end,
            End::Clean {
                next_write_offset: BLOCK_BYTES
            }
        );
        // Nothing new yet: the old record at offset 0 ends it at once.
        let untouched = recycled(&[]);
        let found = scan(&untouched, 1, 40);
        assert!(found.records.is_empty());
        assert_eq!(
            found.end,
            End::Clean {
                next_write_offset: 0
            }
        );
        // Old bytes that are no record (the middle of an old record) at the end: a torn tail
        // (recovery rewrites that block with zeros).
        let mut middle = log(&[&[&[3; 5000]]], 1)[..2 * BLOCK_BYTES].to_vec();
        middle.resize(4 * BLOCK_BYTES, 0);
        let mut new = Vec::new();
        record::encode(&mut new, 1, 40, b"new-40", true);
        new.resize(BLOCK_BYTES, 0);
        middle[..BLOCK_BYTES].copy_from_slice(&new);
        assert!(matches!(
            scan(&middle, 1, 40).end,
            End::TornTail { offset, .. } if offset == BLOCK_BYTES
        ));
        // A whole record with an LSN of this life but not the one expected is still
        // misplaced, and a later batch past old bytes is still a lost write.
        let mut misplaced = recycled(&[&[b"new-40"]]);
        let mut stray = Vec::new();
        record::encode(&mut stray, 1, 40, b"again", true);
        misplaced[BLOCK_BYTES..BLOCK_BYTES + stray.len()].copy_from_slice(&stray);
        assert!(matches!(
            scan(&misplaced, 1, 40).end,
            End::Corrupt { lsn: 41, .. }
        ));
        let mut lost = recycled(&[&[b"new-40"]]);
        let mut later = Vec::new();
        record::encode(&mut later, 1, 43, b"later", true);
        lost[5 * BLOCK_BYTES..5 * BLOCK_BYTES + later.len()].copy_from_slice(&later);
        assert!(matches!(
            scan(&lost, 1, 40).end,
            End::Corrupt { ref reason, .. } if reason.contains("wrong place")
        ));
    }

    #[test]
    fn leftovers_are_headers_of_this_shard_with_the_next_lsn_or_higher() {
        let mut bytes = recycled(&[&[b"new-40"]]);
        // Pieces of a torn batch 41..: a record in the middle of block 3, one straddling
        // blocks 5 and 6, and one of another shard (never read) in block 7.
        let mut piece = Vec::new();
        record::encode(&mut piece, 1, 42, b"torn-42", false);
        bytes[3 * BLOCK_BYTES + 100..3 * BLOCK_BYTES + 100 + piece.len()].copy_from_slice(&piece);
        let mut straddling = Vec::new();
        record::encode(&mut straddling, 1, 43, b"torn-43", false);
        let at = 6 * BLOCK_BYTES - 10;
        bytes[at..at + straddling.len()].copy_from_slice(&straddling);
        let mut other = Vec::new();
        record::encode(&mut other, 2, 44, b"other", false);
        bytes[7 * BLOCK_BYTES..7 * BLOCK_BYTES + other.len()].copy_from_slice(&other);
        assert_eq!(
            scan(&bytes, 1, 40).end,
            End::Clean {
                next_write_offset: BLOCK_BYTES
            }
        );
        assert_eq!(
            leftovers(&bytes, BLOCK_BYTES, 1, 41),
            [
                (3 * BLOCK_BYTES, BLOCK_BYTES),
                (5 * BLOCK_BYTES, 2 * BLOCK_BYTES)
            ]
        );
        // The old records (LSNs 1..=6) are not leftovers; a fresh segment has none.
        assert!(leftovers(&recycled(&[&[b"new-40"]]), BLOCK_BYTES, 1, 41).is_empty());
        assert!(leftovers(&[0; 4 * BLOCK_BYTES], 0, 1, 1).is_empty());
    }
}
