//! One owner per tiered archive: the catalog, the tape append points and the partial-file sweep all
//! assume that a single process holds the prefix. Opening takes an exclusive `flock` on a lock file in
//! the state directory and keeps it for the life of the backend; a second process is refused with the
//! holder's description (pid, host, start time, command line), which the holder writes into the file.
//!
//! The lock decides, not the file: a holder that died (even by SIGKILL) releases its `flock` with its
//! last descriptor, so a stale file never blocks a restart. The description is rewritten by every new
//! holder and is only informative.

use crate::error::OpenError;
use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

/// Name of the lock file in the state directory.
pub(crate) const OWNER_LOCK: &str = "owner.lock";

/// The held lock; dropping it (with the backend) lets the next process in.
#[derive(Debug)]
pub(crate) struct OwnerLock {
    /// Kept open: closing the last descriptor releases the `flock`.
    _file: File,
}

impl OwnerLock {
    /// Takes the lock in `state_dir`, or fails naming the process that holds it. Never waits.
    pub(crate) fn acquire(state_dir: &Path) -> Result<OwnerLock, OpenError> {
        let path = state_dir.join(OWNER_LOCK);
        let io = |what, source| OpenError::Io {
            what,
            path: path.clone(),
            source,
        };
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(|e| io("open the owner lock", e))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                return Err(OpenError::Held {
                    holder: describe_holder(&mut file),
                    path,
                })
            }
            Err(TryLockError::Error(e)) => return Err(io("lock the owner lock", e)),
        }
        // Ours now: replace the previous holder's description with our own.
        let about = this_process();
        file.set_len(0)
            .and_then(|()| file.seek(SeekFrom::Start(0)))
            .and_then(|_| file.write_all(about.as_bytes()))
            .map_err(|e| io("write the owner lock", e))?;
        Ok(OwnerLock { _file: file })
    }
}

/// What the holder wrote about itself (it may still be writing it: a racing reader sees less, never an
/// error).
fn describe_holder(file: &mut File) -> String {
    let mut text = String::new();
    let _ = file.read_to_string(&mut text);
    let text = text.trim();
    if text.is_empty() {
        "another process (it has not described itself yet)".to_string()
    } else {
        text.to_string()
    }
}

/// `pid 123 on host h, started at unix time 1790000000, command: ...`, one line.
fn this_process() -> String {
    let started = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default();
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "an unknown host".to_string());
    let command: Vec<String> = std::env::args().collect();
    format!(
        "pid {} on host {host}, started at unix time {started}, command: {}\n",
        std::process::id(),
        command.join(" ")
    )
}
