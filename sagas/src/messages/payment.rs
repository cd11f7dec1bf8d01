//! The payment participant's part of the contract: the `payment.commands.*` bodies the saga sends
//! (authorize, void, capture, refund) and the `payment.replies.*` bodies it answers with.
//!
//! The replies that move money the saga's way (`authorized`, `captured`) must echo the amount
//! and currency: the saga believes them only when both equal the order's. The other amount
//! echoes are optional, checked when present.

use order_domain::{Currency, CustomerId, OrderId};
use serde::{Deserialize, Serialize};

use super::envelope::{message, reply, Message, ReplyMessage};
use super::ids::{MessageId, PaymentId, SagaId};
use super::subjects::{ReplyKind, Step};

// ---- commands ------------------------------------------------------------------------------

/// `payment.commands.authorize`: hold the order total on the customer's payment method.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuthorizePayment {
    pub message_id: MessageId,
    pub saga_id: SagaId,
    pub order_id: OrderId,
    pub customer_id: CustomerId,
    pub amount_minor: i64,
    pub currency: Currency,
}
message!(AuthorizePayment, Step::Authorize.subject());

/// `payment.commands.void`: cancel an authorization (compensation).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VoidPayment {
    pub message_id: MessageId,
    pub saga_id: SagaId,
    pub order_id: OrderId,
    pub payment_id: PaymentId,
    pub amount_minor: i64,
}
message!(VoidPayment, Step::Void.subject());

/// `payment.commands.capture`: take the authorized money (the order was fulfilled).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CapturePayment {
    pub message_id: MessageId,
    pub saga_id: SagaId,
    pub order_id: OrderId,
    pub payment_id: PaymentId,
    pub amount_minor: i64,
}
message!(CapturePayment, Step::Capture.subject());

/// `payment.commands.refund`: give captured money back (compensation).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RefundPayment {
    pub message_id: MessageId,
    pub saga_id: SagaId,
    pub order_id: OrderId,
    pub payment_id: PaymentId,
    pub amount_minor: i64,
}
message!(RefundPayment, Step::Refund.subject());

// ---- replies -------------------------------------------------------------------------------

/// `payment.replies.authorized`: the money is held under `payment_id`.
///
/// `amount_minor` and `currency` are required and must equal the order's: an authorization of
/// another amount confirms nothing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PaymentAuthorized {
    pub message_id: MessageId,
    pub saga_id: SagaId,
    pub order_id: OrderId,
    pub in_reply_to: MessageId,
    pub payment_id: PaymentId,
    pub amount_minor: i64,
    pub currency: Currency,
}
reply!(PaymentAuthorized, ReplyKind::PaymentAuthorized);

/// `payment.replies.declined`: no money is held.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PaymentDeclined {
    pub message_id: MessageId,
    pub saga_id: SagaId,
    pub order_id: OrderId,
    pub in_reply_to: MessageId,
    pub reason: String,
}
reply!(PaymentDeclined, ReplyKind::PaymentDeclined);

/// `payment.replies.voided`: the authorization was cancelled. `amount_minor` is an optional
/// echo, checked when present.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PaymentVoided {
    pub message_id: MessageId,
    pub saga_id: SagaId,
    pub order_id: OrderId,
    pub in_reply_to: MessageId,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub amount_minor: Option<i64>,
}
reply!(PaymentVoided, ReplyKind::PaymentVoided);

/// `payment.replies.captured`: the money was taken. `amount_minor` and `currency` are required
/// and must equal the order's.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PaymentCaptured {
    pub message_id: MessageId,
    pub saga_id: SagaId,
    pub order_id: OrderId,
    pub in_reply_to: MessageId,
    pub amount_minor: i64,
    pub currency: Currency,
}
reply!(PaymentCaptured, ReplyKind::PaymentCaptured);

/// `payment.replies.capture_failed`: the money could not be taken; a person must look.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PaymentCaptureFailed {
    pub message_id: MessageId,
    pub saga_id: SagaId,
    pub order_id: OrderId,
    pub in_reply_to: MessageId,
    pub reason: String,
}
reply!(PaymentCaptureFailed, ReplyKind::PaymentCaptureFailed);

/// `payment.replies.refunded`: captured money was given back. `amount_minor` is an optional
/// echo, checked when present.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PaymentRefunded {
    pub message_id: MessageId,
    pub saga_id: SagaId,
    pub order_id: OrderId,
    pub in_reply_to: MessageId,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub amount_minor: Option<i64>,
}
reply!(PaymentRefunded, ReplyKind::PaymentRefunded);
