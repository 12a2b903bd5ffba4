//! The cloud tier's own errors, precise for logs, and how they become the public
//! [`archive_core::Error`]: a store that cannot be reached or answers 5xx is `Unavailable` (503,
//! naming the store), so nothing is reported lost while the store is down.

use std::time::Duration;

/// Everything that can go wrong in the cloud tier.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A store's settings cannot work.
    #[error("key `cloud.stores.{store}`: {problem}")]
    StoreConfig {
        /// Store name.
        store: String,
        /// What is wrong.
        problem: String,
    },
    /// The start-up check of a store failed.
    #[error("cloud store `{store}` ({url}) is not reachable: {source}")]
    Unreachable {
        /// Store name.
        store: String,
        /// Its URL.
        url: String,
        /// The client's error.
        source: Box<object_store::Error>,
    },
    /// A request to a store failed.
    #[error("cloud store `{store}`: {operation} {key}: {source}")]
    Store {
        /// Store name.
        store: String,
        /// What was being done.
        operation: &'static str,
        /// The archive key.
        key: String,
        /// The client's error.
        source: Box<object_store::Error>,
    },
    /// The remote copy does not match what was sent.
    #[error("cloud store `{store}`: the copy of {key} does not verify: {problem}")]
    Verify {
        /// Store name.
        store: String,
        /// The archive key.
        key: String,
        /// What differs.
        problem: String,
    },
    /// The local file changed while it was being copied.
    #[error(
        "{key} changed while it was being copied to cloud store `{store}`; it will be copied again"
    )]
    ChangedDuringCopy {
        /// Store name.
        store: String,
        /// The archive key.
        key: String,
    },
    /// Reading the local file failed in the middle of a copy.
    #[error("reading {key} for cloud store `{store}`: {source}")]
    LocalRead {
        /// Store name.
        store: String,
        /// The archive key.
        key: String,
        /// The read error.
        source: std::io::Error,
    },
    /// No policy selects the key, so there is no store for it.
    #[error("no [[cloud.policies]] entry selects {key}")]
    NoPolicy {
        /// The archive key.
        key: String,
    },
}

impl From<Error> for archive_core::Error {
    fn from(e: Error) -> Self {
        match &e {
            Error::Store { source, key, .. }
                if matches!(**source, object_store::Error::NotFound { .. }) =>
            {
                archive_core::Error::NotFound { key: key.clone() }
            }
            Error::NoPolicy { .. } => archive_core::Error::InvalidArgument(e.to_string()),
            Error::Store { .. }
            | Error::Unreachable { .. }
            | Error::Verify { .. }
            | Error::ChangedDuringCopy { .. } => archive_core::Error::Unavailable {
                message: e.to_string(),
                retry_after: Some(Duration::from_secs(30)),
            },
            Error::StoreConfig { .. } | Error::LocalRead { .. } => {
                archive_core::Error::backend("cloud", e)
            }
        }
    }
}
