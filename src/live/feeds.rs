//! The two kinds of feed, each a task between the follower's broadcast and one client: an
//! order's ([`OrderFeed`]) and a store's orders' ([`StoreFeed`]).
//!
//! * **Look back only after listening.** A feed has joined the broadcast before it reads
//!   from the database what came before (the events after the client's last one), then
//!   forwards the broadcast, dropping what it has sent already (by version for an order, by
//!   log position for a store). The two overlap; they never leave a gap.
//! * **Falling behind is catching up.** A feed whose client reads slower than the broadcast
//!   moves (a lagged receiver), or that sees an order's version jump, reads the missing
//!   events from the database, as on resume.
//! * **A slow client holds no connection.** A catch-up holds a database connection only while
//!   it reads, never while the client is slow to take a message.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use order_projections::queries as read;
use sqlx::PgPool;
use tokio::sync::{broadcast, mpsc};
use uuid::Uuid;

use order_domain::{status_reached_by, OrderStatus};

use super::annotate::Known;
use super::follower::{Hub, Subscription};
use super::message::{store_feed_id, LiveEvent, LiveMessage, OrderStart};
use crate::log::{read_tail, Cursor};

/// Events read per catch-up query.
const CATCH_UP_BATCH: u32 = 500;

/// How long a store feed's catch-up waits for its reads to reach where the follower stood
/// (events the follower read that a later read still holds back behind a transaction that
/// began before it): then the feed ends and the client resumes.
const CATCH_UP_PATIENCE: Duration = Duration::from_secs(5);

/// Whether the client went away during a catch-up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Gone {
    Yes,
    No,
}

/// The feed of one order: its events after a version, each once, in version order.
pub(super) struct OrderFeed {
    pub(super) hub: Arc<Hub>,
    pub(super) order_id: Uuid,
    pub(super) out: mpsc::Sender<LiveMessage>,
}

impl OrderFeed {
    /// Sends the start (a snapshot, or what the client missed), then the broadcast.
    pub(super) async fn run(
        self,
        mut subscription: Subscription,
        start: OrderStart,
    ) -> anyhow::Result<()> {
        let mut last = match start {
            OrderStart::Snapshot { version, detail } => {
                let snapshot = LiveMessage {
                    kind: "snapshot",
                    id: version.to_string(),
                    data: detail,
                };
                if self.send(snapshot).await.is_err() {
                    return Ok(());
                }
                version
            }
            OrderStart::After(version) => {
                self.hub.caught_up("order", "resume");
                version
            }
        };
        if self.catch_up(&mut last).await? == Gone::Yes {
            return Ok(());
        }
        loop {
            tokio::select! {
                batch = subscription.batches.recv() => match batch {
                    Ok(batch) => {
                        for e in batch.iter().filter(|e| e.order_id == self.order_id) {
                            if e.version <= last {
                                continue;
                            }
                            if e.version > last + 1 {
                                // not seen live: an earlier event was (the log's order is
                                // each order's version order); read what lies between
                                self.hub.caught_up("order", "gap");
                                if self.catch_up(&mut last).await? == Gone::Yes {
                                    return Ok(());
                                }
                                if e.version <= last {
                                    continue;
                                }
                            }
                            if self.send(LiveMessage::event(e.version.to_string(), e)?).await.is_err() {
                                return Ok(());
                            }
                            last = e.version;
                        }
                    }
                    Err(broadcast::error::RecvError::Lagged(_)) => {
                        self.hub.caught_up("order", "lagged");
                        if self.catch_up(&mut last).await? == Gone::Yes {
                            return Ok(());
                        }
                    }
                    Err(broadcast::error::RecvError::Closed) => return Ok(()),
                },
                () = Subscription::closed(&mut subscription.closing) => return Ok(()),
                () = self.out.closed() => return Ok(()),
            }
        }
    }

    /// The order's status after its event of `version` (`None` before its first).
    async fn status_after(&self, version: i64) -> anyhow::Result<Option<OrderStatus>> {
        let mut conn = self.hub.pool.acquire().await?;
        let history = read::order_event_types(&mut conn, &[self.order_id.to_string()])
            .await
            .context("reading the order's statuses")?;
        Ok(history
            .iter()
            .take_while(|(_, v, _)| *v <= version)
            .fold(None, |status, (_, _, event_type)| {
                status_reached_by(event_type).or(status)
            }))
    }

    /// Sends the order's events after `last` from the event store, moving `last`.
    async fn catch_up(&self, last: &mut i64) -> anyhow::Result<Gone> {
        let mut status = self.status_after(*last).await?;
        loop {
            let events = read::order_events(&self.hub.pool, self.order_id, *last, CATCH_UP_BATCH)
                .await
                .context("reading the order's events")?;
            let full = events.len() >= CATCH_UP_BATCH as usize;
            for e in events {
                let previous = status;
                status = status_reached_by(&e.event_type).or(previous);
                let live = LiveEvent {
                    at: Cursor::default(),
                    order_id: self.order_id,
                    store_id: None,
                    version: e.version,
                    event_id: e.event_id,
                    event_type: e.event_type,
                    payload: e.payload,
                    recorded_at: e.recorded_at,
                    status,
                    previous_status: previous,
                };
                if self
                    .send(LiveMessage::event(e.version.to_string(), &live)?)
                    .await
                    .is_err()
                {
                    return Ok(Gone::Yes);
                }
                *last = e.version;
            }
            if !full {
                return Ok(Gone::No);
            }
        }
    }

    async fn send(&self, message: LiveMessage) -> Result<(), mpsc::error::SendError<LiveMessage>> {
        self.out.send(message).await?;
        self.hub.sent("order");
        Ok(())
    }
}

/// Where a store feed starts.
pub(super) enum StoreStart {
    /// After this log position (the id of the last message the client got).
    After(Cursor),
    /// With what commits after the feed opened, when these had committed.
    Now(Committed),
}

/// The transactions that had committed at one moment: a PostgreSQL snapshot
/// (`pg_current_snapshot()`), so that a store feed opened "from now" leaves out every event
/// committed before it opened, whatever the log's horizon was then.
///
/// Taken after the feed joined the broadcast, it leaves no gap: an event it does not hold is
/// of a transaction that was running when it was taken or began later, so after the
/// follower's position when the feed joined (the follower read up to a horizon below every
/// transaction then running, and a later transaction's id is larger still).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Committed {
    /// Every transaction below this had ended.
    xmin: u64,
    /// No transaction from this on had ended.
    xmax: u64,
    /// The transactions between the two that still ran.
    running: Vec<u64>,
}

impl Committed {
    /// The transactions committed now.
    pub(super) async fn now(pool: &PgPool) -> anyhow::Result<Self> {
        let snapshot: String = sqlx::query_scalar("select pg_current_snapshot()::text")
            .fetch_one(pool)
            .await
            .context("taking a snapshot")?;
        Self::parse(&snapshot).with_context(|| format!("reading the snapshot {snapshot:?}"))
    }

    /// A snapshot's text form, `xmin:xmax:xip,...`.
    fn parse(snapshot: &str) -> Option<Self> {
        let mut parts = snapshot.trim().splitn(3, ':');
        let xmin = parts.next()?.parse().ok()?;
        let xmax = parts.next()?.parse().ok()?;
        let running = parts
            .next()?
            .split(',')
            .filter(|x| !x.is_empty())
            .map(str::parse)
            .collect::<Result<_, _>>()
            .ok()?;
        Some(Self {
            xmin,
            xmax,
            running,
        })
    }

    /// Whether the event at `at` had committed (PostgreSQL's visibility in the snapshot).
    fn holds(&self, at: Cursor) -> bool {
        at.tx_id < self.xmin || (at.tx_id < self.xmax && !self.running.contains(&at.tx_id))
    }
}

/// The feed of one store's orders: their events after a log position, each once, in log
/// order.
pub(super) struct StoreFeed {
    pub(super) hub: Arc<Hub>,
    pub(super) store_id: Uuid,
    pub(super) out: mpsc::Sender<LiveMessage>,
}

impl StoreFeed {
    /// Sends what the client missed (when resuming), then the broadcast.
    pub(super) async fn run(
        self,
        mut subscription: Subscription,
        start: StoreStart,
    ) -> anyhow::Result<()> {
        let (mut last, opened) = match start {
            StoreStart::After(mut at) => {
                self.hub.caught_up("store", "resume");
                if self.catch_up(&mut at, subscription.since, None).await? == Gone::Yes {
                    return Ok(());
                }
                (at, None)
            }
            // From now: what the broadcast brings after where it stood when we joined, less
            // what had committed when the feed opened. The follower's position alone is not
            // "now": a follower stands before every transaction still running (the log's
            // horizon), also one older than changes that have committed, which it reads when
            // that transaction ends. A feed that started the follower at such a moment (or
            // joined before it read them) sent those changes too: an order's version that
            // committed before the client opened the feed, a second time if it had seen it.
            StoreStart::Now(committed) => (subscription.since, Some(committed)),
        };
        let opened = opened.as_ref();
        loop {
            tokio::select! {
                batch = subscription.batches.recv() => match batch {
                    Ok(batch) => {
                        for e in batch.iter() {
                            if e.at <= last {
                                continue;
                            }
                            if self.wanted(e, opened)
                                && self.send(LiveMessage::event(store_feed_id(e.at), e)?).await.is_err()
                            {
                                return Ok(());
                            }
                            last = e.at;
                        }
                    }
                    Err(broadcast::error::RecvError::Lagged(_)) => {
                        self.hub.caught_up("store", "lagged");
                        let now = *subscription.position.borrow();
                        if self.catch_up(&mut last, now, opened).await? == Gone::Yes {
                            return Ok(());
                        }
                    }
                    Err(broadcast::error::RecvError::Closed) => return Ok(()),
                },
                () = Subscription::closed(&mut subscription.closing) => return Ok(()),
                () = self.out.closed() => return Ok(()),
            }
        }
    }

    /// Whether `e` is one of the feed's: of its store, and not committed when a feed from now
    /// `opened`.
    fn wanted(&self, e: &LiveEvent, opened: Option<&Committed>) -> bool {
        e.store_id == Some(self.store_id) && !opened.is_some_and(|c| c.holds(e.at))
    }

    /// Sends the store's events after `at` from the log (those it wants, see `wanted`), moving
    /// `at` past everything read, at least up to `until` (where the follower stood: the
    /// broadcast brings what comes after). Holds a connection only while it reads, never while
    /// the client is slow to take a message.
    async fn catch_up(
        &self,
        at: &mut Cursor,
        until: Cursor,
        opened: Option<&Committed>,
    ) -> anyhow::Result<Gone> {
        let mut known = Known::default();
        let patience = tokio::time::Instant::now() + CATCH_UP_PATIENCE;
        loop {
            let (tail, events) = {
                let mut conn = self.hub.pool.acquire().await?;
                let tail = read_tail(&mut conn, *at, i64::from(CATCH_UP_BATCH), None)
                    .await
                    .context("reading the log")?;
                let events = known.annotate(&mut conn, &tail.events).await?;
                (tail, events)
            };
            for e in events.iter().filter(|e| self.wanted(e, opened)) {
                if self
                    .send(LiveMessage::event(store_feed_id(e.at), e)?)
                    .await
                    .is_err()
                {
                    return Ok(Gone::Yes);
                }
            }
            if let Some(end) = tail.last {
                *at = end;
            }
            if tail.scanned < CATCH_UP_BATCH as usize {
                if *at >= until {
                    return Ok(Gone::No);
                }
                // this read's horizon is behind the follower's: a transaction that began
                // meanwhile still runs; the events up to `until` are committed, look again
                anyhow::ensure!(
                    tokio::time::Instant::now() < patience,
                    "the log's horizon stayed behind the live feed follower"
                );
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    }

    async fn send(&self, message: LiveMessage) -> Result<(), mpsc::error::SendError<LiveMessage>> {
        self.out.send(message).await?;
        self.hub.sent("store");
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(tx_id: u64) -> Cursor {
        Cursor { tx_id, position: 1 }
    }

    #[test]
    fn a_snapshot_holds_the_transactions_that_had_ended_and_no_other() {
        let committed = Committed::parse("10:20:12,15").expect("a snapshot");
        assert_eq!(
            committed,
            Committed {
                xmin: 10,
                xmax: 20,
                running: vec![12, 15]
            }
        );
        let held: Vec<u64> = (5..25).filter(|&tx| committed.holds(at(tx))).collect();
        assert_eq!(held, [5, 6, 7, 8, 9, 10, 11, 13, 14, 16, 17, 18, 19]);
    }

    #[test]
    fn a_snapshot_with_nothing_running_holds_everything_below_its_end() {
        let committed = Committed::parse("30:30:").expect("a snapshot");
        assert!(committed.holds(at(29)));
        assert!(!committed.holds(at(30)));
        assert_eq!(Committed::parse("30:x:"), None);
        assert_eq!(Committed::parse("30:30"), None);
    }
}
