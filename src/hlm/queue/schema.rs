//! The schema migrations of the request queue, one set per database flavour, embedded in the
//! binary from `migrations/sqlite/` and `migrations/postgres/` (sqlx migrator: each applied
//! once, recorded in `_sqlx_migrations`; on PostgreSQL the migrator holds an advisory lock, so
//! several instances starting at once apply them once).

use sqlx::migrate::Migrator;

/// Migrations for SQLite queue files.
pub(crate) static SQLITE: Migrator = sqlx::migrate!("./migrations/sqlite");

/// Migrations for PostgreSQL queue databases.
pub(crate) static POSTGRES: Migrator = sqlx::migrate!("./migrations/postgres");
