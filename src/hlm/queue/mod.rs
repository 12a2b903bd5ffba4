//! The persistent request queue of the HLM API: migrate, premigrate and recall requests wait
//! here until a dispatcher (in this server or another instance) claims and runs them.
//!
//! One table, `hlm_requests`, in SQLite (a file, the default: no setup) or PostgreSQL (one
//! database shared by several server instances). Life of a request:
//!
//! ```text
//! submit -> pending --claim--> running --complete--> done      (clears older failures
//!              ^                  |  \                           of the same target)
//!              |   fail, attempts |   `--fail, attempts left--> pending after a backoff
//!              |        exhausted v
//!              |               failed  --expire_finished--> deleted after the retention
//!              `-- lease expired: claimable again (counts as an attempt)
//! ```
//!
//! Contracts:
//! - A claim hands out a [`Lease`] (owner + attempt number) valid for
//!   [`QueueOptions::lease_duration`]. The holder renews it while it works. Once it has
//!   expired, another `claim` takes the request over, and from then on every call with the old
//!   lease (`renew_lease`, `record_progress`, `complete`, `fail`) returns
//!   [`Error::LeaseLost`] and changes nothing. A holder keeps its lease with a [`LeaseKeeper`],
//!   which renews it and says when to stop: when the lease is lost, and also when no renewal
//!   got through in time (a slow or unreachable database), before the lease can expire. Holders
//!   that stop when told never overlap on one request.
//!   Across crashes execution is at-least-once: work a crashed holder finished but did not
//!   `complete` runs again after the takeover (migrate and recall are idempotent).
//! - Claiming is safe for any number of concurrent claimers: PostgreSQL takes rows with
//!   `FOR UPDATE SKIP LOCKED`, SQLite claims inside `BEGIN IMMEDIATE` (one writer at a time).
//! - Retries: `fail` returns the request to pending with backoff
//!   `backoff_base * 2^(attempt-1)` (capped at `backoff_max`) until `max_attempts` claims were
//!   made; then it is `failed` for good. `fail_permanently` skips the retries.
//! - Done and failed requests are kept for [`QueueOptions::retention`]; `expire_finished`
//!   deletes older ones (call it periodically). A `complete` deletes the older failed requests
//!   of the same target, as SwiftHLM does.
//! - Claim order: highest priority first, then oldest (FIFO within a priority).
//! - Clocks: PostgreSQL stamps and compares every time with the database's `now()`, so
//!   instances with skewed clocks agree on lease expiry, backoff and retention; SQLite uses
//!   [`QueueOptions::clock`] (this process's clock: one host).

// `statements` holds the SQL of both databases, `sql_queue` the operations that run it,
// `rows` the decoding of its rows; `sqlite` and `postgres` connect and supply their dialect.
mod error;
mod lease_keeper;
mod options;
mod postgres;
mod record;
mod rows;
mod schema;
mod sql_queue;
mod sqlite;
mod statements;

use std::time::Duration;

use sqlx::types::chrono::{DateTime, Utc};

pub use error::{Error, Result};
pub use lease_keeper::{LeaseEnd, LeaseKeeper};
pub use options::{Clock, QueueOptions};
pub use record::{
    ClaimedRequest, FailOutcome, Lease, NewRequest, Op, Progress, QueueCounts, RequestFilter,
    RequestId, RequestRecord, State, Target, DEFAULT_PRIORITY,
};

use postgres::PgQueue;
use sqlite::SqliteQueue;

/// Handle on the queue database; cheap to clone (clones share one connection pool).
#[derive(Debug, Clone)]
pub struct RequestQueue {
    backend: Backend,
    options: QueueOptions,
}

#[derive(Debug, Clone)]
enum Backend {
    Sqlite(SqliteQueue),
    Postgres(PgQueue),
}

/// Call the same method on whichever database backs the queue.
macro_rules! on_backend {
    ($self:ident . $method:ident ( $($arg:expr),* )) => {
        match &$self.backend {
            Backend::Sqlite(q) => q.$method($($arg),*).await,
            Backend::Postgres(q) => q.$method($($arg),*).await,
        }
    };
}

impl RequestQueue {
    /// Open the queue at `url` and apply any pending schema migrations.
    ///
    /// - `sqlite:///var/lib/archiveinterface/queue.db` (absolute path),
    ///   `sqlite://queue.db?mode=rwc` or `sqlite:queue.db` (relative): the file and its
    ///   directory are created if missing. `sqlite::memory:` gives a private in-memory queue
    ///   (tests only: it disappears with the process).
    /// - `postgres://user:password@host:5432/db` (or `postgresql://`): the database must exist;
    ///   the table is created in the connection's `search_path` schema
    ///   (`?options=-c%20search_path%3Dname` selects another one).
    pub async fn connect(url: &str, options: QueueOptions) -> Result<RequestQueue> {
        options.validate()?;
        let backend = if url.starts_with("sqlite:") {
            Backend::Sqlite(SqliteQueue::connect(url, &options).await?)
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Backend::Postgres(PgQueue::connect(url, &options).await?)
        } else {
            return Err(Error::InvalidUrl {
                url: error::redact_url(url),
                reason: "expected a sqlite: or postgres:// URL".to_owned(),
            });
        };
        Ok(RequestQueue { backend, options })
    }

    /// The options the queue was opened with.
    pub fn options(&self) -> &QueueOptions {
        &self.options
    }

    /// `"sqlite"` or `"postgres"`, for logs and metrics labels.
    pub fn database_kind(&self) -> &'static str {
        match self.backend {
            Backend::Sqlite(_) => "sqlite",
            Backend::Postgres(_) => "postgres",
        }
    }

    /// Close the pool, waiting for queries in flight. Further calls fail.
    pub async fn close(&self) {
        on_backend!(self.close())
    }

    /// Put a request in the queue as `pending`, claimable at once. Returns its id.
    ///
    /// Rejects targets without a name (empty account, container, object or list, or a `/` in
    /// an account or container) with [`Error::InvalidRequest`]; those could never run.
    pub async fn submit(&self, request: NewRequest) -> Result<RequestId> {
        validate_target(&request.target)?;
        on_backend!(self.submit(&request))
    }

    /// Claim the best claimable request for `owner` (an id unique to this server instance,
    /// e.g. `host:pid:random`): pending and due, or running with an expired lease. `None` when
    /// there is nothing to do.
    pub async fn claim(&self, owner: &str) -> Result<Option<ClaimedRequest>> {
        Ok(self.claim_many(owner, 1, None).await?.into_iter().next())
    }

    /// Claim up to `limit` requests at once, optionally only of the operations in `ops` (the
    /// recall scheduler takes recalls in batches). Each comes with its own lease. Ordered by
    /// priority, then age.
    pub async fn claim_many(
        &self,
        owner: &str,
        limit: u32,
        ops: Option<&[Op]>,
    ) -> Result<Vec<ClaimedRequest>> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        on_backend!(self.claim(owner, limit, ops))
    }

    /// Extend the lease by [`QueueOptions::lease_duration`] from now; returns the new expiry.
    /// [`Error::LeaseLost`] if the request was taken over or finished meanwhile.
    pub async fn renew_lease(&self, lease: &Lease) -> Result<DateTime<Utc>> {
        on_backend!(self.renew_lease(lease))
    }

    /// Store the progress counters (absolute values, so repeating a call is harmless).
    /// [`Error::LeaseLost`] if the lease is no longer held.
    pub async fn record_progress(&self, lease: &Lease, progress: Progress) -> Result<()> {
        on_backend!(self.record_progress(lease, progress))
    }

    /// Mark the request `done` and delete the failed requests for the same target that were
    /// submitted before it (any operation, as SwiftHLM does). Returns how many it deleted.
    /// [`Error::LeaseLost`] if the lease is no longer held (then nothing changed).
    pub async fn complete(&self, lease: &Lease) -> Result<u64> {
        on_backend!(self.complete(lease))
    }

    /// Record a failed attempt. With attempts left (`lease.attempt < max_attempts`) the request
    /// goes back to pending and is not claimed before the backoff has passed; otherwise it is
    /// `failed` for good. `error` is kept as `last_error`.
    /// [`Error::LeaseLost`] if the lease is no longer held (then nothing changed).
    pub async fn fail(&self, lease: &Lease, error: &str) -> Result<FailOutcome> {
        let retry_after = (lease.attempt < self.options.max_attempts)
            .then(|| self.options.backoff(lease.attempt));
        on_backend!(self.fail(lease, error, retry_after))
    }

    /// Record a failure that retrying cannot fix (the object does not exist, the backend does
    /// not support the operation): `failed` at once, whatever attempts are left.
    pub async fn fail_permanently(&self, lease: &Lease, error: &str) -> Result<FailOutcome> {
        let retry_after: Option<Duration> = None;
        on_backend!(self.fail(lease, error, retry_after))
    }

    /// One request by id, in any state; `None` if it never existed or has expired.
    pub async fn get(&self, id: RequestId) -> Result<Option<RequestRecord>> {
        on_backend!(self.get(id))
    }

    /// Requests matching `filter`: by default the pending, running and failed ones (what
    /// `GET /hlm/v1/requests/...` shows), pending and running first, then failed, each oldest
    /// first (SwiftHLM's order).
    pub async fn list(&self, filter: &RequestFilter) -> Result<Vec<RequestRecord>> {
        let filter = normalized(filter);
        on_backend!(self.list(&filter))
    }

    /// Delete done and failed requests that finished more than [`QueueOptions::retention`]
    /// ago, by the clock that stamped them (the database's on PostgreSQL). Returns how many
    /// were deleted.
    pub async fn expire_finished(&self) -> Result<u64> {
        on_backend!(self.expire_finished())
    }

    /// Number of requests in each state.
    pub async fn counts(&self) -> Result<QueueCounts> {
        on_backend!(self.counts())
    }
}

/// Drop address parts that have no meaning without their parent: a container without an
/// account, an object without a container.
fn normalized(filter: &RequestFilter) -> RequestFilter {
    let mut f = filter.clone();
    if f.account.is_none() {
        f.container = None;
    }
    if f.container.is_none() {
        f.object = None;
        f.object_prefix = None;
    }
    f
}

fn validate_target(target: &Target) -> Result<()> {
    let invalid = |reason: &str| {
        Err(Error::InvalidRequest {
            reason: reason.to_owned(),
        })
    };
    for (what, name) in [
        ("account", target.account()),
        ("container", target.container()),
    ] {
        match name {
            Some("") => return invalid(&format!("empty {what} name")),
            Some(n) if n.contains('/') => return invalid(&format!("{what} name contains '/'")),
            _ => {}
        }
    }
    match target {
        Target::Object { object, .. } if object.is_empty() => invalid("empty object name"),
        Target::Objects { objects, .. } if objects.is_empty() => invalid("empty object list"),
        Target::Objects { objects, .. } if objects.iter().any(String::is_empty) => {
            invalid("empty object name in list")
        }
        Target::Keys(keys) if keys.is_empty() => invalid("empty key list"),
        Target::Keys(keys) if keys.iter().any(String::is_empty) => invalid("empty key in list"),
        _ => Ok(()),
    }
}

/// Build the per-state counts from `state, count(*)` rows.
fn counts_from(rows: Vec<(String, i64)>) -> QueueCounts {
    let mut counts = QueueCounts::default();
    for (state, n) in rows {
        let n = u64::try_from(n).unwrap_or(0);
        match state.parse::<State>() {
            Ok(State::Pending) => counts.pending = n,
            Ok(State::Running) => counts.running = n,
            Ok(State::Done) => counts.done = n,
            Ok(State::Failed) => counts.failed = n,
            Err(_) => {}
        }
    }
    counts
}
