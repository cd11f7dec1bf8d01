//! The follower: one log reader per process, running while any feed is open, that broadcasts
//! each batch of order events (with their stores) to every feed; and the [`Hub`] every feed of
//! the process shares, where a feed joins the broadcast ([`Subscription`]).
//!
//! * **One read for all.** The follower reads the log without checkpoint or lock
//!   ([`Checkpoints::Never`]), woken like every reader (at once by this process's appends, by
//!   `LISTEN` for other replicas'); a hundred feeds cost one read of the log.
//! * **Where it stands is told after the broadcast.** A feed that joins learns where the
//!   follower stood ([`Subscription::since`]): every event after that reaches it through the
//!   broadcast, or a lag tells it that it fell behind.
//! * **It runs while anyone listens.** The first feed starts it at the end of the log, the
//!   last one to leave stops it; each start has a broadcast of its own, so a stopping
//!   follower's last batch reaches no newer feed.

use std::sync::{Arc, Mutex};

use sqlx::{PgConnection, PgPool};
use tokio::sync::{broadcast, watch};
use tokio_util::sync::CancellationToken;

use super::annotate::Known;
use super::message::LiveEvent;
use crate::log::{end_of_log, AppendSignal};
use crate::log::{Checkpoints, Cursor, LogEvent, LogHandler, LogReader, ReaderConfig};
use crate::telemetry::Metrics;

/// Name of the follower's reader (metric label).
pub const READER: &str = "live";

/// What every feed of a process shares: the database, the metrics, the running follower.
#[derive(Debug)]
pub(super) struct Hub {
    pub(super) pool: PgPool,
    pub(super) metrics: Arc<Metrics>,
    appended: AppendSignal,
    /// Batches of the broadcast a feed may fall behind.
    broadcast_batches: usize,
    /// The running follower, while any feed is open.
    follower: Mutex<Option<Follower>>,
    /// Turns true when the service stops: every feed ends.
    closing: watch::Sender<bool>,
}

/// A running follower: its broadcast (new with every start, so a stopping follower's last
/// batch reaches no newer feed), where it stands, and its off switch.
#[derive(Debug)]
struct Follower {
    batches: broadcast::Sender<Arc<[LiveEvent]>>,
    /// The end of the last batch broadcast (or where the follower started).
    position: Arc<watch::Sender<Cursor>>,
    stop: CancellationToken,
}

/// A feed's place in the broadcast; the last one dropped stops the follower.
pub(super) struct Subscription {
    hub: Arc<Hub>,
    pub(super) batches: broadcast::Receiver<Arc<[LiveEvent]>>,
    /// Every event after this reaches `batches` (or a lag tells it did not).
    pub(super) since: Cursor,
    /// Where the follower stands now (the end of its last broadcast batch).
    pub(super) position: watch::Receiver<Cursor>,
    /// Turns true when the service stops.
    pub(super) closing: watch::Receiver<bool>,
}

impl Subscription {
    /// Resolves when the service stops (at once if it already has). Takes the field rather
    /// than the subscription, so a feed can wait for it and its batches in one `select!`.
    pub(super) async fn closed(closing: &mut watch::Receiver<bool>) {
        // the sender lives as long as the feeds: an error is the same as closing
        let _ = closing.wait_for(|closing| *closing).await;
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        let mut follower = self.hub.lock_follower();
        // this subscription's receiver still counts
        if follower
            .as_ref()
            .is_some_and(|f| f.batches.receiver_count() <= 1)
        {
            if let Some(f) = follower.take() {
                f.stop.cancel();
            }
        }
    }
}

impl Hub {
    /// The hub of a process that reads the log from `pool` and is woken by `appended`.
    pub(super) fn new(
        pool: PgPool,
        metrics: Arc<Metrics>,
        appended: AppendSignal,
        broadcast_batches: usize,
    ) -> Self {
        Self {
            pool,
            metrics,
            appended,
            broadcast_batches: broadcast_batches.max(1),
            follower: Mutex::new(None),
            closing: watch::Sender::new(false),
        }
    }

    /// Ends every feed (the service is stopping) and refuses new ones.
    pub(super) fn close(&self) {
        self.closing.send_replace(true);
        if let Some(f) = self.lock_follower().take() {
            f.stop.cancel();
        }
    }

    fn lock_follower(&self) -> std::sync::MutexGuard<'_, Option<Follower>> {
        // a panic while holding this lock leaves nothing half-done: take the state as it is
        self.follower
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Joins the broadcast, starting the follower at the end of the log when none runs.
    pub(super) async fn subscribe(self: &Arc<Self>) -> anyhow::Result<Subscription> {
        let mut start = None;
        loop {
            {
                let mut follower = self.lock_follower();
                // under the lock: `close` takes the follower under it too, so none starts after
                anyhow::ensure!(!*self.closing.borrow(), "the service is stopping");
                if follower.is_none() {
                    if let Some(at) = start {
                        *follower = Some(self.start_follower(at));
                    }
                }
                if let Some(f) = follower.as_ref() {
                    return Ok(Subscription {
                        hub: Arc::clone(self),
                        batches: f.batches.subscribe(),
                        since: *f.position.borrow(),
                        position: f.position.subscribe(),
                        closing: self.closing.subscribe(),
                    });
                }
            }
            // Not running: find where to start without holding the lock, then try again.
            let mut conn = self.pool.acquire().await?;
            start = Some(end_of_log(&mut conn).await?);
        }
    }

    fn start_follower(&self, at: Cursor) -> Follower {
        let (batches, _) = broadcast::channel(self.broadcast_batches);
        let position = Arc::new(watch::Sender::new(at));
        let stop = CancellationToken::new();
        let stopped = stop.clone();
        let handler = Broadcaster {
            batches: batches.clone(),
            position: Arc::clone(&position),
            known: Known::default(),
        };
        let config = ReaderConfig::new(READER).checkpointing(Checkpoints::Never);
        let reader = LogReader::new(self.pool.clone(), config, self.metrics.clone())
            .woken_by(self.appended.clone())
            .starting_at(at);
        tokio::spawn(async move {
            if let Err(e) = reader.run(handler, stopped).await {
                tracing::warn!(error = format!("{e:#}"), "live feed follower stopped");
            }
        });
        tracing::debug!(?at, "live feed follower started");
        Follower {
            batches,
            position,
            stop,
        }
    }

    /// Counts a message sent on a `feed` (`order` or `store`).
    pub(super) fn sent(&self, feed: &'static str) {
        self.metrics.live.messages.with_label_values(&[feed]).inc();
    }

    /// Counts a catch-up from the database of a `feed`, and why.
    pub(super) fn caught_up(&self, feed: &'static str, reason: &'static str) {
        self.metrics
            .live
            .catch_ups
            .with_label_values(&[feed, reason])
            .inc();
    }
}

/// The follower's handler: order events of each batch, with their stores, to every feed.
struct Broadcaster {
    batches: broadcast::Sender<Arc<[LiveEvent]>>,
    position: Arc<watch::Sender<Cursor>>,
    /// Each order's store and status, learnt from its events and lookups.
    known: Known,
}

impl LogHandler for Broadcaster {
    async fn handle(&mut self, conn: &mut PgConnection, batch: &[LogEvent]) -> anyhow::Result<()> {
        let Some(last) = batch.last().map(LogEvent::cursor) else {
            return Ok(());
        };
        let events = self.known.annotate(conn, batch).await?;
        if !events.is_empty() {
            // no feed open right now is not a failure
            let _ = self.batches.send(events.into());
        }
        // after the send: a feed that joins in between and misses the batch is one that
        // joined after it
        self.position.send_replace(last);
        Ok(())
    }
}
