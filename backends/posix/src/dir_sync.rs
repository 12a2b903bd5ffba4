//! Group commit of directory fsyncs: concurrent writes that each linked a file into the same directory
//! share one fsync of it.
//!
//! A new name is durable once an fsync of its directory that *started after the rename returned* has
//! returned. So every write, right after its rename, takes a ticket on its directory; one caller at a
//! time (the leader) fsyncs the directory and, when that returns, marks every ticket issued before the
//! fsync started as covered. A caller whose ticket is not covered yet waits; when no fsync is running
//! it becomes the leader itself. Under load one fsync covers all the renames that arrived while the
//! previous one ran, instead of each write paying for its own; alone, a write pays exactly one fsync,
//! as before. A failed fsync fails every write it was to cover (none of them is acknowledged).
//!
//! Directories are told apart by `(device, inode)`, so writes through different handles (or different
//! backends) on one directory share its fsyncs. Callers are blocking-pool threads.

use crate::beneath;
use std::collections::HashMap;
use std::io;
use std::os::fd::BorrowedFd;
use std::sync::{Arc, Condvar, LazyLock, Mutex, MutexGuard, PoisonError};

/// A directory, by `(device, inode)`.
type DirId = (u64, u64);

/// The directories some write is syncing now; an entry lives while it has users.
static GROUPS: LazyLock<Mutex<HashMap<DirId, Arc<Group>>>> = LazyLock::new(Default::default);

/// The fsync state of one directory.
#[derive(Default)]
struct Group {
    state: Mutex<State>,
    /// Signalled whenever an fsync of the directory returns.
    finished: Condvar,
}

#[derive(Default)]
struct State {
    /// Tickets issued so far (one per rename that returned).
    issued: u64,
    /// Every ticket up to this one is covered by an fsync that returned successfully.
    covered: u64,
    /// An fsync of the directory is running.
    syncing: bool,
    /// The latest fsync that failed: the last ticket it was to cover, and its error.
    failed: Option<(u64, io::ErrorKind, String)>,
    /// Callers holding this group (the registry entry is removed with the last one).
    users: usize,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Makes the directory `dir` durable after an entry in it changed (the change must have returned
/// before this call): returns once an fsync of it that started after this call began has returned.
pub(crate) fn sync_after_change(dir: BorrowedFd<'_>) -> io::Result<()> {
    let st = rustix::fs::fstat(dir)?;
    sync_shared((st.st_dev, st.st_ino), || beneath::sync_dir(dir))
}

/// The group commit for the directory `id`, with `sync` as its fsync.
fn sync_shared(id: DirId, sync: impl FnOnce() -> io::Result<()>) -> io::Result<()> {
    let group = {
        let mut groups = lock(&GROUPS);
        let group = Arc::clone(groups.entry(id).or_default());
        lock(&group.state).users += 1;
        group
    };
    let result = group.wait_or_lead(sync);
    let mut groups = lock(&GROUPS);
    let mut state = lock(&group.state);
    state.users -= 1;
    if state.users == 0 {
        groups.remove(&id);
    }
    result
}

impl Group {
    fn wait_or_lead(&self, sync: impl FnOnce() -> io::Result<()>) -> io::Result<()> {
        let mut state = lock(&self.state);
        state.issued += 1;
        let ticket = state.issued;
        loop {
            if state.covered >= ticket {
                return Ok(());
            }
            if let Some((up_to, kind, message)) = &state.failed {
                if *up_to >= ticket {
                    return Err(io::Error::new(*kind, message.clone()));
                }
            }
            if !state.syncing {
                break;
            }
            state = self
                .finished
                .wait(state)
                .unwrap_or_else(PoisonError::into_inner);
        }
        // Lead: this fsync starts after every ticket issued so far, so it covers them all.
        state.syncing = true;
        let covers = state.issued;
        drop(state);
        let mut leading = Leading {
            group: self,
            outcome: None,
        };
        let result = sync();
        leading.outcome = Some(match &result {
            Ok(()) => Ok(covers),
            Err(e) => Err((covers, e.kind(), e.to_string())),
        });
        drop(leading);
        result
    }
}

/// The leader's fsync in progress; dropping it (also by unwinding) publishes the outcome and wakes
/// the waiters, so that none waits for an fsync that will never return.
struct Leading<'a> {
    group: &'a Group,
    /// `Ok(last ticket covered)` or the failure; `None` if the fsync never returned (a panic).
    outcome: Option<Result<u64, (u64, io::ErrorKind, String)>>,
}

impl Drop for Leading<'_> {
    fn drop(&mut self) {
        let mut state = lock(&self.group.state);
        state.syncing = false;
        match self.outcome.take() {
            Some(Ok(covers)) => state.covered = state.covered.max(covers),
            Some(Err(failure)) => state.failed = Some(failure),
            None => {}
        }
        self.group.finished.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
    use std::time::Duration;

    /// A clock of events: each caller's ticket time and each fsync's start and end.
    static CLOCK: AtomicU64 = AtomicU64::new(0);

    fn tick() -> u64 {
        CLOCK.fetch_add(1, Ordering::SeqCst)
    }

    #[test]
    fn concurrent_callers_share_fsyncs_and_each_returns_after_one_that_started_after_it() {
        let id = (u64::MAX, 1);
        let syncs = Arc::new(Mutex::new(Vec::<(u64, u64)>::new()));
        let callers = 24;
        let threads: Vec<_> = (0..callers)
            .map(|_| {
                let syncs = Arc::clone(&syncs);
                std::thread::spawn(move || {
                    let changed = tick();
                    sync_shared(id, || {
                        let start = tick();
                        std::thread::sleep(Duration::from_millis(20));
                        let end = tick();
                        lock(&syncs).push((start, end));
                        Ok(())
                    })
                    .unwrap();
                    (changed, tick())
                })
            })
            .collect();
        let calls: Vec<(u64, u64)> = threads.into_iter().map(|t| t.join().unwrap()).collect();
        let syncs = lock(&syncs).clone();
        assert!(
            syncs.len() < callers,
            "{} callers made {} fsyncs: none was shared",
            callers,
            syncs.len()
        );
        for (changed, returned) in calls {
            assert!(
                syncs
                    .iter()
                    .any(|&(start, end)| start > changed && end < returned),
                "a caller (changed at {changed}, returned at {returned}) returned without an fsync \
                 that started after its change: {syncs:?}"
            );
        }
        assert!(
            lock(&GROUPS).get(&id).is_none(),
            "the group outlived its users"
        );
    }

    #[test]
    fn a_failed_fsync_fails_the_callers_it_was_to_cover_and_the_next_one_syncs_again() {
        let id = (u64::MAX, 2);
        let failing = sync_shared(id, || Err(io::Error::other("device gone")));
        assert_eq!(failing.unwrap_err().to_string(), "device gone");
        let calls = AtomicUsize::new(0);
        sync_shared(id, || {
            calls.fetch_add(1, Ordering::SeqCst);
            Ok(())
        })
        .unwrap();
        assert_eq!(
            calls.load(Ordering::SeqCst),
            1,
            "a later change is synced anew"
        );
    }

    #[test]
    fn a_lone_caller_pays_exactly_one_fsync() {
        let id = (u64::MAX, 3);
        for _ in 0..3 {
            let calls = AtomicUsize::new(0);
            sync_shared(id, || {
                calls.fetch_add(1, Ordering::SeqCst);
                Ok(())
            })
            .unwrap();
            assert_eq!(calls.load(Ordering::SeqCst), 1);
        }
    }
}
