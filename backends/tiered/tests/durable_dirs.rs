//! Directories the tiered backend creates (a recalled file's directories, a tape's directory in the
//! cold tier) are made durable in their parents by the disk tier's write path.

mod common;

use archive_core::ArchiveBackend;
use common::*;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

fn ino(path: &Path) -> (u64, u64) {
    let m = std::fs::metadata(path).unwrap();
    (m.dev(), m.ino())
}

#[tokio::test]
async fn migrate_and_recall_make_the_directories_they_create_durable() {
    archive_posix::record_syncs();
    let dir = tempfile::tempdir().unwrap();
    let b = open(dir.path(), small_library());
    put(&b, "x/y/file", b"on tape and back").await;
    for (_, r) in b.migrate(&[key("x/y/file")]).await.unwrap() {
        r.unwrap();
    }
    let cold = b.cold_dir().to_path_buf();
    let tape_dir = std::fs::read_dir(&cold)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.is_dir() && !p.file_name().unwrap().to_string_lossy().starts_with('.'))
        .expect("a tape directory in the cold tier");
    let synced = archive_posix::synced();
    assert!(
        synced.contains(&ino(&cold)),
        "the new tape directory's entry"
    );
    assert!(synced.contains(&ino(&tape_dir)));

    // The disk copy is gone; its emptied directories go too (as a delete would prune them).
    std::fs::remove_dir(b.prefix().join("x/y")).unwrap();
    std::fs::remove_dir(b.prefix().join("x")).unwrap();
    for (_, r) in b.recall(&[key("x/y/file")]).await.unwrap() {
        r.unwrap();
    }
    assert_eq!(read(&b, "x/y/file").await, b"on tape and back");
    let synced = archive_posix::synced();
    for (dir, holds) in [("", "x"), ("x", "y"), ("x/y", "file")] {
        assert!(
            synced.contains(&ino(&b.prefix().join(dir))),
            "recall: directory '{dir}' was not fsynced after {holds} was created in it"
        );
    }
}
