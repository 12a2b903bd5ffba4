//! The cloud tier against a real S3 server on loopback (moto, started by `scripts/test.sh`; see
//! `common::s3_endpoint` for running these alone): verified and idempotent copies, multipart, archive
//! and its guarded release, read-through with ranges, restore, delete propagation, merged listings
//! with paging, the store down, and a crash between the remote copy and the local release.

mod common;

use archive_cloud::remote;
use archive_cloud::store::RemoteStore;
use archive_cloud::{CloudBackend, CloudConfig, PolicyConfig, StoreConfig};
use archive_core::{ArchiveBackend, Error, HsmState, PutOptions, ReadRange};
use common::*;
use std::sync::atomic::Ordering;
use std::time::{Duration, SystemTime};

fn counters(backend: &CloudBackend) -> &archive_cloud::metrics::StoreCounters {
    backend.metrics().store("s3")
}

async fn put(backend: &dyn ArchiveBackend, k: &str, data: &[u8]) {
    backend
        .put(&key(k), body(data), PutOptions::default())
        .await
        .expect("put");
}

fn md5_hex(data: &[u8]) -> String {
    use md5::{Digest, Md5};
    Md5::digest(data)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_copy_is_verified_and_not_repeated() {
    let bucket = new_bucket("copy");
    let tier = Tier::new(s3_store(&bucket), vec![everything("s3")]).await;
    let b = tier.backend.as_ref();
    let data = pattern(100_000, 1);
    put(b, "dir/one", &data).await;
    assert_eq!(
        b.status(&key("dir/one")).await.unwrap().state,
        HsmState::Resident
    );

    let outcomes = b.premigrate(&[key("dir/one")]).await.unwrap();
    assert!(outcomes[0].1.is_ok(), "{outcomes:?}");
    let store = RemoteStore::open("s3", &s3_store(&bucket)).unwrap();
    let object = remote::head(&store, "dir/one")
        .await
        .unwrap()
        .expect("remote copy");
    assert_eq!(object.size, data.len() as u64);
    assert_eq!(object.e_tag.as_deref(), Some(md5_hex(&data).as_str()));
    let status = b.status(&key("dir/one")).await.unwrap();
    assert_eq!(status.state, HsmState::Premigrated);
    assert_eq!(status.bytes_per_level, vec![data.len() as u64; 2]);

    // Again: the HEAD finds the copy current; nothing is uploaded.
    assert!(b.premigrate(&[key("dir/one")]).await.unwrap()[0].1.is_ok());
    assert_eq!(counters(b).objects_copied.load(Ordering::Relaxed), 1);
    assert_eq!(counters(b).copies_skipped.load(Ordering::Relaxed), 1);
    assert_eq!(
        counters(b).bytes_copied.load(Ordering::Relaxed),
        data.len() as u64
    );
    // The local copy stays.
    assert_eq!(read(b, &key("dir/one"), ReadRange::All).await, data);
    assert!(tier.local_path("dir/one").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_file_goes_in_parts_and_reads_through_by_range() {
    let bucket = new_bucket("multipart");
    let tier = Tier::new(s3_store(&bucket), vec![everything("s3")]).await;
    let b = tier.backend.as_ref();
    // 5 MiB parts: three full ones and a short last one.
    let data = pattern(16 * 1024 * 1024 + 123, 2);
    put(b, "big", &data).await;
    let outcomes = b.migrate(&[key("big")]).await.unwrap();
    assert!(outcomes[0].1.is_ok(), "{outcomes:?}");
    assert!(
        !tier.local_path("big").exists(),
        "the local copy is released"
    );
    let store = RemoteStore::open("s3", &s3_store(&bucket)).unwrap();
    let object = remote::head(&store, "big").await.unwrap().unwrap();
    assert!(
        object.e_tag.as_deref().unwrap().ends_with("-4"),
        "{object:?}"
    );

    let status = b.status(&key("big")).await.unwrap();
    assert_eq!(status.state, HsmState::Migrated);
    assert_eq!(status.size, data.len() as u64);
    assert_eq!(status.location, format!("s3://{bucket}/archive/big"));
    let range = ReadRange::From {
        start: 5 * 1024 * 1024 - 10,
        end: Some(5 * 1024 * 1024 + 10),
    };
    let got = b.get(&key("big"), range).await.unwrap();
    assert_eq!(got.status.state, HsmState::Migrated);
    assert_eq!(
        read(b, &key("big"), range).await,
        data[5 * 1024 * 1024 - 10..5 * 1024 * 1024 + 10]
    );
    assert_eq!(
        read(b, &key("big"), ReadRange::Last(7)).await,
        data[data.len() - 7..]
    );
    assert_eq!(read(b, &key("big"), ReadRange::All).await, data);
    assert!(counters(b).read_through_hits.load(Ordering::Relaxed) >= 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_archived_file_is_restored_with_its_time_and_stays_copied() {
    let bucket = new_bucket("restore");
    let tier = Tier::new(s3_store(&bucket), vec![everything("s3")]).await;
    let b = tier.backend.as_ref();
    let mtime = SystemTime::UNIX_EPOCH + Duration::from_secs(1_600_000_000);
    let data = pattern(4096, 3);
    b.put(
        &key("f"),
        body(&data),
        PutOptions {
            mtime: Some(mtime),
            ..PutOptions::default()
        },
    )
    .await
    .unwrap();
    assert!(b.migrate(&[key("f")]).await.unwrap()[0].1.is_ok());
    assert_eq!(b.status(&key("f")).await.unwrap().mtime, mtime);
    // Archived files are write-once like local ones.
    let again = b.put(&key("f"), body(b"x"), PutOptions::default()).await;
    assert!(
        matches!(again, Err(Error::AlreadyExists { .. })),
        "{again:?}"
    );

    assert!(b.recall(&[key("f")]).await.unwrap()[0].1.is_ok());
    assert!(tier.local_path("f").exists());
    let status = b.status(&key("f")).await.unwrap();
    assert_eq!(status.mtime, mtime);
    assert_eq!(
        status.state,
        HsmState::Premigrated,
        "the restored file is still copied"
    );
    assert_eq!(counters(b).objects_restored.load(Ordering::Relaxed), 1);
    assert_eq!(read(b, &key("f"), ReadRange::All).await, data);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restore_on_read_asks_for_a_recall_instead_of_streaming() {
    let bucket = new_bucket("onread");
    let policy = PolicyConfig {
        restore_on_read: true,
        ..everything("s3")
    };
    let tier = Tier::new(s3_store(&bucket), vec![policy]).await;
    let b = tier.backend.as_ref();
    put(b, "f", b"hello").await;
    assert!(b.migrate(&[key("f")]).await.unwrap()[0].1.is_ok());
    let got = b.get(&key("f"), ReadRange::All).await;
    assert!(matches!(got, Err(Error::NotResident { .. })), "{got:?}");
    assert_eq!(counters(b).read_through_hits.load(Ordering::Relaxed), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deletes_propagate_only_when_the_policy_says_so() {
    let bucket = new_bucket("delete");
    let keep = PolicyConfig {
        key_prefix: Some("keep/".into()),
        propagate_delete: false,
        ..everything("s3")
    };
    let tier = Tier::new(s3_store(&bucket), vec![keep, everything("s3")]).await;
    let b = tier.backend.as_ref();
    let store = RemoteStore::open("s3", &s3_store(&bucket)).unwrap();
    put(b, "keep/a", b"kept remotely").await;
    put(b, "gone/a", b"deleted everywhere").await;
    for k in ["keep/a", "gone/a"] {
        assert!(b.premigrate(&[key(k)]).await.unwrap()[0].1.is_ok());
    }
    b.delete(&key("gone/a")).await.unwrap();
    assert!(remote::head(&store, "gone/a").await.unwrap().is_none());
    assert!(matches!(
        b.status(&key("gone/a")).await,
        Err(Error::NotFound { .. })
    ));

    b.delete(&key("keep/a")).await.unwrap();
    assert!(!tier.local_path("keep/a").exists());
    assert!(
        remote::head(&store, "keep/a").await.unwrap().is_some(),
        "the remote copy stays"
    );
    // It is served from the store from now on, and deleting it again deletes it there.
    assert_eq!(
        b.status(&key("keep/a")).await.unwrap().state,
        HsmState::Migrated
    );
    b.delete(&key("keep/a")).await.unwrap();
    assert!(remote::head(&store, "keep/a").await.unwrap().is_none());
    assert!(matches!(
        b.delete(&key("keep/a")).await,
        Err(Error::NotFound { .. })
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listings_merge_local_and_remote_entries_page_by_page() {
    let bucket = new_bucket("listing");
    let tier = Tier::new(s3_store(&bucket), vec![everything("s3")]).await;
    let b = tier.backend.as_ref();
    for k in ["c/a1", "c/a2", "c/a3", "c/a4", "c/a5", "d/other"] {
        put(b, k, k.as_bytes()).await;
    }
    // a2 and a4 only remote, a3 in both places, the rest only local.
    assert!(b
        .migrate(&[key("c/a2"), key("c/a4")])
        .await
        .unwrap()
        .iter()
        .all(|o| o.1.is_ok()));
    assert!(b.premigrate(&[key("c/a3")]).await.unwrap()[0].1.is_ok());
    assert!(!tier.local_path("c/a2").exists());

    let names = |entries: Vec<archive_core::ListEntry>| -> Vec<String> {
        entries
            .into_iter()
            .map(|e| e.key.as_str().to_string())
            .collect()
    };
    assert_eq!(
        names(b.list("c/").await.unwrap()),
        ["c/a1", "c/a2", "c/a3", "c/a4", "c/a5"]
    );
    let mut pages = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let page = names(b.list_page("c/", after.as_deref(), 2).await.unwrap());
        if page.is_empty() {
            break;
        }
        after = page.last().cloned();
        pages.push(page);
    }
    assert_eq!(
        pages,
        [vec!["c/a1", "c/a2"], vec!["c/a3", "c/a4"], vec!["c/a5"]]
    );
    let entries = b.list("c/a2").await.unwrap();
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0].size, 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_that_is_down_fails_loudly_and_loses_nothing() {
    let bucket = new_bucket("down");
    let tier = Tier::new(s3_store(&bucket), vec![everything("s3")]).await;
    put(tier.backend.as_ref(), "archived", b"remote only").await;
    assert!(tier.backend.migrate(&[key("archived")]).await.unwrap()[0]
        .1
        .is_ok());
    put(tier.backend.as_ref(), "local", b"still here").await;

    // The same prefix with the store's endpoint pointing at a closed port.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let local = archive_posix::PosixBackend::new(tier.dir.path().join("prefix")).unwrap();
    let store = RemoteStore::open(
        "s3",
        &StoreConfig {
            endpoint: format!("http://127.0.0.1:{port}"),
            ..s3_store(&bucket)
        },
    )
    .unwrap();
    let err = store.check_reachable().await.unwrap_err().to_string();
    assert!(
        err.contains("cloud store `s3`") && err.contains(&bucket),
        "{err}"
    );
    let config = CloudConfig {
        stores: [(
            "s3".to_string(),
            StoreConfig {
                endpoint: format!("http://127.0.0.1:{port}"),
                ..s3_store(&bucket)
            },
        )]
        .into(),
        policies: vec![everything("s3")],
        ..CloudConfig::default()
    };
    let opened = CloudBackend::open(std::sync::Arc::new(local), &config, key_space()).await;
    assert!(
        opened.is_err(),
        "start-up must stop on an unreachable store"
    );

    let down = down_backend(&tier, port);
    let unavailable = |r: Result<_, Error>, what: &str| match r {
        Err(Error::Unavailable { message, .. }) => {
            assert!(message.contains("cloud store `s3`"), "{what}: {message}")
        }
        other => panic!("{what}: expected Unavailable naming the store, got {other:?}"),
    };
    unavailable(down.status(&key("archived")).await.map(|_| ()), "status");
    unavailable(
        down.get(&key("archived"), ReadRange::All).await.map(|_| ()),
        "get",
    );
    unavailable(down.list("").await.map(|_| ()), "list");
    let copy = down.premigrate(&[key("local")]).await.unwrap();
    unavailable(copy.into_iter().next().unwrap().1, "copy");
    unavailable(down.delete(&key("local")).await, "delete");
    // The local file is still readable, and nothing was lost anywhere.
    assert_eq!(
        read(&down, &key("local"), ReadRange::All).await,
        b"still here"
    );
    assert_eq!(
        down.status(&key("local")).await.unwrap().state,
        HsmState::Unknown
    );
    assert!(counters(&down).errors.load(Ordering::Relaxed) >= 5);
    // With the store back, the copy is retried and works.
    assert!(tier.backend.premigrate(&[key("local")]).await.unwrap()[0]
        .1
        .is_ok());
    assert_eq!(
        read(tier.backend.as_ref(), &key("archived"), ReadRange::All).await,
        b"remote only"
    );
}

/// A tier on `tier`'s prefix whose store endpoint is a closed port (opened without the start-up check).
fn down_backend(tier: &Tier, port: u16) -> CloudBackend {
    let local = archive_posix::PosixBackend::new(tier.dir.path().join("prefix")).unwrap();
    let config = CloudConfig {
        stores: [(
            "s3".to_string(),
            StoreConfig {
                endpoint: format!("http://127.0.0.1:{port}"),
                ..s3_store("unused")
            },
        )]
        .into(),
        policies: vec![everything("s3")],
        ..CloudConfig::default()
    };
    CloudBackend::open_unchecked(std::sync::Arc::new(local), &config, key_space()).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_archive_interrupted_after_the_copy_only_releases_when_run_again() {
    let bucket = new_bucket("crash");
    let tier = Tier::new(s3_store(&bucket), vec![everything("s3")]).await;
    put(tier.backend.as_ref(), "f", &pattern(10_000, 4)).await;
    // The copy is done, the release is not (what a crash in between leaves).
    assert!(tier.backend.premigrate(&[key("f")]).await.unwrap()[0]
        .1
        .is_ok());
    let restarted = tier.reopen().await;
    assert_eq!(
        restarted.status(&key("f")).await.unwrap().state,
        HsmState::Premigrated
    );
    assert!(restarted.migrate(&[key("f")]).await.unwrap()[0].1.is_ok());
    assert_eq!(
        counters(&restarted).objects_copied.load(Ordering::Relaxed),
        0
    );
    assert_eq!(
        counters(&restarted).copies_skipped.load(Ordering::Relaxed),
        1
    );
    assert_eq!(
        counters(&restarted)
            .objects_released
            .load(Ordering::Relaxed),
        1
    );
    assert!(!tier.local_path("f").exists());
    assert_eq!(
        read(&restarted, &key("f"), ReadRange::All).await,
        pattern(10_000, 4)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_changed_since_its_copy_is_not_released() {
    let bucket = new_bucket("changed");
    let tier = Tier::new(s3_store(&bucket), vec![everything("s3")]).await;
    let b = tier.backend.as_ref();
    put(b, "f", b"first").await;
    assert!(b.premigrate(&[key("f")]).await.unwrap()[0].1.is_ok());
    b.put(
        &key("f"),
        body(b"second version"),
        PutOptions {
            overwrite: true,
            ..PutOptions::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(b.status(&key("f")).await.unwrap().state, HsmState::Resident);
    // The archive copies the new version first, then releases it.
    assert!(b.migrate(&[key("f")]).await.unwrap()[0].1.is_ok());
    assert_eq!(read(b, &key("f"), ReadRange::All).await, b"second version");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn start_up_names_a_missing_bucket() {
    let dir = tempfile::tempdir().unwrap();
    let local = archive_posix::PosixBackend::new(dir.path().join("p")).unwrap();
    let config = CloudConfig {
        stores: [("east".to_string(), s3_store("no-such-bucket-here"))].into(),
        ..CloudConfig::default()
    };
    let err = CloudBackend::open(std::sync::Arc::new(local), &config, key_space())
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("`east`") && err.contains("no-such-bucket-here"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scans_make_copies_and_archives_due_by_age() {
    let bucket = new_bucket("due");
    let copy_only = PolicyConfig {
        key_prefix: Some("copy/".into()),
        copy_after_secs: 60,
        ..everything("s3")
    };
    let archive = PolicyConfig {
        key_prefix: Some("archive/".into()),
        copy_after_secs: 0,
        retain_local_secs: Some(3600),
        exclude_pattern: Some("*.tmp".into()),
        ..everything("s3")
    };
    let tier = Tier::new(s3_store(&bucket), vec![copy_only, archive]).await;
    let b = tier.backend.as_ref();
    for k in ["copy/a", "archive/b", "archive/c.tmp", "other/d"] {
        put(b, k, b"data").await;
    }
    let now = SystemTime::now();
    let due = archive_cloud::due::scan(b, now).await.unwrap();
    assert_eq!(
        due.copy,
        vec![key("archive/b")],
        "copy/a is too young, c.tmp excluded, d unselected"
    );
    assert!(due.archive.is_empty());
    assert_eq!(counters(b).queue_depth.load(Ordering::Relaxed), 1);

    let later = now + Duration::from_secs(61);
    let due = archive_cloud::due::scan(b, later).await.unwrap();
    assert_eq!(due.copy, vec![key("archive/b"), key("copy/a")]);
    for k in &due.copy {
        assert!(b.premigrate(std::slice::from_ref(k)).await.unwrap()[0]
            .1
            .is_ok());
    }
    // Copied: nothing to copy; archive/b is released an hour after its copy was confirmed.
    let due = archive_cloud::due::scan(b, later).await.unwrap();
    assert_eq!(due, archive_cloud::due::DueWork::default());
    let due = archive_cloud::due::scan(b, now + Duration::from_secs(3700))
        .await
        .unwrap();
    assert_eq!(due.archive, vec![key("archive/b")]);
    assert!(due.copy.is_empty());
}
