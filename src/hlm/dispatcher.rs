//! The dispatcher: claims queued HLM requests and executes them against the backend. It runs inside
//! the server (`[hlm] dispatcher = true`) or alone as `archiveinterface dispatcher`, any number of
//! instances on one PostgreSQL queue.
//!
//! For each claimed request: expand the target into keys at dispatch time (a container's objects as
//! they are now), renew the lease while working, migrate in batches of `migrate_batch` keys or send
//! every recall through the recall scheduler, record progress as it goes, then `complete` (all keys
//! succeeded) or `fail` (retried with backoff, up to `max_attempts`). A request whose lease is lost
//! (another instance took it over after this one stalled) is abandoned at once.

use super::queue::{ClaimedRequest, Error as QueueError, Lease, Op, Progress, Target};
use super::HlmService;
use crate::swift::names::object_key;
use crate::AppState;
use archive_core::{Error, Key, KeyOutcome};
use std::time::Duration;
use tokio::sync::watch;

/// A unique name for this instance's leases: host, process id and a random suffix.
pub fn instance_owner() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "localhost".into());
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!("{host}:{}:{nanos:08x}", std::process::id())
}

/// Runs `workers` dispatcher loops until `stop` turns true; each finishes the request it is on.
pub async fn run(state: AppState, hlm: HlmService, stop: watch::Receiver<bool>) {
    let owner = instance_owner();
    let config = state.config.hlm.clone();
    tracing::info!(%owner, workers = config.workers, "HLM dispatcher running");
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..config.workers {
        tasks.spawn(worker(
            state.clone(),
            hlm.clone(),
            owner.clone(),
            stop.clone(),
        ));
    }
    tasks.spawn(housekeeping(hlm.clone(), stop.clone()));
    while tasks.join_next().await.is_some() {}
    tracing::info!("HLM dispatcher stopped");
}

async fn worker(state: AppState, hlm: HlmService, owner: String, mut stop: watch::Receiver<bool>) {
    let poll = Duration::from_millis(state.config.hlm.poll_interval_ms);
    while !*stop.borrow() {
        // Register for a wake-up before looking, so a submit between the claim and the wait is not lost.
        let woken = hlm.wake.notified();
        match hlm.queue.claim(&owner).await {
            Ok(Some(claimed)) => execute(&state, &hlm, claimed).await,
            Ok(None) => {
                tokio::select! {
                    _ = woken => {}
                    _ = tokio::time::sleep(poll) => {}
                    _ = stop.changed() => {}
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot claim HLM requests");
                tokio::select! {
                    _ = tokio::time::sleep(poll) => {}
                    _ = stop.changed() => {}
                }
            }
        }
    }
}

/// Deletes finished requests past their retention, once a minute.
async fn housekeeping(hlm: HlmService, mut stop: watch::Receiver<bool>) {
    while !*stop.borrow() {
        match hlm
            .queue
            .expire_finished(sqlx::types::chrono::Utc::now())
            .await
        {
            Ok(0) => {}
            Ok(n) => tracing::info!(expired = n, "expired finished HLM requests"),
            Err(e) => tracing::warn!(error = %e, "cannot expire finished HLM requests"),
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(60)) => {}
            _ = stop.changed() => {}
        }
    }
}

/// How a request ended, before it is reported to the queue.
enum Outcome {
    /// Every key succeeded.
    Done,
    /// Some keys failed; worth retrying.
    Retry(String),
    /// Retrying cannot help (the target is gone, the backend lacks the operation).
    Permanent(String),
}

async fn execute(state: &AppState, hlm: &HlmService, claimed: ClaimedRequest) {
    let ClaimedRequest { record, lease } = claimed;
    let span = tracing::info_span!("hlm_request", id = %record.id, op = %record.op, attempt = lease.attempt);
    let _enter = span.enter();
    tracing::info!(target = ?record.target, "executing HLM request");
    let work = run_request(state, hlm, record.op, &record.target, &lease);
    let outcome = tokio::select! {
        outcome = work => outcome,
        lost = keep_lease(hlm, &lease) => {
            tracing::warn!(error = %lost, "lease lost; another instance owns the request now");
            return;
        }
    };
    let reported = match outcome {
        Outcome::Done => hlm
            .queue
            .complete(&lease)
            .await
            .map(|_| tracing::info!("HLM request done")),
        Outcome::Retry(error) => hlm
            .queue
            .fail(&lease, &error)
            .await
            .map(|o| tracing::warn!(%error, outcome = ?o, "HLM request failed")),
        Outcome::Permanent(error) => hlm
            .queue
            .fail_permanently(&lease, &error)
            .await
            .map(|_| tracing::warn!(%error, "HLM request failed for good")),
    };
    if let Err(e) = reported {
        tracing::warn!(error = %e, "cannot record the end of an HLM request");
    }
}

/// Renews the lease at a third of its duration; returns only when it is lost or cannot be renewed.
async fn keep_lease(hlm: &HlmService, lease: &Lease) -> QueueError {
    let every = hlm.queue.options().lease_duration / 3;
    loop {
        tokio::time::sleep(every.max(Duration::from_millis(10))).await;
        match hlm.queue.renew_lease(lease).await {
            Ok(_) => {}
            Err(e @ QueueError::LeaseLost { .. }) => return e,
            // A passing database error: try again at the next tick; the lease may still be valid.
            Err(e) => tracing::warn!(error = %e, "cannot renew the lease"),
        }
    }
}

async fn expand(state: &AppState, target: &Target) -> Result<Vec<Key>, Outcome> {
    let swift = &state.config.swift;
    let permanent = |e: crate::error::ApiError| Outcome::Permanent(e.message);
    match target {
        Target::Container { account, container } => {
            crate::swift::container_object_keys(state, account, container)
                .await
                .map_err(permanent)
        }
        Target::Object {
            account,
            container,
            object,
        } => object_key(swift, account, container, object)
            .map(|k| vec![k])
            .map_err(permanent),
        Target::Objects {
            account,
            container,
            objects,
        } => objects
            .iter()
            .map(|o| object_key(swift, account, container, o))
            .collect::<Result<_, _>>()
            .map_err(permanent),
        Target::Keys(keys) => keys
            .iter()
            .map(|k| Key::new(k.as_str()).map_err(|e| Outcome::Permanent(e.to_string())))
            .collect(),
    }
}

async fn run_request(
    state: &AppState,
    hlm: &HlmService,
    op: Op,
    target: &Target,
    lease: &Lease,
) -> Outcome {
    let keys = match expand(state, target).await {
        Ok(keys) => keys,
        Err(outcome) => return outcome,
    };
    let total = keys.len() as u64;
    let mut progress = Progress {
        done: 0,
        failed: 0,
        total,
    };
    let _ = hlm.queue.record_progress(lease, progress).await;
    let mut first_error: Option<String> = None;
    let mut tally = |outcomes: Vec<KeyOutcome<()>>, progress: &mut Progress| -> Option<Outcome> {
        for (key, result) in outcomes {
            progress.done += 1;
            if let Err(e) = result {
                if matches!(e, Error::Unsupported { .. }) {
                    return Some(Outcome::Permanent(e.to_string()));
                }
                progress.failed += 1;
                first_error.get_or_insert_with(|| format!("{key}: {e}"));
            }
        }
        None
    };
    match op {
        Op::Migrate | Op::Premigrate => {
            for batch in keys.chunks(state.config.hlm.migrate_batch) {
                let result = match op {
                    Op::Migrate => state.backend.migrate(batch).await,
                    _ => state.backend.premigrate(batch).await,
                };
                let outcomes = match result {
                    Ok(outcomes) => outcomes,
                    Err(e @ Error::Unsupported { .. }) => return Outcome::Permanent(e.to_string()),
                    Err(e) => {
                        let text = e.to_string();
                        batch
                            .iter()
                            .map(|k| (k.clone(), Err(Error::backend("hlm", text.clone()))))
                            .collect()
                    }
                };
                if let Some(stop) = tally(outcomes, &mut progress) {
                    return stop;
                }
                let _ = hlm.queue.record_progress(lease, progress).await;
            }
        }
        Op::Recall => {
            let Some(recalls) = &state.recalls else {
                return Outcome::Permanent(format!(
                    "The {} backend does not support recall",
                    state.backend.name()
                ));
            };
            // Submitted together (the scheduler batches them by tape), awaited in slices so that the
            // progress counters move while the recall runs.
            let tickets: Vec<_> = keys
                .chunks(100)
                .map(|slice| recalls.submit(slice.to_vec()))
                .collect();
            for ticket in tickets {
                if let Some(stop) = tally(ticket.wait().await, &mut progress) {
                    return stop;
                }
                let _ = hlm.queue.record_progress(lease, progress).await;
            }
        }
    }
    match first_error {
        None => Outcome::Done,
        Some(error) => Outcome::Retry(format!(
            "{} of {total} failed; first: {error}",
            progress.failed
        )),
    }
}
