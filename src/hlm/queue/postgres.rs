//! The request queue in PostgreSQL, for several server instances sharing one queue: the
//! connection, and the PostgreSQL side of the queue's SQL (its [`Dialect`]); the operations are
//! shared with SQLite (see [`super::sql_queue`]).
//!
//! Claims lock the rows they take with `FOR UPDATE SKIP LOCKED`, so concurrent claimers on
//! other instances pass over them instead of waiting or taking them too; every later call of
//! the lease holder re-checks owner and attempt in its `WHERE`, so a holder whose lease was
//! taken over changes nothing. All times come from the database clock (`now()`), so instances
//! with skewed clocks still agree on when a lease has expired, on backoff and on retention.

use std::str::FromStr;
use std::sync::LazyLock;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgConnection, PgPool, PgPoolOptions};
use sqlx::{Connection, Postgres, Transaction};

use super::error::{redact_url, Error, Result};
use super::options::QueueOptions;
use super::schema;
use super::sql_queue::{attempt, sql_queue_operations, to_i64};
use super::statements::{Dialect, Statements};

/// How long a query waits for a free pooled connection.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(30);

/// PostgreSQL's fragments of the queue's SQL.
struct PgDialect;

impl Dialect for PgDialect {
    fn now(&self) -> &'static str {
        "now()"
    }
    fn millis(&self, param: &str) -> String {
        format!("{param} * interval '1 millisecond'")
    }
    fn time_as_millis(&self, column: &str) -> String {
        format!("floor(extract(epoch from {column}) * 1000)::bigint")
    }
    fn as_i64(&self, column: &str) -> String {
        format!("{column}::bigint")
    }
    fn list_as_text(&self, column: &str) -> String {
        format!("{column}::text")
    }
    fn list_from_text(&self, param: &str) -> String {
        format!("{param}::jsonb")
    }
    fn in_json_array(&self, value: &str, param: &str) -> String {
        format!("{value} IN (SELECT jsonb_array_elements_text({param}::jsonb))")
    }
    fn list_contains(&self, column: &str, param: &str) -> String {
        format!("{column} ? {param}")
    }
    fn lock_picked_rows(&self) -> &'static str {
        "FOR UPDATE SKIP LOCKED"
    }
}

static STATEMENTS: LazyLock<Statements> = LazyLock::new(|| Statements::new(&PgDialect));

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

    fn statements() -> &'static Statements {
        &STATEMENTS
    }

    /// The statements read the database clock (`now()`), never this process's: `$1` is bound
    /// only to keep one parameter order for both databases.
    fn now_ms(&self) -> i64 {
        0
    }

    /// Claims and completions run in a transaction; row locks keep writers apart.
    async fn begin_write(&self) -> Result<Transaction<'static, Postgres>> {
        Ok(self.pool.begin().await?)
    }

    sql_queue_operations!();
}
