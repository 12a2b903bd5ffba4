//! One fresh sideband catalog database per test on the MariaDB server
//! (`ARCHIVEINTERFACE_TEST_MYSQL_URL`, default `mysql://root@127.0.0.1:3306`).

use sqlx::mysql::{MySqlConnectOptions, MySqlPool, MySqlPoolOptions};
use sqlx::{ConnectOptions, Connection};
use std::str::FromStr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The sideband tables, as SAM-QFS's `samdb.schema` defines them.
pub const SCHEMA: &str = include_str!("schema.sql");

/// The MariaDB server the tests use (a URL without a database).
pub fn server_url() -> String {
    std::env::var("ARCHIVEINTERFACE_TEST_MYSQL_URL")
        .unwrap_or_else(|_| "mysql://root@127.0.0.1:3306".to_string())
        .trim_end_matches('/')
        .to_string()
}

/// A database holding an empty sideband catalog; dropped with this value.
#[derive(Debug)]
pub struct TestCatalog {
    /// `mysql://.../<name>`: what the backend's `url` is set to.
    pub url: String,
    /// The database name (unique per test run).
    pub name: String,
    /// A pool on it, for tests that write catalog rows themselves.
    pub pool: MySqlPool,
}

fn how_to_start(url: &str, error: impl std::fmt::Display) -> String {
    format!(
        "MariaDB is not reachable at {url} ({error}). The sideband tests need a MariaDB (or MySQL) \
         server: Debian: apt-get install mariadb-server && service mariadb start (root may log in \
         from 127.0.0.1 without a password), or set ARCHIVEINTERFACE_TEST_MYSQL_URL to \
         mysql://user:password@host:port of a server where the user may create databases"
    )
}

impl TestCatalog {
    /// Creates a database with a unique name and the sideband tables in it. Panics, saying how to get
    /// MariaDB, when the server cannot be reached.
    pub async fn create() -> TestCatalog {
        static SEQUENCE: AtomicU32 = AtomicU32::new(0);
        let server = server_url();
        let options = MySqlConnectOptions::from_str(&server)
            .unwrap_or_else(|e| panic!("ARCHIVEINTERFACE_TEST_MYSQL_URL {server:?}: {e}"));
        let mut admin = tokio::time::timeout(Duration::from_secs(10), options.connect())
            .await
            .unwrap_or_else(|_| panic!("{}", how_to_start(&server, "timed out")))
            .unwrap_or_else(|e| panic!("{}", how_to_start(&server, e)));
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .subsec_nanos();
        let name = format!(
            "sideband_test_{}_{}_{}",
            std::process::id(),
            SEQUENCE.fetch_add(1, Ordering::Relaxed),
            nanos
        );
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE `{name}`")))
            .execute(&mut admin)
            .await
            .unwrap_or_else(|e| panic!("creating database {name} on {server}: {e}"));
        admin.close().await.ok();
        let url = format!("{server}/{name}");
        let pool = MySqlPoolOptions::new()
            .max_connections(4)
            .connect(&url)
            .await
            .unwrap_or_else(|e| panic!("{}", how_to_start(&url, e)));
        sqlx::raw_sql(SCHEMA)
            .execute(&pool)
            .await
            .unwrap_or_else(|e| panic!("creating the sideband tables in {name}: {e}"));
        TestCatalog { url, name, pool }
    }
}

impl Drop for TestCatalog {
    /// Drops the database from a thread of its own (drop cannot await, and may run inside or outside
    /// a runtime).
    fn drop(&mut self) {
        let (server, name) = (server_url(), self.name.clone());
        let dropped = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .ok()?;
            runtime.block_on(async move {
                let mut admin = MySqlConnectOptions::from_str(&server)
                    .ok()?
                    .connect()
                    .await
                    .ok()?;
                sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
                    "DROP DATABASE IF EXISTS `{name}`"
                )))
                .execute(&mut admin)
                .await
                .ok()?;
                admin.close().await.ok()
            })
        })
        .join();
        if !matches!(dropped, Ok(Some(()))) {
            eprintln!("note: could not drop test database {}", self.name);
        }
    }
}

/// Splits `mysql://.../<name>` into the server URL and the database name.
fn split_database(url: &str) -> Result<(String, String), String> {
    let (server, name) = url
        .rsplit_once('/')
        .filter(|(server, name)| {
            server.contains("://") && !server.ends_with('/') && !name.is_empty()
        })
        .ok_or_else(|| format!("{url}: names no database (mysql://user@host:port/name)"))?;
    if !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
        return Err(format!(
            "{url}: the database name may hold letters, digits and _ only"
        ));
    }
    Ok((server.to_string(), name.to_string()))
}

/// Creates the database `url` names, with the sideband tables, replacing any earlier one of that
/// name (for a started server's catalog, `samqfs-double --db URL create-catalog`).
pub async fn create_catalog_at(url: &str) -> Result<(), String> {
    let (server, name) = split_database(url)?;
    let options = MySqlConnectOptions::from_str(&server).map_err(|e| format!("{server}: {e}"))?;
    let mut admin = options
        .connect()
        .await
        .map_err(|e| how_to_start(&server, e))?;
    for statement in [
        format!("DROP DATABASE IF EXISTS `{name}`"),
        format!("CREATE DATABASE `{name}`"),
    ] {
        sqlx::raw_sql(sqlx::AssertSqlSafe(statement))
            .execute(&mut admin)
            .await
            .map_err(|e| format!("{server}: {e}"))?;
    }
    admin.close().await.ok();
    let mut conn = MySqlConnectOptions::from_str(url)
        .map_err(|e| format!("{url}: {e}"))?
        .connect()
        .await
        .map_err(|e| how_to_start(url, e))?;
    sqlx::raw_sql(SCHEMA)
        .execute(&mut conn)
        .await
        .map_err(|e| format!("creating the sideband tables in {name}: {e}"))?;
    conn.close().await.ok();
    Ok(())
}

/// Drops the database `url` names (`samqfs-double --db URL drop-catalog`).
pub async fn drop_catalog_at(url: &str) -> Result<(), String> {
    let (server, name) = split_database(url)?;
    let options = MySqlConnectOptions::from_str(&server).map_err(|e| format!("{server}: {e}"))?;
    let mut admin = options
        .connect()
        .await
        .map_err(|e| how_to_start(&server, e))?;
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "DROP DATABASE IF EXISTS `{name}`"
    )))
    .execute(&mut admin)
    .await
    .map_err(|e| format!("{server}: {e}"))?;
    admin.close().await.ok();
    Ok(())
}
