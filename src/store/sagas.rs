//! The saga store: `OrderSaga` aggregates (id = order id) in the same event store as orders,
//! executed through the same [`Executor`]; the saga's part is only its pure decision under the
//! [`SagaPolicy`]. Its `...Requested` events are what the relay turns into participant
//! commands: one log, one relay, one dedupe key.

use std::collections::HashMap;
use std::sync::Arc;

use order_domain::OrderId;
use order_sagas::{OrderSaga, SagaCommand, SagaError, SagaEvent, SagaPolicy};
use sqlx::PgPool;

use super::event_log::EventLog;
use super::executor::{Decide, Decided, Executor, ExecutorMetrics, Failure, Outcome};
use crate::log::AppendSignal;
use crate::telemetry::Metrics;

/// Why a saga command did not execute: the saga refused it (e.g. an ignored reply; nothing
/// was stored), or the executor's conflict or store failures.
pub type SagaExecuteError = Failure<SagaError>;

/// Executes saga commands against the event store.
#[derive(Debug)]
pub struct SagaRepository {
    executor: Executor<OrderId, OrderSaga>,
    policy: SagaPolicy,
    metrics: Arc<Metrics>,
}

/// The saga's part of executing one command: its pure decision.
struct SagaDecider<'a> {
    command: &'a SagaCommand,
    policy: &'a SagaPolicy,
}

impl Decide<OrderSaga> for SagaDecider<'_> {
    /// A command that changed nothing (e.g. a duplicate reply).
    type Answer = ();
    type Refusal = SagaError;

    async fn decide(
        &self,
        saga: &OrderSaga,
        _version: usize,
    ) -> Result<Decided<OrderSaga, ()>, Failure<SagaError>> {
        match saga.decide(self.command, self.policy) {
            Ok(events) if events.is_empty() => Ok(Decided::Answer(())),
            Ok(events) => Ok(Decided::Append(events)),
            Err(e) => Err(Failure::Refused(e)),
        }
    }
}

impl SagaRepository {
    /// `cache_entries`: sagas kept as this process's last command left them (0: none).
    pub fn new(
        pool: PgPool,
        appended: AppendSignal,
        policy: SagaPolicy,
        metrics: Arc<Metrics>,
        cache_entries: usize,
    ) -> Self {
        let executor_metrics = ExecutorMetrics {
            cache: metrics.store.saga_cache.clone(),
            appended: metrics.store.saga_events.clone(),
            retries: None,
            stages: None,
        };
        Self {
            executor: Executor::new(
                EventLog::new(pool, appended, metrics.clone()),
                cache_entries,
                executor_metrics,
            ),
            policy,
            metrics,
        }
    }

    /// The saga of `order` as it stands (not started: `OrderSaga::default()`).
    pub async fn load(&self, order: OrderId) -> anyhow::Result<OrderSaga> {
        let loaded = self
            .executor
            .load(order)
            .await
            .map_err(|e| anyhow::Error::new(e).context(format!("loading saga {order}")))?;
        Ok(loaded.state)
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
        let decider = SagaDecider {
            command,
            policy: &self.policy,
        };
        match self
            .executor
            .execute(order, command.name(), &decider, metadata)
            .await
        {
            Ok(Outcome::Appended { events, state }) => {
                self.metrics
                    .sagas
                    .observe(&events, &state, chrono::Utc::now());
                Ok(events)
            }
            Ok(Outcome::Answered { .. }) => Ok(Vec::new()),
            Err(Failure::Refused(e)) => {
                if let SagaError::ReplyIgnored { reason } = &e {
                    self.metrics
                        .store
                        .saga_replies_ignored
                        .with_label_values(&[reason.code()])
                        .inc();
                }
                Err(Failure::Refused(e))
            }
            Err(e) => Err(e.context(|| format!("saga {order}"))),
        }
    }
}
