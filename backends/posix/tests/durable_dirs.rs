//! Every directory a write creates is fsynced into its parent, up to the first one that existed.

use archive_core::conformance::body_of;
use archive_core::{ArchiveBackend, Key, PutOptions};
use archive_posix::PosixBackend;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

fn ino(path: &Path) -> (u64, u64) {
    let m = std::fs::metadata(path).unwrap();
    (m.dev(), m.ino())
}

#[tokio::test]
async fn a_put_makes_each_new_directory_durable_in_its_parent() {
    archive_posix::record_syncs();
    let dir = tempfile::tempdir().unwrap();
    let b = PosixBackend::new(dir.path().join("archive")).unwrap();
    b.put(
        &Key::new("a/b/c/file").unwrap(),
        body_of(vec![b"x".to_vec()]),
        PutOptions::default(),
    )
    .await
    .unwrap();
    let synced = archive_posix::synced();
    let root = b.root();
    for (dir, holds) in [("", "a"), ("a", "b"), ("a/b", "c"), ("a/b/c", "file")] {
        assert!(
            synced.contains(&ino(&root.join(dir))),
            "directory '{dir}' was not fsynced after {holds} was created in it"
        );
    }
    assert!(synced.contains(&ino(&root.join("a/b/c/file"))));
}
