//! [`SagaPolicy`]: the step timeouts and retry limits every decision of the saga is made under
//! (the aggregate's `Services`). Waits double per attempt up to a cap; no clock is read here, the
//! caller's `now` goes in.

use chrono::{DateTime, Duration, Utc};

/// Timeouts and retries of saga steps: the aggregate's `Services`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SagaPolicy {
    /// How long the first send of a request waits for its reply (`APP__SAGA__STEP_TIMEOUT_MS`).
    pub step_timeout: Duration,
    /// Sends of one request, the first included, before the saga stops re-sending it
    /// (`APP__SAGA__MAX_ATTEMPTS`). Zero is read as one.
    pub max_attempts: u32,
    /// Longest wait of any one attempt: waits double per attempt up to this cap.
    pub max_wait: Duration,
}

impl Default for SagaPolicy {
    fn default() -> Self {
        Self {
            step_timeout: Duration::seconds(10),
            max_attempts: 5,
            max_wait: Duration::minutes(5),
        }
    }
}

impl SagaPolicy {
    /// How long attempt `attempt` (1-based) waits: `step_timeout × 2^(attempt-1)`, capped at
    /// `max_wait`.
    pub fn wait(&self, attempt: u32) -> Duration {
        let doublings = attempt.saturating_sub(1).min(30);
        let factor = 1_i32 << doublings;
        self.step_timeout
            .checked_mul(factor)
            .map_or(self.max_wait, |wait| wait.min(self.max_wait))
    }

    /// The deadline of attempt `attempt` sent at `now`.
    pub fn deadline(&self, now: DateTime<Utc>, attempt: u32) -> DateTime<Utc> {
        now.checked_add_signed(self.wait(attempt))
            .unwrap_or(DateTime::<Utc>::MAX_UTC)
    }

    pub(super) fn attempts(&self) -> u32 {
        self.max_attempts.max(1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_double_per_attempt_up_to_the_cap() {
        let policy = SagaPolicy {
            step_timeout: Duration::seconds(10),
            max_attempts: 5,
            max_wait: Duration::seconds(60),
        };
        let waits: Vec<i64> = (1..=5).map(|a| policy.wait(a).num_seconds()).collect();
        assert_eq!(waits, [10, 20, 40, 60, 60]);
        assert_eq!(policy.wait(u32::MAX), Duration::seconds(60));
        assert_eq!(
            policy.deadline(DateTime::<Utc>::MAX_UTC, 1),
            DateTime::<Utc>::MAX_UTC
        );
    }
}
