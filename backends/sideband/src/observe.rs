//! A file's state as the backend sees it: the file system says whether the file exists and which inode
//! it is; the catalog says, for that inode, whether it is online and which archive copies it has. The
//! catalog is fed asynchronously and lags the file system, so a file whose inode the catalog does not
//! know (yet) is reported from the file system: on disk, resident.

use crate::catalog::{ArchiveCopy, CatalogEntry};
use crate::error::{SidebandError, BACKEND};
use crate::SidebandBackend;
use archive_core::{Error, FileStatus, HsmState, Key, Result};
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// One existing file: its path on the mount, its status from the file system, and the catalog's
/// entry for the same inode when there is one.
#[derive(Debug, Clone)]
pub(crate) struct Observed {
    pub(crate) path: PathBuf,
    disk: FileStatus,
    entry: Option<CatalogEntry>,
}

fn unix_time(secs: i64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(secs.max(0) as u64)
}

impl Observed {
    /// Readable without a stage. An empty file has nothing to stage whatever the catalog says.
    pub(crate) fn online(&self) -> bool {
        self.entry.as_ref().is_none_or(|e| e.online || e.size == 0)
    }

    /// The lowest-numbered non-stale archive copy the catalog knows.
    pub(crate) fn copy(&self) -> Option<&ArchiveCopy> {
        self.entry.as_ref().and_then(|e| e.copy.as_ref())
    }

    /// Whether the catalog knows this file's inode yet.
    pub(crate) fn catalogued(&self) -> bool {
        self.entry.is_some()
    }

    /// The file's status: from the catalog entry of its inode, else from the file system.
    pub(crate) fn status(&self) -> FileStatus {
        let Some(entry) = &self.entry else {
            return self.disk.clone();
        };
        let size = entry.size;
        let (state, bytes_per_level) = match (self.online(), entry.copy.is_some()) {
            (false, _) => (HsmState::Migrated, vec![0, size]),
            (true, true) => (HsmState::Premigrated, vec![size, size]),
            (true, false) => (HsmState::Resident, vec![size]),
        };
        FileStatus {
            size,
            mtime: unix_time(entry.modify_time),
            ctime: unix_time(entry.create_time),
            state,
            bytes_per_level,
            location: self.disk.location.clone(),
        }
    }
}

impl SidebandBackend {
    /// Observes many files: one catalog query per batch, one blocking pass over the file system.
    /// The outer error is the catalog's (it concerns every key); the inner ones are per file.
    pub(crate) async fn observe(
        &self,
        keys: &[Key],
    ) -> std::result::Result<Vec<Result<Observed>>, SidebandError> {
        let disk = self.disk.clone();
        let owned = keys.to_vec();
        let on_disk = tokio::task::spawn_blocking(move || {
            owned
                .iter()
                .map(|key| {
                    let path = disk.path_of(key);
                    let meta = disk.metadata(key).map_err(|e| match e.kind() {
                        std::io::ErrorKind::NotFound | std::io::ErrorKind::NotADirectory => {
                            Error::NotFound {
                                key: key.to_string(),
                            }
                        }
                        _ => Error::backend(
                            BACKEND,
                            format!("Can't get file status of '{}': {e}", path.display()),
                        ),
                    })?;
                    let status = archive_posix::status_from_metadata(key, &path, &meta)?;
                    Ok((path, meta.ino(), status))
                })
                .collect::<Vec<Result<_>>>()
        })
        .await
        .map_err(|join| SidebandError::Inconsistent(format!("file status pass failed: {join}")))?;
        let wanted: Vec<Key> = keys
            .iter()
            .zip(&on_disk)
            .filter(|(_, disk)| disk.is_ok())
            .map(|(key, _)| key.clone())
            .collect();
        let mut entries = self.catalog.lookup(&wanted).await?.into_iter();
        Ok(on_disk
            .into_iter()
            .map(|disk| {
                let (path, ino, disk) = disk?;
                let entry = entries
                    .next()
                    .unwrap_or_default()
                    .into_iter()
                    .find(|e| e.ino == ino);
                Ok(Observed { path, disk, entry })
            })
            .collect())
    }

    /// Observes one file.
    pub(crate) async fn observe_one(&self, key: &Key) -> Result<Observed> {
        self.observe(std::slice::from_ref(key))
            .await
            .map_err(SidebandError::into_core)?
            .pop()
            .expect("one outcome per key")
    }
}
