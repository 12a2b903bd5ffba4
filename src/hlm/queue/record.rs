//! The values that go in and come out of the request queue: operations, targets, states, the
//! stored record, the lease a claim hands out, and the SwiftHLM request-name rendering used by
//! `GET /hlm/v1/requests/...`.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use sqlx::types::chrono::{DateTime, Utc};

/// Primary key of a queued request. Allocated by the database, increasing in submission order
/// (SQLite `AUTOINCREMENT`, PostgreSQL identity), never reused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RequestId(pub i64);

impl fmt::Display for RequestId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// What a request asks the backend to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Op {
    /// Copy to the tape tier and release the disk copy (SwiftHLM `migrate`).
    Migrate,
    /// Copy to the tape tier and keep the disk copy (eth SwiftHLM `premigrate`).
    Premigrate,
    /// Bring data back from the tape tier to disk (SwiftHLM `recall`, Pacifica stage).
    Recall,
}

impl Op {
    /// The lower-case name used in URLs, in the database and in SwiftHLM request names.
    pub fn as_str(self) -> &'static str {
        match self {
            Op::Migrate => "migrate",
            Op::Premigrate => "premigrate",
            Op::Recall => "recall",
        }
    }
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Op {
    type Err = String;

    /// Case-insensitive, like the SwiftHLM middleware (`MIGRATE` and `migrate` are the same).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "migrate" => Ok(Op::Migrate),
            "premigrate" => Ok(Op::Premigrate),
            "recall" => Ok(Op::Recall),
            _ => Err(format!("unknown operation {s:?}")),
        }
    }
}

/// Where a request is in its life.
///
/// `pending -> running -> done`, or `running -> pending` (retry after backoff), or
/// `running -> failed` (attempts exhausted or a permanent error). A `running` request whose lease
/// expired is claimable again, as if it were pending.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum State {
    /// Waiting to be claimed (possibly not before `next_attempt_at`).
    Pending,
    /// Claimed by a lease holder that is working on it.
    Running,
    /// Finished successfully; kept for the retention period so `get` still answers.
    Done,
    /// Failed for good; shown by the requests endpoint until it expires or a later success on the
    /// same target clears it.
    Failed,
}

impl State {
    /// The name stored in the database.
    pub fn as_str(self) -> &'static str {
        match self {
            State::Pending => "pending",
            State::Running => "running",
            State::Done => "done",
            State::Failed => "failed",
        }
    }
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for State {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "pending" => Ok(State::Pending),
            "running" => Ok(State::Running),
            "done" => Ok(State::Done),
            "failed" => Ok(State::Failed),
            _ => Err(format!("unknown request state {s:?}")),
        }
    }
}

/// What a request operates on.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Target {
    /// Every object of a Swift container, expanded when the request runs (SwiftHLM semantics:
    /// the listing at dispatch time, not at submission time).
    Container {
        /// Swift account, e.g. `AUTH_test`.
        account: String,
        /// Container name.
        container: String,
    },
    /// One Swift object.
    Object {
        /// Swift account.
        account: String,
        /// Container name.
        container: String,
        /// Object name; may contain `/`.
        object: String,
    },
    /// Several objects of one container in one request (the bulk form: merged requests, object
    /// lists).
    Objects {
        /// Swift account.
        account: String,
        /// Container name.
        container: String,
        /// Object names.
        objects: Vec<String>,
    },
    /// Backend keys with no Swift address, e.g. Pacifica IDs already turned into keys.
    Keys(Vec<String>),
}

impl Target {
    /// Short stored discriminant.
    pub(crate) fn kind(&self) -> &'static str {
        match self {
            Target::Container { .. } => "container",
            Target::Object { .. } => "object",
            Target::Objects { .. } => "objects",
            Target::Keys(_) => "keys",
        }
    }

    /// The Swift account, if the target has one.
    pub fn account(&self) -> Option<&str> {
        match self {
            Target::Container { account, .. }
            | Target::Object { account, .. }
            | Target::Objects { account, .. } => Some(account),
            Target::Keys(_) => None,
        }
    }

    /// The Swift container, if the target has one.
    pub fn container(&self) -> Option<&str> {
        match self {
            Target::Container { container, .. }
            | Target::Object { container, .. }
            | Target::Objects { container, .. } => Some(container),
            Target::Keys(_) => None,
        }
    }

    /// The single Swift object, for [`Target::Object`].
    pub fn object(&self) -> Option<&str> {
        match self {
            Target::Object { object, .. } => Some(object),
            _ => None,
        }
    }

    /// The stored list (object names or keys), for the bulk forms.
    pub(crate) fn list(&self) -> Option<&[String]> {
        match self {
            Target::Objects { objects, .. } => Some(objects),
            Target::Keys(keys) => Some(keys),
            _ => None,
        }
    }

    /// The list column as JSON text, for the bulk forms.
    pub(crate) fn list_json(&self) -> Option<String> {
        // Serialising a slice of strings cannot fail.
        self.list()
            .map(|l| serde_json::to_string(l).unwrap_or_else(|_| "[]".to_owned()))
    }

    /// Rebuild a target from its stored columns.
    pub(crate) fn from_columns(
        kind: &str,
        account: Option<String>,
        container: Option<String>,
        object: Option<String>,
        list_json: Option<String>,
    ) -> Result<Target, String> {
        let list = || -> Result<Vec<String>, String> {
            let text = list_json.clone().ok_or("missing object/key list")?;
            serde_json::from_str(&text).map_err(|e| format!("bad object/key list: {e}"))
        };
        let need = |v: Option<String>, what: &str| v.ok_or_else(|| format!("missing {what}"));
        Ok(match kind {
            "container" => Target::Container {
                account: need(account, "account")?,
                container: need(container, "container")?,
            },
            "object" => Target::Object {
                account: need(account, "account")?,
                container: need(container, "container")?,
                object: need(object, "object")?,
            },
            "objects" => Target::Objects {
                account: need(account, "account")?,
                container: need(container, "container")?,
                objects: list()?,
            },
            "keys" => Target::Keys(list()?),
            other => return Err(format!("unknown target kind {other:?}")),
        })
    }
}

/// Progress counters of a running or finished request: objects done, objects failed, and the
/// total once known (a container request learns it when the listing is expanded).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Progress {
    /// Objects processed successfully.
    pub done: u64,
    /// Objects that failed.
    pub failed: u64,
    /// Objects in the request; 0 while unknown.
    pub total: u64,
}

/// A request to put in the queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewRequest {
    /// The operation.
    pub op: Op,
    /// What it operates on.
    pub target: Target,
    /// Swift storage policy index (the `<spi>` field of SwiftHLM request names); 0 by default.
    pub storage_policy: i32,
    /// Higher is claimed first; 50 by default (the eth SwiftHLM default priority, range 0-100).
    pub priority: i16,
}

impl NewRequest {
    /// A request with storage policy 0 and the default priority.
    pub fn new(op: Op, target: Target) -> Self {
        NewRequest {
            op,
            target,
            storage_policy: 0,
            priority: DEFAULT_PRIORITY,
        }
    }
}

/// Priority given to requests that do not set one.
pub const DEFAULT_PRIORITY: i16 = 50;

/// One stored request, as `get` and `list` return it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestRecord {
    /// Primary key.
    pub id: RequestId,
    /// The operation.
    pub op: Op,
    /// What it operates on.
    pub target: Target,
    /// Swift storage policy index.
    pub storage_policy: i32,
    /// Claim priority (higher first).
    pub priority: i16,
    /// Life-cycle state.
    pub state: State,
    /// Claims so far, including the current one while running.
    pub attempts: u32,
    /// A pending request is not claimed before this time (retry backoff).
    pub next_attempt_at: DateTime<Utc>,
    /// Instance that holds (or last held) the lease.
    pub lease_owner: Option<String>,
    /// When the current lease runs out; `None` unless running.
    pub lease_expires_at: Option<DateTime<Utc>>,
    /// Progress counters as last recorded by the lease holder.
    pub progress: Progress,
    /// Error of the last failed attempt, kept across retries and after success for the record.
    pub last_error: Option<String>,
    /// Submission time.
    pub created_at: DateTime<Utc>,
    /// Last change of any column.
    pub updated_at: DateTime<Utc>,
    /// When it became `done` or `failed`.
    pub finished_at: Option<DateTime<Utc>>,
}

impl RequestRecord {
    /// The request name in the form of the SwiftHLM README, as the requests endpoint lists it:
    /// `<ts>--<op>--<account>--<container>--<spi>[--<object>]--<pending|failed>`.
    ///
    /// `<ts>` is the submission time as `YYYYMMDDHHMMSS.mmm` (UTC here; the reference used the
    /// proxy's local time), `<spi>` the storage policy index. Container requests have no object
    /// field (`20170303034800.465--migrate--AUTH_test--cont3--0--pending`). A bulk request lists
    /// its objects joined by `,` in the object field. Running requests read `pending` (SwiftHLM
    /// has no running state: a request is pending until it finishes); done ones read `done`.
    ///
    /// `None` for [`Target::Keys`] requests, which have no Swift address.
    pub fn swifthlm_name(&self) -> Option<String> {
        let (account, container, object) = match &self.target {
            Target::Container { account, container } => (account, container, None),
            Target::Object {
                account,
                container,
                object,
            } => (account, container, Some(object.clone())),
            Target::Objects {
                account,
                container,
                objects,
            } => (account, container, Some(objects.join(","))),
            Target::Keys(_) => return None,
        };
        let status = match self.state {
            State::Pending | State::Running => "pending",
            State::Failed => "failed",
            State::Done => "done",
        };
        let mut name = format!(
            "{}--{}--{}--{}--{}",
            self.created_at.format("%Y%m%d%H%M%S%.3f"),
            self.op,
            account,
            container,
            self.storage_policy
        );
        if let Some(object) = object {
            name.push_str("--");
            name.push_str(&object);
        }
        name.push_str("--");
        name.push_str(status);
        Some(name)
    }
}

/// Proof of a claim: who holds request `id`, for which attempt. Every call that acts on a claimed
/// request takes it, and the queue refuses the call with [`Error::LeaseLost`] once another
/// instance has taken the request over (lease expired) -- so a stalled worker cannot complete,
/// fail or report progress on work that someone else is now doing.
///
/// [`Error::LeaseLost`]: super::Error::LeaseLost
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    /// The claimed request.
    pub id: RequestId,
    /// The claiming instance.
    pub owner: String,
    /// The attempt number this claim started; distinguishes two claims by the same owner.
    pub attempt: u32,
    /// Lease expiry as set by the claim or the last renewal.
    pub expires_at: DateTime<Utc>,
}

/// A request handed to a worker by `claim`.
#[derive(Debug, Clone)]
pub struct ClaimedRequest {
    /// The request as it is after the claim (state `running`, attempts incremented).
    pub record: RequestRecord,
    /// The lease to pass to `renew_lease`, `record_progress`, `complete` and `fail`.
    pub lease: Lease,
}

impl ClaimedRequest {
    /// The requests a claim statement just took for `owner`, with their leases, in claim order
    /// (priority, then age: `RETURNING` has no defined order).
    pub(crate) fn leased(records: Vec<RequestRecord>, owner: &str) -> Vec<ClaimedRequest> {
        let mut claimed: Vec<ClaimedRequest> = records
            .into_iter()
            .map(|record| {
                let lease = Lease {
                    id: record.id,
                    owner: owner.to_owned(),
                    attempt: record.attempts,
                    expires_at: record.lease_expires_at.unwrap_or(record.updated_at),
                };
                ClaimedRequest { record, lease }
            })
            .collect();
        claimed.sort_by_key(|c| (std::cmp::Reverse(c.record.priority), c.record.id));
        claimed
    }
}

/// What `fail` did with the request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailOutcome {
    /// Back to pending; it will not be claimed again before `at`.
    Retry {
        /// Earliest time of the next attempt.
        at: DateTime<Utc>,
        /// The backoff that was applied.
        after: Duration,
    },
    /// Attempts exhausted (or a permanent failure): the request is `failed` for good.
    Failed,
}

/// Which requests `list` returns. The address fields follow SwiftHLM's matching rules for
/// `GET /hlm/v1/requests/{a}/{c}[/{o}]`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RequestFilter {
    /// Only requests of this account (no account: every request, including key lists).
    pub account: Option<String>,
    /// With `account`: requests of this container, at container, object and bulk level.
    pub container: Option<String>,
    /// With `account` and `container`: requests for exactly this object, bulk requests that list
    /// it, and container-level requests of its container.
    pub object: Option<String>,
    /// With `account` and `container`: object-level requests whose object name starts with this.
    pub object_prefix: Option<String>,
    /// States to return; empty means pending, running and failed (what the endpoint shows).
    pub states: Vec<State>,
    /// At most this many records (oldest first); `None` for all.
    pub limit: Option<u32>,
    /// Paging: only requests with an id above this one, and every result in id (submission)
    /// order instead of pending-then-failed, so that the last id of a page continues with the
    /// next. `Some(RequestId(0))` starts at the first page.
    pub after: Option<RequestId>,
}

impl RequestFilter {
    /// Requests for one Swift path as the requests endpoint takes it: `account`,
    /// `account/container` or `account/container/object` (the object may contain `/`).
    pub fn for_path(path: &str) -> Self {
        let mut parts = path.trim_start_matches('/').splitn(3, '/');
        let mut filter = RequestFilter::default();
        filter.account = parts.next().filter(|s| !s.is_empty()).map(str::to_owned);
        filter.container = parts.next().filter(|s| !s.is_empty()).map(str::to_owned);
        filter.object = parts.next().filter(|s| !s.is_empty()).map(str::to_owned);
        filter
    }

    /// The states to query, with the default applied.
    pub(crate) fn effective_states(&self) -> Vec<&'static str> {
        if self.states.is_empty() {
            vec!["pending", "running", "failed"]
        } else {
            self.states.iter().map(|s| s.as_str()).collect()
        }
    }
}

/// Number of requests in each state, for metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct QueueCounts {
    /// Waiting (including those in backoff).
    pub pending: u64,
    /// Claimed (including those whose lease expired and are waiting for a takeover).
    pub running: u64,
    /// Finished successfully, not yet expired.
    pub done: u64,
    /// Failed for good, not yet expired or cleared.
    pub failed: u64,
}
