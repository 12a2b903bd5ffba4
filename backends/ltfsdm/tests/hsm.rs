//! The HSM operations of the LTFS DM backend against the `ltfsdm` double: states, bytes per level and
//! placement from `info files`; a migrated file refused by `get` until recalled (the double leaves
//! zeros in its place); partial failures, skipped files, an unreachable server and a command that
//! runs out of time answered per key; batches of `batch_files`; names ltfsdm cannot take.

mod common;

use archive_core::conformance::body_of;
use archive_core::{ArchiveBackend, Error, HsmState, Key, Placement, PutOptions, ReadRange};
use common::{setup, Setup};
use futures::TryStreamExt;

fn key(s: &str) -> Key {
    Key::new(s).unwrap()
}

async fn put(s: &Setup, k: &Key, data: &[u8]) {
    s.backend
        .put(k, body_of(vec![data.to_vec()]), PutOptions::default())
        .await
        .unwrap();
}

async fn read(s: &Setup, k: &Key, range: ReadRange) -> Vec<u8> {
    let got = s.backend.get(k, range).await.unwrap();
    let chunks: Vec<bytes::Bytes> = got.stream.try_collect().await.unwrap();
    chunks.concat()
}

fn ok_all(outcomes: Vec<(Key, archive_core::Result<()>)>) {
    for (k, r) in outcomes {
        r.unwrap_or_else(|e| panic!("{k}: {e}"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrate_refuses_reads_until_recalled_then_serves_the_exact_bytes() {
    let s = tokio::task::spawn_blocking(|| setup(|_| {})).await.unwrap();
    let k = key("dir with space/it's \"quoted\" ünïcødé ✓.dat");
    let data: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
    put(&s, &k, &data).await;
    let st = s.backend.status(&k).await.unwrap();
    assert_eq!(
        (st.state, st.bytes_per_level.clone()),
        (HsmState::Resident, vec![100_000])
    );
    assert_eq!(st.media(), "disk");

    ok_all(s.backend.migrate(std::slice::from_ref(&k)).await.unwrap());
    let st = s.backend.status(&k).await.unwrap();
    assert_eq!(st.state, HsmState::Migrated);
    assert_eq!(st.bytes_per_level, vec![0, 100_000]);
    assert_eq!((st.media(), st.size), ("tape", 100_000));
    // The double left zeros in place: only a recall brings the bytes back.
    let on_disk = std::fs::read(s.prefix.join(k.as_str())).unwrap();
    assert!(on_disk.iter().all(|b| *b == 0) && on_disk.len() == 100_000);
    assert!(matches!(
        s.backend.get(&k, ReadRange::All).await,
        Err(Error::NotResident { .. })
    ));
    assert_eq!(
        s.backend.placement(std::slice::from_ref(&k)).await.unwrap()[0]
            .1
            .as_ref()
            .unwrap(),
        &Placement::Tape {
            volume: "D01301L5".into(),
            position: 0,
            resident_copy: false
        }
    );
    // Listings still show it, with its size.
    let listed = s.backend.list("dir with space/").await.unwrap();
    assert_eq!((listed.len(), listed[0].size), (1, 100_000));

    ok_all(s.backend.recall(std::slice::from_ref(&k)).await.unwrap());
    let st = s.backend.status(&k).await.unwrap();
    assert_eq!((st.state, st.media()), (HsmState::Premigrated, "disk"));
    assert_eq!(st.bytes_per_level, vec![100_000, 100_000]);
    assert_eq!(read(&s, &k, ReadRange::All).await, data);
    let range = ReadRange::From {
        start: 10,
        end: Some(20),
    };
    assert_eq!(read(&s, &k, range).await, data[10..20]);

    // The commands as LTFS DM documents them, each with a file list that is gone afterwards.
    let calls = s.calls();
    let argv: Vec<String> = calls
        .iter()
        .map(|(a, _)| a[..a.len() - 1].join(" "))
        .collect();
    assert!(
        argv.contains(&"migrate -P pool1 -f".to_string()),
        "{argv:?}"
    );
    assert!(argv.contains(&"recall -f".to_string()), "{argv:?}");
    assert!(argv.contains(&"info files -f".to_string()), "{argv:?}");
    let migrate = calls.iter().find(|(a, _)| a[0] == "migrate").unwrap();
    assert_eq!(
        migrate.1,
        [s.backend.prefix().join(k.as_str()).to_str().unwrap()]
    );
    assert_eq!(std::fs::read_dir(&s.lists).unwrap().count(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn premigrate_keeps_the_file_readable_and_recall_to_resident_drops_the_copies() {
    let s = tokio::task::spawn_blocking(|| setup(|c| c.recall_to_resident = true))
        .await
        .unwrap();
    let k = key("p");
    put(&s, &k, b"premigrated bytes").await;
    ok_all(
        s.backend
            .premigrate(std::slice::from_ref(&k))
            .await
            .unwrap(),
    );
    let st = s.backend.status(&k).await.unwrap();
    assert_eq!(
        (st.state, st.bytes_per_level.clone()),
        (HsmState::Premigrated, vec![17, 17])
    );
    assert_eq!(read(&s, &k, ReadRange::All).await, b"premigrated bytes");
    ok_all(s.backend.migrate(std::slice::from_ref(&k)).await.unwrap());
    ok_all(s.backend.recall(std::slice::from_ref(&k)).await.unwrap());
    assert_eq!(
        s.backend.status(&k).await.unwrap().state,
        HsmState::Resident
    );
    assert_eq!(read(&s, &k, ReadRange::All).await, b"premigrated bytes");
    let calls = s.calls();
    assert!(calls
        .iter()
        .any(|(a, _)| a.starts_with(&["migrate".into(), "-p".into()])));
    assert!(calls
        .iter()
        .any(|(a, _)| a.starts_with(&["recall".into(), "-r".into()])));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partial_failure_is_answered_per_file_and_a_missing_file_is_not_dropped() {
    let s = tokio::task::spawn_blocking(|| setup(|_| {})).await.unwrap();
    s.double_config(serde_json::json!({"fail": ["bad one"]}));
    let keys = [key("good 1"), key("bad one"), key("missing"), key("good 2")];
    for k in [&keys[0], &keys[1], &keys[3]] {
        put(&s, k, b"data").await;
    }
    let out = s.backend.migrate(&keys).await.unwrap();
    assert_eq!(out.len(), 4);
    assert!(out[0].1.is_ok() && out[3].1.is_ok(), "{out:?}");
    let bad = out[1].1.as_ref().unwrap_err().to_string();
    assert!(
        bad.contains("did not migrate") && bad.contains("resident") && bad.contains("exit code 1"),
        "{bad}"
    );
    assert!(matches!(out[2].1, Err(Error::NotFound { .. })), "{out:?}");
    let states = s.backend.status_many(&keys).await;
    assert_eq!(states[0].1.as_ref().unwrap().state, HsmState::Migrated);
    assert_eq!(states[1].1.as_ref().unwrap().state, HsmState::Resident);
    assert!(matches!(states[2].1, Err(Error::NotFound { .. })));

    // Every file failing: exit 2, each answered.
    let out = s.backend.migrate(&keys[1..3]).await.unwrap();
    assert!(out.iter().all(|(_, r)| r.is_err()), "{out:?}");
    assert_eq!(
        s.calls().iter().filter(|(a, _)| a[0] == "migrate").count(),
        2
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_server_fails_every_file_as_unavailable_and_nothing_changes() {
    let s = tokio::task::spawn_blocking(|| setup(|_| {})).await.unwrap();
    let k = key("f");
    put(&s, &k, b"data").await;
    s.double_config(serde_json::json!({"unreachable": true}));
    for out in [
        s.backend.migrate(std::slice::from_ref(&k)).await.unwrap(),
        s.backend.recall(std::slice::from_ref(&k)).await.unwrap(),
    ] {
        match &out[0].1 {
            Err(Error::Unavailable {
                message,
                retry_after,
            }) => {
                assert!(message.contains("Unable to connect"), "{message}");
                assert!(retry_after.is_some());
            }
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(
        s.backend.status(&k).await.unwrap().state,
        HsmState::Resident
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_command_that_runs_out_of_time_is_stopped_and_its_files_checked() {
    let s = tokio::task::spawn_blocking(|| setup(|c| c.timeout_secs = 1))
        .await
        .unwrap();
    let k = key("slow");
    put(&s, &k, b"data").await;
    s.double_config(serde_json::json!({"slow_secs": 5}));
    let started = std::time::Instant::now();
    let out = s.backend.migrate(std::slice::from_ref(&k)).await.unwrap();
    assert!(started.elapsed() < std::time::Duration::from_secs(4));
    match &out[0].1 {
        Err(Error::Unavailable { message, .. }) => {
            assert!(message.contains("did not finish within 1 s"), "{message}")
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        s.backend.status(&k).await.unwrap().state,
        HsmState::Resident
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operations_and_status_go_in_batches_of_batch_files() {
    let s = tokio::task::spawn_blocking(|| setup(|c| c.batch_files = 3))
        .await
        .unwrap();
    let keys: Vec<Key> = (0..7).map(|i| key(&format!("f{i}"))).collect();
    for k in &keys {
        put(&s, k, b"x").await;
    }
    ok_all(s.backend.migrate(&keys).await.unwrap());
    let before = s.calls().len();
    let states = s.backend.status_many(&keys).await;
    assert!(states
        .iter()
        .all(|(_, st)| st.as_ref().unwrap().state == HsmState::Migrated));
    let calls = s.calls();
    let sizes = |op: &str, calls: &[(Vec<String>, Vec<String>)]| -> Vec<usize> {
        calls
            .iter()
            .filter(|(a, _)| a[0] == op)
            .map(|(_, f)| f.len())
            .collect()
    };
    assert_eq!(sizes("migrate", &calls), [3, 3, 1]);
    assert_eq!(sizes("info", &calls[before..]), [3, 3, 1]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_name_with_a_newline_is_refused_clearly() {
    let s = tokio::task::spawn_blocking(|| setup(|_| {})).await.unwrap();
    let k = key("line\nbreak");
    let put = s
        .backend
        .put(&k, body_of(vec![b"x".to_vec()]), PutOptions::default())
        .await;
    match put {
        Err(Error::InvalidArgument(m)) => assert!(m.contains("newline"), "{m}"),
        other => panic!("{other:?}"),
    }
    let out = s.backend.migrate(&[k.clone(), key("other")]).await.unwrap();
    assert!(matches!(&out[0].1, Err(Error::InvalidArgument(m)) if m.contains("one path per line")));
    assert!(matches!(out[1].1, Err(Error::NotFound { .. })), "{out:?}");
}

#[test]
fn a_binary_that_does_not_run_stops_the_open_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = common::config_for(dir.path(), dir.path());
    config.binary = "/nonexistent/ltfsdm".into();
    let e = archive_ltfsdm::LtfsdmBackend::open(dir.path().join("p"), config)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("/nonexistent/ltfsdm") && e.contains("does not run"),
        "{e}"
    );
}
