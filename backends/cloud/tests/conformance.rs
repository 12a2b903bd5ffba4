//! The shared conformance suite, run against the cloud tier over a posix prefix with a directory
//! store and a policy selecting every key, so that every operation also consults the store. Its
//! raw storage is the prefix and the store's directory.

use archive_cloud::{CloudBackend, CloudConfig, KeySpace, PolicyConfig, StoreConfig};
use archive_core::conformance::{files_under, Fixture};
use std::sync::Arc;

async fn cloud_fixture() -> Fixture {
    let dir = tempfile::tempdir().expect("tempdir");
    let prefix = dir.path().join("archive");
    let remote = dir.path().join("remote");
    let local = archive_posix::PosixBackend::new(&prefix).expect("posix backend");
    let store = StoreConfig {
        url: format!("file://{}", remote.display()),
        ..StoreConfig::default()
    };
    let config = CloudConfig {
        stores: [("dir".to_string(), store)].into(),
        policies: vec![PolicyConfig {
            store: "dir".into(),
            key_prefix: Some(String::new()),
            propagate_delete: true,
            ..PolicyConfig::default()
        }],
        ..CloudConfig::default()
    };
    config.validate().expect("valid configuration");
    let space = KeySpace {
        swift_root: ".swift".into(),
        use_id2filename: true,
    };
    let backend = CloudBackend::open(Arc::new(local), &config, space)
        .await
        .expect("cloud tier");
    let scratch = dir.path().join("scratch");
    std::fs::create_dir(&scratch).unwrap();
    Fixture {
        backend: Arc::new(backend),
        scratch,
        raw_files: files_under(vec![prefix, remote]),
        guard: Box::new(dir),
    }
}

archive_core::conformance_tests!(cloud_fixture);
