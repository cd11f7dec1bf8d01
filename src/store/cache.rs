//! Aggregates as this process's last command left them: the next command on one starts from
//! here instead of loading its events, one round trip fewer. Every [`super::executor::Executor`]
//! has one.
//!
//! A cached aggregate is never trusted alone. A command decided on one can only ever append,
//! and the append's `(aggregate, sequence)` key fails if anyone appended meanwhile (another
//! replica, a tool); the command is then decided again on a fresh load, like any conflict.
//! Every other outcome decided on a cached aggregate (a refusal, a replay, a version
//! mismatch, nothing to do) is decided again on a fresh load too, so a stale entry never
//! becomes an answer.

use std::hash::Hash;
use std::sync::Mutex;

use hashlink::LruCache;

/// Least recently used aggregates, at most `capacity` of them (0: caches nothing).
pub struct AggregateCache<K, V> {
    entries: Option<Mutex<LruCache<K, V>>>,
}

impl<K: Hash + Eq + Copy, V: Clone> AggregateCache<K, V> {
    pub fn new(capacity: usize) -> Self {
        Self {
            entries: (capacity > 0).then(|| Mutex::new(LruCache::new(capacity))),
        }
    }

    /// Whether it caches anything.
    pub fn enabled(&self) -> bool {
        self.entries.is_some()
    }

    pub fn get(&self, id: K) -> Option<V> {
        self.with(|entries| entries.get(&id).cloned()).flatten()
    }

    /// Remembers `state` as the aggregate's right after an append.
    pub fn put(&self, id: K, state: V) {
        self.with(|entries| entries.insert(id, state));
    }

    pub fn forget(&self, id: K) {
        self.with(|entries| entries.remove(&id));
    }

    fn with<T>(&self, f: impl FnOnce(&mut LruCache<K, V>) -> T) -> Option<T> {
        let entries = self.entries.as_ref()?;
        let mut entries = entries
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        Some(f(&mut entries))
    }
}

impl<K, V> std::fmt::Debug for AggregateCache<K, V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AggregateCache").finish_non_exhaustive()
    }
}
