//! Precise errors of the tiered backend, and their conversion into `archive_core::Error`.

use crate::config::ConfigError;
use std::io;
use std::path::PathBuf;

/// Why [`crate::TieredBackend::open`] failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OpenError {
    /// A configuration value cannot work.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// A state or data directory could not be created, read or repaired.
    #[error("tiered backend: can't {what} '{path}': {source}", path = .path.display())]
    Io {
        /// What was being done.
        what: &'static str,
        /// The path involved.
        path: PathBuf,
        /// The OS error.
        source: io::Error,
    },
    /// Another process holds this tiered archive (its catalog and tape positions live in that process).
    #[error(
        "tiered backend: the archive is held by another process: {holder} (lock '{path}'); a tiered \
         archive is served by one process at a time, which runs its HLM dispatcher too",
        path = .path.display()
    )]
    Held {
        /// The owner lock file.
        path: PathBuf,
        /// What the holder wrote about itself: pid, host, start time, command line.
        holder: String,
    },
    /// The state journal holds a record that cannot be understood (not a torn last line).
    #[error("tiered backend: corrupt journal '{path}' at line {line}: {message}", path = .path.display())]
    Journal {
        /// The journal file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// What is wrong with it.
        message: String,
    },
}

/// Failures inside HSM operations; always reported per key as `Error::Backend` unless promoted.
#[derive(Debug, thiserror::Error)]
pub(crate) enum TieredError {
    #[error("Can't append to the tiered journal '{path}': {source}", path = .0.display(), source = .1)]
    Journal(PathBuf, #[source] io::Error),
    #[error("Can't {0} '{path}': {source}", path = .1.display(), source = .2)]
    Io(&'static str, PathBuf, #[source] io::Error),
    #[error("{0}")]
    Inconsistent(String),
}

impl TieredError {
    pub(crate) fn into_core(self) -> archive_core::Error {
        archive_core::Error::backend("tiered", self)
    }
}
