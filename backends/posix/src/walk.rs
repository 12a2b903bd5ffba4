//! Walking the archive tree: prefix listings (whole, or one page walked in key order), and the
//! start-up sweep that removes partial files left by a crash in the middle of a write (only those
//! whose owning instance is gone).

use crate::beneath::{self, RootDir};
use crate::error::PosixError;
use crate::instance::{Owners, INSTANCES_DIR};
use crate::is_partial_name;
use crate::staging::partial_owner;
use archive_core::{Key, ListEntry, Result};
use rustix::fs::{FileType, OFlags};
use std::io::ErrorKind;
use std::os::fd::{AsFd, BorrowedFd};
use std::path::Path;
use std::time::{Duration, UNIX_EPOCH};

/// Entries whose name starts with this are the server's own state, never archive files.
pub const STATE_DIR_PREFIX: &str = ".archiveinterface";

fn skipped(name: &str) -> bool {
    is_partial_name(name) || name.starts_with(STATE_DIR_PREFIX)
}

/// Every file under `root` whose key starts with `prefix`, sorted by key. Only the directory the prefix
/// points into is walked, not the whole tree. Directories are opened through their parent's handle and
/// symlinks are neither followed nor listed (see [`crate::beneath`]).
pub(crate) fn list(root: &RootDir, prefix: &str) -> Result<Vec<ListEntry>> {
    let (dir_part, _) = prefix.rsplit_once('/').unwrap_or(("", prefix));
    let list_err = |rel: &str, e: std::io::Error| {
        archive_core::Error::backend("posix", PosixError::List(root.path().join(rel), e))
    };
    let mut out = Vec::new();
    let start = match root.open_dir(dir_part) {
        Ok(dir) => dir,
        // Nothing there (or not a directory, or a symlink): no keys below it.
        Err(e) if matches!(e.kind(), ErrorKind::NotFound | ErrorKind::NotADirectory) => {
            return Ok(out)
        }
        Err(e) if beneath::is_symlink_refusal(&e) => return Ok(out),
        Err(e) => return Err(list_err(dir_part, e)),
    };
    let mut stack = vec![(start, dir_part.to_string())];
    while let Some((dir, dir_rel)) = stack.pop() {
        let entries = rustix::fs::Dir::read_from(&dir).map_err(|e| list_err(&dir_rel, e.into()))?;
        for entry in entries {
            let entry = entry.map_err(|e| list_err(&dir_rel, e.into()))?;
            let Ok(name) = entry.file_name().to_str() else {
                continue;
            };
            if name == "." || name == ".." || skipped(name) {
                continue;
            }
            let rel = if dir_rel.is_empty() {
                name.to_string()
            } else {
                format!("{dir_rel}/{name}")
            };
            // The entry itself, never what a symlink points to.
            let Ok(st) = beneath::stat_entry(dir.as_fd(), name) else {
                continue;
            };
            match beneath::file_type(&st) {
                FileType::Directory => {
                    // Descend only where keys below can still match the prefix.
                    let as_dir = format!("{rel}/");
                    if as_dir.starts_with(prefix) || prefix.starts_with(&as_dir) {
                        if let Ok(sub) = beneath::open_beneath(
                            dir.as_fd(),
                            name,
                            OFlags::RDONLY | OFlags::DIRECTORY,
                        ) {
                            stack.push((sub, rel));
                        }
                    }
                }
                FileType::RegularFile if rel.starts_with(prefix) => {
                    let Ok(key) = Key::new(&rel) else { continue };
                    let mtime = UNIX_EPOCH
                        + Duration::new(st.st_mtime.max(0) as u64, st.st_mtime_nsec as u32);
                    out.push(ListEntry {
                        key,
                        size: st.st_size as u64,
                        mtime,
                    });
                }
                _ => {}
            }
        }
    }
    out.sort_by(|a, b| a.key.cmp(&b.key));
    Ok(out)
}

/// One page of [`list`]: the files whose key starts with `prefix` and sorts after `after`, at most
/// `limit`, sorted by key. The tree is walked in key order (a directory `d` sorts as `d/`), subtrees
/// wholly before `after` or outside the prefix are not entered, only returned files are stat-ed, and
/// the walk stops once the page is full. Each directory entered is still read whole (to sort it).
/// Like [`list`], directories are opened through their parent's handle and symlinks are neither
/// followed nor listed.
pub(crate) fn list_page(
    root: &RootDir,
    prefix: &str,
    after: Option<&str>,
    limit: usize,
) -> Result<Vec<ListEntry>> {
    let mut out = Vec::new();
    if limit > 0 {
        let page = Page {
            root,
            prefix,
            after,
            limit,
        };
        page.of_dir(root.fd(), "", &mut out)?;
    }
    Ok(out)
}

/// Whether keys below the directory whose keys start with `dir_key` (ending in `/`) can be on the
/// page: they must be able to start with the prefix, and not all sort at or before `after`.
fn worth_entering(dir_key: &str, prefix: &str, after: Option<&str>) -> bool {
    let matches_prefix = dir_key.starts_with(prefix) || prefix.starts_with(dir_key);
    let past_after = after.is_none_or(|a| dir_key > a || a.starts_with(dir_key));
    matches_prefix && past_after
}

#[cfg(test)]
thread_local! {
    /// Directories read and files stat-ed by `list_page` on this thread, for the tests of its cost.
    static WORK: std::cell::Cell<(usize, usize)> = const { std::cell::Cell::new((0, 0)) };
}

/// Counts one directory read (`dirs`) or one stat (`stats`) for the tests; nothing otherwise.
fn count_work(dirs: usize, stats: usize) {
    #[cfg(test)]
    WORK.with(|w| {
        let (d, s) = w.get();
        w.set((d + dirs, s + stats));
    });
    let _ = (dirs, stats);
}

/// What one page asks for.
struct Page<'a> {
    root: &'a RootDir,
    prefix: &'a str,
    after: Option<&'a str>,
    limit: usize,
}

impl Page<'_> {
    fn list_err(&self, rel: &str, e: std::io::Error) -> archive_core::Error {
        archive_core::Error::backend("posix", PosixError::List(self.root.path().join(rel), e))
    }

    /// Adds the page's files in the directory `dir` (whose keys start with `rel`, "" or ending in
    /// `/`) and below it to `out`, in key order, until the page is full.
    fn of_dir(&self, dir: BorrowedFd<'_>, rel: &str, out: &mut Vec<ListEntry>) -> Result<()> {
        let entries = rustix::fs::Dir::read_from(dir).map_err(|e| self.list_err(rel, e.into()))?;
        count_work(1, 0);
        // (key, or key + "/" for a directory; whether it is a directory; the name in `dir`). The type
        // comes from the directory entry itself; only a file system that does not report it costs a
        // stat (never following a symlink).
        let mut children = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|e| self.list_err(rel, e.into()))?;
            let Ok(name) = entry.file_name().to_str() else {
                continue;
            };
            if name == "." || name == ".." || skipped(name) {
                continue;
            }
            let file_type = match entry.file_type() {
                FileType::Unknown => match beneath::stat_entry(dir, name) {
                    Ok(st) => beneath::file_type(&st),
                    Err(_) => continue,
                },
                known => known,
            };
            let key = format!("{rel}{name}");
            match file_type {
                FileType::Directory => {
                    let dir_key = format!("{key}/");
                    if worth_entering(&dir_key, self.prefix, self.after) {
                        children.push((dir_key, true, name.to_string()));
                    }
                }
                FileType::RegularFile
                    if key.starts_with(self.prefix)
                        && self.after.is_none_or(|a| key.as_str() > a) =>
                {
                    children.push((key, false, name.to_string()));
                }
                _ => {}
            }
        }
        children.sort_unstable();
        for (key, is_dir, name) in children {
            if out.len() >= self.limit {
                break;
            }
            if is_dir {
                // Removed since it was read, or replaced by a symlink: nothing below it to list.
                if let Ok(sub) =
                    beneath::open_beneath(dir, &name, OFlags::RDONLY | OFlags::DIRECTORY)
                {
                    self.of_dir(sub.as_fd(), &key, out)?;
                }
                continue;
            }
            let Ok(key) = Key::new(key) else { continue };
            count_work(0, 1);
            let Ok(st) = beneath::stat_entry(dir, &name) else {
                // Removed since the directory was read.
                continue;
            };
            if beneath::file_type(&st) == FileType::RegularFile {
                out.push(ListEntry {
                    key,
                    size: st.st_size as u64,
                    mtime: UNIX_EPOCH
                        + Duration::new(st.st_mtime.max(0) as u64, st.st_mtime_nsec as u32),
                });
            }
        }
        Ok(())
    }
}

/// Removes the partial files under `root` whose owner is gone (a process that crashed in the middle of
/// a write), and returns how many. Partial files of live instances (this process, another server or a
/// dispatcher on the same prefix) are kept. Server state directories are swept too (Swift metadata
/// records are written through partial files like any other), except another archive root nested in
/// this one (a tiered backend's cold tier): its partial files name owners registered there, and its
/// backend sweeps it.
///
/// The walk goes on past what it cannot read (a `lost+found` readable only by root, a directory or
/// file removed while it runs), logging it: one bad directory must not keep the server from starting.
/// Blocking: call it off the async runtime.
pub fn sweep_partials(root: &Path) -> std::io::Result<usize> {
    sweep_with(root, |_| {})
}

/// [`sweep_partials`], calling `listed` after each directory has been read and before its entries
/// are handled (tests remove entries there, as a concurrent process could).
fn sweep_with(root: &Path, mut listed: impl FnMut(&Path)) -> std::io::Result<usize> {
    // The root itself must be readable: without it nothing could be stored either.
    std::fs::read_dir(root)?;
    let mut owners = Owners::survey(root);
    let mut removed = 0;
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let entries: Vec<_> = match std::fs::read_dir(&dir) {
            Ok(entries) => entries.collect(),
            Err(e) => {
                skip(&dir, &e);
                continue;
            }
        };
        listed(&dir);
        for entry in entries {
            let entry = match entry {
                Ok(entry) => entry,
                Err(e) => {
                    skip(&dir, &e);
                    continue;
                }
            };
            let path = entry.path();
            let Ok(file_type) = entry.file_type() else {
                continue;
            };
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if file_type.is_dir() {
                let nested_root = path.join(INSTANCES_DIR).is_dir();
                if name != INSTANCES_DIR && !nested_root {
                    stack.push(path);
                }
            } else if file_type.is_file() && is_partial_name(&name) {
                let owner = partial_owner(&name).unwrap_or_default();
                if owners.is_alive(owner) {
                    continue;
                }
                match std::fs::remove_file(&path) {
                    Ok(()) => removed += 1,
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => skip(&path, &e),
                }
            }
        }
    }
    owners.forget_dead();
    Ok(removed)
}

fn skip(path: &Path, error: &std::io::Error) {
    // Vanished since it was listed: nothing to sweep there.
    if error.kind() != std::io::ErrorKind::NotFound {
        tracing::warn!(path = %path.display(), %error, "sweep of partial files: skipped");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::instance::Instance;
    use std::path::PathBuf;

    const DEAD: &str = "deadbeefdeadbeef";

    fn touch(path: PathBuf) -> PathBuf {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, b"half").unwrap();
        path
    }

    /// What a crashed instance leaves: its lock file, no longer locked by anyone.
    fn crashed_instance(root: &Path) -> PathBuf {
        touch(root.join(INSTANCES_DIR).join(format!("{DEAD}.lock")))
    }

    #[test]
    fn only_partials_whose_owner_is_gone_are_removed() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let live = Instance::register(root).unwrap();
        let dead_lock = crashed_instance(root);
        let kept = [
            touch(root.join(format!("1/.data.{}-1.partial", live.id()))),
            touch(root.join(format!(
                ".archiveinterface-swift/o/.r.{}-2.partial",
                live.id()
            ))),
            // Another archive root inside this one (a cold tier): swept by its own backend.
            touch(root.join(format!(
                ".archiveinterface-cold/{INSTANCES_DIR}/{DEAD}.lock"
            ))),
            touch(root.join(format!(".archiveinterface-cold/t/.x.{DEAD}-3.partial"))),
            touch(root.join("1/data")),
        ];
        let gone = [
            touch(root.join(format!("1/.other.{DEAD}-4.partial"))),
            // Metadata records are written through partial files too.
            touch(root.join(format!(".archiveinterface-swift/o/.r.{DEAD}-5.partial"))),
            // A name from an older version (a process id), and an owner that never registered.
            touch(root.join("2/.legacy.1234-6.partial")),
            touch(root.join(".x.0123456789abcdef-7.partial")),
        ];
        assert_eq!(sweep_partials(root).unwrap(), gone.len());
        for path in &kept {
            assert!(path.exists(), "removed: {}", path.display());
        }
        for path in &gone {
            assert!(!path.exists(), "kept: {}", path.display());
        }
        assert!(!dead_lock.exists(), "the dead instance's lock file stays");
        drop(live);
        assert_eq!(
            std::fs::read_dir(root.join(INSTANCES_DIR)).unwrap().count(),
            0,
            "an instance removes its lock file when it goes"
        );
    }

    #[test]
    fn the_sweep_goes_on_when_entries_vanish_under_it() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        crashed_instance(root);
        let top = touch(root.join(format!(".top.{DEAD}-1.partial")));
        touch(root.join(format!("a/b/.x.{DEAD}-2.partial")));
        touch(root.join(format!("c/.y.{DEAD}-3.partial")));
        let later = touch(root.join(format!("d/.z.{DEAD}-4.partial")));
        // Between reading the root and handling its entries, another process removes a file and a
        // directory, and replaces a directory by a file.
        let removed = sweep_with(root, |listed| {
            if listed == root {
                std::fs::remove_file(&top).unwrap();
                std::fs::remove_dir_all(root.join("a")).unwrap();
                std::fs::remove_dir_all(root.join("c")).unwrap();
                std::fs::write(root.join("c"), b"now a file").unwrap();
            }
        })
        .unwrap();
        assert_eq!(removed, 1);
        assert!(!later.exists());
    }

    #[test]
    fn a_page_reads_and_stats_only_what_it_returns() {
        let dir = tempfile::tempdir().unwrap();
        for d in 0..10 {
            std::fs::create_dir(dir.path().join(format!("d{d}"))).unwrap();
            for f in 0..10 {
                std::fs::write(dir.path().join(format!("d{d}/f{f}")), b"x").unwrap();
            }
        }
        WORK.with(|w| w.set((0, 0)));
        let root = RootDir::open(dir.path().to_path_buf()).unwrap();
        let page = list_page(&root, "", Some("d4/f7"), 5).unwrap();
        let keys: Vec<&str> = page.iter().map(|e| e.key.as_str()).collect();
        assert_eq!(keys, ["d4/f8", "d4/f9", "d5/f0", "d5/f1", "d5/f2"]);
        // The root, d4 and d5: not d0..d3 (before `after`) nor d6..d9 (after the page filled).
        assert_eq!(WORK.with(|w| w.get()), (3, 5));
    }
}
