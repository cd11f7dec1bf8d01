//! The order command executor: load the order's events, authorize against the loaded state,
//! resolve catalog prices, decide, append, in one optimistic step (DESIGN §4, §5).
//!
//! Round trips per command: one select of the order's events (none when this process's last
//! command on the order left it in the [`OrderCache`]), catalog prices from memory (or one
//! select), and one insert of all new events. Commands on one order queue behind each other inside a process (a lock per order
//! id), so a burst on one order does not turn into a retry storm; across replicas a unique-key
//! collision on `(aggregate, sequence)` means another writer won, and the command is decided
//! again on the new state, a bounded number of times.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use cqrs_es::persist::{EventStoreAggregateContext, PersistedEventStore};
use cqrs_es::{Aggregate as _, AggregateError, EventEnvelope, EventStore as _};
use order_domain::{
    CommandMark, Decision, Envelope, Order, OrderCommand, OrderError, OrderEvent, OrderId,
};
use rand::Rng as _;
use sqlx::PgPool;

use super::cache::OrderCache;
use super::catalog::CatalogRepository;
use super::event_log::EventLog;
use super::locks::KeyedLocks;
use crate::log::AppendSignal;
use crate::telemetry::Metrics;

/// Attempts of one command before a conflict is reported to the client.
const MAX_ATTEMPTS: u32 = 8;

/// Who asked for a change, and in which trace: stored as every event's metadata.
#[derive(Debug, Clone, Default)]
pub struct EventMetadata {
    pub correlation_id: Option<String>,
    pub causation_id: Option<String>,
    pub principal: Option<String>,
    pub traceparent: Option<String>,
    pub idempotency_key: Option<String>,
}

impl EventMetadata {
    fn into_map(self) -> HashMap<String, String> {
        [
            ("correlation_id", self.correlation_id),
            ("causation_id", self.causation_id),
            ("principal", self.principal),
            ("traceparent", self.traceparent),
            ("idempotency_key", self.idempotency_key),
        ]
        .into_iter()
        .filter_map(|(k, v)| v.map(|v| (k.to_owned(), v)))
        .collect()
    }
}

/// One command to execute.
#[derive(Debug, Clone)]
pub struct CommandRequest {
    pub order_id: OrderId,
    pub command: OrderCommand,
    /// Set when the request came with an `Idempotency-Key`.
    pub mark: Option<CommandMark>,
    /// `If-Match`: the version the client last saw.
    pub expected_version: Option<u64>,
    pub metadata: EventMetadata,
}

/// What a successful command leaves behind.
#[derive(Debug, Clone)]
pub struct Executed {
    /// The order right after this command (for a replay: right after the original request).
    pub order: Order,
    /// True when an identical earlier request was answered again and nothing was appended.
    pub replayed: bool,
}

/// Why a command did not execute. `E` is the caller's authorization error.
#[derive(Debug, thiserror::Error)]
pub enum ExecuteError<E> {
    #[error("not allowed")]
    Denied(E),
    #[error(transparent)]
    Refused(OrderError),
    #[error("the order is at version {actual}, not {expected}")]
    VersionMismatch { expected: u64, actual: u64 },
    #[error("too many concurrent writers on this order")]
    Conflict,
    #[error("event store unavailable")]
    Unavailable(#[source] anyhow::Error),
    #[error("event store failure")]
    Store(#[source] anyhow::Error),
}

/// Executes order commands against the event store.
pub struct OrderRepository {
    store: PersistedEventStore<EventLog, Order>,
    catalog: CatalogRepository,
    metrics: Arc<Metrics>,
    locks: KeyedLocks<OrderId>,
    cache: OrderCache,
}

impl std::fmt::Debug for OrderRepository {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OrderRepository").finish_non_exhaustive()
    }
}

/// What a command comes to on one state of its order.
enum Next {
    /// Append these events; the order after them.
    Append(Vec<OrderEvent>, Box<Order>),
    /// Nothing to append, nothing replayed.
    Unchanged,
    /// The command was executed before, when the order reached `version`.
    Replay { version: u64 },
}

/// An order as loaded: its state and the events it was folded from.
struct Loaded {
    order: Order,
    events: Vec<EventEnvelope<Order>>,
}

impl OrderRepository {
    pub fn new(
        pool: PgPool,
        appended: AppendSignal,
        catalog: CatalogRepository,
        metrics: Arc<Metrics>,
        cache: OrderCache,
    ) -> Self {
        Self {
            // Pure event-store mode: postgres-es 0.5's snapshot and aggregate-store modes
            // apply events twice.
            store: PersistedEventStore::new_event_store(EventLog::new(
                pool,
                appended,
                metrics.clone(),
            )),
            catalog,
            metrics,
            locks: KeyedLocks::default(),
            cache,
        }
    }

    /// Loads an order's current state (`None` if it was never created).
    #[tracing::instrument(skip_all, fields(order_id = %id))]
    pub async fn load(&self, id: OrderId) -> anyhow::Result<Option<Order>> {
        let loaded = self
            .load_events::<std::convert::Infallible>(id)
            .await
            .map_err(anyhow_of)?;
        Ok(Some(loaded.order).filter(Order::exists))
    }

    /// Runs `request`: `authorize` sees the loaded order before anything is decided and may
    /// refuse; a replayed request is authorized the same way as the original.
    #[tracing::instrument(skip_all, fields(order_id = %request.order_id, command = request.command.name()))]
    pub async fn execute<E>(
        &self,
        request: CommandRequest,
        authorize: impl Fn(&Order) -> Result<(), E>,
    ) -> Result<Executed, ExecuteError<E>> {
        let name = request.command.name();
        let started = Instant::now();
        let result = self.execute_inner(request, authorize).await;
        let outcome = match &result {
            Ok(e) if e.replayed => "replayed",
            Ok(_) => "accepted",
            Err(ExecuteError::Denied(_) | ExecuteError::Refused(_)) => "refused",
            Err(ExecuteError::VersionMismatch { .. } | ExecuteError::Conflict) => "conflict",
            Err(ExecuteError::Unavailable(_) | ExecuteError::Store(_)) => "error",
        };
        self.metrics
            .commands
            .with_label_values(&[name, outcome])
            .inc();
        self.metrics
            .command_duration
            .with_label_values(&[name])
            .observe(started.elapsed().as_secs_f64());
        result
    }

    async fn execute_inner<E>(
        &self,
        request: CommandRequest,
        authorize: impl Fn(&Order) -> Result<(), E>,
    ) -> Result<Executed, ExecuteError<E>> {
        let started_at_entry = Instant::now();
        if let OrderCommand::CreateOrder(create) = &request.command {
            if create.order_id != request.order_id {
                return Err(ExecuteError::Store(anyhow::anyhow!(
                    "CreateOrder for {} sent to aggregate {}",
                    create.order_id,
                    request.order_id
                )));
            }
        }
        let aggregate_id = request.order_id.to_string();
        let envelope = Envelope {
            command: request.command,
            mark: request.mark,
        };
        let metadata = request.metadata.into_map();
        let stages = Stages::new(&self.metrics);
        let _guard = self.locks.lock(request.order_id).await;
        let mut stage = stages.done("lock", started_at_entry);
        let mut cached = self.cache.get(request.order_id);
        if self.cache.enabled() {
            let outcome = if cached.is_some() { "hit" } else { "miss" };
            self.metrics.order_cache.with_label_values(&[outcome]).inc();
        }
        let mut backoff = Duration::from_millis(2);
        for attempt in 1..=MAX_ATTEMPTS {
            // `events` is `None` for an order from the cache
            let (order, events) = if let Some(order) = cached.take() {
                (order, None)
            } else {
                let Loaded { order, events } = self.load_events(request.order_id).await?;
                (order, Some(events))
            };
            stage = stages.done("load", stage);
            let decided = self
                .decide(&order, &envelope, request.expected_version, &authorize)
                .await;
            stage = stages.done("decide", stage);
            let (new_events, after) = match (decided, &events) {
                (Ok(Next::Append(new_events, after)), _) => (new_events, after),
                // an outage does not depend on the order's state
                (Err(e @ (ExecuteError::Unavailable(_) | ExecuteError::Store(_))), _) => {
                    return Err(e)
                }
                (answer, None) => {
                    // Decided on a cached order without appending: decide again on the
                    // order as stored (see `cache`).
                    drop(answer);
                    self.metrics.order_cache.with_label_values(&["stale"]).inc();
                    continue;
                }
                (Ok(Next::Unchanged), Some(_)) => {
                    return Ok(Executed {
                        order,
                        replayed: false,
                    })
                }
                (Ok(Next::Replay { version }), Some(events)) => {
                    return Ok(replayed(events, version))
                }
                (Err(e), Some(_)) => return Err(e),
            };
            let types: Vec<String> = new_events
                .iter()
                .map(|e| e.change.event_type().to_owned())
                .collect();
            let context = EventStoreAggregateContext {
                aggregate_id: aggregate_id.clone(),
                current_sequence: usize::try_from(order.version()).unwrap_or(usize::MAX),
                // Only snapshot modes read the context's aggregate; ours is event-store mode.
                aggregate: order,
                current_snapshot: None,
            };
            let committed = self
                .store
                .commit(new_events, context, metadata.clone())
                .await;
            stage = stages.done("append", stage);
            match committed {
                Ok(_) => {
                    for t in &types {
                        self.metrics.events_appended.with_label_values(&[t]).inc();
                    }
                    self.cache.put(request.order_id, (*after).clone());
                    return Ok(Executed {
                        order: *after,
                        replayed: false,
                    });
                }
                Err(AggregateError::AggregateConflict) if attempt < MAX_ATTEMPTS => {
                    self.cache.forget(request.order_id);
                    self.metrics
                        .command_retries
                        .with_label_values(&[envelope.command.name()])
                        .inc();
                    if events.is_none() {
                        self.metrics.order_cache.with_label_values(&["stale"]).inc();
                        // another writer appended since this process last did: no backoff,
                        // the order is simply loaded
                        continue;
                    }
                    // Someone else appended first. With If-Match the client asked for exactly
                    // the version it saw, so the next round reports the mismatch.
                    let jitter = rand::rng()
                        .random_range(0..=u64::try_from(backoff.as_micros()).unwrap_or(u64::MAX));
                    tokio::time::sleep(backoff + Duration::from_micros(jitter)).await;
                    backoff = (backoff * 2).min(Duration::from_millis(50));
                    stage = stages.done("backoff", stage);
                }
                Err(AggregateError::AggregateConflict) => {
                    self.cache.forget(request.order_id);
                    return Err(ExecuteError::Conflict);
                }
                Err(e) => {
                    self.cache.forget(request.order_id);
                    return Err(store_error(e));
                }
            }
        }
        Err(ExecuteError::Conflict)
    }

    /// What `envelope` does to `order`: authorization, replay, `If-Match`, catalog prices and
    /// the domain's decision.
    async fn decide<E>(
        &self,
        order: &Order,
        envelope: &Envelope,
        expected_version: Option<u64>,
        authorize: impl Fn(&Order) -> Result<(), E>,
    ) -> Result<Next, ExecuteError<E>> {
        if order.exists() {
            authorize(order).map_err(ExecuteError::Denied)?;
        }
        // A retry is answered as the original was, whatever has happened since.
        if let Some(version) = order
            .replay_of(envelope.mark)
            .map_err(ExecuteError::Refused)?
        {
            return Ok(Next::Replay { version });
        }
        if let (Some(expected), true) = (expected_version, order.exists()) {
            if expected != order.version() {
                return Err(ExecuteError::VersionMismatch {
                    expected,
                    actual: order.version(),
                });
            }
        }
        let prices = match order.catalog_lookup(&envelope.command) {
            Some((store, skus)) => self.catalog.prices(store, &skus).await.map_err(|e| {
                if super::is_unavailable(&e) {
                    ExecuteError::Unavailable(e)
                } else {
                    ExecuteError::Store(e)
                }
            })?,
            None => order_domain::PriceList::new(),
        };
        match order
            .decide(envelope, &prices)
            .map_err(ExecuteError::Refused)?
        {
            Decision::Replayed { version } => Ok(Next::Replay { version }),
            Decision::Events(new_events) if new_events.is_empty() => Ok(Next::Unchanged),
            Decision::Events(new_events) => {
                let mut after = order.clone();
                for e in &new_events {
                    after.apply(e.clone());
                }
                Ok(Next::Append(new_events, Box::new(after)))
            }
        }
    }

    async fn load_events<E>(&self, id: OrderId) -> Result<Loaded, ExecuteError<E>> {
        let events = self
            .store
            .load_events(&id.to_string())
            .await
            .map_err(store_error)?;
        Ok(Loaded {
            order: fold(events.iter()),
            events,
        })
    }
}

/// Observes how long each stage of a command took, into `order_command_stage_seconds`.
struct Stages<'a> {
    histogram: &'a prometheus::HistogramVec,
}

impl<'a> Stages<'a> {
    fn new(metrics: &'a Metrics) -> Self {
        Self {
            histogram: &metrics.command_stage_seconds,
        }
    }

    /// Records `stage` as having run since `since`; returns now, the start of the next stage.
    fn done(&self, stage: &str, since: Instant) -> Instant {
        let now = Instant::now();
        self.histogram
            .with_label_values(&[stage])
            .observe(now.duration_since(since).as_secs_f64());
        now
    }
}

/// The answer to a replayed request: the order as the original request left it.
fn replayed(events: &[EventEnvelope<Order>], version: u64) -> Executed {
    Executed {
        order: fold(
            events
                .iter()
                .take(usize::try_from(version).unwrap_or(usize::MAX)),
        ),
        replayed: true,
    }
}

fn fold<'a>(events: impl Iterator<Item = &'a EventEnvelope<Order>>) -> Order {
    let mut order = Order::default();
    for e in events {
        order.apply(e.payload.clone());
    }
    order
}

fn store_error<E>(e: AggregateError<OrderError>) -> ExecuteError<E> {
    match e {
        AggregateError::DatabaseConnectionError(e) => {
            ExecuteError::Unavailable(anyhow::anyhow!(e).context("database connection"))
        }
        AggregateError::UserError(e) => ExecuteError::Refused(e),
        AggregateError::UnexpectedError(e) => {
            // Keep the concrete sqlx error in the chain (anyhow hides a boxed one from
            // downcasts), so callers can tell an outage from a bug.
            let (e, unavailable) = match e.downcast::<sqlx::Error>() {
                Ok(sqlx) => {
                    let unavailable = super::sqlx_unavailable(&sqlx);
                    (anyhow::Error::new(*sqlx), unavailable)
                }
                Err(other) => (anyhow::anyhow!(other), false),
            };
            let e = e.context("event store");
            if unavailable {
                ExecuteError::Unavailable(e)
            } else {
                ExecuteError::Store(e)
            }
        }
        other => ExecuteError::Store(anyhow::anyhow!(other.to_string())),
    }
}

fn anyhow_of<E>(e: ExecuteError<E>) -> anyhow::Error {
    match e {
        ExecuteError::Unavailable(e) | ExecuteError::Store(e) => e,
        other => anyhow::anyhow!(other.to_string()),
    }
}
