//! HSM behaviour of the tiered backend: state transitions, placement in append order, per-key
//! failures, write-once and overwrite of tape files, tapes filling up, drive use, restart persistence.

mod common;

use archive_core::conformance::body_of;
use archive_core::{ArchiveBackend, Error, HsmState, Placement, PutOptions, ReadRange};
use archive_tiered::TieredConfig;
use common::*;

#[tokio::test]
async fn resident_premigrated_migrated_and_back() {
    let dir = tempfile::tempdir().unwrap();
    let b = open(dir.path(), small_library());
    put(&b, "1", b"one").await;
    put(&b, "2", b"twotwo").await;

    let st = b.status(&key("1")).await.unwrap();
    assert_eq!(
        (st.state, st.bytes_per_level.clone(), st.media()),
        (HsmState::Resident, vec![3, 0], "disk")
    );
    assert_eq!(
        b.placement(&[key("1")]).await.unwrap()[0]
            .1
            .as_ref()
            .unwrap(),
        &Placement::Disk
    );

    for (_, r) in b.premigrate(&[key("1"), key("2")]).await.unwrap() {
        r.unwrap();
    }
    let st = b.status(&key("2")).await.unwrap();
    assert_eq!(
        (st.state, st.bytes_per_level.clone(), st.media()),
        (HsmState::Premigrated, vec![6, 6], "disk")
    );
    // Append order on the first tape: "1" at 0, "2" right after it.
    let placements = b.placement(&[key("1"), key("2")]).await.unwrap();
    let tape = |v: &str, p: u64, resident_copy| Placement::Tape {
        volume: v.into(),
        position: p,
        resident_copy,
    };
    assert_eq!(placements[0].1.as_ref().unwrap(), &tape("T00000", 0, true));
    assert_eq!(placements[1].1.as_ref().unwrap(), &tape("T00000", 3, true));
    assert_eq!(read(&b, "2").await, b"twotwo");

    for (_, r) in b.migrate(&[key("1"), key("2")]).await.unwrap() {
        r.unwrap();
    }
    let st = b.status(&key("1")).await.unwrap();
    assert_eq!(
        (st.state, st.bytes_per_level.clone(), st.media(), st.size),
        (HsmState::Migrated, vec![0, 3], "tape", 3)
    );
    assert!(matches!(
        b.get(&key("1"), ReadRange::All).await,
        Err(Error::NotResident { .. })
    ));
    assert!(!b.prefix().join("1").exists(), "disk copy not released");
    assert_eq!(
        b.placement(&[key("1")]).await.unwrap()[0]
            .1
            .as_ref()
            .unwrap(),
        &tape("T00000", 0, false)
    );
    // Migrated files are still listed, with their size.
    let listed: Vec<_> = b
        .list("")
        .await
        .unwrap()
        .into_iter()
        .map(|e| (e.key.to_string(), e.size))
        .collect();
    assert_eq!(listed, [("1".to_string(), 3), ("2".to_string(), 6)]);

    for (_, r) in b.recall(&[key("1")]).await.unwrap() {
        r.unwrap();
    }
    assert_eq!(state(&b, "1").await, HsmState::Premigrated);
    assert_eq!(read(&b, "1").await, b"one");
    assert_eq!(state(&b, "2").await, HsmState::Migrated);
    // Migrating a premigrated file only releases the disk copy: no second tape copy.
    b.migrate(&[key("1")]).await.unwrap()[0].1.as_ref().unwrap();
    let after = b.placement(&[key("1")]).await.unwrap();
    assert_eq!(after[0].1.as_ref().unwrap(), &tape("T00000", 0, false));
    assert_eq!(b.tape_stats().bytes_written, 9);
}

#[tokio::test]
async fn unknown_keys_fail_per_key_not_per_batch() {
    let dir = tempfile::tempdir().unwrap();
    let b = open(dir.path(), small_library());
    put(&b, "here", b"x").await;
    let batch = [key("here"), key("missing")];
    let out = b.migrate(&batch).await.unwrap();
    assert!(out[0].1.is_ok());
    assert!(matches!(out[1].1, Err(Error::NotFound { .. })));
    let out = b.recall(&batch).await.unwrap();
    assert!(out[0].1.is_ok());
    assert!(matches!(out[1].1, Err(Error::NotFound { .. })));
    let out = b.premigrate(&batch).await.unwrap();
    assert!(matches!(out[1].1, Err(Error::NotFound { .. })));
    let out = b.placement(&batch).await.unwrap();
    assert!(matches!(out[1].1, Err(Error::NotFound { .. })));
    let out = b.status_many(&batch).await;
    assert_eq!(out[0].1.as_ref().unwrap().state, HsmState::Premigrated);
    assert!(matches!(out[1].1, Err(Error::NotFound { .. })));
}

#[tokio::test]
async fn a_broken_tape_copy_fails_only_its_key() {
    let dir = tempfile::tempdir().unwrap();
    let b = open(dir.path(), small_library());
    put(&b, "ok", b"fine").await;
    put(&b, "bad", b"doomed").await;
    b.migrate(&[key("ok"), key("bad")]).await.unwrap();
    std::fs::remove_file(b.cold_dir().join("T00000").join(format!("{:016}", 4))).unwrap();
    let out = b.recall(&[key("bad"), key("ok")]).await.unwrap();
    assert!(
        matches!(out[0].1, Err(Error::Backend { .. })),
        "{:?}",
        out[0].1
    );
    assert!(out[1].1.is_ok());
    assert_eq!(read(&b, "ok").await, b"fine");
}

#[tokio::test]
async fn tape_files_are_write_once_and_can_be_overwritten_or_deleted() {
    let dir = tempfile::tempdir().unwrap();
    let b = open(dir.path(), small_library());
    put(&b, "k", b"old").await;
    b.migrate(&[key("k")]).await.unwrap();
    let again = b
        .put(
            &key("k"),
            body_of(vec![b"new".to_vec()]),
            PutOptions::default(),
        )
        .await;
    assert!(matches!(again, Err(Error::AlreadyExists { .. })));
    let overwrite = PutOptions {
        overwrite: true,
        ..Default::default()
    };
    b.put(&key("k"), body_of(vec![b"newer".to_vec()]), overwrite)
        .await
        .unwrap();
    assert_eq!(state(&b, "k").await, HsmState::Resident);
    assert_eq!(read(&b, "k").await, b"newer");

    put(&b, "gone", b"bye").await;
    b.migrate(&[key("gone")]).await.unwrap();
    b.delete(&key("gone")).await.unwrap();
    assert!(matches!(
        b.status(&key("gone")).await,
        Err(Error::NotFound { .. })
    ));
    assert_eq!(b.list("").await.unwrap().len(), 1);
    put(&b, "gone", b"back").await;
    assert_eq!(read(&b, "gone").await, b"back");
}

#[tokio::test]
async fn full_tapes_move_on_and_a_full_library_fails_per_key() {
    let dir = tempfile::tempdir().unwrap();
    let config = TieredConfig {
        tapes: 2,
        tape_capacity_bytes: 10,
        ..small_library()
    };
    let b = open(dir.path(), config);
    for k in ["a", "b", "c"] {
        put(&b, k, b"123456").await;
    }
    let out = b.migrate(&[key("a"), key("b"), key("c")]).await.unwrap();
    let volumes: Vec<_> = b
        .placement(&[key("a"), key("b")])
        .await
        .unwrap()
        .into_iter()
        .map(|(_, p)| match p.unwrap() {
            Placement::Tape { volume, .. } => volume,
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(volumes, ["T00000", "T00001"]);
    assert!(matches!(out[2].1, Err(Error::InsufficientStorage(_))));
    assert_eq!(state(&b, "c").await, HsmState::Resident);
}

#[tokio::test]
async fn recalls_mount_each_tape_once_and_account_simulated_time() {
    let dir = tempfile::tempdir().unwrap();
    let config = TieredConfig {
        tapes: 2,
        tape_capacity_bytes: 30,
        drives: 1,
        mount_secs: 10.0,
        unmount_secs: 5.0,
        locate_bytes_per_sec: 1.0,
        read_bytes_per_sec: 10.0,
        write_bytes_per_sec: 10.0,
        ..Default::default()
    };
    let b = open(dir.path(), config);
    for k in ["a", "b", "c", "d"] {
        put(&b, k, &[7u8; 10]).await;
    }
    // a, b, c fill tape 0 (positions 0, 10, 20); d goes to tape 1.
    b.migrate(&[key("a"), key("b"), key("c"), key("d")])
        .await
        .unwrap();
    let before = b.tape_stats();
    assert_eq!(before.mounts, 2);
    assert_eq!(b.mounted_volumes().await, ["T00001"]);
    // Tape order: tape 0 at 20, then 0, then tape 1.
    b.recall(&[key("c"), key("a"), key("d")]).await.unwrap();
    let after = b.tape_stats();
    assert_eq!(after.mounts - before.mounts, 2, "one mount per tape");
    let reads: Vec<_> = after
        .reads
        .iter()
        .map(|r| (r.volume.as_str(), r.position))
        .collect();
    assert_eq!(reads, [("T00000", 20), ("T00000", 0), ("T00001", 0)]);
    // Unmount T00001 (rewind 10 + 5), mount 10, locate 20, read 1, locate 30 back to 0, read 1,
    // unmount T00000 (rewind 10 + 5), mount 10, read 1.
    let spent = after.busy_secs - before.busy_secs;
    assert!((spent - 103.0).abs() < 1e-9, "{spent}");
}

#[tokio::test]
async fn state_and_placement_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    {
        let b = open(dir.path(), small_library());
        for (k, data) in files() {
            put(&b, k, &data).await;
        }
        b.migrate(&[key("a"), key("dir/big")]).await.unwrap();
        b.premigrate(&[key("c")]).await.unwrap();
        b.recall(&[key("a")]).await.unwrap();
    }
    let b = open(dir.path(), small_library());
    assert_eq!(state(&b, "a").await, HsmState::Premigrated);
    assert_eq!(state(&b, "dir/big").await, HsmState::Migrated);
    assert_eq!(state(&b, "c").await, HsmState::Premigrated);
    let big_at = b.placement(&[key("dir/big")]).await.unwrap();
    assert!(
        matches!(big_at[0].1, Ok(Placement::Tape { position: 16, .. })),
        "{big_at:?}"
    );
    // New files append after the existing ones, never over them.
    put(&b, "d", b"later").await;
    b.migrate(&[key("d")]).await.unwrap();
    b.recall(&[key("dir/big"), key("d")]).await.unwrap();
    for (k, data) in files() {
        assert!(read(&b, k).await == data, "{k} differs");
    }
    assert_eq!(read(&b, "d").await, b"later");
}

#[tokio::test]
async fn bad_config_is_refused_naming_the_field() {
    let dir = tempfile::tempdir().unwrap();
    let err = archive_tiered::TieredBackend::open(
        dir.path().to_path_buf(),
        TieredConfig {
            drives: 0,
            ..Default::default()
        },
    )
    .unwrap_err();
    assert!(err.to_string().contains("tiered.drives"), "{err}");
}

/// Migrations, recalls, puts, reads and deletes at once on one drive: no deadlock (drive before key
/// lock everywhere), no lost or mixed content.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_operations_neither_deadlock_nor_mix_content() {
    use std::sync::Arc;
    let dir = tempfile::tempdir().unwrap();
    let b = Arc::new(open(
        dir.path(),
        TieredConfig {
            drives: 1,
            ..small_library()
        },
    ));
    let name = |i: usize| format!("k{i:02}");
    let data = |i: usize| vec![i as u8; 1000 + i];
    for i in 0..40 {
        put(&b, &name(i), &data(i)).await;
    }
    let keys: Vec<_> = (0..40).map(|i| key(&name(i))).collect();
    b.migrate(&keys[..20]).await.unwrap();
    let mut tasks = Vec::new();
    {
        let (b, keys) = (Arc::clone(&b), keys.clone());
        tasks.push(tokio::spawn(async move {
            b.migrate(&keys[20..]).await.unwrap().len()
        }));
    }
    {
        let (b, keys) = (Arc::clone(&b), keys.clone());
        tasks.push(tokio::spawn(async move {
            b.recall(&keys[..20]).await.unwrap().len()
        }));
    }
    {
        let (b, keys) = (Arc::clone(&b), keys.clone());
        tasks.push(tokio::spawn(async move {
            b.premigrate(&keys[10..30]).await.unwrap().len()
        }));
    }
    {
        let b = Arc::clone(&b);
        tasks.push(tokio::spawn(async move {
            for i in 40..50 {
                put(&b, &format!("k{i:02}"), &[i as u8; 10]).await;
                b.delete(&key(&format!("k{i:02}"))).await.unwrap();
                put(&b, &format!("k{i:02}"), &[i as u8; 10]).await;
            }
            10
        }));
    }
    let all = futures::future::join_all(tasks);
    let done = tokio::time::timeout(std::time::Duration::from_secs(60), all)
        .await
        .expect("deadlock: operations did not finish");
    for d in done {
        d.unwrap();
    }
    b.recall(&keys).await.unwrap();
    for i in 0..40 {
        assert!(read(&b, &name(i)).await == data(i), "{} differs", name(i));
    }
    assert_eq!(b.list("").await.unwrap().len(), 50);
}

#[tokio::test]
async fn a_cold_tier_visible_in_the_prefix_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let prefix = dir.path().join("archive");
    let config = |cold: &str| TieredConfig {
        cold_dir: Some(prefix.join(cold)),
        ..small_library()
    };
    let err = archive_tiered::TieredBackend::open(prefix.clone(), config("cold")).unwrap_err();
    assert!(err.to_string().contains("tiered.cold_dir"), "{err}");
    archive_tiered::TieredBackend::open(prefix.clone(), config(".archiveinterface-slow")).unwrap();
    archive_tiered::TieredBackend::open(
        prefix.clone(),
        TieredConfig {
            cold_dir: Some(dir.path().join("elsewhere")),
            ..small_library()
        },
    )
    .unwrap();
}

/// `stage` validates and accepts, but reads nothing from tape: recalls go through the server's recall
/// scheduler, never around it.
#[tokio::test]
async fn stage_accepts_without_reading_tape() {
    let dir = tempfile::tempdir().unwrap();
    let b = open(dir.path(), small_library());
    put(&b, "1", b"one").await;
    for (_, r) in b.migrate(&[key("1")]).await.unwrap() {
        r.unwrap();
    }
    let reads = b.tape_stats().reads.len();
    b.stage(&key("1")).await.unwrap();
    assert!(matches!(
        b.stage(&key("missing")).await,
        Err(Error::NotFound { .. })
    ));
    // Time for a recall started in the background, had there been one, to finish.
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    assert_eq!(b.tape_stats().reads.len(), reads, "stage read from tape");
    assert_eq!(b.status(&key("1")).await.unwrap().state, HsmState::Migrated);
}
