//! Errors of the request queue.

use super::record::RequestId;

/// Result of queue operations.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What can go wrong in the request queue.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The queue URL is neither `sqlite:` nor `postgres:`/`postgresql:`, or does not parse.
    #[error("invalid request queue URL {url}: {reason}")]
    InvalidUrl {
        /// The URL with any password replaced by `***`.
        url: String,
        /// Why it was rejected.
        reason: String,
    },
    /// A [`QueueOptions`](super::QueueOptions) value is out of range.
    #[error("invalid request queue option {option}: {reason}")]
    InvalidOption {
        /// Field name.
        option: &'static str,
        /// Why it was rejected.
        reason: String,
    },
    /// A submitted request names nothing that could run (empty names or lists).
    #[error("invalid request: {reason}")]
    InvalidRequest {
        /// What is wrong.
        reason: String,
    },
    /// The database could not be opened or reached.
    #[error("unable to connect to the request queue at {url}: {source}")]
    Connect {
        /// The URL with any password replaced by `***`.
        url: String,
        /// Driver error.
        #[source]
        source: sqlx::Error,
    },
    /// The SQLite file's directory could not be created.
    #[error("unable to create the directory {path} for the request queue: {source}")]
    CreateDir {
        /// The directory.
        path: String,
        /// OS error.
        #[source]
        source: std::io::Error,
    },
    /// Applying the schema migrations failed.
    #[error("unable to migrate the request queue schema: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// A query failed.
    #[error("request queue query failed: {0}")]
    Database(#[from] sqlx::Error),
    /// The caller no longer holds the lease of this request: it expired and another instance (or
    /// another claim) took the request over, or the request already finished. The caller must
    /// stop working on it.
    #[error("lease on request {id} was lost")]
    LeaseLost {
        /// The request.
        id: RequestId,
    },
    /// A stored row holds a value this version does not understand.
    #[error("request {id} has an invalid stored value: {reason}")]
    Corrupt {
        /// The request.
        id: RequestId,
        /// What is wrong.
        reason: String,
    },
}

/// `url` with the password (if any) replaced by `***`, for error messages and logs.
pub(crate) fn redact_url(url: &str) -> String {
    // scheme://user:password@host... -- only the part between the first ':' after "//" and the
    // last '@' before the path is secret.
    let Some(scheme_end) = url.find("://") else {
        return url.to_owned();
    };
    let rest = &url[scheme_end + 3..];
    let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
    let authority = &rest[..authority_end];
    let Some(at) = authority.rfind('@') else {
        return url.to_owned();
    };
    let userinfo = &authority[..at];
    match userinfo.find(':') {
        Some(colon) => format!(
            "{}{}:***{}",
            &url[..scheme_end + 3],
            &userinfo[..colon],
            &rest[at..]
        ),
        None => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::redact_url;

    #[test]
    fn redacts_password_only() {
        assert_eq!(
            redact_url("postgres://u:secret@h:5432/db?x=1"),
            "postgres://u:***@h:5432/db?x=1"
        );
        assert_eq!(redact_url("postgres://u@h/db"), "postgres://u@h/db");
        assert_eq!(redact_url("sqlite:///var/q.db"), "sqlite:///var/q.db");
    }
}
