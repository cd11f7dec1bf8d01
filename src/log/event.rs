//! What a log event is about, typed once at the log's edge: readers match on [`Aggregate`] and
//! [`Decoded`] variants, keyed on each aggregate's `cqrs_es::Aggregate::TYPE`, instead of
//! comparing aggregate type strings and parsing ids again.

use cqrs_es::Aggregate as _;
use order_domain::{Order, OrderEvent, OrderId};
use order_sagas::{OrderSaga, SagaEvent};

/// The aggregate an event belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Aggregate {
    /// An order's own event.
    Order(OrderId),
    /// An event of the order's saga (same id as the order).
    Saga(OrderId),
    /// An order's or saga's event whose id is not a UUID: the service never writes one, so
    /// readers refuse it (their batch fails) rather than pass over it.
    Malformed,
    /// Any other aggregate type (none in this service; tests and tools may append them): no
    /// reader of this service follows it.
    Other,
}

impl Aggregate {
    /// Classifies a stored `(aggregate_type, aggregate_id)`.
    pub fn of(aggregate_type: &str, aggregate_id: &str) -> Self {
        let id = || aggregate_id.parse().ok().map(OrderId::from_uuid);
        if aggregate_type == Order::TYPE {
            id().map_or(Self::Malformed, Self::Order)
        } else if aggregate_type == OrderSaga::TYPE {
            id().map_or(Self::Malformed, Self::Saga)
        } else {
            Self::Other
        }
    }

    /// The order it concerns (an order's or its saga's event).
    pub fn order_id(self) -> Option<OrderId> {
        match self {
            Self::Order(id) | Self::Saga(id) => Some(id),
            Self::Malformed | Self::Other => None,
        }
    }
}

/// A log event's payload, decoded by its aggregate.
#[derive(Debug, Clone)]
pub enum Decoded {
    Order {
        order_id: OrderId,
        event: OrderEvent,
    },
    Saga {
        order_id: OrderId,
        event: SagaEvent,
    },
    /// Of an aggregate no reader follows ([`Aggregate::Other`]).
    Other,
}

/// Why a log event does not decode.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("its aggregate id is not a UUID")]
    MalformedId,
    #[error(transparent)]
    Payload(#[from] serde_json::Error),
}

/// Decodes `payload` as an event of `aggregate`.
pub(super) fn decode(
    aggregate: Aggregate,
    payload: &serde_json::Value,
) -> Result<Decoded, DecodeError> {
    Ok(match aggregate {
        Aggregate::Malformed => return Err(DecodeError::MalformedId),
        Aggregate::Order(order_id) => Decoded::Order {
            order_id,
            event: serde::Deserialize::deserialize(payload)?,
        },
        Aggregate::Saga(order_id) => Decoded::Saga {
            order_id,
            event: serde::Deserialize::deserialize(payload)?,
        },
        Aggregate::Other => Decoded::Other,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_parsed_once_by_aggregate_type() {
        let id = uuid::Uuid::new_v4();
        let order = OrderId::from_uuid(id);
        assert_eq!(
            Aggregate::of("Order", &id.to_string()),
            Aggregate::Order(order)
        );
        assert_eq!(
            Aggregate::of("OrderSaga", &id.to_string()),
            Aggregate::Saga(order)
        );
        assert_eq!(Aggregate::of("GapTest", &id.to_string()), Aggregate::Other);
        assert_eq!(Aggregate::of("Order", "not-a-uuid"), Aggregate::Malformed);
        assert_eq!(Aggregate::of("OrderSaga", ""), Aggregate::Malformed);
        assert!(matches!(
            decode(Aggregate::Malformed, &serde_json::Value::Null),
            Err(DecodeError::MalformedId)
        ));
    }
}
