//! The cloud scanner: every `cloud.scan_interval_secs` it asks the tier which copies and archives
//! are due (`archive_cloud::due`) and submits them to the HLM request queue as premigrate (copy) and
//! migrate (archive) requests of backend keys, so that they survive restarts, are retried with
//! backoff, show in `/hlm/v1/requests` with progress, and run once across instances sharing the
//! queue. Keys already waiting in a pending or running request are not submitted again. Swift
//! objects are submitted per container (so that `/hlm/v1/requests/<account>/<container>` lists
//! them), other files as backend keys.

use crate::hlm::queue::{NewRequest, Op, RequestFilter, State, Target};
use crate::hlm::HlmService;
use archive_cloud::policy::KeyKind;
use archive_cloud::CloudBackend;
use archive_core::Key;
use std::collections::{BTreeMap, BTreeSet};
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
    let queued = queued_keys(hlm, cloud).await?;
    let mut submitted = 0;
    for (op, keys) in [(Op::Premigrate, due.copy), (Op::Migrate, due.archive)] {
        let fresh = keys
            .iter()
            .map(Key::as_str)
            .filter(|k| !queued.contains(*k));
        for target in targets(cloud, fresh, batch.max(1)) {
            let count = match &target {
                Target::Objects { objects, .. } => objects.len(),
                Target::Keys(keys) => keys.len(),
                _ => 1,
            };
            hlm.queue
                .submit(NewRequest::new(op, target))
                .await
                .map_err(|e| format!("cannot queue cloud work: {e}"))?;
            submitted += count;
        }
    }
    if submitted > 0 {
        hlm.wake.notify_waiters();
        tracing::info!(keys = submitted, "queued cloud copies and archives");
    }
    Ok(submitted)
}

/// Requests of at most `batch` keys: Swift objects grouped by container, the rest as keys.
fn targets<'a>(
    cloud: &CloudBackend,
    keys: impl Iterator<Item = &'a str>,
    batch: usize,
) -> Vec<Target> {
    let mut by_container: BTreeMap<(String, String), Vec<String>> = BTreeMap::new();
    let mut plain = Vec::new();
    for key in keys {
        match cloud.key_space().kind(key) {
            KeyKind::Swift {
                account,
                container,
                object,
            } => by_container
                .entry((account.to_string(), container.to_string()))
                .or_default()
                .push(object.to_string()),
            _ => plain.push(key.to_string()),
        }
    }
    let mut out = Vec::new();
    for ((account, container), objects) in by_container {
        for chunk in objects.chunks(batch) {
            out.push(Target::Objects {
                account: account.clone(),
                container: container.clone(),
                objects: chunk.to_vec(),
            });
        }
    }
    for chunk in plain.chunks(batch) {
        out.push(Target::Keys(chunk.to_vec()));
    }
    out
}

/// Keys in pending or running requests of the kinds the scanner submits.
async fn queued_keys(hlm: &HlmService, cloud: &CloudBackend) -> Result<BTreeSet<String>, String> {
    let filter = RequestFilter {
        states: vec![State::Pending, State::Running],
        ..RequestFilter::default()
    };
    let records = hlm
        .queue
        .list(&filter)
        .await
        .map_err(|e| format!("cannot read the request queue: {e}"))?;
    let root = &cloud.key_space().swift_root;
    let mut keys = BTreeSet::new();
    for record in records {
        if !matches!(record.op, Op::Premigrate | Op::Migrate) {
            continue;
        }
        match record.target {
            Target::Keys(list) => keys.extend(list),
            Target::Objects {
                account,
                container,
                objects,
            } => keys.extend(
                objects
                    .into_iter()
                    .map(|o| format!("{root}/{account}/{container}/{o}")),
            ),
            Target::Object {
                account,
                container,
                object,
            } => {
                keys.insert(format!("{root}/{account}/{container}/{object}"));
            }
            Target::Container { .. } => {}
        }
    }
    Ok(keys)
}
