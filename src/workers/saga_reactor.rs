//! The saga reactor: a log reader that turns order events into saga commands (`OrderPlaced`
//! starts a saga, `OrderCancelled` compensates it, `OrderShipped` / `OrderPickedUp` capture
//! and commit) and saga verdicts into order commands (`ConfirmOrder` / `RejectOrder`).
//!
//! Its effects land in other aggregates, in their own transactions, before the reader's
//! checkpoint is written (at most every 100 ms); after a crash up to that much of the log is
//! reacted to again, which every command here absorbs (a started saga ignores `Start`, a
//! confirmed order ignores `ConfirmOrder`...).

use std::collections::HashMap;
use std::sync::Arc;

use chrono::Utc;
use futures::stream::{FuturesUnordered, StreamExt as _};
use order_domain::{OrderCommand, OrderError, OrderId};
use order_sagas::{CommandIdKey, OrderSnapshot, SagaChange, SagaCommand, SagaError};
use sqlx::PgConnection;
use uuid::Uuid;

use crate::log::{Aggregate, Checkpoints, Decoded, LogEvent, LogHandler, ReaderConfig};
use crate::store::executor::Failure;
use crate::store::orders::{CommandRequest, EventMetadata, OrderRepository, Refusal};
use crate::store::sagas::{SagaExecuteError, SagaRepository};
use crate::telemetry::trace_context;
use tracing::Instrument as _;

/// Name of the reactor's reader.
pub const READER: &str = "saga-reactor";

/// The event types the reactor acts on (the arms of `on_order_event` and `on_saga_event`);
/// its reader passes every other type over without reading it.
pub const WANTED: &[&str] = &[
    "OrderPlaced",
    "OrderCancelled",
    "OrderShipped",
    "OrderPickedUp",
    "OrderConfirmationDue",
    "OrderRejectionDue",
];

#[derive(Debug, Clone)]
pub struct SagaReactor {
    pub sagas: Arc<SagaRepository>,
    pub orders: Arc<OrderRepository>,
}

impl SagaReactor {
    /// Its reader's configuration: only the events it acts on; no transaction per batch.
    pub fn config() -> ReaderConfig {
        ReaderConfig::new(READER)
            .wanting(WANTED)
            .checkpointing(Checkpoints::IDEMPOTENT)
    }
}

impl LogHandler for SagaReactor {
    /// Orders are reacted to concurrently, up to [`IN_FLIGHT`] at once; the events of one
    /// order (its own and its saga's, which share its id) one after another, in log order.
    /// Reacting to one event is a few round trips (load, decide, append), so one event at a
    /// time capped the sagas started per second under load. If any order fails, the batch
    /// fails and is offered again, which what already happened absorbs.
    async fn handle(&mut self, _tx: &mut PgConnection, batch: &[LogEvent]) -> anyhow::Result<()> {
        let mut per_order: Vec<Vec<&LogEvent>> = Vec::new();
        let mut index: HashMap<OrderId, usize> = HashMap::new();
        for e in batch {
            // only orders' and sagas' events are wanted; both are keyed by the order's id
            let Some(order) = e.aggregate.order_id() else {
                anyhow::ensure!(
                    e.aggregate != Aggregate::Malformed,
                    "event {} of {} has a malformed id {:?}",
                    e.event_id,
                    e.aggregate_type,
                    e.aggregate_id
                );
                continue;
            };
            let at = *index.entry(order).or_insert_with(|| {
                per_order.push(Vec::new());
                per_order.len() - 1
            });
            per_order[at].push(e);
        }
        let mut waiting = per_order.into_iter();
        let mut running = FuturesUnordered::new();
        loop {
            while running.len() < IN_FLIGHT {
                let Some(events) = waiting.next() else { break };
                running.push(self.react_in_order(events));
            }
            match running.next().await {
                Some(reacted) => reacted?,
                None => return Ok(()),
            }
        }
    }
}

/// Orders reacted to at once (each holds a pooled connection while it runs).
const IN_FLIGHT: usize = 8;

/// Metadata of what the reactor writes: the same correlation, caused by `e`, in the trace of
/// the step reacting to it (`traceparent`).
fn caused_by(e: &LogEvent, traceparent: Option<String>) -> EventMetadata {
    let get = |k: &str| {
        e.metadata
            .get(k)
            .and_then(serde_json::Value::as_str)
            .map(str::to_owned)
    };
    EventMetadata {
        correlation_id: get("correlation_id"),
        causation_id: Some(e.event_id.to_string()),
        principal: Some(READER.to_owned()),
        traceparent,
        idempotency_key: None,
    }
}

fn metadata_map(m: EventMetadata) -> HashMap<String, String> {
    [
        ("correlation_id", m.correlation_id),
        ("causation_id", m.causation_id),
        ("principal", m.principal),
        ("traceparent", m.traceparent),
    ]
    .into_iter()
    .filter_map(|(k, v)| v.map(|v| (k.to_owned(), v)))
    .collect()
}

impl SagaReactor {
    /// Reacts to the events of one order, one after another.
    async fn react_in_order(&self, events: Vec<&LogEvent>) -> anyhow::Result<()> {
        for e in events {
            self.react(e).await?;
        }
        Ok(())
    }

    /// Reacts to one event in a saga step span continuing the event's trace.
    async fn react(&self, e: &LogEvent) -> anyhow::Result<()> {
        let span = tracing::info_span!(
            "saga.step",
            otel.name = format!("saga step {}", e.event_type),
            otel.status_code = tracing::field::Empty,
            saga.event = %e.event_type,
            order_id = tracing::field::Empty,
        );
        let stored = e
            .metadata
            .get("traceparent")
            .and_then(serde_json::Value::as_str);
        trace_context::continue_trace(&span, stored);
        let caused = caused_by(e, trace_context::pass_on(&span, stored));
        let reacted = match e.aggregate {
            Aggregate::Order(order) => {
                span.record("order_id", tracing::field::display(order));
                self.on_order_event(order, e, caused)
                    .instrument(span.clone())
                    .await
            }
            Aggregate::Saga(order) => {
                span.record("order_id", tracing::field::display(order));
                self.on_saga_event(order, e, caused)
                    .instrument(span.clone())
                    .await
            }
            // refused when the batch was grouped by order
            Aggregate::Malformed | Aggregate::Other => Ok(()),
        };
        if reacted.is_err() {
            span.record("otel.status_code", "error");
        }
        reacted
    }

    // Every type matched here and in `on_saga_event` is in `WANTED`.
    async fn on_order_event(
        &self,
        order: OrderId,
        e: &LogEvent,
        caused: EventMetadata,
    ) -> anyhow::Result<()> {
        let now = Utc::now();
        let command = match e.event_type.as_str() {
            "OrderPlaced" => {
                let Decoded::Order { event, .. } = e.decode()? else {
                    anyhow::bail!("event {} is not an order's", e.event_id);
                };
                let snapshot = OrderSnapshot::from_order_placed(order, &event.change)?;
                SagaCommand::Start {
                    order: snapshot,
                    // The secret the saga's command ids derive from: drawn here because the
                    // saga draws nothing itself; a forged reply must not be able to name them.
                    command_id_key: CommandIdKey::from_uuid(Uuid::new_v4()),
                    now,
                }
            }
            "OrderCancelled" => SagaCommand::OrderCancelled { now },
            "OrderShipped" | "OrderPickedUp" => SagaCommand::OrderFulfilled { now },
            _ => return Ok(()),
        };
        match self
            .sagas
            .execute(order, &command, metadata_map(caused))
            .await
        {
            Ok(_) => Ok(()),
            // A cancelled draft never had a saga; a second fulfilment changes nothing.
            Err(SagaExecuteError::Refused(
                refusal @ (SagaError::NotStarted
                | SagaError::NotApplicable { .. }
                | SagaError::NothingToRetry { .. }),
            )) => {
                tracing::debug!(order_id = %order, %refusal, "saga had nothing to do");
                Ok(())
            }
            Err(e) => Err(e.into()),
        }
    }

    async fn on_saga_event(
        &self,
        order: OrderId,
        e: &LogEvent,
        caused: EventMetadata,
    ) -> anyhow::Result<()> {
        let command = match e.event_type.as_str() {
            "OrderConfirmationDue" => OrderCommand::ConfirmOrder,
            "OrderRejectionDue" => {
                let Decoded::Saga { event, .. } = e.decode()? else {
                    anyhow::bail!("event {} is not a saga's", e.event_id);
                };
                let SagaChange::OrderRejectionDue { reason } = event.change else {
                    anyhow::bail!("event {} is not an OrderRejectionDue", e.event_id);
                };
                OrderCommand::RejectOrder { reason }
            }
            _ => return Ok(()),
        };
        let result = self
            .orders
            .execute::<std::convert::Infallible>(
                CommandRequest {
                    order_id: order,
                    command,
                    mark: None,
                    expected_version: None,
                    metadata: caused,
                },
                |_| Ok(()),
            )
            .await;
        match result {
            Ok(_) => Ok(()),
            // The order moved on (cancelled while the saga decided): the saga compensates on
            // the cancellation, so there is nothing left to do here.
            Err(Failure::Refused(Refusal::Order(
                refusal @ OrderError::IllegalTransition { .. },
            ))) => {
                tracing::info!(order_id = %order, %refusal, "saga verdict arrived after the order moved on");
                Ok(())
            }
            Err(e) => Err(anyhow::anyhow!(
                "applying a saga verdict to order {order}: {e}"
            )),
        }
    }
}
