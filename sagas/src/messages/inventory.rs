//! The inventory participant's part of the contract: the `inventory.commands.*` bodies the saga
//! sends (reserve, release, commit) and the `inventory.replies.*` bodies it answers with, plus
//! the line types they carry.

use order_domain::{OrderId, Quantity, Sku, StoreId};
use serde::{Deserialize, Serialize};

use super::envelope::{message, reply, Message, ReplyMessage};
use super::ids::{MessageId, ReservationId, SagaId};
use super::subjects::{ReplyKind, Step};

/// One line to reserve: `{sku, quantity}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StockItem {
    pub sku: Sku,
    pub quantity: Quantity,
}

/// A line the inventory could not reserve: `{sku, requested, available}`. Diagnostic only, so
/// the SKU is kept as sent rather than refusing the whole rejection over its spelling.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UnavailableItem {
    pub sku: String,
    pub requested: u32,
    pub available: u32,
}

// ---- commands ------------------------------------------------------------------------------

/// `inventory.commands.reserve`: hold stock for an order's lines.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReserveStock {
    pub message_id: MessageId,
    pub saga_id: SagaId,
    pub order_id: OrderId,
    pub store_id: StoreId,
    pub items: Vec<StockItem>,
}
message!(ReserveStock, Step::Reserve.subject());

/// `inventory.commands.release`: give a reservation's stock back (compensation).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReleaseStock {
    pub message_id: MessageId,
    pub saga_id: SagaId,
    pub order_id: OrderId,
    pub reservation_id: ReservationId,
}
message!(ReleaseStock, Step::Release.subject());

/// `inventory.commands.commit`: the reserved goods left the store; the reservation is final.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommitStock {
    pub message_id: MessageId,
    pub saga_id: SagaId,
    pub order_id: OrderId,
    pub reservation_id: ReservationId,
}
message!(CommitStock, Step::Commit.subject());

// ---- replies -------------------------------------------------------------------------------

/// `inventory.replies.reserved`: the stock is held under `reservation_id`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StockReserved {
    pub message_id: MessageId,
    pub saga_id: SagaId,
    pub order_id: OrderId,
    pub in_reply_to: MessageId,
    pub reservation_id: ReservationId,
}
reply!(StockReserved, ReplyKind::StockReserved);

/// `inventory.replies.rejected`: not enough stock; nothing is held.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StockRejected {
    pub message_id: MessageId,
    pub saga_id: SagaId,
    pub order_id: OrderId,
    pub in_reply_to: MessageId,
    pub reason: String,
    /// Lines that could not be reserved (a participant that omits it is still understood).
    #[serde(default)]
    pub unavailable: Vec<UnavailableItem>,
}
reply!(StockRejected, ReplyKind::StockRejected);

/// `inventory.replies.released`: the reservation was given back.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StockReleased {
    pub message_id: MessageId,
    pub saga_id: SagaId,
    pub order_id: OrderId,
    pub in_reply_to: MessageId,
}
reply!(StockReleased, ReplyKind::StockReleased);

/// `inventory.replies.committed`: the reservation is final.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StockCommitted {
    pub message_id: MessageId,
    pub saga_id: SagaId,
    pub order_id: OrderId,
    pub in_reply_to: MessageId,
}
reply!(StockCommitted, ReplyKind::StockCommitted);
