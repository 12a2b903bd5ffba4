//! Precise errors of the sideband backend, and their conversion into `archive_core::Error`: a catalog
//! that cannot be reached or answers too slowly is `Unavailable` (503) naming the database host.

use crate::config::ConfigError;
use std::time::Duration;

/// The backend's name in errors and logs.
pub(crate) const BACKEND: &str = "hsm_sideband";

/// Why [`crate::SidebandBackend::open`] failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OpenError {
    /// A setting cannot work.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The archive directory on the SAM-QFS mount could not be opened.
    #[error("hsm_sideband: can't open the archive directory '{path}': {source}")]
    Prefix {
        /// The directory.
        path: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// The catalog database did not answer, or lacks the sideband tables.
    #[error("hsm_sideband: the sideband catalog database at {host} is not usable: {source}")]
    Catalog {
        /// `host:port` of the database.
        host: String,
        /// Why.
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

/// Failures of catalog queries and of the configured commands.
#[derive(Debug, thiserror::Error)]
pub(crate) enum SidebandError {
    #[error("the sideband catalog database at {host} is unreachable: {source}")]
    Unreachable {
        host: String,
        #[source]
        source: sqlx::Error,
    },
    #[error("the sideband catalog database at {host} did not answer within {} s", .timeout.as_secs())]
    Slow { host: String, timeout: Duration },
    #[error("the sideband catalog query at {host} failed: {source}")]
    Query {
        host: String,
        #[source]
        source: sqlx::Error,
    },
    #[error("can't run `{program}`: {source}")]
    Spawn {
        program: String,
        #[source]
        source: std::io::Error,
    },
    #[error("`{program}` {outcome}: {stderr}")]
    Command {
        program: String,
        outcome: String,
        stderr: String,
    },
    #[error("{0}")]
    Inconsistent(String),
}

impl SidebandError {
    /// A failed query: transport and pool failures mean the database is down (503, retried by
    /// clients); an SQL error is a problem of the catalog itself.
    pub(crate) fn from_sqlx(host: &str, source: sqlx::Error) -> Self {
        let host = host.to_string();
        match source {
            sqlx::Error::Io(_)
            | sqlx::Error::Tls(_)
            | sqlx::Error::Protocol(_)
            | sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::WorkerCrashed => SidebandError::Unreachable { host, source },
            source => SidebandError::Query { host, source },
        }
    }

    pub(crate) fn into_core(self) -> archive_core::Error {
        match self {
            SidebandError::Unreachable { .. } | SidebandError::Slow { .. } => {
                archive_core::Error::Unavailable {
                    message: self.to_string(),
                    retry_after: Some(Duration::from_secs(10)),
                }
            }
            other => archive_core::Error::backend(BACKEND, other),
        }
    }
}

impl Clone for SidebandError {
    /// Batch failures are reported once per key; the sqlx source is kept as text.
    fn clone(&self) -> Self {
        match self {
            SidebandError::Slow { host, timeout } => SidebandError::Slow {
                host: host.clone(),
                timeout: *timeout,
            },
            SidebandError::Unreachable { host, source } => SidebandError::Unreachable {
                host: host.clone(),
                source: sqlx::Error::Protocol(source.to_string()),
            },
            SidebandError::Query { host, source } => SidebandError::Query {
                host: host.clone(),
                source: sqlx::Error::Protocol(source.to_string()),
            },
            SidebandError::Spawn { program, source } => SidebandError::Spawn {
                program: program.clone(),
                source: std::io::Error::new(source.kind(), source.to_string()),
            },
            SidebandError::Command {
                program,
                outcome,
                stderr,
            } => SidebandError::Command {
                program: program.clone(),
                outcome: outcome.clone(),
                stderr: stderr.clone(),
            },
            SidebandError::Inconsistent(m) => SidebandError::Inconsistent(m.clone()),
        }
    }
}
