//! One async mutex per key (an aggregate id) with a command in flight: commands on one
//! aggregate queue behind each other inside a process instead of colliding in the store.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::Arc;

/// Entries go away with their last holder, so the map holds only keys in use right now.
pub struct KeyedLocks<K> {
    map: std::sync::Mutex<HashMap<K, Arc<tokio::sync::Mutex<()>>>>,
}

/// Held while one command runs on one aggregate.
pub struct KeyedGuard<'a, K: Eq + Hash + Copy> {
    locks: &'a KeyedLocks<K>,
    id: K,
    lock: Option<tokio::sync::OwnedMutexGuard<()>>,
}

impl<K: Eq + Hash + Copy> KeyedLocks<K> {
    /// Waits for the lock of `id`.
    pub async fn lock(&self, id: K) -> KeyedGuard<'_, K> {
        let mutex = {
            let mut map = self
                .map
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            map.entry(id).or_default().clone()
        };
        KeyedGuard {
            locks: self,
            id,
            lock: Some(mutex.lock_owned().await),
        }
    }
}

impl<K: Eq + Hash + Copy> Drop for KeyedGuard<'_, K> {
    fn drop(&mut self) {
        drop(self.lock.take());
        let mut map = self
            .locks
            .map
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        // Only the map still holds the mutex: nobody is waiting, forget it.
        if map.get(&self.id).is_some_and(|m| Arc::strong_count(m) == 1) {
            map.remove(&self.id);
        }
    }
}

impl<K> Default for KeyedLocks<K> {
    fn default() -> Self {
        Self {
            map: std::sync::Mutex::new(HashMap::new()),
        }
    }
}

impl<K> std::fmt::Debug for KeyedLocks<K> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyedLocks").finish_non_exhaustive()
    }
}
