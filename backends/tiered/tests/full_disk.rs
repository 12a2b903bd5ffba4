//! The disk tier fills up while files are premigrated: journal appends fail part-way (short writes on
//! a full tmpfs). Each failure fails only its file, which stays resident with no tape copy left behind;
//! a recall that cannot write its disk copy fails and the file stays migrated; once there is room again
//! the next appends start on a fresh line, and the archive reopens with every state intact.
//!
//! The work runs in a child process (this test binary, re-run on the ignored `full_disk_child` test)
//! inside a private mount namespace, with the prefix on a 1 MiB tmpfs and the cold tier outside it.

mod common;

use archive_core::{ArchiveBackend, HsmState, Placement};
use archive_tiered::TieredConfig;
use common::*;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

const MOUNT_ENV: &str = "TIERED_FULL_DISK_MOUNT";
const COLD_ENV: &str = "TIERED_FULL_DISK_COLD";

fn config(cold: &Path) -> TieredConfig {
    TieredConfig {
        cold_dir: Some(cold.to_path_buf()),
        ..small_library()
    }
}

fn keys(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("small{i:03}")).collect()
}

/// Fills the file system of `dir` to the last byte.
fn fill(dir: &Path) -> PathBuf {
    let path = dir.join("filler");
    let mut file = std::fs::File::create(&path).unwrap();
    let block = vec![7u8; 4096];
    loop {
        match file.write(&block) {
            Ok(0) => break,
            Ok(_) => {}
            Err(e) if e.raw_os_error() == Some(28) => break,
            Err(e) => panic!("filling {}: {e}", dir.display()),
        }
    }
    path
}

fn cold_files(cold: &Path) -> usize {
    std::fs::read_dir(cold)
        .into_iter()
        .flatten()
        .flatten()
        // Tape directories only (the cold tier also holds the server's own `.archiveinterface*` state).
        .filter(|e| {
            e.file_type().unwrap().is_dir() && e.file_name().to_string_lossy().starts_with('T')
        })
        .map(|tape| std::fs::read_dir(tape.path()).unwrap().count())
        .sum()
}

/// Run only as the child of `a_full_disk_fails_single_files_and_the_journal_stays_whole`.
#[test]
#[ignore = "run as a child process in a private mount namespace"]
fn full_disk_child() {
    let (Ok(mount), Ok(cold)) = (std::env::var(MOUNT_ENV), std::env::var(COLD_ENV)) else {
        eprintln!("full_disk_child: not run by its parent test; nothing to do");
        return;
    };
    let (mount, cold) = (PathBuf::from(mount), PathBuf::from(cold));
    tokio::runtime::Runtime::new().unwrap().block_on(async {
        let b = open(&mount, config(&cold));
        put(&b, "on-tape", b"a migrated file").await;
        b.migrate(&[key("on-tape")]).await.unwrap()[0]
            .1
            .as_ref()
            .unwrap();
        let names = keys(60);
        for k in &names {
            put(&b, k, k.as_bytes()).await;
        }
        let filler = fill(&mount);

        // Premigrate one file at a time until the journal cannot take another record.
        let mut copied = Vec::new();
        let mut failed = None;
        for k in &names {
            match &b.premigrate(&[key(k)]).await.unwrap()[0].1 {
                Ok(()) => copied.push(k.clone()),
                Err(e) => {
                    failed = Some((k.clone(), e.to_string()));
                    break;
                }
            }
        }
        let (failed, error) = failed.expect("the full disk never failed a journal append");
        assert!(error.contains("journal"), "{failed}: {error}");
        // The failed file is resident, with no tape copy left behind; the others are premigrated.
        assert_eq!(state(&b, &failed).await, HsmState::Resident);
        assert_eq!(
            b.placement(&[key(&failed)]).await.unwrap()[0]
                .1
                .as_ref()
                .unwrap(),
            &Placement::Disk
        );
        assert_eq!(cold_files(&cold), copied.len() + 1, "tape copies");
        for k in &copied {
            assert_eq!(state(&b, k).await, HsmState::Premigrated, "{k}");
        }
        // A recall with no room for the disk copy fails, and the file stays migrated.
        let recalled = b.recall(&[key("on-tape")]).await.unwrap();
        assert!(recalled[0].1.is_err(), "recall succeeded on a full disk");
        assert_eq!(state(&b, "on-tape").await, HsmState::Migrated);
        assert!(!b.prefix().join("on-tape").exists());

        // Room again: the failed file and the rest go to tape, each record on its own line.
        std::fs::remove_file(filler).unwrap();
        let rest: Vec<_> = names.iter().map(|k| key(k)).collect();
        for (k, r) in b.premigrate(&rest).await.unwrap() {
            r.unwrap_or_else(|e| panic!("{k}: {e}"));
        }
        b.recall(&[key("on-tape")]).await.unwrap()[0]
            .1
            .as_ref()
            .unwrap();
        let journal = std::fs::read(
            b.prefix()
                .join(archive_tiered::STATE_DIR)
                .join("journal.jsonl"),
        )
        .unwrap();
        assert_eq!(journal.last(), Some(&b'\n'));
        for line in journal.split(|&c| c == b'\n').filter(|l| !l.is_empty()) {
            let text = String::from_utf8_lossy(line);
            assert!(
                serde_json::from_slice::<serde_json::Value>(line).is_ok(),
                "journal line is not a whole record: {text}"
            );
        }
        drop(b);

        // The archive reopens with every state as it was.
        let b = open(&mount, config(&cold));
        for k in &names {
            assert_eq!(
                state(&b, k).await,
                HsmState::Premigrated,
                "{k} after reopening"
            );
            assert_eq!(read(&b, k).await, k.as_bytes());
        }
        assert_eq!(read(&b, "on-tape").await, b"a migrated file");
    });
}

#[test]
fn a_full_disk_fails_single_files_and_the_journal_stays_whole() {
    let probe = Command::new("unshare")
        .args(["--mount", "--map-root-user", "true"])
        .status();
    assert!(
        matches!(probe, Ok(s) if s.success()),
        "this test needs `unshare --mount --map-root-user` (util-linux) with user namespaces enabled, \
         to mount a small tmpfs: run as root or enable kernel.unprivileged_userns_clone"
    );
    let dir = tempfile::tempdir().unwrap();
    let (mount, cold) = (dir.path().join("small-disk"), dir.path().join("cold"));
    std::fs::create_dir(&mount).unwrap();
    let child = Command::new("unshare")
        .args(["--mount", "--map-root-user", "sh", "-c"])
        .arg(format!(
            "mount -t tmpfs -o size=1m tmpfs '{}' && exec \"$0\" --exact full_disk_child --ignored --nocapture --test-threads=1",
            mount.display()
        ))
        .arg(std::env::current_exe().unwrap())
        .env(MOUNT_ENV, &mount)
        .env(COLD_ENV, &cold)
        .output()
        .unwrap();
    let out = format!(
        "{}{}",
        String::from_utf8_lossy(&child.stdout),
        String::from_utf8_lossy(&child.stderr)
    );
    assert!(child.status.success(), "the child failed:\n{out}");
    assert!(
        out.contains("1 passed"),
        "the child did not run its test:\n{out}"
    );
}
