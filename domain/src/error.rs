//! Refusals: one variant per business rule, compared in tests, mapped to HTTP by `code()`.

use thiserror::Error;

use crate::status::OrderStatus;
use crate::values::{Currency, LineId, Sku};

/// Why an order refused a command. These are answers, not failures: nothing was stored.
#[derive(Debug, Clone, Error, PartialEq, Eq)]
pub enum OrderError {
    #[error("order does not exist")]
    NotFound,
    #[error("an order with this id already exists")]
    AlreadyExists,
    #[error("items can only change while the order is a draft; it is {status}")]
    ItemsLocked { status: OrderStatus },
    #[error("an order cannot go from {from} to {to}")]
    IllegalTransition { from: OrderStatus, to: OrderStatus },
    #[error("status {status} cannot be set directly; use the dedicated command")]
    StatusNotSettable { status: OrderStatus },
    #[error("an order without items cannot be placed")]
    EmptyOrder,
    #[error("an order holds at most {max} lines")]
    TooManyLines { max: usize },
    #[error("an order takes item changes up to version {max}; place or discard this draft")]
    TooManyChanges { max: u64 },
    #[error("line {line_id} does not exist on this order")]
    LineNotFound { line_id: LineId },
    #[error("sku {sku} is not in this store's catalog")]
    UnknownSku { sku: Sku },
    #[error("product {sku} is not currently sold")]
    ProductInactive { sku: Sku },
    #[error("product is priced in {product} but the order is in {order}")]
    CurrencyMismatch { order: Currency, product: Currency },
    #[error("a line holds at most {max} units")]
    QuantityTooLarge { max: u32 },
    #[error("the order total would exceed the largest supported amount")]
    AmountTooLarge,
    #[error("this idempotency key was already used for a different request")]
    IdempotencyKeyReused,
    #[error("the store is closed: it takes no new order and no placement until it reopens")]
    StoreClosed,
}

impl OrderError {
    /// Stable, kebab-case name of the broken rule (the problem `type` slug).
    pub fn code(&self) -> &'static str {
        match self {
            Self::NotFound => "order-not-found",
            Self::AlreadyExists => "order-already-exists",
            Self::ItemsLocked { .. } => "items-locked",
            Self::IllegalTransition { .. } => "illegal-transition",
            Self::StatusNotSettable { .. } => "status-not-settable",
            Self::EmptyOrder => "empty-order",
            Self::TooManyLines { .. } => "too-many-lines",
            Self::TooManyChanges { .. } => "too-many-changes",
            Self::LineNotFound { .. } => "line-not-found",
            Self::UnknownSku { .. } => "unknown-sku",
            Self::ProductInactive { .. } => "product-inactive",
            Self::CurrencyMismatch { .. } => "currency-mismatch",
            Self::QuantityTooLarge { .. } => "quantity-too-large",
            Self::AmountTooLarge => "amount-too-large",
            Self::IdempotencyKeyReused => "idempotency-key-reused",
            Self::StoreClosed => "store-closed",
        }
    }
}
