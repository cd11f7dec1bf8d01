//! order-domain: the order as a pure, event-sourced aggregate.
//!
//! * [`values`]: parse-don't-validate value types (ids, [`Sku`], [`Quantity`], [`Money`], ...).
//! * [`command`]: what clients and the saga may ask of an order.
//! * [`event`]: what happened to an order; the only source of truth.
//! * [`error`]: typed refusals, one variant per broken rule.
//! * [`status`]: where an order stands ([`OrderStatus`]) and the status machine.
//! * [`order`]: the [`Order`] aggregate: `decide` (pure) and `apply` (mutation only).
//!
//! Nothing here knows HTTP, SQL or NATS. Catalog prices reach the aggregate as a [`PriceList`]
//! resolved by the caller before the command is decided, so deciding stays deterministic.

pub mod command;
pub mod error;
pub mod event;
pub mod order;
pub mod status;
pub mod values;

pub use command::{
    CatalogProduct, CommandMark, CreateOrder, Envelope, NewItem, OrderCommand, PriceList,
};
pub use error::OrderError;
pub use event::{status_reached_by, LineSnapshot, OrderChange, OrderEvent, PERSONAL_DATA_FIELDS};
pub use order::{Decision, Order, OrderLine, Shipment, MAX_DRAFT_EVENTS, MAX_LINES};
pub use status::OrderStatus;
pub use values::*;
