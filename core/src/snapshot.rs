//! The deterministic binary form of the [`State`], for snapshots.
//!
//! Equal states encode to equal bytes: maps are walked in key order and nothing depends on
//! addresses or hashing. A process version is stored as its resource bytes and restored by
//! compiling them again, so the compiled form never needs a stable encoding of its own.
//!
//! | field | encoding |
//! |---|---|
//! | magic | `RFSNAP` then format version `0x00 0x01` |
//! | shard | u16 |
//! | last key | u64 |
//! | process versions | u32 count, then per version in key order: key u64, version u32, deployment key u64, process id, resource name, resource (each u32 length + bytes) |
//! | checksum | CRC32 (crc32fast) of everything before it, u32 |
//!
//! All integers are little-endian.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::key::Key;
use crate::state::{ProcessVersion, State};

const MAGIC: &[u8; 8] = b"RFSNAP\x00\x01";

/// Why a snapshot could not be restored. Any of these means the file is damaged or from an
/// incompatible version; the shard stops and says which.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum SnapshotError {
    /// The bytes do not start with the snapshot magic and format version.
    #[error("not a ringflow snapshot of format 1 (bad magic)")]
    BadMagic,
    /// The checksum does not match: the snapshot is corrupt.
    #[error("snapshot checksum mismatch: stored {stored:#010x}, computed {computed:#010x}")]
    ChecksumMismatch {
        /// The checksum in the snapshot.
        stored: u32,
        /// The checksum of the bytes read.
        computed: u32,
    },
    /// The snapshot ends in the middle of a field.
    #[error("snapshot truncated at byte {offset}")]
    Truncated {
        /// Where the missing field starts.
        offset: usize,
    },
    /// The fields are readable but contradict each other.
    #[error("snapshot corrupt: {0}")]
    Corrupt(String),
}

impl State {
    /// Encodes the state; equal states give equal bytes.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&self.shard().to_le_bytes());
        out.extend_from_slice(&self.last_key().0.to_le_bytes());
        let count = u32::try_from(self.processes.len()).expect("process count fits u32");
        out.extend_from_slice(&count.to_le_bytes());
        for process in self.processes.values() {
            out.extend_from_slice(&process.key.0.to_le_bytes());
            out.extend_from_slice(&process.version.to_le_bytes());
            out.extend_from_slice(&process.deployment_key.0.to_le_bytes());
            put_bytes(&mut out, process.bpmn_process_id.as_bytes());
            put_bytes(&mut out, process.resource_name.as_bytes());
            put_bytes(&mut out, &process.resource);
        }
        let checksum = crc32fast::hash(&out);
        out.extend_from_slice(&checksum.to_le_bytes());
        out
    }

    /// Restores a state from [`State::encode`]'s bytes, checking everything it reads.
    pub fn decode(bytes: &[u8]) -> Result<State, SnapshotError> {
        if bytes.len() < MAGIC.len() || &bytes[..MAGIC.len()] != MAGIC {
            return Err(SnapshotError::BadMagic);
        }
        let body_len = bytes
            .len()
            .checked_sub(4)
            .ok_or(SnapshotError::Truncated { offset: 0 })?;
        let stored = u32::from_le_bytes(bytes[body_len..].try_into().expect("four bytes"));
        let computed = crc32fast::hash(&bytes[..body_len]);
        if stored != computed {
            return Err(SnapshotError::ChecksumMismatch { stored, computed });
        }
        let mut reader = Reader {
            bytes: &bytes[..body_len],
            offset: MAGIC.len(),
        };
        let shard = u16::from_le_bytes(reader.array()?);
        let last_key = Key(u64::from_le_bytes(reader.array()?));
        let mut state = State::new(shard);
        if last_key.shard() != shard {
            return Err(corrupt(format!(
                "last key {last_key} is not of shard {shard}"
            )));
        }
        state.set_last_key(last_key);
        let count = u32::from_le_bytes(reader.array()?);
        let mut versions: BTreeMap<String, Vec<(u32, Key)>> = BTreeMap::new();
        for _ in 0..count {
            let process = read_process(&mut reader, shard, last_key)?;
            versions
                .entry(process.bpmn_process_id.clone())
                .or_default()
                .push((process.version, process.key));
            if state.processes.insert(process.key, process).is_some() {
                return Err(corrupt(
                    "a process definition key appears twice".to_string(),
                ));
            }
        }
        if reader.offset != reader.bytes.len() {
            return Err(corrupt(format!(
                "{} bytes after the last field",
                reader.bytes.len() - reader.offset
            )));
        }
        for (id, mut list) in versions {
            list.sort_unstable();
            let contiguous = list
                .iter()
                .enumerate()
                .all(|(i, (version, _))| *version as usize == i + 1);
            if !contiguous {
                return Err(corrupt(format!(
                    "the versions of `{id}` are not 1, 2, 3, ..."
                )));
            }
            state
                .versions
                .insert(id, list.into_iter().map(|(_, key)| key).collect());
        }
        Ok(state)
    }
}

fn read_process(
    reader: &mut Reader<'_>,
    shard: u16,
    last_key: Key,
) -> Result<ProcessVersion, SnapshotError> {
    let key = Key(u64::from_le_bytes(reader.array()?));
    let version = u32::from_le_bytes(reader.array()?);
    let deployment_key = Key(u64::from_le_bytes(reader.array()?));
    let bpmn_process_id = reader.string()?;
    let resource_name = reader.string()?;
    let resource: Arc<[u8]> = Arc::from(reader.bytes()?);
    if key.shard() != shard || key > last_key || deployment_key > last_key {
        return Err(corrupt(format!(
            "process key {key} does not belong to shard {shard}"
        )));
    }
    let model = ringflow_bpmn::parse(&resource).map_err(|error| {
        corrupt(format!(
            "the resource {resource_name} of `{bpmn_process_id}` no longer validates:\n{error}"
        ))
    })?;
    let definition = model
        .processes
        .into_iter()
        .find(|process| process.bpmn_process_id == bpmn_process_id)
        .ok_or_else(|| {
            corrupt(format!(
                "the resource {resource_name} has no process `{bpmn_process_id}`"
            ))
        })?;
    Ok(ProcessVersion {
        key,
        bpmn_process_id,
        version,
        deployment_key,
        resource_name,
        resource,
        definition: Arc::new(definition),
    })
}

fn put_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
    let len = u32::try_from(bytes.len()).expect("resources are capped far below 4 GiB");
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(bytes);
}

fn corrupt(message: String) -> SnapshotError {
    SnapshotError::Corrupt(message)
}

struct Reader<'a> {
    bytes: &'a [u8],
    offset: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, len: usize) -> Result<&'a [u8], SnapshotError> {
        let end = self
            .offset
            .checked_add(len)
            .filter(|end| *end <= self.bytes.len());
        let end = end.ok_or(SnapshotError::Truncated {
            offset: self.offset,
        })?;
        let slice = &self.bytes[self.offset..end];
        self.offset = end;
        Ok(slice)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], SnapshotError> {
        Ok(self.take(N)?.try_into().expect("take returns N bytes"))
    }

    fn bytes(&mut self) -> Result<&'a [u8], SnapshotError> {
        let len = u32::from_le_bytes(self.array()?) as usize;
        self.take(len)
    }

    fn string(&mut self) -> Result<String, SnapshotError> {
        let offset = self.offset;
        let bytes = self.bytes()?;
        String::from_utf8(bytes.to_vec())
            .map_err(|_| corrupt(format!("the text at byte {offset} is not UTF-8")))
    }
}
