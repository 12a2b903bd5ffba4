//! The tiered backend keeps the disk tier's symlink policy: a key whose path holds a symlink names no
//! file, for status as for reads, and a release never removes a file through one.

mod common;

use archive_core::{ArchiveBackend, Error, ReadRange};
use common::*;

#[tokio::test]
async fn keys_through_symlinks_are_not_found() {
    let dir = tempfile::tempdir().unwrap();
    let b = open(dir.path(), small_library());
    let outside = dir.path().join("outside");
    std::fs::create_dir(&outside).unwrap();
    std::fs::write(outside.join("secret"), b"secret").unwrap();
    std::os::unix::fs::symlink(&outside, b.prefix().join("link")).unwrap();
    std::os::unix::fs::symlink(outside.join("secret"), b.prefix().join("file")).unwrap();
    for k in ["link/secret", "file"] {
        let status = b.status(&key(k)).await;
        assert!(
            matches!(status, Err(Error::NotFound { .. })),
            "status {k}: {status:?}"
        );
        let many = b.status_many(&[key(k)]).await;
        assert!(matches!(many[0].1, Err(Error::NotFound { .. })), "{k}");
        let got = b.get(&key(k), ReadRange::All).await.map(drop);
        assert!(
            matches!(got, Err(Error::NotFound { .. })),
            "get {k}: {got:?}"
        );
    }
}

#[tokio::test]
async fn a_release_never_removes_a_file_through_a_symlink() {
    let dir = tempfile::tempdir().unwrap();
    let b = open(dir.path(), small_library());
    put(&b, "d/f", b"kept outside").await;
    b.premigrate(&[key("d/f")]).await.unwrap()[0]
        .1
        .as_ref()
        .unwrap();
    // The directory is moved out of the archive and a symlink left in its place: the file behind it
    // is the very inode that was copied to tape, but it is not in the archive any more.
    let outside = dir.path().join("outside");
    std::fs::rename(b.prefix().join("d"), &outside).unwrap();
    std::os::unix::fs::symlink(&outside, b.prefix().join("d")).unwrap();
    for (k, r) in b.migrate(&[key("d/f")]).await.unwrap() {
        r.unwrap_or_else(|e| panic!("{k}: {e}"));
    }
    assert_eq!(std::fs::read(outside.join("f")).unwrap(), b"kept outside");
}
