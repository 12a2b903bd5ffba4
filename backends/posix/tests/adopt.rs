//! PATCH (`adopt`): the checked source inode is what moves in, read-only and durable; symlinks,
//! directories and sources inside the archive are refused; a source swapped while it is being moved in
//! brings nothing else in.

use archive_core::{ArchiveBackend, Error, Key};
use archive_posix::PosixBackend;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

fn key(k: &str) -> Key {
    Key::new(k).unwrap()
}

fn ino(path: &Path) -> (u64, u64) {
    let m = std::fs::metadata(path).unwrap();
    (m.dev(), m.ino())
}

#[tokio::test]
async fn moved_in_file_is_read_only_and_durable() {
    archive_posix::record_syncs();
    let dir = tempfile::tempdir().unwrap();
    let incoming = dir.path().join("incoming");
    std::fs::create_dir(&incoming).unwrap();
    let src = incoming.join("upload.bin");
    std::fs::write(&src, b"from ingest").unwrap();
    std::fs::set_permissions(&src, std::fs::Permissions::from_mode(0o644)).unwrap();
    let mtime = std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_500_000_000);
    std::fs::File::options()
        .write(true)
        .open(&src)
        .unwrap()
        .set_modified(mtime)
        .unwrap();
    let file_id = ino(&src);
    let b = PosixBackend::new(dir.path().join("archive")).unwrap();

    b.adopt(&key("x/y/moved"), &src, false).await.unwrap();

    let stored = b.root().join("x/y/moved");
    let meta = std::fs::symlink_metadata(&stored).unwrap();
    assert!(meta.is_file());
    assert_eq!(
        meta.permissions().mode() & 0o777,
        0o444,
        "read-only like a PUT"
    );
    assert_eq!(meta.nlink(), 1, "the source name is gone");
    assert_eq!(meta.modified().unwrap(), mtime);
    assert!(!src.exists());
    assert_eq!(std::fs::read(&stored).unwrap(), b"from ingest");
    let synced = archive_posix::synced();
    for (what, id) in [
        ("the file's data", file_id),
        ("the source directory", ino(&incoming)),
        ("the target directory", ino(&b.root().join("x/y"))),
        ("the new directory x in the root", ino(b.root())),
        ("the new directory y in x", ino(&b.root().join("x"))),
    ] {
        assert!(synced.contains(&id), "{what} was not fsynced");
    }
}

#[tokio::test]
async fn symlinks_directories_and_archive_files_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let incoming = dir.path().join("incoming");
    std::fs::create_dir_all(incoming.join("subdir")).unwrap();
    std::fs::write(dir.path().join("secret"), b"secret").unwrap();
    std::os::unix::fs::symlink(dir.path().join("secret"), incoming.join("link")).unwrap();
    std::os::unix::fs::symlink(dir.path(), incoming.join("linkdir")).unwrap();
    let b = PosixBackend::new(dir.path().join("archive")).unwrap();
    b.put(
        &key("kept"),
        archive_core::conformance::body_of(vec![b"kept".to_vec()]),
        Default::default(),
    )
    .await
    .unwrap();

    for (source, why) in [
        (incoming.join("link"), "symlink"),
        (incoming.join("linkdir/secret"), "symlink"),
        (incoming.join("subdir"), "not a regular file"),
        (b.root().join("kept"), "inside the archive"),
    ] {
        match b.adopt(&key("new"), &source, false).await {
            Err(Error::InvalidArgument(message)) => {
                assert!(message.contains(why), "{source:?}: {message}")
            }
            other => panic!("{source:?}: expected InvalidArgument, got {other:?}"),
        }
    }
    // With overwrite too: an archive file is never moved onto another key.
    assert!(b
        .adopt(&key("new"), &b.root().join("kept"), true)
        .await
        .is_err());
    assert!(b.status(&key("new")).await.is_err());
    assert_eq!(std::fs::read(b.root().join("kept")).unwrap(), b"kept");
    assert_eq!(std::fs::read(dir.path().join("secret")).unwrap(), b"secret");
    assert!(incoming
        .join("link")
        .symlink_metadata()
        .unwrap()
        .is_symlink());
}

/// Keeps replacing `src` with a regular file, a symlink to a secret outside, and a directory, each
/// prepared beforehand and swapped in by one rename, staying a moment each, while files are
/// moved in from that name.
fn swap_until(stop: &AtomicBool, incoming: &Path, secret: &Path) {
    let src = incoming.join("src");
    let (tmp_file, tmp_link, tmp_dir) = (
        incoming.join(".f"),
        incoming.join(".l"),
        incoming.join(".d"),
    );
    // Spinning, not sleeping: a sleep lasts far longer than the window between a check and a move.
    let pause = |spins| (0..spins).for_each(|_| std::hint::spin_loop());
    while !stop.load(Ordering::Relaxed) {
        std::fs::write(&tmp_file, b"good").unwrap();
        std::os::unix::fs::symlink(secret, &tmp_link).unwrap();
        std::fs::create_dir(&tmp_dir).unwrap();
        std::fs::write(tmp_dir.join("inner"), b"dir").unwrap();
        let _ = std::fs::remove_dir_all(&src);
        std::fs::rename(&tmp_file, &src).unwrap();
        // Longest as a file, so that some moves find one; the swaps away from it are the races.
        pause(4_000);
        std::fs::rename(&tmp_link, &src).unwrap();
        pause(2_000);
        let _ = std::fs::remove_file(&src);
        std::fs::rename(&tmp_dir, &src).unwrap();
        pause(2_000);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn swapping_the_source_while_it_moves_in_brings_nothing_else_in() {
    let dir = tempfile::tempdir().unwrap();
    let incoming = dir.path().join("incoming");
    std::fs::create_dir(&incoming).unwrap();
    let secret = dir.path().join("secret");
    std::fs::write(&secret, b"secret").unwrap();
    let b = PosixBackend::new(dir.path().join("archive")).unwrap();

    let stop = Arc::new(AtomicBool::new(false));
    let swapper = {
        let (stop, incoming, secret) = (stop.clone(), incoming.clone(), secret.clone());
        std::thread::spawn(move || swap_until(&stop, &incoming, &secret))
    };
    // For a few seconds (every swap away from the file is a chance to land between a check and a
    // move), longer while no move has found the regular file yet, with a bound so it cannot hang.
    let started = std::time::Instant::now();
    let mut moved = 0;
    for i in 0.. {
        let elapsed = started.elapsed().as_secs();
        if (elapsed >= 4 && moved > 0) || elapsed >= 60 {
            break;
        }
        if b.adopt(&key(&format!("k{i}")), &incoming.join("src"), false)
            .await
            .is_ok()
        {
            moved += 1;
        }
    }
    stop.store(true, Ordering::Relaxed);
    swapper.join().unwrap();

    // Whatever was moved in is a regular file holding the good bytes: never the symlink, the secret
    // behind it or the directory.
    let mut stored = 0;
    for entry in std::fs::read_dir(b.root()).unwrap() {
        let entry = entry.unwrap();
        let name = entry.file_name().into_string().unwrap();
        if name.starts_with(archive_posix::STATE_DIR_PREFIX) {
            continue; // the server's own state, not archive content
        }
        let meta = std::fs::symlink_metadata(entry.path()).unwrap();
        assert!(
            meta.is_file(),
            "{name} was moved in as {:?}",
            meta.file_type()
        );
        assert!(name.starts_with('k'), "debris left in the archive: {name}");
        assert_eq!(std::fs::read(entry.path()).unwrap(), b"good", "{name}");
        stored += 1;
    }
    assert_eq!(stored, moved);
    assert!(moved > 0, "no move ever found the regular file in place");
    assert_eq!(std::fs::read(&secret).unwrap(), b"secret");
}
