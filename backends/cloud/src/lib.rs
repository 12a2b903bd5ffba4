//! `archive-cloud`: the cloud tier. Copies files to S3, GCS, Azure or a local directory store
//! (`object_store`), drops the local copy after a set time, and reads remote-only files through.
//!
//! - [`config`]: `[cloud]` (stores, policies) and its checks.
//! - [`store`]: opening a store, the start-up reachability check, key to object path.
//! - [`policy`]: which policy selects a key (Swift container, Pacifica id range, exclusions).
//! - [`remote`]: HEAD, ranged GET and DELETE of remote objects.
//! - [`copy`]: one verified, streaming (multipart) copy.
//! - [`backend`]: [`CloudBackend`], the tier as an [`archive_core::ArchiveBackend`] over a local one.
//! - [`due`]: which copies and archives the policies make due now.
//! - [`metrics`]: counters per store.
//! - [`error`]: the tier's errors.

#![warn(missing_docs)]

pub mod backend;
pub mod config;
pub mod copy;
pub mod due;
pub mod error;
pub mod metrics;
pub mod policy;
pub mod remote;
pub mod store;

pub use backend::CloudBackend;
pub use config::{CloudConfig, PolicyConfig, StoreConfig};
pub use policy::KeySpace;
