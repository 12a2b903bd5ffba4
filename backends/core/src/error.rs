//! The public error type every backend converts into; `src/error.rs` maps each variant to one HTTP status.

use std::time::Duration;

/// Result alias used across the backend trait.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What a caller of a backend can act on. Backends keep precise private errors and convert into this.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// No file is stored under the key.
    #[error("No such file in the archive: {key}")]
    NotFound {
        /// The key that was looked up.
        key: String,
    },
    /// The key is taken and the archive is write-once (or the operation must not replace it).
    #[error("Can't open {key} for writing: the file already exists and the archive is write-once")]
    AlreadyExists {
        /// The key that already holds a file.
        key: String,
    },
    /// The file exists but has no copy on disk yet; it must be recalled (staged) first.
    #[error("File {key} is not on disk; it must be recalled (staged) before it can be read")]
    NotResident {
        /// The migrated key.
        key: String,
    },
    /// The backend does not offer this operation (for example HSM operations on plain disk).
    #[error("The {backend} backend does not support {operation}")]
    Unsupported {
        /// Backend name.
        backend: &'static str,
        /// Operation name.
        operation: &'static str,
    },
    /// The request itself is wrong (bad key, body shorter than announced, ...).
    #[error("{0}")]
    InvalidArgument(String),
    /// The storage is out of space (or over a size limit); nothing was stored.
    #[error("Not enough storage space: {0}")]
    InsufficientStorage(String),
    /// The backend cannot serve the request now but may later (tape busy, recall in progress).
    #[error("{message}")]
    Unavailable {
        /// What is unavailable and why.
        message: String,
        /// When it is worth trying again.
        retry_after: Option<Duration>,
    },
    /// Any other backend failure, with its cause chain.
    #[error("{backend} backend error: {source}")]
    Backend {
        /// Backend name.
        backend: &'static str,
        /// The precise private error.
        source: Box<dyn std::error::Error + Send + Sync + 'static>,
    },
}

impl Error {
    /// Shorthand for a [`Error::Backend`] with the given source.
    pub fn backend(
        backend: &'static str,
        source: impl Into<Box<dyn std::error::Error + Send + Sync + 'static>>,
    ) -> Self {
        Error::Backend {
            backend,
            source: source.into(),
        }
    }
}
