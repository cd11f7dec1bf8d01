//! Live feeds (DESIGN §9): the events of one order, or of one store's orders, pushed as they
//! commit. The HTTP side (SSE and WebSocket) is `http::live`; this is where the events come
//! from, and why a feed never misses one.
//!
//! * **One follower per process**, running while anyone listens: a log reader without
//!   checkpoint or lock ([`Checkpoints::Never`]), woken like every reader (at once by this
//!   process's appends, by `LISTEN` for other replicas'). It broadcasts each batch of order
//!   events in memory to every open feed; a hundred feeds cost one read of the log.
//! * **Look back only after listening.** A feed subscribes first, then reads from the database
//!   what came before (a snapshot, or the events after the client's last one), then forwards
//!   the broadcast, dropping what it has sent already (by version for an order, by log
//!   position for a store). The two overlap; they never leave a gap.
//! * **Falling behind is catching up.** A feed whose client reads slower than the broadcast
//!   moves (a lagged receiver), or that sees an order's version jump, reads the missing events
//!   from the database, as on resume.
//! * **Resumable.** Every message has an id (an order's version; a store feed's log position);
//!   a client that comes back with the last id it got (`Last-Event-ID`) gets exactly what it
//!   missed, also across restarts of the service.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context as _;
use chrono::{DateTime, Utc};
use order_projections::queries as read;
use serde::Serialize;
use sqlx::{PgConnection, PgPool};
use tokio::sync::{broadcast, mpsc, watch};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::log::{end_of_log, read_tail, AppendSignal};
use crate::log::{Checkpoints, Cursor, LogEvent, LogHandler, LogReader, ReaderConfig};
use crate::telemetry::Metrics;

/// Name of the follower's reader (metric label).
pub const READER: &str = "live";

/// Batches a feed may fall behind the follower before it catches up from the database, by
/// default (`APP__LIVE__BROADCAST_BATCHES`).
pub const BROADCAST_BATCHES: usize = 256;

/// Orders whose store the follower remembers (then it forgets them all and starts again).
const STORE_CACHE_ENTRIES: usize = 100_000;

/// Messages a feed holds for a client that reads slowly; then it stops taking batches (and,
/// falling behind the broadcast, catches up later).
const FEED_BUFFER: usize = 64;

/// Events read per catch-up query.
const CATCH_UP_BATCH: u32 = 500;

/// How long a store feed's catch-up waits for its reads to reach where the follower stood
/// (events the follower read that a later read still holds back behind a transaction that
/// began before it): then the feed ends and the client resumes.
const CATCH_UP_PATIENCE: Duration = Duration::from_secs(5);

/// One order event as the feeds carry it.
#[derive(Debug, Clone)]
pub struct LiveEvent {
    /// Its position in the log (a store feed's message id).
    pub at: Cursor,
    pub order_id: Uuid,
    /// The order's store (`None` when the event store does not know the order's creation).
    pub store_id: Option<Uuid>,
    /// The order's version after it (an order feed's message id).
    pub version: i64,
    pub event_id: Uuid,
    pub event_type: String,
    pub payload: serde_json::Value,
    pub recorded_at: DateTime<Utc>,
}

/// The JSON of an order event on a feed.
#[derive(Debug, Clone, Serialize)]
pub struct LiveEventView<'a> {
    pub order_id: Uuid,
    /// The order's version after this event.
    pub version: i64,
    pub event_id: Uuid,
    pub event_type: &'a str,
    /// The event as recorded (`type` names the change).
    pub payload: &'a serde_json::Value,
    pub recorded_at: DateTime<Utc>,
}

impl LiveEvent {
    fn view(&self) -> LiveEventView<'_> {
        LiveEventView {
            order_id: self.order_id,
            version: self.version,
            event_id: self.event_id,
            event_type: &self.event_type,
            payload: &self.payload,
            recorded_at: self.recorded_at,
        }
    }

    /// The order event `e` of the log, if it is one.
    fn of(e: &LogEvent, store_id: Option<Uuid>) -> Option<Self> {
        if e.aggregate_type != "Order" {
            return None;
        }
        Some(Self {
            at: e.cursor(),
            order_id: e.aggregate_id.parse().ok()?,
            store_id,
            version: e.sequence,
            event_id: e.event_id,
            event_type: e.event_type.clone(),
            payload: e.payload.clone(),
            recorded_at: e.recorded_at,
        })
    }
}

/// One message of a feed: `kind` is `snapshot` (an order as it stands, first on an order feed
/// that does not resume) or `event`; `id` is what the client resumes with.
#[derive(Debug, Clone, PartialEq)]
pub struct LiveMessage {
    pub kind: &'static str,
    pub id: String,
    pub data: serde_json::Value,
}

impl LiveMessage {
    fn event(id: String, e: &LiveEvent) -> anyhow::Result<Self> {
        Ok(Self {
            kind: "event",
            id,
            data: serde_json::to_value(e.view())?,
        })
    }
}

/// A store feed's message id: the event's log position, `<tx_id>.<position>`.
pub fn store_feed_id(at: Cursor) -> String {
    format!("{}.{}", at.tx_id, at.position)
}

/// The position a store feed message id names; `None` when it is not one.
pub fn parse_store_feed_id(id: &str) -> Option<Cursor> {
    let (tx_id, position) = id.trim().split_once('.')?;
    Some(Cursor {
        tx_id: tx_id.parse().ok()?,
        position: position.parse().ok()?,
    })
}

/// The process's live feeds: the follower and the feeds it serves. Cheap to clone.
#[derive(Debug, Clone)]
pub struct LiveFeeds {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    pool: PgPool,
    metrics: Arc<Metrics>,
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
struct Subscription {
    feeds: LiveFeeds,
    batches: broadcast::Receiver<Arc<[LiveEvent]>>,
    /// Every event after this reaches `batches` (or a lag tells it did not).
    since: Cursor,
    /// Where the follower stands now (the end of its last broadcast batch).
    position: watch::Receiver<Cursor>,
    /// Turns true when the service stops.
    closing: watch::Receiver<bool>,
}

impl Subscription {
    /// Resolves when the service stops (at once if it already has).
    async fn closed(closing: &mut watch::Receiver<bool>) {
        // the sender lives as long as the feeds: an error is the same as closing
        let _ = closing.wait_for(|closing| *closing).await;
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        let mut follower = self.feeds.lock_follower();
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

impl LiveFeeds {
    /// The feeds of a process that reads the log from `pool` and is woken by `appended`; a
    /// feed whose client falls `broadcast_batches` batches behind catches up from the database.
    pub fn new(
        pool: PgPool,
        metrics: Arc<Metrics>,
        appended: AppendSignal,
        broadcast_batches: usize,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                pool,
                metrics,
                appended,
                broadcast_batches: broadcast_batches.max(1),
                follower: Mutex::new(None),
                closing: watch::Sender::new(false),
            }),
        }
    }

    /// Ends every feed (the service is stopping) and refuses new ones.
    pub fn close(&self) {
        self.inner.closing.send_replace(true);
        if let Some(f) = self.lock_follower().take() {
            f.stop.cancel();
        }
    }

    fn lock_follower(&self) -> std::sync::MutexGuard<'_, Option<Follower>> {
        // a panic while holding this lock leaves nothing half-done: take the state as it is
        self.inner
            .follower
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Joins the broadcast, starting the follower at the end of the log when none runs.
    async fn subscribe(&self) -> anyhow::Result<Subscription> {
        let mut start = None;
        loop {
            {
                let mut follower = self.lock_follower();
                // under the lock: `close` takes the follower under it too, so none starts after
                anyhow::ensure!(!*self.inner.closing.borrow(), "the service is stopping");
                if follower.is_none() {
                    if let Some(at) = start {
                        *follower = Some(self.start_follower(at));
                    }
                }
                if let Some(f) = follower.as_ref() {
                    return Ok(Subscription {
                        feeds: self.clone(),
                        batches: f.batches.subscribe(),
                        since: *f.position.borrow(),
                        position: f.position.subscribe(),
                        closing: self.inner.closing.subscribe(),
                    });
                }
            }
            // Not running: find where to start without holding the lock, then try again.
            let mut conn = self.inner.pool.acquire().await?;
            start = Some(end_of_log(&mut conn).await?);
        }
    }

    fn start_follower(&self, at: Cursor) -> Follower {
        let (batches, _) = broadcast::channel(self.inner.broadcast_batches);
        let position = Arc::new(watch::Sender::new(at));
        let stop = CancellationToken::new();
        let handler = Broadcaster {
            batches: batches.clone(),
            position: Arc::clone(&position),
            stores: HashMap::new(),
        };
        let config = ReaderConfig::new(READER).checkpointing(Checkpoints::Never);
        let reader = LogReader::new(self.inner.pool.clone(), config, self.inner.metrics.clone())
            .woken_by(self.inner.appended.clone())
            .starting_at(at);
        let stopped = stop.clone();
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

    /// Opens the feed of one order, whose visibility the caller has checked: first `snapshot`
    /// (the order at its version, as JSON) when given, then every event after that version,
    /// or after `after_version` when resuming. Messages arrive on the returned channel until
    /// the client drops it, the service stops, or the database fails (the client resumes).
    pub async fn order(
        &self,
        order_id: Uuid,
        start: OrderStart,
    ) -> anyhow::Result<mpsc::Receiver<LiveMessage>> {
        let feeds = self.clone();
        self.open("order", order_id, move |subscription, out| {
            let feed = OrderFeed {
                feeds,
                order_id,
                out,
            };
            async move { feed.run(subscription, start).await }
        })
        .await
    }

    /// Opens the feed of one store's orders: every event of them after `after` (a store feed
    /// message id) when resuming, else from now.
    pub async fn store(
        &self,
        store_id: Uuid,
        after: Option<Cursor>,
    ) -> anyhow::Result<mpsc::Receiver<LiveMessage>> {
        let feeds = self.clone();
        self.open("store", store_id, move |subscription, out| {
            let feed = StoreFeed {
                feeds,
                store_id,
                out,
            };
            async move { feed.run(subscription, after).await }
        })
        .await
    }

    /// Joins the broadcast and runs the feed `run` makes of it (of the order or store `id`),
    /// sending to the returned channel.
    async fn open<Feed>(
        &self,
        kind: &'static str,
        id: Uuid,
        run: impl FnOnce(Subscription, mpsc::Sender<LiveMessage>) -> Feed,
    ) -> anyhow::Result<mpsc::Receiver<LiveMessage>>
    where
        Feed: std::future::Future<Output = anyhow::Result<()>> + Send + 'static,
    {
        let subscription = self.subscribe().await?;
        let (out, messages) = mpsc::channel(FEED_BUFFER);
        self.spawn_feed(kind, id, run(subscription, out));
        Ok(messages)
    }

    /// Runs `feed` (of the order or store `id`) in a span of its own, counted while open.
    fn spawn_feed(
        &self,
        kind: &'static str,
        id: Uuid,
        feed: impl std::future::Future<Output = anyhow::Result<()>> + Send + 'static,
    ) {
        let metrics = self.inner.metrics.clone();
        let span = tracing::info_span!("live.feed", feed = kind, %id);
        tokio::spawn(tracing::Instrument::instrument(
            async move {
                let open = metrics.live_feeds_open.with_label_values(&[kind]);
                open.inc();
                if let Err(e) = feed.await {
                    metrics.live_feed_failures.with_label_values(&[kind]).inc();
                    tracing::warn!(
                        feed = kind,
                        error = format!("{e:#}"),
                        "live feed ended early; the client resumes"
                    );
                }
                open.dec();
            },
            span,
        ));
    }

    fn sent(&self, feed: &'static str) {
        self.inner
            .metrics
            .live_messages
            .with_label_values(&[feed])
            .inc();
    }

    fn caught_up(&self, feed: &'static str, reason: &'static str) {
        self.inner
            .metrics
            .live_catch_ups
            .with_label_values(&[feed, reason])
            .inc();
    }
}

/// Where an order feed starts.
#[derive(Debug, Clone)]
pub enum OrderStart {
    /// With the order as it stands (its detail as JSON) at `version`.
    Snapshot {
        version: i64,
        detail: serde_json::Value,
    },
    /// After the event of this version (what the client got last).
    After(i64),
}

/// The follower's handler: order events of each batch, with their stores, to every feed.
struct Broadcaster {
    batches: broadcast::Sender<Arc<[LiveEvent]>>,
    position: Arc<watch::Sender<Cursor>>,
    /// Order → store, learnt from `OrderCreated` events and lookups.
    stores: HashMap<Uuid, Uuid>,
}

impl LogHandler for Broadcaster {
    async fn handle(&mut self, conn: &mut PgConnection, batch: &[LogEvent]) -> anyhow::Result<()> {
        let Some(last) = batch.last().map(LogEvent::cursor) else {
            return Ok(());
        };
        if self.stores.len() > STORE_CACHE_ENTRIES {
            self.stores.clear();
        }
        let events = with_stores(conn, batch, &mut self.stores).await?;
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

/// The order events of `batch` with their stores: from the batch's own `OrderCreated` events,
/// `known`, and one query for the rest (remembered in `known`).
async fn with_stores(
    conn: &mut PgConnection,
    batch: &[LogEvent],
    known: &mut HashMap<Uuid, Uuid>,
) -> anyhow::Result<Vec<LiveEvent>> {
    let mut unknown = Vec::new();
    for e in batch.iter().filter(|e| e.aggregate_type == "Order") {
        let Ok(order) = e.aggregate_id.parse::<Uuid>() else {
            continue;
        };
        let created = e
            .payload
            .get("store_id")
            .and_then(serde_json::Value::as_str)
            .and_then(|s| s.parse().ok())
            .filter(|_| e.sequence == 1);
        if let Some(store) = created {
            known.insert(order, store);
        } else if !known.contains_key(&order) && !unknown.contains(&e.aggregate_id) {
            unknown.push(e.aggregate_id.clone());
        }
    }
    if !unknown.is_empty() {
        for (order, store) in read::stores_of_orders(conn, &unknown)
            .await
            .context("looking up the stores of orders")?
        {
            known.insert(order, store);
        }
    }
    Ok(batch
        .iter()
        .filter_map(|e| {
            let store = e
                .aggregate_id
                .parse()
                .ok()
                .and_then(|o| known.get(&o))
                .copied();
            LiveEvent::of(e, store)
        })
        .collect())
}

/// Whether the client went away during a catch-up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Gone {
    Yes,
    No,
}

struct OrderFeed {
    feeds: LiveFeeds,
    order_id: Uuid,
    out: mpsc::Sender<LiveMessage>,
}

impl OrderFeed {
    async fn run(self, mut subscription: Subscription, start: OrderStart) -> anyhow::Result<()> {
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
                self.feeds.caught_up("order", "resume");
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
                                self.feeds.caught_up("order", "gap");
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
                        self.feeds.caught_up("order", "lagged");
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

    /// Sends the order's events after `last` from the event store, moving `last`.
    async fn catch_up(&self, last: &mut i64) -> anyhow::Result<Gone> {
        loop {
            let events =
                read::order_events(&self.feeds.inner.pool, self.order_id, *last, CATCH_UP_BATCH)
                    .await
                    .context("reading the order's events")?;
            let full = events.len() >= CATCH_UP_BATCH as usize;
            for e in events {
                let live = LiveEvent {
                    at: Cursor::default(),
                    order_id: self.order_id,
                    store_id: None,
                    version: e.version,
                    event_id: e.event_id,
                    event_type: e.event_type,
                    payload: e.payload,
                    recorded_at: e.recorded_at,
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
        self.feeds.sent("order");
        Ok(())
    }
}

struct StoreFeed {
    feeds: LiveFeeds,
    store_id: Uuid,
    out: mpsc::Sender<LiveMessage>,
}

impl StoreFeed {
    async fn run(
        self,
        mut subscription: Subscription,
        after: Option<Cursor>,
    ) -> anyhow::Result<()> {
        let mut last = match after {
            Some(mut at) => {
                self.feeds.caught_up("store", "resume");
                if self.catch_up(&mut at, subscription.since).await? == Gone::Yes {
                    return Ok(());
                }
                at
            }
            // from now: whatever the broadcast brings after where it stood when we joined
            None => subscription.since,
        };
        loop {
            tokio::select! {
                batch = subscription.batches.recv() => match batch {
                    Ok(batch) => {
                        for e in batch.iter() {
                            if e.at <= last {
                                continue;
                            }
                            if e.store_id == Some(self.store_id)
                                && self.send(LiveMessage::event(store_feed_id(e.at), e)?).await.is_err()
                            {
                                return Ok(());
                            }
                            last = e.at;
                        }
                    }
                    Err(broadcast::error::RecvError::Lagged(_)) => {
                        self.feeds.caught_up("store", "lagged");
                        let now = *subscription.position.borrow();
                        if self.catch_up(&mut last, now).await? == Gone::Yes {
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

    /// Sends the store's events after `at` from the log, moving `at` past everything read, at
    /// least up to `until` (where the follower stood: the broadcast brings what comes after).
    /// Holds a connection only while it reads, never while the client is slow to take a
    /// message.
    async fn catch_up(&self, at: &mut Cursor, until: Cursor) -> anyhow::Result<Gone> {
        let mut stores = HashMap::new();
        let patience = tokio::time::Instant::now() + CATCH_UP_PATIENCE;
        loop {
            let (tail, events) = {
                let mut conn = self.feeds.inner.pool.acquire().await?;
                let tail = read_tail(&mut conn, *at, i64::from(CATCH_UP_BATCH), None)
                    .await
                    .context("reading the log")?;
                if stores.len() > STORE_CACHE_ENTRIES {
                    stores.clear();
                }
                let events = with_stores(&mut conn, &tail.events, &mut stores).await?;
                (tail, events)
            };
            for e in events.iter().filter(|e| e.store_id == Some(self.store_id)) {
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
        self.feeds.sent("store");
        Ok(())
    }
}

/// How often an idle feed sends a keep-alive (an SSE comment, a WebSocket ping).
pub const KEEP_ALIVE: Duration = Duration::from_secs(15);
