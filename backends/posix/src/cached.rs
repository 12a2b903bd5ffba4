//! Reads and stats answered straight from the kernel's caches, on the async thread that asked.
//!
//! A trip to the blocking pool costs more than opening, stat-ing and reading a small file that is
//! already in memory. So a GET or HEAD first tries the whole job with calls that cannot wait for a
//! disk: the path is resolved only from the dentry cache (`openat2` with `RESOLVE_CACHED`, see
//! [`crate::beneath::open_cached`]), the inode is in memory once it is open (`statx` on the descriptor),
//! and the data is read with `preadv2(RWF_NOWAIT)`, which answers `EAGAIN` instead of starting I/O.
//! Whenever any of that is not certain the answer is "not cached" and the caller does the same work on
//! the blocking pool, so a cold cache or a stalled device only delays the requests that touch it.
//!
//! Only on local file systems: on network and FUSE file systems even a stat of an open file may wait
//! for a server, so [`may_answer_inline`] turns this path off for them.

use crate::beneath::{self, RootDir};
use crate::status_from_metadata;
use archive_core::{FileStatus, GetResult, Key, ReadRange, Result};
use bytes::Bytes;
use futures::StreamExt;
use rustix::fs::OFlags;
use rustix::io::{Errno, ReadWriteFlags};
use std::fs::File;
use std::io::IoSliceMut;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

/// Largest range read inline: bigger reads are dominated by copying, not by the hop to the pool,
/// and would hold an async thread for longer than a network write of the same data.
pub(crate) const INLINE_READ_MAX: u64 = 256 << 10;

/// Set once `preadv2(RWF_NOWAIT)` answered that the file system does not support it.
static NOWAIT_UNSUPPORTED: AtomicBool = AtomicBool::new(false);
/// Reads and stats answered inline, for tests and diagnostics.
static ANSWERED_INLINE: AtomicU64 = AtomicU64::new(0);

/// How many reads and stats were answered from the caches on an async thread since start-up.
#[doc(hidden)]
pub fn answered_inline() -> u64 {
    ANSWERED_INLINE.load(Ordering::Relaxed)
}

/// Whether files under the directory `dir` may be answered inline: only on local file systems (by
/// `statfs` magic), whose stat of an open file and cached read never wait for a device.
pub(crate) fn may_answer_inline(dir: &impl std::os::fd::AsFd) -> bool {
    const LOCAL: [i64; 7] = [
        0xEF53,      // ext2/3/4
        0x5846_5342, // xfs
        0x9123_683E, // btrfs
        0x0102_1994, // tmpfs
        0xF2F5_2010, // f2fs
        0x2FC1_2FC1, // zfs
        0xCA45_1A4E, // bcachefs
    ];
    // `f_type`'s integer type differs between platforms.
    #[allow(clippy::unnecessary_cast)]
    rustix::fs::fstatfs(dir).is_ok_and(|st| LOCAL.contains(&(st.f_type as i64)))
}

/// The status of `key`, if everything needed is cached: `None` means "ask the blocking pool".
pub(crate) fn status(root: &RootDir, key: &Key) -> Option<Result<FileStatus>> {
    if !root.answers_inline() {
        return None;
    }
    let file = File::from(beneath::open_cached(root.fd(), key.as_str(), OFlags::PATH)?);
    let meta = file.metadata().ok()?;
    ANSWERED_INLINE.fetch_add(1, Ordering::Relaxed);
    Some(status_from_metadata(
        key,
        &root.path().join(key.as_str()),
        &meta,
    ))
}

/// A whole read of `range` of `key` (at most [`INLINE_READ_MAX`] bytes), if the path, the inode and
/// every byte are cached: `None` means "do it on the blocking pool".
pub(crate) fn read(root: &RootDir, key: &Key, range: ReadRange) -> Option<Result<GetResult>> {
    if !root.answers_inline() || NOWAIT_UNSUPPORTED.load(Ordering::Relaxed) {
        return None;
    }
    // O_NONBLOCK: a FIFO someone planted must not hang the thread; no effect on regular files.
    let flags = OFlags::RDONLY | OFlags::NONBLOCK;
    let file = File::from(beneath::open_cached(root.fd(), key.as_str(), flags)?);
    let meta = file.metadata().ok()?;
    let status = match status_from_metadata(key, &root.path().join(key.as_str()), &meta) {
        Ok(status) => status,
        Err(not_a_file) => return Some(Err(not_a_file)),
    };
    let range = range.resolve(status.size);
    let len = range.end - range.start;
    if len > INLINE_READ_MAX {
        return None;
    }
    let mut data = vec![0u8; len as usize];
    let mut done = 0;
    while done < data.len() {
        let mut slice = [IoSliceMut::new(&mut data[done..])];
        let offset = range.start + done as u64;
        match rustix::io::preadv2(&file, &mut slice, offset, ReadWriteFlags::NOWAIT) {
            Ok(n) if n > 0 => done += n,
            Err(Errno::INTR) => {}
            Err(Errno::OPNOTSUPP) => {
                NOWAIT_UNSUPPORTED.store(true, Ordering::Relaxed);
                return None;
            }
            // Not cached (EAGAIN), or the file shrank (0): the pool reads it and reports what it finds.
            _ => return None,
        }
    }
    ANSWERED_INLINE.fetch_add(1, Ordering::Relaxed);
    let chunk = Bytes::from(data);
    Some(Ok(GetResult {
        status,
        range,
        stream: futures::stream::once(async move { Ok(chunk) }).boxed(),
    }))
}
