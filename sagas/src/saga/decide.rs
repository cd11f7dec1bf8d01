//! Deciding: [`OrderSaga::decide`], one match over the commands, and the rules it applies.
//!
//! A `Draft` collects the changes of one decision and applies each to a copy of the state as it
//! goes, so every rule sees the effect of the previous ones. After the command's own rule, one
//! reconciling pass asks for exactly what is missing (the next forward step, or the compensation
//! of everything held once the order is cancelled or failed), and `Draft::finish` announces a
//! terminal status and stamps every change with the status and deadline it leads to.

use chrono::{DateTime, Utc};
use order_domain::Reason;

use super::command::{OrderSnapshot, SagaCommand};
use super::error::{ignored, IgnoredReason, SagaError};
use super::event::{reply_key, SagaChange, SagaEvent};
use super::holdings::{Payment, SentRequest, Stock};
use super::policy::SagaPolicy;
use super::state::{OrderSaga, Outcome, SagaData};
use super::status::SagaStatus;
use crate::messages::{
    AuthorizePayment, CapturePayment, CommandIdKey, CommitStock, ParticipantCommand, RefundPayment,
    ReleaseStock, Reply, ReserveStock, SagaId, Step, VoidPayment,
};

impl OrderSaga {
    /// Decides a command: the events it produces (none for a repeated or harmless command), or
    /// why it is refused. Pure: same history, command and policy give the same answer.
    pub fn decide(
        &self,
        command: &SagaCommand,
        policy: &SagaPolicy,
    ) -> Result<Vec<SagaEvent>, SagaError> {
        if let SagaCommand::Start {
            order,
            command_id_key,
            now,
        } = command
        {
            return Ok(self.decide_start(order, *command_id_key, *now, policy));
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
        command_id_key: CommandIdKey,
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
            command_id_key: Some(command_id_key),
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
}

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
        self.emit(SagaChange::requested(command, attempt, deadline_at, now));
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
        let expected = data.order.currency;
        if let Some(got) = reply.currency().filter(|got| *got != expected) {
            return Err(ignored(IgnoredReason::WrongCurrency { expected, got }));
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
    fn reasons_are_made_valid_from_any_text() {
        assert_eq!(reason_text("a\u{7}b").as_str(), "a b");
        assert_eq!(reason_text(&"x".repeat(900)).as_str().len(), Reason::MAX);
        assert_eq!(
            reason_text(" \n ").as_str(),
            "the order could not be completed"
        );
    }
}
