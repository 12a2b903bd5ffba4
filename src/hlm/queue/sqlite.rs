//! The request queue in a SQLite file: the default, needing no setup (the file and its directory
//! are created on first use).
//!
//! Every write runs in a `BEGIN IMMEDIATE` transaction, which takes SQLite's single write lock
//! before reading: two connections (or two processes on the same file) can never both see a
//! request as claimable and both claim it. Waiting for the lock is SQLite's busy timeout.
//! Times are stored as Unix milliseconds from this process's clock, which is the only clock a
//! local file has.

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteRow,
    SqliteSynchronous,
};
use sqlx::types::chrono::{DateTime, Utc};
use sqlx::Row;

use super::error::{redact_url, Error, Result};
use super::options::{millis, QueueOptions};
use super::record::{
    ClaimedRequest, FailOutcome, Lease, NewRequest, Op, Progress, QueueCounts, RequestFilter,
    RequestId, RequestRecord, State, Target,
};
use super::schema;

/// How long a writer waits for SQLite's write lock before the query fails. Claims and
/// completions are short, so this is only reached when something holds the file for far too
/// long.
const BUSY_TIMEOUT: Duration = Duration::from_secs(30);

/// A SQLite-backed queue.
#[derive(Debug, Clone)]
pub(crate) struct SqliteQueue {
    pool: SqlitePool,
    options: QueueOptions,
}

impl SqliteQueue {
    /// Open (creating if needed) the file named by `url` and bring its schema up to date.
    pub(crate) async fn connect(url: &str, options: &QueueOptions) -> Result<Self> {
        let shown = redact_url(url);
        let connect = SqliteConnectOptions::from_str(url)
            .map_err(|e| Error::InvalidUrl {
                url: shown.clone(),
                reason: e.to_string(),
            })?
            // "No setup": the queue file appears on first start.
            .create_if_missing(true)
            // WAL lets readers (the requests endpoint) run while a writer holds the lock.
            .journal_mode(SqliteJournalMode::Wal)
            // An accepted request must survive a power cut, not only a process crash.
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(BUSY_TIMEOUT);
        let file = connect.get_filename().to_path_buf();
        let in_memory = url.contains(":memory:") || url.contains("mode=memory");
        if !in_memory {
            create_parent_dir(&file)?;
        }
        let mut pool = SqlitePoolOptions::new().max_connections(options.max_connections);
        if in_memory {
            // An in-memory database lives as long as one connection to it: keep one open.
            pool = pool
                .min_connections(1)
                .idle_timeout(None)
                .max_lifetime(None);
        }
        let pool = pool
            .connect_with(connect)
            .await
            .map_err(|source| Error::Connect {
                url: shown.clone(),
                source,
            })?;
        migrate(&pool).await?;
        Ok(SqliteQueue {
            pool,
            options: options.clone(),
        })
    }

    /// The queue's clock in stored form (Unix milliseconds).
    fn now_ms(&self) -> i64 {
        self.options.clock.now().timestamp_millis()
    }

    pub(crate) async fn close(&self) {
        self.pool.close().await;
    }

    pub(crate) async fn submit(&self, request: &NewRequest) -> Result<RequestId> {
        let now = self.now_ms();
        let target = &request.target;
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO hlm_requests (op, target_kind, account, container, object, target_list,
                 storage_policy, priority, state, attempts, next_attempt_at, created_at, updated_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, 'pending', 0, ?9, ?9, ?9)
             RETURNING id",
        )
        .bind(request.op.as_str())
        .bind(target.kind())
        .bind(target.account().map(str::to_owned))
        .bind(target.container().map(str::to_owned))
        .bind(target.object().map(str::to_owned))
        .bind(target.list_json())
        .bind(request.storage_policy)
        .bind(request.priority)
        .bind(now)
        .fetch_one(&self.pool)
        .await?;
        Ok(RequestId(id))
    }

    pub(crate) async fn claim(
        &self,
        owner: &str,
        limit: u32,
        ops: Option<&[Op]>,
    ) -> Result<Vec<ClaimedRequest>> {
        let ops_json = ops.map(ops_json);
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        // Read the clock once the write lock is held: waiting for it must not age `now`.
        let now = self.now_ms();
        // A lease that expired on the last allowed attempt ends the request instead of starting
        // another attempt (see `QueueOptions::max_attempts`).
        let exhausted = sqlx::query(
            "UPDATE hlm_requests
             SET state = 'failed', finished_at = ?1, updated_at = ?1, lease_expires_at = NULL,
                 last_error = 'lease of ' || coalesce(lease_owner, '?')
                     || ' expired during attempt ' || attempts || ' of ' || ?2
             WHERE state = 'running' AND lease_expires_at <= ?1 AND attempts >= ?2",
        )
        .bind(now)
        .bind(i64::from(self.options.max_attempts))
        .execute(&mut *tx)
        .await?
        .rows_affected();
        let rows = sqlx::query(
            "UPDATE hlm_requests
             SET state = 'running', attempts = attempts + 1, lease_owner = ?1,
                 lease_expires_at = ?2 + ?3, updated_at = ?2,
                 last_error = CASE WHEN state = 'running'
                     THEN 'lease of ' || coalesce(lease_owner, '?') || ' expired during attempt '
                          || attempts
                     ELSE last_error END
             WHERE id IN (
                 SELECT id FROM hlm_requests
                 WHERE state IN ('pending', 'running')
                   AND ((state = 'pending' AND next_attempt_at <= ?2)
                        OR (state = 'running' AND lease_expires_at <= ?2))
                   AND (?4 IS NULL OR op IN (SELECT value FROM json_each(?4)))
                 ORDER BY priority DESC, id
                 LIMIT ?5)
             RETURNING *",
        )
        .bind(owner)
        .bind(now)
        .bind(millis(self.options.lease_duration))
        .bind(ops_json)
        .bind(i64::from(limit))
        .fetch_all(&mut *tx)
        .await?;
        tx.commit().await?;
        if exhausted > 0 {
            tracing::warn!(
                count = exhausted,
                "request queue: leases expired on the last attempt; requests failed"
            );
        }
        let records = rows.iter().map(record).collect::<Result<Vec<_>>>()?;
        Ok(ClaimedRequest::leased(records, owner))
    }

    pub(crate) async fn renew_lease(&self, lease: &Lease) -> Result<DateTime<Utc>> {
        let now = self.now_ms();
        let expires: Option<i64> = sqlx::query_scalar(
            "UPDATE hlm_requests SET lease_expires_at = ?1 + ?2, updated_at = ?1
             WHERE id = ?3 AND state = 'running' AND lease_owner = ?4 AND attempts = ?5
             RETURNING lease_expires_at",
        )
        .bind(now)
        .bind(millis(self.options.lease_duration))
        .bind(lease.id.0)
        .bind(&lease.owner)
        .bind(i64::from(lease.attempt))
        .fetch_optional(&self.pool)
        .await?;
        let expires = expires.ok_or(Error::LeaseLost { id: lease.id })?;
        from_ms(lease.id, expires)
    }

    pub(crate) async fn record_progress(&self, lease: &Lease, progress: Progress) -> Result<()> {
        let changed = sqlx::query(
            "UPDATE hlm_requests
             SET progress_done = ?1, progress_failed = ?2, progress_total = ?3, updated_at = ?4
             WHERE id = ?5 AND state = 'running' AND lease_owner = ?6 AND attempts = ?7",
        )
        .bind(to_i64(progress.done))
        .bind(to_i64(progress.failed))
        .bind(to_i64(progress.total))
        .bind(self.now_ms())
        .bind(lease.id.0)
        .bind(&lease.owner)
        .bind(i64::from(lease.attempt))
        .execute(&self.pool)
        .await?
        .rows_affected();
        if changed == 0 {
            return Err(Error::LeaseLost { id: lease.id });
        }
        Ok(())
    }

    pub(crate) async fn complete(&self, lease: &Lease) -> Result<u64> {
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        let now = self.now_ms();
        let changed = sqlx::query(
            "UPDATE hlm_requests
             SET state = 'done', finished_at = ?1, updated_at = ?1, lease_expires_at = NULL
             WHERE id = ?2 AND state = 'running' AND lease_owner = ?3 AND attempts = ?4",
        )
        .bind(now)
        .bind(lease.id.0)
        .bind(&lease.owner)
        .bind(i64::from(lease.attempt))
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if changed == 0 {
            // Dropping the transaction rolls it back.
            return Err(Error::LeaseLost { id: lease.id });
        }
        // SwiftHLM: a success deletes the failed entries of the same target, whatever their
        // operation. Only older ones: a failure submitted after this request is news.
        let cleared = sqlx::query(
            "DELETE FROM hlm_requests AS f
             WHERE f.state = 'failed' AND f.id < ?1
               AND EXISTS (SELECT 1 FROM hlm_requests AS s
                           WHERE s.id = ?1
                             AND s.target_kind = f.target_kind
                             AND s.account IS f.account
                             AND s.container IS f.container
                             AND s.object IS f.object
                             AND s.target_list IS f.target_list)",
        )
        .bind(lease.id.0)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        tx.commit().await?;
        Ok(cleared)
    }

    pub(crate) async fn fail(
        &self,
        lease: &Lease,
        error: &str,
        retry_after: Option<Duration>,
    ) -> Result<FailOutcome> {
        let (state, after) = match retry_after {
            Some(after) => ("pending", after),
            None => ("failed", Duration::ZERO),
        };
        let next: Option<i64> = sqlx::query_scalar(
            "UPDATE hlm_requests
             SET state = ?1,
                 next_attempt_at = CASE WHEN ?1 = 'pending' THEN ?2 + ?3
                                        ELSE next_attempt_at END,
                 finished_at = CASE WHEN ?1 = 'failed' THEN ?2 ELSE NULL END,
                 updated_at = ?2, lease_expires_at = NULL, last_error = ?4
             WHERE id = ?5 AND state = 'running' AND lease_owner = ?6 AND attempts = ?7
             RETURNING next_attempt_at",
        )
        .bind(state)
        .bind(self.now_ms())
        .bind(millis(after))
        .bind(error)
        .bind(lease.id.0)
        .bind(&lease.owner)
        .bind(i64::from(lease.attempt))
        .fetch_optional(&self.pool)
        .await?;
        let next = next.ok_or(Error::LeaseLost { id: lease.id })?;
        Ok(match retry_after {
            Some(after) => FailOutcome::Retry {
                at: from_ms(lease.id, next)?,
                after,
            },
            None => FailOutcome::Failed,
        })
    }

    pub(crate) async fn get(&self, id: RequestId) -> Result<Option<RequestRecord>> {
        let row = sqlx::query("SELECT * FROM hlm_requests WHERE id = ?1")
            .bind(id.0)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(record).transpose()
    }

    pub(crate) async fn list(&self, filter: &RequestFilter) -> Result<Vec<RequestRecord>> {
        let states =
            serde_json::to_string(&filter.effective_states()).unwrap_or_else(|_| "[]".to_owned());
        // One statement per address shape and order, so that SQLite can use the (account,
        // container, id) index: it cannot when the condition is `(?2 IS NULL OR account = ?2)`,
        // and a page of a container's requests is then a range scan of it. Every statement
        // mentions every parameter, so all bind the same way.
        macro_rules! rest {
            () => {
                "
                   AND state IN (SELECT value FROM json_each(?1))
                   AND (?4 IS NULL
                        OR target_kind = 'container'
                        OR (target_kind = 'object' AND object = ?4)
                        OR (target_kind = 'objects'
                            AND EXISTS (SELECT 1 FROM json_each(target_list) WHERE value = ?4)))
                   AND (?5 IS NULL
                        OR (target_kind = 'object' AND substr(object, 1, length(?5)) = ?5))"
            };
        }
        macro_rules! statement {
            ($address:literal) => {
                (
                    concat!(
                        "SELECT * FROM hlm_requests WHERE ",
                        $address,
                        rest!(),
                        " AND ?7 IS NULL ORDER BY state = 'failed', created_at, id LIMIT ?6"
                    ),
                    concat!(
                        "SELECT * FROM hlm_requests WHERE ",
                        $address,
                        rest!(),
                        " AND id > ?7 ORDER BY id LIMIT ?6"
                    ),
                )
            };
        }
        let (swifthlm_order, paged) = match (&filter.account, &filter.container) {
            (None, _) => statement!("?2 IS NULL AND ?3 IS NULL"),
            (Some(_), None) => statement!("account = ?2 AND ?3 IS NULL"),
            (Some(_), Some(_)) => statement!("account = ?2 AND container = ?3"),
        };
        let sql = if filter.after.is_some() {
            paged
        } else {
            swifthlm_order
        };
        let rows = sqlx::query(sql)
            .bind(states)
            .bind(filter.account.clone())
            .bind(filter.container.clone())
            .bind(filter.object.clone())
            .bind(filter.object_prefix.clone())
            // SQLite: a negative LIMIT means no limit.
            .bind(filter.limit.map_or(-1, i64::from))
            .bind(filter.after.map(|id| id.0))
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(record).collect()
    }

    pub(crate) async fn expire_finished(&self) -> Result<u64> {
        let cutoff = self.now_ms() - millis(self.options.retention);
        let deleted = sqlx::query(
            "DELETE FROM hlm_requests
             WHERE state IN ('done', 'failed') AND finished_at < ?1",
        )
        .bind(cutoff)
        .execute(&self.pool)
        .await?
        .rows_affected();
        Ok(deleted)
    }

    pub(crate) async fn counts(&self) -> Result<QueueCounts> {
        let rows: Vec<(String, i64)> =
            sqlx::query_as("SELECT state, count(*) FROM hlm_requests GROUP BY state")
                .fetch_all(&self.pool)
                .await?;
        Ok(super::counts_from(rows))
    }
}

/// Apply the migrations. Two processes opening a new file at the same moment may race on the
/// first migration; the loser sees the schema the winner made when it tries again.
async fn migrate(pool: &SqlitePool) -> Result<()> {
    let mut tries = 0;
    loop {
        match schema::sqlite().run(pool).await {
            Ok(()) => return Ok(()),
            Err(e) if tries < 3 => {
                tries += 1;
                tracing::debug!(error = %e, "request queue: retrying SQLite migration");
                tokio::time::sleep(Duration::from_millis(100 * tries)).await;
            }
            Err(e) => return Err(e.into()),
        }
    }
}

fn create_parent_dir(file: &Path) -> Result<()> {
    match file.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => {
            std::fs::create_dir_all(dir).map_err(|source| Error::CreateDir {
                path: dir.display().to_string(),
                source,
            })
        }
        _ => Ok(()),
    }
}

fn to_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

fn ops_json(ops: &[Op]) -> String {
    let names: Vec<&str> = ops.iter().map(|o| o.as_str()).collect();
    serde_json::to_string(&names).unwrap_or_else(|_| "[]".to_owned())
}

fn from_ms(id: RequestId, ms: i64) -> Result<DateTime<Utc>> {
    DateTime::from_timestamp_millis(ms).ok_or_else(|| Error::Corrupt {
        id,
        reason: format!("time {ms} out of range"),
    })
}

/// Decode one row of `hlm_requests`.
fn record(row: &SqliteRow) -> Result<RequestRecord> {
    let id = RequestId(row.try_get("id")?);
    let corrupt = |reason: String| Error::Corrupt { id, reason };
    let time = |column: &str| -> Result<DateTime<Utc>> { from_ms(id, row.try_get(column)?) };
    let opt_time = |column: &str| -> Result<Option<DateTime<Utc>>> {
        row.try_get::<Option<i64>, _>(column)?
            .map(|ms| from_ms(id, ms))
            .transpose()
    };
    let count = |column: &str| -> Result<u64> {
        let v: i64 = row.try_get(column)?;
        u64::try_from(v).map_err(|_| corrupt(format!("{column} = {v}")))
    };
    let op: String = row.try_get("op")?;
    let state: String = row.try_get("state")?;
    let kind: String = row.try_get("target_kind")?;
    let attempts: i64 = row.try_get("attempts")?;
    let priority: i64 = row.try_get("priority")?;
    let storage_policy: i64 = row.try_get("storage_policy")?;
    Ok(RequestRecord {
        id,
        op: op.parse().map_err(corrupt)?,
        target: Target::from_columns(
            &kind,
            row.try_get("account")?,
            row.try_get("container")?,
            row.try_get("object")?,
            row.try_get("target_list")?,
        )
        .map_err(corrupt)?,
        storage_policy: i32::try_from(storage_policy)
            .map_err(|_| corrupt(format!("storage_policy = {storage_policy}")))?,
        priority: i16::try_from(priority).map_err(|_| corrupt(format!("priority = {priority}")))?,
        state: state.parse::<State>().map_err(corrupt)?,
        attempts: u32::try_from(attempts).map_err(|_| corrupt(format!("attempts = {attempts}")))?,
        next_attempt_at: time("next_attempt_at")?,
        lease_owner: row.try_get("lease_owner")?,
        lease_expires_at: opt_time("lease_expires_at")?,
        progress: Progress {
            done: count("progress_done")?,
            failed: count("progress_failed")?,
            total: count("progress_total")?,
        },
        last_error: row.try_get("last_error")?,
        created_at: time("created_at")?,
        updated_at: time("updated_at")?,
        finished_at: opt_time("finished_at")?,
    })
}
