//! Per-key locks: state transitions of one key (put, delete, migrate, release, recall) never overlap.
//!
//! Lock order, to rule out deadlocks: a tape drive is always acquired before a key lock, and nothing
//! waits for a drive while holding a key lock.

use archive_core::Key;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use tokio::sync::{Mutex as AsyncMutex, OwnedMutexGuard};

#[derive(Debug, Default)]
pub(crate) struct KeyLocks {
    // A std Mutex is fine: it is held only to look up or insert an entry, never across an `.await`.
    table: Mutex<HashMap<Key, Arc<AsyncMutex<()>>>>,
}

/// Held while a key's state changes; dropping it releases the key (and forgets the entry when no one
/// else wants it, so the table stays as small as the set of busy keys).
#[derive(Debug)]
pub(crate) struct KeyGuard<'a> {
    locks: &'a KeyLocks,
    key: Key,
    guard: Option<OwnedMutexGuard<()>>,
}

impl KeyLocks {
    pub(crate) async fn lock(&self, key: &Key) -> KeyGuard<'_> {
        let mutex = {
            let mut table = self.table.lock().expect("key lock table poisoned");
            Arc::clone(table.entry(key.clone()).or_default())
        };
        let guard = mutex.lock_owned().await;
        KeyGuard {
            locks: self,
            key: key.clone(),
            guard: Some(guard),
        }
    }
}

impl Drop for KeyGuard<'_> {
    fn drop(&mut self) {
        let mut table = self.locks.table.lock().expect("key lock table poisoned");
        self.guard.take();
        if let Some(mutex) = table.get(&self.key) {
            // Only the table holds it: nobody is waiting.
            if Arc::strong_count(mutex) == 1 {
                table.remove(&self.key);
            }
        }
    }
}
