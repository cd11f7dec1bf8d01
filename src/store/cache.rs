//! Orders as this process's last command left them: the next command on one starts from here
//! instead of loading the order's events, one round trip fewer.
//!
//! A cached order is never trusted alone. A command decided on one can only ever append, and
//! the append's `(aggregate, sequence)` key fails if anyone appended meanwhile (another replica,
//! a tool); the command is then decided again on a fresh load, like any conflict. Every other
//! outcome decided on a cached order (a refusal, a replay, a version mismatch, nothing to do)
//! is decided again on a fresh load too, so a stale entry never becomes an answer.

use std::sync::Mutex;

use hashlink::LruCache;
use order_domain::{Order, OrderId};

/// Least recently used orders, at most `capacity` of them (0: caches nothing).
pub struct OrderCache {
    entries: Option<Mutex<LruCache<OrderId, Order>>>,
}

impl OrderCache {
    pub fn new(capacity: usize) -> Self {
        Self {
            entries: (capacity > 0).then(|| Mutex::new(LruCache::new(capacity))),
        }
    }

    /// Whether it caches anything.
    pub fn enabled(&self) -> bool {
        self.entries.is_some()
    }

    pub fn get(&self, id: OrderId) -> Option<Order> {
        self.with(|entries| entries.get(&id).cloned()).flatten()
    }

    /// Remembers `order` as the state right after an append.
    pub fn put(&self, id: OrderId, order: Order) {
        self.with(|entries| entries.insert(id, order));
    }

    pub fn forget(&self, id: OrderId) {
        self.with(|entries| entries.remove(&id));
    }

    fn with<T>(&self, f: impl FnOnce(&mut LruCache<OrderId, Order>) -> T) -> Option<T> {
        let entries = self.entries.as_ref()?;
        let mut entries = entries
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        Some(f(&mut entries))
    }
}

impl std::fmt::Debug for OrderCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OrderCache").finish_non_exhaustive()
    }
}
