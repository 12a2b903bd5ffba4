//! Deleting prunes the directories a file leaves empty, and only those.

use archive_core::conformance::body_of;
use archive_core::{ArchiveBackend, Key, PutOptions};
use archive_posix::PosixBackend;

async fn put(b: &PosixBackend, key: &str) {
    b.put(
        &Key::new(key).unwrap(),
        body_of(vec![b"x".to_vec()]),
        PutOptions::default(),
    )
    .await
    .unwrap();
}

#[tokio::test]
async fn delete_prunes_empty_parents_only() {
    let dir = tempfile::tempdir().unwrap();
    let b = PosixBackend::new(dir.path().join("archive")).unwrap();
    put(&b, "a/b/c").await;
    put(&b, "a/keep").await;
    b.delete(&Key::new("a/b/c").unwrap()).await.unwrap();
    assert!(!b.root().join("a/b").exists(), "empty a/b should be gone");
    assert!(b.root().join("a/keep").is_file());
    b.delete(&Key::new("a/keep").unwrap()).await.unwrap();
    assert!(!b.root().join("a").exists());
    assert!(b.root().is_dir(), "the root itself stays");
    // The name of a former directory can now be a file.
    put(&b, "a").await;
    assert!(b.root().join("a").is_file());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_deletes_of_the_last_siblings_both_succeed() {
    let dir = tempfile::tempdir().unwrap();
    let b = std::sync::Arc::new(PosixBackend::new(dir.path().join("archive")).unwrap());
    for round in 0..200 {
        let keys: Vec<String> = (0..4).map(|i| format!("r{round}/d/f{i}")).collect();
        for key in &keys {
            put(&b, key).await;
        }
        let deletes: Vec<_> = keys
            .iter()
            .map(|key| {
                let (b, key) = (b.clone(), Key::new(key.as_str()).unwrap());
                tokio::spawn(async move { b.delete(&key).await })
            })
            .collect();
        for delete in deletes {
            delete
                .await
                .unwrap()
                .expect("a delete racing its siblings' pruning");
        }
        assert!(!b.root().join(format!("r{round}")).exists());
    }
}

/// A write into a directory that a delete is pruning at the same moment still succeeds: it opens or
/// creates the directory again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_survive_concurrent_pruning() {
    let dir = tempfile::tempdir().unwrap();
    let b = PosixBackend::new(dir.path().join("archive")).unwrap();
    for i in 0..200 {
        put(&b, &format!("d/e/old{i}")).await;
        let (b1, b2) = (b.clone(), b.clone());
        let deleting =
            tokio::spawn(async move { b1.delete(&Key::new(format!("d/e/old{i}")).unwrap()).await });
        let writing = tokio::spawn(async move {
            b2.put(
                &Key::new(format!("d/e/new{i}")).unwrap(),
                body_of(vec![b"x".to_vec()]),
                PutOptions::default(),
            )
            .await
        });
        deleting.await.unwrap().unwrap();
        writing.await.unwrap().unwrap();
        b.delete(&Key::new(format!("d/e/new{i}")).unwrap())
            .await
            .unwrap();
    }
}
