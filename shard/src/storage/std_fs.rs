//! The directory through the standard library's blocking calls: for tools that read a data
//! directory (`ringflow journal inspect`) and for test checkers, outside any executor.

use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use super::{Dir, File, StorageError};

/// A directory on disk, used with blocking calls.
pub struct StdDir {
    path: PathBuf,
}

impl StdDir {
    /// The directory at `path` (created if missing).
    pub fn open(path: &Path) -> Result<StdDir, StorageError> {
        std::fs::create_dir_all(path).map_err(|error| {
            StorageError::from_io("create_dir", &path.display().to_string(), &error)
        })?;
        Ok(StdDir {
            path: path.to_path_buf(),
        })
    }

    /// The directory at `path`, which must exist (for read-only tools).
    pub fn existing(path: &Path) -> Result<StdDir, StorageError> {
        if !path.is_dir() {
            let name = path.display().to_string();
            return Err(StorageError::NotFound {
                operation: "open of the directory",
                name,
            });
        }
        Ok(StdDir {
            path: path.to_path_buf(),
        })
    }

    /// The directory's path.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// A file of a [`StdDir`].
pub struct StdFile {
    file: std::fs::File,
    name: String,
}

impl Dir for StdDir {
    type File = StdFile;

    async fn create(&self, name: &str, size_bytes: u64) -> Result<StdFile, StorageError> {
        let path = self.path.join(name);
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&path)
            .map_err(|error| StorageError::from_io("create", name, &error))?;
        file.set_len(size_bytes)
            .map_err(|error| StorageError::from_io("set_len", name, &error))?;
        Ok(StdFile {
            file,
            name: name.to_string(),
        })
    }

    async fn open(&self, name: &str) -> Result<StdFile, StorageError> {
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(self.path.join(name))
            .map_err(|error| StorageError::from_io("open", name, &error))?;
        Ok(StdFile {
            file,
            name: name.to_string(),
        })
    }

    async fn list(&self) -> Result<Vec<String>, StorageError> {
        list(&self.path)
    }

    async fn remove(&self, name: &str) -> Result<(), StorageError> {
        std::fs::remove_file(self.path.join(name))
            .map_err(|error| StorageError::from_io("remove", name, &error))
    }

    async fn rename(&self, from: &str, to: &str) -> Result<(), StorageError> {
        std::fs::rename(self.path.join(from), self.path.join(to))
            .map_err(|error| StorageError::from_io("rename", from, &error))
    }

    async fn sync(&self) -> Result<(), StorageError> {
        let name = self.path.display().to_string();
        std::fs::File::open(&self.path)
            .and_then(|dir| dir.sync_all())
            .map_err(|error| StorageError::from_io("fsync of the directory", &name, &error))
    }
}

/// The sorted names of the plain files in `path`.
pub fn list(path: &Path) -> Result<Vec<String>, StorageError> {
    let name = path.display().to_string();
    let entries =
        std::fs::read_dir(path).map_err(|error| StorageError::from_io("list", &name, &error))?;
    let mut names = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|error| StorageError::from_io("list", &name, &error))?;
        let is_file = entry.file_type().is_ok_and(|kind| kind.is_file());
        if let (true, Some(file_name)) = (is_file, entry.file_name().to_str()) {
            names.push(file_name.to_string());
        }
    }
    names.sort();
    Ok(names)
}

impl File for StdFile {
    async fn write_at(&self, offset: u64, bytes: &[u8]) -> Result<(), StorageError> {
        self.file
            .write_all_at(bytes, offset)
            .map_err(|error| StorageError::from_io("write", &self.name, &error))
    }

    async fn sync(&self) -> Result<(), StorageError> {
        self.file
            .sync_data()
            .map_err(|error| StorageError::from_io("fdatasync", &self.name, &error))
    }

    async fn read_at(&self, offset: u64, len: usize) -> Result<Vec<u8>, StorageError> {
        let mut buffer = vec![0; len];
        let mut filled = 0;
        while filled < len {
            let read = self
                .file
                .read_at(&mut buffer[filled..], offset + filled as u64)
                .map_err(|error| StorageError::from_io("read", &self.name, &error))?;
            if read == 0 {
                break;
            }
            filled += read;
        }
        buffer.truncate(filled);
        Ok(buffer)
    }

    async fn size(&self) -> Result<u64, StorageError> {
        let metadata = self
            .file
            .metadata()
            .map_err(|error| StorageError::from_io("stat", &self.name, &error))?;
        Ok(metadata.len())
    }
}
