//! `archive-hpss`: IBM HPSS through its client library, loaded at run time (`[hpss] library`), with
//! a C glue compiled against `hpss_api.h` for everything only that header defines.
//!
//! Files: `ffi` (the only unsafe code: loading, symbol table, glue calls), `client` (a logged-in
//! logged-in client, codes into errors), `backend` (the `ArchiveBackend`), `write` (atomic PUT), `read`
//! (streaming GET), `status` (levels into state, media and placement), `stage` (recall styles),
//! `migrate`, `config`, `error`. The test double of the library lives in `double/`.

#![warn(missing_docs)]

mod backend;
mod client;
mod config;
mod error;
mod ffi;
mod migrate;
mod read;
mod stage;
mod status;
mod write;

pub use backend::HpssBackend;
pub use config::HpssConfig;

/// Name prefix of the temporary files a PUT writes next to its target (skipped by listings).
pub const TEMP_PREFIX: &str = ".aihpss-";
