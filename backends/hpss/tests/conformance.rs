//! The shared conformance suite on the HPSS backend, through the C test double of the client
//! library. Its raw storage is the archive directory plus the double's per-file state and tape
//! copies, so a leaked temporary file or level record fails the suite.

mod common;

use archive_core::conformance::{files_under, Fixture};
use archive_hpss::HpssBackend;
use std::sync::Arc;

async fn hpss_fixture() -> Fixture {
    let double = common::double_dir();
    let dir = tempfile::tempdir().expect("tempdir");
    let archive = dir.path().join("archive");
    let scratch = dir.path().join("scratch");
    std::fs::create_dir(&scratch).unwrap();
    let config = common::double_config("libhpss.so");
    let backend = {
        let archive = archive.clone();
        tokio::task::spawn_blocking(move || HpssBackend::open(&archive, config))
            .await
            .unwrap()
            .expect("open the HPSS backend on the test double")
    };
    let raw_files = files_under(vec![archive, double.join("files"), double.join("tape")]);
    Fixture {
        backend: Arc::new(backend),
        scratch,
        raw_files,
        guard: Box::new(dir),
    }
}

archive_core::conformance_tests!(hpss_fixture);
