//! `archive-posix`: the plain-disk backend. Files live at `<prefix>/<key>`; writes are staged in the
//! target directory and linked in only when complete and durable; reads stream from a reader thread.
//!
//! Module map: [`staging`] (atomic, durable, write-once writes), [`reader`] (streaming reads),
//! [`walk`] (listing and the start-up sweep of interrupted writes), [`instance`] (which process owns a
//! partial file, so that several processes can share a prefix), [`error`] (precise private errors).

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
use error::PosixError;
use instance::Instance;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

pub use instance::INSTANCES_DIR;
pub use staging::{is_partial_name, CHUNK_SIZE};
pub use walk::{sweep_partials, STATE_DIR_PREFIX};

/// The plain-disk backend rooted at a prefix directory.
#[derive(Debug, Clone)]
pub struct PosixBackend {
    root: PathBuf,
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
        Ok(PosixBackend { root, instance })
    }

    /// The directory the archive lives in.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The on-disk path of a key.
    pub fn path_of(&self, key: &Key) -> PathBuf {
        self.root.join(key.as_str())
    }
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
            self.path_of(key),
            body,
            options,
        )
        .await
    }

    async fn get(&self, key: &Key, range: ReadRange) -> Result<GetResult> {
        reader::open(key.clone(), self.path_of(key), range).await
    }

    async fn status(&self, key: &Key) -> Result<FileStatus> {
        let (key, path) = (key.clone(), self.path_of(key));
        blocking(move || {
            let meta = std::fs::metadata(&path)
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
        staging::adopt(
            Arc::clone(&self.instance),
            key.clone(),
            self.path_of(key),
            source.to_path_buf(),
            overwrite,
        )
        .await
    }

    /// Removes the file, then the directories above it that it leaves empty (up to the root), so that a
    /// deleted `a/b` does not keep the name `a` from being stored. A write racing into such a directory
    /// keeps it (it is not empty) or recreates it (the write's open retries after creating parents).
    async fn delete(&self, key: &Key) -> Result<()> {
        let (key, path, root) = (key.clone(), self.path_of(key), self.root.clone());
        blocking(move || {
            let meta = std::fs::symlink_metadata(&path)
                .map_err(|e| PosixError::Remove(path.clone(), e).into_core(&key))?;
            if !meta.is_file() {
                return Err(Error::NotFound {
                    key: key.to_string(),
                });
            }
            std::fs::remove_file(&path)
                .map_err(|e| PosixError::Remove(path.clone(), e).into_core(&key))?;
            match staging::sync_dir(path.parent().unwrap_or(Path::new("/"))) {
                // A concurrent delete of the last sibling pruned the directory: the file is gone.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                other => other.map_err(|e| PosixError::Sync(path.clone(), e).into_core(&key))?,
            }
            let mut dir = path.parent();
            while let Some(d) = dir.filter(|d| *d != root && d.starts_with(&root)) {
                // Fails (and stops) at the first directory that is not empty.
                if std::fs::remove_dir(d).is_err() {
                    break;
                }
                dir = d.parent();
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
