//! The shared conformance suite on the LTFS DM backend, with the `ltfsdm` double. Its raw storage is
//! the prefix, the double's state and the directory of the file lists handed to `ltfsdm -f`, which
//! must be empty again after every command.

mod common;

use archive_core::conformance::{files_under, Fixture};
use std::sync::Arc;

async fn ltfsdm_fixture() -> Fixture {
    let s = tokio::task::spawn_blocking(|| common::setup(|_| {}))
        .await
        .unwrap();
    let raw_files = files_under(vec![s.prefix.clone(), s.state.clone(), s.lists.clone()]);
    Fixture {
        backend: Arc::new(s.backend),
        scratch: s.scratch,
        raw_files,
        guard: Box::new(s.dir),
    }
}

archive_core::conformance_tests!(ltfsdm_fixture);
