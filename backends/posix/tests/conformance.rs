//! The shared conformance suite, run against the posix backend.

use archive_core::conformance::{files_under, Fixture};
use archive_posix::PosixBackend;
use std::sync::Arc;

async fn posix_fixture() -> Fixture {
    let dir = tempfile::tempdir().expect("tempdir");
    let backend = PosixBackend::new(dir.path().join("archive")).expect("backend");
    let scratch = dir.path().join("scratch");
    std::fs::create_dir(&scratch).unwrap();
    Fixture {
        backend: Arc::new(backend),
        scratch,
        raw_files: files_under(vec![dir.path().join("archive")]),
        guard: Box::new(dir),
    }
}

archive_core::conformance_tests!(posix_fixture);
