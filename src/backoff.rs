//! One backoff policy for everything that waits before trying again: the supervisor restarting
//! a worker, the reply consumer's redelivery delay, and (as [`Backoff::conflicts`]) the command
//! executors' pause after a version conflict. (It depends on nothing of theirs: they use it.)
//!
//! Guarantees:
//! * the `n`-th wait (`n` from 0) is at most `first · 2ⁿ`, and never more than `max`: the
//!   doubling saturates instead of overflowing, for any `n`;
//! * with [`Jitter::None`] the wait is exactly that ceiling (deterministic, for delays a test
//!   or an operator reads back); with [`Jitter::Full`] it is uniform in `[0, ceiling]`, with
//!   [`Jitter::Equal`] uniform in `[ceiling / 2, ceiling]`, so replicas that failed together
//!   do not retry together, and an equal-jittered wait is never shorter than half its ceiling;
//! * a [`Schedule`] counts the waits it handed out and starts again from `first` on
//!   [`Schedule::reset`] (the supervisor resets it after a worker ran healthily for a while).

use std::time::Duration;

use rand::Rng as _;

/// How a wait is spread below its ceiling.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Jitter {
    /// Exactly the ceiling.
    None,
    /// Uniform in `[0, ceiling]` ("full jitter").
    Full,
    /// Uniform in `[ceiling / 2, ceiling]` ("equal jitter").
    Equal,
}

/// A policy: `first`, doubling per attempt, at most `max`, spread by `jitter`. Cheap to copy;
/// the state of one sequence of attempts is a [`Schedule`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    first: Duration,
    max: Duration,
    jitter: Jitter,
}

/// Doublings beyond this change nothing any more (`2³¹` times even a microsecond is over half
/// an hour, and every ceiling is capped at `max` anyway): it keeps the `u32` shift in range.
const MAX_DOUBLINGS: u32 = 31;

impl Backoff {
    /// `first`, doubling, at most `max` (raised to `first` if smaller), without jitter.
    pub fn new(first: Duration, max: Duration) -> Self {
        Self {
            first,
            max: max.max(first),
            jitter: Jitter::None,
        }
    }

    /// The same schedule, spread by `jitter`.
    #[must_use]
    pub fn with_jitter(self, jitter: Jitter) -> Self {
        Self { jitter, ..self }
    }

    /// The command executors' pause after a version conflict: 2 ms doubling to 50 ms, plus up
    /// to as much again of jitter (each wait uniform in `[b, 2b]`, `b` the nominal delay: an
    /// equal-jittered schedule of twice the nominal ceilings).
    pub fn conflicts() -> Self {
        Self::new(Duration::from_millis(4), Duration::from_millis(100)).with_jitter(Jitter::Equal)
    }

    /// The first wait's ceiling.
    pub fn first(&self) -> Duration {
        self.first
    }

    /// The longest wait.
    pub fn max(&self) -> Duration {
        self.max
    }

    /// The ceiling of the `attempt`-th wait (0 for the first): `first · 2^attempt`, at most
    /// `max`.
    pub fn ceiling(&self, attempt: u32) -> Duration {
        self.first
            .saturating_mul(1 << attempt.min(MAX_DOUBLINGS))
            .min(self.max)
    }

    /// The `attempt`-th wait (0 for the first), jittered below its [`Backoff::ceiling`].
    pub fn delay(&self, attempt: u32) -> Duration {
        let ceiling = self.ceiling(attempt);
        let floor = match self.jitter {
            Jitter::None => return ceiling,
            Jitter::Full => Duration::ZERO,
            Jitter::Equal => ceiling / 2,
        };
        // (nanoseconds of any ceiling here fit a u64: `max` is a configured wait)
        let spread = u64::try_from(ceiling.saturating_sub(floor).as_nanos()).unwrap_or(u64::MAX);
        floor + Duration::from_nanos(rand::rng().random_range(0..=spread))
    }

    /// A fresh sequence of attempts under this policy.
    pub fn schedule(self) -> Schedule {
        Schedule {
            backoff: self,
            attempt: 0,
        }
    }
}

/// One sequence of waits under a [`Backoff`]: each [`Schedule::next_delay`] is the next one.
#[derive(Debug, Clone)]
pub struct Schedule {
    backoff: Backoff,
    attempt: u32,
}

impl Schedule {
    /// The next wait; the one after it has a doubled ceiling (up to `max`).
    pub fn next_delay(&mut self) -> Duration {
        let delay = self.backoff.delay(self.attempt);
        self.attempt = self.attempt.saturating_add(1);
        delay
    }

    /// Starts again from the first wait.
    pub fn reset(&mut self) {
        self.attempt = 0;
    }

    /// Waits handed out since the start or the last reset.
    pub fn attempts(&self) -> u32 {
        self.attempt
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn ceilings_double_from_the_first_up_to_the_maximum_and_stay_there() {
        let backoff = Backoff::new(200 * MS, 30_000 * MS);
        let ceilings: Vec<_> = (0..10).map(|n| backoff.ceiling(n)).collect();
        assert_eq!(
            ceilings,
            [200, 400, 800, 1_600, 3_200, 6_400, 12_800, 25_600, 30_000, 30_000].map(|ms| ms * MS)
        );
        assert_eq!(backoff.ceiling(u32::MAX), 30_000 * MS, "no overflow");
    }

    #[test]
    fn without_jitter_the_wait_is_the_ceiling() {
        let backoff = Backoff::new(200 * MS, 30_000 * MS);
        for n in [0, 1, 5, 9, 64, u32::MAX] {
            assert_eq!(backoff.delay(n), backoff.ceiling(n));
        }
    }

    #[test]
    fn a_maximum_below_the_first_is_raised_to_it() {
        let backoff = Backoff::new(500 * MS, 100 * MS);
        assert_eq!(backoff.max(), 500 * MS);
        assert_eq!(backoff.delay(3), 500 * MS);
    }

    #[test]
    fn full_jitter_stays_within_zero_and_the_ceiling_and_spreads() {
        let backoff = Backoff::new(100 * MS, 1_000 * MS).with_jitter(Jitter::Full);
        let waits: Vec<_> = (0..200).map(|_| backoff.delay(2)).collect();
        assert!(waits.iter().all(|w| *w <= 400 * MS));
        assert!(
            waits.iter().any(|w| *w < 200 * MS),
            "never in the lower half"
        );
        assert!(
            waits.iter().any(|w| *w > 200 * MS),
            "never in the upper half"
        );
    }

    #[test]
    fn equal_jitter_stays_within_half_the_ceiling_and_the_ceiling() {
        let backoff = Backoff::new(100 * MS, 1_000 * MS).with_jitter(Jitter::Equal);
        let waits: Vec<_> = (0..200).map(|_| backoff.delay(2)).collect();
        assert!(waits.iter().all(|w| (200 * MS..=400 * MS).contains(w)));
        assert!(
            waits.iter().any(|w| *w != waits[0]),
            "jitter spreads the waits"
        );
    }

    #[test]
    fn the_conflict_schedule_waits_2_to_4_ms_first_and_50_to_100_ms_at_most() {
        let backoff = Backoff::conflicts();
        for _ in 0..100 {
            assert!((2 * MS..=4 * MS).contains(&backoff.delay(0)));
            assert!((4 * MS..=8 * MS).contains(&backoff.delay(1)));
            assert!((50 * MS..=100 * MS).contains(&backoff.delay(30)));
        }
    }

    #[test]
    fn a_schedule_doubles_per_wait_and_starts_over_after_a_reset() {
        let mut schedule = Backoff::new(10 * MS, 1_000 * MS).schedule();
        assert_eq!(schedule.next_delay(), 10 * MS);
        assert_eq!(schedule.next_delay(), 20 * MS);
        assert_eq!(schedule.next_delay(), 40 * MS);
        assert_eq!(schedule.attempts(), 3);
        schedule.reset();
        assert_eq!(schedule.attempts(), 0);
        assert_eq!(schedule.next_delay(), 10 * MS);
    }
}
