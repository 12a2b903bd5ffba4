//! Repair rules on open, each set up by hand the way an interrupted operation leaves the tiers:
//! an overwrite that replaced the disk copy before the tape copy was forgotten, a recall that wrote the
//! disk copy before recording it, a release that unlinked before recording, an orphan cold copy, a
//! torn journal line.

mod common;

use archive_core::{ArchiveBackend, HsmState};
use common::*;
use std::io::Write;

fn replace_disk_copy(b: &archive_tiered::TieredBackend, k: &str, data: &[u8]) {
    let path = b.prefix().join(k);
    let tmp = path.with_extension("new");
    std::fs::write(&tmp, data).unwrap();
    std::fs::rename(&tmp, &path).unwrap();
}

#[tokio::test]
async fn repair_resolves_every_half_done_state() {
    let dir = tempfile::tempdir().unwrap();
    {
        let b = open(dir.path(), small_library());
        for k in ["overwritten", "recalled", "released", "same"] {
            put(&b, k, k.as_bytes()).await;
        }
        b.premigrate(&[key("overwritten"), key("released"), key("same")])
            .await
            .unwrap();
        b.migrate(&[key("recalled")]).await.unwrap();
        // An overwrite that stopped before forgetting the tape copy: a newer disk copy.
        replace_disk_copy(&b, "overwritten", b"brand new content");
        // A recall that stopped before recording: the disk copy is back, the catalog says migrated.
        std::fs::write(b.prefix().join("recalled"), b"recalled").unwrap();
        // A release that stopped before recording: the disk copy is gone.
        std::fs::remove_file(b.prefix().join("released")).unwrap();
        // A rewrite with the same bytes (another inode): still premigrated.
        replace_disk_copy(&b, "same", b"same");
        // A copy whose record never became durable, and a torn last journal line.
        std::fs::create_dir_all(b.cold_dir().join("T00001")).unwrap();
        std::fs::write(
            b.cold_dir().join("T00001").join("0000000000000000"),
            b"orphan",
        )
        .unwrap();
        let journal = b
            .prefix()
            .join(archive_tiered::STATE_DIR)
            .join("journal.jsonl");
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(journal)
            .unwrap();
        f.write_all(br#"{"op":"released","ke"#).unwrap();
    }
    let b = open(dir.path(), small_library());
    assert_eq!(state(&b, "overwritten").await, HsmState::Resident);
    assert_eq!(read(&b, "overwritten").await, b"brand new content");
    assert_eq!(state(&b, "recalled").await, HsmState::Premigrated);
    assert_eq!(read(&b, "recalled").await, b"recalled");
    assert_eq!(state(&b, "released").await, HsmState::Migrated);
    assert_eq!(state(&b, "same").await, HsmState::Premigrated);
    assert!(
        !b.cold_dir()
            .join("T00001")
            .join("0000000000000000")
            .exists(),
        "orphan kept"
    );
    // The tape copies of "recalled", "released" and "same" remain; the overwritten file's is gone.
    let cold_files = std::fs::read_dir(b.cold_dir().join("T00000"))
        .unwrap()
        .count();
    assert_eq!(cold_files, 3);
    b.recall(&[key("released")]).await.unwrap();
    assert_eq!(read(&b, "released").await, b"released");
    // The repaired state is itself durable.
    drop(b);
    let b = open(dir.path(), small_library());
    assert_eq!(state(&b, "overwritten").await, HsmState::Resident);
    assert_eq!(state(&b, "released").await, HsmState::Premigrated);
}

/// What a crash or a full disk leaves at the end of the journal: a record cut anywhere, even inside a
/// multi-byte character, or a block of zeroes (a file system that extended the file before the data
/// reached it). Each is cut off at open; start-up goes on and the records before it hold.
#[tokio::test]
async fn a_torn_journal_tail_of_any_bytes_is_cut_off_at_open() {
    let whole = br#"{"op":"forgotten","key":"kept"}"#;
    let tails: [&[u8]; 4] = [
        &whole[..whole.len() - 1],
        // A key with "é" cut between its two bytes.
        b"{\"op\":\"forgotten\",\"key\":\"caf\xc3",
        &[0u8; 300],
        // A whole record without its newline: its append never finished, so it never counted.
        whole,
    ];
    for tail in tails {
        let what = String::from_utf8_lossy(tail).to_string();
        let dir = tempfile::tempdir().unwrap();
        let journal = {
            let b = open(dir.path(), small_library());
            put(&b, "kept", b"kept on tape").await;
            b.migrate(&[key("kept")]).await.unwrap();
            b.prefix()
                .join(archive_tiered::STATE_DIR)
                .join("journal.jsonl")
        };
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(&journal)
            .unwrap();
        f.write_all(tail).unwrap();
        drop(f);
        let b = archive_tiered::TieredBackend::open(dir.path().join("archive"), small_library())
            .unwrap_or_else(|e| panic!("tail {what:?}: {e}"));
        assert_eq!(state(&b, "kept").await, HsmState::Migrated, "tail {what:?}");
        // The tail is gone from the file too: later records start on a line of their own.
        let text = std::fs::read(&journal).unwrap();
        assert_eq!(text.last(), Some(&b'\n'), "tail {what:?}");
        b.recall(&[key("kept")]).await.unwrap();
        drop(b);
        let b = open(dir.path(), small_library());
        assert_eq!(read(&b, "kept").await, b"kept on tape", "tail {what:?}");
    }
}
