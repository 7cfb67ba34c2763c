//! The storage seam: what the journal needs from a file, with a simulated implementation that
//! injects faults by seed (the real one, over glommio's `DmaFile`, comes with the runtime).
//!
//! The simulation keeps two images of the file: what is durable, and the writes issued since
//! the last successful sync. A crash keeps the durable image and does something to each
//! unsynced write: drops it, applies it, tears it at a sector boundary, or replaces sectors
//! with garbage. `sync` may fail with EIO; writes past the capacity fail with ENOSPC.

/// Sector size of the simulated device: the unit in which a crash tears a write.
pub const SECTOR_BYTES: usize = 512;

/// What can go wrong below the journal. Every one of these stops the shard: a failed write or
/// sync is never retried, since the kernel may have dropped the dirty pages already.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum StorageError {
    /// The device ran out of space.
    #[error("no space left on the device (ENOSPC) writing {len} bytes at offset {offset}")]
    NoSpace {
        /// Where the write was to go.
        offset: u64,
        /// How long it was.
        len: usize,
    },
    /// fdatasync or a write reported an I/O error.
    #[error("I/O error (EIO) during {operation}")]
    Io {
        /// What was being done.
        operation: &'static str,
    },
}

/// One file, as the journal uses it.
pub trait Storage {
    /// Writes `bytes` at `offset` (not durable until [`sync`](Storage::sync) succeeds).
    fn write(&mut self, offset: u64, bytes: &[u8]) -> Result<(), StorageError>;
    /// Makes every write issued so far durable (fdatasync).
    fn sync(&mut self) -> Result<(), StorageError>;
    /// Reads the whole file as the process sees it now.
    fn read_all(&mut self) -> Result<Vec<u8>, StorageError>;
}

/// Which faults the simulation injects, as chances per operation in parts per thousand.
#[derive(Clone, Copy, Debug)]
pub struct Faults {
    /// Chance that a sync fails with EIO.
    pub sync_eio_per_mille: u32,
    /// File capacity in bytes: writes past it fail with ENOSPC.
    pub capacity_bytes: usize,
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
}

/// The simulated file.
pub struct SimStorage {
    durable: Vec<u8>,
    unsynced: Vec<(usize, Vec<u8>)>,
    faults: Faults,
    rng: SimRng,
}

impl SimStorage {
    /// An empty file with these faults and this seed.
    pub fn new(faults: Faults, seed: u64) -> SimStorage {
        SimStorage {
            durable: Vec::new(),
            unsynced: Vec::new(),
            faults,
            rng: SimRng::new(seed),
        }
    }

    /// A crash: the durable image survives; each unsynced write is dropped, kept, torn at a
    /// sector boundary, or has sectors replaced by garbage.
    pub fn crash(&mut self) {
        for (offset, bytes) in std::mem::take(&mut self.unsynced) {
            match self.rng.below(4) {
                0 => {}
                1 => apply(&mut self.durable, offset, &bytes),
                2 => {
                    let sectors = bytes.len().div_ceil(SECTOR_BYTES) as u64;
                    let kept =
                        (self.rng.below(sectors + 1) as usize * SECTOR_BYTES).min(bytes.len());
                    apply(&mut self.durable, offset, &bytes[..kept]);
                }
                _ => {
                    let mut damaged = bytes.clone();
                    for sector in damaged.chunks_mut(SECTOR_BYTES) {
                        if self.rng.below(3) == 0 {
                            sector
                                .iter_mut()
                                .for_each(|byte| *byte = self.rng.next_u64() as u8);
                        }
                    }
                    apply(&mut self.durable, offset, &damaged);
                }
            }
        }
    }

    /// Damages durable bytes at `offset` (bit rot, for corruption tests).
    pub fn flip_durable_bit(&mut self, offset: usize, bit: u8) {
        self.durable[offset] ^= 1 << (bit % 8);
    }

    /// The durable image.
    pub fn durable(&self) -> &[u8] {
        &self.durable
    }
}

fn apply(image: &mut Vec<u8>, offset: usize, bytes: &[u8]) {
    if image.len() < offset + bytes.len() {
        image.resize(offset + bytes.len(), 0);
    }
    image[offset..offset + bytes.len()].copy_from_slice(bytes);
}

impl Storage for SimStorage {
    fn write(&mut self, offset: u64, bytes: &[u8]) -> Result<(), StorageError> {
        let start = offset as usize;
        if start + bytes.len() > self.faults.capacity_bytes {
            return Err(StorageError::NoSpace {
                offset,
                len: bytes.len(),
            });
        }
        self.unsynced.push((start, bytes.to_vec()));
        Ok(())
    }

    fn sync(&mut self) -> Result<(), StorageError> {
        if self.rng.below(1000) < u64::from(self.faults.sync_eio_per_mille) {
            // After a failed fdatasync nothing is known about the pages: some may be on disk.
            self.crash_some_writes();
            return Err(StorageError::Io {
                operation: "fdatasync",
            });
        }
        for (offset, bytes) in std::mem::take(&mut self.unsynced) {
            apply(&mut self.durable, offset, &bytes);
        }
        Ok(())
    }

    fn read_all(&mut self) -> Result<Vec<u8>, StorageError> {
        let mut image = self.durable.clone();
        for (offset, bytes) in &self.unsynced {
            apply(&mut image, *offset, bytes);
        }
        Ok(image)
    }
}

impl SimStorage {
    /// What a failed sync leaves: each pending write on disk whole, in part, or not at all.
    fn crash_some_writes(&mut self) {
        self.crash();
    }
}
