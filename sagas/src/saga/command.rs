//! What may be asked of a saga: [`SagaCommand`], and the [`OrderSnapshot`] of the placed order a
//! saga starts from. Every command carries the `now` of its decision, so deciding stays pure.

use chrono::{DateTime, Utc};
use order_domain::{Currency, CustomerId, OrderChange, OrderId, Quantity, Sku, StoreId};
use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::messages::{CommandIdKey, Reply, StockItem};

/// What the saga needs to know of the placed order: the `OrderPlaced` snapshot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderSnapshot {
    pub order_id: OrderId,
    pub store_id: StoreId,
    pub customer_id: CustomerId,
    pub currency: Currency,
    pub total_minor: i64,
    pub lines: Vec<StockItem>,
}

/// Why an order event could not be turned into an [`OrderSnapshot`].
#[derive(Debug, Clone, Error, PartialEq, Eq)]
pub enum SnapshotError {
    #[error("a saga starts from OrderPlaced, not {event_type}")]
    NotOrderPlaced { event_type: &'static str },
    #[error("line {sku} has a quantity out of range")]
    InvalidQuantity { sku: Sku },
}

impl OrderSnapshot {
    /// The snapshot carried by an `OrderPlaced` change of order `order_id` (what the saga reactor
    /// reads from the log).
    pub fn from_order_placed(
        order_id: OrderId,
        change: &OrderChange,
    ) -> Result<Self, SnapshotError> {
        let OrderChange::OrderPlaced {
            customer_id,
            store_id,
            currency,
            total_minor,
            lines,
        } = change
        else {
            return Err(SnapshotError::NotOrderPlaced {
                event_type: change.event_type(),
            });
        };
        let lines = lines
            .iter()
            .map(|line| {
                Quantity::parse(i64::from(line.quantity))
                    .map(|quantity| StockItem {
                        sku: line.sku.clone(),
                        quantity,
                    })
                    .map_err(|_| SnapshotError::InvalidQuantity {
                        sku: line.sku.clone(),
                    })
            })
            .collect::<Result<_, _>>()?;
        Ok(Self {
            order_id,
            store_id: *store_id,
            customer_id: customer_id.clone(),
            currency: *currency,
            total_minor: *total_minor,
            lines,
        })
    }
}

/// What the saga reactor, the reply consumer, the deadline worker and the admin API ask of a
/// saga. Each carries the time of its decision: the saga has no clock.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SagaCommand {
    /// The order was placed (`OrderPlaced`): reserve its stock. Idempotent (a second `Start`
    /// keeps the first one's key).
    Start {
        order: OrderSnapshot,
        /// The secret the saga's command ids are derived from: random, drawn by the caller.
        command_id_key: CommandIdKey,
        now: DateTime<Utc>,
    },
    /// A participant replied.
    HandleReply { reply: Reply, now: DateTime<Utc> },
    /// The order was cancelled (`OrderCancelled`): compensate whatever is held. Idempotent.
    OrderCancelled { now: DateTime<Utc> },
    /// The order was shipped or picked up: capture the payment and commit the stock. Idempotent.
    OrderFulfilled { now: DateTime<Utc> },
    /// A deadline passed (deadline worker): re-send, give up or park what is overdue.
    /// Harmless when nothing is overdue.
    Timeout { now: DateTime<Utc> },
    /// Admin retry of a `needs_attention` saga: re-send what is parked, attempts reset.
    Retry { now: DateTime<Utc> },
}

impl SagaCommand {
    /// Stable name, used in metrics, logs and errors.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Start { .. } => "Start",
            Self::HandleReply { .. } => "HandleReply",
            Self::OrderCancelled { .. } => "OrderCancelled",
            Self::OrderFulfilled { .. } => "OrderFulfilled",
            Self::Timeout { .. } => "Timeout",
            Self::Retry { .. } => "Retry",
        }
    }
}
