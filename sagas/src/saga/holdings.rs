//! What a saga holds and remembers: the [`Stock`] and [`Payment`] sides, the [`OrderVerdict`] for
//! the order, and every [`SentRequest`] with its [`Answer`]. Plain values, read through the
//! aggregate's queries; only `apply` (in `state`) changes them.

use chrono::{DateTime, Utc};
use order_domain::Reason;
use serde::{Deserialize, Serialize};

use crate::messages::{MessageId, ParticipantCommand, PaymentId, ReplyKind, ReservationId, Step};

/// The stock side of the saga.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", content = "reservation_id", rename_all = "snake_case")]
pub enum Stock {
    #[default]
    None,
    Held(ReservationId),
    Released(ReservationId),
    Committed(ReservationId),
}

impl Stock {
    /// The reservation, once the inventory named it.
    pub fn reservation_id(&self) -> Option<&ReservationId> {
        match self {
            Self::None => None,
            Self::Held(id) | Self::Released(id) | Self::Committed(id) => Some(id),
        }
    }
}

/// The money side of the saga.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", content = "payment_id", rename_all = "snake_case")]
pub enum Payment {
    #[default]
    None,
    Authorized(PaymentId),
    Voided(PaymentId),
    Captured(PaymentId),
    Refunded(PaymentId),
}

impl Payment {
    /// The authorization, once the payment service named it.
    pub fn payment_id(&self) -> Option<&PaymentId> {
        match self {
            Self::None => None,
            Self::Authorized(id) | Self::Voided(id) | Self::Captured(id) | Self::Refunded(id) => {
                Some(id)
            }
        }
    }
}

/// What the order should be told; the saga reactor turns it into `ConfirmOrder` / `RejectOrder`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "verdict", rename_all = "snake_case")]
pub enum OrderVerdict {
    Confirm,
    Reject { reason: Reason },
}

/// How a reply answered a request: enough to tell a re-delivery from a contradiction.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Answer {
    pub reply_id: MessageId,
    pub kind: ReplyKind,
    /// The reservation or payment id the answer carried, if any.
    pub key: Option<String>,
}

/// A request the saga sent (and maybe re-sent).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SentRequest {
    /// The command, exactly as (re-)sent.
    pub command: ParticipantCommand,
    /// Sends so far in the current round (reset by an admin retry).
    pub attempt: u32,
    /// When the current attempt times out; `None` once answered, abandoned or parked.
    pub deadline_at: Option<DateTime<Utc>>,
    /// When its first attempt was sent (`None` for requests recorded before this was kept):
    /// the start of the step's latency.
    pub first_sent_at: Option<DateTime<Utc>>,
    /// The participant's answer, once it came.
    pub answer: Option<Answer>,
    /// A forward step the saga stopped waiting for; a late answer is still compensated.
    pub abandoned: bool,
    /// Why the saga parked this request (`needs_attention`), until an admin retry.
    pub parked: Option<String>,
}

impl SentRequest {
    /// The step the request performs.
    pub fn step(&self) -> Step {
        self.command.step()
    }
    /// The request's message id (what its answer names in `in_reply_to`).
    pub fn message_id(&self) -> MessageId {
        self.command.message_id()
    }
    /// In flight: sent, unanswered, with a deadline running.
    pub fn is_waiting(&self) -> bool {
        self.deadline_at.is_some()
    }
}
