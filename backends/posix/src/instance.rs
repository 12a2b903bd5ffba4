//! Who owns a partial file. Every process that opens an archive directory registers an *instance*: a
//! random id and a lock file `<root>/.archiveinterface-instances/<id>.lock` it holds `flock`ed for as
//! long as it may write. Partial files carry the id in their name, so the start-up sweep can tell the
//! uploads of a live process (its lock is held: keep them) from those of a crashed one (the lock is
//! free or gone: remove them). Process ids cannot serve: in containers every server is PID 1, and two
//! hosts sharing a prefix over NFS have unrelated PIDs.

use rustix::fs::FlockOperation;
use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// The directory under an archive root where live instances keep their lock files.
pub const INSTANCES_DIR: &str = ".archiveinterface-instances";
const LOCK_SUFFIX: &str = ".lock";
/// Hex digits of an instance id (64 random bits: unique among any realistic number of processes).
const ID_LEN: usize = 16;

/// This process's registration in one archive directory. Dropping it (after the last write that uses
/// it) removes the lock file.
#[derive(Debug)]
pub(crate) struct Instance {
    id: String,
    lock_path: PathBuf,
    /// Holds the `flock` for as long as the instance lives.
    _lock: File,
}

impl Instance {
    /// Registers a new instance under `root`: creates its lock file and locks it. Errors name the
    /// lock directory (a prefix this process cannot write to fails here, at start-up).
    pub(crate) fn register(root: &Path) -> io::Result<Instance> {
        let dir = root.join(INSTANCES_DIR);
        Self::register_in(&dir).map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("cannot register this process in {}: {e}", dir.display()),
            )
        })
    }

    fn register_in(dir: &Path) -> io::Result<Instance> {
        std::fs::create_dir_all(dir)?;
        loop {
            let id = new_id()?;
            let lock_path = dir.join(format!("{id}{LOCK_SUFFIX}"));
            let file = match OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&lock_path)
            {
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
                other => other?,
            };
            match rustix::fs::flock(&file, FlockOperation::NonBlockingLockExclusive) {
                Ok(()) => {}
                // A sweep took the fresh, still unlocked file for a dead instance's: it will remove
                // it. Start over under another id.
                Err(rustix::io::Errno::WOULDBLOCK) => continue,
                Err(e) => return Err(e.into()),
            }
            // Same reason: a sweep may have locked, removed and released the file before our flock.
            // Only a lock on the file still linked under the name counts.
            if still_linked(&lock_path, &file) {
                return Ok(Instance {
                    id,
                    lock_path,
                    _lock: file,
                });
            }
        }
    }

    /// The id partial files of this instance carry.
    pub(crate) fn id(&self) -> &str {
        &self.id
    }
}

impl Drop for Instance {
    fn drop(&mut self) {
        // Still locked here, so no sweep is deciding about this file while it goes.
        let _ = std::fs::remove_file(&self.lock_path);
    }
}

fn new_id() -> io::Result<String> {
    let mut bytes = [0u8; ID_LEN / 2];
    getrandom::fill(&mut bytes).map_err(io::Error::other)?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

fn still_linked(path: &Path, file: &File) -> bool {
    match (std::fs::metadata(path), file.metadata()) {
        (Ok(on_disk), Ok(held)) => on_disk.dev() == held.dev() && on_disk.ino() == held.ino(),
        _ => false,
    }
}

/// The sweep's view of the instances registered under one root: which are alive, asked once per id.
/// The locks of dead instances are held until [`Owners::forget_dead`], so none of them can be taken
/// for a live one while the sweep runs.
#[derive(Debug)]
pub(crate) struct Owners {
    dir: PathBuf,
    /// Per id: `None` while its owner is alive, `Some(lock)` (the lock file, locked by us, if there
    /// still is one) when it is gone.
    known: HashMap<String, Option<Option<File>>>,
}

impl Owners {
    /// Looks at every lock file under `root` (so that crashed instances without partial files are
    /// cleaned up too).
    pub(crate) fn survey(root: &Path) -> Owners {
        let mut owners = Owners {
            dir: root.join(INSTANCES_DIR),
            known: HashMap::new(),
        };
        let ids: Vec<String> = match std::fs::read_dir(&owners.dir) {
            Ok(entries) => entries
                .filter_map(|e| e.ok())
                .filter_map(|e| {
                    let name = e.file_name().into_string().ok()?;
                    Some(name.strip_suffix(LOCK_SUFFIX)?.to_string())
                })
                .collect(),
            Err(e) => {
                if e.kind() != io::ErrorKind::NotFound {
                    tracing::warn!(dir = %owners.dir.display(), error = %e, "cannot list the live instances; keeping every partial file");
                    // Unknown owners must not be taken for dead ones: treat everything as alive.
                    owners.dir = PathBuf::new();
                }
                Vec::new()
            }
        };
        for id in ids {
            owners.is_alive(&id);
        }
        owners
    }

    /// Whether the instance `id` still holds its lock. An id with no lock file (a crashed instance
    /// already cleaned up, or a name from an older version) has no owner.
    pub(crate) fn is_alive(&mut self, id: &str) -> bool {
        if self.dir.as_os_str().is_empty() {
            return true;
        }
        if let Some(state) = self.known.get(id) {
            return state.is_none();
        }
        let state = self.probe(id);
        let alive = state.is_none();
        self.known.insert(id.to_string(), state);
        alive
    }

    fn probe(&self, id: &str) -> Option<Option<File>> {
        if id.is_empty() || !id.bytes().all(|b| b.is_ascii_alphanumeric()) {
            return Some(None);
        }
        let path = self.dir.join(format!("{id}{LOCK_SUFFIX}"));
        let file = match File::open(&path) {
            Ok(file) => file,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Some(None),
            // Cannot tell: keep its files.
            Err(_) => return None,
        };
        match rustix::fs::flock(&file, FlockOperation::NonBlockingLockExclusive) {
            Ok(()) => Some(Some(file)),
            Err(_) => None,
        }
    }

    /// Removes the lock files of the dead instances seen (after their partial files are gone).
    pub(crate) fn forget_dead(self) {
        for (id, state) in self.known {
            if let Some(Some(file)) = state {
                let path = self.dir.join(format!("{id}{LOCK_SUFFIX}"));
                if still_linked(&path, &file) {
                    let _ = std::fs::remove_file(&path);
                }
            }
        }
    }
}
