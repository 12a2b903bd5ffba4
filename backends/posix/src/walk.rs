//! Walking the archive tree: prefix listings, and the start-up sweep that removes partial files left
//! by a crash in the middle of a write (only those whose owning instance is gone).

use crate::error::PosixError;
use crate::instance::{Owners, INSTANCES_DIR};
use crate::is_partial_name;
use crate::staging::partial_owner;
use archive_core::{Key, ListEntry, Result};
use std::path::Path;

/// Entries whose name starts with this are the server's own state, never archive files.
pub const STATE_DIR_PREFIX: &str = ".archiveinterface";

fn skipped(name: &str) -> bool {
    is_partial_name(name) || name.starts_with(STATE_DIR_PREFIX)
}

/// Every file under `root` whose key starts with `prefix`, sorted by key. Only the directory the prefix
/// points into is walked, not the whole tree.
pub(crate) fn list(root: &Path, prefix: &str) -> Result<Vec<ListEntry>> {
    let (dir_part, _) = prefix.rsplit_once('/').unwrap_or(("", prefix));
    let start = if dir_part.is_empty() {
        root.to_path_buf()
    } else {
        root.join(dir_part)
    };
    let mut out = Vec::new();
    let mut stack = vec![start];
    while let Some(dir) = stack.pop() {
        let entries = match std::fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) if e.kind() == std::io::ErrorKind::NotADirectory => continue,
            Err(e) => {
                return Err(archive_core::Error::backend(
                    "posix",
                    PosixError::List(dir, e),
                ))
            }
        };
        for entry in entries {
            let entry = entry.map_err(|e| {
                archive_core::Error::backend("posix", PosixError::List(dir.clone(), e))
            })?;
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            if skipped(name) {
                continue;
            }
            let path = entry.path();
            let Ok(rel) = path.strip_prefix(root) else {
                continue;
            };
            let Some(rel) = rel.to_str() else { continue };
            let Ok(file_type) = entry.file_type() else {
                continue;
            };
            if file_type.is_dir() {
                // Descend only where keys below can still match the prefix.
                let as_dir = format!("{rel}/");
                if as_dir.starts_with(prefix) || prefix.starts_with(&as_dir) {
                    stack.push(path);
                }
            } else if file_type.is_file() && rel.starts_with(prefix) {
                let Ok(key) = Key::new(rel) else { continue };
                let Ok(meta) = entry.metadata() else { continue };
                out.push(ListEntry {
                    key,
                    size: meta.len(),
                    mtime: meta.modified().unwrap_or(std::time::UNIX_EPOCH),
                });
            }
        }
    }
    out.sort_by(|a, b| a.key.cmp(&b.key));
    Ok(out)
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
