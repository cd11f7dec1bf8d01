//! The wire shapes of the order commands: the request bodies clients send and the views of an
//! order the commands (and reads) answer with, plus [`Status`], shared by both. Bodies carry
//! raw values; `orders/parse.rs` turns them into domain values. Views are built from the
//! aggregate ([`OrderView::of`]) or, in `queries.rs`, from the read model.

use order_domain::{Order, OrderStatus, ShippingAddress};
use poem_openapi::{Enum, Object};
use serde::Serialize;
use uuid::Uuid;

use crate::http::text::Text;

// ---- request bodies -------------------------------------------------------------------------

/// A postal address.
#[derive(Debug, Clone, Object, Serialize)]
#[oai(deny_unknown_fields, skip_serializing_if_is_none, example)]
pub struct AddressBody {
    /// The recipient, as the carrier should print it (1 to 200 printable characters).
    #[oai(validator(max_length = 200))]
    pub name: Text,
    /// Street and house number (1 to 200 printable characters).
    #[oai(validator(max_length = 200))]
    pub line1: Text,
    /// Apartment, floor, c/o (1 to 200 printable characters); omit when there is none.
    #[oai(validator(max_length = 200))]
    pub line2: Option<Text>,
    /// City or town (1 to 200 printable characters).
    #[oai(validator(max_length = 200))]
    pub city: Text,
    /// Postal code as written in the country, e.g. `10115` (1 to 20 printable characters).
    #[oai(validator(max_length = 20))]
    pub postal_code: Text,
    /// ISO 3166-1 alpha-2, e.g. `DE`.
    #[oai(validator(max_length = 2))]
    pub country: Text,
}

/// One product and how many.
#[derive(Debug, Clone, Object, Serialize)]
#[oai(deny_unknown_fields, example)]
pub struct ItemBody {
    /// The product's SKU in the order's store: 1 to 64 characters of `A-Z`, `a-z`, `0-9`,
    /// `-`, `_`, `.` (an unknown one is 422 `unknown-sku`).
    #[oai(validator(max_length = 64))]
    pub sku: Text,
    /// Units, 1 to 10 000.
    pub quantity: i64,
}

/// Opens a draft order. Prices, totals and status are never sent by clients.
#[derive(Debug, Clone, Object, Serialize)]
#[oai(deny_unknown_fields, skip_serializing_if_is_none, example)]
pub struct CreateOrderBody {
    /// The customer; customers may omit it (it is their token's `sub`).
    #[oai(validator(max_length = 128))]
    pub customer_id: Option<Text>,
    /// The store that sells and fulfils the order (UUID); an unknown one is 422
    /// `unknown-store`.
    pub store_id: Uuid,
    /// ISO 4217; defaults to the store's currency.
    #[oai(validator(max_length = 3))]
    pub currency: Option<Text>,
    /// Where the order's emails (confirmed, shipped, cancelled...) go; omit to send none.
    #[oai(validator(max_length = 254))]
    pub customer_email: Option<Text>,
    /// Where the order is delivered; omit for an order picked up at the store.
    pub shipping_address: Option<AddressBody>,
    /// Initial items, at most 100.
    #[oai(validator(max_items = 100))]
    pub items: Option<Vec<ItemBody>>,
}

/// Sets a line's quantity.
#[derive(Debug, Clone, Object, Serialize)]
#[oai(deny_unknown_fields, example)]
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
#[oai(deny_unknown_fields, skip_serializing_if_is_none, example)]
pub struct ChangeStatusBody {
    /// The status to move to: `preparing`, `ready_for_pickup`, `picked_up` or `delivered`;
    /// another is 422 `status-not-settable`, one the order cannot reach 409
    /// `illegal-transition`.
    pub status: Status,
    /// Why, kept in the status history (1 to 500 printable characters); omit for none.
    #[oai(validator(max_length = 500))]
    pub note: Option<Text>,
}

/// Hands the order to a carrier.
#[derive(Debug, Clone, Object, Serialize)]
#[oai(deny_unknown_fields, skip_serializing_if_is_none, example)]
pub struct ShipBody {
    /// The carrier's name, e.g. `DHL` (1 to 64 printable characters).
    #[oai(validator(max_length = 64))]
    pub carrier: Text,
    /// The carrier's tracking number (1 to 64 printable characters).
    #[oai(validator(max_length = 64))]
    pub tracking_number: Text,
    /// Kept in the status history (1 to 500 printable characters); omit for none.
    #[oai(validator(max_length = 500))]
    pub note: Option<Text>,
}

/// Cancels a placed order (allowed until it is shipped or picked up).
#[derive(Debug, Clone, Object, Serialize)]
#[oai(deny_unknown_fields, example)]
pub struct CancelBody {
    /// Why, shown as the order's `cancel_reason` and in its status history (1 to 500 printable
    /// characters).
    #[oai(validator(max_length = 500))]
    pub reason: Text,
}

// ---- responses ------------------------------------------------------------------------------

/// A postal address.
#[derive(Debug, Clone, Object)]
#[oai(example)]
pub struct AddressView {
    /// The recipient.
    pub name: String,
    /// Street and house number.
    pub line1: String,
    /// Apartment, floor, c/o; absent when there is none.
    #[oai(skip_serializing_if_is_none)]
    pub line2: Option<String>,
    /// City or town.
    pub city: String,
    /// Postal code as written in the country.
    pub postal_code: String,
    /// ISO 3166-1 alpha-2, e.g. `DE`.
    pub country: String,
}

impl AddressView {
    /// The view of an order's address.
    pub fn of(a: &ShippingAddress) -> Self {
        Self {
            name: a.name.to_string(),
            line1: a.line1.to_string(),
            line2: a.line2.as_ref().map(ToString::to_string),
            city: a.city.to_string(),
            postal_code: a.postal_code.to_string(),
            country: a.country.as_str().to_owned(),
        }
    }
}

/// One line, with name and unit price as they were when the item was added.
#[derive(Debug, Clone, Object)]
#[oai(example)]
pub struct LineView {
    /// The line's number in the order (from 1, never reused): `line_id` of the item
    /// operations.
    pub line_id: i64,
    /// The product's SKU.
    pub sku: String,
    /// The product's name when the item was added.
    pub name: String,
    /// Units, 1 to 10 000.
    pub quantity: i64,
    /// Price of one unit when the item was added, in minor units of the order's `currency`
    /// (cents: `1250` is 12.50 EUR).
    pub unit_price_minor: i64,
    /// `quantity` × `unit_price_minor`, in minor units of the order's `currency`.
    pub line_total_minor: i64,
}

/// Carrier and tracking number.
#[derive(Debug, Clone, Object)]
#[oai(example)]
pub struct ShipmentView {
    /// The carrier's name, e.g. `DHL`.
    pub carrier: String,
    /// The carrier's tracking number.
    pub tracking_number: String,
}

/// An order.
#[derive(Debug, Clone, Object)]
#[oai(example)]
pub struct OrderView {
    /// The order's id (UUID).
    pub id: Uuid,
    /// Number of events; the ETag, and what `If-Match` expects.
    pub version: i64,
    /// Where the order stands now.
    pub status: Status,
    /// The customer: the `sub` of their token.
    pub customer_id: String,
    /// The store that sells and fulfils the order.
    pub store_id: Uuid,
    /// ISO 4217 code of every amount of the order, e.g. `EUR`.
    pub currency: String,
    /// Where the order's emails go; absent when none was given.
    #[oai(skip_serializing_if_is_none)]
    pub customer_email: Option<String>,
    /// Where the order is delivered; absent for an order picked up at the store.
    #[oai(skip_serializing_if_is_none)]
    pub shipping_address: Option<AddressView>,
    /// In line id order; empty for a new draft without items.
    pub lines: Vec<LineView>,
    /// Sum of line totals, in minor units of `currency`.
    pub total_minor: i64,
    /// Carrier and tracking number; absent until the order is shipped.
    #[oai(skip_serializing_if_is_none)]
    pub shipment: Option<ShipmentView>,
    /// Why it was cancelled; absent unless it was.
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
            shipping_address: order.shipping_address().map(AddressView::of),
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
