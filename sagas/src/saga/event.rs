//! What happened to a saga: [`SagaChange`], the only source of truth, and [`SagaEvent`], the stored
//! form that also stamps the status and next deadline its decision led to.
//!
//! `...Requested` changes carry the participant command the relay publishes, so the relay needs
//! nothing but the event. Changes recording a reply are built from the validated reply only.

use chrono::{DateTime, Utc};
use cqrs_es::DomainEvent;
use order_domain::{Currency, CustomerId, OrderId, Reason, StoreId};
use serde::{Deserialize, Serialize};

use super::status::SagaStatus;
use crate::messages::{
    AuthorizePayment, CapturePayment, CommandIdKey, CommitStock, MessageId, ParticipantCommand,
    PaymentId, RefundPayment, ReleaseStock, Reply, ReservationId, ReserveStock, SagaId, Step,
    StockItem, UnavailableItem, VoidPayment,
};

/// What happened to a saga. JSON: `{"type": "<variant>", ...fields}`.
///
/// `...Requested` events carry the participant command the relay publishes (same `message_id`
/// on every re-send) and the deadline of that attempt.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type")]
pub enum SagaChange {
    SagaStarted {
        saga_id: SagaId,
        order_id: OrderId,
        store_id: StoreId,
        customer_id: CustomerId,
        currency: Currency,
        total_minor: i64,
        lines: Vec<StockItem>,
        started_at: DateTime<Utc>,
        /// The secret the saga's command ids are derived from; absent in sagas started before
        /// keys existed (they derive from the saga id). Never shown outside the event store.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        command_id_key: Option<CommandIdKey>,
    },
    StockReservationRequested {
        command: ReserveStock,
        attempt: u32,
        deadline_at: DateTime<Utc>,
        /// When this attempt was sent (absent in events recorded before it was kept).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        sent_at: Option<DateTime<Utc>>,
    },
    PaymentAuthorizationRequested {
        command: AuthorizePayment,
        attempt: u32,
        deadline_at: DateTime<Utc>,
        /// When this attempt was sent (absent in events recorded before it was kept).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        sent_at: Option<DateTime<Utc>>,
    },
    StockReleaseRequested {
        command: ReleaseStock,
        attempt: u32,
        deadline_at: DateTime<Utc>,
        /// When this attempt was sent (absent in events recorded before it was kept).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        sent_at: Option<DateTime<Utc>>,
    },
    PaymentVoidRequested {
        command: VoidPayment,
        attempt: u32,
        deadline_at: DateTime<Utc>,
        /// When this attempt was sent (absent in events recorded before it was kept).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        sent_at: Option<DateTime<Utc>>,
    },
    PaymentCaptureRequested {
        command: CapturePayment,
        attempt: u32,
        deadline_at: DateTime<Utc>,
        /// When this attempt was sent (absent in events recorded before it was kept).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        sent_at: Option<DateTime<Utc>>,
    },
    StockCommitRequested {
        command: CommitStock,
        attempt: u32,
        deadline_at: DateTime<Utc>,
        /// When this attempt was sent (absent in events recorded before it was kept).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        sent_at: Option<DateTime<Utc>>,
    },
    PaymentRefundRequested {
        command: RefundPayment,
        attempt: u32,
        deadline_at: DateTime<Utc>,
        /// When this attempt was sent (absent in events recorded before it was kept).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        sent_at: Option<DateTime<Utc>>,
    },
    StockReserved {
        reply_id: MessageId,
        in_reply_to: MessageId,
        reservation_id: ReservationId,
    },
    StockRejected {
        reply_id: MessageId,
        in_reply_to: MessageId,
        reason: String,
        unavailable: Vec<UnavailableItem>,
    },
    StockReleased {
        reply_id: MessageId,
        in_reply_to: MessageId,
    },
    StockCommitted {
        reply_id: MessageId,
        in_reply_to: MessageId,
    },
    PaymentAuthorized {
        reply_id: MessageId,
        in_reply_to: MessageId,
        payment_id: PaymentId,
    },
    PaymentDeclined {
        reply_id: MessageId,
        in_reply_to: MessageId,
        reason: String,
    },
    PaymentVoided {
        reply_id: MessageId,
        in_reply_to: MessageId,
    },
    PaymentCaptured {
        reply_id: MessageId,
        in_reply_to: MessageId,
    },
    PaymentCaptureFailed {
        reply_id: MessageId,
        in_reply_to: MessageId,
        reason: String,
    },
    PaymentRefunded {
        reply_id: MessageId,
        in_reply_to: MessageId,
    },
    /// Stock and payment are held: the reactor sends the order `ConfirmOrder`.
    OrderConfirmationDue,
    /// A forward step failed for good: the reactor sends the order `RejectOrder { reason }`.
    OrderRejectionDue {
        reason: Reason,
    },
    /// The order was cancelled; compensation begins.
    CancellationReceived {
        at: DateTime<Utc>,
    },
    /// The order was shipped or picked up; capture and commit begin.
    FulfillmentReceived {
        at: DateTime<Utc>,
    },
    /// The saga stopped waiting for a forward request (out of attempts, or cancelled while it
    /// was in flight). A late answer is still compensated.
    RequestAbandoned {
        step: Step,
        message_id: MessageId,
        attempts: u32,
    },
    /// A request is parked and a person must look (alert).
    SagaNeedsAttention {
        step: Step,
        message_id: MessageId,
        reason: String,
    },
    /// An admin retried the parked requests.
    SagaRetried {
        at: DateTime<Utc>,
    },
    SagaCompleted,
    SagaCancelled,
    SagaFailed {
        reason: Reason,
    },
}

impl SagaChange {
    /// The variant name.
    pub fn event_type(&self) -> &'static str {
        match self {
            Self::SagaStarted { .. } => "SagaStarted",
            Self::StockReservationRequested { .. } => "StockReservationRequested",
            Self::PaymentAuthorizationRequested { .. } => "PaymentAuthorizationRequested",
            Self::StockReleaseRequested { .. } => "StockReleaseRequested",
            Self::PaymentVoidRequested { .. } => "PaymentVoidRequested",
            Self::PaymentCaptureRequested { .. } => "PaymentCaptureRequested",
            Self::StockCommitRequested { .. } => "StockCommitRequested",
            Self::PaymentRefundRequested { .. } => "PaymentRefundRequested",
            Self::StockReserved { .. } => "StockReserved",
            Self::StockRejected { .. } => "StockRejected",
            Self::StockReleased { .. } => "StockReleased",
            Self::StockCommitted { .. } => "StockCommitted",
            Self::PaymentAuthorized { .. } => "PaymentAuthorized",
            Self::PaymentDeclined { .. } => "PaymentDeclined",
            Self::PaymentVoided { .. } => "PaymentVoided",
            Self::PaymentCaptured { .. } => "PaymentCaptured",
            Self::PaymentCaptureFailed { .. } => "PaymentCaptureFailed",
            Self::PaymentRefunded { .. } => "PaymentRefunded",
            Self::OrderConfirmationDue => "OrderConfirmationDue",
            Self::OrderRejectionDue { .. } => "OrderRejectionDue",
            Self::CancellationReceived { .. } => "CancellationReceived",
            Self::FulfillmentReceived { .. } => "FulfillmentReceived",
            Self::RequestAbandoned { .. } => "RequestAbandoned",
            Self::SagaNeedsAttention { .. } => "SagaNeedsAttention",
            Self::SagaRetried { .. } => "SagaRetried",
            Self::SagaCompleted => "SagaCompleted",
            Self::SagaCancelled => "SagaCancelled",
            Self::SagaFailed { .. } => "SagaFailed",
        }
    }

    /// The participant command a `...Requested` event asks the relay to publish.
    pub fn participant_command(&self) -> Option<ParticipantCommand> {
        Some(match self {
            Self::StockReservationRequested { command, .. } => command.clone().into(),
            Self::PaymentAuthorizationRequested { command, .. } => command.clone().into(),
            Self::StockReleaseRequested { command, .. } => command.clone().into(),
            Self::PaymentVoidRequested { command, .. } => command.clone().into(),
            Self::PaymentCaptureRequested { command, .. } => command.clone().into(),
            Self::StockCommitRequested { command, .. } => command.clone().into(),
            Self::PaymentRefundRequested { command, .. } => command.clone().into(),
            _ => return None,
        })
    }

    /// The `...Requested` event that (re-)sends `command` at `sent_at`.
    pub fn requested(
        command: ParticipantCommand,
        attempt: u32,
        deadline_at: DateTime<Utc>,
        sent_at: DateTime<Utc>,
    ) -> Self {
        let sent_at = Some(sent_at);
        match command {
            ParticipantCommand::ReserveStock(command) => Self::StockReservationRequested {
                command,
                attempt,
                deadline_at,
                sent_at,
            },
            ParticipantCommand::AuthorizePayment(command) => Self::PaymentAuthorizationRequested {
                command,
                attempt,
                deadline_at,
                sent_at,
            },
            ParticipantCommand::ReleaseStock(command) => Self::StockReleaseRequested {
                command,
                attempt,
                deadline_at,
                sent_at,
            },
            ParticipantCommand::VoidPayment(command) => Self::PaymentVoidRequested {
                command,
                attempt,
                deadline_at,
                sent_at,
            },
            ParticipantCommand::CapturePayment(command) => Self::PaymentCaptureRequested {
                command,
                attempt,
                deadline_at,
                sent_at,
            },
            ParticipantCommand::CommitStock(command) => Self::StockCommitRequested {
                command,
                attempt,
                deadline_at,
                sent_at,
            },
            ParticipantCommand::RefundPayment(command) => Self::PaymentRefundRequested {
                command,
                attempt,
                deadline_at,
                sent_at,
            },
        }
    }

    /// The reply an event records, as `(reply_id, in_reply_to)`.
    pub fn reply_ids(&self) -> Option<(MessageId, MessageId)> {
        match self {
            Self::StockReserved {
                reply_id,
                in_reply_to,
                ..
            }
            | Self::StockRejected {
                reply_id,
                in_reply_to,
                ..
            }
            | Self::StockReleased {
                reply_id,
                in_reply_to,
            }
            | Self::StockCommitted {
                reply_id,
                in_reply_to,
            }
            | Self::PaymentAuthorized {
                reply_id,
                in_reply_to,
                ..
            }
            | Self::PaymentDeclined {
                reply_id,
                in_reply_to,
                ..
            }
            | Self::PaymentVoided {
                reply_id,
                in_reply_to,
            }
            | Self::PaymentCaptured {
                reply_id,
                in_reply_to,
            }
            | Self::PaymentCaptureFailed {
                reply_id,
                in_reply_to,
                ..
            }
            | Self::PaymentRefunded {
                reply_id,
                in_reply_to,
            } => Some((*reply_id, *in_reply_to)),
            _ => None,
        }
    }

    /// The event recording `reply` (already validated).
    pub(super) fn from_reply(reply: &Reply) -> Self {
        match reply {
            Reply::StockReserved(r) => Self::StockReserved {
                reply_id: r.message_id,
                in_reply_to: r.in_reply_to,
                reservation_id: r.reservation_id.clone(),
            },
            Reply::StockRejected(r) => Self::StockRejected {
                reply_id: r.message_id,
                in_reply_to: r.in_reply_to,
                reason: r.reason.clone(),
                unavailable: r.unavailable.clone(),
            },
            Reply::StockReleased(r) => Self::StockReleased {
                reply_id: r.message_id,
                in_reply_to: r.in_reply_to,
            },
            Reply::StockCommitted(r) => Self::StockCommitted {
                reply_id: r.message_id,
                in_reply_to: r.in_reply_to,
            },
            Reply::PaymentAuthorized(r) => Self::PaymentAuthorized {
                reply_id: r.message_id,
                in_reply_to: r.in_reply_to,
                payment_id: r.payment_id.clone(),
            },
            Reply::PaymentDeclined(r) => Self::PaymentDeclined {
                reply_id: r.message_id,
                in_reply_to: r.in_reply_to,
                reason: r.reason.clone(),
            },
            Reply::PaymentVoided(r) => Self::PaymentVoided {
                reply_id: r.message_id,
                in_reply_to: r.in_reply_to,
            },
            Reply::PaymentCaptured(r) => Self::PaymentCaptured {
                reply_id: r.message_id,
                in_reply_to: r.in_reply_to,
            },
            Reply::PaymentCaptureFailed(r) => Self::PaymentCaptureFailed {
                reply_id: r.message_id,
                in_reply_to: r.in_reply_to,
                reason: r.reason.clone(),
            },
            Reply::PaymentRefunded(r) => Self::PaymentRefunded {
                reply_id: r.message_id,
                in_reply_to: r.in_reply_to,
            },
        }
    }
}

/// The reservation or payment id a reply carries: what distinguishes a re-delivery from a
/// contradicting answer.
pub(super) fn reply_key(reply: &Reply) -> Option<String> {
    match reply {
        Reply::StockReserved(r) => Some(r.reservation_id.to_string()),
        Reply::PaymentAuthorized(r) => Some(r.payment_id.to_string()),
        _ => None,
    }
}

/// One stored saga event: the change, plus the saga's status and next deadline once the command
/// that produced it was decided (every event of one decision carries the same values), so that
/// the `saga_progress` and `saga_deadlines` read models copy them instead of re-deriving them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SagaEvent {
    #[serde(flatten)]
    pub change: SagaChange,
    pub status: SagaStatus,
    pub next_deadline_at: Option<DateTime<Utc>>,
}

impl DomainEvent for SagaEvent {
    fn event_type(&self) -> String {
        self.change.event_type().to_owned()
    }

    fn event_version(&self) -> String {
        "1".to_owned()
    }
}
