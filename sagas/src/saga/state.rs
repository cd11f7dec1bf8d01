//! The [`OrderSaga`] aggregate's state: what a started saga holds, its queries, and `apply`, which
//! only mutates (deciding lives in `decide`).
//!
//! The status is *derived* from what is held, what is awaited and how the saga must end, so it
//! can never disagree with the state. Applying never fails: an event of a saga that never
//! started cannot exist in a consistent log and is ignored.

use std::collections::VecDeque;

use chrono::{DateTime, Utc};
use order_domain::Reason;
use serde::{Deserialize, Serialize};

use super::command::OrderSnapshot;
use super::event::SagaChange;
use super::holdings::{Answer, OrderVerdict, Payment, SentRequest, Stock};
use super::status::SagaStatus;
use crate::messages::{
    CommandIdKey, MessageId, ParticipantCommand, PaymentId, ReplyKind, ReservationId, SagaId, Step,
};

/// How many reply message ids a saga remembers for duplicate detection. Older duplicates are
/// still recognised through the request they answer (see [`SentRequest::answer`]).
pub const REMEMBERED_REPLIES: usize = 64;

/// How the saga ends when it does not complete.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub(super) enum Outcome {
    Cancelled,
    Failed { reason: Reason },
}

/// State of a started saga.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct SagaData {
    pub(super) saga_id: SagaId,
    /// What the saga's command ids are derived from.
    pub(super) command_id_key: CommandIdKey,
    pub(super) order: OrderSnapshot,
    pub(super) started_at: DateTime<Utc>,
    pub(super) requests: Vec<SentRequest>,
    pub(super) stock: Stock,
    pub(super) payment: Payment,
    pub(super) outcome: Option<Outcome>,
    pub(super) fulfilled: bool,
    pub(super) verdict: Option<OrderVerdict>,
    /// The last terminal status announced by an event (`SagaCompleted`, ...), so that returning
    /// to it after compensating a late reply is not announced twice.
    pub(super) announced: Option<SagaStatus>,
    /// Recently processed reply message ids, oldest first.
    pub(super) processed: VecDeque<MessageId>,
}

/// The order saga. `Default` is "not started".
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderSaga {
    pub(super) data: Option<SagaData>,
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

    pub(super) fn apply_change(&mut self, change: &SagaChange) {
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
    pub(super) fn from_started(change: &SagaChange) -> Option<Self> {
        let SagaChange::SagaStarted {
            saga_id,
            order_id,
            store_id,
            customer_id,
            currency,
            total_minor,
            lines,
            started_at,
            command_id_key,
        } = change
        else {
            return None;
        };
        Some(Self {
            saga_id: *saga_id,
            command_id_key: command_id_key.unwrap_or(CommandIdKey::legacy(*saga_id)),
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
    pub(super) fn status(&self) -> SagaStatus {
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

    pub(super) fn deadline(&self) -> Option<DateTime<Utc>> {
        self.requests.iter().filter_map(|r| r.deadline_at).min()
    }

    pub(super) fn request(&self, message_id: MessageId) -> Option<&SentRequest> {
        self.requests.iter().find(|r| r.message_id() == message_id)
    }

    pub(super) fn request_mut(&mut self, message_id: MessageId) -> Option<&mut SentRequest> {
        self.requests
            .iter_mut()
            .find(|r| r.message_id() == message_id)
    }

    pub(super) fn has_request(&self, step: Step) -> bool {
        self.requests.iter().any(|r| r.step() == step)
    }

    /// The id of the next request of `step`: generation = how many were sent before, plus one.
    pub(super) fn next_message_id(&self, step: Step) -> MessageId {
        let sent = self.requests.iter().filter(|r| r.step() == step).count();
        let generation = u32::try_from(sent).map_or(u32::MAX, |n| n.saturating_add(1));
        MessageId::derive(self.command_id_key, step, generation)
    }

    pub(super) fn apply(&mut self, change: &SagaChange) {
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
        let (attempt, deadline_at, sent_at) = match change {
            SagaChange::StockReservationRequested {
                attempt,
                deadline_at,
                sent_at,
                ..
            }
            | SagaChange::PaymentAuthorizationRequested {
                attempt,
                deadline_at,
                sent_at,
                ..
            }
            | SagaChange::StockReleaseRequested {
                attempt,
                deadline_at,
                sent_at,
                ..
            }
            | SagaChange::PaymentVoidRequested {
                attempt,
                deadline_at,
                sent_at,
                ..
            }
            | SagaChange::PaymentCaptureRequested {
                attempt,
                deadline_at,
                sent_at,
                ..
            }
            | SagaChange::StockCommitRequested {
                attempt,
                deadline_at,
                sent_at,
                ..
            }
            | SagaChange::PaymentRefundRequested {
                attempt,
                deadline_at,
                sent_at,
                ..
            } => (*attempt, *deadline_at, *sent_at),
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
                first_sent_at: sent_at,
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

#[cfg(test)]
mod tests {
    use order_domain::{Currency, CustomerId, OrderId, StoreId};

    use super::*;

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
            command_id_key: None,
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
}
