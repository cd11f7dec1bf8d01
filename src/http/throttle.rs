//! Limits per caller (the token's subject), so one client cannot take the service from the
//! others (DESIGN §10, hostile clients).
//!
//! * **Commands** (orders, stores, products) run at most `commands_per_second` per caller, sustained, with bursts up to
//!   `command_burst` (GCRA, the `governor` crate); beyond, 429 `rate-limited` with
//!   `Retry-After` saying when the next one is accepted. Per process: behind a load balancer
//!   with N replicas a caller gets up to N times the rate, which is still bounded.
//! * **Live feeds** held open at once are at most `feeds_per_subject` per caller and process;
//!   beyond, 429 `too-many-feeds`. A feed's [`FeedPermit`] gives its place back when the feed
//!   ends, however it ends.
//! * Memory is bounded: callers idle long enough to be back at a full burst are forgotten.

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use governor::clock::{Clock as _, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use prometheus::{IntCounterVec, Registry};

use super::problem::ApiError;
use crate::config::LimitSettings;
use crate::metric;

/// How often the rate limiter forgets callers that are back at a full burst (one pass over the
/// callers it remembers, by whichever command comes first after the interval).
const FORGET_EVERY: Duration = Duration::from_secs(60);

/// The per-caller limits of one process. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Throttle {
    commands: Arc<DefaultKeyedRateLimiter<String>>,
    /// When the limiter last forgot idle callers (ms since `started`).
    forgotten_at: Arc<AtomicU64>,
    started: Instant,
    feeds: Arc<Mutex<HashMap<String, usize>>>,
    feeds_per_subject: usize,
    metrics: ThrottleMetrics,
}

/// What the throttle counts.
#[derive(Debug, Clone)]
pub struct ThrottleMetrics {
    /// Requests refused by a limit, by limit (`commands`, `feeds`).
    pub refused: IntCounterVec,
}

impl ThrottleMetrics {
    pub fn register(registry: &Registry) -> prometheus::Result<Self> {
        Ok(Self {
            refused: metric::counters(
                registry,
                "http_throttled_total",
                "Requests refused with 429 by a per-caller limit, by limit",
                &["limit"],
            )?,
        })
    }
}

impl Throttle {
    pub fn new(limits: &LimitSettings, metrics: ThrottleMetrics) -> Self {
        let rate = NonZeroU32::new(limits.commands_per_second).unwrap_or(NonZeroU32::MIN);
        let burst = NonZeroU32::new(limits.command_burst).unwrap_or(rate);
        Self {
            commands: Arc::new(RateLimiter::keyed(
                Quota::per_second(rate).allow_burst(burst),
            )),
            forgotten_at: Arc::new(AtomicU64::new(0)),
            started: Instant::now(),
            feeds: Arc::new(Mutex::new(HashMap::new())),
            feeds_per_subject: limits.feeds_per_subject,
            metrics,
        }
    }

    /// Admits one command of `subject`, or 429 with when to retry.
    pub fn command(&self, subject: &str) -> Result<(), ApiError> {
        self.forget_idle_callers();
        match self.commands.check_key(&subject.to_owned()) {
            Ok(()) => Ok(()),
            Err(not_until) => {
                self.metrics.refused.with_label_values(&["commands"]).inc();
                let wait = not_until.wait_time_from(DefaultClock::default().now());
                Err(ApiError::TooManyRequests {
                    slug: "rate-limited",
                    detail: "too many commands from this caller; retry after the time in \
                             Retry-After"
                        .into(),
                    retry_after_secs: wait.as_secs() + u64::from(wait.subsec_nanos() > 0),
                })
            }
        }
    }

    /// Once per [`FORGET_EVERY`], drops the callers back at a full burst, so memory follows the
    /// callers of the last minute, not every caller ever seen. One command pays for the pass;
    /// the others only read a clock.
    fn forget_idle_callers(&self) {
        let now = u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX);
        let last = self.forgotten_at.load(Ordering::Relaxed);
        let due = now.saturating_sub(last) >= u64::try_from(FORGET_EVERY.as_millis()).unwrap_or(0);
        if due
            && self
                .forgotten_at
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            self.commands.retain_recent();
        }
    }

    /// A place for one more live feed of `subject`, or 429 when it holds the most already.
    pub fn open_feed(&self, subject: &str) -> Result<FeedPermit, ApiError> {
        let mut feeds = self.feeds.lock().unwrap_or_else(PoisonError::into_inner);
        let open = feeds.entry(subject.to_owned()).or_insert(0);
        if *open >= self.feeds_per_subject {
            self.metrics.refused.with_label_values(&["feeds"]).inc();
            return Err(ApiError::TooManyRequests {
                slug: "too-many-feeds",
                detail: format!(
                    "this caller holds {} live feeds open already; close one first",
                    self.feeds_per_subject
                ),
                retry_after_secs: 5,
            });
        }
        *open += 1;
        Ok(FeedPermit {
            feeds: Arc::clone(&self.feeds),
            subject: subject.to_owned(),
        })
    }
}

/// One open live feed's place; given back when dropped.
#[derive(Debug)]
pub struct FeedPermit {
    feeds: Arc<Mutex<HashMap<String, usize>>>,
    subject: String,
}

impl Drop for FeedPermit {
    fn drop(&mut self) {
        let mut feeds = self.feeds.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(open) = feeds.get_mut(&self.subject) {
            *open = open.saturating_sub(1);
            if *open == 0 {
                feeds.remove(&self.subject);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn throttle(rate: u32, burst: u32, feeds: usize) -> Throttle {
        let limits = LimitSettings {
            commands_per_second: rate,
            command_burst: burst,
            feeds_per_subject: feeds,
            ..crate::config::Settings::default().limits
        };
        Throttle::new(
            &limits,
            ThrottleMetrics::register(&Registry::new()).expect("metrics"),
        )
    }

    #[test]
    fn a_caller_over_its_burst_waits_and_others_do_not() {
        let t = throttle(1, 3, 1);
        for _ in 0..3 {
            assert!(t.command("alice").is_ok());
        }
        let Err(ApiError::TooManyRequests {
            retry_after_secs, ..
        }) = t.command("alice")
        else {
            panic!("the fourth command in a second was admitted");
        };
        assert_eq!(retry_after_secs, 1);
        assert!(t.command("bob").is_ok());
    }

    #[test]
    fn a_feed_permit_gives_its_place_back() {
        let t = throttle(1, 1, 2);
        let first = t.open_feed("alice").expect("first");
        let _second = t.open_feed("alice").expect("second");
        assert!(t.open_feed("alice").is_err());
        assert!(t.open_feed("bob").is_ok());
        drop(first);
        assert!(t.open_feed("alice").is_ok());
    }
}
