//! `archive-core`: the contract between the HTTP routers and the storage backends.
//!
//! - [`ArchiveBackend`]: the one object-safe trait every backend implements (per-file operations plus the
//!   batch-shaped HSM operations).
//! - [`Key`]: a validated relative path; the only way a name reaches a backend.
//! - [`FileStatus`], [`HsmState`], [`Placement`]: what a backend reports about a file.
//! - [`Error`]: the small public error every backend converts its private errors into.
//! - [`id2filename`]: the Pacifica integer-id to path mapping.
//! - [`conformance`]: the suite every backend runs against itself.
#![warn(missing_docs)]

mod backend;
pub mod conformance;
mod error;
mod id2filename;
mod key;
mod status;

pub use backend::{
    ArchiveBackend, ByteStream, Capabilities, GetResult, KeyOutcome, ListEntry, PutOptions,
    PutOutcome, ReadRange,
};
pub use error::{Error, Result};
pub use id2filename::{id2filename, parse_id, IdError, MAX_ID, MIN_ID};
pub use key::Key;
pub use status::{FileStatus, HsmState, Placement};
