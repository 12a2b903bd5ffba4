//! [`LeaseKeeper`]: what keeps a claimed request's lease alive while its work runs, carries the
//! work's progress counters to the queue, and says when the work must stop.
//!
//! The rule that keeps two instances from working on one request at once: the lease runs at
//! least [`QueueOptions::lease_duration`] from the moment the claim or the last successful
//! renewal was *sent* (the database stamps the expiry after it received the statement). The
//! keeper measures that on this process's monotonic clock and gives up a safety margin before
//! the earliest possible expiry when no renewal got through meanwhile: the database is slow,
//! unreachable or the connection stalled. The holder then drops its work, so it has stopped
//! before another instance can claim the request.
//!
//! [`QueueOptions::lease_duration`]: super::QueueOptions::lease_duration

use std::future::Future;
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::{sleep_until, timeout_at, Instant};

use super::error::{Error, Result};
use super::record::{Lease, Progress};
use super::RequestQueue;

/// Wait after a failed progress write or renewal before trying again: short, so that a database
/// that comes back is used at once, long enough not to hammer one that is down.
const RETRY_DELAY: Duration = Duration::from_millis(250);

/// Why a [`LeaseKeeper`] told its holder to stop.
#[derive(Debug)]
pub enum LeaseEnd {
    /// The queue refused the lease: another claim took the request over, or it finished.
    Lost(Error),
    /// No renewal was confirmed in time: the lease may expire soon (the database is slow or
    /// unreachable). The request is left for another claim once it does.
    Unconfirmed {
        /// The last error of a renewal, if one failed rather than hung.
        last_error: Option<String>,
    },
}

impl std::fmt::Display for LeaseEnd {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LeaseEnd::Lost(e) => write!(f, "{e}"),
            LeaseEnd::Unconfirmed { last_error: None } => {
                f.write_str("the lease could not be renewed in time (no answer from the queue)")
            }
            LeaseEnd::Unconfirmed {
                last_error: Some(e),
            } => write!(f, "the lease could not be renewed in time: {e}"),
        }
    }
}

/// Renews one lease and stores the progress its holder reports, until told otherwise.
///
/// `keep` may be called several times (while the work runs, then while the outcome is
/// reported); dropping its future at any point is harmless: a renewal in flight that is
/// abandoned simply does not count as confirmed.
#[derive(Debug)]
pub struct LeaseKeeper {
    queue: RequestQueue,
    lease: Lease,
    /// When the claim or the last confirmed renewal was sent.
    confirmed_at: Instant,
    /// The counters last stored in the queue.
    recorded: Progress,
    last_error: Option<String>,
}

impl LeaseKeeper {
    /// A keeper for `lease`, which a claim sent at `claimed_at` obtained; `recorded` is the
    /// progress the claimed record already holds.
    pub fn new(queue: RequestQueue, lease: Lease, claimed_at: Instant, recorded: Progress) -> Self {
        LeaseKeeper {
            queue,
            lease,
            confirmed_at: claimed_at,
            recorded,
            last_error: None,
        }
    }

    /// The lease this keeper holds.
    pub fn lease(&self) -> &Lease {
        &self.lease
    }

    /// Time between renewals: a quarter of the lease, so that two or three tries fit before
    /// [`deadline`](Self::deadline).
    fn renew_every(&self) -> Duration {
        (self.queue.options().lease_duration / 4).max(Duration::from_millis(10))
    }

    /// When the holder must have stopped unless a renewal is confirmed before: a quarter of
    /// the lease before its earliest possible expiry. The margin covers dropping the work
    /// (backend calls end at their next await) and clock-rate differences between hosts.
    pub fn deadline(&self) -> Instant {
        let lease = self.queue.options().lease_duration;
        self.confirmed_at + lease - lease / 4
    }

    /// Renew the lease every quarter of its duration and store the counters `progress`
    /// carries as they change, retrying writes that fail. Returns only when the holder must
    /// stop: the lease was lost, or it could not be confirmed before [`deadline`](Self::deadline).
    pub async fn keep(&mut self, mut progress: watch::Receiver<Progress>) -> LeaseEnd {
        let mut next_renewal = self.confirmed_at + self.renew_every();
        let mut next_progress_write = Instant::now();
        let mut progress_open = true;
        loop {
            let deadline = self.deadline();
            let wanted = *progress.borrow_and_update();
            let dirty = wanted != self.recorded;
            tokio::select! {
                biased;
                _ = sleep_until(deadline) => return self.unconfirmed(),
                _ = sleep_until(next_renewal) => {
                    let sent = Instant::now();
                    match timeout_at(deadline, self.queue.renew_lease(&self.lease)).await {
                        Err(_elapsed) => return self.unconfirmed(),
                        Ok(Ok(_)) => {
                            self.confirmed_at = sent;
                            self.last_error = None;
                            next_renewal = sent + self.renew_every();
                        }
                        Ok(Err(e @ Error::LeaseLost { .. })) => return LeaseEnd::Lost(e),
                        Ok(Err(e)) => {
                            tracing::warn!(request = %self.lease.id, error = %e, "cannot renew the lease; retrying");
                            self.last_error = Some(e.to_string());
                            next_renewal = Instant::now() + RETRY_DELAY;
                        }
                    }
                }
                _ = sleep_until(next_progress_write), if dirty => {
                    match timeout_at(deadline, self.queue.record_progress(&self.lease, wanted)).await {
                        Err(_elapsed) => return self.unconfirmed(),
                        Ok(Ok(())) => self.recorded = wanted,
                        Ok(Err(e @ Error::LeaseLost { .. })) => return LeaseEnd::Lost(e),
                        Ok(Err(e)) => {
                            tracing::warn!(request = %self.lease.id, error = %e, "cannot record progress; retrying");
                            next_progress_write = Instant::now() + RETRY_DELAY;
                        }
                    }
                }
                changed = progress.changed(), if progress_open && !dirty => {
                    // The sender is gone once the work ended: nothing new will come.
                    progress_open = changed.is_ok();
                }
            }
        }
    }

    /// Run `call` until it succeeds, retrying passing database errors, while keeping the lease
    /// (and storing `progress`) meanwhile. For the writes that end a request: a queue that is
    /// briefly unreachable does not turn a finished request into a failed or repeated one.
    pub async fn until_stored<T, F, Fut>(
        &mut self,
        progress: watch::Receiver<Progress>,
        mut call: F,
    ) -> std::result::Result<T, LeaseEnd>
    where
        F: FnMut(RequestQueue, Lease) -> Fut,
        Fut: Future<Output = Result<T>>,
    {
        let queue = self.queue.clone();
        let lease = self.lease.clone();
        let attempts = async move {
            loop {
                match call(queue.clone(), lease.clone()).await {
                    Ok(value) => return Ok(value),
                    Err(e @ Error::LeaseLost { .. }) => return Err(LeaseEnd::Lost(e)),
                    Err(e) => {
                        tracing::warn!(request = %lease.id, error = %e, "cannot store the end of a request; retrying");
                        tokio::time::sleep(RETRY_DELAY).await;
                    }
                }
            }
        };
        tokio::select! {
            result = attempts => result,
            end = self.keep(progress) => Err(end),
        }
    }

    /// Store the last counters `progress` carries (unless they are stored already), retrying
    /// as [`until_stored`](Self::until_stored) does: the counters a request ends with are kept.
    pub async fn store_progress(
        &mut self,
        progress: watch::Receiver<Progress>,
    ) -> std::result::Result<(), LeaseEnd> {
        let last = *progress.borrow();
        if last != self.recorded {
            self.until_stored(progress, move |queue, lease| async move {
                queue.record_progress(&lease, last).await
            })
            .await?;
            self.recorded = last;
        }
        Ok(())
    }

    fn unconfirmed(&self) -> LeaseEnd {
        LeaseEnd::Unconfirmed {
            last_error: self.last_error.clone(),
        }
    }
}
