//! The dispatcher: claims queued HLM requests and executes them against the backend. It runs inside
//! the server (`[hlm] dispatcher = true`) or alone as `archiveinterface dispatcher`, any number of
//! instances on one PostgreSQL queue.
//!
//! For each claimed request: expand the target into keys at dispatch time (a container's objects as
//! they are now), migrate in batches of `migrate_batch` keys or send every recall through the recall
//! scheduler, then `complete` (all keys succeeded) or `fail` (retried with backoff, up to
//! `max_attempts`). Meanwhile a [`LeaseKeeper`] renews the lease and stores the progress counters.
//! When the keeper says stop (the lease was taken over, or no renewal got through in time because
//! the queue database is slow or unreachable), the work is dropped at its next await point, before
//! the lease can expire: no request runs on two instances at once. Backend operations are safe to
//! stop there, as they are safe to crash there.

use super::queue::{ClaimedRequest, LeaseEnd, LeaseKeeper, Op, Progress, Target};
use super::HlmService;
use crate::swift::names::object_key;
use crate::AppState;
use archive_core::{Error, Key, KeyOutcome};
use axum::http::StatusCode;
use std::time::Duration;
use tokio::sync::watch;
use tokio::time::Instant;
use tracing::Instrument;

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
        // The lease runs from when the claim was sent at the earliest.
        let asked = Instant::now();
        match hlm.queue.claim(&owner).await {
            Ok(Some(claimed)) => execute(&state, &hlm, claimed, asked).await,
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
        match hlm.queue.expire_finished().await {
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

async fn execute(state: &AppState, hlm: &HlmService, claimed: ClaimedRequest, claimed_at: Instant) {
    let span = tracing::info_span!(
        "hlm_request",
        id = %claimed.record.id,
        op = %claimed.record.op,
        attempt = claimed.lease.attempt
    );
    execute_in_span(state, hlm, claimed, claimed_at)
        .instrument(span)
        .await
}

/// Runs the request's work while the lease is kept, then stores how it ended.
async fn execute_in_span(
    state: &AppState,
    hlm: &HlmService,
    claimed: ClaimedRequest,
    claimed_at: Instant,
) {
    let ClaimedRequest { record, lease } = claimed;
    tracing::info!(target = ?record.target, "executing HLM request");
    let mut keeper = LeaseKeeper::new(hlm.queue.clone(), lease, claimed_at, record.progress);
    let (progress_tx, progress_rx) = watch::channel(record.progress);
    let work = run_request(state, record.op, &record.target, &progress_tx);
    // The keeper first: a claim whose answer came too late to be trusted stops before the
    // work has started at all.
    let outcome = tokio::select! {
        biased;
        end = keeper.keep(progress_rx.clone()) => {
            return stopped(&end);
        }
        outcome = work => outcome,
    };
    if let Err(end) = keeper.store_progress(progress_rx.clone()).await {
        return stopped(&end);
    }
    let reported = match outcome {
        Outcome::Done => keeper
            .until_stored(progress_rx, |q, l| async move { q.complete(&l).await })
            .await
            .map(|_| tracing::info!("HLM request done")),
        Outcome::Retry(error) => keeper
            .until_stored(progress_rx, |q, l| {
                let error = error.clone();
                async move { q.fail(&l, &error).await }
            })
            .await
            .map(|o| tracing::warn!(%error, outcome = ?o, "HLM request failed")),
        Outcome::Permanent(error) => keeper
            .until_stored(progress_rx, |q, l| {
                let error = error.clone();
                async move { q.fail_permanently(&l, &error).await }
            })
            .await
            .map(|_| tracing::warn!(%error, "HLM request failed for good")),
    };
    if let Err(end) = reported {
        stopped(&end);
    }
}

/// Logs why the work on a request stopped before it was reported; the request is now (or soon)
/// another claim's.
fn stopped(end: &LeaseEnd) {
    match end {
        LeaseEnd::Lost(_) => {
            tracing::warn!(reason = %end, "lease lost; another instance owns the request now")
        }
        LeaseEnd::Unconfirmed { .. } => tracing::warn!(
            reason = %end,
            "work stopped before the lease could expire; the request will be claimed again"
        ),
    }
}

/// What a failed container listing makes of its request. An index or backend that is down or failing
/// now (5xx) may list fine later: retried with the usual backoff. A missing container, a bad name or
/// an unsupported listing (501) will not: failed for good.
fn listing_failed(e: crate::error::ApiError) -> Outcome {
    if e.is_internal() && e.status != StatusCode::NOT_IMPLEMENTED {
        Outcome::Retry(format!("cannot list the container: {}", e.message))
    } else {
        Outcome::Permanent(e.message)
    }
}

async fn expand(state: &AppState, target: &Target) -> Result<Vec<Key>, Outcome> {
    let swift = &state.config.swift;
    let permanent = |e: crate::error::ApiError| Outcome::Permanent(e.message);
    match target {
        Target::Container { account, container } => {
            crate::swift::container_object_keys(state, account, container)
                .await
                .map_err(listing_failed)
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

/// The work of one request; reports its counters on `progress` and never touches the queue, so
/// that a queue that does not answer cannot hold it up.
async fn run_request(
    state: &AppState,
    op: Op,
    target: &Target,
    progress_tx: &watch::Sender<Progress>,
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
    progress_tx.send_replace(progress);
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
                progress_tx.send_replace(progress);
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
            for ticket in recalls.submit_in_slices(&keys, 100) {
                if let Some(stop) = tally(ticket.wait().await, &mut progress) {
                    return stop;
                }
                progress_tx.send_replace(progress);
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

#[cfg(test)]
mod tests {
    use super::{listing_failed, Outcome};
    use crate::error::ApiError;
    use axum::http::StatusCode;

    #[test]
    fn a_passing_listing_failure_retries_and_a_lasting_one_fails_for_good() {
        let outcome = |status, message: &str| listing_failed(ApiError::new(status, message));
        for passing in [
            StatusCode::SERVICE_UNAVAILABLE,
            StatusCode::INTERNAL_SERVER_ERROR,
        ] {
            match outcome(passing, "the index is busy") {
                Outcome::Retry(m) => assert!(m.contains("the index is busy"), "{m}"),
                _ => panic!("{passing} must be retried"),
            }
        }
        for lasting in [
            StatusCode::NOT_FOUND,
            StatusCode::BAD_REQUEST,
            StatusCode::NOT_IMPLEMENTED,
        ] {
            assert!(
                matches!(outcome(lasting, "no"), Outcome::Permanent(_)),
                "{lasting} must fail for good"
            );
        }
    }
}
