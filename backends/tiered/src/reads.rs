//! When each file on the disk tier was last read through this process, for the release policy's
//! least-recently-used order on filesystems mounted `noatime`. Entries go when their file leaves the
//! disk tier (delete, release), and the log is bounded: past its capacity the oldest reads are
//! forgotten (those files fall back to their atime and mtime, which only makes them look older).

use archive_core::Key;
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::SystemTime;

/// Most reads remembered; a few MiB of memory at most.
const CAPACITY: usize = 100_000;

#[derive(Debug)]
pub(crate) struct ReadLog {
    // A std Mutex is fine: held only for map operations, never across an `.await`.
    reads: Mutex<HashMap<Key, SystemTime>>,
    capacity: usize,
}

impl Default for ReadLog {
    fn default() -> Self {
        ReadLog::with_capacity(CAPACITY)
    }
}

impl ReadLog {
    pub(crate) fn with_capacity(capacity: usize) -> ReadLog {
        ReadLog {
            reads: Mutex::new(HashMap::new()),
            capacity: capacity.max(1),
        }
    }

    fn reads(&self) -> std::sync::MutexGuard<'_, HashMap<Key, SystemTime>> {
        self.reads.lock().expect("read log poisoned")
    }

    /// Notes a read of `key` now.
    pub(crate) fn record(&self, key: &Key) {
        let mut reads = self.reads();
        reads.insert(key.clone(), SystemTime::now());
        if reads.len() > self.capacity {
            // Down to three quarters at once, so the O(n) trim runs once per n/4 new keys.
            let keep = self.capacity - self.capacity / 4;
            let mut times: Vec<SystemTime> = reads.values().copied().collect();
            let drop = times.len() - keep;
            let (_, cutoff, _) = times.select_nth_unstable(drop - 1);
            let cutoff = *cutoff;
            let mut dropped = 0;
            reads.retain(|_, at| {
                let old = *at <= cutoff && dropped < drop;
                dropped += usize::from(old);
                !old
            });
        }
    }

    /// Forgets `key` (its file left the disk tier).
    pub(crate) fn forget(&self, key: &Key) {
        self.reads().remove(key);
    }

    /// Every remembered read.
    pub(crate) fn snapshot(&self) -> HashMap<Key, SystemTime> {
        self.reads().clone()
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.reads().len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(n: usize) -> Key {
        Key::new(format!("k{n}")).unwrap()
    }

    #[test]
    fn the_log_stays_bounded_and_keeps_the_latest_reads() {
        let log = ReadLog::with_capacity(8);
        for n in 0..50 {
            log.record(&key(n));
            // Distinct times, so "oldest" is well defined on coarse clocks too.
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        assert!(log.len() <= 8, "{} entries", log.len());
        let kept = log.snapshot();
        assert!(kept.contains_key(&key(49)), "{kept:?}");
        assert!(!kept.contains_key(&key(0)), "{kept:?}");
    }

    #[test]
    fn forgetting_removes_the_entry() {
        let log = ReadLog::default();
        log.record(&key(1));
        log.forget(&key(1));
        assert_eq!(log.len(), 0);
    }
}
