//! Live feeds (DESIGN §9): the events of one order, or of one store's orders, pushed as they
//! commit. The HTTP side (SSE and WebSocket) is `http::live`; this is where the events come
//! from, and why a feed never misses one. Served per request, not a background worker: the
//! follower runs only while someone listens.
//!
//! * **One follower per process**, running while anyone listens: a log reader without
//!   checkpoint or lock ([`Checkpoints::Never`](crate::log::Checkpoints::Never)), woken like
//!   every reader (at once by this process's appends, by `LISTEN` for other replicas'). It
//!   broadcasts each batch of order events in memory to every open feed; a hundred feeds cost
//!   one read of the log (`follower`).
//! * **Look back only after listening.** A feed subscribes first, then reads from the database
//!   what came before (a snapshot, or the events after the client's last one), then forwards
//!   the broadcast, dropping what it has sent already (by version for an order, by log
//!   position for a store). The two overlap; they never leave a gap (`feeds`).
//! * **Falling behind is catching up.** A feed whose client reads slower than the broadcast
//!   moves (a lagged receiver), or that sees an order's version jump, reads the missing events
//!   from the database, as on resume.
//! * **Resumable.** Every message has an id (an order's version; a store feed's log position);
//!   a client that comes back with the last id it got (`Last-Event-ID`) gets exactly what it
//!   missed, also across restarts of the service (`message`).
//!
//! Module map: `message` (what a feed carries, its ids), `follower` (the one reader and
//! its broadcast), `feeds` (the order and store feeds); [`LiveFeeds`] here opens them.

mod annotate;
mod feeds;
mod follower;
mod message;
pub mod metrics;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use sqlx::PgPool;
use tokio::sync::mpsc;
use uuid::Uuid;

use self::feeds::{Committed, OrderFeed, StoreFeed, StoreStart};
use self::follower::Hub;
pub use self::follower::READER;
pub use self::message::{
    parse_store_feed_id, store_feed_id, LiveEvent, LiveEventView, LiveMessage, OrderStart,
};
use crate::log::{AppendSignal, Cursor};
use crate::telemetry::Metrics;

/// Messages a feed holds for a client that reads slowly; then it stops taking batches (and,
/// falling behind the broadcast, catches up later).
const FEED_BUFFER: usize = 64;

/// How often an idle feed sends a keep-alive (an SSE comment, a WebSocket ping).
pub const KEEP_ALIVE: Duration = Duration::from_secs(15);

/// The process's live feeds: the follower and the feeds it serves. Cheap to clone.
#[derive(Debug, Clone)]
pub struct LiveFeeds {
    hub: Arc<Hub>,
    /// How old a store feed's resume point may be.
    store_resume_max_age: Duration,
}

/// A store feed asked to resume from a message that is older than the resume window, or not
/// one of the log's at all: catching up would re-read the whole log since then.
#[derive(Debug, Clone, thiserror::Error)]
#[error(
    "a store feed resumes only from a message of the last {max_age_secs} seconds; read the \
     store's orders (`GET /v1/orders?store_id=`), then open the feed without a resume id"
)]
pub struct ResumeTooOld {
    pub max_age_secs: u64,
}

impl LiveFeeds {
    /// The feeds of a process that reads the log from `pool` and is woken by `appended`; a
    /// feed whose client falls `broadcast_batches` batches behind catches up from the database.
    pub fn new(
        pool: PgPool,
        metrics: Arc<Metrics>,
        appended: AppendSignal,
        settings: &crate::config::LiveSettings,
    ) -> Self {
        Self {
            hub: Arc::new(Hub::new(
                pool,
                metrics,
                appended,
                settings.broadcast_batches,
            )),
            store_resume_max_age: Duration::from_secs(settings.store_resume_max_age_secs),
        }
    }

    /// Ends every feed (the service is stopping) and refuses new ones.
    pub fn close(&self) {
        self.hub.close();
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
        let subscription = self.hub.subscribe().await?;
        let hub = Arc::clone(&self.hub);
        Ok(self.spawn_feed("order", order_id, move |out| {
            OrderFeed { hub, order_id, out }.run(subscription, start)
        }))
    }

    /// Opens the feed of one store's orders: every event of them after `after` (a store feed
    /// message id) when resuming, else from now. A resume point older than the resume window,
    /// or not in the log, fails with [`ResumeTooOld`] before anything is read.
    pub async fn store(
        &self,
        store_id: Uuid,
        after: Option<Cursor>,
    ) -> anyhow::Result<mpsc::Receiver<LiveMessage>> {
        if let Some(at) = after {
            self.check_resumable(at).await?;
        }
        let subscription = self.hub.subscribe().await?;
        let start = match after {
            Some(at) => StoreStart::After(at),
            // after joining (so no event it leaves out is one the broadcast missed), before
            // the caller has the feed (so nothing it leaves out committed after the caller
            // asked): see `StoreFeed::run`
            None => StoreStart::Now(Committed::now(&self.hub.pool).await?),
        };
        let hub = Arc::clone(&self.hub);
        Ok(self.spawn_feed("store", store_id, move |out| {
            StoreFeed { hub, store_id, out }.run(subscription, start)
        }))
    }

    /// Whether a store feed may resume after `at`: an event of the log recorded within the
    /// resume window (one index lookup).
    async fn check_resumable(&self, at: Cursor) -> anyhow::Result<()> {
        let max_age = self.store_resume_max_age;
        let max_age_secs = max_age.as_secs();
        let recent: Option<bool> = sqlx::query_scalar(
            "select recorded_at > now() - make_interval(secs => $3)
               from events where tx_id = $1::text::xid8 and position = $2",
        )
        .bind(at.tx_id.to_string())
        .bind(at.position)
        .bind(max_age.as_secs_f64())
        .fetch_optional(&self.hub.pool)
        .await?;
        match recent {
            Some(true) => Ok(()),
            _ => Err(ResumeTooOld { max_age_secs }.into()),
        }
    }

    /// Runs the feed `run` makes (of the order or store `id`) in a span of its own, counted
    /// while open, sending to the returned channel.
    fn spawn_feed<Feed>(
        &self,
        kind: &'static str,
        id: Uuid,
        run: impl FnOnce(mpsc::Sender<LiveMessage>) -> Feed,
    ) -> mpsc::Receiver<LiveMessage>
    where
        Feed: Future<Output = anyhow::Result<()>> + Send + 'static,
    {
        let (out, messages) = mpsc::channel(FEED_BUFFER);
        let feed = run(out);
        let metrics = self.hub.metrics.clone();
        let span = tracing::info_span!("live.feed", feed = kind, %id);
        tokio::spawn(tracing::Instrument::instrument(
            async move {
                let open = metrics.live.feeds_open.with_label_values(&[kind]);
                open.inc();
                if let Err(e) = feed.await {
                    metrics.live.feed_failures.with_label_values(&[kind]).inc();
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
        messages
    }
}
