//! The schema migrations of the request queue, one set per database flavour, embedded in the
//! binary from `migrations/sqlite/` and `migrations/postgres/`. Each is applied once and recorded
//! in the table `hlm_queue_migrations`; on PostgreSQL the migrator holds an advisory lock, so
//! several instances starting at once apply them once.

use sqlx::migrate::Migrator;

/// Migrations for SQLite queue files, as embedded.
static SQLITE: Migrator = sqlx::migrate!("./migrations/sqlite");

/// Migrations for PostgreSQL queue databases, as embedded.
static POSTGRES: Migrator = sqlx::migrate!("./migrations/postgres");

/// The migrator for SQLite queue files.
pub(crate) fn sqlite() -> Migrator {
    configured(&SQLITE)
}

/// The migrator for PostgreSQL queue databases.
pub(crate) fn postgres() -> Migrator {
    configured(&POSTGRES)
}

fn configured(embedded: &Migrator) -> Migrator {
    let mut migrator = Migrator::with_migrations(embedded.iter().cloned().collect());
    // Our own bookkeeping table instead of sqlx's default `_sqlx_migrations`: the queue may
    // share a database (or schema) with another sqlx application, whose migrations are none of
    // our business.
    migrator.dangerous_set_table_name("hlm_queue_migrations");
    // Migrations are additive (new tables, columns with defaults, indexes), so a server one
    // version behind keeps working on a schema a newer instance has already migrated: during
    // a rolling upgrade of several instances on one PostgreSQL, an old one can still restart.
    migrator.set_ignore_missing(true);
    migrator
}
