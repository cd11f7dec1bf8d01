//! The live feeds' metrics (the follower's own are its log reader's, `reader="live"`).

use prometheus::{IntCounterVec, IntGaugeVec, Registry};

use crate::metric;

#[derive(Debug, Clone)]
pub struct LiveMetrics {
    /// Live feeds open, by feed (`order`, `store`).
    pub feeds_open: IntGaugeVec,
    /// Messages sent on live feeds, by feed.
    pub messages: IntCounterVec,
    /// Live feeds that read from the database what they had not heard live, by feed and reason
    /// (`resume`: the client came back with its last id; `lagged`: it read slower than events
    /// came; `gap`: an order's version jumped).
    pub catch_ups: IntCounterVec,
    /// Live feeds ended by a failure (the database), by feed; their clients resume.
    pub feed_failures: IntCounterVec,
}

impl LiveMetrics {
    pub fn register(registry: &Registry) -> prometheus::Result<Self> {
        let feed = &["feed"];
        Ok(Self {
            feeds_open: metric::gauges(
                registry,
                "live_feeds_open",
                "Live feeds open, by feed",
                feed,
            )?,
            messages: metric::counters(
                registry,
                "live_messages_total",
                "Messages sent on live feeds, by feed",
                feed,
            )?,
            catch_ups: metric::counters(
                registry,
                "live_catch_ups_total",
                "Live feeds that read missed events from the database, by feed and reason",
                &["feed", "reason"],
            )?,
            feed_failures: metric::counters(
                registry,
                "live_feed_failures_total",
                "Live feeds ended by a failure, by feed",
                feed,
            )?,
        })
    }
}
