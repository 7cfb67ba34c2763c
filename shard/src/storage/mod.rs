//! The storage seam: what the journal and the snapshots need from a directory and its files.
//!
//! Three implementations, chosen by generics (never by `dyn`, so the hot path has no virtual
//! calls and no boxing):
//!
//! | implementation | where it runs | what it is for |
//! |---|---|---|
//! | [`dma::DmaDir`] | inside a glommio executor | the server: O_DIRECT `DmaFile`s over io_uring |
//! | [`std_fs::StdDir`] | any thread | tools (`ringflow journal inspect`) and test checkers |
//! | [`sim::SimDir`] | tests | a seeded simulation that injects faults |
//!
//! The traits use `async fn`: the real implementation waits on io_uring, the others finish at
//! once. Shards are single-threaded, so the futures need not be `Send`.
//!
//! Writes are positioned and block-aligned ([`BLOCK_BYTES`]); nothing written is durable until
//! [`File::sync`] (fdatasync) returns, except by [`File::write_durable_at`], which returns
//! when its own write is durable. Creating, renaming or removing a name is durable only
//! after [`Dir::sync`] (fsync of the directory).

pub mod dma;
pub mod sim;
pub mod std_fs;

/// Writes start and end on multiples of this many bytes: the O_DIRECT alignment.
pub const BLOCK_BYTES: usize = 4096;

/// What can go wrong below the journal. A failed write or sync stops the shard: it is never
/// retried, since the kernel may have dropped the dirty pages already.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum StorageError {
    /// The device ran out of space.
    #[error(
        "no space left on the device (ENOSPC) during {operation} of `{name}`: free space on \
         its filesystem"
    )]
    NoSpace {
        /// What was being done.
        operation: &'static str,
        /// The file.
        name: String,
    },
    /// The file does not exist.
    #[error("`{name}` does not exist ({operation})")]
    NotFound {
        /// What was being done.
        operation: &'static str,
        /// The file.
        name: String,
    },
    /// Any other I/O error (EIO from fdatasync, permissions, ...).
    #[error("I/O error during {operation} of `{name}`: {message}")]
    Io {
        /// What was being done.
        operation: &'static str,
        /// The file.
        name: String,
        /// What the system said.
        message: String,
    },
}

impl StorageError {
    /// Maps an operating-system error.
    pub fn from_io(operation: &'static str, name: &str, error: &std::io::Error) -> StorageError {
        let name = name.to_string();
        match (error.raw_os_error(), error.kind()) {
            (Some(code), _) if code == libc::ENOSPC => StorageError::NoSpace { operation, name },
            (_, std::io::ErrorKind::NotFound) => StorageError::NotFound { operation, name },
            _ => StorageError::Io {
                operation,
                name,
                message: error.to_string(),
            },
        }
    }
}

/// A directory of files (one shard's journal, or its snapshots).
#[allow(async_fn_in_trait)] // Shards are single-threaded: these futures never cross threads.
pub trait Dir {
    /// A file in it.
    type File: File;
    /// Creates `name` (it must not exist) and reserves `size_bytes` for it, zero-filled. The
    /// name is durable after [`Dir::sync`].
    async fn create(&self, name: &str, size_bytes: u64) -> Result<Self::File, StorageError>;
    /// Opens an existing file for reading and writing.
    async fn open(&self, name: &str) -> Result<Self::File, StorageError>;
    /// The names in the directory, sorted.
    async fn list(&self) -> Result<Vec<String>, StorageError>;
    /// Removes a name (durable after [`Dir::sync`]).
    async fn remove(&self, name: &str) -> Result<(), StorageError>;
    /// Renames `from` to `to`, replacing `to` (durable after [`Dir::sync`]).
    async fn rename(&self, from: &str, to: &str) -> Result<(), StorageError>;
    /// Makes the names durable (fsync of the directory).
    async fn sync(&self) -> Result<(), StorageError>;
}

/// One file, read and written at positions.
#[allow(async_fn_in_trait)] // See `Dir`.
pub trait File {
    /// Writes `bytes` at `offset`; both are multiples of [`BLOCK_BYTES`].
    async fn write_at(&self, offset: u64, bytes: &[u8]) -> Result<(), StorageError>;
    /// Makes every write issued so far durable (fdatasync).
    async fn sync(&self) -> Result<(), StorageError>;
    /// Writes `bytes` at `offset` (as [`File::write_at`]) and returns once that write is
    /// durable, whatever else is in flight: the journal's `JournalSync::Dsync`. Files opened
    /// `O_DSYNC` do it in the write; by default it is a write and an fdatasync.
    async fn write_durable_at(&self, offset: u64, bytes: &[u8]) -> Result<(), StorageError> {
        self.write_at(offset, bytes).await?;
        self.sync().await
    }
    /// Reads up to `len` bytes at `offset` (fewer at the end of the file).
    async fn read_at(&self, offset: u64, len: usize) -> Result<Vec<u8>, StorageError>;
    /// The file's size in bytes.
    async fn size(&self) -> Result<u64, StorageError>;
}

/// Reads a whole file in chunks of `chunk_bytes`.
pub async fn read_whole<F: File>(file: &F, chunk_bytes: usize) -> Result<Vec<u8>, StorageError> {
    let size = file.size().await?;
    let mut bytes = Vec::with_capacity(size as usize);
    while (bytes.len() as u64) < size {
        let want = chunk_bytes.min((size - bytes.len() as u64) as usize);
        let chunk = file.read_at(bytes.len() as u64, want).await?;
        if chunk.is_empty() {
            break;
        }
        bytes.extend_from_slice(&chunk);
    }
    Ok(bytes)
}

/// Runs a future that never waits (the simulated and std storage) to its end on this thread.
/// Panics if it does wait: that would be a glommio future outside its executor.
pub fn block_on<F: std::future::Future>(future: F) -> F::Output {
    let mut future = std::pin::pin!(future);
    let mut context = std::task::Context::from_waker(std::task::Waker::noop());
    match future.as_mut().poll(&mut context) {
        std::task::Poll::Ready(output) => output,
        std::task::Poll::Pending => panic!("block_on: a future waited; use an executor"),
    }
}
