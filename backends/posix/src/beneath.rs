//! How every path in the archive (and every PATCH source) is resolved: relative to a directory handle,
//! one plain component after another, never through a symlink. A symlink anywhere in a path makes the
//! open fail with `ELOOP` instead of leading somewhere else, so no operation can read, write, stat or
//! delete outside the prefix through one, whether it was there before or swapped in mid-request.
//!
//! The kernel does the whole walk in one call where it can (`openat2` with `RESOLVE_BENEATH |
//! RESOLVE_NO_SYMLINKS`); where `openat2` is missing (old kernels, some container sandboxes answer
//! `ENOSYS`) the same rule is kept by opening one component at a time with `O_NOFOLLOW`.
//!
//! Directories created on the way to a new file are made durable here too: each one is fsynced into
//! its parent, so that a file acknowledged after its own directory's fsync cannot vanish with a
//! directory entry above it that never reached the disk.
//!
//! [`open_cached`] is the same resolution restricted to what the kernel has cached (`RESOLVE_CACHED`),
//! for callers on the async threads that must never wait for a disk.

use rustix::fs::{AtFlags, FileType, Mode, OFlags, ResolveFlags};
use rustix::io::Errno;
use std::fs::File;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

/// Set once `openat2` answered `ENOSYS`: from then on the component walk is used directly.
static NO_OPENAT2: AtomicBool = AtomicBool::new(false);
/// Test hook: resolve with the component walk even where `openat2` exists.
static FORCE_WALK: AtomicBool = AtomicBool::new(false);
/// Test hook: every fsync and every name linked in, in the order they returned, while recording is on.
static EVENTS: Mutex<Option<Vec<DurabilityEvent>>> = Mutex::new(None);
static RECORD_SYNCS: AtomicBool = AtomicBool::new(false);

/// One step that makes a write durable, as recorded for tests (see [`record_syncs`]).
#[doc(hidden)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DurabilityEvent {
    /// An fsync of the file or directory `(device, inode)` returned successfully.
    Synced((u64, u64)),
    /// The rename that linked `name` into the directory `(device, inode)` returned successfully.
    Linked((u64, u64), String),
}

/// Makes every later resolution use the `O_NOFOLLOW` component walk instead of `openat2`, as on a
/// kernel without it. For tests of that path; process-wide.
#[doc(hidden)]
pub fn force_component_walk() {
    FORCE_WALK.store(true, Ordering::Relaxed);
}

/// Starts recording the `(device, inode)` of every file and directory the backend fsyncs, and every
/// name it links in, in order. For tests that check what is made durable and when; process-wide.
#[doc(hidden)]
pub fn record_syncs() {
    EVENTS.lock().unwrap().get_or_insert_with(Vec::new);
    RECORD_SYNCS.store(true, Ordering::Relaxed);
}

/// What was fsynced since [`record_syncs`], as `(device, inode)`.
#[doc(hidden)]
pub fn synced() -> Vec<(u64, u64)> {
    durability_events()
        .into_iter()
        .filter_map(|event| match event {
            DurabilityEvent::Synced(id) => Some(id),
            DurabilityEvent::Linked(..) => None,
        })
        .collect()
}

/// Every fsync and link since [`record_syncs`], in the order they returned.
#[doc(hidden)]
pub fn durability_events() -> Vec<DurabilityEvent> {
    EVENTS.lock().unwrap().clone().unwrap_or_default()
}

fn record(event: impl FnOnce() -> io::Result<DurabilityEvent>) -> io::Result<()> {
    if RECORD_SYNCS.load(Ordering::Relaxed) {
        let event = event()?;
        if let Some(log) = EVENTS.lock().unwrap().as_mut() {
            log.push(event);
        }
    }
    Ok(())
}

/// Records (for tests) that `name` was just linked into `dir`.
pub(crate) fn record_link(dir: BorrowedFd<'_>, name: &str) -> io::Result<()> {
    record(|| {
        let st = rustix::fs::fstat(dir)?;
        Ok(DurabilityEvent::Linked(
            (st.st_dev, st.st_ino),
            name.to_string(),
        ))
    })
}

/// Whether an error is the refusal of a symlink on the way (`ELOOP`).
pub(crate) fn is_symlink_refusal(e: &io::Error) -> bool {
    e.raw_os_error() == Some(Errno::LOOP.raw_os_error())
}

/// The archive's root directory: its path (for messages and `X-Pacifica-File`) and a handle every key
/// is resolved from.
#[derive(Debug, Clone)]
pub(crate) struct RootDir {
    path: PathBuf,
    fd: Arc<OwnedFd>,
    /// Whether cached files may be answered on async threads (see [`crate::cached`]).
    inline: bool,
}

impl RootDir {
    /// Opens the directory at `path` (itself resolved normally: it is configuration, not input).
    pub(crate) fn open(path: PathBuf) -> io::Result<Self> {
        let fd = rustix::fs::open(
            &path,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )?;
        Ok(RootDir {
            path,
            inline: crate::cached::may_answer_inline(&fd),
            fd: Arc::new(fd),
        })
    }

    /// Whether cached files under this root may be answered on async threads (a local file system).
    pub(crate) fn answers_inline(&self) -> bool {
        self.inline
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    pub(crate) fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    /// Opens the file at `rel` for reading. A symlink anywhere on the way, the file included, is `ELOOP`.
    pub(crate) fn open_file(&self, rel: &str) -> io::Result<File> {
        // O_NONBLOCK: opening a FIFO someone planted must not hang a thread; no effect on regular files.
        open_beneath(self.fd(), rel, OFlags::RDONLY | OFlags::NONBLOCK).map(File::from)
    }

    /// The metadata of the entry at `rel` itself (a symlink is reported as one, never followed).
    pub(crate) fn metadata(&self, rel: &str) -> io::Result<std::fs::Metadata> {
        File::from(open_beneath(self.fd(), rel, OFlags::PATH)?).metadata()
    }

    /// Opens the existing directory at `rel` ("" is the root itself).
    pub(crate) fn open_dir(&self, rel: &str) -> io::Result<OwnedFd> {
        open_beneath(self.fd(), rel, OFlags::RDONLY | OFlags::DIRECTORY)
    }

    /// Opens the directory at `rel`, creating the missing ones durably (see [`create_dirs`]).
    pub(crate) fn create_dirs(&self, rel: &str) -> io::Result<OwnedFd> {
        create_dirs(self.fd(), rel)
    }
}

/// The plain components of a relative path; `.` is skipped, `..` and absolute parts are refused
/// (`EXDEV`, as `RESOLVE_BENEATH` answers).
fn components(rel: &str) -> io::Result<Vec<&str>> {
    Path::new(rel)
        .components()
        .filter(|c| !matches!(c, Component::CurDir))
        .map(|c| match c {
            Component::Normal(name) => name.to_str().ok_or_else(|| Errno::INVAL.into()),
            _ => Err(Errno::XDEV.into()),
        })
        .collect()
}

/// Opens `rel` beneath `base` with `flags`, following no symlink on the way (`ELOOP` if there is one;
/// with `O_PATH` a trailing symlink is opened as itself). `rel` may be empty for `base` itself.
pub(crate) fn open_beneath(base: BorrowedFd<'_>, rel: &str, flags: OFlags) -> io::Result<OwnedFd> {
    let flags = flags | OFlags::CLOEXEC | OFlags::NOFOLLOW;
    let rel = if rel.is_empty() { "." } else { rel };
    if !FORCE_WALK.load(Ordering::Relaxed) && !NO_OPENAT2.load(Ordering::Relaxed) {
        let resolve =
            ResolveFlags::BENEATH | ResolveFlags::NO_SYMLINKS | ResolveFlags::NO_MAGICLINKS;
        match rustix::fs::openat2(base, rel, flags, Mode::empty(), resolve) {
            Err(Errno::NOSYS) => NO_OPENAT2.store(true, Ordering::Relaxed),
            // A concurrent rename may make the kernel give up (EAGAIN); the walk has no such case. A
            // symlink where a directory is expected is ENOTDIR here: the walk tells it apart (ELOOP).
            // Some sandboxes answer EPERM for system calls they do not know. The walk keeps the same
            // rules, so falling back to it is never less safe.
            Err(Errno::AGAIN | Errno::NOTDIR | Errno::PERM) => {}
            other => return other.map_err(Into::into),
        }
    }
    walk(base, rel, flags)
}

/// Opens `rel` beneath `base` like [`open_beneath`], but only if every component is in the kernel's
/// lookup cache and on `base`'s own file system (`RESOLVE_CACHED | RESOLVE_NO_XDEV`): such an open never
/// waits for a disk, so it may run on an async thread. `None` whenever that is not certain (not
/// cached, no `openat2`, a symlink, a mount point, any error at all): the caller then resolves the
/// path on the blocking pool, which gives the precise answer.
pub(crate) fn open_cached(base: BorrowedFd<'_>, rel: &str, flags: OFlags) -> Option<OwnedFd> {
    if FORCE_WALK.load(Ordering::Relaxed) || NO_OPENAT2.load(Ordering::Relaxed) || rel.is_empty() {
        return None;
    }
    let flags = flags | OFlags::CLOEXEC | OFlags::NOFOLLOW;
    let resolve = ResolveFlags::BENEATH
        | ResolveFlags::NO_SYMLINKS
        | ResolveFlags::NO_MAGICLINKS
        | ResolveFlags::NO_XDEV
        | ResolveFlags::CACHED;
    rustix::fs::openat2(base, rel, flags, Mode::empty(), resolve).ok()
}

/// The `O_NOFOLLOW` walk: each directory is opened relative to the one before.
fn walk(base: BorrowedFd<'_>, rel: &str, flags: OFlags) -> io::Result<OwnedFd> {
    let parts = components(rel)?;
    let Some((last, dirs)) = parts.split_last() else {
        return Ok(rustix::fs::openat(base, ".", flags, Mode::empty())?);
    };
    let mut dir: Option<OwnedFd> = None;
    for name in dirs {
        let at = dir.as_ref().map_or(base, |d| d.as_fd());
        dir = Some(open_subdir(at, name, OFlags::PATH)?);
    }
    let at = dir.as_ref().map_or(base, |d| d.as_fd());
    if flags.contains(OFlags::DIRECTORY) {
        return open_subdir(at, last, flags);
    }
    Ok(rustix::fs::openat(at, *last, flags, Mode::empty())?)
}

/// Opens the directory `name` in `dir` without following it if it is a symlink. `O_DIRECTORY |
/// O_NOFOLLOW` answers `ENOTDIR` for a symlink; it is reported as the `ELOOP` `openat2` gives.
fn open_subdir(dir: BorrowedFd<'_>, name: &str, flags: OFlags) -> io::Result<OwnedFd> {
    let flags = flags | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    match rustix::fs::openat(dir, name, flags, Mode::empty()) {
        Err(Errno::NOTDIR) => {
            let is_link = rustix::fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW)
                .is_ok_and(|st| FileType::from_raw_mode(st.st_mode) == FileType::Symlink);
            Err(if is_link { Errno::LOOP } else { Errno::NOTDIR }.into())
        }
        other => Ok(other?),
    }
}

/// Opens the directory at `rel` beneath `base`, creating missing directories on the way. Each new
/// directory's entry is fsynced in its parent before going deeper, so every level created is durable
/// up to the first one that already existed. Symlinks are refused as in [`open_beneath`].
pub(crate) fn create_dirs(base: BorrowedFd<'_>, rel: &str) -> io::Result<OwnedFd> {
    // Usually the directory exists: one open settles it.
    match open_beneath(base, rel, OFlags::RDONLY | OFlags::DIRECTORY) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        other => return other,
    }
    let mut dir: Option<OwnedFd> = None;
    for name in components(rel)? {
        let at = dir.as_ref().map_or(base, |d| d.as_fd());
        let next = match open_subdir(at, name, OFlags::RDONLY) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                match rustix::fs::mkdirat(at, name, Mode::from_raw_mode(0o777)) {
                    Ok(()) => sync_dir(at)?,
                    // Created by a concurrent writer, which makes it durable itself.
                    Err(Errno::EXIST) => {}
                    Err(e) => return Err(e.into()),
                }
                open_subdir(at, name, OFlags::RDONLY)?
            }
            other => other?,
        };
        dir = Some(next);
    }
    match dir {
        Some(dir) => Ok(dir),
        None => open_beneath(base, rel, OFlags::RDONLY | OFlags::DIRECTORY),
    }
}

/// fsync of a directory, so that a new, renamed or removed entry in it survives a crash.
pub(crate) fn sync_dir(dir: BorrowedFd<'_>) -> io::Result<()> {
    sync(dir)
}

/// fsync of a file's data and metadata.
pub(crate) fn sync_file(file: &File) -> io::Result<()> {
    sync(file.as_fd())
}

fn sync(fd: BorrowedFd<'_>) -> io::Result<()> {
    rustix::fs::fsync(fd)?;
    record(|| {
        let st = rustix::fs::fstat(fd)?;
        Ok(DurabilityEvent::Synced((st.st_dev, st.st_ino)))
    })
}

/// Splits a relative path into its directory ("" at the top) and its last name.
pub(crate) fn split_parent(rel: &str) -> (&str, &str) {
    rel.rsplit_once('/').unwrap_or(("", rel))
}

/// The entry `name` in `dir` itself (a symlink is reported as one).
pub(crate) fn stat_entry(dir: BorrowedFd<'_>, name: &str) -> io::Result<rustix::fs::Stat> {
    Ok(rustix::fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW)?)
}

/// The type of a stat result.
pub(crate) fn file_type(st: &rustix::fs::Stat) -> FileType {
    FileType::from_raw_mode(st.st_mode)
}

/// Whether `dir` is `ancestor` or lies below it, found by walking `..` up to the file-system root
/// (compared by device and inode, so no path is re-resolved).
pub(crate) fn is_within(dir: BorrowedFd<'_>, ancestor: BorrowedFd<'_>) -> io::Result<bool> {
    let target = rustix::fs::fstat(ancestor)?;
    let target = (target.st_dev, target.st_ino);
    let mut current = rustix::fs::fstat(dir)?;
    let mut up = open_subdir(dir, "..", OFlags::PATH)?;
    loop {
        if (current.st_dev, current.st_ino) == target {
            return Ok(true);
        }
        let parent = rustix::fs::fstat(&up)?;
        if (parent.st_dev, parent.st_ino) == (current.st_dev, current.st_ino) {
            return Ok(false);
        }
        current = parent;
        up = open_subdir(up.as_fd(), "..", OFlags::PATH)?;
    }
}
