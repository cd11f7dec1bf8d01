//! The saga store: `OrderSaga` aggregates (id = order id) in the same event store as orders,
//! executed like orders are: load, decide (pure, with the saga policy), append, retrying on a
//! concurrent append; the saga as the last command left it comes from the [`SagaCache`] when
//! it is there. Its `...Requested` events are what the relay turns into participant
//! commands: one log, one relay, one dedupe key.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use cqrs_es::persist::{EventStoreAggregateContext, PersistedEventStore};
use cqrs_es::{Aggregate as _, AggregateError, EventStore as _};
use order_domain::OrderId;
use order_sagas::{OrderSaga, SagaCommand, SagaError, SagaEvent, SagaPolicy};
use sqlx::PgPool;

use super::cache::SagaCache;
use super::event_log::EventLog;
use super::locks::KeyedLocks;
use crate::log::AppendSignal;
use crate::telemetry::Metrics;

/// Attempts of one saga command before a conflict is reported.
const MAX_ATTEMPTS: u32 = 8;

#[derive(Debug, thiserror::Error)]
pub enum SagaExecuteError {
    /// The saga refused the command (e.g. an ignored reply); nothing was stored.
    #[error(transparent)]
    Refused(SagaError),
    #[error("too many concurrent writers on this saga")]
    Conflict,
    #[error("event store failure")]
    Store(#[source] anyhow::Error),
}

/// Executes saga commands against the event store.
pub struct SagaRepository {
    store: PersistedEventStore<EventLog, OrderSaga>,
    policy: SagaPolicy,
    locks: KeyedLocks<OrderId>,
    metrics: Arc<Metrics>,
    cache: SagaCache,
}

impl std::fmt::Debug for SagaRepository {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SagaRepository")
            .field("policy", &self.policy)
            .finish_non_exhaustive()
    }
}

impl SagaRepository {
    pub fn new(
        pool: PgPool,
        appended: AppendSignal,
        policy: SagaPolicy,
        metrics: Arc<Metrics>,
        cache: SagaCache,
    ) -> Self {
        Self {
            store: PersistedEventStore::new_event_store(EventLog::new(
                pool,
                appended,
                metrics.clone(),
            )),
            policy,
            locks: KeyedLocks::default(),
            metrics,
            cache,
        }
    }

    /// The saga of `order` as it stands (not started: `OrderSaga::default()`).
    pub async fn load(&self, order: OrderId) -> anyhow::Result<OrderSaga> {
        let (saga, _) = self.stored(&order.to_string()).await?;
        Ok(saga)
    }

    /// Decides `command` on the saga of `order` and appends what it produced; returns the
    /// appended events (empty when the command changed nothing, e.g. a duplicate reply).
    #[tracing::instrument(skip_all, fields(order_id = %order, command = command.name()))]
    pub async fn execute(
        &self,
        order: OrderId,
        command: &SagaCommand,
        metadata: HashMap<String, String>,
    ) -> Result<Vec<SagaEvent>, SagaExecuteError> {
        let _guard = self.locks.lock(order).await;
        let id = order.to_string();
        let mut backoff = Duration::from_millis(2);
        let mut cached = self.cache.get(order);
        if self.cache.enabled() {
            let outcome = if cached.is_some() { "hit" } else { "miss" };
            self.metrics.saga_cache.with_label_values(&[outcome]).inc();
        }
        let mut attempt = 0;
        while attempt < MAX_ATTEMPTS {
            attempt += 1;
            let from_cache = cached.is_some();
            let (mut saga, version) = match cached.take() {
                Some(state) => state,
                None => self.stored(&id).await?,
            };
            let decided = saga.decide(command, &self.policy);
            if from_cache && !matches!(&decided, Ok(events) if !events.is_empty()) {
                // Decided on a cached saga without appending: decide again on the saga as
                // stored (see `cache`), without counting an attempt.
                self.metrics.saga_cache.with_label_values(&["stale"]).inc();
                attempt -= 1;
                continue;
            }
            let new_events = decided.map_err(|e| {
                if let SagaError::ReplyIgnored { reason } = &e {
                    self.metrics
                        .saga_replies_ignored
                        .with_label_values(&[reason.code()])
                        .inc();
                }
                SagaExecuteError::Refused(e)
            })?;
            if new_events.is_empty() {
                return Ok(new_events);
            }
            let context = EventStoreAggregateContext {
                aggregate_id: id.clone(),
                current_sequence: version,
                // Only snapshot modes read the context's aggregate; ours is event-store mode.
                aggregate: OrderSaga::default(),
                current_snapshot: None,
            };
            match self
                .store
                .commit(new_events.clone(), context, metadata.clone())
                .await
            {
                Ok(_) => {
                    for e in &new_events {
                        self.metrics
                            .saga_events
                            .with_label_values(&[e.change.event_type()])
                            .inc();
                        saga.apply(e.clone());
                    }
                    self.cache.put(order, (saga, version + new_events.len()));
                    return Ok(new_events);
                }
                Err(AggregateError::AggregateConflict) => {
                    self.cache.forget(order);
                    if from_cache {
                        // someone else appended: decide again on the saga as stored
                        self.metrics.saga_cache.with_label_values(&["stale"]).inc();
                    }
                    if attempt < MAX_ATTEMPTS {
                        tokio::time::sleep(backoff).await;
                        backoff = (backoff * 2).min(Duration::from_millis(50));
                    }
                }
                Err(e) => {
                    // whether it was written is unknown: the next command loads
                    self.cache.forget(order);
                    return Err(SagaExecuteError::Store(anyhow::anyhow!(
                        "appending to saga {id}: {e}"
                    )));
                }
            }
        }
        Err(SagaExecuteError::Conflict)
    }

    /// The saga of `id` as stored, with its version.
    async fn stored(&self, id: &str) -> Result<(OrderSaga, usize), SagaExecuteError> {
        let events = self
            .store
            .load_events(id)
            .await
            .map_err(|e| SagaExecuteError::Store(anyhow::anyhow!("loading saga {id}: {e}")))?;
        let version = events.len();
        let mut saga = OrderSaga::default();
        for e in events {
            saga.apply(e.payload);
        }
        Ok((saga, version))
    }
}
