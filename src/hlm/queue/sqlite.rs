//! The request queue in a SQLite file: the default, needing no setup (the file and its directory
//! are created on first use). This file holds the connection and the SQLite side of the queue's
//! SQL (its [`Dialect`]); the operations are shared with PostgreSQL (see [`super::sql_queue`]).
//!
//! Claims and completions run in a `BEGIN IMMEDIATE` transaction, which takes SQLite's single
//! write lock before reading: two connections (or two processes on the same file) can never
//! both see a request as claimable and both claim it. Times are stored as Unix milliseconds
//! from the queue's clock ([`QueueOptions::clock`], this process's), which is the only clock a
//! local file has.

use std::path::Path;
use std::str::FromStr;
use std::sync::LazyLock;
use std::time::Duration;

use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::{Sqlite, Transaction};

use super::error::{redact_url, Error, Result};
use super::options::QueueOptions;
use super::schema;
use super::sql_queue::{attempt, sql_queue_operations, to_i64};
use super::statements::{Dialect, Statements};

/// How long a writer waits for SQLite's write lock before the query fails. Claims and
/// completions are short, so this is only reached when something holds the file for far too
/// long.
const BUSY_TIMEOUT: Duration = Duration::from_secs(30);

/// SQLite's fragments of the queue's SQL: times are Unix milliseconds from the queue's clock,
/// bound as `$1`; lists are JSON text.
struct SqliteDialect;

impl Dialect for SqliteDialect {
    fn now(&self) -> &'static str {
        "$1"
    }
    fn millis(&self, param: &str) -> String {
        param.to_owned()
    }
    fn time_as_millis(&self, column: &str) -> String {
        column.to_owned()
    }
    fn as_i64(&self, column: &str) -> String {
        column.to_owned()
    }
    fn list_as_text(&self, column: &str) -> String {
        column.to_owned()
    }
    fn list_from_text(&self, param: &str) -> String {
        param.to_owned()
    }
    fn in_json_array(&self, value: &str, param: &str) -> String {
        format!("{value} IN (SELECT value FROM json_each({param}))")
    }
    fn list_contains(&self, column: &str, param: &str) -> String {
        format!("EXISTS (SELECT 1 FROM json_each({column}) WHERE value = {param})")
    }
    fn lock_picked_rows(&self) -> &'static str {
        ""
    }
}

static STATEMENTS: LazyLock<Statements> = LazyLock::new(|| Statements::new(&SqliteDialect));

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

    fn statements() -> &'static Statements {
        &STATEMENTS
    }

    /// The queue's clock in stored form (Unix milliseconds), bound as `$1`.
    fn now_ms(&self) -> i64 {
        self.options.clock.now().timestamp_millis()
    }

    /// `BEGIN IMMEDIATE` takes SQLite's single write lock before reading: two connections (or
    /// two processes on the same file) can never both see a request as claimable and both
    /// claim it. Waiting for the lock is SQLite's busy timeout.
    async fn begin_write(&self) -> Result<Transaction<'static, Sqlite>> {
        Ok(self.pool.begin_with("BEGIN IMMEDIATE").await?)
    }

    sql_queue_operations!();
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

#[cfg(test)]
mod tests {
    use super::*;

    /// SQLite plans without statistics, so its plan shows whether an index is usable at all: a
    /// page of a container's requests must be a range scan in id order, not a sort.
    #[tokio::test]
    async fn a_page_of_a_containers_requests_is_an_index_range_scan() {
        let queue = SqliteQueue::connect("sqlite::memory:", &QueueOptions::default())
            .await
            .unwrap();
        let sql = format!("EXPLAIN QUERY PLAN {}", STATEMENTS.list[2].paged);
        let plan: Vec<(i64, i64, i64, String)> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .fetch_all(&queue.pool)
            .await
            .unwrap();
        let plan: Vec<&str> = plan.iter().map(|row| row.3.as_str()).collect();
        assert!(
            plan.iter()
                .any(|step| step.contains("USING INDEX hlm_requests_address_id")),
            "{plan:?}"
        );
        assert!(
            !plan.iter().any(|step| step.contains("TEMP B-TREE")),
            "{plan:?}"
        );
    }
}
