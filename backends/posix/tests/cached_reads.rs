//! Reads and stats of cached files are answered on the async thread; a file whose data is not in the
//! page cache, a range too large to read inline and a path through a symlink are answered by the
//! blocking pool, with the same result. The tests run one after another in one test function because
//! the count of inline answers is process-wide.

use archive_core::conformance::body_of;
use archive_core::{ArchiveBackend, Key, PutOptions, ReadRange};
use archive_posix::{answered_inline, PosixBackend};
use futures::StreamExt;
use std::os::fd::AsFd;

async fn read_all(b: &PosixBackend, key: &Key, range: ReadRange) -> Vec<u8> {
    let mut got = b.get(key, range).await.unwrap();
    let mut out = Vec::new();
    while let Some(chunk) = got.stream.next().await {
        out.extend_from_slice(&chunk.unwrap());
    }
    out
}

async fn store(b: &PosixBackend, key: &Key, data: &[u8]) {
    b.put(key, body_of(vec![data.to_vec()]), PutOptions::default())
        .await
        .unwrap();
}

/// Drops the file's pages from the page cache (they are clean: the put fsynced them), then checks
/// with a non-waiting read of our own that they are really gone.
fn evict(path: &std::path::Path) -> bool {
    let file = std::fs::File::open(path).unwrap();
    rustix::fs::fadvise(&file, 0, None, rustix::fs::Advice::DontNeed).unwrap();
    let mut byte = [0u8; 1];
    let probe = rustix::io::preadv2(
        file.as_fd(),
        &mut [std::io::IoSliceMut::new(&mut byte)],
        0,
        rustix::io::ReadWriteFlags::NOWAIT,
    );
    probe == Err(rustix::io::Errno::AGAIN)
}

#[tokio::test]
async fn cached_files_are_answered_inline_and_the_rest_by_the_pool() {
    let dir = tempfile::tempdir().unwrap();
    let b = PosixBackend::new(dir.path().join("archive")).unwrap();
    let key = Key::new("small").unwrap();
    let data: Vec<u8> = (0..4096u32).map(|i| (i % 251) as u8).collect();
    store(&b, &key, &data).await;

    // Just written, so cached: data and status without the pool.
    let before = answered_inline();
    assert_eq!(read_all(&b, &key, ReadRange::All).await, data);
    assert_eq!(
        answered_inline(),
        before + 1,
        "a cached GET went to the pool"
    );
    let range = ReadRange::From {
        start: 100,
        end: Some(200),
    };
    assert_eq!(read_all(&b, &key, range).await, &data[100..200]);
    let status = b.status(&key).await.unwrap();
    assert_eq!(status.size, 4096);
    assert_eq!(
        answered_inline(),
        before + 3,
        "a cached HEAD went to the pool"
    );

    // Not in the page cache: the non-waiting read refuses, the pool reads it, same bytes.
    if evict(&b.path_of(&key)) {
        let before = answered_inline();
        assert_eq!(read_all(&b, &key, ReadRange::All).await, data);
        assert_eq!(
            answered_inline(),
            before,
            "an uncached file was read on the async thread"
        );
    } else {
        panic!("could not drop the test file from the page cache: the uncached path is untested");
    }

    // Larger than the inline limit: the pool streams it.
    let big_key = Key::new("dir/big").unwrap();
    let big: Vec<u8> = (0..(3u32 << 20)).map(|i| (i % 253) as u8).collect();
    store(&b, &big_key, &big).await;
    let before = answered_inline();
    assert_eq!(read_all(&b, &big_key, ReadRange::All).await, big);
    assert_eq!(answered_inline(), before, "a large read was done inline");
    // A small range of it is inline again.
    let tail = ReadRange::Last(10);
    assert_eq!(read_all(&b, &big_key, tail).await, &big[big.len() - 10..]);
    assert_eq!(answered_inline(), before + 1);

    // Missing files, directories and paths through symlinks: the same answers as from the pool.
    let missing = Key::new("nothing/here").unwrap();
    assert!(matches!(
        b.get(&missing, ReadRange::All).await,
        Err(archive_core::Error::NotFound { .. })
    ));
    assert!(matches!(
        b.status(&Key::new("dir").unwrap()).await,
        Err(archive_core::Error::NotFound { .. })
    ));
    std::os::unix::fs::symlink(b.root().join("dir"), b.root().join("link")).unwrap();
    let through_link = Key::new("link/big").unwrap();
    assert!(b.get(&through_link, ReadRange::All).await.is_err());
    assert!(b.status(&through_link).await.is_err());
    std::os::unix::fs::symlink(b.root().join("small"), b.root().join("alias")).unwrap();
    let alias = Key::new("alias").unwrap();
    assert!(b.get(&alias, ReadRange::All).await.is_err());
    assert!(b.status(&alias).await.is_err());
}
