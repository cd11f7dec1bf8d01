//! The `OrderSaga` aggregate (DESIGN §7): one per order, id = order id, started by `OrderPlaced`.
//!
//! ```text
//! reserve stock ──reserved──► authorize payment ──authorized──► confirmed ──fulfilled──► capturing
//!   │ rejected → failed          │ declined → release → failed      │ cancelled            │
//!   │                            │                                  ▼                      ▼
//!   └── cancelled: compensate whatever is held (release / void / refund) ──► cancelled   completed
//! ```
//!
//! `decide` is pure: the saga's history, the command (which carries `now`) and the
//! [`SagaPolicy`] give the events. `apply` only mutates. The saga's status is *derived* from what
//! it holds and what it is waiting for (see [`OrderSaga::status`]), and after every decision one
//! reconciling pass asks for exactly what is missing: the next forward step, or, once the order
//! is cancelled or failed, the compensation of everything held. That one rule covers late replies
//! too: a reservation or authorization that arrives after the saga gave up is released or voided.
//!
//! Every request has a deadline. `Timeout` re-sends an unanswered request with the same
//! `message_id` and a doubled (capped) deadline until [`SagaPolicy::max_attempts`]; then a silent
//! reserve or authorize fails the order (compensating what is held), while a silent compensation,
//! capture or commit parks the saga in `needs_attention` until an admin `Retry`.
//!
//! Replies are checked against the saga: a reply for another saga or order, to a command this
//! saga never sent, of the wrong kind, with the wrong amount, or contradicting an earlier answer
//! is refused with [`SagaError::ReplyIgnored`]. A re-delivered reply is not an error: it yields no
//! events and `Ok`.

use std::collections::VecDeque;
use std::fmt;

use chrono::{DateTime, Duration, Utc};
use cqrs_es::event_sink::EventSink;
use cqrs_es::{Aggregate, DomainEvent};
use order_domain::{Currency, CustomerId, OrderChange, OrderId, Quantity, Reason, Sku, StoreId};
use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::messages::{
    AuthorizePayment, CapturePayment, CommitStock, MessageId, ParticipantCommand, PaymentId,
    RefundPayment, ReleaseStock, Reply, ReplyKind, ReservationId, ReserveStock, SagaId, Step,
    StockItem, UnavailableItem, VoidPayment,
};

/// How many reply message ids a saga remembers for duplicate detection. Older duplicates are
/// still recognised through the request they answer (see [`SentRequest::answer`]).
pub const REMEMBERED_REPLIES: usize = 64;

// ---- configuration -------------------------------------------------------------------------

/// Timeouts and retries of saga steps: the aggregate's `Services`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SagaPolicy {
    /// How long the first send of a request waits for its reply (`APP__SAGA__STEP_TIMEOUT_MS`).
    pub step_timeout: Duration,
    /// Sends of one request, the first included, before the saga stops re-sending it
    /// (`APP__SAGA__MAX_ATTEMPTS`). Zero is read as one.
    pub max_attempts: u32,
    /// Longest wait of any one attempt: waits double per attempt up to this cap.
    pub max_wait: Duration,
}

impl Default for SagaPolicy {
    fn default() -> Self {
        Self {
            step_timeout: Duration::seconds(10),
            max_attempts: 5,
            max_wait: Duration::minutes(5),
        }
    }
}

impl SagaPolicy {
    /// How long attempt `attempt` (1-based) waits: `step_timeout × 2^(attempt-1)`, capped at
    /// `max_wait`.
    pub fn wait(&self, attempt: u32) -> Duration {
        let doublings = attempt.saturating_sub(1).min(30);
        let factor = 1_i32 << doublings;
        self.step_timeout
            .checked_mul(factor)
            .map_or(self.max_wait, |wait| wait.min(self.max_wait))
    }

    /// The deadline of attempt `attempt` sent at `now`.
    pub fn deadline(&self, now: DateTime<Utc>, attempt: u32) -> DateTime<Utc> {
        now.checked_add_signed(self.wait(attempt))
            .unwrap_or(DateTime::<Utc>::MAX_UTC)
    }

    fn attempts(&self) -> u32 {
        self.max_attempts.max(1)
    }
}

// ---- commands ------------------------------------------------------------------------------

/// What the saga needs to know of the placed order: the `OrderPlaced` snapshot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderSnapshot {
    pub order_id: OrderId,
    pub store_id: StoreId,
    pub customer_id: CustomerId,
    pub currency: Currency,
    pub total_minor: i64,
    pub lines: Vec<StockItem>,
}

/// Why an order event could not be turned into an [`OrderSnapshot`].
#[derive(Debug, Clone, Error, PartialEq, Eq)]
pub enum SnapshotError {
    #[error("a saga starts from OrderPlaced, not {event_type}")]
    NotOrderPlaced { event_type: &'static str },
    #[error("line {sku} has a quantity out of range")]
    InvalidQuantity { sku: Sku },
}

impl OrderSnapshot {
    /// The snapshot carried by an `OrderPlaced` change of order `order_id` (what the saga reactor
    /// reads from the log).
    pub fn from_order_placed(
        order_id: OrderId,
        change: &OrderChange,
    ) -> Result<Self, SnapshotError> {
        let OrderChange::OrderPlaced {
            customer_id,
            store_id,
            currency,
            total_minor,
            lines,
        } = change
        else {
            return Err(SnapshotError::NotOrderPlaced {
                event_type: change.event_type(),
            });
        };
        let lines = lines
            .iter()
            .map(|line| {
                Quantity::parse(i64::from(line.quantity))
                    .map(|quantity| StockItem {
                        sku: line.sku.clone(),
                        quantity,
                    })
                    .map_err(|_| SnapshotError::InvalidQuantity {
                        sku: line.sku.clone(),
                    })
            })
            .collect::<Result<_, _>>()?;
        Ok(Self {
            order_id,
            store_id: *store_id,
            customer_id: customer_id.clone(),
            currency: *currency,
            total_minor: *total_minor,
            lines,
        })
    }
}

/// What the saga reactor, the reply consumer, the deadline worker and the admin API ask of a
/// saga. Each carries the time of its decision: the saga has no clock.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SagaCommand {
    /// The order was placed (`OrderPlaced`): reserve its stock. Idempotent.
    Start {
        order: OrderSnapshot,
        now: DateTime<Utc>,
    },
    /// A participant replied.
    HandleReply { reply: Reply, now: DateTime<Utc> },
    /// The order was cancelled (`OrderCancelled`): compensate whatever is held. Idempotent.
    OrderCancelled { now: DateTime<Utc> },
    /// The order was shipped or picked up: capture the payment and commit the stock. Idempotent.
    OrderFulfilled { now: DateTime<Utc> },
    /// A deadline passed (deadline worker): re-send, give up or park what is overdue.
    /// Harmless when nothing is overdue.
    Timeout { now: DateTime<Utc> },
    /// Admin retry of a `needs_attention` saga: re-send what is parked, attempts reset.
    Retry { now: DateTime<Utc> },
}

impl SagaCommand {
    /// Stable name, used in metrics, logs and errors.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Start { .. } => "Start",
            Self::HandleReply { .. } => "HandleReply",
            Self::OrderCancelled { .. } => "OrderCancelled",
            Self::OrderFulfilled { .. } => "OrderFulfilled",
            Self::Timeout { .. } => "Timeout",
            Self::Retry { .. } => "Retry",
        }
    }
}

// ---- errors --------------------------------------------------------------------------------

/// Why a reply was refused. The reply consumer acknowledges it (it will never become valid)
/// and counts it by [`IgnoredReason::code`].
#[derive(Debug, Clone, Error, PartialEq, Eq)]
pub enum IgnoredReason {
    #[error("no saga was started for this reply")]
    UnknownSaga,
    #[error("reply names saga {got}, this is saga {expected}")]
    WrongSaga { expected: SagaId, got: SagaId },
    #[error("reply names order {got}, this saga is for order {expected}")]
    WrongOrder { expected: OrderId, got: OrderId },
    #[error("this saga never sent message {in_reply_to}")]
    UnknownRequest { in_reply_to: MessageId },
    #[error("{reply} does not answer a {step} command")]
    UnexpectedReply { step: Step, reply: ReplyKind },
    #[error("amount {got} differs from the order total {expected}")]
    WrongAmount { expected: i64, got: i64 },
    #[error("currency {got} differs from the order currency {expected}")]
    WrongCurrency { expected: Currency, got: Currency },
    #[error("the {step} command was already answered with {answer}")]
    AlreadySettled { step: Step, answer: ReplyKind },
}

impl IgnoredReason {
    /// Stable snake_case name (metric label).
    pub fn code(&self) -> &'static str {
        match self {
            Self::UnknownSaga => "unknown_saga",
            Self::WrongSaga { .. } => "wrong_saga",
            Self::WrongOrder { .. } => "wrong_order",
            Self::UnknownRequest { .. } => "unknown_request",
            Self::UnexpectedReply { .. } => "unexpected_reply",
            Self::WrongAmount { .. } => "wrong_amount",
            Self::WrongCurrency { .. } => "wrong_currency",
            Self::AlreadySettled { .. } => "already_settled",
        }
    }
}

/// Why the saga refused a command. Nothing was stored.
#[derive(Debug, Clone, Error, PartialEq, Eq)]
pub enum SagaError {
    #[error("the saga has not been started")]
    NotStarted,
    #[error("reply ignored: {reason}")]
    ReplyIgnored { reason: IgnoredReason },
    #[error("{command} does not apply to a saga that is {status}")]
    NotApplicable {
        command: &'static str,
        status: SagaStatus,
    },
    #[error("nothing to retry: the saga is {status}")]
    NothingToRetry { status: SagaStatus },
}

impl SagaError {
    /// Stable kebab-case name of the refusal (problem `type` slug, metric label).
    pub fn code(&self) -> &'static str {
        match self {
            Self::NotStarted => "saga-not-started",
            Self::ReplyIgnored { .. } => "reply-ignored",
            Self::NotApplicable { .. } => "saga-command-not-applicable",
            Self::NothingToRetry { .. } => "saga-nothing-to-retry",
        }
    }
}

fn ignored(reason: IgnoredReason) -> SagaError {
    SagaError::ReplyIgnored { reason }
}

// ---- status and holdings -------------------------------------------------------------------

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

// ---- events --------------------------------------------------------------------------------

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
    },
    StockReservationRequested {
        command: ReserveStock,
        attempt: u32,
        deadline_at: DateTime<Utc>,
    },
    PaymentAuthorizationRequested {
        command: AuthorizePayment,
        attempt: u32,
        deadline_at: DateTime<Utc>,
    },
    StockReleaseRequested {
        command: ReleaseStock,
        attempt: u32,
        deadline_at: DateTime<Utc>,
    },
    PaymentVoidRequested {
        command: VoidPayment,
        attempt: u32,
        deadline_at: DateTime<Utc>,
    },
    PaymentCaptureRequested {
        command: CapturePayment,
        attempt: u32,
        deadline_at: DateTime<Utc>,
    },
    StockCommitRequested {
        command: CommitStock,
        attempt: u32,
        deadline_at: DateTime<Utc>,
    },
    PaymentRefundRequested {
        command: RefundPayment,
        attempt: u32,
        deadline_at: DateTime<Utc>,
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

    /// The `...Requested` event that (re-)sends `command`.
    pub fn requested(
        command: ParticipantCommand,
        attempt: u32,
        deadline_at: DateTime<Utc>,
    ) -> Self {
        match command {
            ParticipantCommand::ReserveStock(command) => Self::StockReservationRequested {
                command,
                attempt,
                deadline_at,
            },
            ParticipantCommand::AuthorizePayment(command) => Self::PaymentAuthorizationRequested {
                command,
                attempt,
                deadline_at,
            },
            ParticipantCommand::ReleaseStock(command) => Self::StockReleaseRequested {
                command,
                attempt,
                deadline_at,
            },
            ParticipantCommand::VoidPayment(command) => Self::PaymentVoidRequested {
                command,
                attempt,
                deadline_at,
            },
            ParticipantCommand::CapturePayment(command) => Self::PaymentCaptureRequested {
                command,
                attempt,
                deadline_at,
            },
            ParticipantCommand::CommitStock(command) => Self::StockCommitRequested {
                command,
                attempt,
                deadline_at,
            },
            ParticipantCommand::RefundPayment(command) => Self::PaymentRefundRequested {
                command,
                attempt,
                deadline_at,
            },
        }
    }

    /// The reply an event records, as `(reply_id, in_reply_to)`.
    fn reply_ids(&self) -> Option<(MessageId, MessageId)> {
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
    fn from_reply(reply: &Reply) -> Self {
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
fn reply_key(reply: &Reply) -> Option<String> {
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

// ---- the aggregate -------------------------------------------------------------------------

/// How the saga ends when it does not complete.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
enum Outcome {
    Cancelled,
    Failed { reason: Reason },
}

/// State of a started saga.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct SagaData {
    saga_id: SagaId,
    order: OrderSnapshot,
    started_at: DateTime<Utc>,
    requests: Vec<SentRequest>,
    stock: Stock,
    payment: Payment,
    outcome: Option<Outcome>,
    fulfilled: bool,
    verdict: Option<OrderVerdict>,
    /// The last terminal status announced by an event (`SagaCompleted`, ...), so that returning
    /// to it after compensating a late reply is not announced twice.
    announced: Option<SagaStatus>,
    /// Recently processed reply message ids, oldest first.
    processed: VecDeque<MessageId>,
}

/// The order saga. `Default` is "not started".
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderSaga {
    data: Option<SagaData>,
}

impl OrderSaga {
    /// Whether `Start` was decided (an `OrderPlaced` was seen).
    pub fn is_started(&self) -> bool {
        self.data.is_some()
    }
    /// The saga's id (the order's id).
    pub fn saga_id(&self) -> Option<SagaId> {
        self.data.as_ref().map(|d| d.saga_id)
    }
    /// The placed order the saga works for.
    pub fn order(&self) -> Option<&OrderSnapshot> {
        self.data.as_ref().map(|d| &d.order)
    }
    /// When the saga started (the `now` of `Start`).
    pub fn started_at(&self) -> Option<DateTime<Utc>> {
        self.data.as_ref().map(|d| d.started_at)
    }
    /// Where the saga stands; `None` before it started.
    pub fn status(&self) -> Option<SagaStatus> {
        self.data.as_ref().map(SagaData::status)
    }
    /// The earliest deadline of a request in flight: when the deadline worker should send
    /// `Timeout`. `None` when nothing is awaited.
    pub fn deadline(&self) -> Option<DateTime<Utc>> {
        self.data.as_ref().and_then(SagaData::deadline)
    }
    /// Every request the saga sent, in order (history included).
    pub fn requests(&self) -> &[SentRequest] {
        self.data.as_ref().map_or(&[], |d| d.requests.as_slice())
    }
    /// Commands in flight or parked: what the saga is still waiting on.
    pub fn pending_commands(&self) -> Vec<&ParticipantCommand> {
        self.requests()
            .iter()
            .filter(|r| r.is_waiting() || r.parked.is_some())
            .map(|r| &r.command)
            .collect()
    }
    /// Sends of the latest request of `step` in its current round, if one was sent.
    pub fn attempts(&self, step: Step) -> Option<u32> {
        self.latest(step).map(|r| r.attempt)
    }
    /// Why the saga needs attention: the parked steps and their reasons.
    pub fn attention(&self) -> Vec<(Step, &str)> {
        self.requests()
            .iter()
            .filter_map(|r| r.parked.as_deref().map(|why| (r.step(), why)))
            .collect()
    }
    /// What the saga holds of the stock.
    pub fn stock(&self) -> Option<&Stock> {
        self.data.as_ref().map(|d| &d.stock)
    }
    /// What the saga holds of the payment.
    pub fn payment(&self) -> Option<&Payment> {
        self.data.as_ref().map(|d| &d.payment)
    }
    /// The inventory's reservation id, once known (kept after release or commit).
    pub fn reservation_id(&self) -> Option<&ReservationId> {
        self.data.as_ref().and_then(|d| d.stock.reservation_id())
    }
    /// The payment service's payment id, once known (kept after void, capture, refund).
    pub fn payment_id(&self) -> Option<&PaymentId> {
        self.data.as_ref().and_then(|d| d.payment.payment_id())
    }
    /// Whether the order should be confirmed or rejected (once decided, it stays).
    pub fn verdict(&self) -> Option<&OrderVerdict> {
        self.data.as_ref().and_then(|d| d.verdict.as_ref())
    }
    /// Whether the order was cancelled while the saga ran.
    pub fn is_cancelled(&self) -> bool {
        self.data
            .as_ref()
            .is_some_and(|d| d.outcome == Some(Outcome::Cancelled))
    }

    fn latest(&self, step: Step) -> Option<&SentRequest> {
        self.requests().iter().rev().find(|r| r.step() == step)
    }

    /// Decides a command: the events it produces (none for a repeated or harmless command), or
    /// why it is refused. Pure: same history, command and policy give the same answer.
    pub fn decide(
        &self,
        command: &SagaCommand,
        policy: &SagaPolicy,
    ) -> Result<Vec<SagaEvent>, SagaError> {
        if let SagaCommand::Start { order, now } = command {
            return Ok(self.decide_start(order, *now, policy));
        }
        let Some(data) = &self.data else {
            return Err(match command {
                SagaCommand::HandleReply { .. } => ignored(IgnoredReason::UnknownSaga),
                _ => SagaError::NotStarted,
            });
        };
        let mut draft = Draft::new(data, policy);
        match command {
            SagaCommand::Start { .. } => {} // decided above
            SagaCommand::HandleReply { reply, now } => draft.reply(reply, *now)?,
            SagaCommand::OrderCancelled { now } => draft.cancel(*now),
            SagaCommand::OrderFulfilled { now } => draft.fulfil(*now)?,
            SagaCommand::Timeout { now } => draft.timeout(*now),
            SagaCommand::Retry { now } => draft.retry(*now)?,
        }
        Ok(draft.finish())
    }

    fn decide_start(
        &self,
        order: &OrderSnapshot,
        now: DateTime<Utc>,
        policy: &SagaPolicy,
    ) -> Vec<SagaEvent> {
        // The reactor delivers OrderPlaced at least once: a second Start changes nothing.
        if self.data.is_some() {
            return Vec::new();
        }
        let started = SagaChange::SagaStarted {
            saga_id: SagaId::for_order(order.order_id),
            order_id: order.order_id,
            store_id: order.store_id,
            customer_id: order.customer_id.clone(),
            currency: order.currency,
            total_minor: order.total_minor,
            lines: order.lines.clone(),
            started_at: now,
        };
        let Some(data) = SagaData::from_started(&started) else {
            return Vec::new();
        };
        let mut draft = Draft::new(&data, policy);
        // `draft.next` already is the started saga.
        draft.changes.push(started);
        draft.reconcile(now);
        draft.finish()
    }

    fn apply_change(&mut self, change: &SagaChange) {
        if let Some(data) = SagaData::from_started(change) {
            self.data = Some(data);
        } else if let Some(data) = self.data.as_mut() {
            data.apply(change);
        }
        // Events of a saga that never started cannot exist in a consistent log; applying must
        // not fail, so they are ignored.
    }
}

impl SagaData {
    fn from_started(change: &SagaChange) -> Option<Self> {
        let SagaChange::SagaStarted {
            saga_id,
            order_id,
            store_id,
            customer_id,
            currency,
            total_minor,
            lines,
            started_at,
        } = change
        else {
            return None;
        };
        Some(Self {
            saga_id: *saga_id,
            order: OrderSnapshot {
                order_id: *order_id,
                store_id: *store_id,
                customer_id: customer_id.clone(),
                currency: *currency,
                total_minor: *total_minor,
                lines: lines.clone(),
            },
            started_at: *started_at,
            requests: Vec::new(),
            stock: Stock::None,
            payment: Payment::None,
            outcome: None,
            fulfilled: false,
            verdict: None,
            announced: None,
            processed: VecDeque::new(),
        })
    }

    /// The status follows from what is held, what is awaited and how the saga must end.
    fn status(&self) -> SagaStatus {
        use SagaStatus as S;
        if self.requests.iter().any(|r| r.parked.is_some()) {
            return S::NeedsAttention;
        }
        let waiting = self.requests.iter().any(SentRequest::is_waiting);
        match &self.outcome {
            Some(_) if waiting => S::Compensating,
            Some(Outcome::Cancelled) => S::Cancelled,
            Some(Outcome::Failed { .. }) => S::Failed,
            None if self.fulfilled => {
                if waiting {
                    S::Capturing
                } else {
                    S::Completed
                }
            }
            None => match (&self.stock, &self.payment) {
                (_, Payment::Authorized(_)) => S::Confirmed,
                (Stock::Held(_), _) => S::AuthorizingPayment,
                _ => S::ReservingStock,
            },
        }
    }

    fn deadline(&self) -> Option<DateTime<Utc>> {
        self.requests.iter().filter_map(|r| r.deadline_at).min()
    }

    fn request(&self, message_id: MessageId) -> Option<&SentRequest> {
        self.requests.iter().find(|r| r.message_id() == message_id)
    }

    fn request_mut(&mut self, message_id: MessageId) -> Option<&mut SentRequest> {
        self.requests
            .iter_mut()
            .find(|r| r.message_id() == message_id)
    }

    fn has_request(&self, step: Step) -> bool {
        self.requests.iter().any(|r| r.step() == step)
    }

    /// The id of the next request of `step`: generation = how many were sent before, plus one.
    fn next_message_id(&self, step: Step) -> MessageId {
        let sent = self.requests.iter().filter(|r| r.step() == step).count();
        let generation = u32::try_from(sent).map_or(u32::MAX, |n| n.saturating_add(1));
        MessageId::derive(self.saga_id, step, generation)
    }

    fn apply(&mut self, change: &SagaChange) {
        if let Some(command) = change.participant_command() {
            self.apply_requested(command, change);
            return;
        }
        if let Some((reply_id, in_reply_to)) = change.reply_ids() {
            if self.processed.len() >= REMEMBERED_REPLIES {
                self.processed.pop_front();
            }
            self.processed.push_back(reply_id);
            self.apply_reply(change, reply_id, in_reply_to);
            return;
        }
        match change {
            SagaChange::OrderConfirmationDue => self.verdict = Some(OrderVerdict::Confirm),
            SagaChange::OrderRejectionDue { reason } => {
                self.verdict = Some(OrderVerdict::Reject {
                    reason: reason.clone(),
                });
                self.outcome.get_or_insert_with(|| Outcome::Failed {
                    reason: reason.clone(),
                });
            }
            SagaChange::CancellationReceived { .. } => {
                self.outcome.get_or_insert(Outcome::Cancelled);
            }
            SagaChange::FulfillmentReceived { .. } => self.fulfilled = true,
            SagaChange::RequestAbandoned { message_id, .. } => {
                if let Some(request) = self.request_mut(*message_id) {
                    request.deadline_at = None;
                    request.abandoned = true;
                }
            }
            SagaChange::SagaNeedsAttention {
                message_id, reason, ..
            } => {
                if let Some(request) = self.request_mut(*message_id) {
                    request.deadline_at = None;
                    request.parked = Some(reason.clone());
                }
            }
            SagaChange::SagaRetried { .. } => {
                for request in &mut self.requests {
                    request.parked = None;
                }
            }
            SagaChange::SagaCompleted => self.announced = Some(SagaStatus::Completed),
            SagaChange::SagaCancelled => self.announced = Some(SagaStatus::Cancelled),
            SagaChange::SagaFailed { .. } => self.announced = Some(SagaStatus::Failed),
            _ => {}
        }
    }

    fn apply_requested(&mut self, command: ParticipantCommand, change: &SagaChange) {
        let (attempt, deadline_at) = match change {
            SagaChange::StockReservationRequested {
                attempt,
                deadline_at,
                ..
            }
            | SagaChange::PaymentAuthorizationRequested {
                attempt,
                deadline_at,
                ..
            }
            | SagaChange::StockReleaseRequested {
                attempt,
                deadline_at,
                ..
            }
            | SagaChange::PaymentVoidRequested {
                attempt,
                deadline_at,
                ..
            }
            | SagaChange::PaymentCaptureRequested {
                attempt,
                deadline_at,
                ..
            }
            | SagaChange::StockCommitRequested {
                attempt,
                deadline_at,
                ..
            }
            | SagaChange::PaymentRefundRequested {
                attempt,
                deadline_at,
                ..
            } => (*attempt, *deadline_at),
            _ => return,
        };
        if let Some(request) = self.request_mut(command.message_id()) {
            request.command = command;
            request.attempt = attempt;
            request.deadline_at = Some(deadline_at);
            request.abandoned = false;
            request.parked = None;
        } else {
            self.requests.push(SentRequest {
                command,
                attempt,
                deadline_at: Some(deadline_at),
                answer: None,
                abandoned: false,
                parked: None,
            });
        }
    }

    fn apply_reply(&mut self, change: &SagaChange, reply_id: MessageId, in_reply_to: MessageId) {
        let (kind, key) = match change {
            SagaChange::StockReserved { reservation_id, .. } => {
                self.stock = Stock::Held(reservation_id.clone());
                (ReplyKind::StockReserved, Some(reservation_id.to_string()))
            }
            SagaChange::StockRejected { .. } => (ReplyKind::StockRejected, None),
            SagaChange::StockReleased { .. } => {
                if let Some(id) = self.stock.reservation_id().cloned() {
                    self.stock = Stock::Released(id);
                }
                (ReplyKind::StockReleased, None)
            }
            SagaChange::StockCommitted { .. } => {
                if let Some(id) = self.stock.reservation_id().cloned() {
                    self.stock = Stock::Committed(id);
                }
                (ReplyKind::StockCommitted, None)
            }
            SagaChange::PaymentAuthorized { payment_id, .. } => {
                self.payment = Payment::Authorized(payment_id.clone());
                (ReplyKind::PaymentAuthorized, Some(payment_id.to_string()))
            }
            SagaChange::PaymentDeclined { .. } => (ReplyKind::PaymentDeclined, None),
            SagaChange::PaymentVoided { .. } => {
                if let Some(id) = self.payment.payment_id().cloned() {
                    self.payment = Payment::Voided(id);
                }
                (ReplyKind::PaymentVoided, None)
            }
            SagaChange::PaymentCaptured { .. } => {
                if let Some(id) = self.payment.payment_id().cloned() {
                    self.payment = Payment::Captured(id);
                }
                (ReplyKind::PaymentCaptured, None)
            }
            SagaChange::PaymentCaptureFailed { .. } => (ReplyKind::PaymentCaptureFailed, None),
            SagaChange::PaymentRefunded { .. } => {
                if let Some(id) = self.payment.payment_id().cloned() {
                    self.payment = Payment::Refunded(id);
                }
                (ReplyKind::PaymentRefunded, None)
            }
            _ => return,
        };
        if let Some(request) = self.request_mut(in_reply_to) {
            // A late answer resolves a parked request; a failure answer is parked again by
            // the `SagaNeedsAttention` that follows it.
            request.deadline_at = None;
            request.parked = None;
            request.answer = Some(Answer {
                reply_id,
                kind,
                key,
            });
        }
    }
}

impl Aggregate for OrderSaga {
    const TYPE: &'static str = "OrderSaga";
    type Command = SagaCommand;
    type Event = SagaEvent;
    type Error = SagaError;
    /// Step timeouts and retry limits.
    type Services = SagaPolicy;

    async fn handle(
        &mut self,
        command: Self::Command,
        policy: &Self::Services,
        sink: &EventSink<Self>,
    ) -> Result<(), Self::Error> {
        for event in self.decide(&command, policy)? {
            sink.write(event, self).await;
        }
        Ok(())
    }

    fn apply(&mut self, event: Self::Event) {
        self.apply_change(&event.change);
    }
}

// ---- deciding ------------------------------------------------------------------------------

/// A decision in progress: the changes so far, and the state they lead to (so each rule sees
/// the effect of the previous ones).
struct Draft<'a> {
    next: SagaData,
    changes: Vec<SagaChange>,
    policy: &'a SagaPolicy,
}

impl<'a> Draft<'a> {
    fn new(data: &SagaData, policy: &'a SagaPolicy) -> Self {
        Self {
            next: data.clone(),
            changes: Vec::new(),
            policy,
        }
    }

    fn emit(&mut self, change: SagaChange) {
        self.next.apply(&change);
        self.changes.push(change);
    }

    fn send(&mut self, command: ParticipantCommand, attempt: u32, now: DateTime<Utc>) {
        let deadline_at = self.policy.deadline(now, attempt);
        self.emit(SagaChange::requested(command, attempt, deadline_at));
    }

    fn reject(&mut self, reason: Reason) {
        // An order cancelled meanwhile is not rejected: it already ended.
        if self.next.outcome.is_none() {
            self.emit(SagaChange::OrderRejectionDue { reason });
        }
    }

    fn reply(&mut self, reply: &Reply, now: DateTime<Utc>) -> Result<(), SagaError> {
        if !self.check_reply(reply)? {
            return Ok(());
        }
        self.emit(SagaChange::from_reply(reply));
        match reply {
            Reply::StockRejected(r) => self.reject(reason_text(&format!(
                "stock could not be reserved: {}",
                r.reason
            ))),
            Reply::PaymentDeclined(r) => {
                self.reject(reason_text(&format!("payment declined: {}", r.reason)));
            }
            Reply::PaymentCaptureFailed(r) => self.emit(SagaChange::SagaNeedsAttention {
                step: Step::Capture,
                message_id: r.in_reply_to,
                reason: format!("capture failed: {}", r.reason),
            }),
            _ => {}
        }
        self.reconcile(now);
        Ok(())
    }

    /// Whether `reply` is new and acceptable (`Ok(true)`), a re-delivery (`Ok(false)`), or wrong.
    fn check_reply(&self, reply: &Reply) -> Result<bool, SagaError> {
        let data = &self.next;
        if reply.saga_id() != data.saga_id {
            return Err(ignored(IgnoredReason::WrongSaga {
                expected: data.saga_id,
                got: reply.saga_id(),
            }));
        }
        if reply.order_id() != data.order.order_id {
            return Err(ignored(IgnoredReason::WrongOrder {
                expected: data.order.order_id,
                got: reply.order_id(),
            }));
        }
        if data.processed.contains(&reply.message_id()) {
            return Ok(false);
        }
        let in_reply_to = reply.in_reply_to();
        let request = data
            .request(in_reply_to)
            .ok_or(ignored(IgnoredReason::UnknownRequest { in_reply_to }))?;
        let (step, kind) = (request.step(), reply.kind());
        if !step.is_answered_by(kind) {
            return Err(ignored(IgnoredReason::UnexpectedReply {
                step,
                reply: kind,
            }));
        }
        let expected = data.order.total_minor;
        if let Some(got) = reply.amount_minor().filter(|got| *got != expected) {
            return Err(ignored(IgnoredReason::WrongAmount { expected, got }));
        }
        if let Reply::PaymentAuthorized(r) = reply {
            let expected = data.order.currency;
            if let Some(got) = r.currency.filter(|got| *got != expected) {
                return Err(ignored(IgnoredReason::WrongCurrency { expected, got }));
            }
        }
        match &request.answer {
            None => Ok(true),
            // The same answer again under another message id: the participant re-answered a
            // re-sent command.
            Some(answer) if answer.kind == kind && answer.key == reply_key(reply) => Ok(false),
            Some(answer) => Err(ignored(IgnoredReason::AlreadySettled {
                step,
                answer: answer.kind,
            })),
        }
    }

    fn cancel(&mut self, now: DateTime<Utc>) {
        // Already failing or cancelled: everything held is being given back already.
        if self.next.outcome.is_some() {
            return;
        }
        self.emit(SagaChange::CancellationReceived { at: now });
        self.reconcile(now);
    }

    fn fulfil(&mut self, now: DateTime<Utc>) -> Result<(), SagaError> {
        if self.next.fulfilled {
            return Ok(());
        }
        let status = self.next.status();
        if status != SagaStatus::Confirmed {
            return Err(SagaError::NotApplicable {
                command: "OrderFulfilled",
                status,
            });
        }
        self.emit(SagaChange::FulfillmentReceived { at: now });
        self.reconcile(now);
        Ok(())
    }

    fn timeout(&mut self, now: DateTime<Utc>) {
        let max = self.policy.attempts();
        let due: Vec<SentRequest> = self
            .next
            .requests
            .iter()
            .filter(|r| r.deadline_at.is_some_and(|d| d <= now))
            .cloned()
            .collect();
        for request in due {
            let (step, message_id, attempt) =
                (request.step(), request.message_id(), request.attempt);
            if !step.is_compensation() && self.next.outcome.is_some() {
                // In flight when the order was cancelled or failed: stop asking; a late
                // answer is compensated.
                self.emit(SagaChange::RequestAbandoned {
                    step,
                    message_id,
                    attempts: attempt,
                });
            } else if attempt < max {
                self.send(request.command, attempt + 1, now);
            } else if matches!(step, Step::Reserve | Step::Authorize) {
                self.emit(SagaChange::RequestAbandoned {
                    step,
                    message_id,
                    attempts: attempt,
                });
                let who = if step == Step::Reserve {
                    "the inventory service did not answer the stock reservation"
                } else {
                    "the payment service did not answer the authorization"
                };
                self.reject(reason_text(who));
            } else {
                self.emit(SagaChange::SagaNeedsAttention {
                    step,
                    message_id,
                    reason: format!("{step} got no reply after {attempt} attempts"),
                });
            }
        }
        self.reconcile(now);
    }

    fn retry(&mut self, now: DateTime<Utc>) -> Result<(), SagaError> {
        let status = self.next.status();
        if status != SagaStatus::NeedsAttention {
            return Err(SagaError::NothingToRetry { status });
        }
        let parked: Vec<SentRequest> = self
            .next
            .requests
            .iter()
            .filter(|r| r.parked.is_some())
            .cloned()
            .collect();
        self.emit(SagaChange::SagaRetried { at: now });
        for request in parked {
            if request.answer.is_some() {
                // Answered with a failure (capture_failed): the same message id would only
                // fetch the participant's remembered failure, so ask anew.
                if let Some(command) = self.command(request.step()) {
                    self.send(command, 1, now);
                }
            } else {
                // Unanswered: the same message id, so a participant that did act dedupes it.
                self.send(request.command, 1, now);
            }
        }
        self.reconcile(now);
        Ok(())
    }

    /// Asks for whatever is missing: the next forward step while the order lives, or the
    /// compensation of everything held once it was cancelled or failed.
    fn reconcile(&mut self, now: DateTime<Utc>) {
        let data = &self.next;
        let mut wanted: Vec<Step> = Vec::new();
        let mut confirm = false;
        if data.outcome.is_none() {
            if !data.has_request(Step::Reserve) {
                wanted.push(Step::Reserve);
            }
            if matches!(data.stock, Stock::Held(_))
                && !data.fulfilled
                && !data.has_request(Step::Authorize)
            {
                wanted.push(Step::Authorize);
            }
            if matches!(data.payment, Payment::Authorized(_)) {
                confirm = data.verdict.is_none();
                if data.fulfilled && !data.has_request(Step::Capture) {
                    wanted.push(Step::Capture);
                }
            }
            if matches!(data.stock, Stock::Held(_))
                && data.fulfilled
                && !data.has_request(Step::Commit)
            {
                wanted.push(Step::Commit);
            }
        } else {
            if matches!(data.stock, Stock::Held(_)) && !data.has_request(Step::Release) {
                wanted.push(Step::Release);
            }
            if matches!(data.payment, Payment::Authorized(_)) && !data.has_request(Step::Void) {
                wanted.push(Step::Void);
            }
            if matches!(data.payment, Payment::Captured(_)) && !data.has_request(Step::Refund) {
                wanted.push(Step::Refund);
            }
        }
        if confirm {
            self.emit(SagaChange::OrderConfirmationDue);
        }
        for step in wanted {
            if let Some(command) = self.command(step) {
                self.send(command, 1, now);
            }
        }
    }

    /// A new command for `step` (next generation), when the saga holds what it needs.
    fn command(&self, step: Step) -> Option<ParticipantCommand> {
        let data = &self.next;
        let message_id = data.next_message_id(step);
        let (saga_id, order_id) = (data.saga_id, data.order.order_id);
        let amount_minor = data.order.total_minor;
        Some(match step {
            Step::Reserve => ReserveStock {
                message_id,
                saga_id,
                order_id,
                store_id: data.order.store_id,
                items: data.order.lines.clone(),
            }
            .into(),
            Step::Authorize => AuthorizePayment {
                message_id,
                saga_id,
                order_id,
                customer_id: data.order.customer_id.clone(),
                amount_minor,
                currency: data.order.currency,
            }
            .into(),
            Step::Release => ReleaseStock {
                message_id,
                saga_id,
                order_id,
                reservation_id: data.stock.reservation_id()?.clone(),
            }
            .into(),
            Step::Commit => CommitStock {
                message_id,
                saga_id,
                order_id,
                reservation_id: data.stock.reservation_id()?.clone(),
            }
            .into(),
            Step::Void => VoidPayment {
                message_id,
                saga_id,
                order_id,
                payment_id: data.payment.payment_id()?.clone(),
                amount_minor,
            }
            .into(),
            Step::Capture => CapturePayment {
                message_id,
                saga_id,
                order_id,
                payment_id: data.payment.payment_id()?.clone(),
                amount_minor,
            }
            .into(),
            Step::Refund => RefundPayment {
                message_id,
                saga_id,
                order_id,
                payment_id: data.payment.payment_id()?.clone(),
                amount_minor,
            }
            .into(),
        })
    }

    /// Announces a terminal status the saga reached, then stamps every change with the status
    /// and next deadline the decision leads to.
    fn finish(mut self) -> Vec<SagaEvent> {
        if self.changes.is_empty() {
            return Vec::new();
        }
        let status = self.next.status();
        if status.is_terminal() && self.next.announced != Some(status) {
            let end = match (&self.next.outcome, status) {
                (Some(Outcome::Failed { reason }), SagaStatus::Failed) => SagaChange::SagaFailed {
                    reason: reason.clone(),
                },
                (_, SagaStatus::Cancelled) => SagaChange::SagaCancelled,
                _ => SagaChange::SagaCompleted,
            };
            self.emit(end);
        }
        let status = self.next.status();
        let next_deadline_at = self.next.deadline();
        self.changes
            .into_iter()
            .map(|change| SagaEvent {
                change,
                status,
                next_deadline_at,
            })
            .collect()
    }
}

/// A valid order [`Reason`] from free text (a participant's words may be empty, long or hold
/// control characters).
fn reason_text(text: &str) -> Reason {
    let printable: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    let bounded: String = printable.trim().chars().take(Reason::MAX).collect();
    Reason::parse(bounded).unwrap_or_else(|_| {
        // Only reached for empty text; every caller passes a non-empty prefix.
        Reason::parse("the order could not be completed")
            .expect("a constant, short, printable text is a valid reason")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_double_per_attempt_up_to_the_cap() {
        let policy = SagaPolicy {
            step_timeout: Duration::seconds(10),
            max_attempts: 5,
            max_wait: Duration::seconds(60),
        };
        let waits: Vec<i64> = (1..=5).map(|a| policy.wait(a).num_seconds()).collect();
        assert_eq!(waits, [10, 20, 40, 60, 60]);
        assert_eq!(policy.wait(u32::MAX), Duration::seconds(60));
        assert_eq!(
            policy.deadline(DateTime::<Utc>::MAX_UTC, 1),
            DateTime::<Utc>::MAX_UTC
        );
    }

    #[test]
    fn the_processed_reply_ids_are_bounded() {
        let started = SagaChange::SagaStarted {
            saga_id: SagaId::from_uuid(uuid::Uuid::from_u128(1)),
            order_id: OrderId::from_uuid(uuid::Uuid::from_u128(1)),
            store_id: StoreId::from_uuid(uuid::Uuid::from_u128(2)),
            customer_id: CustomerId::parse("cust-1").unwrap(),
            currency: Currency::parse("EUR").unwrap(),
            total_minor: 900,
            lines: vec![],
            started_at: DateTime::<Utc>::MIN_UTC,
        };
        let mut data = SagaData::from_started(&started).unwrap();
        for n in 0..200 {
            data.apply(&SagaChange::StockReleased {
                reply_id: MessageId::from_uuid(uuid::Uuid::from_u128(1000 + n)),
                in_reply_to: MessageId::from_uuid(uuid::Uuid::from_u128(7)),
            });
        }
        assert_eq!(data.processed.len(), REMEMBERED_REPLIES);
        assert_eq!(
            data.processed.back(),
            Some(&MessageId::from_uuid(uuid::Uuid::from_u128(1199)))
        );
    }

    #[test]
    fn reasons_are_made_valid_from_any_text() {
        assert_eq!(reason_text("a\u{7}b").as_str(), "a b");
        assert_eq!(reason_text(&"x".repeat(900)).as_str().len(), Reason::MAX);
        assert_eq!(
            reason_text(" \n ").as_str(),
            "the order could not be completed"
        );
    }

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
