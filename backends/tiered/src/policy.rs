//! Background migration policy (1space's "archive after a set time period", plus disk watermarks).
//!
//! Each pass, over the files on the disk tier:
//! 1. **age**: resident files at least `migrate_after_secs` old (by modification time) and at least
//!    `migrate_min_size` bytes are migrated;
//! 2. **watermarks**: while the archive bytes on disk exceed `high_watermark_bytes`, the least recently
//!    used files (last access = the latest of atime, mtime and reads through this process) are migrated
//!    until at most `low_watermark_bytes` remain; premigrated files only lose their disk copy.

use crate::TieredBackend;
use archive_core::{ArchiveBackend, Key, Result};
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use tokio::task::JoinHandle;

/// What one policy pass did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PolicyReport {
    /// Files migrated by the age rule.
    pub aged_out: Vec<Key>,
    /// Files migrated by the watermark rule, least recently used first.
    pub released_for_space: Vec<Key>,
    /// Files the pass tried to migrate and could not.
    pub failed: usize,
    /// Archive bytes on the disk tier before the pass.
    pub disk_bytes_before: u64,
    /// Archive bytes on the disk tier after the pass.
    pub disk_bytes_after: u64,
}

#[derive(Debug)]
struct OnDisk {
    key: Key,
    size: u64,
    mtime: SystemTime,
    last_access: SystemTime,
}

impl TieredBackend {
    /// Whether the configuration asks for any background migration.
    pub fn has_migration_policy(&self) -> bool {
        let c = self.config();
        c.migrate_after().is_some() || c.high_watermark_bytes.is_some()
    }

    /// Runs one pass of the migration policy as of `now`.
    pub async fn run_migration_policy(&self, now: SystemTime) -> Result<PolicyReport> {
        let files = self.files_on_disk().await?;
        let config = self.config().clone();
        let mut report = PolicyReport {
            disk_bytes_before: files.iter().map(|f| f.size).sum(),
            ..Default::default()
        };
        let mut on_disk = report.disk_bytes_before;
        let mut done = std::collections::HashSet::new();

        if let Some(after) = config.migrate_after() {
            let aged: Vec<Key> = files
                .iter()
                .filter(|f| self.inner.entry(&f.key).is_none())
                .filter(|f| f.size >= config.migrate_min_size)
                .filter(|f| now.duration_since(f.mtime).unwrap_or_default() >= after)
                .map(|f| f.key.clone())
                .collect();
            for (key, outcome) in self.migrate(&aged).await? {
                match outcome {
                    Ok(()) => {
                        on_disk -= files.iter().find(|f| f.key == key).map_or(0, |f| f.size);
                        done.insert(key.clone());
                        report.aged_out.push(key);
                    }
                    Err(_) => report.failed += 1,
                }
            }
        }

        if let (Some(high), Some(low)) = (config.high_watermark_bytes, config.low_watermark_bytes) {
            if on_disk > high {
                let mut lru: Vec<&OnDisk> =
                    files.iter().filter(|f| !done.contains(&f.key)).collect();
                lru.sort_by(|a, b| a.last_access.cmp(&b.last_access).then(a.key.cmp(&b.key)));
                let mut chosen = Vec::new();
                let mut expected = on_disk;
                for f in lru {
                    if expected <= low {
                        break;
                    }
                    expected -= f.size;
                    chosen.push(f.key.clone());
                }
                for (key, outcome) in self.migrate(&chosen).await? {
                    match outcome {
                        Ok(()) => {
                            on_disk -= files.iter().find(|f| f.key == key).map_or(0, |f| f.size);
                            report.released_for_space.push(key);
                        }
                        Err(_) => report.failed += 1,
                    }
                }
            }
        }
        report.disk_bytes_after = on_disk;
        Ok(report)
    }

    async fn files_on_disk(&self) -> Result<Vec<OnDisk>> {
        let listed = self.inner.disk.list("").await?;
        let inner = Arc::clone(&self.inner);
        crate::blocking(move || {
            let last_read = inner.reads.snapshot();
            Ok(listed
                .into_iter()
                .map(|e| {
                    let atime = inner
                        .disk
                        .metadata(&e.key)
                        .and_then(|m| m.accessed())
                        .unwrap_or(e.mtime);
                    let read = last_read.get(&e.key).copied().unwrap_or(e.mtime);
                    OnDisk {
                        last_access: atime.max(e.mtime).max(read),
                        key: e.key,
                        size: e.size,
                        mtime: e.mtime,
                    }
                })
                .collect())
        })
        .await
    }
}

/// Runs the migration policy every `policy_interval_secs` until `shutdown` completes. A pass that is
/// running when shutdown comes is finished first (a migration is never cut in the middle).
pub fn spawn_migration_policy(
    backend: Arc<TieredBackend>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        tokio::pin!(shutdown);
        if !backend.has_migration_policy() {
            tracing::info!("tiered migration policy off (no migrate_after_secs, no watermarks)");
            return;
        }
        let interval = Duration::from_secs(backend.config().policy_interval_secs);
        tracing::info!(
            migrate_after_secs = ?backend.config().migrate_after_secs,
            high_watermark_bytes = ?backend.config().high_watermark_bytes,
            interval_secs = interval.as_secs(),
            "tiered migration policy started"
        );
        loop {
            tokio::select! {
                _ = &mut shutdown => break,
                _ = tokio::time::sleep(interval) => {}
            }
            match backend.run_migration_policy(SystemTime::now()).await {
                Ok(r)
                    if r.aged_out.is_empty()
                        && r.released_for_space.is_empty()
                        && r.failed == 0 =>
                {
                    tracing::debug!(
                        disk_bytes = r.disk_bytes_after,
                        "migration policy: nothing to do"
                    )
                }
                Ok(r) => tracing::info!(
                    aged_out = r.aged_out.len(),
                    released_for_space = r.released_for_space.len(),
                    failed = r.failed,
                    disk_bytes_before = r.disk_bytes_before,
                    disk_bytes_after = r.disk_bytes_after,
                    "migration policy pass"
                ),
                Err(e) => tracing::warn!(error = %e, "migration policy pass failed"),
            }
        }
        tracing::info!("tiered migration policy stopped");
    })
}
