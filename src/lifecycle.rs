//! Where the process stands in its life, as readiness reports it: the dependencies `serve` is
//! still waiting for at start-up, and whether it is shutting down.
//!
//! **Guarantees.**
//! * Once [`Lifecycle::begin_stopping`] is called, every later readiness answer is 503 with a
//!   `shutdown` check, whether the service finished starting or not; it never goes back.
//! * The start-up checks are what the start-up sequence last reported per dependency (one entry
//!   per name, in the order first reported); the readiness handler of the built service ignores
//!   them, it checks the dependencies itself.
//!
//! It depends on nothing else of the service: start-up writes it, the HTTP layer reads it.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

/// A dependency's state during start-up, as last reported.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StartupCheck {
    /// The readiness check's name (`database`, `nats`).
    pub name: &'static str,
    pub ok: bool,
    /// What is awaited, in plain words (no internal error text: probes see it).
    pub detail: Option<String>,
}

/// Cheap to clone: one per process, shared by start-up, the HTTP layer and the signal handler.
#[derive(Debug, Clone, Default)]
pub struct Lifecycle {
    inner: Arc<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    stopping: AtomicBool,
    starting: Mutex<Vec<StartupCheck>>,
}

impl Lifecycle {
    /// Records the state of dependency `name` during start-up.
    pub fn report(&self, name: &'static str, ok: bool, detail: Option<String>) {
        let check = StartupCheck { name, ok, detail };
        // a panic elsewhere while holding it leaves a list that is still whole
        let mut checks = self
            .inner
            .starting
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        match checks.iter_mut().find(|c| c.name == name) {
            Some(known) => *known = check,
            None => checks.push(check),
        }
    }

    /// What start-up reported so far, one entry per dependency.
    pub fn startup_checks(&self) -> Vec<StartupCheck> {
        self.inner
            .starting
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// The process was told to stop: readiness answers 503 from now on.
    pub fn begin_stopping(&self) {
        self.inner.stopping.store(true, Ordering::SeqCst);
    }

    /// Whether the process was told to stop.
    pub fn is_stopping(&self) -> bool {
        self.inner.stopping.load(Ordering::SeqCst)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dependency_reported_again_replaces_its_entry_in_place() {
        let lifecycle = Lifecycle::default();
        lifecycle.report("database", false, Some("not reachable yet".into()));
        lifecycle.report("nats", false, None);
        lifecycle.clone().report("database", true, None);
        let checks = lifecycle.startup_checks();
        assert_eq!(
            checks.iter().map(|c| (c.name, c.ok)).collect::<Vec<_>>(),
            [("database", true), ("nats", false)]
        );
    }

    #[test]
    fn stopping_is_seen_by_every_clone_and_stays() {
        let lifecycle = Lifecycle::default();
        let seen_by_http = lifecycle.clone();
        assert!(!seen_by_http.is_stopping());
        lifecycle.begin_stopping();
        assert!(seen_by_http.is_stopping());
    }
}
