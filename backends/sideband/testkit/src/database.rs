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
