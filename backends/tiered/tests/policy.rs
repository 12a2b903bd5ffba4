//! The background migration policy: age rule with a minimum size, LRU watermarks, and the spawned
//! task (paused tokio clock) that runs it until shutdown.

mod common;

use archive_core::conformance::body_of;
use archive_core::{ArchiveBackend, HsmState, PutOptions};
use archive_tiered::{spawn_migration_policy, TieredConfig};
use common::*;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

async fn put_dated(b: &archive_tiered::TieredBackend, k: &str, len: usize, age: Duration) {
    let options = PutOptions {
        mtime: Some(SystemTime::now() - age),
        ..Default::default()
    };
    b.put(&key(k), body_of(vec![vec![1u8; len]]), options)
        .await
        .unwrap();
}

#[tokio::test]
async fn age_rule_migrates_old_files_above_the_minimum_size() {
    let dir = tempfile::tempdir().unwrap();
    let config = TieredConfig {
        migrate_after_secs: Some(3600),
        migrate_min_size: 10,
        ..small_library()
    };
    let b = open(dir.path(), config);
    let hours = |h: u64| Duration::from_secs(h * 3600);
    put_dated(&b, "old-big", 100, hours(2)).await;
    put_dated(&b, "old-small", 5, hours(2)).await;
    put_dated(&b, "new-big", 100, hours(0)).await;
    let report = b.run_migration_policy(SystemTime::now()).await.unwrap();
    assert_eq!(report.aged_out, [key("old-big")]);
    assert_eq!(
        (report.disk_bytes_before, report.disk_bytes_after),
        (205, 105)
    );
    assert_eq!(state(&b, "old-big").await, HsmState::Migrated);
    assert_eq!(state(&b, "old-small").await, HsmState::Resident);
    assert_eq!(state(&b, "new-big").await, HsmState::Resident);
    // A second pass finds nothing more.
    let again = b.run_migration_policy(SystemTime::now()).await.unwrap();
    assert!(again.aged_out.is_empty());
}

#[tokio::test]
async fn watermarks_migrate_least_recently_used_first() {
    let dir = tempfile::tempdir().unwrap();
    let config = TieredConfig {
        high_watermark_bytes: Some(250),
        low_watermark_bytes: Some(150),
        ..small_library()
    };
    let b = open(dir.path(), config);
    // Access times: w2 oldest, then w4, w1, w3 (most recent).
    let base = SystemTime::now() - Duration::from_secs(10_000);
    let ages = [("w1", 300), ("w2", 900), ("w3", 100), ("w4", 600)];
    for (k, _) in ages {
        put_dated(&b, k, 100, Duration::from_secs(5000)).await;
    }
    // Premigrated before the access times are set: the copy to tape reads the file.
    b.premigrate(&[key("w4")]).await.unwrap();
    for (k, access_age) in ages {
        let f = std::fs::File::open(b.prefix().join(k)).unwrap();
        let accessed = SystemTime::now() - Duration::from_secs(access_age);
        f.set_times(
            std::fs::FileTimes::new()
                .set_accessed(accessed)
                .set_modified(base),
        )
        .unwrap();
    }
    let report = b.run_migration_policy(SystemTime::now()).await.unwrap();
    assert_eq!(report.released_for_space, [key("w2"), key("w4"), key("w1")]);
    assert_eq!(report.disk_bytes_after, 100);
    assert_eq!(state(&b, "w3").await, HsmState::Resident);
    assert_eq!(state(&b, "w4").await, HsmState::Migrated);
    // Under the high watermark now: nothing to do.
    let again = b.run_migration_policy(SystemTime::now()).await.unwrap();
    assert!(again.released_for_space.is_empty());
}

#[tokio::test(start_paused = true)]
async fn the_policy_task_runs_on_its_interval_and_stops_on_shutdown() {
    let dir = tempfile::tempdir().unwrap();
    let config = TieredConfig {
        migrate_after_secs: Some(60),
        policy_interval_secs: 300,
        ..small_library()
    };
    let b = Arc::new(open(dir.path(), config));
    put_dated(&b, "stale", 10, Duration::from_secs(3600)).await;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = spawn_migration_policy(Arc::clone(&b), async move {
        let _ = stopped.await;
    });
    tokio::time::sleep(Duration::from_secs(299)).await;
    assert_eq!(
        state(&b, "stale").await,
        HsmState::Resident,
        "ran before its interval"
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(state(&b, "stale").await, HsmState::Migrated);
    stop.send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(1), task)
        .await
        .unwrap()
        .unwrap();
}
