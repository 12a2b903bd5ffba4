//! `archive-ltfsdm`: LTFS Data Management. File data lives on the LTFS DM-managed file system (the
//! prefix, written through the posix backend, so every posix rule holds: atomic durable writes,
//! streaming, no symlinks followed); migrate, premigrate, recall and status go through the `ltfsdm`
//! command, whose state (in the files' extended attributes and in `ltfsdmd`) several server processes
//! can share.
//!
//! A migrated file keeps its name and size on the file system, but reading it through the LTFS DM
//! overlay would recall it on the spot, one file at a time and out of tape order. So `get` asks the
//! file's state first and refuses a migrated file with `NotResident`: the server's recall scheduler
//! then recalls it in a batch, grouped by tape, and the read follows.
//!
//! Module map: [`config`] (the `[ltfsdm]` section), `command` (running `ltfsdm`: argv, file lists,
//! timeouts, output), `info` (parsing `ltfsdm info files`), `observe` (stat plus `info files`, in
//! batches: status and placement), `operations` (migrate, premigrate and recall with per-key
//! outcomes), `error`.

#![warn(missing_docs)]

mod command;
pub mod config;
mod error;
mod info;
mod observe;
mod operations;

pub use config::{ConfigError, LtfsdmConfig};

use archive_core::{
    ArchiveBackend, ByteStream, Capabilities, Error, FileStatus, GetResult, HsmState, Key,
    KeyOutcome, ListEntry, Placement, PutOptions, PutOutcome, ReadRange, Result,
};
use archive_posix::PosixBackend;
use async_trait::async_trait;
use command::Ltfsdm;
use error::LtfsdmError;
use operations::Operation;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// The volume named for a file LTFS DM reports migrated without any tape copy (it cannot be recalled
/// from anywhere the scheduler could group it with).
pub const NO_TAPE: &str = "-";

/// Why the backend could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// A `[ltfsdm]` value is wrong.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The prefix could not be created or resolved.
    #[error("cannot {what} {path}: {source}")]
    Io {
        /// What was being done.
        what: &'static str,
        /// The directory.
        path: PathBuf,
        /// Why it failed.
        source: std::io::Error,
    },
    /// `ltfsdm help` did not run (missing binary, no permission, a sudo rule that does not match).
    #[error("the LTFS DM client {binary} does not run (set ltfsdm.binary and ltfsdm.command_prefix): {source}")]
    Binary {
        /// The configured binary.
        binary: String,
        /// What running it gave.
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

/// The LTFS DM backend. Cheap to clone (clones share one state).
#[derive(Debug, Clone)]
pub struct LtfsdmBackend {
    inner: Arc<Inner>,
}

#[derive(Debug)]
pub(crate) struct Inner {
    pub(crate) posix: PosixBackend,
    /// The prefix as `ltfsdm info files` prints paths: canonical and absolute.
    pub(crate) root: PathBuf,
    pub(crate) cli: Ltfsdm,
    pub(crate) config: LtfsdmConfig,
    /// Bounds the `info files` commands running at once: a burst of requests (each HEAD, each recall
    /// request's placement) must not start a process each all at the same time.
    pub(crate) info_slots: tokio::sync::Semaphore,
}

/// `info files` commands run at once, at most.
const INFO_COMMANDS_AT_ONCE: usize = 4;

impl LtfsdmBackend {
    /// Validates `config`, opens (creating if needed) the prefix on the managed file system and checks
    /// that the `ltfsdm` client runs (`ltfsdm help`). Blocking; meant for start-up.
    pub fn open(prefix: PathBuf, config: LtfsdmConfig) -> std::result::Result<Self, OpenError> {
        config.validate()?;
        let io = |what, path: &Path| {
            let path = path.to_path_buf();
            move |source| OpenError::Io { what, path, source }
        };
        let posix = PosixBackend::new(&prefix).map_err(io("create the archive in", &prefix))?;
        let root = std::fs::canonicalize(posix.root()).map_err(io("resolve", posix.root()))?;
        let list_dir = match &config.list_dir {
            Some(dir) => dir.clone(),
            None => std::env::temp_dir(),
        };
        let cli = Ltfsdm::new(
            &config.command_prefix,
            &config.binary,
            Duration::from_secs(config.timeout_secs),
            list_dir,
        );
        cli.check_runs().map_err(|e| OpenError::Binary {
            binary: config.binary.display().to_string(),
            source: Box::new(e),
        })?;
        tracing::info!(prefix = %root.display(), binary = %config.binary.display(), pools = ?config.pools, "ltfsdm backend open");
        Ok(LtfsdmBackend {
            inner: Arc::new(Inner {
                posix,
                root,
                cli,
                config,
                info_slots: tokio::sync::Semaphore::new(INFO_COMMANDS_AT_ONCE),
            }),
        })
    }

    /// The prefix (canonical).
    pub fn prefix(&self) -> &Path {
        &self.inner.root
    }

    /// The configuration in effect.
    pub fn config(&self) -> &LtfsdmConfig {
        &self.inner.config
    }
}

impl Inner {
    /// The path `ltfsdm` is given for a key (and prints back).
    pub(crate) fn path_of(&self, key: &Key) -> PathBuf {
        self.root.join(key.as_str())
    }
}

/// Refuses names a file list cannot carry: the list holds one path per line.
pub(crate) fn listable(key: &Key) -> std::result::Result<(), LtfsdmError> {
    if key.as_str().contains('\n') {
        return Err(LtfsdmError::NewlineInName {
            key: key.to_string(),
        });
    }
    Ok(())
}

/// Sets the state and the bytes per level: `[N]` resident (or unknown: the data is on the file
/// system as far as anyone can tell), `[N, N]` premigrated, `[0, N]` migrated.
pub(crate) fn with_state(mut st: FileStatus, state: HsmState) -> FileStatus {
    st.bytes_per_level = match state {
        HsmState::Premigrated => vec![st.size, st.size],
        HsmState::Migrated => vec![0, st.size],
        HsmState::Resident | HsmState::Unknown => vec![st.size],
    };
    st.state = state;
    st
}

#[async_trait]
impl ArchiveBackend for LtfsdmBackend {
    fn name(&self) -> &'static str {
        "ltfsdm"
    }

    fn capabilities(&self) -> Capabilities {
        // File state lives in LTFS DM (extended attributes and ltfsdmd), not in this process.
        Capabilities {
            tape_tier: true,
            shared_by_processes: true,
        }
    }

    async fn put(&self, key: &Key, body: ByteStream, options: PutOptions) -> Result<PutOutcome> {
        listable(key).map_err(LtfsdmError::into_core)?;
        self.inner.posix.put(key, body, options).await
    }

    /// Streams a resident or premigrated file; a migrated one is refused with `NotResident` before it
    /// is opened, so that no read through the overlay recalls it out of turn.
    async fn get(&self, key: &Key, range: ReadRange) -> Result<GetResult> {
        let observed = self.inner.observe_one(key).await?;
        if observed.status.state == HsmState::Migrated {
            return Err(Error::NotResident {
                key: key.to_string(),
            });
        }
        let mut got = self.inner.posix.get(key, range).await?;
        got.status = with_state(got.status, observed.status.state);
        Ok(got)
    }

    async fn status(&self, key: &Key) -> Result<FileStatus> {
        self.inner.observe_one(key).await.map(|o| o.status)
    }

    /// Validates and accepts: the key must exist. The recall itself goes through the server's recall
    /// scheduler, batched with other recalls of the same tape.
    async fn stage(&self, key: &Key) -> Result<()> {
        self.inner.observe_one(key).await.map(drop)
    }

    async fn adopt(&self, key: &Key, source: &Path, overwrite: bool) -> Result<()> {
        listable(key).map_err(LtfsdmError::into_core)?;
        self.inner.posix.adopt(key, source, overwrite).await
    }

    /// Removes the file (a migrated file's stub too: LTFS DM's tape copy is no longer referenced).
    async fn delete(&self, key: &Key) -> Result<()> {
        self.inner.posix.delete(key).await
    }

    async fn list(&self, prefix: &str) -> Result<Vec<ListEntry>> {
        self.inner.posix.list(prefix).await
    }

    async fn list_page(
        &self,
        prefix: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<ListEntry>> {
        self.inner.posix.list_page(prefix, after, limit).await
    }

    /// `info files` in batches of `batch_files`.
    async fn status_many(&self, keys: &[Key]) -> Vec<KeyOutcome<FileStatus>> {
        self.inner
            .observe(keys)
            .await
            .into_iter()
            .map(|(key, observed)| (key, observed.map(|o| o.status)))
            .collect()
    }

    /// The first copy's tape for migrated and premigrated files. `info files` gives no position, so
    /// every file of a tape sits at position 0 and keeps its arrival order; LTFS DM orders each recall
    /// by start block itself.
    async fn placement(&self, keys: &[Key]) -> Result<Vec<KeyOutcome<Placement>>> {
        Ok(self
            .inner
            .observe(keys)
            .await
            .into_iter()
            .map(|(key, observed)| {
                let placement = observed.map(|o| match o.status.state {
                    HsmState::Migrated | HsmState::Premigrated => Placement::Tape {
                        volume: o.tapes.first().cloned().unwrap_or_else(|| NO_TAPE.into()),
                        position: 0,
                        resident_copy: o.status.state == HsmState::Premigrated,
                    },
                    HsmState::Resident | HsmState::Unknown => Placement::Disk,
                });
                (key, placement)
            })
            .collect())
    }

    async fn migrate(&self, keys: &[Key]) -> Result<Vec<KeyOutcome<()>>> {
        Ok(self.inner.apply(Operation::Migrate, keys).await)
    }

    async fn premigrate(&self, keys: &[Key]) -> Result<Vec<KeyOutcome<()>>> {
        Ok(self.inner.apply(Operation::Premigrate, keys).await)
    }

    async fn recall(&self, keys: &[Key]) -> Result<Vec<KeyOutcome<()>>> {
        Ok(self.inner.apply(Operation::Recall, keys).await)
    }
}
