//! The payment participant's book: payments, from authorization to void, capture or refund.
//!
//! A payment is in exactly one [`PaymentState`] at a time, so every amount counts in exactly
//! one total. Commands the book contradicts and for which the contract has no failure reply
//! come back as `Err(description)`; `Books` records them as anomalies and sends no
//! reply.

use std::collections::HashMap;

use order_domain::{Currency, OrderId};
use order_sagas::messages::{
    AuthorizePayment, CapturePayment, PaymentAuthorized, PaymentCaptureFailed, PaymentCaptured,
    PaymentDeclined, PaymentId, PaymentRefunded, PaymentVoided, RefundPayment, Reply, ReplyKind,
    VoidPayment,
};

use super::ids::{derive, head};

/// Where a payment stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PaymentState {
    Authorized,
    Voided,
    Captured,
    Refunded,
}

/// One payment, created by a successful `authorize`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PaymentRecord {
    pub id: PaymentId,
    pub order_id: OrderId,
    /// The authorized amount.
    pub amount_minor: i64,
    pub currency: Currency,
    /// Taken by `capture` (0 until captured).
    pub captured_minor: i64,
    /// Given back by `refund` (0 until refunded).
    pub refunded_minor: i64,
    pub state: PaymentState,
}

/// Payments of the simulated payment participant.
#[derive(Debug, Clone, Default)]
pub(super) struct PaymentBook {
    payments: HashMap<PaymentId, PaymentRecord>,
    payment_by_order: HashMap<OrderId, PaymentId>,
}

impl PaymentBook {
    pub(super) fn payment(&self, id: &PaymentId) -> Option<&PaymentRecord> {
        self.payments.get(id)
    }

    pub(super) fn payment_of(&self, order_id: OrderId) -> Option<&PaymentRecord> {
        self.payment_by_order
            .get(&order_id)
            .and_then(|id| self.payments.get(id))
    }

    pub(super) fn payments(&self) -> impl Iterator<Item = &PaymentRecord> {
        self.payments.values()
    }

    /// `amount` added up over the payments in `state`.
    pub(super) fn total(&self, state: PaymentState, amount: impl Fn(&PaymentRecord) -> i64) -> i64 {
        self.payments
            .values()
            .filter(|p| p.state == state)
            .map(amount)
            .sum()
    }

    pub(super) fn authorize(&mut self, c: &AuthorizePayment, declined: bool) -> Reply {
        let refusal = if declined {
            Some("card declined (simulated)")
        } else if c.amount_minor <= 0 {
            Some("amount must be positive")
        } else {
            None
        };
        if let Some(reason) = refusal {
            let (message_id, saga_id, order_id, in_reply_to) = head(c, ReplyKind::PaymentDeclined);
            return PaymentDeclined {
                message_id,
                saga_id,
                order_id,
                in_reply_to,
                reason: reason.to_owned(),
            }
            .into();
        }
        let id = PaymentId::new(format!("pay-{}", derive(c.message_id, "payment")));
        self.payments.insert(
            id.clone(),
            PaymentRecord {
                id: id.clone(),
                order_id: c.order_id,
                amount_minor: c.amount_minor,
                currency: c.currency,
                captured_minor: 0,
                refunded_minor: 0,
                state: PaymentState::Authorized,
            },
        );
        self.payment_by_order.insert(c.order_id, id.clone());
        let (message_id, saga_id, order_id, in_reply_to) = head(c, ReplyKind::PaymentAuthorized);
        PaymentAuthorized {
            message_id,
            saga_id,
            order_id,
            in_reply_to,
            payment_id: id,
            amount_minor: c.amount_minor,
            currency: c.currency,
        }
        .into()
    }

    pub(super) fn void(&mut self, c: &VoidPayment) -> Result<Reply, String> {
        let amount = match self.payments.get_mut(&c.payment_id) {
            Some(p) if p.state == PaymentState::Authorized => {
                p.state = PaymentState::Voided;
                p.amount_minor
            }
            Some(p) if p.state == PaymentState::Voided => p.amount_minor,
            Some(p) => {
                let state = p.state;
                return Err(format!("void of {state:?} payment {}", c.payment_id));
            }
            None => {
                // As for release: nothing is held under an unknown id.
                tracing::warn!(payment_id = %c.payment_id, "simulator: void of an unknown payment");
                c.amount_minor
            }
        };
        let (message_id, saga_id, order_id, in_reply_to) = head(c, ReplyKind::PaymentVoided);
        Ok(PaymentVoided {
            message_id,
            saga_id,
            order_id,
            in_reply_to,
            amount_minor: Some(amount),
        }
        .into())
    }

    pub(super) fn capture(&mut self, c: &CapturePayment) -> Reply {
        let outcome = match self.payments.get_mut(&c.payment_id) {
            None => Err(format!("unknown payment {}", c.payment_id)),
            Some(p) => match p.state {
                PaymentState::Authorized if c.amount_minor > p.amount_minor => Err(format!(
                    "capture of {} exceeds the authorized {}",
                    c.amount_minor, p.amount_minor
                )),
                PaymentState::Authorized if c.amount_minor <= 0 => {
                    Err("capture amount must be positive".to_owned())
                }
                PaymentState::Authorized => {
                    p.state = PaymentState::Captured;
                    p.captured_minor = c.amount_minor;
                    Ok((p.captured_minor, p.currency))
                }
                PaymentState::Captured => Ok((p.captured_minor, p.currency)),
                PaymentState::Voided => Err("payment was voided".to_owned()),
                PaymentState::Refunded => Err("payment was refunded".to_owned()),
            },
        };
        match outcome {
            Ok((amount_minor, currency)) => {
                let (message_id, saga_id, order_id, in_reply_to) =
                    head(c, ReplyKind::PaymentCaptured);
                PaymentCaptured {
                    message_id,
                    saga_id,
                    order_id,
                    in_reply_to,
                    amount_minor,
                    currency,
                }
                .into()
            }
            Err(reason) => {
                let (message_id, saga_id, order_id, in_reply_to) =
                    head(c, ReplyKind::PaymentCaptureFailed);
                PaymentCaptureFailed {
                    message_id,
                    saga_id,
                    order_id,
                    in_reply_to,
                    reason,
                }
                .into()
            }
        }
    }

    pub(super) fn refund(&mut self, c: &RefundPayment) -> Result<Reply, String> {
        let amount = match self.payments.get_mut(&c.payment_id) {
            Some(p) if p.state == PaymentState::Captured && c.amount_minor <= p.captured_minor => {
                p.state = PaymentState::Refunded;
                p.refunded_minor = c.amount_minor;
                p.refunded_minor
            }
            Some(p) if p.state == PaymentState::Refunded => p.refunded_minor,
            Some(p) => {
                let description = if p.state == PaymentState::Captured {
                    format!(
                        "refund of {} exceeds the captured {} of payment {}",
                        c.amount_minor, p.captured_minor, c.payment_id
                    )
                } else {
                    format!("refund of {:?} payment {}", p.state, c.payment_id)
                };
                return Err(description);
            }
            None => {
                // As for release: nothing was taken under an unknown id.
                tracing::warn!(payment_id = %c.payment_id, "simulator: refund of an unknown payment");
                c.amount_minor
            }
        };
        let (message_id, saga_id, order_id, in_reply_to) = head(c, ReplyKind::PaymentRefunded);
        Ok(PaymentRefunded {
            message_id,
            saga_id,
            order_id,
            in_reply_to,
            amount_minor: Some(amount),
        }
        .into())
    }
}
