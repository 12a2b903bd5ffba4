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

use crate::catalog::{Entry, Record};
use crate::crash::{crash_mid_stream, crash_point};
use crate::error::TieredError;
use crate::{blocking, cold_key, Inner};
use archive_core::{ArchiveBackend, Error, Key, KeyOutcome, PutOptions, ReadRange, Result};
use std::sync::Arc;

impl Inner {
    /// Premigrates every key (and releases its disk copy when `release`), one outcome per key.
    pub(crate) async fn migrate_keys(
        self: &Arc<Self>,
        keys: &[Key],
        release: bool,
    ) -> Vec<KeyOutcome<()>> {
        let mut out = Vec::with_capacity(keys.len());
        for key in keys {
            let mut outcome = self.premigrate_one(key).await;
            if release && outcome.is_ok() {
                outcome = self.release_one(key).await;
            }
            if let Err(e) = &outcome {
                tracing::warn!(%key, error = %e, release, "migration of a file failed");
            }
            out.push((key.clone(), outcome));
        }
        out
    }

    /// Makes sure `key` has a durable tape copy (resident -> premigrated; no-op otherwise).
    async fn premigrate_one(self: &Arc<Self>, key: &Key) -> Result<()> {
        if self.entry(key).is_some() {
            return Ok(());
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
            let _guard = self.locks.lock(key).await;
            if self.entry(key).is_some() {
                return Ok(());
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
            let tape_dir = self.cold.root().join(crate::volume_name(tape));
            let first_on_tape = !tape_dir.exists();
            self.cold.put(&target, stream, options).await?;
            if first_on_tape {
                // The tape's directory is new: its entry in the cold root must be durable too.
                let root = self.cold.root().to_path_buf();
                blocking(move || {
                    std::fs::File::open(&root)
                        .and_then(|d| d.sync_all())
                        .map_err(|e| TieredError::Io("sync", root, e).into_core())
                })
                .await?;
            }
            lease.write(position, size).await;
            crash_point("migrate:after-cold-copy");
            let entry = Entry {
                tape,
                position,
                size,
                mtime,
                ino: self.disk_ino(key).await?,
                released: false,
            };
            self.journal(Record::copied(key, &entry)).await?;
            crash_point("migrate:after-journal-copy");
            tracing::debug!(%key, tape, position, size, "premigrated");
            return Ok(());
        }
    }

    /// Releases the disk copy of a premigrated key (-> migrated; no-op when already migrated).
    async fn release_one(self: &Arc<Self>, key: &Key) -> Result<()> {
        let _guard = self.locks.lock(key).await;
        let entry = self.entry(key).ok_or_else(|| Error::NotFound {
            key: key.to_string(),
        })?;
        if entry.released {
            return Ok(());
        }
        let path = self.disk.path_of(key);
        blocking(move || {
            use std::os::unix::fs::MetadataExt;
            match std::fs::symlink_metadata(&path) {
                // The disk copy must be the one the tape copy was made from.
                Ok(meta) if meta.ino() != entry.ino => {
                    return Err(TieredError::Inconsistent(format!(
                        "the disk copy of {} changed after it was copied to tape; not released",
                        path.display()
                    ))
                    .into_core())
                }
                Ok(_) => {}
                // Already gone (an earlier release crashed before recording it).
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
                Err(e) => return Err(TieredError::Io("stat", path, e).into_core()),
            }
            std::fs::remove_file(&path)
                .map_err(|e| TieredError::Io("remove", path.clone(), e).into_core())?;
            let dir = path.parent().expect("keys have a parent");
            std::fs::File::open(dir)
                .and_then(|d| d.sync_all())
                .map_err(|e| TieredError::Io("sync", dir.to_path_buf(), e).into_core())
        })
        .await?;
        crash_point("migrate:after-unlink");
        self.journal(Record::Released {
            key: key.to_string(),
        })
        .await?;
        crash_point("migrate:after-journal-release");
        tracing::debug!(%key, "released the disk copy");
        Ok(())
    }
}

fn tapes_full(key: &Key) -> Error {
    Error::InsufficientStorage(format!("no tape has room left for {key}"))
}
