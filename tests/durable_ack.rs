//! No `201 Created` leaves before the stored file is durable: at the moment the router hands the
//! answer of a PUT over to be sent, the record of the posix backend's sync calls must already show
//! the file's own fsync, then the rename that linked it in, then an fsync of its directory that
//! returned after that rename. Checked for many concurrent PUTs into one directory (where directory
//! fsyncs are shared between writes) and spread over the id2filename tree.
//!
//! The record is taken in the test process (the backend writes `(device, inode)` of every fsync and
//! every link as each call returns); the check runs when the router's future resolves, which is
//! before hyper can write a byte of the response.

mod common;

use archive_posix::DurabilityEvent;
use axum::body::Body;
use axum::http::Request;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use tower::ServiceExt;

/// Where the steps that make `file` durable are in `events`, or what is missing.
fn check_durable(events: &[DurabilityEvent], file: &Path) -> Result<(), String> {
    let meta = std::fs::symlink_metadata(file).map_err(|e| format!("{}: {e}", file.display()))?;
    let dir_meta = std::fs::metadata(file.parent().unwrap()).unwrap();
    let (file_id, dir_id) = ((meta.dev(), meta.ino()), (dir_meta.dev(), dir_meta.ino()));
    let name = file.file_name().unwrap().to_str().unwrap();
    let linked = events
        .iter()
        .position(|e| *e == DurabilityEvent::Linked(dir_id, name.to_string()))
        .ok_or_else(|| format!("no rename of {name} recorded"))?;
    let data_synced = events[..linked].contains(&DurabilityEvent::Synced(file_id));
    if !data_synced {
        return Err(format!("{name} was linked in before its data was fsynced"));
    }
    let dir_synced = events[linked + 1..].contains(&DurabilityEvent::Synced(dir_id));
    if !dir_synced {
        return Err(format!(
            "no fsync of the directory of {name} returned after its rename"
        ));
    }
    Ok(())
}

/// PUTs `ids` concurrently and checks each 201 against the record at the moment it was answered.
async fn concurrent_puts_are_durable_when_acknowledged(use_id2filename: bool, ids: Vec<u64>) {
    archive_posix::record_syncs();
    let app = common::test_app(|s, _| s.use_id2filename = use_id2filename);
    let tasks: Vec<_> = ids
        .into_iter()
        .map(|id| {
            let router = app.router.clone();
            tokio::spawn(async move {
                let request = Request::builder()
                    .method("PUT")
                    .uri(format!("/{id}"))
                    .body(Body::from(vec![(id % 251) as u8; 4096]))
                    .unwrap();
                let response = router.oneshot(request).await.unwrap();
                // The answer exists now and nothing of it has been sent: take the record here.
                let events = archive_posix::durability_events();
                let (status, _, body) = common::read(response).await;
                (
                    id,
                    status,
                    events,
                    String::from_utf8_lossy(&body).into_owned(),
                )
            })
        })
        .collect();
    let mut checked = 0;
    for task in tasks {
        let (id, status, events, body) = task.await.unwrap();
        assert_eq!(status, 201, "PUT /{id}: {body}");
        let rel = if use_id2filename {
            archive_core::id2filename(id as i128)
        } else {
            format!("/{id}")
        };
        let file = app.prefix.join(rel.trim_start_matches('/'));
        if let Err(problem) = check_durable(&events, &file) {
            panic!("PUT /{id} was answered 201 although {problem}");
        }
        checked += 1;
    }
    assert!(checked > 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn no_201_before_the_data_and_directory_fsyncs_with_32_writers_in_one_directory() {
    concurrent_puts_are_durable_when_acknowledged(false, (1..=96).collect()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn no_201_before_the_data_and_directory_fsyncs_over_the_id2filename_tree() {
    // Neighbouring ids share leaf directories; far ones do not.
    let ids = (0..48)
        .map(|i| 0x10_0000 + i)
        .chain((0..48).map(|i| 0x3000_0000 + i * 0x1_0101));
    concurrent_puts_are_durable_when_acknowledged(true, ids.collect()).await;
}

#[test]
fn the_check_catches_an_acknowledgement_before_the_directory_fsync() {
    // The check itself must be able to fail: a record where the directory fsync came first.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("7");
    std::fs::write(&file, b"x").unwrap();
    let m = std::fs::metadata(&file).unwrap();
    let d = std::fs::metadata(dir.path()).unwrap();
    let (f, d) = ((m.dev(), m.ino()), (d.dev(), d.ino()));
    let linked = DurabilityEvent::Linked(d, "7".to_string());
    let good = [
        DurabilityEvent::Synced(f),
        linked.clone(),
        DurabilityEvent::Synced(d),
    ];
    assert_eq!(check_durable(&good, &file), Ok(()));
    let dir_too_early = [
        DurabilityEvent::Synced(f),
        DurabilityEvent::Synced(d),
        linked.clone(),
    ];
    assert!(check_durable(&dir_too_early, &file).is_err());
    let data_too_late = [
        linked,
        DurabilityEvent::Synced(f),
        DurabilityEvent::Synced(d),
    ];
    assert!(check_durable(&data_too_late, &file).is_err());
}
