//! Which copies and archives the policies make due: a scan of the local files selected by a policy,
//! a copy for each one unchanged for `copy_after_secs` without a current remote copy, an archive
//! for each one whose remote copy has been confirmed for `retain_local_secs`. The server submits
//! them to its request queue; executing them is idempotent, so a scan that overlaps earlier work
//! costs HEAD requests, never a second upload of a current copy.

use crate::backend::CloudBackend;
use crate::metrics::CloudMetrics;
use crate::remote;
use archive_core::Key;
use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

/// What a scan found to do.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct DueWork {
    /// Files to copy (keep the local copy).
    pub copy: Vec<Key>,
    /// Files to archive (copy if needed, then release the local copy).
    pub archive: Vec<Key>,
}

/// Scans the local files and returns the work due at `now`; also sets each store's queue depth.
pub async fn scan(backend: &CloudBackend, now: SystemTime) -> archive_core::Result<DueWork> {
    let mut due = DueWork::default();
    let mut depth: BTreeMap<String, u64> = BTreeMap::new();
    for entry in backend.local().list("").await? {
        let key = entry.key;
        let Some(selected) = backend.selected(key.as_str()) else {
            continue;
        };
        let policy = selected.policy;
        let status = match backend.local().status(&key).await {
            Ok(status) => status,
            // Deleted since the listing.
            Err(archive_core::Error::NotFound { .. }) => continue,
            Err(e) => return Err(e),
        };
        let last_change = status.ctime.max(status.mtime);
        let age = now.duration_since(last_change).unwrap_or(Duration::ZERO);
        if age < Duration::from_secs(policy.copy_after_secs) {
            continue;
        }
        // A store that cannot answer now: the copy is queued anyway; the queue retries it with
        // backoff until the store is back, and executing it checks the store again first.
        let object = match remote::head(selected.store, key.as_str()).await {
            Ok(object) => object,
            Err(e) => {
                tracing::warn!(%key, error = %e, "cannot check the remote copy while scanning");
                CloudMetrics::add(&backend.metrics().store(&selected.store.name).errors, 1);
                None
            }
        };
        let current = object
            .as_ref()
            .filter(|o| o.is_copy_of(status.size, status.mtime, status.ctime));
        let archive = match (policy.retain_local_secs, current) {
            (Some(retain), Some(copy)) => {
                let confirmed = now
                    .duration_since(copy.last_modified)
                    .unwrap_or(Duration::ZERO);
                confirmed >= Duration::from_secs(retain)
            }
            (Some(0), None) => true,
            _ => false,
        };
        if archive {
            due.archive.push(key);
        } else if current.is_none() {
            due.copy.push(key);
        } else {
            continue;
        }
        *depth.entry(selected.store.name.clone()).or_default() += 1;
    }
    for policy in backend.policies() {
        let counters = backend.metrics().store(&policy.store);
        let value = depth.get(&policy.store).copied().unwrap_or(0);
        counters
            .queue_depth
            .store(value, std::sync::atomic::Ordering::Relaxed);
    }
    Ok(due)
}
