//! A catalog database that is down or stalls gives `Unavailable` (503) naming its host, quickly, and
//! the pool recovers by itself when it is back; start-up with an unreachable database fails naming it.

mod common;

use archive_core::{ArchiveBackend, Error, HsmState};
use archive_sideband::SidebandBackend;
use archive_sideband_testkit::proxy::{server_addr, Link, Proxy};
use common::site_with;
use std::time::{Duration, Instant};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_database_going_away_gives_unavailable_naming_it_and_recovery_follows() {
    let proxy = Proxy::start(server_addr(
        &archive_sideband_testkit::database::server_url(),
    ))
    .await;
    let s = site_with(|c, _| {
        c.url = proxy.url(&c.url);
        c.query_timeout_secs = 1;
    })
    .await;
    let host = format!("127.0.0.1:{}", proxy.addr.port());
    assert_eq!(s.backend.database_host(), host);
    let k = s.put("k", b"data").await;
    s.sam_command("archive", &[], &[&k]).await;
    assert_eq!(
        s.backend.status(&k).await.unwrap().state,
        HsmState::Premigrated
    );

    for fault in [Link::Cut, Link::Stalled] {
        proxy.set(fault);
        let started = Instant::now();
        for outcome in [
            s.backend.status(&k).await.map(drop),
            s.backend.get(&k, Default::default()).await.map(drop),
            s.backend
                .status_many(std::slice::from_ref(&k))
                .await
                .pop()
                .unwrap()
                .1
                .map(drop),
        ] {
            match outcome {
                Err(Error::Unavailable {
                    message,
                    retry_after,
                }) => {
                    assert!(message.contains(&host), "{fault:?}: {message}");
                    assert!(retry_after.is_some());
                }
                other => panic!("{fault:?}: expected Unavailable, got {other:?}"),
            }
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "{fault:?}: {:?}",
            started.elapsed()
        );
        proxy.set(Link::Up);
        // Back: the pool replaces the broken connections by itself.
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match s.backend.status(&k).await {
                Ok(st) => {
                    assert_eq!(st.state, HsmState::Premigrated);
                    break;
                }
                Err(e) if Instant::now() < deadline => {
                    let _ = e;
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(e) => panic!("{fault:?}: no recovery: {e}"),
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn opening_with_an_unreachable_database_fails_naming_it() {
    // A port nothing listens on: taken, then released.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("archive")).unwrap();
    let config = archive_sideband::SidebandConfig {
        url: format!("mysql://root@127.0.0.1:{port}/samfs1"),
        sam_qfs_prefix: "/archive".into(),
        query_timeout_secs: 2,
        ..Default::default()
    };
    let started = Instant::now();
    let err = SidebandBackend::open(dir.path().join("archive"), config)
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains(&format!("127.0.0.1:{port}")), "{err}");
    assert!(started.elapsed() < Duration::from_secs(10));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn opening_a_database_without_the_sideband_tables_fails_naming_it() {
    let catalog = archive_sideband_testkit::database::TestCatalog::create().await;
    sqlx::raw_sql("DROP TABLE sam_archive")
        .execute(&catalog.pool)
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("archive")).unwrap();
    let config = archive_sideband::SidebandConfig {
        url: catalog.url.clone(),
        sam_qfs_prefix: "/archive".into(),
        ..Default::default()
    };
    let host = config.database_host();
    let err = SidebandBackend::open(dir.path().join("archive"), config)
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("sam_archive") && err.contains(&host), "{err}");
}
