//! Commands: what a storefront, staff member or the saga may ask of an order.
//!
//! A command arrives already parsed into value types, so the aggregate only decides business
//! rules. Catalog facts (name, price, active) arrive beside it as a [`PriceList`].

use std::collections::HashMap;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::status::OrderStatus;
use crate::values::{
    Carrier, CustomerId, Email, LineId, Money, Note, OrderId, ProductName, Quantity, Reason,
    ShippingAddress, Sku, StoreId,
};

/// One requested line of a new order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewItem {
    pub sku: Sku,
    pub quantity: Quantity,
}

/// Opens a draft order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreateOrder {
    pub order_id: OrderId,
    pub customer_id: CustomerId,
    pub store_id: StoreId,
    pub currency: crate::values::Currency,
    pub customer_email: Option<Email>,
    pub shipping_address: Option<ShippingAddress>,
    pub items: Vec<NewItem>,
}

/// Everything an order can be asked to do (DESIGN §4).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OrderCommand {
    CreateOrder(Box<CreateOrder>),
    AddItem {
        sku: Sku,
        quantity: Quantity,
    },
    UpdateItemQuantity {
        line_id: LineId,
        quantity: Quantity,
    },
    RemoveItem {
        line_id: LineId,
    },
    PlaceOrder,
    /// Staff moves a confirmed order through fulfilment (preparing, ready_for_pickup,
    /// picked_up, delivered). Shipping and cancelling have their own commands.
    ChangeStatus {
        status: OrderStatus,
        note: Option<Note>,
    },
    ShipOrder {
        carrier: Carrier,
        tracking_number: crate::values::TrackingNumber,
        note: Option<Note>,
    },
    CancelOrder {
        reason: Reason,
    },
    DiscardDraft,
    /// Saga only: stock reserved and payment authorized.
    ConfirmOrder,
    /// Saga only: a step failed for good.
    RejectOrder {
        reason: Reason,
    },
}

impl OrderCommand {
    /// Stable name, used in metrics and logs.
    pub fn name(&self) -> &'static str {
        match self {
            Self::CreateOrder(_) => "CreateOrder",
            Self::AddItem { .. } => "AddItem",
            Self::UpdateItemQuantity { .. } => "UpdateItemQuantity",
            Self::RemoveItem { .. } => "RemoveItem",
            Self::PlaceOrder => "PlaceOrder",
            Self::ChangeStatus { .. } => "ChangeStatus",
            Self::ShipOrder { .. } => "ShipOrder",
            Self::CancelOrder { .. } => "CancelOrder",
            Self::DiscardDraft => "DiscardDraft",
            Self::ConfirmOrder => "ConfirmOrder",
            Self::RejectOrder { .. } => "RejectOrder",
        }
    }
}

/// Identity of a client request made under an `Idempotency-Key`: `id` is derived from the
/// principal and the key, `fingerprint` from the request itself. The aggregate remembers recent
/// marks, so a retry appends nothing and a reused key with another request is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct CommandMark {
    pub id: Uuid,
    pub fingerprint: Uuid,
}

/// A command as handed to [`crate::Order`]: the request plus, when sent under an idempotency
/// key, its mark.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Envelope {
    pub command: OrderCommand,
    pub mark: Option<CommandMark>,
}

impl From<OrderCommand> for Envelope {
    fn from(command: OrderCommand) -> Self {
        Self {
            command,
            mark: None,
        }
    }
}

/// A product as the store's catalog describes it at the moment of the command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CatalogProduct {
    pub name: ProductName,
    pub unit_price: Money,
    pub active: bool,
}

/// The catalog facts a command needs, resolved by the caller (see
/// [`crate::Order::catalog_lookup`] and [`crate::Order::store_to_check`]). A SKU missing here
/// is unknown to the store; the store counts as open unless [`PriceList::store_closed`] says
/// otherwise.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PriceList {
    products: HashMap<Sku, CatalogProduct>,
    store_closed: bool,
}

impl PriceList {
    pub fn new() -> Self {
        Self::default()
    }
    #[must_use]
    pub fn with(mut self, sku: Sku, product: CatalogProduct) -> Self {
        self.products.insert(sku, product);
        self
    }
    pub fn insert(&mut self, sku: Sku, product: CatalogProduct) {
        self.products.insert(sku, product);
    }
    pub fn get(&self, sku: &Sku) -> Option<&CatalogProduct> {
        self.products.get(sku)
    }
    /// Records whether the order's store is closed (it takes no new order, no placement).
    #[must_use]
    pub fn with_store_closed(mut self, closed: bool) -> Self {
        self.store_closed = closed;
        self
    }
    /// Whether the order's store is closed.
    pub fn store_closed(&self) -> bool {
        self.store_closed
    }
}
