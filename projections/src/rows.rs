//! The rows applying works on: an order's and a saga's rows as the database holds them before
//! the batch ([`OrderRow`], [`Line`], [`SagaRow`]), their state after it ([`OrderState`],
//! [`SagaState`]), and the rows the batch adds ([`HistoryRow`], [`ProductSale`],
//! [`StoreSale`]). Plain data: [`crate::apply`] loads and writes them, [`crate::fold`] computes
//! them.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, NaiveDate, Utc};
use order_domain::OrderChange;
use uuid::Uuid;

/// One line of an order, as `order_lines` holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Line {
    pub sku: String,
    pub name: String,
    pub quantity: i64,
    pub unit_price_minor: i64,
    pub line_total_minor: i64,
}

/// What the fold needs of an order's `order_summaries` row (and, when its events need them,
/// its `order_lines`), as the database holds it before the batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderRow {
    pub version: i64,
    pub status: String,
    pub store_id: Uuid,
    pub currency: String,
    pub total_minor: i64,
    pub confirmed_at: Option<DateTime<Utc>>,
    /// By `line_id`. Loaded only for orders that [`needs_lines`] says need them.
    pub lines: BTreeMap<i64, Line>,
}

/// Whether folding `change` into an order that exists before the batch reads or writes its
/// lines (so the loader must fetch them).
pub fn needs_lines(change: &OrderChange) -> bool {
    matches!(
        change,
        OrderChange::ItemAdded { .. }
            | OrderChange::ItemQuantityChanged { .. }
            | OrderChange::ItemRemoved { .. }
            | OrderChange::OrderConfirmed
            | OrderChange::OrderCancelled { .. }
    )
}

/// The columns of an order created in this batch that never change afterwards.
#[derive(Debug, Clone, PartialEq)]
pub struct Created {
    pub customer_id: String,
    pub customer_email: Option<String>,
    pub shipping_address: Option<serde_json::Value>,
    pub created_at: DateTime<Utc>,
}

/// Timestamp columns stamped in this batch (one per status).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stamps {
    pub placed_at: Option<DateTime<Utc>>,
    pub confirmed_at: Option<DateTime<Utc>>,
    pub rejected_at: Option<DateTime<Utc>>,
    pub preparing_at: Option<DateTime<Utc>>,
    pub ready_at: Option<DateTime<Utc>>,
    pub picked_up_at: Option<DateTime<Utc>>,
    pub shipped_at: Option<DateTime<Utc>>,
    pub delivered_at: Option<DateTime<Utc>>,
    pub cancelled_at: Option<DateTime<Utc>>,
    pub discarded_at: Option<DateTime<Utc>>,
}

/// An order the batch touched: its state after the batch's events, and which columns they set.
/// Columns left `None` here keep their stored value.
#[derive(Debug, Clone, PartialEq)]
pub struct OrderState {
    pub order_id: Uuid,
    pub row: OrderRow,
    /// Set when the batch created the order: it is inserted rather than updated.
    pub created: Option<Created>,
    /// An event of the batch was applied to it (it must be written).
    pub changed: bool,
    /// A line event was applied: the line-derived columns are recomputed.
    pub lines_changed: bool,
    /// Lines added or changed by the batch (upserted if still there at the end).
    pub dirty_lines: BTreeSet<i64>,
    /// Lines removed by the batch (deleted unless still there at the end).
    pub removed_lines: BTreeSet<i64>,
    pub updated_at: Option<DateTime<Utc>>,
    pub stamps: Stamps,
    pub carrier: Option<String>,
    pub tracking_number: Option<String>,
    pub cancel_reason: Option<String>,
    pub reject_reason: Option<String>,
}

impl OrderState {
    /// An order as the batch finds it (`created` set when the batch creates it), nothing set yet.
    pub fn new(order_id: Uuid, row: OrderRow, created: Option<Created>) -> Self {
        Self {
            order_id,
            row,
            created,
            changed: false,
            lines_changed: false,
            dirty_lines: BTreeSet::new(),
            removed_lines: BTreeSet::new(),
            updated_at: None,
            stamps: Stamps::default(),
            carrier: None,
            tracking_number: None,
            cancel_reason: None,
            reject_reason: None,
        }
    }
}

/// One `order_status_history` row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistoryRow {
    pub order_id: Uuid,
    pub version: i64,
    pub status: &'static str,
    pub previous_status: Option<&'static str>,
    pub note: Option<String>,
    pub principal: Option<String>,
    pub recorded_at: DateTime<Utc>,
}

/// Key of `product_sales_daily`: store, day, SKU, currency.
pub type ProductSaleKey = (Uuid, NaiveDate, String, String);

/// What the batch adds to one `product_sales_daily` row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProductSale {
    /// The name of the last line counted (the row keeps the latest name).
    pub name: String,
    pub quantity: i64,
    pub revenue_minor: i64,
    pub orders: i64,
}

/// Key of `store_sales_daily`: store, day, currency.
pub type StoreSaleKey = (Uuid, NaiveDate, String);

/// What the batch adds to one `store_sales_daily` row.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StoreSale {
    pub orders: i64,
    pub revenue_minor: i64,
    pub cancellations: i64,
    pub rejections: i64,
}

/// A saga's `saga_progress` row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SagaRow {
    pub version: i64,
    pub status: String,
    pub deadline_at: Option<DateTime<Utc>>,
    pub last_event: String,
    pub attention: Option<String>,
    pub started_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// A saga the batch touched: its row after the batch, and whether the batch changed it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SagaState {
    pub row: SagaRow,
    pub changed: bool,
}
