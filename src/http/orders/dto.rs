//! The wire shapes of the order commands: the request bodies clients send and the views of an
//! order the commands (and reads) answer with, plus [`Status`], shared by both. Bodies carry
//! raw values; `orders/parse.rs` turns them into domain values. Views are built from the
//! aggregate ([`OrderView::of`]) or, in `queries.rs`, from the read model.

use order_domain::{Order, OrderStatus};
use poem_openapi::{Enum, Object};
use serde::Serialize;
use uuid::Uuid;

use crate::http::text::Text;

// ---- request bodies -------------------------------------------------------------------------

/// A postal address.
#[derive(Debug, Clone, Object, Serialize)]
#[oai(deny_unknown_fields)]
pub struct AddressBody {
    #[oai(validator(max_length = 200))]
    pub name: Text,
    #[oai(validator(max_length = 200))]
    pub line1: Text,
    #[oai(validator(max_length = 200))]
    pub line2: Option<Text>,
    #[oai(validator(max_length = 200))]
    pub city: Text,
    #[oai(validator(max_length = 20))]
    pub postal_code: Text,
    /// ISO 3166-1 alpha-2, e.g. `DE`.
    #[oai(validator(max_length = 2))]
    pub country: Text,
}

/// One product and how many.
#[derive(Debug, Clone, Object, Serialize)]
#[oai(deny_unknown_fields)]
pub struct ItemBody {
    #[oai(validator(max_length = 64))]
    pub sku: Text,
    /// 1 to 10 000.
    pub quantity: i64,
}

/// Opens a draft order. Prices, totals and status are never sent by clients.
#[derive(Debug, Clone, Object, Serialize)]
#[oai(deny_unknown_fields)]
pub struct CreateOrderBody {
    /// The customer; customers may omit it (it is their token's `sub`).
    #[oai(validator(max_length = 128))]
    pub customer_id: Option<Text>,
    pub store_id: Uuid,
    /// ISO 4217; defaults to the store's currency.
    #[oai(validator(max_length = 3))]
    pub currency: Option<Text>,
    #[oai(validator(max_length = 254))]
    pub customer_email: Option<Text>,
    pub shipping_address: Option<AddressBody>,
    /// Initial items, at most 100.
    #[oai(validator(max_items = 100))]
    pub items: Option<Vec<ItemBody>>,
}

/// Sets a line's quantity.
#[derive(Debug, Clone, Object, Serialize)]
#[oai(deny_unknown_fields)]
pub struct UpdateItemBody {
    /// 1 to 10 000.
    pub quantity: i64,
}

/// A status an order can be in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Enum, Serialize)]
#[oai(rename_all = "snake_case")]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Draft,
    Placed,
    Confirmed,
    Rejected,
    Preparing,
    ReadyForPickup,
    PickedUp,
    Shipped,
    Delivered,
    Cancelled,
    Discarded,
}

impl From<Status> for OrderStatus {
    fn from(s: Status) -> Self {
        match s {
            Status::Draft => Self::Draft,
            Status::Placed => Self::Placed,
            Status::Confirmed => Self::Confirmed,
            Status::Rejected => Self::Rejected,
            Status::Preparing => Self::Preparing,
            Status::ReadyForPickup => Self::ReadyForPickup,
            Status::PickedUp => Self::PickedUp,
            Status::Shipped => Self::Shipped,
            Status::Delivered => Self::Delivered,
            Status::Cancelled => Self::Cancelled,
            Status::Discarded => Self::Discarded,
        }
    }
}

impl From<OrderStatus> for Status {
    fn from(s: OrderStatus) -> Self {
        match s {
            OrderStatus::Draft => Self::Draft,
            OrderStatus::Placed => Self::Placed,
            OrderStatus::Confirmed => Self::Confirmed,
            OrderStatus::Rejected => Self::Rejected,
            OrderStatus::Preparing => Self::Preparing,
            OrderStatus::ReadyForPickup => Self::ReadyForPickup,
            OrderStatus::PickedUp => Self::PickedUp,
            OrderStatus::Shipped => Self::Shipped,
            OrderStatus::Delivered => Self::Delivered,
            OrderStatus::Cancelled => Self::Cancelled,
            OrderStatus::Discarded => Self::Discarded,
        }
    }
}

/// Moves an order through fulfilment: `preparing`, `ready_for_pickup`, `picked_up`,
/// `delivered`. Shipping and cancelling have their own operations.
#[derive(Debug, Clone, Object, Serialize)]
#[oai(deny_unknown_fields)]
pub struct ChangeStatusBody {
    pub status: Status,
    #[oai(validator(max_length = 500))]
    pub note: Option<Text>,
}

/// Hands the order to a carrier.
#[derive(Debug, Clone, Object, Serialize)]
#[oai(deny_unknown_fields)]
pub struct ShipBody {
    #[oai(validator(max_length = 64))]
    pub carrier: Text,
    #[oai(validator(max_length = 64))]
    pub tracking_number: Text,
    #[oai(validator(max_length = 500))]
    pub note: Option<Text>,
}

/// Cancels a placed order (allowed until it is shipped or picked up).
#[derive(Debug, Clone, Object, Serialize)]
#[oai(deny_unknown_fields)]
pub struct CancelBody {
    #[oai(validator(max_length = 500))]
    pub reason: Text,
}

// ---- responses ------------------------------------------------------------------------------

/// A postal address.
#[derive(Debug, Clone, Object)]
pub struct AddressView {
    pub name: String,
    pub line1: String,
    #[oai(skip_serializing_if_is_none)]
    pub line2: Option<String>,
    pub city: String,
    pub postal_code: String,
    pub country: String,
}

/// One line, with name and unit price as they were when the item was added.
#[derive(Debug, Clone, Object)]
pub struct LineView {
    pub line_id: i64,
    pub sku: String,
    pub name: String,
    pub quantity: i64,
    pub unit_price_minor: i64,
    pub line_total_minor: i64,
}

/// Carrier and tracking number.
#[derive(Debug, Clone, Object)]
pub struct ShipmentView {
    pub carrier: String,
    pub tracking_number: String,
}

/// An order.
#[derive(Debug, Clone, Object)]
pub struct OrderView {
    pub id: Uuid,
    /// Number of events; the ETag, and what `If-Match` expects.
    pub version: i64,
    pub status: Status,
    pub customer_id: String,
    pub store_id: Uuid,
    pub currency: String,
    #[oai(skip_serializing_if_is_none)]
    pub customer_email: Option<String>,
    #[oai(skip_serializing_if_is_none)]
    pub shipping_address: Option<AddressView>,
    pub lines: Vec<LineView>,
    /// Sum of line totals, in minor units of `currency`.
    pub total_minor: i64,
    #[oai(skip_serializing_if_is_none)]
    pub shipment: Option<ShipmentView>,
    #[oai(skip_serializing_if_is_none)]
    pub cancel_reason: Option<String>,
}

impl OrderView {
    /// The view of an existing order; `None` for one never created.
    pub fn of(order: &Order) -> Option<Self> {
        Some(Self {
            id: order.id()?.as_uuid(),
            version: i64::try_from(order.version()).unwrap_or(i64::MAX),
            status: order.status()?.into(),
            customer_id: order.customer_id()?.to_string(),
            store_id: order.store_id()?.as_uuid(),
            currency: order.currency()?.to_string(),
            customer_email: order.customer_email().map(|e| e.as_str().to_owned()),
            shipping_address: order.shipping_address().map(|a| AddressView {
                name: a.name.to_string(),
                line1: a.line1.to_string(),
                line2: a.line2.as_ref().map(ToString::to_string),
                city: a.city.to_string(),
                postal_code: a.postal_code.to_string(),
                country: a.country.as_str().to_owned(),
            }),
            lines: lines_of(order),
            total_minor: order.total_minor(),
            shipment: order.shipment().map(|s| ShipmentView {
                carrier: s.carrier.to_string(),
                tracking_number: s.tracking_number.to_string(),
            }),
            cancel_reason: order.cancel_reason().map(str::to_owned),
        })
    }
}

fn lines_of(order: &Order) -> Vec<LineView> {
    order
        .lines()
        .iter()
        .map(|l| LineView {
            line_id: l.line_id.get().into(),
            sku: l.sku.to_string(),
            name: l.name.to_string(),
            quantity: l.quantity.into(),
            unit_price_minor: l.unit_price_minor,
            line_total_minor: l.line_total_minor,
        })
        .collect()
}
