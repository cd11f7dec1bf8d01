//! Events: what happened to an order. They carry derived values (line and order totals, the
//! placed snapshot) so that projections and participants never recompute business rules.

use cqrs_es::DomainEvent;
use serde::{Deserialize, Serialize};

use crate::command::CommandMark;
use crate::status::OrderStatus;
use crate::values::{
    Carrier, Currency, CustomerId, Email, LineId, Note, OrderId, ProductName, Reason,
    ShippingAddress, Sku, StoreId, TrackingNumber,
};

/// One stored event: the change, plus the mark of the idempotent request that caused it (only on
/// the last event a request produced).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderEvent {
    #[serde(flatten)]
    pub change: OrderChange,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<CommandMark>,
}

impl From<OrderChange> for OrderEvent {
    fn from(change: OrderChange) -> Self {
        Self {
            change,
            command: None,
        }
    }
}

/// A line as it stood when the order was placed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LineSnapshot {
    pub line_id: LineId,
    pub sku: Sku,
    pub name: ProductName,
    pub quantity: u32,
    pub unit_price_minor: i64,
    pub line_total_minor: i64,
}

/// The changes an order goes through. JSON: `{"type": "<variant>", ...fields}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type")]
pub enum OrderChange {
    OrderCreated {
        order_id: OrderId,
        customer_id: CustomerId,
        store_id: StoreId,
        currency: Currency,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        customer_email: Option<Email>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        shipping_address: Option<ShippingAddress>,
    },
    ItemAdded {
        line_id: LineId,
        sku: Sku,
        name: ProductName,
        quantity: u32,
        unit_price_minor: i64,
        line_total_minor: i64,
        order_total_minor: i64,
    },
    ItemQuantityChanged {
        line_id: LineId,
        sku: Sku,
        previous_quantity: u32,
        quantity: u32,
        line_total_minor: i64,
        order_total_minor: i64,
    },
    ItemRemoved {
        line_id: LineId,
        sku: Sku,
        order_total_minor: i64,
    },
    OrderPlaced {
        customer_id: CustomerId,
        store_id: StoreId,
        currency: Currency,
        total_minor: i64,
        lines: Vec<LineSnapshot>,
    },
    OrderConfirmed,
    OrderRejected {
        reason: Reason,
    },
    PreparationStarted {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        note: Option<Note>,
    },
    OrderReadyForPickup {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        note: Option<Note>,
    },
    OrderPickedUp {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        note: Option<Note>,
    },
    OrderShipped {
        carrier: Carrier,
        tracking_number: TrackingNumber,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        note: Option<Note>,
    },
    OrderDelivered {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        note: Option<Note>,
    },
    OrderCancelled {
        reason: Reason,
        previous_status: OrderStatus,
    },
    DraftDiscarded,
}

/// The fields of order events that hold the customer's personal data (DESIGN §16): what is
/// left out of events published to every subscriber unless a deployment opts in, and what
/// erasure will have to reach.
pub const PERSONAL_DATA_FIELDS: [&str; 2] = ["customer_email", "shipping_address"];

impl OrderChange {
    /// The variant name; also the last token of the NATS subject `orders.events.<id>.<type>`.
    pub fn event_type(&self) -> &'static str {
        match self {
            Self::OrderCreated { .. } => "OrderCreated",
            Self::ItemAdded { .. } => "ItemAdded",
            Self::ItemQuantityChanged { .. } => "ItemQuantityChanged",
            Self::ItemRemoved { .. } => "ItemRemoved",
            Self::OrderPlaced { .. } => "OrderPlaced",
            Self::OrderConfirmed => "OrderConfirmed",
            Self::OrderRejected { .. } => "OrderRejected",
            Self::PreparationStarted { .. } => "PreparationStarted",
            Self::OrderReadyForPickup { .. } => "OrderReadyForPickup",
            Self::OrderPickedUp { .. } => "OrderPickedUp",
            Self::OrderShipped { .. } => "OrderShipped",
            Self::OrderDelivered { .. } => "OrderDelivered",
            Self::OrderCancelled { .. } => "OrderCancelled",
            Self::DraftDiscarded => "DraftDiscarded",
        }
    }

    /// The status an order is in after this change, if the change moves it.
    pub fn resulting_status(&self) -> Option<OrderStatus> {
        status_reached_by(self.event_type())
    }
}

/// The status an order is in after an event of type `event_type` (as stored), if such an
/// event moves it: how readers that hold only the log (live feeds) tell an order's status
/// without decoding every event.
pub fn status_reached_by(event_type: &str) -> Option<OrderStatus> {
    Some(match event_type {
        "OrderCreated" => OrderStatus::Draft,
        "OrderPlaced" => OrderStatus::Placed,
        "OrderConfirmed" => OrderStatus::Confirmed,
        "OrderRejected" => OrderStatus::Rejected,
        "PreparationStarted" => OrderStatus::Preparing,
        "OrderReadyForPickup" => OrderStatus::ReadyForPickup,
        "OrderPickedUp" => OrderStatus::PickedUp,
        "OrderShipped" => OrderStatus::Shipped,
        "OrderDelivered" => OrderStatus::Delivered,
        "OrderCancelled" => OrderStatus::Cancelled,
        "DraftDiscarded" => OrderStatus::Discarded,
        _ => return None,
    })
}

impl DomainEvent for OrderEvent {
    fn event_type(&self) -> String {
        self.change.event_type().to_owned()
    }

    fn event_version(&self) -> String {
        "1".to_owned()
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_status_is_reached_by_exactly_one_event_type_and_item_changes_reach_none() {
        let types = [
            "OrderCreated",
            "OrderPlaced",
            "OrderConfirmed",
            "OrderRejected",
            "PreparationStarted",
            "OrderReadyForPickup",
            "OrderPickedUp",
            "OrderShipped",
            "OrderDelivered",
            "OrderCancelled",
            "DraftDiscarded",
        ];
        for status in OrderStatus::ALL {
            let reaching = types
                .iter()
                .filter(|t| status_reached_by(t) == Some(status))
                .count();
            assert_eq!(reaching, 1, "{status:?}");
        }
        for t in ["ItemAdded", "ItemQuantityChanged", "ItemRemoved", "Unknown"] {
            assert_eq!(status_reached_by(t), None, "{t}");
        }
    }

    use super::*;

    #[test]
    fn the_personal_data_fields_are_the_json_names_of_the_personal_data() {
        let created = OrderChange::OrderCreated {
            order_id: OrderId::new(),
            customer_id: CustomerId::parse("alice").unwrap(),
            store_id: StoreId::from_uuid(uuid::Uuid::from_u128(7)),
            currency: Currency::parse("EUR").unwrap(),
            customer_email: Some(Email::parse("alice@example.com").unwrap()),
            shipping_address: Some(
                serde_json::from_value(serde_json::json!({
                    "name": "Alice", "line1": "1 Main St", "city": "Berlin",
                    "postal_code": "10115", "country": "DE"
                }))
                .unwrap(),
            ),
        };
        let json = serde_json::to_value(&created).unwrap();
        for field in PERSONAL_DATA_FIELDS {
            assert!(
                json.get(field).is_some(),
                "{field} is not a field of OrderCreated"
            );
        }
    }
}
