//! `recall`: read migrated files back from the cold tier to disk (-> premigrated), in the order given.
//! Consecutive keys on one tape share one drive lease, so a batch sorted by tape and position (what the
//! recall scheduler sends) mounts each tape once and reads it in one pass.
//!
//! A key counts as migrated when its status says so, which looks at the disk tier and not only at the
//! catalog: a recall reports success only once the data is on disk. Each key's copy and record run as
//! one task that finishes even when the caller stops waiting. A key being written (an upload holds its
//! lock) is skipped and recalled after the others, with the drive given back meanwhile.
//!
//! Crash points: `recall:mid-disk-copy` (a partial disk file, swept at the next start),
//! `recall:after-disk-copy` (a complete disk copy the catalog still calls released: repair compares it
//! with the tape copy and records the recall), `recall:after-journal`.

use crate::catalog::Record;
use crate::crash::{crash_mid_stream, crash_point};
use crate::error::TieredError;
use crate::tape::DriveLease;
use crate::{cold_key, Attempt, Inner};
use archive_core::{ArchiveBackend, HsmState, Key, KeyOutcome, PutOptions, ReadRange, Result};
use std::sync::Arc;

impl Inner {
    pub(crate) async fn recall_keys(self: &Arc<Self>, keys: &[Key]) -> Vec<KeyOutcome<()>> {
        let mut out = Vec::with_capacity(keys.len());
        let mut busy = Vec::new();
        // The drive of the current run of keys on one tape.
        let mut held: Option<Arc<DriveLease>> = None;
        for key in keys {
            match self.migrated_tape(key).await {
                Ok(Some(tape)) if held.as_ref().is_none_or(|lease| lease.tape() != tape) => {
                    // Given back before waiting for the next tape's drive.
                    drop(held.take());
                    held = Some(Arc::new(self.tape.acquire(tape).await));
                }
                Ok(_) => {}
                Err(e) => {
                    out.push((key.clone(), Err(e)));
                    continue;
                }
            }
            match Arc::clone(self)
                .recall_unit(key.clone(), held.clone())
                .await
            {
                Attempt::Done(outcome) => out.push((key.clone(), outcome)),
                Attempt::Busy => busy.push(key.clone()),
            }
        }
        drop(held);
        for key in busy {
            let outcome = self
                .when_idle(&key, |inner, key| inner.recall_unit(key, None))
                .await;
            out.push((key, outcome));
        }
        for (key, outcome) in &out {
            if let Err(e) = outcome {
                tracing::warn!(%key, error = %e, "recall of a file failed");
            }
        }
        out
    }

    /// The tape to read `key` from when it is on tape only; `None` when its data is on disk; an error
    /// when it does not exist.
    async fn migrated_tape(self: &Arc<Self>, key: &Key) -> Result<Option<usize>> {
        let status = self.status(key).await?;
        Ok(self
            .entry(key)
            .filter(|_| status.state == HsmState::Migrated)
            .map(|e| e.tape))
    }

    /// One key's recall as a task of its own. `held` is the drive the caller holds (used when it has
    /// the right tape); without one, the unit finds a drive itself. Even a key whose data is on disk
    /// is answered under its lock, so that a migration still running on it is waited for.
    async fn recall_unit(self: Arc<Self>, key: Key, held: Option<Arc<DriveLease>>) -> Attempt {
        let units = self.units.clone();
        units
            .run(async move {
                let lease = match (self.migrated_tape(&key).await, held) {
                    (Err(e), _) => return Attempt::Done(Err(e)),
                    (Ok(None), _) => None,
                    (Ok(Some(tape)), Some(lease)) if lease.tape() == tape => Some(lease),
                    // Another tape than the caller's: come back without the caller's drive (waiting for
                    // a second drive while the caller holds one could wait forever).
                    (Ok(Some(_)), Some(_)) => return Attempt::Busy,
                    (Ok(Some(tape)), None) => Some(Arc::new(self.tape.acquire(tape).await)),
                };
                // Drive before key lock (see `locks`): only tried.
                let Some(_guard) = self.locks.try_lock(&key) else {
                    return Attempt::Busy;
                };
                // Looked at again under the lock: the key may have changed meanwhile.
                match (self.migrated_tape(&key).await, lease) {
                    (Err(e), _) => Attempt::Done(Err(e)),
                    (Ok(None), _) => Attempt::Done(Ok(())),
                    (Ok(Some(tape)), Some(lease)) if lease.tape() == tape => {
                        Attempt::Done(self.recall_one(&lease, &key).await)
                    }
                    (Ok(Some(_)), _) => Attempt::Busy,
                }
            })
            .await
    }

    /// Copies the tape copy of migrated `key` to disk and records it (key lock and drive held).
    async fn recall_one(self: &Arc<Self>, lease: &DriveLease, key: &Key) -> Result<()> {
        let Some(entry) = self.entry(key) else {
            return Ok(());
        };
        lease.read(entry.position, entry.size).await;
        let source = self
            .cold
            .get(&cold_key(entry.tape, entry.position), ReadRange::All)
            .await
            .map_err(|e| {
                TieredError::Inconsistent(format!("the tape copy of {key} cannot be read: {e}"))
                    .into_core()
            })?;
        if source.status.size != entry.size {
            return Err(TieredError::Inconsistent(format!(
                "the tape copy of {key} has {} bytes, the catalog says {}",
                source.status.size, entry.size
            ))
            .into_core());
        }
        let stream = crash_mid_stream(source.stream, "recall:mid-disk-copy");
        let options = PutOptions {
            mtime: Some(entry.mtime),
            expected_len: Some(entry.size),
            // The tape copy is the truth for a released key; whatever is on disk is debris.
            overwrite: true,
        };
        self.disk.put(key, stream, options).await?;
        crash_point("recall:after-disk-copy");
        let ino = self.disk_ino(key).await?;
        self.journal_effect(Record::Recalled {
            key: key.to_string(),
            ino,
        })
        .await;
        crash_point("recall:after-journal");
        tracing::debug!(%key, tape = entry.tape, position = entry.position, "recalled");
        Ok(())
    }
}
