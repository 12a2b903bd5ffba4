//! Migrate, premigrate and recall through the command double (which changes the catalog as Oracle
//! HSM would), each confirmed by the catalog before it is reported done.

mod common;

use archive_core::{ArchiveBackend, Error, HsmState};
use common::{site, site_with};
use std::time::{Duration, Instant};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrate_then_recall_in_the_order_given() {
    let s = site().await;
    let a = s.put("1/a", b"first file").await;
    let b = s.put("2/b", b"second file").await;
    let c = s.put("c", b"third file!").await;
    let migrated = s
        .backend
        .migrate(&[a.clone(), b.clone(), c.clone()])
        .await
        .unwrap();
    assert!(migrated.iter().all(|(_, r)| r.is_ok()), "{migrated:?}");
    for k in [&a, &b, &c] {
        assert_eq!(s.backend.status(k).await.unwrap().state, HsmState::Migrated);
        // Released: the blocks are gone from the mount (a hole of the same size).
        let on_disk = std::fs::read(s.path(k)).unwrap();
        assert!(
            on_disk.iter().all(|&byte| byte == 0),
            "{k} still holds its data"
        );
        assert!(matches!(s.read(k).await, Err(Error::NotResident { .. })));
    }
    let commands: Vec<String> = s.double.invocations().into_iter().map(|(c, _)| c).collect();
    assert_eq!(
        commands,
        ["archive", "release"],
        "one command each for the whole batch"
    );

    let recalled = s
        .backend
        .recall(&[c.clone(), a.clone(), b.clone()])
        .await
        .unwrap();
    assert!(recalled.iter().all(|(_, r)| r.is_ok()), "{recalled:?}");
    assert_eq!(s.stages(), vec![vec!["c", "1/a", "2/b"]]);
    for (k, data) in [
        (&a, &b"first file"[..]),
        (&b, b"second file"),
        (&c, b"third file!"),
    ] {
        assert_eq!(
            s.backend.status(k).await.unwrap().state,
            HsmState::Premigrated
        );
        assert_eq!(s.read(k).await.unwrap(), data);
    }

    // Recalling resident files runs no command.
    let again = s.backend.recall(std::slice::from_ref(&a)).await.unwrap();
    assert!(again[0].1.is_ok());
    assert_eq!(s.stages().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn premigrate_keeps_the_disk_copy_and_migrate_then_only_releases() {
    let s = site().await;
    let k = s.put("p", b"premigrate me").await;
    let out = s
        .backend
        .premigrate(std::slice::from_ref(&k))
        .await
        .unwrap();
    assert!(out[0].1.is_ok(), "{out:?}");
    let st = s.backend.status(&k).await.unwrap();
    assert_eq!(
        (st.state, st.bytes_per_level),
        (HsmState::Premigrated, vec![13, 13])
    );
    assert_eq!(s.read(&k).await.unwrap(), b"premigrate me");

    let out = s.backend.migrate(std::slice::from_ref(&k)).await.unwrap();
    assert!(out[0].1.is_ok(), "{out:?}");
    assert_eq!(
        s.backend.status(&k).await.unwrap().state,
        HsmState::Migrated
    );
    let commands: Vec<String> = s.double.invocations().into_iter().map(|(c, _)| c).collect();
    assert_eq!(commands, ["archive", "release"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_stage_names_its_file_and_the_others_are_staged() {
    let s = site().await;
    let good = s.put("good", b"has a copy").await;
    let bad = s.put("bad", b"copy lost").await;
    let out = s
        .backend
        .migrate(&[good.clone(), bad.clone()])
        .await
        .unwrap();
    assert!(out.iter().all(|(_, r)| r.is_ok()));
    let inode = s.sam.entry_of(&s.path(&bad)).await.unwrap().unwrap();
    sqlx::query("DELETE FROM sam_archive WHERE ino = ? AND gen = ?")
        .bind(inode.ino)
        .bind(inode.gen)
        .execute(&s.catalog.pool)
        .await
        .unwrap();

    let out = s
        .backend
        .recall(&[bad.clone(), good.clone()])
        .await
        .unwrap();
    assert!(out[1].1.is_ok(), "{out:?}");
    let err = out[0].1.as_ref().unwrap_err().to_string();
    assert!(
        err.contains("no archive copy") && err.contains("/bad"),
        "{err}"
    );
    // Exit status 1 does not say which file failed: the files were asked for once more, one each.
    assert_eq!(
        s.stages(),
        vec![vec!["bad", "good"], vec!["bad"], vec!["good"]]
    );
    assert_eq!(s.read(&good).await.unwrap(), b"has a copy");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recall_waits_until_queued_stages_are_online() {
    // The stage command returns once the stages are queued; they complete 400 ms later.
    let s =
        site_with(|c, double| c.stage_command = double.argv("stage", &["--stage-delay-ms", "400"]))
            .await;
    let k = s.put("slow", b"staged later").await;
    s.backend.migrate(std::slice::from_ref(&k)).await.unwrap();
    let started = Instant::now();
    let out = s.backend.recall(std::slice::from_ref(&k)).await.unwrap();
    assert!(out[0].1.is_ok(), "{out:?}");
    assert!(
        started.elapsed() >= Duration::from_millis(400),
        "reported before the file was online"
    );
    assert_eq!(s.read(&k).await.unwrap(), b"staged later");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stage_that_never_brings_the_file_online_fails_after_the_wait() {
    let s = site_with(|c, _| {
        c.stage_command = vec!["true".into()];
        c.wait_timeout_secs = 1;
    })
    .await;
    let k = s.put("stuck", b"never staged").await;
    s.backend.migrate(std::slice::from_ref(&k)).await.unwrap();
    let out = s.backend.recall(std::slice::from_ref(&k)).await.unwrap();
    let err = out[0].1.as_ref().unwrap_err().to_string();
    assert!(
        err.contains("not online after the stage command within 1 s"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn command_usage_errors_fail_the_batch_with_the_commands_message() {
    let s = site_with(|c, _| {
        c.archive_command = vec![
            "sh".into(),
            "-c".into(),
            "echo 'archive: bad option' >&2; exit 2".into(),
            "archive".into(),
        ]
    })
    .await;
    let k = s.put("u", b"x").await;
    let out = s
        .backend
        .premigrate(std::slice::from_ref(&k))
        .await
        .unwrap();
    let err = out[0].1.as_ref().unwrap_err().to_string();
    assert!(
        err.contains("usage error") && err.contains("archive: bad option"),
        "{err}"
    );
    assert_eq!(
        s.backend.status(&k).await.unwrap().state,
        HsmState::Resident
    );
}
