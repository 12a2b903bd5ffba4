//! `recall`: read migrated files back from the cold tier to disk (-> premigrated), in the order given.
//! Consecutive keys on one tape share one drive lease, so a batch sorted by tape and position (what the
//! recall scheduler sends) mounts each tape once and reads it in one pass.
//!
//! Crash points: `recall:mid-disk-copy` (a partial disk file, swept at the next start),
//! `recall:after-disk-copy` (a complete disk copy the catalog still calls released: repair compares it
//! with the tape copy and records the recall), `recall:after-journal`.

use crate::catalog::Record;
use crate::crash::{crash_mid_stream, crash_point};
use crate::error::TieredError;
use crate::tape::DriveLease;
use crate::{cold_key, Inner};
use archive_core::{ArchiveBackend, Key, KeyOutcome, PutOptions, ReadRange, Result};
use std::sync::Arc;

impl Inner {
    pub(crate) async fn recall_keys(self: &Arc<Self>, keys: &[Key]) -> Vec<KeyOutcome<()>> {
        let mut out = Vec::with_capacity(keys.len());
        let mut i = 0;
        while i < keys.len() {
            let tape = match self.entry(&keys[i]) {
                Some(e) if e.released => e.tape,
                // Not on tape only, nothing to read: resident, premigrated or missing.
                Some(_) => {
                    out.push((keys[i].clone(), Ok(())));
                    i += 1;
                    continue;
                }
                None => {
                    let outcome = self.disk.status(&keys[i]).await.map(drop);
                    out.push((keys[i].clone(), outcome));
                    i += 1;
                    continue;
                }
            };
            let lease = self.tape.acquire(tape).await;
            while i < keys.len() {
                let key = &keys[i];
                if self
                    .entry(key)
                    .is_some_and(|e| e.released && e.tape != tape)
                {
                    break;
                }
                let outcome = self.recall_one(&lease, key).await;
                if let Err(e) = &outcome {
                    tracing::warn!(%key, error = %e, "recall of a file failed");
                }
                out.push((key.clone(), outcome));
                i += 1;
            }
        }
        out
    }

    async fn recall_one(self: &Arc<Self>, lease: &DriveLease, key: &Key) -> Result<()> {
        let _guard = self.locks.lock(key).await;
        let entry = match self.entry(key) {
            Some(e) if e.released => e,
            Some(_) => return Ok(()),
            None => return self.disk.status(key).await.map(drop),
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
        self.journal(Record::Recalled {
            key: key.to_string(),
            ino,
        })
        .await?;
        crash_point("recall:after-journal");
        tracing::debug!(%key, tape = entry.tape, position = entry.position, "recalled");
        Ok(())
    }
}
