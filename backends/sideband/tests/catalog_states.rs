//! Status and placement from the sideband catalog on a real MariaDB: online, offline, premigrated and
//! lagging files; an entry whose generation matches no inode; stale copies; 0-based copy numbers; one
//! query per batch.

mod common;

use archive_core::{ArchiveBackend, Error, HsmState, Placement};
use archive_sideband_testkit::proxy::Proxy;
use archive_sideband_testkit::sam::Copy;
use common::{key, site, site_with};
use std::time::{Duration, UNIX_EPOCH};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn online_offline_premigrated_and_lagging_files() {
    let s = site().await;
    let lagging = s.put("39/3039", b"lagging file").await;
    let online = s.put("39/3040", b"online file").await;
    let premigrated = s.put("40/1", b"premigrated file").await;
    let offline = s.put("offline", b"offline file!").await;
    s.sam_command("dbupd", &[], &[&online]).await;
    s.sam_command("archive", &[], &[&premigrated, &offline])
        .await;
    s.sam_command("release", &[], &[&offline]).await;
    let b = &s.backend;

    let st = b.status(&lagging).await.unwrap();
    assert_eq!(
        (st.state, st.bytes_per_level.clone(), st.media()),
        (HsmState::Resident, vec![12], "disk")
    );

    let st = b.status(&online).await.unwrap();
    assert_eq!(
        (st.state, st.bytes_per_level.clone(), st.media()),
        (HsmState::Resident, vec![11], "disk")
    );
    // Times come from the catalog (whole seconds).
    let mtime = std::fs::metadata(s.path(&online))
        .unwrap()
        .modified()
        .unwrap();
    let secs = mtime.duration_since(UNIX_EPOCH).unwrap().as_secs();
    assert_eq!(st.mtime, UNIX_EPOCH + Duration::from_secs(secs));

    let st = b.status(&premigrated).await.unwrap();
    assert_eq!(
        (st.state, st.bytes_per_level.clone(), st.media()),
        (HsmState::Premigrated, vec![16, 16], "disk")
    );

    let st = b.status(&offline).await.unwrap();
    assert_eq!(
        (st.state, st.bytes_per_level.clone(), st.media()),
        (HsmState::Migrated, vec![0, 13], "tape")
    );
    assert_eq!(st.size, 13);

    // An offline file is not read directly: that would block on the kernel's stage.
    let err = b.get(&offline, Default::default()).await.unwrap_err();
    assert!(matches!(err, Error::NotResident { .. }), "{err:?}");
    assert_eq!(s.read(&premigrated).await.unwrap(), b"premigrated file");

    // Batch status answers the same per key.
    let many = b
        .status_many(&[
            lagging.clone(),
            online.clone(),
            premigrated.clone(),
            offline.clone(),
            key("nothing"),
        ])
        .await;
    let states: Vec<_> = many
        .iter()
        .map(|(_, r)| r.as_ref().map(|s| s.state).ok())
        .collect();
    assert_eq!(
        states,
        vec![
            Some(HsmState::Resident),
            Some(HsmState::Resident),
            Some(HsmState::Premigrated),
            Some(HsmState::Migrated),
            None
        ]
    );
    assert!(matches!(many[4].1, Err(Error::NotFound { .. })));

    // Placement: disk for files without copies, the copy's volume otherwise.
    let placed = b
        .placement(&[online.clone(), offline.clone(), premigrated.clone()])
        .await
        .unwrap();
    assert_eq!(placed[0].1.as_ref().unwrap(), &Placement::Disk);
    assert!(
        matches!(placed[1].1.as_ref().unwrap(), Placement::Tape { volume, resident_copy: false, .. } if volume == "li.VSN001")
    );
    assert!(matches!(
        placed[2].1.as_ref().unwrap(),
        Placement::Tape {
            resident_copy: true,
            ..
        }
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_in_neither_place_is_not_found_and_one_only_in_the_catalog_too() {
    let s = site().await;
    let gone = s.put("7", b"deleted").await;
    s.sam_command("archive", &[], &[&gone]).await;
    std::fs::remove_file(s.path(&gone)).unwrap();
    for k in [key("never"), gone] {
        let err = s.backend.status(&k).await.unwrap_err();
        assert!(matches!(err, Error::NotFound { .. }), "{err:?}");
        let err = s.backend.get(&k, Default::default()).await.unwrap_err();
        assert!(matches!(err, Error::NotFound { .. }), "{err:?}");
    }
}

/// The directory entry names generation g+1 of the inode, which the catalog has no row for yet; the
/// row it has (generation g) is an older file with that number, offline. Joined on the number only
/// (as the reference does) the file would be reported migrated and unreadable.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_entry_whose_generation_matches_no_inode_is_not_taken_as_the_files_state() {
    let s = site().await;
    let k = s.put("12/1234", b"new content").await;
    s.sam_command("dbupd", &[], &[&k]).await;
    let inode = s
        .sam
        .entry_of(&s.path(&k))
        .await
        .unwrap()
        .expect("catalogued");
    s.sam.set_online(inode, false).await.unwrap();
    let copy = Copy {
        copy: 0,
        media_type: "li".into(),
        vsn: "OLD001".into(),
        position: 4,
        offset: 0,
        stale: false,
    };
    s.sam.add_copy(inode, &copy, 11).await.unwrap();
    sqlx::query("UPDATE sam_file SET gen = gen + 1 WHERE ino = ? AND gen = ?")
        .bind(inode.ino)
        .bind(inode.gen)
        .execute(&s.catalog.pool)
        .await
        .unwrap();

    let st = s.backend.status(&k).await.unwrap();
    assert_eq!(
        (st.state, st.bytes_per_level.clone()),
        (HsmState::Resident, vec![11])
    );
    assert_eq!(s.read(&k).await.unwrap(), b"new content");
    let placed = s.backend.placement(std::slice::from_ref(&k)).await.unwrap();
    assert_eq!(placed[0].1.as_ref().unwrap(), &Placement::Disk);

    // The same rows with the generations matching: now it is the file's state.
    sqlx::query("UPDATE sam_file SET gen = gen - 1 WHERE ino = ?")
        .bind(inode.ino)
        .execute(&s.catalog.pool)
        .await
        .unwrap();
    assert_eq!(
        s.backend.status(&k).await.unwrap().state,
        HsmState::Migrated
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn placement_takes_the_lowest_non_stale_copy_counting_from_zero() {
    let s = site().await;
    let k = s.put("a", b"three copies").await;
    let only_stale = s.put("b", b"stale copies only").await;
    s.sam_command("dbupd", &[], &[&k, &only_stale]).await;
    let inode = s.sam.entry_of(&s.path(&k)).await.unwrap().unwrap();
    let copy = |copy, vsn: &str, position, stale| Copy {
        copy,
        media_type: "ti".into(),
        vsn: vsn.into(),
        position,
        offset: 9,
        stale,
    };
    // Copy 0 (`sls` copy 1) is stale; copy 2 would come before copy 1 by position, not by number.
    s.sam
        .add_copy(inode, &copy(0, "STALE0", 1, true), 12)
        .await
        .unwrap();
    s.sam
        .add_copy(inode, &copy(2, "THIRD2", 3, false), 12)
        .await
        .unwrap();
    s.sam
        .add_copy(inode, &copy(1, "SECND1", 7, false), 12)
        .await
        .unwrap();
    s.sam.set_online(inode, false).await.unwrap();
    let stale = s.sam.entry_of(&s.path(&only_stale)).await.unwrap().unwrap();
    s.sam
        .add_copy(stale, &copy(0, "STALE0", 2, true), 17)
        .await
        .unwrap();
    s.sam.set_online(stale, false).await.unwrap();

    let placed = s
        .backend
        .placement(&[k.clone(), only_stale.clone()])
        .await
        .unwrap();
    assert_eq!(
        placed[0].1.as_ref().unwrap(),
        &Placement::Tape {
            volume: "ti.SECND1".into(),
            position: (7 << 32) | 9,
            resident_copy: false
        }
    );
    let err = placed[1].1.as_ref().unwrap_err().to_string();
    assert!(err.contains("no non-stale archive copy"), "{err}");
    assert_eq!(
        s.backend.status(&k).await.unwrap().state,
        HsmState::Migrated
    );
}

/// A catalog that matches names case-insensitively (the usual MySQL collation) must not lend one
/// file another's state.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn names_match_exactly_whatever_the_collation() {
    let s = site().await;
    let upper = s.put("Case", b"upper").await;
    let lower = s.put("case", b"lower!").await;
    s.sam_command("archive", &[], &[&upper]).await;
    s.sam_command("release", &[], &[&upper]).await;
    assert_eq!(
        s.backend.status(&upper).await.unwrap().state,
        HsmState::Migrated
    );
    assert_eq!(
        s.backend.status(&lower).await.unwrap().state,
        HsmState::Resident
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batch_status_is_one_query_per_batch() {
    let catalog_server = archive_sideband_testkit::database::server_url();
    let proxy = Proxy::start(archive_sideband_testkit::proxy::server_addr(
        &catalog_server,
    ))
    .await;
    let s = site_with(|c, _| c.url = proxy.url(&c.url)).await;
    let mut keys = Vec::new();
    for i in 0..300 {
        keys.push(s.put(&format!("{}/{i}", i % 7), b"x").await);
    }
    let some: Vec<_> = keys.iter().step_by(10).collect();
    s.sam_command("dbupd", &[], &some).await;
    // Warm the pool (both connections open, set up and back in the pool: a connection returns to
    // the pool from a task of its own) so the count holds only the batch's work.
    let (a, b) = tokio::join!(s.backend.status(&keys[0]), s.backend.status(&keys[1]));
    a.unwrap();
    b.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let before = proxy.statements();
    let many = s.backend.status_many(&keys).await;
    let spent = proxy.statements() - before;
    assert!(many.iter().all(|(_, r)| r.is_ok()));
    assert_eq!(spent, 1, "statements for a batch of {} keys", keys.len());
}
