//! Decoding the rows of `hlm_requests`, for both databases: the statements (see
//! [`super::statements`]) return every column as text or a 64-bit integer, times as Unix
//! milliseconds, so one decoder serves any `sqlx::Row`.

use sqlx::types::chrono::{DateTime, Utc};
use sqlx::{ColumnIndex, Database, Decode, Row, Type};

use super::error::{Error, Result};
use super::record::{Progress, RequestId, RequestRecord, State, Target};

/// A time stored as Unix milliseconds.
pub(crate) fn time_from_millis(id: RequestId, ms: i64) -> Result<DateTime<Utc>> {
    DateTime::from_timestamp_millis(ms).ok_or_else(|| Error::Corrupt {
        id,
        reason: format!("time {ms} out of range"),
    })
}

/// Decode one request row (the columns of [`super::statements`]).
pub(crate) fn record<R>(row: &R) -> Result<RequestRecord>
where
    R: Row,
    for<'a> &'a str: ColumnIndex<R>,
    for<'r> i64: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> String: Decode<'r, R::Database> + Type<R::Database>,
    R::Database: Database,
{
    let id = RequestId(row.try_get("id")?);
    let corrupt = |reason: String| Error::Corrupt { id, reason };
    let time =
        |column: &str| -> Result<DateTime<Utc>> { time_from_millis(id, row.try_get(column)?) };
    let opt_time = |column: &str| -> Result<Option<DateTime<Utc>>> {
        row.try_get::<Option<i64>, _>(column)?
            .map(|ms| time_from_millis(id, ms))
            .transpose()
    };
    let int = |column: &str| -> Result<i64> { Ok(row.try_get(column)?) };
    let count = |column: &str| -> Result<u64> {
        let v = int(column)?;
        u64::try_from(v).map_err(|_| corrupt(format!("{column} = {v}")))
    };
    let op: String = row.try_get("op")?;
    let state: String = row.try_get("state")?;
    let kind: String = row.try_get("target_kind")?;
    let attempts = int("attempts")?;
    let priority = int("priority")?;
    let storage_policy = int("storage_policy")?;
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
