//! The queue operations, written once for both databases: [`sql_queue_operations!`] expands to
//! the methods of `SqliteQueue` and `PgQueue`, which differ only in their pool type, their
//! [`Statements`](super::statements::Statements) (one text, two dialects) and how a write
//! transaction begins. (A macro rather than generic code: sqlx's traits would need a dozen
//! higher-ranked bounds on every method to say "a database that can bind and decode these".)
//!
//! The type it is expanded in provides `pool`, `options`, `fn statements() -> &'static
//! Statements`, `async fn begin_write()` (a transaction that holds the right to write, for
//! claims and completions) and `fn now_ms()` (the queue clock, bound as `$1` of every statement
//! that deals with time).

/// Expand the queue operations inside an `impl` block (see the module documentation).
macro_rules! sql_queue_operations {
    () => {
        pub(crate) async fn close(&self) {
            self.pool.close().await;
        }

        pub(crate) async fn submit(
            &self,
            request: &super::record::NewRequest,
        ) -> super::error::Result<super::record::RequestId> {
            let target = &request.target;
            let id: i64 = sqlx::query_scalar(Self::statements().submit.as_str())
                .bind(self.now_ms())
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
            Ok(super::record::RequestId(id))
        }

        pub(crate) async fn claim(
            &self,
            owner: &str,
            limit: u32,
            ops: Option<&[super::record::Op]>,
        ) -> super::error::Result<Vec<super::record::ClaimedRequest>> {
            let statements = Self::statements();
            let ops = ops.map(|ops| {
                let names: Vec<&str> = ops.iter().map(|o| o.as_str()).collect();
                serde_json::to_string(&names).unwrap_or_else(|_| "[]".to_owned())
            });
            let mut tx = self.begin_write().await?;
            // Read the clock once the right to write is held: waiting for it must not age `now`.
            let now = self.now_ms();
            let exhausted = sqlx::query(statements.exhaust.as_str())
                .bind(now)
                .bind(i32::try_from(self.options.max_attempts).unwrap_or(i32::MAX))
                .execute(&mut *tx)
                .await?
                .rows_affected();
            let rows = sqlx::query(statements.claim.as_str())
                .bind(now)
                .bind(owner)
                .bind(super::options::millis(self.options.lease_duration))
                .bind(ops)
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
            let records = rows
                .iter()
                .map(super::rows::record)
                .collect::<super::error::Result<Vec<_>>>()?;
            Ok(super::record::ClaimedRequest::leased(records, owner))
        }

        pub(crate) async fn renew_lease(
            &self,
            lease: &super::record::Lease,
        ) -> super::error::Result<sqlx::types::chrono::DateTime<sqlx::types::chrono::Utc>> {
            let expires: Option<i64> = sqlx::query_scalar(Self::statements().renew.as_str())
                .bind(self.now_ms())
                .bind(super::options::millis(self.options.lease_duration))
                .bind(lease.id.0)
                .bind(&lease.owner)
                .bind(attempt(lease))
                .fetch_optional(&self.pool)
                .await?;
            let expires = expires.ok_or(super::error::Error::LeaseLost { id: lease.id })?;
            super::rows::time_from_millis(lease.id, expires)
        }

        pub(crate) async fn record_progress(
            &self,
            lease: &super::record::Lease,
            progress: super::record::Progress,
        ) -> super::error::Result<()> {
            let changed = sqlx::query(Self::statements().progress.as_str())
                .bind(self.now_ms())
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
                return Err(super::error::Error::LeaseLost { id: lease.id });
            }
            Ok(())
        }

        pub(crate) async fn complete(
            &self,
            lease: &super::record::Lease,
        ) -> super::error::Result<u64> {
            let statements = Self::statements();
            let mut tx = self.begin_write().await?;
            let changed = sqlx::query(statements.complete.as_str())
                .bind(self.now_ms())
                .bind(lease.id.0)
                .bind(&lease.owner)
                .bind(attempt(lease))
                .execute(&mut *tx)
                .await?
                .rows_affected();
            if changed == 0 {
                // Dropping the transaction rolls it back.
                return Err(super::error::Error::LeaseLost { id: lease.id });
            }
            let cleared = sqlx::query(statements.clear_older_failures.as_str())
                .bind(self.now_ms())
                .bind(lease.id.0)
                .execute(&mut *tx)
                .await?
                .rows_affected();
            tx.commit().await?;
            Ok(cleared)
        }

        pub(crate) async fn fail(
            &self,
            lease: &super::record::Lease,
            error: &str,
            retry_after: Option<std::time::Duration>,
        ) -> super::error::Result<super::record::FailOutcome> {
            let (state, after) = match retry_after {
                Some(after) => ("pending", after),
                None => ("failed", std::time::Duration::ZERO),
            };
            let next: Option<i64> = sqlx::query_scalar(Self::statements().fail.as_str())
                .bind(self.now_ms())
                .bind(state)
                .bind(super::options::millis(after))
                .bind(error)
                .bind(lease.id.0)
                .bind(&lease.owner)
                .bind(attempt(lease))
                .fetch_optional(&self.pool)
                .await?;
            let next = next.ok_or(super::error::Error::LeaseLost { id: lease.id })?;
            Ok(match retry_after {
                Some(after) => super::record::FailOutcome::Retry {
                    at: super::rows::time_from_millis(lease.id, next)?,
                    after,
                },
                None => super::record::FailOutcome::Failed,
            })
        }

        pub(crate) async fn get(
            &self,
            id: super::record::RequestId,
        ) -> super::error::Result<Option<super::record::RequestRecord>> {
            let row = sqlx::query(Self::statements().get.as_str())
                .bind(id.0)
                .fetch_optional(&self.pool)
                .await?;
            row.as_ref().map(super::rows::record).transpose()
        }

        pub(crate) async fn list(
            &self,
            filter: &super::record::RequestFilter,
        ) -> super::error::Result<Vec<super::record::RequestRecord>> {
            let states = serde_json::to_string(&filter.effective_states())
                .unwrap_or_else(|_| "[]".to_owned());
            let shape = match (&filter.account, &filter.container) {
                (None, _) => 0,
                (Some(_), None) => 1,
                (Some(_), Some(_)) => 2,
            };
            let statements = &Self::statements().list[shape];
            let sql = if filter.after.is_some() {
                statements.paged.as_str()
            } else {
                statements.swifthlm_order.as_str()
            };
            let rows = sqlx::query(sql)
                .bind(states)
                .bind(filter.account.clone())
                .bind(filter.container.clone())
                .bind(filter.object.clone())
                .bind(filter.object_prefix.clone())
                .bind(filter.limit.map_or(i64::MAX, i64::from))
                .bind(filter.after.map(|id| id.0))
                .fetch_all(&self.pool)
                .await?;
            rows.iter().map(super::rows::record).collect()
        }

        pub(crate) async fn expire_finished(&self) -> super::error::Result<u64> {
            let deleted = sqlx::query(Self::statements().expire.as_str())
                .bind(self.now_ms())
                .bind(super::options::millis(self.options.retention))
                .execute(&self.pool)
                .await?
                .rows_affected();
            Ok(deleted)
        }

        pub(crate) async fn counts(&self) -> super::error::Result<super::record::QueueCounts> {
            let rows: Vec<(String, i64)> = sqlx::query_as(Self::statements().counts.as_str())
                .fetch_all(&self.pool)
                .await?;
            Ok(super::counts_from(rows))
        }
    };
}

pub(crate) use sql_queue_operations;

/// The attempt number as the `INTEGER` column stores it.
pub(crate) fn attempt(lease: &super::record::Lease) -> i32 {
    i32::try_from(lease.attempt).unwrap_or(i32::MAX)
}

/// A counter as the `BIGINT` columns store it.
pub(crate) fn to_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}
