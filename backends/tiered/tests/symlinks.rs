//! The tiered backend keeps the disk tier's symlink policy: a key whose path holds a symlink names no
//! file, for status as for reads.

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
