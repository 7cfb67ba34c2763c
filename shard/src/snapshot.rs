//! Snapshot files: the engine's deterministic state at an LSN, so that recovery replays only
//! the journal after it and covered segments can be removed.
//!
//! A snapshot is written to `snapshot-<LSN, 20 digits>.tmp`, fdatasynced, renamed to
//! `snapshot-<LSN>.snap`, and the directory fsynced. The two newest snapshots are kept: if the
//! newest turns out damaged, recovery falls back to the one before, and the journal keeps the
//! segments that one needs (see [`SnapshotStore::write`]).
//!
//! | offset | field | type |
//! |---:|---|---|
//! | 0 | magic `RFSNAPF1` | 8 bytes |
//! | 8 | shard | u16 LE |
//! | 10 | reserved, 0 | 6 bytes |
//! | 16 | LSN covered | u64 LE |
//! | 24 | clock at that LSN, ms since the Unix epoch | i64 LE |
//! | 32 | state length | u64 LE |
//! | 40 | CRC32 of bytes 0..40 and the state | u32 LE |
//! | 44 | reserved, 0 | u32 |
//! | 48 | the state ([`ringflow_core::State::encode`], with its own checksum) | |
//! | | zeros to a multiple of 4096 bytes | |

use ringflow_core::State;

use crate::storage::{BLOCK_BYTES, Dir, File, StorageError, read_whole};

const MAGIC: &[u8; 8] = b"RFSNAPF1";
const HEADER_BYTES: usize = 48;

/// How many snapshots are kept.
pub const SNAPSHOTS_KEPT: usize = 2;

/// The file name of the snapshot at `lsn`.
pub fn snapshot_name(lsn: u64) -> String {
    format!("snapshot-{lsn:020}.snap")
}

/// The LSN of a snapshot file name, or `None` for other files.
pub fn parse_snapshot_name(name: &str) -> Option<u64> {
    let digits = name.strip_prefix("snapshot-")?.strip_suffix(".snap")?;
    if digits.len() != 20 || !digits.bytes().all(|byte| byte.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// A snapshot read back.
pub struct Loaded {
    /// The LSN it covers.
    pub lsn: u64,
    /// The clock at that LSN.
    pub now_millis: i64,
    /// The state.
    pub state: State,
    /// Its file name.
    pub name: String,
}

/// Encodes a snapshot file's bytes (padded to a block).
pub fn encode(shard: u16, lsn: u64, now_millis: i64, state_bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER_BYTES + state_bytes.len() + BLOCK_BYTES);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&shard.to_le_bytes());
    out.extend_from_slice(&[0; 6]);
    out.extend_from_slice(&lsn.to_le_bytes());
    out.extend_from_slice(&now_millis.to_le_bytes());
    out.extend_from_slice(&(state_bytes.len() as u64).to_le_bytes());
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(&out);
    hasher.update(state_bytes);
    out.extend_from_slice(&hasher.finalize().to_le_bytes());
    out.extend_from_slice(&[0; 4]);
    assert_eq!(out.len(), HEADER_BYTES);
    out.extend_from_slice(state_bytes);
    out.resize(out.len().div_ceil(BLOCK_BYTES) * BLOCK_BYTES, 0);
    out
}

/// Decodes a snapshot file's bytes; says what is wrong when they are not a valid snapshot of
/// `shard` at `lsn`.
pub fn decode(bytes: &[u8], shard: u16, lsn: u64) -> Result<(i64, State), String> {
    let header = bytes
        .get(..HEADER_BYTES)
        .ok_or_else(|| format!("{} bytes, shorter than the header", bytes.len()))?;
    if &header[..8] != MAGIC {
        return Err("not a ringflow snapshot file (bad magic)".to_string());
    }
    let field = |range: std::ops::Range<usize>| -> [u8; 8] {
        let mut word = [0; 8];
        word[..range.len()].copy_from_slice(&header[range]);
        word
    };
    let found_shard = u16::from_le_bytes([header[8], header[9]]);
    let found_lsn = u64::from_le_bytes(field(16..24));
    let now_millis = i64::from_le_bytes(field(24..32));
    let length = u64::from_le_bytes(field(32..40)) as usize;
    let stored = u32::from_le_bytes([header[40], header[41], header[42], header[43]]);
    let state_bytes = bytes
        .get(HEADER_BYTES..HEADER_BYTES.saturating_add(length))
        .ok_or_else(|| format!("truncated: the state should have {length} bytes"))?;
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(&header[..40]);
    hasher.update(state_bytes);
    let computed = hasher.finalize();
    if computed != stored {
        return Err(format!(
            "checksum mismatch: stored {stored:#010x}, computed {computed:#010x}"
        ));
    }
    if found_shard != shard || found_lsn != lsn {
        return Err(format!(
            "the header says shard {found_shard} LSN {found_lsn}, the file name and \
             directory say shard {shard} LSN {lsn}"
        ));
    }
    let state = State::decode(state_bytes).map_err(|error| error.to_string())?;
    if state.shard() != shard {
        return Err(format!("the state is of shard {}", state.shard()));
    }
    Ok((now_millis, state))
}

/// One shard's snapshot directory.
pub struct SnapshotStore<D: Dir> {
    dir: D,
    shard: u16,
}

/// What loading found: the snapshot used, and the ones that could not be used (and why).
pub struct LoadReport {
    /// The newest valid snapshot, if any.
    pub loaded: Option<Loaded>,
    /// Snapshots skipped as damaged: (file name, what is wrong).
    pub skipped: Vec<(String, String)>,
}

impl<D: Dir> SnapshotStore<D> {
    /// The snapshots of `shard` in `dir`.
    pub fn new(dir: D, shard: u16) -> SnapshotStore<D> {
        SnapshotStore { dir, shard }
    }

    /// The snapshot files, newest first: (LSN, name).
    pub async fn list(&self) -> Result<Vec<(u64, String)>, StorageError> {
        let mut snapshots: Vec<(u64, String)> = self
            .dir
            .list()
            .await?
            .into_iter()
            .filter_map(|name| parse_snapshot_name(&name).map(|lsn| (lsn, name)))
            .collect();
        snapshots.sort_by(|a, b| b.cmp(a));
        Ok(snapshots)
    }

    /// Removes unfinished `.tmp` files a crash left, then loads the newest valid snapshot.
    pub async fn load(&self) -> Result<LoadReport, StorageError> {
        self.load_at_most(None).await
    }

    /// [`SnapshotStore::load`], considering only snapshots at or before `max_lsn` (the cold
    /// store's position: events after it must be derived again).
    pub async fn load_at_most(&self, max_lsn: Option<u64>) -> Result<LoadReport, StorageError> {
        let mut removed = false;
        for name in self.dir.list().await? {
            if name.starts_with("snapshot-") && name.ends_with(".tmp") {
                self.dir.remove(&name).await?;
                removed = true;
            }
        }
        if removed {
            self.dir.sync().await?;
        }
        let mut skipped = Vec::new();
        for (lsn, name) in self.list().await? {
            if max_lsn.is_some_and(|max| lsn > max) {
                continue;
            }
            let file = self.dir.open(&name).await?;
            let bytes = read_whole(&file, 1 << 20).await?;
            match decode(&bytes, self.shard, lsn) {
                Ok((now_millis, state)) => {
                    let loaded = Loaded {
                        lsn,
                        now_millis,
                        state,
                        name,
                    };
                    return Ok(LoadReport {
                        loaded: Some(loaded),
                        skipped,
                    });
                }
                Err(reason) => skipped.push((name, reason)),
            }
        }
        Ok(LoadReport {
            loaded: None,
            skipped,
        })
    }

    /// Writes a snapshot at `lsn` (durable before this returns) and removes all but the
    /// newest [`SNAPSHOTS_KEPT`] and, with a `floor` (the cold store's position), the newest
    /// at or before it. Returns the LSN that the journal may remove segments up to: the oldest
    /// snapshot kept, or 0 (nothing) when the floor is behind every snapshot.
    pub async fn write(
        &self,
        lsn: u64,
        now_millis: i64,
        state_bytes: &[u8],
        floor: Option<u64>,
    ) -> Result<u64, StorageError> {
        let bytes = encode(self.shard, lsn, now_millis, state_bytes);
        let final_name = snapshot_name(lsn);
        let temporary = final_name.replace(".snap", ".tmp");
        let file = self.dir.create(&temporary, bytes.len() as u64).await?;
        file.write_at(0, &bytes).await?;
        file.sync().await?;
        drop(file);
        self.dir.rename(&temporary, &final_name).await?;
        self.dir.sync().await?;
        let snapshots = self.list().await?;
        // Newest first: the newest at or before the floor stays too.
        let base = floor.and_then(|floor| snapshots.iter().position(|(at, _)| *at <= floor));
        let keep = |index: usize| index < SNAPSHOTS_KEPT || Some(index) == base;
        let mut removed = false;
        for (index, (_, name)) in snapshots.iter().enumerate() {
            if !keep(index) {
                self.dir.remove(name).await?;
                removed = true;
            }
        }
        if removed {
            self.dir.sync().await?;
        }
        if floor.is_some() && base.is_none() {
            return Ok(0);
        }
        let kept = snapshots
            .iter()
            .enumerate()
            .filter(|(index, _)| keep(*index));
        Ok(kept.map(|(_, (lsn, _))| *lsn).min().unwrap_or(lsn))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::block_on;
    use crate::storage::sim::{Faults, SimDir};

    #[test]
    fn snapshots_round_trip_and_damage_falls_back_to_the_previous_one() {
        let dir = SimDir::new(Faults::default(), 3);
        let store = SnapshotStore::new(dir.clone(), 2);
        let state = State::new(2);
        let bytes = state.encode();
        assert_eq!(
            block_on(store.write(10, 1_000, &bytes, None)).expect("write"),
            10
        );
        assert_eq!(
            block_on(store.write(20, 2_000, &bytes, None)).expect("write"),
            10
        );
        assert_eq!(
            block_on(store.write(30, 3_000, &bytes, None)).expect("write"),
            20
        );
        let names: Vec<u64> = block_on(store.list())
            .expect("list")
            .iter()
            .map(|(lsn, _)| *lsn)
            .collect();
        assert_eq!(names, [30, 20]);
        let report = block_on(store.load()).expect("load");
        let loaded = report.loaded.expect("a snapshot");
        assert_eq!((loaded.lsn, loaded.now_millis), (30, 3_000));
        assert_eq!(loaded.state.encode(), bytes);
        dir.flip_durable_bit(&snapshot_name(30), 60, 2);
        let report = block_on(store.load()).expect("load");
        assert_eq!(report.loaded.expect("the older one").lsn, 20);
        assert_eq!(report.skipped.len(), 1);
        assert!(
            report.skipped[0].1.contains("checksum"),
            "{:?}",
            report.skipped
        );
    }

    #[test]
    fn the_newest_snapshot_at_or_before_the_cold_store_position_is_kept() {
        let dir = SimDir::new(Faults::default(), 3);
        let store = SnapshotStore::new(dir.clone(), 2);
        let bytes = State::new(2).encode();
        let lsns = |store: &SnapshotStore<SimDir>| -> Vec<u64> {
            let listed = block_on(store.list()).expect("list");
            listed.iter().map(|(lsn, _)| *lsn).collect()
        };
        // The exporter is at 0: no snapshot is at or before it, so no segment may go.
        assert_eq!(
            block_on(store.write(10, 1, &bytes, Some(0))).expect("write"),
            0
        );
        assert_eq!(
            block_on(store.write(20, 2, &bytes, Some(0))).expect("write"),
            0
        );
        assert_eq!(
            block_on(store.write(30, 3, &bytes, Some(0))).expect("write"),
            0
        );
        assert_eq!(lsns(&store), [30, 20]);
        // The exporter reached 25: 20 is its base and stays while newer ones come.
        assert_eq!(
            block_on(store.write(40, 4, &bytes, Some(25))).expect("write"),
            20
        );
        assert_eq!(
            block_on(store.write(50, 5, &bytes, Some(25))).expect("write"),
            20
        );
        assert_eq!(lsns(&store), [50, 40, 20]);
        // It caught up: back to the two newest.
        assert_eq!(
            block_on(store.write(60, 6, &bytes, Some(60))).expect("write"),
            50
        );
        assert_eq!(lsns(&store), [60, 50]);
        // Recovery looks only at snapshots at or before the position.
        let report = block_on(store.load_at_most(Some(55))).expect("load");
        assert_eq!(report.loaded.expect("a snapshot").lsn, 50);
        assert!(
            block_on(store.load_at_most(Some(49)))
                .expect("load")
                .loaded
                .is_none()
        );
    }

    #[test]
    fn a_snapshot_of_another_shard_or_lsn_is_refused() {
        let bytes = encode(1, 5, 0, &State::new(1).encode());
        assert!(decode(&bytes, 1, 5).is_ok());
        assert!(decode(&bytes, 2, 5).unwrap_err().contains("shard 1"));
        assert!(decode(&bytes, 1, 6).is_err());
        assert!(decode(&bytes[..40], 1, 5).is_err());
    }
}
