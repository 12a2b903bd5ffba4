//! `archive-posix`: the plain-disk backend. Files live at `<prefix>/<key>`; writes are staged in the
//! target directory and linked in only when complete and durable; reads stream from a reader thread.
//!
//! Module map: [`beneath`] (every path resolved from the root's handle, never through a symlink; new
//! directories made durable), [`staging`] (atomic, durable, write-once writes), [`dir_sync`] (one
//! directory fsync shared by concurrent writes), [`adopt`] (PATCH: moving a checked server-side file
//! in), [`reader`] (streaming reads), [`cached`] (reads and stats of cached files answered without the
//! blocking pool), [`walk`] (listing and the start-up
//! sweep of interrupted writes), [`instance`] (which process owns a partial file, so that several
//! processes can share a prefix), [`error`] (precise private errors).

mod adopt;
mod beneath;
mod cached;
mod dir_sync;
mod error;
mod instance;
mod reader;
mod staging;
mod walk;

use archive_core::{
    ArchiveBackend, ByteStream, Capabilities, Error, FileStatus, GetResult, HsmState, Key,
    ListEntry, PutOptions, PutOutcome, ReadRange, Result,
};
use async_trait::async_trait;
use beneath::{split_parent, RootDir};
use error::PosixError;
use instance::Instance;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

#[doc(hidden)]
pub use beneath::{durability_events, force_component_walk, record_syncs, synced, DurabilityEvent};
#[doc(hidden)]
pub use cached::answered_inline;
pub use instance::INSTANCES_DIR;
pub use staging::{is_partial_name, CHUNK_SIZE};
pub use walk::{sweep_partials, STATE_DIR_PREFIX};

/// The plain-disk backend rooted at a prefix directory. Keys are resolved from a handle on that
/// directory and never through a symlink: a key whose path holds one names no file (404 for reads and
/// deletes, 400 for writes).
#[derive(Debug, Clone)]
pub struct PosixBackend {
    root: RootDir,
    /// This process's registration in the root; names the owner of every partial file it writes.
    instance: Arc<Instance>,
}

impl PosixBackend {
    /// Opens (creating if needed) the archive rooted at `root` and registers this process as one of
    /// its users (see [`instance`]). The root is made absolute so that `X-Pacifica-File` shows a full
    /// path whatever the working directory.
    pub fn new(root: impl Into<PathBuf>) -> std::io::Result<Self> {
        let root = root.into();
        std::fs::create_dir_all(&root)?;
        let root = std::path::absolute(&root)?;
        let instance = Arc::new(Instance::register(&root)?);
        Ok(PosixBackend {
            root: RootDir::open(root)?,
            instance,
        })
    }

    /// The directory the archive lives in.
    pub fn root(&self) -> &Path {
        self.root.path()
    }

    /// The on-disk path of a key (for messages: files are opened through the root's handle).
    pub fn path_of(&self, key: &Key) -> PathBuf {
        self.root.path().join(key.as_str())
    }

    /// Removes a key's file only if it is still the inode `ino`, and fsyncs its directory (blocking).
    /// For a tier releasing a disk copy it has copied elsewhere; resolved like every key, never
    /// through a symlink.
    pub fn remove_if_inode(&self, key: &Key, ino: u64) -> std::io::Result<Removal> {
        let missing = |e: &std::io::Error| {
            matches!(
                e.kind(),
                std::io::ErrorKind::NotFound | std::io::ErrorKind::NotADirectory
            ) || beneath::is_symlink_refusal(e)
        };
        let (parent, name) = split_parent(key.as_str());
        let found = self
            .root
            .open_dir(parent)
            .and_then(|dir| Ok((beneath::stat_entry(dir.as_fd(), name)?, dir)));
        let (st, dir) = match found {
            Ok(found) => found,
            Err(e) if missing(&e) => return Ok(Removal::Missing),
            Err(e) => return Err(e),
        };
        if beneath::file_type(&st) != rustix::fs::FileType::RegularFile || st.st_ino != ino {
            return Ok(Removal::Replaced);
        }
        rustix::fs::unlinkat(&dir, name, rustix::fs::AtFlags::empty())?;
        beneath::sync_dir(dir.as_fd())?;
        Ok(Removal::Removed)
    }

    /// The metadata of a key's entry itself, looked up without following any symlink (blocking). A
    /// path through a symlink names nothing in the archive: `NotFound`.
    pub fn metadata(&self, key: &Key) -> std::io::Result<std::fs::Metadata> {
        self.root.metadata(key.as_str()).map_err(|e| {
            if beneath::is_symlink_refusal(&e) {
                std::io::Error::new(std::io::ErrorKind::NotFound, e)
            } else {
                e
            }
        })
    }
}

/// What [`PosixBackend::remove_if_inode`] found under the key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Removal {
    /// The file was that inode and is removed, durably.
    Removed,
    /// Nothing under the key (a path through a symlink names nothing either).
    Missing,
    /// Something else is there now; it was left alone.
    Replaced,
}

/// Runs blocking filesystem work off the async runtime.
pub(crate) async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T> + Send + 'static,
) -> Result<T> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|join| Error::backend("posix", join))?
}

/// The status of a regular file from its metadata (directories are not files).
pub fn status_from_metadata(
    key: &Key,
    path: &Path,
    meta: &std::fs::Metadata,
) -> Result<FileStatus> {
    use std::os::unix::fs::MetadataExt;
    if !meta.is_file() {
        return Err(Error::NotFound {
            key: key.to_string(),
        });
    }
    let ctime = UNIX_EPOCH + Duration::new(meta.ctime().max(0) as u64, meta.ctime_nsec() as u32);
    Ok(FileStatus {
        size: meta.len(),
        mtime: meta.modified().unwrap_or(UNIX_EPOCH),
        ctime,
        state: HsmState::Resident,
        bytes_per_level: vec![meta.len()],
        location: path.display().to_string(),
    })
}

#[async_trait]
impl ArchiveBackend for PosixBackend {
    fn name(&self) -> &'static str {
        "posix"
    }

    fn capabilities(&self) -> Capabilities {
        // All state is in the file system: several processes may share a prefix.
        Capabilities {
            tape_tier: false,
            shared_by_processes: true,
        }
    }

    async fn put(&self, key: &Key, body: ByteStream, options: PutOptions) -> Result<PutOutcome> {
        staging::put_stream(
            Arc::clone(&self.instance),
            key.clone(),
            self.root.clone(),
            body,
            options,
        )
        .await
    }

    async fn get(&self, key: &Key, range: ReadRange) -> Result<GetResult> {
        if let Some(answer) = cached::read(&self.root, key, range) {
            return answer;
        }
        reader::open(key.clone(), self.root.clone(), range).await
    }

    async fn status(&self, key: &Key) -> Result<FileStatus> {
        if let Some(answer) = cached::status(&self.root, key) {
            return answer;
        }
        let (key, backend) = (key.clone(), self.clone());
        blocking(move || {
            let path = backend.path_of(&key);
            let meta = backend
                .metadata(&key)
                .map_err(|e| PosixError::Status(path.clone(), e).into_core(&key))?;
            status_from_metadata(&key, &path, &meta)
        })
        .await
    }

    async fn stage(&self, key: &Key) -> Result<()> {
        // Plain disk: everything is staged already; the file must exist all the same.
        self.status(key).await.map(drop)
    }

    async fn adopt(&self, key: &Key, source: &Path, overwrite: bool) -> Result<()> {
        let (key, root, source) = (key.clone(), self.root.clone(), source.to_path_buf());
        let instance = Arc::clone(&self.instance);
        blocking(move || adopt::adopt(&key, &root, &instance, &source, overwrite)).await
    }

    /// Removes the file, then the directories above it that it leaves empty (up to the root), so that a
    /// deleted `a/b` does not keep the name `a` from being stored. A write racing into such a directory
    /// keeps it (it is not empty) or recreates it (the write's open retries after creating parents).
    async fn delete(&self, key: &Key) -> Result<()> {
        let (key, root) = (key.clone(), self.root.clone());
        blocking(move || {
            let path = root.path().join(key.as_str());
            let err = |e| PosixError::Remove(path.clone(), e).into_core(&key);
            let (parent, name) = split_parent(key.as_str());
            let dir = root.open_dir(parent).map_err(err)?;
            let st = beneath::stat_entry(dir.as_fd(), name).map_err(err)?;
            if beneath::file_type(&st) != rustix::fs::FileType::RegularFile {
                return Err(Error::NotFound {
                    key: key.to_string(),
                });
            }
            rustix::fs::unlinkat(&dir, name, rustix::fs::AtFlags::empty())
                .map_err(|e| err(e.into()))?;
            beneath::sync_dir(dir.as_fd()).map_err(err)?;
            let mut emptied = parent;
            while !emptied.is_empty() {
                let (above, name) = split_parent(emptied);
                // Fails (and stops) at the first directory that is not empty.
                let removed = root.open_dir(above).and_then(|up| {
                    Ok(rustix::fs::unlinkat(
                        &up,
                        name,
                        rustix::fs::AtFlags::REMOVEDIR,
                    )?)
                });
                if removed.is_err() {
                    break;
                }
                emptied = above;
            }
            Ok(())
        })
        .await
    }

    async fn list(&self, prefix: &str) -> Result<Vec<ListEntry>> {
        let (root, prefix) = (self.root.clone(), prefix.to_string());
        blocking(move || walk::list(&root, &prefix)).await
    }

    async fn list_page(
        &self,
        prefix: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<ListEntry>> {
        let (root, prefix) = (self.root.clone(), prefix.to_string());
        let after = after.map(str::to_string);
        blocking(move || walk::list_page(&root, &prefix, after.as_deref(), limit)).await
    }
}

/// Seconds since the epoch as a float, for logs and headers.
pub fn unix_seconds(t: SystemTime) -> f64 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => d.as_secs_f64(),
        Err(e) => -e.duration().as_secs_f64(),
    }
}
