//! PATCH: moving a server-side file in under a key.
//!
//! The source is opened once, without following any symlink on its path, and checked through that
//! handle (a regular file, not inside the archive). Everything after works on the handle, never on the
//! name again: on the same file system the checked inode itself is hard-linked into the target
//! directory under a partial name (`linkat` of `/proc/self/fd/N`), made read-only and fsynced, linked
//! in under the key and the directory fsynced; only then is the source name removed (if it still names
//! that inode) and its directory fsynced. A crash in between leaves the file under both names, never
//! under neither. Where a link is impossible (another file system, a file the server does not own, no
//! `/proc`), the handle's content is copied through a partial file like a PUT instead.
//!
//! Swapping the source name for a symlink or a directory at any moment therefore cannot bring anything
//! else in: what is linked or copied is the inode that was checked.

use crate::beneath::{self, open_beneath, split_parent, RootDir};
use crate::error::PosixError;
use crate::instance::Instance;
use crate::staging::{partial_name_for, Staged, TargetDir};
use archive_core::{Error, Key, PutOptions, Result};
use rustix::fs::{AtFlags, FileType, Mode, OFlags, CWD};
use rustix::io::Errno;
use std::fs::File;
use std::io;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The checked source: its directory, its name there, the open file and its identity.
struct Source {
    path: PathBuf,
    dir: OwnedFd,
    name: String,
    file: File,
    meta: std::fs::Metadata,
}

/// Moves the file at the absolute path `source` in under `key` (see the module documentation).
pub(crate) fn adopt(
    key: &Key,
    root: &RootDir,
    instance: &Arc<Instance>,
    source: &Path,
    overwrite: bool,
) -> Result<()> {
    let source = open_source(key, root, source)?;
    let options = PutOptions {
        overwrite,
        mtime: source.meta.modified().ok(),
        expected_len: Some(source.meta.len()),
    };
    let target = TargetDir::open(key.clone(), root)?;
    if !overwrite && beneath::stat_entry(target.dir.as_fd(), &target.name).is_ok() {
        return Err(Error::AlreadyExists {
            key: key.to_string(),
        });
    }
    if !link_checked_inode(&source, &target, instance, overwrite)? {
        let mut from = source
            .file
            .try_clone()
            .map_err(|e| PosixError::Read(source.path.clone(), e).into_core(key))?;
        let mut staged = Staged::create(key.clone(), root, Arc::clone(instance))?;
        staged.copy_from(&mut from)?;
        staged.commit(&options)?;
    }
    remove_source(key, &source)
}

/// Opens the source's directory and the source itself, symlinks refused all the way from `/`, and
/// checks it is a regular file outside the archive.
fn open_source(key: &Key, root: &RootDir, source: &Path) -> Result<Source> {
    let refused = |why: &str| {
        Error::InvalidArgument(format!(
            "Can't move {} into the archive: {why}",
            source.display()
        ))
    };
    let (Some(rel), Some(name)) = (
        source
            .strip_prefix("/")
            .ok()
            .and_then(|p| p.to_str())
            .filter(|p| !p.is_empty()),
        source.file_name().and_then(|n| n.to_str()),
    ) else {
        return Err(refused("not an absolute file path"));
    };
    let (dir_rel, _) = split_parent(rel);
    let open_err = |e: io::Error| {
        if beneath::is_symlink_refusal(&e) {
            refused("its path goes through a symlink")
        } else if e.kind() == io::ErrorKind::NotFound {
            Error::NotFound {
                key: source.display().to_string(),
            }
        } else {
            PosixError::Open(source.to_path_buf(), e).into_core(key)
        }
    };
    let slash = rustix::fs::open(
        "/",
        OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| open_err(e.into()))?;
    let dir = open_beneath(slash.as_fd(), dir_rel, OFlags::RDONLY | OFlags::DIRECTORY)
        .map_err(open_err)?;
    if beneath::is_within(dir.as_fd(), root.fd()).map_err(open_err)? {
        return Err(refused("it is inside the archive already"));
    }
    let file = match open_beneath(dir.as_fd(), name, OFlags::RDONLY | OFlags::NONBLOCK) {
        Err(e) if beneath::is_symlink_refusal(&e) => return Err(refused("it is a symlink")),
        other => File::from(other.map_err(open_err)?),
    };
    let meta = file.metadata().map_err(open_err)?;
    if !meta.is_file() {
        return Err(refused("it is not a regular file"));
    }
    Ok(Source {
        path: source.to_path_buf(),
        dir,
        name: name.to_string(),
        file,
        meta,
    })
}

/// Links the checked inode in under the key, read-only and durable. `Ok(false)` when it cannot be
/// linked (another file system, not the server's to make read-only, no `/proc`): then it is copied.
fn link_checked_inode(
    source: &Source,
    target: &TargetDir,
    instance: &Instance,
    overwrite: bool,
) -> Result<bool> {
    let key = &target.key;
    let partial = partial_name_for(&target.name, instance);
    let handle = format!("/proc/self/fd/{}", source.file.as_raw_fd());
    match rustix::fs::linkat(CWD, &handle, &target.dir, &partial, AtFlags::SYMLINK_FOLLOW) {
        Ok(()) => {}
        Err(Errno::XDEV | Errno::PERM | Errno::ACCESS | Errno::NOENT) => return Ok(false),
        Err(e) => {
            return Err(
                PosixError::Move(source.path.clone(), target.path.join(&partial), e.into())
                    .into_core(key),
            )
        }
    }
    let unlink_partial = || {
        let _ = rustix::fs::unlinkat(&target.dir, &partial, AtFlags::empty());
    };
    // Read-only like every archive file; a file of another user cannot be changed: copy it instead.
    match rustix::fs::fchmod(&source.file, Mode::from_raw_mode(0o444)) {
        Ok(()) => {}
        Err(Errno::PERM) => {
            unlink_partial();
            return Ok(false);
        }
        Err(e) => {
            unlink_partial();
            return Err(PosixError::SetMode(source.path.clone(), e.into()).into_core(key));
        }
    }
    let linked = beneath::sync_file(&source.file)
        .map_err(|e| PosixError::Sync(source.path.clone(), e).into_core(key))
        .and_then(|()| target.link_in(&partial, overwrite));
    if linked.is_err() {
        // Nothing moved in: the source stays as it was, mode included.
        unlink_partial();
        use std::os::unix::fs::PermissionsExt;
        let mode = source.meta.permissions().mode() & 0o7777;
        let _ = rustix::fs::fchmod(&source.file, Mode::from_raw_mode(mode));
    }
    linked.map(|()| true)
}

/// Removes the source name, if it still names the inode that was moved in, and makes that durable. A
/// name that was replaced meanwhile is left alone: it is not what was moved in.
fn remove_source(key: &Key, source: &Source) -> Result<()> {
    use std::os::unix::fs::MetadataExt;
    let err = |e: io::Error| PosixError::Remove(source.path.clone(), e).into_core(key);
    let still_ours = beneath::stat_entry(source.dir.as_fd(), &source.name).is_ok_and(|st| {
        beneath::file_type(&st) == FileType::RegularFile
            && (st.st_dev, st.st_ino) == (source.meta.dev(), source.meta.ino())
    });
    if !still_ours {
        tracing::warn!(source = %source.path.display(), "the source was replaced while it was moved in; the new file is left in place");
        return Ok(());
    }
    match rustix::fs::unlinkat(&source.dir, &source.name, AtFlags::empty()) {
        // Removed by someone else meanwhile: the file is in the archive all the same.
        Ok(()) | Err(Errno::NOENT) => {}
        Err(e) => return Err(err(e.into())),
    }
    beneath::sync_dir(source.dir.as_fd()).map_err(err)
}
