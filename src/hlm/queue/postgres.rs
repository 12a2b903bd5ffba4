//! The request queue in PostgreSQL, for several server instances sharing one queue.
//!
//! Claims lock the rows they take with `FOR UPDATE SKIP LOCKED`, so concurrent claimers on
//! other instances pass over them instead of waiting or taking them too; every later call of
//! the lease holder re-checks owner and attempt in its `WHERE`, so a holder whose lease was
//! taken over changes nothing. All times come from the database clock (`now()`), so instances
//! with skewed clocks still agree on when a lease has expired.

use std::str::FromStr;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgConnection, PgPool, PgPoolOptions, PgRow};
use sqlx::types::chrono::{DateTime, Utc};
use sqlx::{Connection, Row};

use super::error::{redact_url, Error, Result};
use super::options::{millis, QueueOptions};
use super::record::{
    ClaimedRequest, FailOutcome, Lease, NewRequest, Op, Progress, QueueCounts, RequestFilter,
    RequestId, RequestRecord, State, Target,
};
use super::schema;

/// How long a query waits for a free pooled connection.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(30);

/// The columns every query returns, in the shape `record` decodes (`target_list` as text: the
/// JSON array is parsed here, not by the driver).
macro_rules! columns {
    () => {
        "id, op, target_kind, account, container, object, target_list::text AS target_list, \
         storage_policy, priority, state, attempts, next_attempt_at, lease_owner, \
         lease_expires_at, progress_done, progress_failed, progress_total, last_error, \
         created_at, updated_at, finished_at"
    };
}

/// A PostgreSQL-backed queue.
#[derive(Debug, Clone)]
pub(crate) struct PgQueue {
    pool: PgPool,
    options: QueueOptions,
}

impl PgQueue {
    /// Connect to the database named by `url` and bring its schema up to date.
    pub(crate) async fn connect(url: &str, options: &QueueOptions) -> Result<Self> {
        let shown = redact_url(url);
        let connect = PgConnectOptions::from_str(url).map_err(|e| Error::InvalidUrl {
            url: shown.clone(),
            reason: e.to_string(),
        })?;
        // One plain connection first: an unreachable server or a refused login is reported at
        // once (a pool would keep retrying until its acquire timeout), and the migrations run
        // on it before any pooled connection exists.
        let mut first = PgConnection::connect_with(&connect)
            .await
            .map_err(|source| Error::Connect {
                url: shown.clone(),
                source,
            })?;
        schema::postgres().run(&mut first).await?;
        first.close().await.ok();
        let pool = PgPoolOptions::new()
            .max_connections(options.max_connections)
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .connect_lazy_with(connect);
        Ok(PgQueue {
            pool,
            options: options.clone(),
        })
    }

    pub(crate) async fn close(&self) {
        self.pool.close().await;
    }

    pub(crate) async fn submit(&self, request: &NewRequest) -> Result<RequestId> {
        let target = &request.target;
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO hlm_requests (op, target_kind, account, container, object, target_list,
                 storage_policy, priority)
             VALUES ($1, $2, $3, $4, $5, $6::jsonb, $7, $8)
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
        let ops: Option<Vec<String>> = ops.map(|ops| ops.iter().map(|o| o.to_string()).collect());
        // A lease that expired on the last allowed attempt ends the request instead of starting
        // another attempt (see `QueueOptions::max_attempts`). SKIP LOCKED: a row another
        // instance is handling right now is left to it.
        let exhausted = sqlx::query(
            "UPDATE hlm_requests
             SET state = 'failed', finished_at = now(), updated_at = now(),
                 lease_expires_at = NULL,
                 last_error = 'lease of ' || coalesce(lease_owner, '?')
                     || ' expired during attempt ' || attempts || ' of ' || $1
             WHERE id IN (SELECT id FROM hlm_requests
                          WHERE state = 'running' AND lease_expires_at <= now()
                            AND attempts >= $1
                          FOR UPDATE SKIP LOCKED)",
        )
        .bind(i32::try_from(self.options.max_attempts).unwrap_or(i32::MAX))
        .execute(&self.pool)
        .await?
        .rows_affected();
        if exhausted > 0 {
            tracing::warn!(
                count = exhausted,
                "request queue: leases expired on the last attempt; requests failed"
            );
        }
        // MATERIALIZED: the locking subquery must run exactly once, not be folded into the
        // UPDATE where the planner could evaluate it again.
        let rows = sqlx::query(concat!(
            "WITH picked AS MATERIALIZED (
                 SELECT id AS picked_id FROM hlm_requests
                 WHERE state IN ('pending', 'running')
                   AND ((state = 'pending' AND next_attempt_at <= now())
                        OR (state = 'running' AND lease_expires_at <= now()))
                   AND ($3::text[] IS NULL OR op = ANY($3))
                 ORDER BY priority DESC, id
                 LIMIT $4
                 FOR UPDATE SKIP LOCKED)
             UPDATE hlm_requests AS r
             SET state = 'running', attempts = r.attempts + 1, lease_owner = $1,
                 lease_expires_at = now() + $2 * interval '1 millisecond', updated_at = now(),
                 last_error = CASE WHEN r.state = 'running'
                     THEN 'lease of ' || coalesce(r.lease_owner, '?')
                          || ' expired during attempt ' || r.attempts
                     ELSE r.last_error END
             FROM picked WHERE r.id = picked.picked_id
             RETURNING ",
            columns!()
        ))
        .bind(owner)
        .bind(millis(self.options.lease_duration))
        .bind(ops)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        let records = rows.iter().map(record).collect::<Result<Vec<_>>>()?;
        Ok(ClaimedRequest::leased(records, owner))
    }

    pub(crate) async fn renew_lease(&self, lease: &Lease) -> Result<DateTime<Utc>> {
        let expires: Option<DateTime<Utc>> = sqlx::query_scalar(
            "UPDATE hlm_requests
             SET lease_expires_at = now() + $1 * interval '1 millisecond', updated_at = now()
             WHERE id = $2 AND state = 'running' AND lease_owner = $3 AND attempts = $4
             RETURNING lease_expires_at",
        )
        .bind(millis(self.options.lease_duration))
        .bind(lease.id.0)
        .bind(&lease.owner)
        .bind(attempt(lease))
        .fetch_optional(&self.pool)
        .await?;
        expires.ok_or(Error::LeaseLost { id: lease.id })
    }

    pub(crate) async fn record_progress(&self, lease: &Lease, progress: Progress) -> Result<()> {
        let changed = sqlx::query(
            "UPDATE hlm_requests
             SET progress_done = $1, progress_failed = $2, progress_total = $3,
                 updated_at = now()
             WHERE id = $4 AND state = 'running' AND lease_owner = $5 AND attempts = $6",
        )
        .bind(to_i64(progress.done))
        .bind(to_i64(progress.failed))
        .bind(to_i64(progress.total))
        .bind(lease.id.0)
        .bind(&lease.owner)
        .bind(attempt(lease))
        .execute(&self.pool)
        .await?
        .rows_affected();
        if changed == 0 {
            return Err(Error::LeaseLost { id: lease.id });
        }
        Ok(())
    }

    pub(crate) async fn complete(&self, lease: &Lease) -> Result<u64> {
        let mut tx = self.pool.begin().await?;
        let changed = sqlx::query(
            "UPDATE hlm_requests
             SET state = 'done', finished_at = now(), updated_at = now(),
                 lease_expires_at = NULL
             WHERE id = $1 AND state = 'running' AND lease_owner = $2 AND attempts = $3",
        )
        .bind(lease.id.0)
        .bind(&lease.owner)
        .bind(attempt(lease))
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
             USING hlm_requests AS s
             WHERE s.id = $1 AND f.state = 'failed' AND f.id < s.id
               AND f.target_kind = s.target_kind
               AND f.account IS NOT DISTINCT FROM s.account
               AND f.container IS NOT DISTINCT FROM s.container
               AND f.object IS NOT DISTINCT FROM s.object
               AND f.target_list IS NOT DISTINCT FROM s.target_list",
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
        let next: Option<DateTime<Utc>> = sqlx::query_scalar(
            "UPDATE hlm_requests
             SET state = $1,
                 next_attempt_at = CASE WHEN $1 = 'pending'
                                        THEN now() + $2 * interval '1 millisecond'
                                        ELSE next_attempt_at END,
                 finished_at = CASE WHEN $1 = 'failed' THEN now() ELSE NULL END,
                 updated_at = now(), lease_expires_at = NULL, last_error = $3
             WHERE id = $4 AND state = 'running' AND lease_owner = $5 AND attempts = $6
             RETURNING next_attempt_at",
        )
        .bind(state)
        .bind(millis(after))
        .bind(error)
        .bind(lease.id.0)
        .bind(&lease.owner)
        .bind(attempt(lease))
        .fetch_optional(&self.pool)
        .await?;
        let next = next.ok_or(Error::LeaseLost { id: lease.id })?;
        Ok(match retry_after {
            Some(after) => FailOutcome::Retry { at: next, after },
            None => FailOutcome::Failed,
        })
    }

    pub(crate) async fn get(&self, id: RequestId) -> Result<Option<RequestRecord>> {
        let row = sqlx::query(concat!(
            "SELECT ",
            columns!(),
            " FROM hlm_requests WHERE id = $1"
        ))
        .bind(id.0)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(record).transpose()
    }

    pub(crate) async fn list(&self, filter: &RequestFilter) -> Result<Vec<RequestRecord>> {
        let states: Vec<String> = filter
            .effective_states()
            .into_iter()
            .map(str::to_owned)
            .collect();
        // One statement per address shape and order, so that the (account, container, id)
        // index is usable whatever plan PostgreSQL caches for the prepared statement: a page
        // of a container's requests is a range scan of it. Every statement mentions every
        // parameter, so all bind the same way.
        macro_rules! rest {
            () => {
                "
                   AND state = ANY($1)
                   AND ($4::text IS NULL
                        OR target_kind = 'container'
                        OR (target_kind = 'object' AND object = $4)
                        OR (target_kind = 'objects' AND target_list ? $4))
                   AND ($5::text IS NULL
                        OR (target_kind = 'object' AND starts_with(object, $5)))"
            };
        }
        macro_rules! statement {
            ($address:literal) => {
                (
                    concat!(
                        "SELECT ",
                        columns!(),
                        " FROM hlm_requests WHERE ",
                        $address,
                        rest!(),
                        " AND $7::bigint IS NULL ORDER BY state = 'failed', created_at, id LIMIT $6"
                    ),
                    concat!(
                        "SELECT ",
                        columns!(),
                        " FROM hlm_requests WHERE ",
                        $address,
                        rest!(),
                        " AND id > $7 ORDER BY id LIMIT $6"
                    ),
                )
            };
        }
        let (swifthlm_order, paged) = match (&filter.account, &filter.container) {
            (None, _) => statement!("$2::text IS NULL AND $3::text IS NULL"),
            (Some(_), None) => statement!("account = $2 AND $3::text IS NULL"),
            (Some(_), Some(_)) => statement!("account = $2 AND container = $3"),
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
            // PostgreSQL: LIMIT NULL means no limit.
            .bind(filter.limit.map(i64::from))
            .bind(filter.after.map(|id| id.0))
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(record).collect()
    }

    pub(crate) async fn expire_finished(&self) -> Result<u64> {
        let deleted = sqlx::query(
            "DELETE FROM hlm_requests
             WHERE state IN ('done', 'failed')
               AND finished_at < now() - $1 * interval '1 millisecond'",
        )
        .bind(millis(self.options.retention))
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

fn attempt(lease: &Lease) -> i32 {
    i32::try_from(lease.attempt).unwrap_or(i32::MAX)
}

fn to_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// Decode one row shaped by `columns!()`.
fn record(row: &PgRow) -> Result<RequestRecord> {
    let id = RequestId(row.try_get("id")?);
    let corrupt = |reason: String| Error::Corrupt { id, reason };
    let count = |column: &str| -> Result<u64> {
        let v: i64 = row.try_get(column)?;
        u64::try_from(v).map_err(|_| corrupt(format!("{column} = {v}")))
    };
    let op: String = row.try_get("op")?;
    let state: String = row.try_get("state")?;
    let kind: String = row.try_get("target_kind")?;
    let attempts: i32 = row.try_get("attempts")?;
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
        storage_policy: row.try_get("storage_policy")?,
        priority: row.try_get("priority")?,
        state: state.parse::<State>().map_err(corrupt)?,
        attempts: u32::try_from(attempts).map_err(|_| corrupt(format!("attempts = {attempts}")))?,
        next_attempt_at: row.try_get("next_attempt_at")?,
        lease_owner: row.try_get("lease_owner")?,
        lease_expires_at: row.try_get("lease_expires_at")?,
        progress: Progress {
            done: count("progress_done")?,
            failed: count("progress_failed")?,
            total: count("progress_total")?,
        },
        last_error: row.try_get("last_error")?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
        finished_at: row.try_get("finished_at")?,
    })
}
