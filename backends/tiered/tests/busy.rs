//! A key whose upload is in progress holds its lock for as long as the upload runs. Migrate and recall
//! skip such a key and come back to it once the upload ends, without holding a tape drive meanwhile:
//! with one drive, other work goes on while the upload stalls.

mod common;

use archive_core::{ArchiveBackend, ByteStream, HsmState, PutOptions};
use archive_tiered::{TieredBackend, TieredConfig};
use bytes::Bytes;
use common::*;
use futures::StreamExt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

fn one_drive() -> TieredConfig {
    TieredConfig {
        drives: 1,
        ..small_library()
    }
}

/// Starts overwriting `k` with a body that stalls after its first chunk until `finish` is called.
struct StalledUpload {
    more: mpsc::Sender<Bytes>,
    task: tokio::task::JoinHandle<()>,
}

impl StalledUpload {
    async fn start(b: &TieredBackend, k: &str) -> StalledUpload {
        let (more, rx) = mpsc::channel::<Bytes>(4);
        // Set when the backend reads the body, which it does holding the key's lock.
        let reading = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&reading);
        let body: ByteStream = futures::stream::unfold(rx, move |mut rx| {
            flag.store(true, Ordering::SeqCst);
            async move { rx.recv().await.map(|chunk| (Ok(chunk), rx)) }
        })
        .boxed();
        more.send(Bytes::from_static(b"new content, "))
            .await
            .unwrap();
        let (b2, k2) = (b.clone(), key(k));
        let task = tokio::spawn(async move {
            let options = PutOptions {
                overwrite: true,
                ..Default::default()
            };
            b2.put(&k2, body, options).await.expect("the upload");
        });
        wait_until("the upload to start", || reading.load(Ordering::SeqCst)).await;
        StalledUpload { more, task }
    }

    async fn finish(self) {
        self.more
            .send(Bytes::from_static(b"written last"))
            .await
            .unwrap();
        drop(self.more);
        self.task.await.unwrap();
    }
}

async fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

async fn wait_for_state(b: &TieredBackend, k: &str, want: HsmState, why: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if state(b, k).await == want {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{k} never became {want:?}: {why}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrate_skips_a_key_being_uploaded_and_keeps_the_drive_free() {
    let dir = tempfile::tempdir().unwrap();
    let b = open(dir.path(), one_drive());
    put(&b, "on-tape", b"read me back").await;
    b.migrate(&[key("on-tape")]).await.unwrap();
    put(&b, "uploading", b"old content").await;
    put(&b, "free", b"nobody writes this").await;

    let upload = StalledUpload::start(&b, "uploading").await;
    let migrating = {
        let b = b.clone();
        tokio::spawn(async move { b.migrate(&[key("uploading"), key("free")]).await })
    };
    // The other key is migrated and the only drive serves a recall while the upload stalls.
    wait_for_state(
        &b,
        "free",
        HsmState::Migrated,
        "migrate waited for the upload",
    )
    .await;
    let recalled = tokio::time::timeout(Duration::from_secs(20), b.recall(&[key("on-tape")]))
        .await
        .expect("the recall waited for a drive held while the upload stalled")
        .unwrap();
    recalled[0].1.as_ref().unwrap();
    assert_eq!(read(&b, "on-tape").await, b"read me back");
    assert_eq!(state(&b, "uploading").await, HsmState::Resident);

    // Once the upload ends, the migrate comes back to the key and copies the new content.
    upload.finish().await;
    for (k, r) in migrating.await.unwrap().unwrap() {
        r.unwrap_or_else(|e| panic!("{k}: {e}"));
    }
    assert_eq!(state(&b, "uploading").await, HsmState::Migrated);
    b.recall(&[key("uploading")]).await.unwrap();
    assert_eq!(read(&b, "uploading").await, b"new content, written last");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recall_skips_a_key_being_uploaded_and_comes_back_to_it() {
    let dir = tempfile::tempdir().unwrap();
    let b = open(dir.path(), one_drive());
    for k in ["uploading", "next"] {
        put(&b, k, k.as_bytes()).await;
    }
    b.migrate(&[key("uploading"), key("next")]).await.unwrap();

    let upload = StalledUpload::start(&b, "uploading").await;
    let recalling = {
        let b = b.clone();
        tokio::spawn(async move { b.recall(&[key("uploading"), key("next")]).await })
    };
    wait_for_state(
        &b,
        "next",
        HsmState::Premigrated,
        "recall waited for the upload",
    )
    .await;
    assert_eq!(read(&b, "next").await, b"next");

    upload.finish().await;
    for (k, r) in recalling.await.unwrap().unwrap() {
        r.unwrap_or_else(|e| panic!("{k}: {e}"));
    }
    // The upload replaced the migrated file: it is the new content, resident.
    assert_eq!(state(&b, "uploading").await, HsmState::Resident);
    assert_eq!(read(&b, "uploading").await, b"new content, written last");
}
