//! The shared conformance suite, run against the tiered backend (cold tier at its default place
//! inside the prefix, so the listing must skip it).

use archive_core::conformance::Fixture;
use archive_tiered::{TieredBackend, TieredConfig};
use std::sync::Arc;

async fn tiered_fixture() -> Fixture {
    let dir = tempfile::tempdir().expect("tempdir");
    let backend =
        TieredBackend::open(dir.path().join("archive"), TieredConfig::default()).expect("backend");
    let scratch = dir.path().join("scratch");
    std::fs::create_dir(&scratch).unwrap();
    Fixture {
        backend: Arc::new(backend),
        scratch,
        guard: Box::new(dir),
    }
}

archive_core::conformance_tests!(tiered_fixture);
