//! The cloud scanner: every `cloud.scan_interval_secs` it asks the tier which copies and archives
//! are due (`archive_cloud::due`) and submits them to the HLM request queue as premigrate (copy) and
//! migrate (archive) requests of backend keys, so that they survive restarts, are retried with
//! backoff, show in `/hlm/v1/requests` with progress, and run once across instances sharing the
//! queue. Keys already waiting in a pending or running request are not submitted again.

use crate::hlm::queue::{NewRequest, Op, RequestFilter, State, Target};
use crate::hlm::HlmService;
use archive_cloud::CloudBackend;
use archive_core::Key;
use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use tokio::sync::watch;

/// Runs scans until `stop` turns true.
pub async fn run(
    cloud: Arc<CloudBackend>,
    hlm: HlmService,
    interval: Duration,
    batch: usize,
    mut stop: watch::Receiver<bool>,
) {
    tracing::info!(interval_secs = interval.as_secs(), "cloud scanner running");
    while !*stop.borrow() {
        if let Err(e) = scan_once(&cloud, &hlm, batch).await {
            tracing::warn!(error = %e, "cloud scan failed; trying again at the next interval");
        }
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = stop.changed() => {}
        }
    }
}

/// One scan: submits what is due and not queued yet. Returns the number of keys submitted.
pub async fn scan_once(
    cloud: &CloudBackend,
    hlm: &HlmService,
    batch: usize,
) -> Result<usize, String> {
    let due = archive_cloud::due::scan(cloud, SystemTime::now())
        .await
        .map_err(|e| e.to_string())?;
    if due.copy.is_empty() && due.archive.is_empty() {
        return Ok(0);
    }
    let queued = queued_keys(hlm).await?;
    let mut submitted = 0;
    for (op, keys) in [(Op::Premigrate, due.copy), (Op::Migrate, due.archive)] {
        let fresh: Vec<String> = keys
            .iter()
            .map(Key::as_str)
            .filter(|k| !queued.contains(*k))
            .map(str::to_string)
            .collect();
        for chunk in fresh.chunks(batch.max(1)) {
            hlm.queue
                .submit(NewRequest::new(op, Target::Keys(chunk.to_vec())))
                .await
                .map_err(|e| format!("cannot queue cloud work: {e}"))?;
            submitted += chunk.len();
        }
    }
    if submitted > 0 {
        hlm.wake.notify_waiters();
        tracing::info!(keys = submitted, "queued cloud copies and archives");
    }
    Ok(submitted)
}

/// Keys in pending or running requests of the kinds the scanner submits.
async fn queued_keys(hlm: &HlmService) -> Result<BTreeSet<String>, String> {
    let filter = RequestFilter {
        states: vec![State::Pending, State::Running],
        ..RequestFilter::default()
    };
    let records = hlm
        .queue
        .list(&filter)
        .await
        .map_err(|e| format!("cannot read the request queue: {e}"))?;
    Ok(records
        .into_iter()
        .filter(|r| matches!(r.op, Op::Premigrate | Op::Migrate))
        .filter_map(|r| match r.target {
            Target::Keys(keys) => Some(keys),
            _ => None,
        })
        .flatten()
        .collect())
}
