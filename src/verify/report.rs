//! What `verify` found: each broken invariant, and what it looked at.

use std::fmt;

use serde::Serialize;

/// One broken invariant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Violation {
    pub invariant: &'static str,
    /// The order (or aggregate) it concerns.
    pub subject: String,
    pub detail: String,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}: {}", self.invariant, self.subject, self.detail)
    }
}

/// What `verify` looked at and what it found (`verify --json` prints it as it is).
#[derive(Debug, Default, Serialize)]
pub struct Report {
    pub events: usize,
    pub orders: usize,
    pub sagas: usize,
    /// Sagas still at work (their deadline ahead): I2 and I3 wait for them.
    pub in_flight: usize,
    /// Messages read from the relay's streams (I8).
    pub messages: usize,
    /// Invariants not checked, and why (no NATS, no books).
    pub unchecked: Vec<String>,
    pub violations: Vec<Violation>,
}

impl Report {
    pub(super) fn broken(
        &mut self,
        invariant: &'static str,
        subject: &impl ToString,
        detail: String,
    ) {
        self.violations.push(Violation {
            invariant,
            subject: subject.to_string(),
            detail,
        });
    }
}
