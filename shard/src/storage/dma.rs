//! The directory through glommio: O_DIRECT `DmaFile`s whose reads, writes and fdatasyncs go
//! through the executor's io_uring. Only usable inside a glommio executor.
//!
//! Segments are reserved with `fallocate` (`DmaFile::pre_allocate`), so appends do not
//! allocate blocks; the first write to each block still converts an unwritten extent, which
//! the filesystem journals (see `bench/RESULTS.md` for what that costs).

use std::path::{Path, PathBuf};

use glommio::io::{DmaFile, OpenOptions};

use super::{BLOCK_BYTES, Dir, File, StorageError};

fn error(operation: &'static str, name: &str, error: glommio::GlommioError<()>) -> StorageError {
    // glommio's conversion to io::Error keeps the kind but drops the OS error code, which
    // tells a full disk apart; keep the code where there is one.
    let error = match error.raw_os_error() {
        Some(code) => std::io::Error::from_raw_os_error(code),
        None => error.into(),
    };
    StorageError::from_io(operation, name, &error)
}

/// A directory served by the executor's io_uring.
pub struct DmaDir {
    path: PathBuf,
    dir: glommio::io::Directory,
    /// Open files `O_DSYNC` (see [`DmaDir::write_through`]).
    dsync: bool,
}

impl DmaDir {
    /// Opens (creating if missing) the directory at `path`.
    pub async fn open(path: &Path) -> Result<DmaDir, StorageError> {
        let name = path.display().to_string();
        std::fs::create_dir_all(path)
            .map_err(|e| StorageError::from_io("create_dir", &name, &e))?;
        let dir = glommio::io::Directory::open(path)
            .await
            .map_err(|e| error("open of the directory", &name, e))?;
        Ok(DmaDir {
            path: path.to_path_buf(),
            dir,
            dsync: false,
        })
    }

    /// Opens and creates files `O_DSYNC` from now on: each of their writes returns once it is
    /// durable (the device's cache flushed, or the write sent with FUA), so
    /// [`File::write_durable_at`] is one write, with no fdatasync. For the journal's
    /// `JournalSync::Dsync`.
    pub fn write_through(mut self, dsync: bool) -> DmaDir {
        self.dsync = dsync;
        self
    }

    fn options(&self) -> OpenOptions {
        let mut options = OpenOptions::new();
        options.read(true).write(true);
        if self.dsync {
            options.custom_flags(libc::O_DSYNC);
        }
        options
    }
}

/// A file of a [`DmaDir`].
pub struct DmaFileHandle {
    file: DmaFile,
    name: String,
    /// Opened `O_DSYNC`: every write is durable when it returns.
    dsync: bool,
}

impl Dir for DmaDir {
    type File = DmaFileHandle;

    async fn create(&self, name: &str, size_bytes: u64) -> Result<DmaFileHandle, StorageError> {
        let file = self
            .options()
            .create_new(true)
            .dma_open(self.path.join(name))
            .await
            .map_err(|e| error("create", name, e))?;
        if size_bytes > 0 {
            file.pre_allocate(size_bytes, false)
                .await
                .map_err(|e| error("fallocate", name, e))?;
        }
        Ok(DmaFileHandle {
            file,
            name: name.to_string(),
            dsync: self.dsync,
        })
    }

    async fn open(&self, name: &str) -> Result<DmaFileHandle, StorageError> {
        let file = self
            .options()
            .dma_open(self.path.join(name))
            .await
            .map_err(|e| error("open", name, e))?;
        Ok(DmaFileHandle {
            file,
            name: name.to_string(),
            dsync: self.dsync,
        })
    }

    async fn list(&self) -> Result<Vec<String>, StorageError> {
        super::std_fs::list(&self.path)
    }

    async fn remove(&self, name: &str) -> Result<(), StorageError> {
        glommio::io::remove(self.path.join(name))
            .await
            .map_err(|e| error("remove", name, e))
    }

    async fn rename(&self, from: &str, to: &str) -> Result<(), StorageError> {
        glommio::io::rename(self.path.join(from), self.path.join(to))
            .await
            .map_err(|e| error("rename", from, e))
    }

    async fn sync(&self) -> Result<(), StorageError> {
        let name = self.path.display().to_string();
        self.dir
            .sync()
            .await
            .map_err(|e| error("fsync of the directory", &name, e))
    }
}

impl File for DmaFileHandle {
    async fn write_at(&self, offset: u64, bytes: &[u8]) -> Result<(), StorageError> {
        assert!(
            (offset as usize).is_multiple_of(BLOCK_BYTES)
                && bytes.len().is_multiple_of(BLOCK_BYTES),
            "unaligned write"
        );
        let mut buffer = self.file.alloc_dma_buffer(bytes.len());
        buffer.as_bytes_mut().copy_from_slice(bytes);
        let written = self
            .file
            .write_at(buffer, offset)
            .await
            .map_err(|e| error("write", &self.name, e))?;
        if written != bytes.len() {
            // O_DIRECT writes to a preallocated file are not short unless the device is in
            // trouble; a partial batch is never completed by a second write.
            return Err(StorageError::Io {
                operation: "write",
                name: self.name.clone(),
                message: format!("short write: {written} of {} bytes", bytes.len()),
            });
        }
        Ok(())
    }

    async fn write_durable_at(&self, offset: u64, bytes: &[u8]) -> Result<(), StorageError> {
        self.write_at(offset, bytes).await?;
        if !self.dsync {
            self.sync().await?;
        }
        Ok(())
    }

    async fn sync(&self) -> Result<(), StorageError> {
        self.file
            .fdatasync()
            .await
            .map_err(|e| error("fdatasync", &self.name, e))
    }

    async fn read_at(&self, offset: u64, len: usize) -> Result<Vec<u8>, StorageError> {
        let read = self
            .file
            .read_at(offset, len)
            .await
            .map_err(|e| error("read", &self.name, e))?;
        Ok(read.to_vec())
    }

    async fn size(&self) -> Result<u64, StorageError> {
        self.file
            .file_size()
            .await
            .map_err(|e| error("stat", &self.name, e))
    }
}
