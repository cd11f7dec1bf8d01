//! Order commands: the order's part of the one [`Executor`] (authorize against the loaded
//! state, replay a retried request, `If-Match`, catalog prices, the domain's decision), and the
//! command metrics (DESIGN §4, §5).
//!
//! Round trips per command: one select of the order's events (none when this process's last
//! command on the order left it in the executor's cache), catalog prices from memory (or one
//! select), for a new order or a placement whether the store is open (from memory, or one
//! select), and one insert of all new events.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use order_domain::{CommandMark, Decision, Envelope, Order, OrderCommand, OrderError, OrderId};
use sqlx::PgPool;

use super::catalog::CatalogRepository;
use super::event_log::EventLog;
use super::executor::{Decide, Decided, Executor, ExecutorMetrics, Failure, Loaded, Outcome};
use crate::log::AppendSignal;
use crate::telemetry::Metrics;

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

/// Why an order command did not execute: a [`Refusal`], or the executor's conflict and
/// store failures. `E` is the caller's authorization error.
pub type ExecuteError<E> = Failure<Refusal<E>>;

/// Executes order commands against the event store.
#[derive(Debug)]
pub struct OrderRepository {
    executor: Executor<OrderId, Order>,
    catalog: CatalogRepository,
    metrics: Arc<Metrics>,
}

/// Why an order command was refused; nothing was stored.
#[derive(Debug, thiserror::Error)]
pub enum Refusal<E> {
    /// The caller may not do this to this order.
    #[error("not allowed")]
    Denied(E),
    /// The domain's rules refuse it.
    #[error(transparent)]
    Order(OrderError),
    /// `If-Match` named another version.
    #[error("the order is at version {actual}, not {expected}")]
    VersionMismatch { expected: u64, actual: u64 },
}

/// Nothing to append: either nothing changed, or the request is a retry of the one that
/// brought the order to `version`.
enum Unchanged {
    Nothing,
    Replay { version: u64 },
}

/// The order's part of executing one command (see [`Executor`]): authorization, replay,
/// `If-Match`, catalog prices and the domain's decision.
struct OrderDecider<'a, F> {
    envelope: &'a Envelope,
    expected_version: Option<u64>,
    authorize: &'a F,
    catalog: &'a CatalogRepository,
}

impl<E: Send, F> Decide<Order> for OrderDecider<'_, F>
where
    F: Fn(&Order) -> Result<(), E> + Sync,
{
    type Answer = Unchanged;
    type Refusal = Refusal<E>;

    async fn decide(
        &self,
        order: &Order,
        _version: usize,
    ) -> Result<Decided<Order, Unchanged>, Failure<Refusal<E>>> {
        let refused = |r| Failure::Refused(r);
        if order.exists() {
            (self.authorize)(order).map_err(|e| refused(Refusal::Denied(e)))?;
        }
        // A retry is answered as the original was, whatever has happened since.
        if let Some(version) = order
            .replay_of(self.envelope.mark)
            .map_err(|e| refused(Refusal::Order(e)))?
        {
            return Ok(Decided::Answer(Unchanged::Replay { version }));
        }
        if let (Some(expected), true) = (self.expected_version, order.exists()) {
            if expected != order.version() {
                return Err(refused(Refusal::VersionMismatch {
                    expected,
                    actual: order.version(),
                }));
            }
        }
        let failed = |e: anyhow::Error| {
            if super::is_unavailable(&e) {
                Failure::Unavailable(e)
            } else {
                Failure::Store(e)
            }
        };
        let mut prices = match order.catalog_lookup(&self.envelope.command) {
            Some((store, skus)) => self.catalog.prices(store, &skus).await.map_err(failed)?,
            None => order_domain::PriceList::new(),
        };
        // a new order and a placement need the store open (from memory, like prices)
        if let Some(store) = order.store_to_check(&self.envelope.command) {
            let closed = self.catalog.store_closed(store).await.map_err(failed)?;
            prices = prices.with_store_closed(closed);
        }
        match order
            .decide(self.envelope, &prices)
            .map_err(|e| refused(Refusal::Order(e)))?
        {
            Decision::Replayed { version } => Ok(Decided::Answer(Unchanged::Replay { version })),
            Decision::Events(events) if events.is_empty() => {
                Ok(Decided::Answer(Unchanged::Nothing))
            }
            Decision::Events(events) => Ok(Decided::Append(events)),
        }
    }
}

impl OrderRepository {
    /// `cache_entries`: orders kept as this process's last command left them (0: none).
    pub fn new(
        pool: PgPool,
        appended: AppendSignal,
        catalog: CatalogRepository,
        metrics: Arc<Metrics>,
        cache_entries: usize,
    ) -> Self {
        let executor_metrics = ExecutorMetrics {
            cache: metrics.store.order_cache.clone(),
            appended: metrics.store.events_appended.clone(),
            retries: Some(metrics.store.command_retries.clone()),
            stages: Some(metrics.store.command_stage_seconds.clone()),
        };
        Self {
            executor: Executor::new(
                EventLog::new(pool, appended, metrics.clone()),
                cache_entries,
                executor_metrics,
            ),
            catalog,
            metrics,
        }
    }

    /// Loads an order's current state (`None` if it was never created).
    #[tracing::instrument(skip_all, fields(order_id = %id))]
    pub async fn load(&self, id: OrderId) -> anyhow::Result<Option<Order>> {
        let loaded = self
            .executor
            .load(id)
            .await
            .map_err(|e| anyhow::Error::new(e).context(format!("loading order {id}")))?;
        Ok(Some(loaded.state).filter(Order::exists))
    }

    /// Runs `request`: `authorize` sees the loaded order before anything is decided and may
    /// refuse; a replayed request is authorized the same way as the original.
    #[tracing::instrument(skip_all, fields(order_id = %request.order_id, command = request.command.name()))]
    pub async fn execute<E: Send>(
        &self,
        request: CommandRequest,
        authorize: impl Fn(&Order) -> Result<(), E> + Sync,
    ) -> Result<Executed, ExecuteError<E>> {
        let name = request.command.name();
        let started = Instant::now();
        let result = self.execute_unmeasured(request, authorize).await;
        let outcome = match &result {
            Ok(e) if e.replayed => "replayed",
            Ok(_) => "accepted",
            Err(Failure::Refused(Refusal::Denied(_) | Refusal::Order(_))) => "refused",
            Err(Failure::Refused(Refusal::VersionMismatch { .. }) | Failure::Conflict) => {
                "conflict"
            }
            Err(Failure::Unavailable(_) | Failure::Store(_)) => "error",
        };
        self.metrics
            .store
            .commands
            .with_label_values(&[name, outcome])
            .inc();
        self.metrics
            .store
            .command_duration
            .with_label_values(&[name])
            .observe(started.elapsed().as_secs_f64());
        result
    }

    async fn execute_unmeasured<E: Send>(
        &self,
        request: CommandRequest,
        authorize: impl Fn(&Order) -> Result<(), E> + Sync,
    ) -> Result<Executed, ExecuteError<E>> {
        if let OrderCommand::CreateOrder(create) = &request.command {
            if create.order_id != request.order_id {
                return Err(Failure::Store(anyhow::anyhow!(
                    "CreateOrder for {} sent to aggregate {}",
                    create.order_id,
                    request.order_id
                )));
            }
        }
        let name = request.command.name();
        let envelope = Envelope {
            command: request.command,
            mark: request.mark,
        };
        let decider = OrderDecider {
            envelope: &envelope,
            expected_version: request.expected_version,
            authorize: &authorize,
            catalog: &self.catalog,
        };
        let outcome = self
            .executor
            .execute(
                request.order_id,
                name,
                &decider,
                request.metadata.into_map(),
            )
            .await;
        match outcome {
            Ok(Outcome::Appended { state, .. }) => Ok(Executed {
                order: state,
                replayed: false,
            }),
            Ok(Outcome::Answered {
                answer: Unchanged::Nothing,
                loaded,
            }) => Ok(Executed {
                order: loaded.state,
                replayed: false,
            }),
            Ok(Outcome::Answered {
                answer: Unchanged::Replay { version },
                loaded,
            }) => Ok(replayed(&loaded, version)),
            Err(e) => Err(e),
        }
    }
}

/// The answer to a replayed request: the order as the original request left it.
fn replayed(loaded: &Loaded<Order>, version: u64) -> Executed {
    Executed {
        order: loaded.state_at(usize::try_from(version).unwrap_or(usize::MAX)),
        replayed: true,
    }
}
