//! `premigrate` and `migrate`: copy each file to the cold tier at the append point of the current tape,
//! make the copy and its catalog record durable, and only then (for `migrate`) release the disk copy.
//!
//! Step by step, with the crash points the tests kill a process at:
//! 1. stream the disk copy into a partial file on the cold tier (`migrate:mid-cold-copy`), fsync,
//!    rename, fsync the directory (`migrate:after-cold-copy`; an unreferenced copy is removed by repair);
//! 2. append `Copied {tape, position, ino}` to the journal and fsync (`migrate:after-journal-copy`:
//!    premigrated);
//! 3. unlink the disk copy and fsync its directory (`migrate:after-unlink`: repair sees the missing disk
//!    copy and records the release);
//! 4. append `Released` (`migrate:after-journal-release`: migrated).
//!
//! Each key's steps run as one task that finishes even when the caller stops waiting (a dispatcher
//! that lost its lease drops the batch): a key is never left between two steps while the process
//! runs. A failed `Copied` append leaves the key resident (its cold copy is removed); a failed
//! `Released` append after the unlink leaves it migrated in memory, and repair records it at the next
//! start. A key being written (an upload holds its lock) is skipped and migrated after the others,
//! without holding a drive while it waits.

use crate::catalog::{Entry, Record};
use crate::crash::{crash_mid_stream, crash_point};
use crate::error::TieredError;
use crate::locks::KeyGuard;
use crate::{blocking, cold_key, Attempt, Inner};
use archive_core::{ArchiveBackend, Error, Key, KeyOutcome, PutOptions, ReadRange, Result};
use archive_posix::Removal;
use std::sync::Arc;

impl Inner {
    /// Premigrates every key (and releases its disk copy when `release`), one outcome per key.
    pub(crate) async fn migrate_keys(
        self: &Arc<Self>,
        keys: &[Key],
        release: bool,
    ) -> Vec<KeyOutcome<()>> {
        let mut outcomes = Vec::with_capacity(keys.len());
        let mut busy = Vec::new();
        for key in keys {
            match Arc::clone(self).migrate_unit(key.clone(), release).await {
                Attempt::Done(outcome) => outcomes.push((key.clone(), outcome)),
                Attempt::Busy => busy.push(key.clone()),
            }
        }
        for key in busy {
            let outcome = self
                .when_idle(&key, |inner, key| inner.migrate_unit(key, release))
                .await;
            outcomes.push((key, outcome));
        }
        for (key, outcome) in &outcomes {
            if let Err(e) = outcome {
                tracing::warn!(%key, error = %e, release, "migration of a file failed");
            }
        }
        outcomes
    }

    /// One key's migration as a task of its own (see the module header).
    async fn migrate_unit(self: Arc<Self>, key: Key, release: bool) -> Attempt {
        let units = self.units.clone();
        units
            .run(async move {
                match self.premigrate_one(&key).await {
                    Ok(Premigrated::Done(held)) if release => {
                        // The key stays locked from its copy to its release: a recall arriving in
                        // between waits for the release instead of answering "on disk" just before
                        // the disk copy goes.
                        let _guard = match held {
                            Some(guard) => guard,
                            None => self.locks.lock(&key).await,
                        };
                        Attempt::Done(self.release_locked(&key).await)
                    }
                    Ok(Premigrated::Done(_)) => Attempt::Done(Ok(())),
                    Ok(Premigrated::Busy) => Attempt::Busy,
                    Err(e) => Attempt::Done(Err(e)),
                }
            })
            .await
    }

    /// Makes sure `key` has a durable tape copy (resident -> premigrated; no-op otherwise), or reports
    /// it busy. A copy made here hands back the key's lock, still held.
    async fn premigrate_one(self: &Arc<Self>, key: &Key) -> Result<Premigrated<'_>> {
        let done = |guard| Ok(Premigrated::Done(guard));
        if self.entry(key).is_some() {
            return done(None);
        }
        let _writer = self.writer.lock().await;
        loop {
            let size_hint = self.disk.status(key).await?.size;
            let tape = self
                .tape
                .append_tape(size_hint)
                .ok_or_else(|| tapes_full(key))?;
            // Drive before key lock (see `locks`).
            let lease = self.tape.acquire(tape).await;
            let Some(guard) = self.locks.try_lock(key) else {
                return Ok(Premigrated::Busy);
            };
            if self.entry(key).is_some() {
                return done(Some(guard));
            }
            let source = self.disk.get(key, ReadRange::All).await?;
            let (size, mtime) = (source.status.size, source.status.mtime);
            // The file was replaced after the size was looked at and no longer fits this tape.
            if self.tape.append_tape(size) != Some(tape) {
                continue;
            }
            let (tape, position) = self.tape.reserve(size).ok_or_else(|| tapes_full(key))?;
            let target = cold_key(tape, position);
            let stream = crash_mid_stream(source.stream, "migrate:mid-cold-copy");
            let options = PutOptions {
                mtime: Some(mtime),
                expected_len: Some(size),
                // Nothing should be there; a leftover of an earlier process is not worth keeping.
                overwrite: true,
            };
            // A tape's first file creates its directory: the cold tier's write makes it durable in
            // the cold root, as every directory a write creates.
            self.cold.put(&target, stream, options).await?;
            lease.write(position, size).await;
            crash_point("migrate:after-cold-copy");
            let mut entry = Entry {
                tape,
                position,
                size,
                mtime,
                ino: 0,
                released: false,
            };
            let recorded = match self.disk_ino(key).await {
                Ok(ino) => {
                    entry.ino = ino;
                    self.journal(Record::copied(key, &entry)).await
                }
                Err(e) => Err(e),
            };
            if let Err(e) = recorded {
                // Not recorded: the copy belongs to no one and the key stays resident.
                self.drop_cold_copy(&entry).await;
                return Err(e);
            }
            crash_point("migrate:after-journal-copy");
            tracing::debug!(%key, tape, position, size, "premigrated");
            // The drive is given back here; the key lock goes on to the release, if any.
            drop(lease);
            return done(Some(guard));
        }
    }

    /// Releases the disk copy of a premigrated key (-> migrated; no-op when already migrated). The
    /// caller holds the key's lock.
    async fn release_locked(self: &Arc<Self>, key: &Key) -> Result<()> {
        let entry = self.entry(key).ok_or_else(|| Error::NotFound {
            key: key.to_string(),
        })?;
        if entry.released {
            return Ok(());
        }
        let path = self.disk.path_of(key);
        let tape_key = cold_key(entry.tape, entry.position);
        let tape_copy = self.cold.path_of(&tape_key);
        let (disk, cold, key_owned) = (self.disk.clone(), self.cold.clone(), key.clone());
        blocking(move || {
            // The tape copy must be there, whole, before the disk copy goes.
            match cold.metadata(&tape_key) {
                Ok(meta) if meta.len() == entry.size => {}
                Ok(meta) => {
                    return Err(TieredError::Inconsistent(format!(
                        "the tape copy {} has {} bytes, the catalog says {}; the disk copy of {} is kept",
                        tape_copy.display(),
                        meta.len(),
                        entry.size,
                        path.display()
                    ))
                    .into_core())
                }
                Err(e) => {
                    return Err(TieredError::Inconsistent(format!(
                        "the tape copy {} cannot be found ({e}); the disk copy of {} is kept",
                        tape_copy.display(),
                        path.display()
                    ))
                    .into_core())
                }
            }
            // Only the disk copy the tape copy was made from goes, looked up from the archive's root
            // handle (never through a symlink), and its directory is synced after.
            match disk.remove_if_inode(&key_owned, entry.ino) {
                Ok(Removal::Removed) => Ok(()),
                // Already gone (an earlier release crashed before recording it).
                Ok(Removal::Missing) => Ok(()),
                Ok(Removal::Replaced) => Err(TieredError::Inconsistent(format!(
                    "the disk copy of {} changed after it was copied to tape; not released",
                    path.display()
                ))
                .into_core()),
                Err(e) => Err(TieredError::Io("remove", path, e).into_core()),
            }
        })
        .await?;
        crash_point("migrate:after-unlink");
        self.journal_effect(Record::Released {
            key: key.to_string(),
        })
        .await;
        crash_point("migrate:after-journal-release");
        self.reads.forget(key);
        tracing::debug!(%key, "released the disk copy");
        Ok(())
    }
}

/// What [`Inner::premigrate_one`] did.
enum Premigrated<'a> {
    /// The key has a tape copy; the lock is handed back when this call made the copy.
    Done(Option<KeyGuard<'a>>),
    /// An upload holds the key: come back to it later.
    Busy,
}

fn tapes_full(key: &Key) -> Error {
    Error::InsufficientStorage(format!("no tape has room left for {key}"))
}
