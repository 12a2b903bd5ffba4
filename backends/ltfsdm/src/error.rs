//! Precise errors of the LTFS DM backend, and their one conversion into `archive_core::Error`.

use archive_core::Error;
use std::time::Duration;

/// How long a client is told to wait when the LTFS DM server cannot be reached or a command ran out
/// of time.
pub(crate) const RETRY_AFTER: Duration = Duration::from_secs(60);

/// What went wrong running `ltfsdm`, with the command line and what it printed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum LtfsdmError {
    #[error("cannot run `{command}`: {source}")]
    Spawn {
        command: String,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot write the file list for `{command}` in {dir}: {source}")]
    ListFile {
        command: String,
        dir: String,
        #[source]
        source: std::io::Error,
    },
    #[error("`{command}` did not finish within {secs} s and was stopped")]
    Timeout { command: String, secs: u64 },
    /// The exit-0 answer of every server command when `ltfsdmd` is not running or not reachable.
    #[error("Unable to connect to the LTFS Data Management server (`{command}`); is ltfsdmd running? Output: {output}")]
    Unreachable { command: String, output: String },
    #[error("`{command}` failed with exit code {code}: {output}")]
    Failed {
        command: String,
        code: String,
        output: String,
    },
    #[error("LTFS DM file lists hold one path per line, so {key:?} (its name holds a newline) cannot be handed to ltfsdm")]
    NewlineInName { key: String },
    /// `ran` tells the command, how it ended and what it said about the file.
    #[error("LTFS DM did not {operation} {path}: its state is {state} after {ran}")]
    NotDone {
        operation: &'static str,
        path: String,
        state: &'static str,
        ran: String,
    },
    #[error("`ltfsdm info files` reported nothing for {path} (LTFS DM skips files it cannot canonicalize)")]
    Skipped { path: String },
}

impl LtfsdmError {
    /// Promotes what a caller can act on: an unreachable server or a command that ran out of time is
    /// worth retrying (503 with Retry-After, an HLM retry); a name ltfsdm cannot take is the client's
    /// (400); the rest is a backend failure with this error as its source.
    pub(crate) fn into_core(self) -> Error {
        match self {
            LtfsdmError::Unreachable { .. } | LtfsdmError::Timeout { .. } => Error::Unavailable {
                message: self.to_string(),
                retry_after: Some(RETRY_AFTER),
            },
            LtfsdmError::NewlineInName { .. } => Error::InvalidArgument(self.to_string()),
            other => Error::backend("ltfsdm", other),
        }
    }
}
