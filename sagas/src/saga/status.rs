//! [`SagaStatus`]: where a saga stands, with its stable snake_case names (JSON, `?state=`
//! filters, metric labels). The status is derived from the saga's state (`OrderSaga::status`),
//! never stored on its own; this module only names the possible answers.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Where a saga stands. JSON: snake_case (`GET /v1/orders/{id}/saga`, `?state=` filters).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SagaStatus {
    /// Waiting for the inventory to reserve the stock.
    ReservingStock,
    /// Stock held; waiting for the payment authorization.
    AuthorizingPayment,
    /// Stock held and payment authorized; the order is confirmed. Waiting for fulfilment.
    Confirmed,
    /// Fulfilled: waiting for the capture and the commit.
    Capturing,
    /// Payment captured and stock committed. Done.
    Completed,
    /// The order was cancelled or failed: waiting for compensations (or for the answer of a
    /// request in flight, to know what to compensate).
    Compensating,
    /// Cancelled, with everything it held given back. Done.
    Cancelled,
    /// Failed (the order was rejected), with everything it held given back. Done.
    Failed,
    /// Stuck: a compensation, capture or commit went unanswered, or the capture failed. An
    /// admin retry is needed.
    NeedsAttention,
}

impl SagaStatus {
    /// Every status, in the order a saga usually goes through them.
    pub const ALL: [SagaStatus; 9] = [
        Self::ReservingStock,
        Self::AuthorizingPayment,
        Self::Confirmed,
        Self::Capturing,
        Self::Completed,
        Self::Compensating,
        Self::Cancelled,
        Self::Failed,
        Self::NeedsAttention,
    ];

    /// snake_case name (JSON, `?state=` filter, metric label).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ReservingStock => "reserving_stock",
            Self::AuthorizingPayment => "authorizing_payment",
            Self::Confirmed => "confirmed",
            Self::Capturing => "capturing",
            Self::Completed => "completed",
            Self::Compensating => "compensating",
            Self::Cancelled => "cancelled",
            Self::Failed => "failed",
            Self::NeedsAttention => "needs_attention",
        }
    }

    /// Parses the snake_case name.
    pub fn parse(raw: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.as_str() == raw)
    }

    /// Whether the saga is done (nothing held that should not be, nothing in flight).
    pub fn is_terminal(self) -> bool {
        matches!(self, Self::Completed | Self::Cancelled | Self::Failed)
    }
}

impl fmt::Display for SagaStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_have_snake_case_names_that_parse_back() {
        for status in SagaStatus::ALL {
            assert_eq!(SagaStatus::parse(status.as_str()), Some(status));
            assert_eq!(
                serde_json::to_value(status).unwrap(),
                serde_json::Value::from(status.as_str())
            );
        }
    }
}
