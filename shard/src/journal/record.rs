//! One journal record: a fixed 32-byte header followed by the payload.
//!
//! | offset | field     | type   | meaning                                                    |
//! |-------:|-----------|--------|------------------------------------------------------------|
//! | 0      | magic     | u32 LE | `RECORD_MAGIC`, so a stray page is not taken for a record  |
//! | 4      | version   | u16 LE | `RECORD_VERSION`                                           |
//! | 6      | flags     | u16 LE | bit 0: `FLAG_BATCH_START`, the first record of a batch; bit 1: `FLAG_AFTER_UNSYNCED`, on a batch start: written before the batch before it was durable |
//! | 8      | length    | u32 LE | payload bytes                                              |
//! | 12     | shard     | u16 LE | the shard that wrote it: a misdirected record is caught    |
//! | 14     | reserved  | u16 LE | 0                                                          |
//! | 16     | lsn       | u64 LE | log sequence number, consecutive from the first record     |
//! | 24     | checksum  | u32 LE | CRC32 of the header (this field as 0) and the payload     |
//! | 28     | reserved  | u32 LE | 0                                                          |
//!
//! A record is checked on write and again on every read: magic, version, length within
//! `RECORD_PAYLOAD_BYTES_MAX`, shard, expected LSN, and checksum.

use zerocopy::little_endian::{U16, U32, U64};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

/// Marks the start of a record: "RFJ1" read as a little-endian u32.
pub const RECORD_MAGIC: u32 = u32::from_le_bytes(*b"RFJ1");
/// The record format version this code writes and reads.
pub const RECORD_VERSION: u16 = 1;
/// Flag of the first record of a batch. A batch is written only after the one before it was
/// synced, or while that one's fdatasync is in flight (then it also carries
/// [`FLAG_AFTER_UNSYNCED`]), so a valid batch start after damaged bytes proves the damage is
/// not a torn write, unless it is the last batch and carries that flag (see `scan`).
pub const FLAG_BATCH_START: u16 = 1;
/// Flag of a batch start written while the batch before it was not yet durable (its
/// fdatasync in flight): a crash may leave this batch whole and the one before torn.
pub const FLAG_AFTER_UNSYNCED: u16 = 2;
/// Bytes of the fixed header.
pub const RECORD_HEADER_BYTES: usize = 32;
/// Largest payload of one record. A command's payload is far smaller (a deployment is the
/// largest, bounded by the engine's `DEPLOYMENT_BYTES_MAX`).
pub const RECORD_PAYLOAD_BYTES_MAX: usize = 64 * 1024 * 1024;

/// The header, as laid out on disk.
#[derive(Clone, Copy, Debug, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable)]
#[repr(C)]
pub struct RecordHeader {
    magic: U32,
    version: U16,
    flags: U16,
    length: U32,
    shard: U16,
    reserved: U16,
    lsn: U64,
    checksum: U32,
    reserved_tail: U32,
}

const _: () = assert!(std::mem::size_of::<RecordHeader>() == RECORD_HEADER_BYTES);
const _: () = assert!(RECORD_PAYLOAD_BYTES_MAX < u32::MAX as usize);

/// Why bytes are not the record expected there.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RecordError {
    /// Fewer bytes than a header, or than the header says the payload has.
    #[error("record truncated: {available} bytes where {needed} are needed")]
    Truncated {
        /// Bytes needed.
        needed: usize,
        /// Bytes there.
        available: usize,
    },
    /// No record magic: zeroes (unwritten space) or something else.
    #[error("no record here (magic {found:#010x})")]
    BadMagic {
        /// What was found instead of the magic.
        found: u32,
    },
    /// A format version this code does not read.
    #[error("record format version {found}, this build reads version {RECORD_VERSION}")]
    UnsupportedVersion {
        /// The version found.
        found: u16,
    },
    /// A length over `RECORD_PAYLOAD_BYTES_MAX`.
    #[error("record length {length} is over RECORD_PAYLOAD_BYTES_MAX")]
    TooLong {
        /// The length found.
        length: u32,
    },
    /// The checksum does not match: the record is damaged.
    #[error("record checksum mismatch: stored {stored:#010x}, computed {computed:#010x}")]
    ChecksumMismatch {
        /// Stored checksum.
        stored: u32,
        /// Computed checksum.
        computed: u32,
    },
    /// A well-formed record of another shard: misdirected.
    #[error("record of shard {found} in the journal of shard {expected}")]
    WrongShard {
        /// The shard whose journal this is.
        expected: u16,
        /// The shard in the record.
        found: u16,
    },
    /// A well-formed record with another LSN than the next one.
    #[error("record has LSN {found}, expected {expected}")]
    WrongLsn {
        /// The LSN expected next.
        expected: u64,
        /// The LSN in the record.
        found: u64,
    },
}

/// Appends one record to `out`, flagged as the start of a batch when `batch_start`. Panics on
/// a payload over `RECORD_PAYLOAD_BYTES_MAX`: callers check their limits first, so reaching
/// it is a bug.
pub fn encode(out: &mut Vec<u8>, shard: u16, lsn: u64, payload: &[u8], batch_start: bool) {
    assert!(
        payload.len() <= RECORD_PAYLOAD_BYTES_MAX,
        "payload over RECORD_PAYLOAD_BYTES_MAX"
    );
    let mut header = RecordHeader {
        magic: RECORD_MAGIC.into(),
        version: RECORD_VERSION.into(),
        flags: if batch_start { FLAG_BATCH_START } else { 0 }.into(),
        length: (payload.len() as u32).into(),
        shard: shard.into(),
        reserved: 0.into(),
        lsn: lsn.into(),
        checksum: 0.into(),
        reserved_tail: 0.into(),
    };
    header.checksum = checksum(&header, payload).into();
    let start = out.len();
    out.extend_from_slice(header.as_bytes());
    out.extend_from_slice(payload);
    // Check what was just written, as it will be checked when read back.
    let written = decode(&out[start..], shard, lsn).expect("a record just encoded decodes");
    assert_eq!(written.payload, payload);
}

fn checksum(header: &RecordHeader, payload: &[u8]) -> u32 {
    let mut copy = *header;
    copy.checksum = 0.into();
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(copy.as_bytes());
    hasher.update(payload);
    hasher.finalize()
}

/// Flags the record at the start of `bytes` (a batch's first record, as encoded) with
/// [`FLAG_AFTER_UNSYNCED`], and computes its checksum again.
pub fn mark_after_unsynced(bytes: &mut [u8]) {
    let (mut header, rest) =
        RecordHeader::read_from_prefix(bytes).expect("a batch starts with a whole header");
    assert!(
        header.flags.get() & FLAG_BATCH_START != 0,
        "only a batch start is marked"
    );
    let payload = &rest[..header.length.get() as usize];
    header.flags = (header.flags.get() | FLAG_AFTER_UNSYNCED).into();
    header.checksum = checksum(&header, payload).into();
    bytes[..RECORD_HEADER_BYTES].copy_from_slice(header.as_bytes());
}

/// A record read back.
#[derive(Debug, PartialEq, Eq)]
pub struct Record<'a> {
    /// Its LSN.
    pub lsn: u64,
    /// The payload.
    pub payload: &'a [u8],
    /// Header plus payload bytes.
    pub total_bytes: usize,
    /// Whether it is the first record of a batch.
    pub batch_start: bool,
    /// Whether it starts a batch written before the batch before it was durable.
    pub after_unsynced: bool,
}

/// Reads the record at the start of `bytes`, which must be of `shard` with LSN `lsn`.
pub fn decode(bytes: &[u8], shard: u16, lsn: u64) -> Result<Record<'_>, RecordError> {
    let (header, rest) =
        RecordHeader::read_from_prefix(bytes).map_err(|_| RecordError::Truncated {
            needed: RECORD_HEADER_BYTES,
            available: bytes.len(),
        })?;
    if header.magic.get() != RECORD_MAGIC {
        return Err(RecordError::BadMagic {
            found: header.magic.get(),
        });
    }
    if header.version.get() != RECORD_VERSION {
        return Err(RecordError::UnsupportedVersion {
            found: header.version.get(),
        });
    }
    let length = header.length.get();
    if length as usize > RECORD_PAYLOAD_BYTES_MAX {
        return Err(RecordError::TooLong { length });
    }
    let payload = rest.get(..length as usize).ok_or(RecordError::Truncated {
        needed: RECORD_HEADER_BYTES + length as usize,
        available: bytes.len(),
    })?;
    let computed = checksum(&header, payload);
    if computed != header.checksum.get() {
        return Err(RecordError::ChecksumMismatch {
            stored: header.checksum.get(),
            computed,
        });
    }
    if header.shard.get() != shard {
        return Err(RecordError::WrongShard {
            expected: shard,
            found: header.shard.get(),
        });
    }
    if header.lsn.get() != lsn {
        return Err(RecordError::WrongLsn {
            expected: lsn,
            found: header.lsn.get(),
        });
    }
    let flags = header.flags.get();
    Ok(Record {
        lsn,
        payload,
        total_bytes: RECORD_HEADER_BYTES + length as usize,
        batch_start: flags & FLAG_BATCH_START != 0,
        after_unsynced: flags & FLAG_AFTER_UNSYNCED != 0,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_in_sequence() {
        let mut log = Vec::new();
        encode(&mut log, 7, 1, b"first", false);
        encode(&mut log, 7, 2, b"", false);
        encode(&mut log, 7, 3, &[0xAB; 1000], false);
        let mut offset = 0;
        for (lsn, expected) in [(1, &b"first"[..]), (2, &b""[..]), (3, &[0xAB; 1000][..])] {
            let record = decode(&log[offset..], 7, lsn).expect("valid");
            assert_eq!(record.payload, expected);
            offset += record.total_bytes;
        }
        assert_eq!(offset, log.len());
        assert_eq!(
            decode(&log[offset..], 7, 4),
            Err(RecordError::Truncated {
                needed: 32,
                available: 0
            })
        );
    }

    #[test]
    fn a_batch_start_marked_after_unsynced_still_decodes() {
        let mut log = Vec::new();
        encode(&mut log, 7, 9, b"first of a batch", true);
        let plain = decode(&log, 7, 9).expect("valid");
        assert!(plain.batch_start && !plain.after_unsynced);
        mark_after_unsynced(&mut log);
        let marked = decode(&log, 7, 9).expect("valid after marking");
        assert!(marked.batch_start && marked.after_unsynced);
        assert_eq!(marked.payload, b"first of a batch");
    }

    #[test]
    fn every_kind_of_damage_is_caught() {
        let mut log = Vec::new();
        encode(&mut log, 7, 5, b"payload", false);
        // Every single bit flip anywhere in the record is detected.
        for bit in 0..log.len() * 8 {
            let mut damaged = log.clone();
            damaged[bit / 8] ^= 1 << (bit % 8);
            assert!(
                decode(&damaged, 7, 5).is_err(),
                "flip of bit {bit} went unnoticed"
            );
        }
        assert_eq!(
            decode(&[0; 64], 7, 5),
            Err(RecordError::BadMagic { found: 0 })
        );
        assert!(matches!(
            decode(&log[..36], 7, 5),
            Err(RecordError::Truncated { .. })
        ));
        assert_eq!(
            decode(&log, 8, 5),
            Err(RecordError::WrongShard {
                expected: 8,
                found: 7
            })
        );
        assert_eq!(
            decode(&log, 7, 6),
            Err(RecordError::WrongLsn {
                expected: 6,
                found: 5
            })
        );
    }
}
