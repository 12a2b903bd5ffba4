//! The Swift index: what Swift keeps in its account and container databases, in one SQLite file
//! (WAL, busy timeout, so several server processes sharing a prefix can use it at once). It holds a
//! row per object (name, size, ETag, content type, timestamps, metadata and the modification time
//! its data was written with, which identifies that data), a row per container and per account with
//! their metadata, and the object, byte and container counts, which triggers keep up to date in the
//! same transaction as the object and container rows. Listing pages are range queries on the
//! primary key, so a page of `limit` names costs O(limit + log n) whatever the container's size.
//!
//! Writes that must agree with the data (an object's row after its data was linked, a container
//! DELETE that must not strand data) run in an [`IndexTx`]: `BEGIN IMMEDIATE` takes SQLite's one
//! write lock first, across processes, so checking the data and writing the row is one step for
//! every other writer.
//!
//! An object PUT records an intent (its name and data identity) before its data is written and
//! removes it when the row is committed; intents left by a crash are repaired when the index is
//! opened (see `index_build`).

use super::metadata::{ContainerMeta, ObjectMeta};
use crate::error::ApiError;
use axum::http::StatusCode;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteRow,
    SqliteSynchronous,
};
use sqlx::{Row, Sqlite, Transaction};
use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

/// How long a writer waits for the write lock (held by another process or connection) before the
/// request fails with 503.
const BUSY_TIMEOUT: Duration = Duration::from_secs(30);
/// Connections per process: readers run in parallel under WAL, writers queue for the lock.
const MAX_CONNECTIONS: u32 = 8;
/// Bumped when the schema changes.
const SCHEMA_VERSION: i64 = 1;

const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS accounts (
    account TEXT NOT NULL PRIMARY KEY,
    container_count INTEGER NOT NULL DEFAULT 0,
    object_count INTEGER NOT NULL DEFAULT 0,
    bytes_used INTEGER NOT NULL DEFAULT 0,
    created_ns INTEGER NOT NULL DEFAULT 0,
    headers TEXT NOT NULL DEFAULT '{}'
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS containers (
    account TEXT NOT NULL,
    container TEXT NOT NULL,
    created_ns INTEGER NOT NULL,
    headers TEXT NOT NULL,
    object_count INTEGER NOT NULL DEFAULT 0,
    bytes_used INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (account, container)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS objects (
    account TEXT NOT NULL,
    container TEXT NOT NULL,
    name TEXT NOT NULL,
    size INTEGER NOT NULL,
    etag TEXT NOT NULL,
    content_type TEXT NOT NULL,
    timestamp_ns INTEGER NOT NULL,
    data_mtime_ns INTEGER NOT NULL,
    headers TEXT NOT NULL,
    PRIMARY KEY (account, container, name)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS put_intents (
    id INTEGER PRIMARY KEY,
    account TEXT NOT NULL,
    container TEXT NOT NULL,
    name TEXT NOT NULL,
    record TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS index_state (
    key TEXT NOT NULL PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TRIGGER IF NOT EXISTS object_added AFTER INSERT ON objects BEGIN
    UPDATE containers SET object_count = object_count + 1, bytes_used = bytes_used + NEW.size
     WHERE account = NEW.account AND container = NEW.container;
END;
CREATE TRIGGER IF NOT EXISTS object_removed AFTER DELETE ON objects BEGIN
    UPDATE containers SET object_count = object_count - 1, bytes_used = bytes_used - OLD.size
     WHERE account = OLD.account AND container = OLD.container;
END;
CREATE TRIGGER IF NOT EXISTS object_resized AFTER UPDATE OF size ON objects BEGIN
    UPDATE containers SET bytes_used = bytes_used - OLD.size + NEW.size
     WHERE account = NEW.account AND container = NEW.container;
END;
CREATE TRIGGER IF NOT EXISTS container_added AFTER INSERT ON containers BEGIN
    INSERT INTO accounts (account, container_count, object_count, bytes_used, created_ns)
    VALUES (NEW.account, 1, NEW.object_count, NEW.bytes_used, NEW.created_ns)
    ON CONFLICT (account) DO UPDATE SET
        container_count = container_count + 1,
        object_count = object_count + excluded.object_count,
        bytes_used = bytes_used + excluded.bytes_used,
        created_ns = CASE WHEN created_ns = 0 OR excluded.created_ns < created_ns
                          THEN excluded.created_ns ELSE created_ns END;
END;
CREATE TRIGGER IF NOT EXISTS container_removed AFTER DELETE ON containers BEGIN
    UPDATE accounts SET container_count = container_count - 1,
        object_count = object_count - OLD.object_count, bytes_used = bytes_used - OLD.bytes_used
     WHERE account = OLD.account;
END;
CREATE TRIGGER IF NOT EXISTS container_counted AFTER UPDATE OF object_count, bytes_used ON containers BEGIN
    UPDATE accounts SET object_count = object_count - OLD.object_count + NEW.object_count,
        bytes_used = bytes_used - OLD.bytes_used + NEW.bytes_used
     WHERE account = NEW.account;
END;
"#;

/// The index of one archive's Swift names.
#[derive(Debug, Clone)]
pub struct SwiftIndex {
    pool: SqlitePool,
}

/// A container's row: its metadata and counts.
#[derive(Debug, Clone, Default, PartialEq)]
pub(super) struct ContainerRow {
    pub(super) meta: ContainerMeta,
    pub(super) object_count: u64,
    pub(super) bytes_used: u64,
}

/// An account's row (all zero, no metadata, for an account never written to).
#[derive(Debug, Clone, Default, PartialEq)]
pub(super) struct AccountRow {
    pub(super) container_count: u64,
    pub(super) object_count: u64,
    pub(super) bytes_used: u64,
    pub(super) created_ns: u64,
    pub(super) headers: BTreeMap<String, String>,
}

/// Where a listing page starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Start {
    /// Names from this one on.
    From(String),
    /// Names after this one.
    After(String),
}

/// A PUT's recorded intent, for the repair of a PUT a crash cut between its data and its row.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Intent {
    pub(super) id: i64,
    pub(super) account: String,
    pub(super) container: String,
    pub(super) record: ObjectMeta,
}

/// The error a failing index gives clients: temporarily unavailable (a lock held too long, a full
/// disk), nothing changed.
pub(super) fn index_error(e: impl std::fmt::Display) -> ApiError {
    ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        format!("The Swift index failed: {e}"),
    )
}

type Result<T> = std::result::Result<T, ApiError>;

fn to_i64(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

fn to_u64(n: i64) -> u64 {
    u64::try_from(n).unwrap_or(0)
}

fn headers_json(headers: &BTreeMap<String, String>) -> String {
    serde_json::to_string(headers).expect("string maps serialize")
}

fn headers_of(text: &str) -> BTreeMap<String, String> {
    serde_json::from_str(text).unwrap_or_default()
}

/// The columns of an object row, as [`object_of`] reads them (a macro so queries stay static text).
macro_rules! object_columns {
    () => {
        "name, size, etag, content_type, timestamp_ns, data_mtime_ns, headers"
    };
}

/// Reads one object row (`$from` is the pool or a transaction).
macro_rules! select_object {
    ($from:expr, $account:expr, $container:expr, $name:expr) => {
        sqlx::query(concat!(
            "SELECT ",
            object_columns!(),
            " FROM objects WHERE account = ? AND container = ? AND name = ?"
        ))
        .bind($account)
        .bind($container)
        .bind($name)
        .fetch_optional($from)
        .await
        .map_err(index_error)
        .map(|row| row.as_ref().map(object_of))
    };
}

fn object_of(row: &SqliteRow) -> ObjectMeta {
    ObjectMeta {
        name: row.get("name"),
        etag: row.get("etag"),
        content_type: row.get("content_type"),
        size: to_u64(row.get("size")),
        data_mtime_ns: to_u64(row.get("data_mtime_ns")),
        timestamp_ns: to_u64(row.get("timestamp_ns")),
        headers: headers_of(row.get("headers")),
    }
}

fn container_of(row: &SqliteRow) -> ContainerRow {
    ContainerRow {
        meta: ContainerMeta {
            created_ns: to_u64(row.get("created_ns")),
            headers: headers_of(row.get("headers")),
        },
        object_count: to_u64(row.get("object_count")),
        bytes_used: to_u64(row.get("bytes_used")),
    }
}

impl Start {
    /// The bound, and whether it is included.
    fn bound(&self) -> (&str, bool) {
        match self {
            Start::From(s) => (s, true),
            Start::After(s) => (s, false),
        }
    }
}

impl SwiftIndex {
    /// Opens (creating if needed, with its directory) the index file at `path`.
    pub(super) async fn open(path: &Path) -> Result<Self> {
        if let Some(dir) = path.parent() {
            let dir = dir.to_path_buf();
            tokio::task::spawn_blocking(move || std::fs::create_dir_all(&dir))
                .await
                .map_err(index_error)?
                .map_err(|e| index_error(format!("cannot create {}: {e}", path.display())))?;
        }
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            // WAL: listings and HEADs read while a PUT commits, in this and other processes.
            .journal_mode(SqliteJournalMode::Wal)
            // A committed row must survive a power cut as the data it describes does.
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(BUSY_TIMEOUT)
            .foreign_keys(false);
        let pool = SqlitePoolOptions::new()
            .max_connections(MAX_CONNECTIONS)
            .connect_with(options)
            .await
            .map_err(|e| index_error(format!("cannot open {}: {e}", path.display())))?;
        let index = SwiftIndex { pool };
        index.migrate().await?;
        Ok(index)
    }

    async fn migrate(&self) -> Result<()> {
        let mut tx = self.begin().await?;
        let version: i64 = sqlx::query_scalar("PRAGMA user_version")
            .fetch_one(&mut *tx.tx)
            .await
            .map_err(index_error)?;
        if version > SCHEMA_VERSION {
            return Err(index_error(format!(
                "the index has schema version {version}, newer than this server's {SCHEMA_VERSION}"
            )));
        }
        sqlx::raw_sql(SCHEMA)
            .execute(&mut *tx.tx)
            .await
            .map_err(index_error)?;
        const _: () = assert!(SCHEMA_VERSION == 1, "update the PRAGMA below");
        sqlx::raw_sql("PRAGMA user_version = 1")
            .execute(&mut *tx.tx)
            .await
            .map_err(index_error)?;
        tx.commit().await
    }

    /// Starts a write transaction holding the index's write lock.
    pub(super) async fn begin(&self) -> Result<IndexTx> {
        let tx = self
            .pool
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(index_error)?;
        Ok(IndexTx { tx })
    }

    /// An account's row.
    pub(super) async fn account(&self, account: &str) -> Result<AccountRow> {
        let row = sqlx::query("SELECT * FROM accounts WHERE account = ?")
            .bind(account)
            .fetch_optional(&self.pool)
            .await
            .map_err(index_error)?;
        Ok(row
            .map(|row| AccountRow {
                container_count: to_u64(row.get("container_count")),
                object_count: to_u64(row.get("object_count")),
                bytes_used: to_u64(row.get("bytes_used")),
                created_ns: to_u64(row.get("created_ns")),
                headers: headers_of(row.get("headers")),
            })
            .unwrap_or_default())
    }

    /// A container's row.
    pub(super) async fn container(
        &self,
        account: &str,
        container: &str,
    ) -> Result<Option<ContainerRow>> {
        let row = sqlx::query("SELECT * FROM containers WHERE account = ? AND container = ?")
            .bind(account)
            .bind(container)
            .fetch_optional(&self.pool)
            .await
            .map_err(index_error)?;
        Ok(row.as_ref().map(container_of))
    }

    /// An object's row.
    pub(super) async fn object(
        &self,
        account: &str,
        container: &str,
        name: &str,
    ) -> Result<Option<ObjectMeta>> {
        select_object!(&self.pool, account, container, name)
    }

    /// Up to `limit` objects of a container from `start` on, in name (byte) order.
    pub(super) async fn objects_page(
        &self,
        account: &str,
        container: &str,
        start: &Start,
        limit: usize,
    ) -> Result<Vec<ObjectMeta>> {
        let (bound, included) = start.bound();
        let query = if included {
            concat!(
                "SELECT ",
                object_columns!(),
                " FROM objects WHERE account = ? AND container = ? AND name >= ?
                 ORDER BY name LIMIT ?"
            )
        } else {
            concat!(
                "SELECT ",
                object_columns!(),
                " FROM objects WHERE account = ? AND container = ? AND name > ?
                 ORDER BY name LIMIT ?"
            )
        };
        let rows = sqlx::query(query)
            .bind(account)
            .bind(container)
            .bind(bound)
            .bind(to_i64(limit as u64))
            .fetch_all(&self.pool)
            .await
            .map_err(index_error)?;
        Ok(rows.iter().map(object_of).collect())
    }

    /// Up to `limit` containers of an account from `start` on, in name order.
    pub(super) async fn containers_page(
        &self,
        account: &str,
        start: &Start,
        limit: usize,
    ) -> Result<Vec<(String, ContainerRow)>> {
        let (bound, included) = start.bound();
        let query = if included {
            "SELECT * FROM containers WHERE account = ? AND container >= ?
             ORDER BY container LIMIT ? "
        } else {
            "SELECT * FROM containers WHERE account = ? AND container > ?
             ORDER BY container LIMIT ?"
        };
        let rows = sqlx::query(query)
            .bind(account)
            .bind(bound)
            .bind(to_i64(limit as u64))
            .fetch_all(&self.pool)
            .await
            .map_err(index_error)?;
        Ok(rows
            .iter()
            .map(|row| (row.get("container"), container_of(row)))
            .collect())
    }

    /// Records that a PUT of `record` into `account`/`container` is about to link its data.
    pub(super) async fn add_intent(
        &self,
        account: &str,
        container: &str,
        record: &ObjectMeta,
    ) -> Result<i64> {
        sqlx::query_scalar(
            "INSERT INTO put_intents (account, container, name, record) VALUES (?, ?, ?, ?)
             RETURNING id",
        )
        .bind(account)
        .bind(container)
        .bind(&record.name)
        .bind(serde_json::to_string(record).expect("records serialize"))
        .fetch_one(&self.pool)
        .await
        .map_err(index_error)
    }

    /// Every recorded intent (PUTs in flight, or cut by a crash).
    pub(super) async fn intents(&self) -> Result<Vec<Intent>> {
        let rows =
            sqlx::query("SELECT id, account, container, record FROM put_intents ORDER BY id")
                .fetch_all(&self.pool)
                .await
                .map_err(index_error)?;
        Ok(rows
            .iter()
            .filter_map(|row| {
                Some(Intent {
                    id: row.get("id"),
                    account: row.get("account"),
                    container: row.get("container"),
                    record: serde_json::from_str(row.get("record")).ok()?,
                })
            })
            .collect())
    }

    /// Forgets an intent outside any other write (a PUT that failed before linking anything).
    pub(super) async fn remove_intent(&self, id: i64) -> Result<()> {
        sqlx::query("DELETE FROM put_intents WHERE id = ?")
            .bind(id)
            .execute(&self.pool)
            .await
            .map_err(index_error)?;
        Ok(())
    }
}

/// A write transaction on the index (SQLite's write lock is held until commit or drop).
#[derive(Debug)]
pub(super) struct IndexTx {
    tx: Transaction<'static, Sqlite>,
}

impl IndexTx {
    /// Makes every change of the transaction durable at once.
    pub(super) async fn commit(self) -> Result<()> {
        self.tx.commit().await.map_err(index_error)
    }

    /// Whether the index was built (from an existing prefix, or empty for a new one).
    pub(super) async fn is_built(&mut self) -> Result<bool> {
        let built: Option<String> =
            sqlx::query_scalar("SELECT value FROM index_state WHERE key = 'built'")
                .fetch_optional(&mut *self.tx)
                .await
                .map_err(index_error)?;
        Ok(built.is_some())
    }

    /// Records that the index is built.
    pub(super) async fn mark_built(&mut self) -> Result<()> {
        sqlx::query("INSERT OR REPLACE INTO index_state (key, value) VALUES ('built', '1')")
            .execute(&mut *self.tx)
            .await
            .map_err(index_error)?;
        Ok(())
    }

    /// A container's row, read under the write lock.
    pub(super) async fn container(
        &mut self,
        account: &str,
        container: &str,
    ) -> Result<Option<ContainerRow>> {
        let row = sqlx::query("SELECT * FROM containers WHERE account = ? AND container = ?")
            .bind(account)
            .bind(container)
            .fetch_optional(&mut *self.tx)
            .await
            .map_err(index_error)?;
        Ok(row.as_ref().map(container_of))
    }

    /// Creates or updates a container's metadata (its counts are the triggers').
    pub(super) async fn put_container(
        &mut self,
        account: &str,
        container: &str,
        meta: &ContainerMeta,
    ) -> Result<()> {
        sqlx::query(
            "INSERT INTO containers (account, container, created_ns, headers) VALUES (?, ?, ?, ?)
             ON CONFLICT (account, container) DO UPDATE SET headers = excluded.headers",
        )
        .bind(account)
        .bind(container)
        .bind(to_i64(meta.created_ns))
        .bind(headers_json(&meta.headers))
        .execute(&mut *self.tx)
        .await
        .map_err(index_error)?;
        Ok(())
    }

    /// Removes a container's row.
    pub(super) async fn delete_container(&mut self, account: &str, container: &str) -> Result<()> {
        sqlx::query("DELETE FROM containers WHERE account = ? AND container = ?")
            .bind(account)
            .bind(container)
            .execute(&mut *self.tx)
            .await
            .map_err(index_error)?;
        Ok(())
    }

    /// Sets an account's metadata (creating its row).
    pub(super) async fn set_account_headers(
        &mut self,
        account: &str,
        headers: &BTreeMap<String, String>,
    ) -> Result<()> {
        sqlx::query(
            "INSERT INTO accounts (account, headers) VALUES (?, ?)
             ON CONFLICT (account) DO UPDATE SET headers = excluded.headers",
        )
        .bind(account)
        .bind(headers_json(headers))
        .execute(&mut *self.tx)
        .await
        .map_err(index_error)?;
        Ok(())
    }

    /// An object's row, read under the write lock.
    pub(super) async fn object(
        &mut self,
        account: &str,
        container: &str,
        name: &str,
    ) -> Result<Option<ObjectMeta>> {
        select_object!(&mut *self.tx, account, container, name)
    }

    /// Writes (or replaces) an object's row; the container's and account's counts follow.
    pub(super) async fn put_object(
        &mut self,
        account: &str,
        container: &str,
        record: &ObjectMeta,
    ) -> Result<()> {
        sqlx::query(concat!(
            "INSERT INTO objects (account, container, ",
            object_columns!(),
            ") VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
             ON CONFLICT (account, container, name) DO UPDATE SET
                 size = excluded.size, etag = excluded.etag, content_type = excluded.content_type,
                 timestamp_ns = excluded.timestamp_ns, data_mtime_ns = excluded.data_mtime_ns,
                 headers = excluded.headers"
        ))
        .bind(account)
        .bind(container)
        .bind(&record.name)
        .bind(to_i64(record.size))
        .bind(&record.etag)
        .bind(&record.content_type)
        .bind(to_i64(record.timestamp_ns))
        .bind(to_i64(record.data_mtime_ns))
        .bind(headers_json(&record.headers))
        .execute(&mut *self.tx)
        .await
        .map_err(index_error)?;
        Ok(())
    }

    /// Removes an object's row (a missing one is fine).
    pub(super) async fn delete_object(
        &mut self,
        account: &str,
        container: &str,
        name: &str,
    ) -> Result<()> {
        sqlx::query("DELETE FROM objects WHERE account = ? AND container = ? AND name = ?")
            .bind(account)
            .bind(container)
            .bind(name)
            .execute(&mut *self.tx)
            .await
            .map_err(index_error)?;
        Ok(())
    }

    /// Forgets a PUT's intent (its row is written, or its data lost the race).
    pub(super) async fn remove_intent(&mut self, id: i64) -> Result<()> {
        sqlx::query("DELETE FROM put_intents WHERE id = ?")
            .bind(id)
            .execute(&mut *self.tx)
            .await
            .map_err(index_error)?;
        Ok(())
    }
}
