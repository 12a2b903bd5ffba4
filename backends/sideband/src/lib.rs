//! `archive-sideband`: Oracle HSM (SAM-QFS). File data lives on the SAM-QFS mount (the prefix, written
//! through the posix backend, with all its rules: atomic durable writes, streaming, no symlinks
//! followed); status and placement come from the sideband MySQL catalog; stage, archive and release
//! run the site's commands.
//!
//! Module map: [`config`] (`[hsm_sideband]`), `catalog` (the pool and the batch query), `observe`
//! (file system + catalog = a file's state), `commands` (running stage/archive/release), `hsm`
//! (recall, migrate, premigrate confirmed by the catalog), `error`.
//!
//! All state lives in the HSM and its catalog, so several server processes may share one SAM-QFS
//! file system.

#![warn(missing_docs)]

mod catalog;
mod commands;
pub mod config;
mod error;
mod hsm;
mod observe;

pub use config::SidebandConfig;
pub use error::OpenError;

use archive_core::{
    ArchiveBackend, ByteStream, Capabilities, Error, FileStatus, GetResult, Key, KeyOutcome,
    ListEntry, Placement, PutOptions, PutOutcome, ReadRange, Result,
};
use archive_posix::PosixBackend;
use async_trait::async_trait;
use catalog::Catalog;
use commands::HsmCommand;
use error::{SidebandError, BACKEND};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The Oracle HSM sideband backend over the archive directory `prefix` on a SAM-QFS mount.
#[derive(Debug, Clone)]
pub struct SidebandBackend {
    disk: PosixBackend,
    catalog: Catalog,
    stage: HsmCommand,
    archive: HsmCommand,
    release: HsmCommand,
    wait_timeout: Duration,
    poll_interval: Duration,
}

impl SidebandBackend {
    /// Opens the archive directory (which must exist) and the catalog; fails, naming the database
    /// host, when the catalog cannot be reached or lacks the sideband tables.
    pub async fn open(prefix: PathBuf, config: SidebandConfig) -> Result<Self, OpenError> {
        let checked = config.clone();
        let opened = tokio::task::spawn_blocking(move || {
            checked.validate()?;
            // Never created here: a missing directory usually means the file system is not
            // mounted, and the files would land on the disk below the mount point.
            if !prefix.is_dir() {
                return Err(OpenError::Prefix {
                    path: prefix.display().to_string(),
                    source: std::io::Error::new(
                        std::io::ErrorKind::NotFound,
                        "no such directory (is the SAM-QFS file system mounted?)",
                    ),
                });
            }
            PosixBackend::new(&prefix).map_err(|source| OpenError::Prefix {
                path: prefix.display().to_string(),
                source,
            })
        })
        .await
        .map_err(|join| OpenError::Prefix {
            path: String::new(),
            source: std::io::Error::other(join.to_string()),
        })?;
        let disk = opened?;
        let catalog = Catalog::connect(&config).await?;
        let command = |argv: &Vec<String>| HsmCommand::new(argv.clone(), config.files_per_command);
        Ok(SidebandBackend {
            disk,
            catalog,
            stage: command(&config.stage_command),
            archive: command(&config.archive_command),
            release: command(&config.release_command),
            wait_timeout: Duration::from_secs(config.wait_timeout_secs),
            poll_interval: Duration::from_millis(config.poll_interval_ms),
        })
    }

    /// The archive directory on the mount.
    pub fn prefix(&self) -> &Path {
        self.disk.root()
    }

    /// `host:port` of the catalog database.
    pub fn database_host(&self) -> &str {
        self.catalog.host()
    }
}

#[async_trait]
impl ArchiveBackend for SidebandBackend {
    fn name(&self) -> &'static str {
        BACKEND
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            tape_tier: true,
            shared_by_processes: true,
        }
    }

    async fn put(&self, key: &Key, body: ByteStream, options: PutOptions) -> Result<PutOutcome> {
        self.disk.put(key, body, options).await
    }

    /// Reads a file that is online. An offline file fails with `NotResident` so the recall scheduler
    /// stages it in tape order with others; reading it directly would block on the kernel's own
    /// stage, one file at a time.
    async fn get(&self, key: &Key, range: ReadRange) -> Result<GetResult> {
        let observed = self.observe_one(key).await?;
        if !observed.online() {
            return Err(Error::NotResident {
                key: key.to_string(),
            });
        }
        let mut got = self.disk.get(key, range).await?;
        let status = observed.status();
        if status.size == got.status.size {
            got.status = status;
        }
        Ok(got)
    }

    async fn status(&self, key: &Key) -> Result<FileStatus> {
        Ok(self.observe_one(key).await?.status())
    }

    async fn stage(&self, key: &Key) -> Result<()> {
        self.observe_one(key).await.map(drop)
    }

    async fn adopt(&self, key: &Key, source: &Path, overwrite: bool) -> Result<()> {
        self.disk.adopt(key, source, overwrite).await
    }

    async fn delete(&self, key: &Key) -> Result<()> {
        self.disk.delete(key).await
    }

    async fn list(&self, prefix: &str) -> Result<Vec<ListEntry>> {
        self.disk.list(prefix).await
    }

    async fn list_page(
        &self,
        prefix: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<ListEntry>> {
        self.disk.list_page(prefix, after, limit).await
    }

    /// One catalog query per batch of keys and one pass over the file system; an unreachable catalog
    /// fails every key with `Unavailable`.
    async fn status_many(&self, keys: &[Key]) -> Vec<KeyOutcome<FileStatus>> {
        match self.observe(keys).await {
            Ok(observed) => keys
                .iter()
                .cloned()
                .zip(observed)
                .map(|(key, o)| (key, o.map(|o| o.status())))
                .collect(),
            Err(e) => keys
                .iter()
                .map(|key| (key.clone(), Err(e.clone().into_core())))
                .collect(),
        }
    }

    /// The lowest-numbered non-stale archive copy of each file: volume `<media type>.<VSN>`, position
    /// (tar file position, offset within it) in one ordered number.
    async fn placement(&self, keys: &[Key]) -> Result<Vec<KeyOutcome<Placement>>> {
        let observed = self.observe(keys).await.map_err(SidebandError::into_core)?;
        Ok(keys
            .iter()
            .cloned()
            .zip(observed)
            .map(|(key, o)| {
                let placement = o.and_then(|o| match (o.copy(), o.online()) {
                    (Some(copy), online) => Ok(Placement::Tape {
                        volume: format!("{}.{}", copy.media_type, copy.vsn),
                        position: tape_position(copy.position, copy.offset),
                        resident_copy: online,
                    }),
                    (None, true) => Ok(Placement::Disk),
                    (None, false) => Err(Error::backend(
                        BACKEND,
                        format!(
                            "{} is offline but the catalog lists no non-stale archive copy of it",
                            o.path.display()
                        ),
                    )),
                });
                (key, placement)
            })
            .collect())
    }

    async fn migrate(&self, keys: &[Key]) -> Result<Vec<KeyOutcome<()>>> {
        self.archive_files(keys, true).await
    }

    async fn premigrate(&self, keys: &[Key]) -> Result<Vec<KeyOutcome<()>>> {
        self.archive_files(keys, false).await
    }

    async fn recall(&self, keys: &[Key]) -> Result<Vec<KeyOutcome<()>>> {
        self.recall_files(keys).await
    }
}

/// Orders by tar file position, then by offset within it (positions beyond 32 bits, which no tape
/// reaches, sort last).
fn tape_position(position: u64, offset: u64) -> u64 {
    if position >> 32 != 0 {
        return u64::MAX;
    }
    (position << 32) | offset.min(u64::from(u32::MAX))
}

#[cfg(test)]
mod tests {
    use super::tape_position;

    #[test]
    fn positions_order_by_tar_file_then_offset() {
        assert!(tape_position(1, 900) < tape_position(2, 0));
        assert!(tape_position(2, 0) < tape_position(2, 1));
        assert_eq!(tape_position(1 << 40, 0), u64::MAX);
    }
}
