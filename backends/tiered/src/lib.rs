//! `archive-tiered`: the built-in HSM. A disk tier (the prefix, served by the posix backend), a cold
//! tier directory that plays the tape library, and a tape model that charges (simulated) time for
//! mounts, locates, reads and writes.
//!
//! States: a key with no catalog entry is **resident** (disk only). `premigrate` copies it to the cold
//! tier at the append point of the current tape and records (tape, position) durably: **premigrated**.
//! `migrate` then releases the disk copy: **migrated**. `recall` reads it back: premigrated again.
//!
//! Module map: [`config`] (the `[tiered]` section), `catalog` (the durable journal of tape copies),
//! `tape` (the tape model), `migrate` and `recall` (the HSM operations), `repair` (crash repair at
//! open), `owner` (one process per archive), [`policy`] (age and watermark migration in the
//! background), `reads` (recent reads for the policy), `locks` (per-key locks), [`crash`] (crash
//! injection for the tests), `error`.

#![warn(missing_docs)]

mod catalog;
pub mod config;
pub mod crash;
mod error;
mod locks;
mod migrate;
mod owner;
pub mod policy;
mod reads;
mod recall;
mod repair;
mod tape;

pub use config::{ConfigError, TieredConfig};
pub use error::OpenError;
pub use policy::{spawn_migration_policy, PolicyReport};
pub use tape::{volume_name, TapeRead, TapeStats};

use archive_core::{
    ArchiveBackend, ByteStream, Capabilities, Error, FileStatus, GetResult, HsmState, Key,
    KeyOutcome, ListEntry, Placement, PutOptions, PutOutcome, ReadRange, Result,
};
use archive_posix::PosixBackend;
use async_trait::async_trait;
use catalog::{Catalog, Entry, Record};
use error::TieredError;
use locks::KeyLocks;
use owner::OwnerLock;
use reads::ReadLog;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tape::TapeModel;

/// Name of the state directory under the prefix (skipped by listings like every `.archiveinterface*`).
pub const STATE_DIR: &str = ".archiveinterface-tiered";

/// The tiered backend. Cheap to clone (all clones share one state).
#[derive(Debug, Clone)]
pub struct TieredBackend {
    inner: Arc<Inner>,
}

#[derive(Debug)]
pub(crate) struct Inner {
    pub(crate) disk: PosixBackend,
    pub(crate) cold: PosixBackend,
    /// Internally locked; appends fsync, so they run on the blocking pool.
    pub(crate) catalog: Catalog,
    pub(crate) tape: Arc<TapeModel>,
    pub(crate) locks: KeyLocks,
    /// One tape write stream at a time, so files land in append order.
    pub(crate) writer: tokio::sync::Mutex<()>,
    pub(crate) config: TieredConfig,
    /// Last reads through this process, for LRU decisions on filesystems mounted `noatime`.
    pub(crate) reads: ReadLog,
    /// Migrations and recalls of single keys under way.
    pub(crate) units: Units,
    /// Held for as long as this backend lives: no other process opens the same archive meanwhile.
    _owner: OwnerLock,
}

impl TieredBackend {
    /// Validates `config`, opens (creating if needed) the disk tier at `prefix`, the cold tier and the
    /// catalog, and repairs whatever a crash left half-done. Blocking; meant for start-up.
    pub fn open(prefix: PathBuf, config: TieredConfig) -> std::result::Result<Self, OpenError> {
        config.validate()?;
        let io = |what, path: &Path| {
            let path = path.to_path_buf();
            move |source| OpenError::Io { what, path, source }
        };
        let disk = PosixBackend::new(&prefix).map_err(io("create the disk tier", &prefix))?;
        let cold_dir = std::path::absolute(config.cold_dir_for(disk.root()))
            .map_err(io("resolve the cold tier", disk.root()))?;
        // Inside the prefix, the cold tier must be hidden from listings (and from the partial-file
        // sweep) like every `.archiveinterface*` entry; otherwise its files would show up as archive files.
        if let Ok(rel) = cold_dir.strip_prefix(disk.root()) {
            let hidden = rel.components().next().is_some_and(|c| {
                c.as_os_str()
                    .to_string_lossy()
                    .starts_with(archive_posix::STATE_DIR_PREFIX)
            });
            if !hidden {
                return Err(ConfigError {
                    field: "cold_dir",
                    message: format!(
                        "{} is inside the prefix; use a directory outside it, or one whose name under the prefix starts with {}",
                        cold_dir.display(),
                        archive_posix::STATE_DIR_PREFIX
                    ),
                }
                .into());
            }
        }
        let cold = PosixBackend::new(&cold_dir).map_err(io("create the cold tier", &cold_dir))?;
        let state_dir = disk.root().join(STATE_DIR);
        std::fs::create_dir_all(&state_dir)
            .map_err(io("create the state directory", &state_dir))?;
        // Before anything is read or repaired: another process's work in progress is not debris.
        let owner = OwnerLock::acquire(&state_dir)?;
        let catalog = Catalog::open(&state_dir)?;
        let report = repair::repair(&disk, &cold, &catalog, config.tapes)?;
        if report.changed() {
            tracing::warn!(
                ?report,
                "tiered backend repaired work a crash left half-done"
            );
        }
        let mut used = vec![0u64; config.tapes];
        let files_on_tape = catalog.with_entries(|entries| {
            for entry in entries.values() {
                let end = entry.position + entry.size.max(1);
                used[entry.tape] = used[entry.tape].max(end);
            }
            entries.len()
        });
        tracing::info!(
            prefix = %disk.root().display(),
            cold = %cold.root().display(),
            files_on_tape,
            "tiered backend open"
        );
        Ok(TieredBackend {
            inner: Arc::new(Inner {
                tape: Arc::new(TapeModel::new(&config, used)),
                disk,
                cold,
                catalog,
                locks: KeyLocks::default(),
                writer: tokio::sync::Mutex::new(()),
                config,
                reads: ReadLog::default(),
                units: Units::default(),
                _owner: owner,
            }),
        })
    }

    /// The configuration in effect.
    pub fn config(&self) -> &TieredConfig {
        &self.inner.config
    }

    /// The disk tier directory (the prefix, made absolute).
    pub fn prefix(&self) -> &Path {
        self.inner.disk.root()
    }

    /// The cold tier directory.
    pub fn cold_dir(&self) -> &Path {
        self.inner.cold.root()
    }

    /// How many keys' migrations or recalls are under way, including those whose caller stopped
    /// waiting: each finishes on its own.
    pub fn units_running(&self) -> usize {
        self.inner.units.running()
    }

    /// What the tape model did so far (mounts, simulated seconds, reads in order).
    pub fn tape_stats(&self) -> TapeStats {
        self.inner.tape.stats()
    }
}

/// Runs blocking filesystem work off the async runtime.
pub(crate) async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T> + Send + 'static,
) -> Result<T> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|join| Error::backend("tiered", join))?
}

/// One try at a key's unit of work: done (with its outcome), or skipped because the key is busy (an
/// upload holds its lock) and to be tried again once it is free.
#[derive(Debug)]
pub(crate) enum Attempt {
    Done(Result<()>),
    Busy,
}

/// The keys' units of work that are running, counted so that whoever dropped a call can tell when
/// what it started has finished.
#[derive(Debug, Clone, Default)]
pub(crate) struct Units(Arc<std::sync::atomic::AtomicUsize>);

impl Units {
    /// Runs one key's unit of work (all its steps, with their journal records) as a task of its own,
    /// so a caller that stops waiting (its future dropped) never cuts it between two steps: the
    /// catalog, the disk tier and the cold tier keep agreeing while the process runs.
    pub(crate) async fn run(
        &self,
        work: impl Future<Output = Attempt> + Send + 'static,
    ) -> Attempt {
        use std::sync::atomic::Ordering;
        /// Counts the unit out however its task ends.
        struct Running(Arc<std::sync::atomic::AtomicUsize>);
        impl Drop for Running {
            fn drop(&mut self) {
                self.0.fetch_sub(1, Ordering::SeqCst);
            }
        }
        self.0.fetch_add(1, Ordering::SeqCst);
        let running = Running(Arc::clone(&self.0));
        tokio::spawn(async move {
            let _running = running;
            work.await
        })
        .await
        .unwrap_or_else(|join| Attempt::Done(Err(Error::backend("tiered", join))))
    }

    pub(crate) fn running(&self) -> usize {
        self.0.load(std::sync::atomic::Ordering::SeqCst)
    }
}

/// The cold tier key of a tape position: one directory per tape, positions zero-padded so that a
/// directory listing is in tape order.
pub(crate) fn cold_key(tape: usize, position: u64) -> Key {
    Key::new(format!("{}/{position:016}", volume_name(tape))).expect("cold keys are valid")
}

fn not_found(key: &Key) -> Error {
    Error::NotFound {
        key: key.to_string(),
    }
}

impl Inner {
    pub(crate) fn entry(&self, key: &Key) -> Option<Entry> {
        self.catalog.get(key)
    }

    /// Makes a catalog record durable (on the blocking pool: it fsyncs).
    pub(crate) async fn journal(self: &Arc<Self>, record: Record) -> Result<()> {
        let inner = Arc::clone(self);
        blocking(move || inner.catalog.append(record).map_err(TieredError::into_core)).await
    }

    /// Records a change that already happened on the tiers (a release, a recall, an overwrite). If the
    /// record cannot be made durable, the catalog still follows the change in memory, so status,
    /// placement and recall tell the truth; repair finds the change on the tiers at the next start and
    /// records it then.
    pub(crate) async fn journal_effect(self: &Arc<Self>, record: Record) {
        let inner = Arc::clone(self);
        let failed = blocking(move || match inner.catalog.append(record.clone()) {
            Ok(()) => Ok(None),
            Err(TieredError::Journal(path, e)) => {
                inner
                    .catalog
                    .apply_unrecorded(record)
                    .map_err(TieredError::into_core)?;
                Ok(Some((path, e)))
            }
            Err(other) => Err(other.into_core()),
        })
        .await;
        match failed {
            Ok(None) => {}
            Ok(Some((path, e))) => tracing::error!(
                path = %path.display(), error = %e,
                "could not journal a change; it holds until the next start, whose repair records it"
            ),
            Err(e) => tracing::error!(error = %e, "could not journal a change"),
        }
    }

    /// When waiting for someone else's work is over: runs `attempt` for `key` once nobody holds the
    /// key, again and again while it comes back busy (no drive is held while waiting).
    pub(crate) async fn when_idle<F, Fut>(self: &Arc<Self>, key: &Key, mut attempt: F) -> Result<()>
    where
        F: FnMut(Arc<Self>, Key) -> Fut,
        Fut: Future<Output = Attempt>,
    {
        loop {
            self.locks.wait_idle(key).await;
            if let Attempt::Done(outcome) = attempt(Arc::clone(self), key.clone()).await {
                return outcome;
            }
        }
    }

    /// The inode of a key's disk copy.
    pub(crate) async fn disk_ino(&self, key: &Key) -> Result<u64> {
        use std::os::unix::fs::MetadataExt;
        let path = self.disk.path_of(key);
        let key = key.clone();
        let disk = self.disk.clone();
        blocking(move || match disk.metadata(&key) {
            Ok(meta) => Ok(meta.ino()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(not_found(&key)),
            Err(e) => Err(TieredError::Io("stat", path, e).into_core()),
        })
        .await
    }

    /// Removes a tape copy that no catalog entry refers to any more (best effort: repair at the next
    /// start removes whatever is left).
    pub(crate) async fn drop_cold_copy(&self, entry: &Entry) {
        let key = cold_key(entry.tape, entry.position);
        if let Err(e) = self.cold.delete(&key).await {
            tracing::warn!(%key, error = %e, "could not remove an unreferenced tape copy");
        }
    }

    fn migrated_status(&self, entry: &Entry) -> FileStatus {
        FileStatus {
            size: entry.size,
            mtime: entry.mtime,
            ctime: entry.mtime,
            state: HsmState::Migrated,
            bytes_per_level: vec![0, entry.size],
            location: self
                .cold
                .path_of(&cold_key(entry.tape, entry.position))
                .display()
                .to_string(),
        }
    }

    /// The status of a key: from the catalog when it has a tape copy, from the disk tier otherwise.
    /// Blocking (one stat); `status` and `status_many` run it on the blocking pool.
    pub(crate) fn status_blocking(&self, key: &Key) -> Result<FileStatus> {
        let entry = self.entry(key);
        if let Some(e) = entry.as_ref().filter(|e| e.released) {
            return Ok(self.migrated_status(e));
        }
        let path = self.disk.path_of(key);
        match self.disk.metadata(key) {
            Ok(meta) => {
                let st = archive_posix::status_from_metadata(key, &path, &meta)?;
                let state = match entry {
                    Some(_) => HsmState::Premigrated,
                    None => HsmState::Resident,
                };
                Ok(with_state(st, state))
            }
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::NotFound | std::io::ErrorKind::NotADirectory
                ) =>
            {
                match entry {
                    // Released between the lookup and the stat.
                    Some(e) => Ok(self.migrated_status(&e)),
                    None => Err(not_found(key)),
                }
            }
            Err(e) => Err(TieredError::Io("stat", path, e).into_core()),
        }
    }

    pub(crate) async fn status(self: &Arc<Self>, key: &Key) -> Result<FileStatus> {
        let (inner, key) = (Arc::clone(self), key.clone());
        blocking(move || inner.status_blocking(&key)).await
    }
}

/// Two sorted listings as one, sorted, at most `limit` long. A file released while the disk was being
/// listed appears in both; it is kept once.
fn merge_listings(mut out: Vec<ListEntry>, more: Vec<ListEntry>, limit: usize) -> Vec<ListEntry> {
    out.extend(more);
    out.sort_by(|a, b| a.key.cmp(&b.key));
    out.dedup_by(|a, b| a.key == b.key);
    out.truncate(limit);
    out
}

/// Sets the state and the bytes per level (`[N, 0]` resident, `[N, N]` premigrated, `[0, N]` migrated).
fn with_state(mut st: FileStatus, state: HsmState) -> FileStatus {
    st.bytes_per_level = match state {
        HsmState::Premigrated => vec![st.size, st.size],
        HsmState::Migrated => vec![0, st.size],
        _ => vec![st.size, 0],
    };
    st.state = state;
    st
}

#[async_trait]
impl ArchiveBackend for TieredBackend {
    fn name(&self) -> &'static str {
        "tiered"
    }

    fn capabilities(&self) -> Capabilities {
        // The catalog and the tape positions live in this process: one process per prefix.
        Capabilities {
            tape_tier: true,
            shared_by_processes: false,
        }
    }

    async fn put(&self, key: &Key, body: ByteStream, options: PutOptions) -> Result<PutOutcome> {
        let inner = &self.inner;
        let _guard = inner.locks.lock(key).await;
        let Some(entry) = inner.entry(key) else {
            return inner.disk.put(key, body, options).await;
        };
        if !options.overwrite {
            return Err(Error::AlreadyExists {
                key: key.to_string(),
            });
        }
        // The new content is durable on disk before the tape copy is forgotten: a crash in between
        // leaves a disk file whose inode differs from the entry's, which repair resolves by content.
        let out = inner.disk.put(key, body, options).await?;
        inner
            .journal_effect(Record::Forgotten {
                key: key.to_string(),
            })
            .await;
        inner.drop_cold_copy(&entry).await;
        Ok(out)
    }

    async fn get(&self, key: &Key, range: ReadRange) -> Result<GetResult> {
        let inner = &self.inner;
        let not_resident = || Error::NotResident {
            key: key.to_string(),
        };
        if inner.entry(key).is_some_and(|e| e.released) {
            return Err(not_resident());
        }
        match inner.disk.get(key, range).await {
            Ok(mut got) => {
                let state = match inner.entry(key) {
                    Some(_) => HsmState::Premigrated,
                    None => HsmState::Resident,
                };
                got.status = with_state(got.status, state);
                inner.reads.record(key);
                Ok(got)
            }
            // Released between the lookup and the open.
            Err(Error::NotFound { .. }) if inner.entry(key).is_some() => Err(not_resident()),
            Err(e) => Err(e),
        }
    }

    async fn status(&self, key: &Key) -> Result<FileStatus> {
        self.inner.status(key).await
    }

    /// Validates and accepts: the key must exist. Nothing is read from tape here: recalls go through
    /// the server's recall scheduler (`recall`), which batches them with other recalls of the same tape.
    async fn stage(&self, key: &Key) -> Result<()> {
        self.inner.status(key).await.map(drop)
    }

    async fn adopt(&self, key: &Key, source: &Path, overwrite: bool) -> Result<()> {
        let inner = &self.inner;
        let _guard = inner.locks.lock(key).await;
        let entry = inner.entry(key);
        if entry.is_some() && !overwrite {
            return Err(Error::AlreadyExists {
                key: key.to_string(),
            });
        }
        inner.disk.adopt(key, source, overwrite).await?;
        if let Some(entry) = entry {
            inner
                .journal_effect(Record::Forgotten {
                    key: key.to_string(),
                })
                .await;
            inner.drop_cold_copy(&entry).await;
        }
        Ok(())
    }

    async fn delete(&self, key: &Key) -> Result<()> {
        let inner = &self.inner;
        let _guard = inner.locks.lock(key).await;
        inner.reads.forget(key);
        let Some(entry) = inner.entry(key) else {
            return inner.disk.delete(key).await;
        };
        // Forget first: a crash before the disk copy is removed leaves a resident file, never a catalog
        // entry pointing at nothing.
        inner
            .journal(Record::Forgotten {
                key: key.to_string(),
            })
            .await?;
        match inner.disk.delete(key).await {
            Ok(()) | Err(Error::NotFound { .. }) => {}
            Err(e) => return Err(e),
        }
        inner.drop_cold_copy(&entry).await;
        Ok(())
    }

    /// The disk tier's listing merged with the migrated files, which the catalog finds by a range
    /// query on its ordered index.
    async fn list(&self, prefix: &str) -> Result<Vec<ListEntry>> {
        let on_disk = self.inner.disk.list(prefix).await?;
        let on_tape = self.inner.catalog.released_page(prefix, None, usize::MAX);
        Ok(merge_listings(on_disk, on_tape, usize::MAX))
    }

    /// Like `list`, one page: the catalog's part costs O(limit + log n).
    async fn list_page(
        &self,
        prefix: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<ListEntry>> {
        let on_disk = self.inner.disk.list_page(prefix, after, limit).await?;
        let on_tape = self.inner.catalog.released_page(prefix, after, limit);
        Ok(merge_listings(on_disk, on_tape, limit))
    }

    /// One trip to the blocking pool for the whole batch (SwiftHLM status of big containers).
    async fn status_many(&self, keys: &[Key]) -> Vec<KeyOutcome<FileStatus>> {
        let (inner, batch) = (Arc::clone(&self.inner), keys.to_vec());
        let work = tokio::task::spawn_blocking(move || {
            batch
                .into_iter()
                .map(|k| {
                    let st = inner.status_blocking(&k);
                    (k, st)
                })
                .collect()
        });
        match work.await {
            Ok(out) => out,
            Err(join) => keys
                .iter()
                .map(|k| (k.clone(), Err(Error::backend("tiered", join.to_string()))))
                .collect(),
        }
    }

    /// One trip to the blocking pool for the whole batch (the recall scheduler asks for every key).
    async fn placement(&self, keys: &[Key]) -> Result<Vec<KeyOutcome<Placement>>> {
        let (inner, batch) = (Arc::clone(&self.inner), keys.to_vec());
        blocking(move || {
            Ok(batch
                .into_iter()
                .map(|key| {
                    let placement = match inner.entry(&key) {
                        // Whether a disk copy is there is asked of the disk tier, not assumed.
                        Some(e) => inner.status_blocking(&key).map(|st| Placement::Tape {
                            volume: volume_name(e.tape),
                            position: e.position,
                            resident_copy: st.state != HsmState::Migrated,
                        }),
                        None => inner.status_blocking(&key).map(|_| Placement::Disk),
                    };
                    (key, placement)
                })
                .collect())
        })
        .await
    }

    async fn migrate(&self, keys: &[Key]) -> Result<Vec<KeyOutcome<()>>> {
        Ok(self.inner.migrate_keys(keys, true).await)
    }

    async fn premigrate(&self, keys: &[Key]) -> Result<Vec<KeyOutcome<()>>> {
        Ok(self.inner.migrate_keys(keys, false).await)
    }

    async fn recall(&self, keys: &[Key]) -> Result<Vec<KeyOutcome<()>>> {
        Ok(self.inner.recall_keys(keys).await)
    }

    async fn mounted_volumes(&self) -> Vec<String> {
        self.inner.tape.mounted()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use archive_core::conformance::body_of;

    #[tokio::test]
    async fn delete_forgets_the_reads_of_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let b = TieredBackend::open(dir.path().join("archive"), TieredConfig::default()).unwrap();
        let key = Key::new("read-then-deleted").unwrap();
        b.put(&key, body_of(vec![b"x".to_vec()]), PutOptions::default())
            .await
            .unwrap();
        drop(b.get(&key, ReadRange::All).await.unwrap());
        assert!(b.inner.reads.snapshot().contains_key(&key));
        b.delete(&key).await.unwrap();
        assert!(!b.inner.reads.snapshot().contains_key(&key));
    }
}
