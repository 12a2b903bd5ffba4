//! The shared conformance suite, run against the tiered backend (cold tier at its default place
//! inside the prefix, so the listing must skip it). Its raw storage is the disk tier with everything
//! in it (catalog journal, instance locks) and the cold tier, wherever that is.

use archive_core::conformance::{files_under, Fixture};
use archive_tiered::{TieredBackend, TieredConfig};
use std::sync::Arc;

async fn tiered_fixture() -> Fixture {
    let dir = tempfile::tempdir().expect("tempdir");
    let backend =
        TieredBackend::open(dir.path().join("archive"), TieredConfig::default()).expect("backend");
    let scratch = dir.path().join("scratch");
    std::fs::create_dir(&scratch).unwrap();
    let raw_files = files_under(vec![
        backend.prefix().to_path_buf(),
        backend.cold_dir().to_path_buf(),
    ]);
    Fixture {
        backend: Arc::new(backend),
        scratch,
        raw_files,
        guard: Box::new(dir),
    }
}

archive_core::conformance_tests!(tiered_fixture);
