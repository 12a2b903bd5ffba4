//! Recall styles on the C double: asynchronous stages never submit a second request for a file that
//! is already staging; a client without asynchronous stages falls back to a synchronous stage; the
//! batch API brings several files back in one request. State, media and placement follow the levels.

mod common;

use archive_core::{ArchiveBackend, HsmState, Key, Placement, PutOptions};
use archive_hpss::HpssBackend;
use std::sync::Arc;

/// The tests of this file share the process's double control file: one at a time (for runners that
/// run tests as threads of one process).
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

type Guard = tokio::sync::MutexGuard<'static, ()>;

async fn backend(variant: &str, control: &str) -> (Arc<HpssBackend>, tempfile::TempDir, Guard) {
    let guard = ONE_AT_A_TIME.lock().await;
    let double = common::double_dir();
    std::fs::write(double.join("control"), control).unwrap();
    let _ = std::fs::remove_file(double.join("stage.log"));
    let dir = tempfile::tempdir().unwrap();
    let archive = dir.path().join("archive");
    let config = common::double_config(variant);
    let backend = tokio::task::spawn_blocking(move || HpssBackend::open(&archive, config))
        .await
        .unwrap()
        .expect("open the HPSS backend on the test double");
    (Arc::new(backend), dir, guard)
}

async fn put_and_migrate(b: &HpssBackend, name: &str) -> Key {
    let key = Key::new(name).unwrap();
    let body = archive_core::conformance::body_of(vec![name.as_bytes().to_vec()]);
    b.put(&key, body, PutOptions::default()).await.unwrap();
    for (_, outcome) in b.migrate(std::slice::from_ref(&key)).await.unwrap() {
        outcome.unwrap();
    }
    let st = b.status(&key).await.unwrap();
    assert_eq!((st.state, st.media()), (HsmState::Migrated, "tape"));
    assert_eq!(st.bytes_per_level, [0, name.len() as u64, 0, 0, 0]);
    key
}

fn stage_log() -> Vec<String> {
    std::fs::read_to_string(common::double_dir().join("stage.log"))
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn async_stages_are_requested_once_per_file() {
    let (b, _dir, _one) = backend("libhpss-nobatch.so", "stage_ms 300\n").await;
    assert!(!b.has_batch_stage());
    let key = put_and_migrate(&b, "once").await;
    let Placement::Tape { volume, .. } = &b.placement(std::slice::from_ref(&key)).await.unwrap()[0]
        .1
        .as_ref()
        .unwrap()
        .clone()
    else {
        panic!("not on tape")
    };
    assert_eq!(volume, "PV0000");
    let (first, second) = tokio::join!(b.recall(std::slice::from_ref(&key)), async {
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        // Half-way: reported, not an error; state unknown, media tape.
        let st = b.status(&key).await.unwrap();
        assert_eq!((st.state, st.media()), (HsmState::Unknown, "tape"));
        b.recall(std::slice::from_ref(&key)).await
    });
    first.unwrap()[0].1.as_ref().unwrap();
    second.unwrap()[0].1.as_ref().unwrap();
    assert_eq!(stage_log().len(), 1, "{:?}", stage_log());
    let st = b.status(&key).await.unwrap();
    assert_eq!((st.state, st.media()), (HsmState::Premigrated, "disk"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_asynchronous_stages_the_stage_is_synchronous() {
    let (b, _dir, _one) = backend(
        "libhpss-nobatch.so",
        "stage_ms 50\nfail hpss_StageCallBack -38\n",
    )
    .await;
    let key = put_and_migrate(&b, "sync").await;
    b.recall(std::slice::from_ref(&key)).await.unwrap()[0]
        .1
        .as_ref()
        .unwrap();
    assert_eq!(stage_log().len(), 1);
    assert_eq!(b.status(&key).await.unwrap().media(), "disk");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batch_stages_bring_files_back_and_report_failures_per_file() {
    let (b, _dir, _one) = backend("libhpss.so", "stage_ms 50\n").await;
    assert!(b.has_batch_stage());
    let one = put_and_migrate(&b, "one").await;
    let two = put_and_migrate(&b, "two").await;
    let missing = Key::new("missing").unwrap();
    let out = b
        .recall(&[one.clone(), missing, two.clone()])
        .await
        .unwrap();
    assert!(out[0].1.is_ok() && out[2].1.is_ok(), "{out:?}");
    assert!(
        matches!(out[1].1, Err(archive_core::Error::NotFound { .. })),
        "{out:?}"
    );
    for key in [one, two] {
        assert_eq!(b.status(&key).await.unwrap().state, HsmState::Premigrated);
    }
}
