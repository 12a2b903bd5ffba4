//! The shared conformance suite against the sideband backend on a real MariaDB catalog (empty: every
//! file is one the catalog has not caught up with, reported from the file system). Its raw storage is
//! the archive directory on the mount.

mod common;

use archive_core::conformance::{files_under, Fixture};
use std::sync::Arc;

async fn sideband_fixture() -> Fixture {
    let site = common::site().await;
    let raw_files = files_under(vec![site.prefix.clone()]);
    Fixture {
        backend: Arc::new(site.backend.clone()),
        scratch: site.scratch.clone(),
        raw_files,
        guard: Box::new(site),
    }
}

archive_core::conformance_tests!(sideband_fixture);
