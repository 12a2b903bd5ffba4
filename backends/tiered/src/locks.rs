//! Per-key locks: state transitions of one key (put, delete, migrate, release, recall) never overlap.
//!
//! Lock order, to rule out deadlocks: a tape drive is always acquired before a key lock, and nothing
//! waits for a drive while holding a key lock. Whoever holds a drive only *tries* a key lock: a key
//! that is busy (an upload in progress) is skipped and come back to later, with the drive given back
//! meanwhile ([`KeyLocks::wait_idle`]), so a slow upload never keeps a drive idle.

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
    fn mutex(&self, key: &Key) -> Arc<AsyncMutex<()>> {
        let mut table = self.table.lock().expect("key lock table poisoned");
        Arc::clone(table.entry(key.clone()).or_default())
    }

    fn guard(&self, key: &Key, guard: OwnedMutexGuard<()>) -> KeyGuard<'_> {
        KeyGuard {
            locks: self,
            key: key.clone(),
            guard: Some(guard),
        }
    }

    pub(crate) async fn lock(&self, key: &Key) -> KeyGuard<'_> {
        let guard = self.mutex(key).lock_owned().await;
        self.guard(key, guard)
    }

    /// The lock if the key is free now, `None` if someone holds it.
    pub(crate) fn try_lock(&self, key: &Key) -> Option<KeyGuard<'_>> {
        // A refused attempt leaves the entry to its holder, whose guard removes it.
        let guard = self.mutex(key).try_lock_owned().ok()?;
        Some(self.guard(key, guard))
    }

    /// Waits until whoever holds the key lets it go (without keeping it).
    pub(crate) async fn wait_idle(&self, key: &Key) {
        drop(self.lock(key).await);
    }

    fn forget_if_unused(&self, key: &Key) {
        let mut table = self.table.lock().expect("key lock table poisoned");
        if let Some(mutex) = table.get(key) {
            // Only the table holds it: nobody is waiting.
            if Arc::strong_count(mutex) == 1 {
                table.remove(key);
            }
        }
    }
}

impl Drop for KeyGuard<'_> {
    fn drop(&mut self) {
        self.guard.take();
        self.locks.forget_if_unused(&self.key);
    }
}
