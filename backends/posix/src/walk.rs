//! Walking the archive tree: prefix listings, and the start-up sweep that removes partial files left
//! by a crash in the middle of a write.

use crate::error::PosixError;
use crate::is_partial_name;
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

/// Removes partial files under `root` left by writes that a crash interrupted, and returns how many.
/// Meant for start-up, before this server accepts writes: a partial file then belongs to no one.
pub fn sweep_partials(root: &Path) -> std::io::Result<usize> {
    let mut removed = 0;
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir)? {
            let entry = entry?;
            let file_type = entry.file_type()?;
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if file_type.is_dir() && !name.starts_with(STATE_DIR_PREFIX) {
                stack.push(entry.path());
            } else if file_type.is_file() && is_partial_name(&name) {
                std::fs::remove_file(entry.path())?;
                removed += 1;
            }
        }
    }
    Ok(removed)
}
