//! A simulated directory that injects faults by seed, so that a failing seed reproduces.
//!
//! Each file keeps two images: what is durable, and the writes issued since its last
//! successful sync. The directory keeps two name tables the same way. A [`SimDir::crash`]
//! keeps what is durable and does something to each unsynced write:
//!
//! | chance | what happens to an unsynced write at a crash |
//! |---|---|
//! | 1/4 | lost |
//! | 1/4 | landed whole |
//! | 1/4 | torn: only its first sectors landed |
//! | 1/4 | landed with some sectors replaced by garbage |
//!
//! Unsynced name changes (create, rename, remove) are all lost or all kept. Besides crashes,
//! [`Faults`] sets the chances of fdatasync failing with EIO (the pending writes then land in
//! part, as at a crash), of a write landing at the wrong offset (a misdirected write), of a
//! read returning a flipped bit (transient: the next read is right), the capacity past
//! which writes fail with ENOSPC, and how many polls an fdatasync may take to return (so
//! that, under an executor, syncs overlap and return out of order; a sync makes durable only
//! the writes issued before it began, as fdatasync does). A durable write
//! ([`File::write_durable_at`], as `O_DSYNC`) takes the same random number of polls, fails
//! with EIO by the same chance (and then lands somehow, or not), and when it returns has made
//! durable only itself.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;

use super::{BLOCK_BYTES, Dir, File, StorageError};

/// Sector size of the simulated device: the unit in which a crash tears a write.
pub const SECTOR_BYTES: usize = 512;

/// Which faults the simulation injects; chances are per operation, in parts per million.
#[derive(Clone, Copy, Debug, Default)]
pub struct Faults {
    /// Chance that an fdatasync fails with EIO.
    pub sync_eio_per_million: u32,
    /// Chance that a write lands one to four blocks away from where it was aimed.
    pub misdirect_per_million: u32,
    /// Chance that a read returns one flipped bit. It is transient: the read after a
    /// flipped one (of the same file) is always right, so that two reads that agree are the
    /// bytes on the device.
    pub read_flip_per_million: u32,
    /// Bytes the device holds, over all files: writes past it fail with ENOSPC. 0: no limit.
    pub capacity_bytes: u64,
    /// An fdatasync returns only after being polled again up to this many times (a random
    /// number, 0: at once), so that under an executor syncs overlap and return out of order.
    /// It makes durable only the writes issued before it began. Not for
    /// [`super::block_on`], which panics on a future that waits.
    pub sync_delay_polls_max: u32,
}

/// How many faults of each kind were injected (tests say what they exercised).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Injected {
    /// fdatasyncs that failed.
    pub sync_eio: u64,
    /// Writes that landed elsewhere.
    pub misdirected: u64,
    /// Reads that returned a flipped bit.
    pub read_flips: u64,
    /// Writes refused for space.
    pub no_space: u64,
    /// Unsynced writes torn or garbled at a crash.
    pub torn: u64,
    /// fdatasyncs that began while another one of the same file was in flight.
    pub overlapping_syncs: u64,
    /// Durable writes ([`File::write_durable_at`]) that began while another one to the same
    /// file was in flight.
    pub overlapping_durable_writes: u64,
    /// Durable writes that returned while one issued before them to the same file was still
    /// in flight.
    pub durable_writes_out_of_order: u64,
}

/// A small seeded random source (xorshift64*), so a failing seed reproduces exactly.
#[derive(Clone, Debug)]
pub struct SimRng(u64);

impl SimRng {
    /// A generator for `seed`.
    pub fn new(seed: u64) -> SimRng {
        SimRng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    /// The next number.
    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// A number below `bound` (0 when `bound` is 0).
    pub fn below(&mut self, bound: u64) -> u64 {
        if bound == 0 {
            0
        } else {
            self.next_u64() % bound
        }
    }

    /// True with a chance of `per_million` in a million.
    pub fn chance(&mut self, per_million: u32) -> bool {
        self.below(1_000_000) < u64::from(per_million)
    }
}

#[derive(Default)]
struct Data {
    durable: Vec<u8>,
    /// (sequence number, offset, bytes) of each write since the last sync that covered it.
    unsynced: Vec<(u64, usize, Vec<u8>)>,
    syncs_in_flight: u32,
    /// Sequence numbers of the durable writes in flight.
    durable_writes_in_flight: Vec<u64>,
    /// The last read of this file returned a flipped bit (the next one will not).
    last_read_flipped: bool,
}

impl Data {
    fn size(&self) -> usize {
        let pending = self
            .unsynced
            .iter()
            .map(|(_, offset, bytes)| offset + bytes.len());
        pending.fold(self.durable.len(), usize::max)
    }
}

struct Fs {
    files: Vec<Data>,
    names: BTreeMap<String, usize>,
    durable_names: BTreeMap<String, usize>,
    faults: Faults,
    rng: SimRng,
    injected: Injected,
    /// Sequence number of the next write.
    next_write: u64,
    /// Between [`SimDir::crash_now`] and [`SimDir::restart`]: every operation fails.
    down: bool,
    /// Crashes so far.
    crashes: u64,
}

impl Fs {
    /// Fails while the simulated machine is down.
    fn up(&self, operation: &'static str, name: &str) -> Result<(), StorageError> {
        if self.down {
            return Err(StorageError::Io {
                operation,
                name: name.to_string(),
                message: "the simulated machine is down".to_string(),
            });
        }
        Ok(())
    }

    fn used_bytes(&self) -> u64 {
        self.names
            .values()
            .map(|id| self.files[*id].size() as u64)
            .sum()
    }

    fn id(&self, operation: &'static str, name: &str) -> Result<usize, StorageError> {
        self.names
            .get(name)
            .copied()
            .ok_or_else(|| StorageError::NotFound {
                operation,
                name: name.to_string(),
            })
    }

    /// What a crash (or a failed fdatasync) does to one file's unsynced writes.
    fn settle(&mut self, id: usize) {
        for (_, offset, bytes) in std::mem::take(&mut self.files[id].unsynced) {
            self.land_somehow(id, offset, bytes);
        }
    }

    /// What a crash (or a failed write) does to one write that was not durable: lost, landed
    /// whole, torn, or landed with garbage sectors.
    fn land_somehow(&mut self, id: usize, offset: usize, bytes: Vec<u8>) {
        let durable = &mut self.files[id].durable;
        match self.rng.below(4) {
            0 => {}
            1 => apply(durable, offset, &bytes),
            2 => {
                let sectors = bytes.len().div_ceil(SECTOR_BYTES) as u64;
                let kept = (self.rng.below(sectors + 1) as usize * SECTOR_BYTES).min(bytes.len());
                apply(durable, offset, &bytes[..kept]);
                self.injected.torn += 1;
            }
            _ => {
                let mut damaged = bytes;
                for sector in damaged.chunks_mut(SECTOR_BYTES) {
                    if self.rng.below(3) == 0 {
                        sector
                            .iter_mut()
                            .for_each(|byte| *byte = self.rng.next_u64() as u8);
                    }
                }
                apply(durable, offset, &damaged);
                self.injected.torn += 1;
            }
        }
    }

    /// How many polls a sync (or durable write) waits before it returns.
    fn delay_polls(&mut self) -> u64 {
        let delay_max = self.faults.sync_delay_polls_max;
        if delay_max == 0 {
            0
        } else {
            self.rng.below(u64::from(delay_max) + 1)
        }
    }
}

/// A future that is pending once (waking itself), so that other tasks run in between.
struct YieldOnce(bool);

impl std::future::Future for YieldOnce {
    type Output = ();

    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        context: &mut std::task::Context<'_>,
    ) -> std::task::Poll<()> {
        if self.0 {
            std::task::Poll::Ready(())
        } else {
            self.0 = true;
            context.waker().wake_by_ref();
            std::task::Poll::Pending
        }
    }
}

fn apply(image: &mut Vec<u8>, offset: usize, bytes: &[u8]) {
    if image.len() < offset + bytes.len() {
        image.resize(offset + bytes.len(), 0);
    }
    image[offset..offset + bytes.len()].copy_from_slice(bytes);
}

/// The simulated directory. Clones share the same files.
#[derive(Clone)]
pub struct SimDir(Rc<RefCell<Fs>>);

impl SimDir {
    /// An empty directory with these faults and this seed.
    pub fn new(faults: Faults, seed: u64) -> SimDir {
        SimDir(Rc::new(RefCell::new(Fs {
            files: Vec::new(),
            names: BTreeMap::new(),
            durable_names: BTreeMap::new(),
            faults,
            rng: SimRng::new(seed),
            injected: Injected::default(),
            next_write: 0,
            down: false,
            crashes: 0,
        })))
    }

    /// A crash in the middle of work: as [`SimDir::crash`], and then every operation fails
    /// (the machine is down, so nothing more lands on the disk, not even from a task that
    /// was in the middle of a write or sync) until [`SimDir::restart`].
    pub fn crash_now(&self) {
        self.crash();
        self.0.borrow_mut().down = true;
    }

    /// Brings the machine back after [`SimDir::crash_now`].
    pub fn restart(&self) {
        self.0.borrow_mut().down = false;
    }

    /// A crash: see the module docs. Files opened before keep working on what survived.
    pub fn crash(&self) {
        let mut fs = self.0.borrow_mut();
        fs.crashes += 1;
        for id in 0..fs.files.len() {
            fs.settle(id);
        }
        if fs.rng.below(2) == 0 {
            fs.names = fs.durable_names.clone();
        } else {
            fs.durable_names = fs.names.clone();
        }
    }

    /// Changes the faults from now on (a test turns them off to recover cleanly).
    pub fn set_faults(&self, faults: Faults) {
        self.0.borrow_mut().faults = faults;
    }

    /// Flips a durable bit of `name` at `offset` (bit rot, for corruption tests).
    pub fn flip_durable_bit(&self, name: &str, offset: usize, bit: u8) {
        let mut fs = self.0.borrow_mut();
        let id = fs.names[name];
        fs.files[id].durable[offset] ^= 1 << (bit % 8);
    }

    /// The durable bytes of `name`.
    pub fn durable(&self, name: &str) -> Vec<u8> {
        let fs = self.0.borrow();
        fs.files[fs.names[name]].durable.clone()
    }

    /// The faults injected so far.
    pub fn injected(&self) -> Injected {
        self.0.borrow().injected
    }
}

/// A file of a [`SimDir`].
pub struct SimFile {
    fs: Rc<RefCell<Fs>>,
    id: usize,
    name: String,
}

impl Dir for SimDir {
    type File = SimFile;

    async fn create(&self, name: &str, size_bytes: u64) -> Result<SimFile, StorageError> {
        let mut fs = self.0.borrow_mut();
        fs.up("create", name)?;
        let capacity = fs.faults.capacity_bytes;
        if capacity != 0 && fs.used_bytes() + size_bytes > capacity {
            fs.injected.no_space += 1;
            return Err(StorageError::NoSpace {
                operation: "create",
                name: name.to_string(),
            });
        }
        assert!(!fs.names.contains_key(name), "create of existing `{name}`");
        let id = fs.files.len();
        fs.files.push(Data {
            durable: vec![0; size_bytes as usize],
            unsynced: Vec::new(),
            syncs_in_flight: 0,
            durable_writes_in_flight: Vec::new(),
            last_read_flipped: false,
        });
        fs.names.insert(name.to_string(), id);
        Ok(SimFile {
            fs: self.0.clone(),
            id,
            name: name.to_string(),
        })
    }

    async fn open(&self, name: &str) -> Result<SimFile, StorageError> {
        self.0.borrow().up("open", name)?;
        let id = self.0.borrow().id("open", name)?;
        Ok(SimFile {
            fs: self.0.clone(),
            id,
            name: name.to_string(),
        })
    }

    async fn list(&self) -> Result<Vec<String>, StorageError> {
        self.0.borrow().up("list", ".")?;
        Ok(self.0.borrow().names.keys().cloned().collect())
    }

    async fn remove(&self, name: &str) -> Result<(), StorageError> {
        let mut fs = self.0.borrow_mut();
        fs.up("remove", name)?;
        fs.id("remove", name)?;
        fs.names.remove(name);
        Ok(())
    }

    async fn rename(&self, from: &str, to: &str) -> Result<(), StorageError> {
        let mut fs = self.0.borrow_mut();
        fs.up("rename", from)?;
        let id = fs.id("rename", from)?;
        fs.names.remove(from);
        fs.names.insert(to.to_string(), id);
        Ok(())
    }

    async fn sync(&self) -> Result<(), StorageError> {
        let mut fs = self.0.borrow_mut();
        fs.up("fsync", ".")?;
        fs.durable_names = fs.names.clone();
        Ok(())
    }
}

impl SimFile {
    /// Issues a write (see [`File::write_at`]); returns its sequence number.
    fn issue_write(&self, offset: u64, bytes: &[u8]) -> Result<u64, StorageError> {
        assert!(
            (offset as usize).is_multiple_of(BLOCK_BYTES)
                && bytes.len().is_multiple_of(BLOCK_BYTES),
            "unaligned write"
        );
        let mut guard = self.fs.borrow_mut();
        let fs = &mut *guard;
        fs.up("write", &self.name)?;
        let end = offset as usize + bytes.len();
        let growth = end.saturating_sub(fs.files[self.id].size()) as u64;
        let capacity = fs.faults.capacity_bytes;
        // Only a write that grows its file needs space: blocks allocated already (written or
        // reserved) are overwritten in place, even on a device a crash left over-full (a
        // crash can bring back a removed file's name next to the file that replaced it).
        if capacity != 0 && growth > 0 && fs.used_bytes() + growth > capacity {
            fs.injected.no_space += 1;
            return Err(StorageError::NoSpace {
                operation: "write",
                name: self.name.clone(),
            });
        }
        let mut target = offset as usize;
        if fs.rng.chance(fs.faults.misdirect_per_million) {
            let shift = (1 + fs.rng.below(4) as usize) * BLOCK_BYTES;
            target = if fs.rng.below(2) == 0 {
                target + shift
            } else {
                target.saturating_sub(shift)
            };
            fs.injected.misdirected += 1;
        }
        let seq = fs.next_write;
        fs.next_write += 1;
        fs.files[self.id]
            .unsynced
            .push((seq, target, bytes.to_vec()));
        Ok(seq)
    }
}

impl File for SimFile {
    async fn write_at(&self, offset: u64, bytes: &[u8]) -> Result<(), StorageError> {
        self.issue_write(offset, bytes).map(drop)
    }

    /// As `O_DSYNC`: the write may take some polls (`sync_delay_polls_max`), so that two in
    /// flight return in either order; it fails with EIO by `sync_eio_per_million` (and
    /// then lands somehow, or not at all); when it returns it is durable, and nothing else
    /// is made durable by it.
    async fn write_durable_at(&self, offset: u64, bytes: &[u8]) -> Result<(), StorageError> {
        let seq = self.issue_write(offset, bytes)?;
        let (crashes, polls) = {
            let mut guard = self.fs.borrow_mut();
            let fs = &mut *guard;
            let in_flight = &mut fs.files[self.id].durable_writes_in_flight;
            in_flight.push(seq);
            fs.injected.overlapping_durable_writes += u64::from(in_flight.len() > 1);
            (fs.crashes, fs.delay_polls())
        };
        for _ in 0..polls {
            YieldOnce(false).await;
        }
        let mut guard = self.fs.borrow_mut();
        let fs = &mut *guard;
        let in_flight = &mut fs.files[self.id].durable_writes_in_flight;
        in_flight.retain(|other| *other != seq);
        fs.injected.durable_writes_out_of_order +=
            u64::from(in_flight.iter().any(|other| *other < seq));
        // The machine went down while this write was in flight: it never returns success
        // (and the crash decided what became of it).
        fs.up("write", &self.name)?;
        let data = &mut fs.files[self.id];
        let Some(index) = data.unsynced.iter().position(|(at, _, _)| *at == seq) else {
            if fs.crashes == crashes {
                // An fdatasync that began after it made it durable.
                return Ok(());
            }
            // A crash (with the machine still up) settled it: nothing is known of it.
            return Err(StorageError::Io {
                operation: "write",
                name: self.name.clone(),
                message: "simulated crash during an O_DSYNC write".to_string(),
            });
        };
        let (_, target, written) = data.unsynced.remove(index);
        if fs.rng.chance(fs.faults.sync_eio_per_million) {
            fs.land_somehow(self.id, target, written);
            fs.injected.sync_eio += 1;
            return Err(StorageError::Io {
                operation: "write",
                name: self.name.clone(),
                message: "simulated EIO".to_string(),
            });
        }
        apply(&mut fs.files[self.id].durable, target, &written);
        Ok(())
    }

    async fn sync(&self) -> Result<(), StorageError> {
        let (polls, covers) = {
            let mut guard = self.fs.borrow_mut();
            let fs = &mut *guard;
            fs.up("fdatasync", &self.name)?;
            let polls = fs.delay_polls();
            let data = &mut fs.files[self.id];
            data.syncs_in_flight += 1;
            let overlapping = data.syncs_in_flight > 1;
            fs.injected.overlapping_syncs += u64::from(overlapping);
            (polls, fs.next_write)
        };
        for _ in 0..polls {
            YieldOnce(false).await;
        }
        let mut guard = self.fs.borrow_mut();
        let fs = &mut *guard;
        fs.files[self.id].syncs_in_flight -= 1;
        // The machine went down while this sync was in flight: it never returns success.
        fs.up("fdatasync", &self.name)?;
        if fs.rng.chance(fs.faults.sync_eio_per_million) {
            // After a failed fdatasync nothing is known about the pages: some may be on disk.
            fs.settle(self.id);
            fs.injected.sync_eio += 1;
            return Err(StorageError::Io {
                operation: "fdatasync",
                name: self.name.clone(),
                message: "simulated EIO".to_string(),
            });
        }
        // The writes issued before this sync began are durable; later ones stay pending.
        let data = &mut fs.files[self.id];
        let (covered, later) = std::mem::take(&mut data.unsynced)
            .into_iter()
            .partition::<Vec<_>, _>(|(seq, _, _)| *seq < covers);
        for (_, offset, bytes) in covered {
            apply(&mut data.durable, offset, &bytes);
        }
        data.unsynced = later;
        Ok(())
    }

    async fn read_at(&self, offset: u64, len: usize) -> Result<Vec<u8>, StorageError> {
        let mut guard = self.fs.borrow_mut();
        let fs = &mut *guard;
        fs.up("read", &self.name)?;
        let data = &fs.files[self.id];
        let start = (offset as usize).min(data.size());
        let end = (start + len).min(data.size());
        let mut out = vec![0; end - start];
        let durable_end = data.durable.len().clamp(start, end);
        out[..durable_end - start].copy_from_slice(&data.durable[start..durable_end]);
        for (_, at, bytes) in &data.unsynced {
            // Overlay the part of each pending write that falls in [start, end).
            let from = (*at).max(start);
            let to = (at + bytes.len()).min(end);
            if from < to {
                out[from - start..to - start].copy_from_slice(&bytes[from - at..to - at]);
            }
        }
        // A flipped read is never followed by another, so two reads that agree are the
        // device's bytes. (Without this, one journal_faults seed in 20,000 flipped the same
        // bit in two reads in a row, and recovery rightly took the agreed bytes for damage.)
        let flip = !std::mem::take(&mut fs.files[self.id].last_read_flipped)
            && fs.rng.chance(fs.faults.read_flip_per_million);
        if !out.is_empty() && flip {
            fs.files[self.id].last_read_flipped = true;
            let bit = fs.rng.below(out.len() as u64 * 8) as usize;
            out[bit / 8] ^= 1 << (bit % 8);
            fs.injected.read_flips += 1;
        }
        Ok(out)
    }

    async fn size(&self) -> Result<u64, StorageError> {
        self.fs.borrow().up("size", &self.name)?;
        Ok(self.fs.borrow().files[self.id].size() as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::block_on;

    #[test]
    fn unsynced_writes_and_names_may_be_lost_synced_ones_never() {
        for seed in 0..64 {
            let dir = SimDir::new(Faults::default(), seed);
            block_on(async {
                let file = dir.create("a", 8192).await.expect("create");
                dir.sync().await.expect("dir sync");
                file.write_at(0, &[1; 4096]).await.expect("write");
                file.sync().await.expect("sync");
                file.write_at(4096, &[2; 4096]).await.expect("write");
                dir.create("b", 0).await.expect("create");
            });
            dir.crash();
            let durable = dir.durable("a");
            assert_eq!(&durable[..4096], &[1; 4096][..], "seed {seed}");
            let names = block_on(dir.list()).expect("list");
            assert!(
                names == ["a"] || names == ["a", "b"],
                "seed {seed}: {names:?}"
            );
        }
    }

    #[test]
    fn faults_are_injected_and_counted() {
        let faults = Faults {
            sync_eio_per_million: 1_000_000,
            read_flip_per_million: 1_000_000,
            capacity_bytes: 8192,
            misdirect_per_million: 0,
            sync_delay_polls_max: 0,
        };
        let dir = SimDir::new(faults, 1);
        block_on(async {
            let file = dir.create("a", 4096).await.expect("create");
            assert!(matches!(
                file.write_at(4096, &[1; 8192]).await,
                Err(StorageError::NoSpace { .. })
            ));
            file.write_at(0, &[0; 4096]).await.expect("write");
            assert!(matches!(file.sync().await, Err(StorageError::Io { .. })));
            let fresh = dir.create("b", 4096).await.expect("create");
            let read = fresh.read_at(0, 4096).await.expect("read");
            assert_eq!(read.iter().map(|b| b.count_ones()).sum::<u32>(), 1);
        });
        let injected = dir.injected();
        assert_eq!((injected.no_space, injected.sync_eio), (1, 1));
        assert_eq!(injected.read_flips, 1);
    }
}
