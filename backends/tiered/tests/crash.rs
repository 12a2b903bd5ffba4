//! Crash safety: a child process (this test binary, re-run on the ignored `crash_child` test) migrates
//! or recalls the test files and is killed (aborted) at each injected crash point; the next open must
//! repair the half-done work and every file must read back with its exact bytes. Another child has
//! every journal fsync fail: the operation fails and its record is not kept.

mod common;

use archive_core::{ArchiveBackend, HsmState};
use archive_tiered::crash::{CRASH_ENV, CRASH_POINTS};
use common::*;
use std::path::Path;
use std::process::Command;

const DIR_ENV: &str = "TIERED_CRASH_TEST_DIR";

/// Run only as the child of `every_crash_point_is_repaired`: performs the operation named by the crash
/// point's prefix on the files, and is expected to abort part-way.
#[test]
#[ignore = "run as a child process by every_crash_point_is_repaired"]
fn crash_child() {
    // Only a helper: `cargo test -- --ignored` runs it without a parent, and then it has nothing to do.
    let (Ok(dir), Ok(point)) = (std::env::var(DIR_ENV), std::env::var(CRASH_ENV)) else {
        eprintln!("crash_child: not run by every_crash_point_is_repaired; nothing to do");
        return;
    };
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let b = open(Path::new(&dir), small_library());
        let keys = keys_of(&files());
        if point.starts_with("migrate") {
            b.migrate(&keys).await.unwrap();
        } else {
            b.recall(&keys).await.unwrap();
        }
    });
}

/// The state of each test file after a crash at `point` and repair.
fn expected_after(point: &str) -> [HsmState; 3] {
    use HsmState::*;
    match point {
        // The first file made it; the big one was cut in the middle of its cold copy.
        "migrate:mid-cold-copy" => [Migrated, Resident, Resident],
        "migrate:after-cold-copy" => [Resident, Resident, Resident],
        "migrate:after-journal-copy" => [Premigrated, Resident, Resident],
        "migrate:after-unlink" | "migrate:after-journal-release" => [Migrated, Resident, Resident],
        "recall:mid-disk-copy" => [Premigrated, Migrated, Migrated],
        "recall:after-disk-copy" | "recall:after-journal" => [Premigrated, Migrated, Migrated],
        other => panic!("no expectation for crash point {other}"),
    }
}

fn no_partials(root: &Path) {
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let e = e.unwrap();
            let name = e.file_name().to_string_lossy().to_string();
            assert!(
                !name.ends_with(".partial"),
                "partial file left: {}",
                e.path().display()
            );
            if e.file_type().unwrap().is_dir() {
                stack.push(e.path());
            }
        }
    }
}

#[tokio::test]
async fn every_crash_point_is_repaired() {
    for &point in CRASH_POINTS {
        let dir = tempfile::tempdir().unwrap();
        {
            let b = open(dir.path(), small_library());
            for (k, data) in files() {
                put(&b, k, &data).await;
            }
            if point.starts_with("recall") {
                b.migrate(&keys_of(&files())).await.unwrap();
            }
        }
        let child = Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "crash_child",
                "--ignored",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(DIR_ENV, dir.path())
            .env(CRASH_ENV, point)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&child.stderr);
        assert!(!child.status.success(), "{point}: the child did not crash");
        assert!(
            stderr.contains(&format!("crashing at injected point {point}")),
            "{point}: the child failed some other way: {stderr}"
        );

        let b = open(dir.path(), small_library());
        no_partials(dir.path());
        let states: Vec<HsmState> = {
            let mut s = Vec::new();
            for (k, _) in files() {
                s.push(state(&b, k).await);
            }
            s
        };
        assert_eq!(
            states,
            expected_after(point),
            "{point}: states after repair"
        );
        // Every file is readable with its exact bytes (recalled first where it is on tape only).
        let keys = keys_of(&files());
        for (_, r) in b.recall(&keys).await.unwrap() {
            r.unwrap_or_else(|e| panic!("{point}: recall after repair: {e}"));
        }
        for (k, data) in files() {
            assert!(
                read(&b, k).await == data,
                "{point}: {k} differs after repair"
            );
        }
        // And the archive keeps working: a full migrate and recall round.
        for (_, r) in b.migrate(&keys).await.unwrap() {
            r.unwrap_or_else(|e| panic!("{point}: migrate after repair: {e}"));
        }
        b.recall(&keys).await.unwrap();
        for (k, data) in files() {
            assert!(
                read(&b, k).await == data,
                "{point}: {k} differs after a new round"
            );
        }
        // Nothing on the cold tier that the catalog does not know, nothing twice.
        drop(b);
        let b = open(dir.path(), small_library());
        let listed = b.list("").await.unwrap();
        assert_eq!(listed.len(), 3, "{point}: {listed:?}");
    }
}

/// Run only as the child of `a_failed_journal_fsync_fails_the_file_and_keeps_no_record`: every
/// journal fsync fails in this process.
#[test]
#[ignore = "run as a child process by a_failed_journal_fsync_fails_the_file_and_keeps_no_record"]
fn fsync_failure_child() {
    let Ok(dir) = std::env::var(DIR_ENV) else {
        eprintln!("fsync_failure_child: not run by its parent test; nothing to do");
        return;
    };
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let b = open(Path::new(&dir), small_library());
        let outcome = b.premigrate(&[key("a")]).await.unwrap().remove(0).1;
        let e = outcome.expect_err("premigrate succeeded although its record could not be fsynced");
        assert!(e.to_string().contains("injected failure"), "{e}");
        assert_eq!(state(&b, "a").await, HsmState::Resident);
        println!("fsync_failure_child: done");
    });
}

#[tokio::test]
async fn a_failed_journal_fsync_fails_the_file_and_keeps_no_record() {
    let dir = tempfile::tempdir().unwrap();
    {
        let b = open(dir.path(), small_library());
        put(&b, "a", b"first small file").await;
    }
    let child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "fsync_failure_child",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(DIR_ENV, dir.path())
        .env(
            archive_tiered::crash::FAIL_ENV,
            archive_tiered::crash::FAIL_JOURNAL_FSYNC,
        )
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&child.stdout).to_string()
        + &String::from_utf8_lossy(&child.stderr);
    assert!(
        child.status.success() && out.contains("fsync_failure_child: done"),
        "{out}"
    );
    // The record whose fsync failed is not in the journal: after a restart the file is resident,
    // with no tape copy, and migrates normally.
    let b = open(dir.path(), small_library());
    assert_eq!(state(&b, "a").await, HsmState::Resident);
    // Tape directories only (the cold tier also holds the server's own `.archiveinterface*` state).
    let cold_files: usize = std::fs::read_dir(b.cold_dir())
        .unwrap()
        .flatten()
        .filter(|tape| tape.file_name().to_string_lossy().starts_with('T'))
        .map(|tape| std::fs::read_dir(tape.path()).unwrap().count())
        .sum();
    assert_eq!(
        cold_files, 0,
        "a tape copy without a record was left behind"
    );
    b.migrate(&[key("a")]).await.unwrap().remove(0).1.unwrap();
    assert_eq!(state(&b, "a").await, HsmState::Migrated);
}
