//! Given / when / then tests of the `OrderSaga`: every path of DESIGN §7 (happy path, out of
//! stock, declined, cancellations before, during and after each step, silent participants, late
//! replies, needs_attention and admin retry) and the reply checks (duplicates vs. wrong replies).
//!
//! Time: the saga starts at `t(0)`; the policy waits 10 s, doubling, capped at 30 s, 3 attempts.

use chrono::{DateTime, Duration, TimeZone, Utc};
use cqrs_es::test::TestFramework;
use cqrs_es::{Aggregate, DomainEvent};
use order_domain::{
    Currency, CustomerId, LineId, LineSnapshot, OrderChange, OrderId, ProductName, Quantity,
    Reason, Sku, StoreId,
};
use order_sagas::{
    AuthorizePayment, CapturePayment, CommandIdKey, CommitStock, IgnoredReason, MessageId,
    OrderSaga, OrderSnapshot, OrderVerdict, ParticipantCommand, PaymentAuthorized,
    PaymentCaptureFailed, PaymentCaptured, PaymentDeclined, PaymentId, PaymentRefunded,
    PaymentVoided, RefundPayment, ReleaseStock, Reply, ReservationId, ReserveStock, SagaChange,
    SagaCommand, SagaError, SagaEvent, SagaId, SagaPolicy, SagaStatus, SnapshotError, Step,
    StockCommitted, StockItem, StockRejected, StockReleased, StockReserved, UnavailableItem,
    VoidPayment,
};
use uuid::Uuid;

use SagaStatus as S;

// ---- fixtures ------------------------------------------------------------------------------

fn policy() -> SagaPolicy {
    SagaPolicy {
        step_timeout: Duration::seconds(10),
        max_attempts: 3,
        max_wait: Duration::seconds(30),
    }
}

fn saga() -> TestFramework<OrderSaga> {
    TestFramework::with(policy())
}

/// Seconds after the saga started.
fn t(secs: i64) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 22, 12, 0, 0).unwrap() + Duration::seconds(secs)
}

fn order_id() -> OrderId {
    OrderId::from_uuid(Uuid::from_u128(0xA11CE))
}
fn saga_id() -> SagaId {
    SagaId::for_order(order_id())
}
fn eur() -> Currency {
    Currency::parse("EUR").unwrap()
}
fn store_id() -> StoreId {
    StoreId::from_uuid(Uuid::from_u128(0x5707E))
}
fn customer() -> CustomerId {
    CustomerId::parse("cust-1").unwrap()
}
fn lines() -> Vec<StockItem> {
    vec![StockItem {
        sku: Sku::parse("TEA").unwrap(),
        quantity: Quantity::parse(2).unwrap(),
    }]
}
fn reason(s: &str) -> Reason {
    Reason::parse(s).unwrap()
}
fn reservation() -> ReservationId {
    ReservationId::new("res-1")
}
fn payment() -> PaymentId {
    PaymentId::new("pay-1")
}

const TOTAL: i64 = 900;

fn snapshot() -> OrderSnapshot {
    OrderSnapshot {
        order_id: order_id(),
        store_id: store_id(),
        customer_id: customer(),
        currency: eur(),
        total_minor: TOTAL,
        lines: lines(),
    }
}

/// The saga's secret (random in the service; fixed here so ids can be named).
fn key() -> CommandIdKey {
    CommandIdKey::from_uuid(Uuid::from_u128(0x5EC2_E700))
}

/// The id of the saga's `generation`-th command of `step`.
fn mid(step: Step, generation: u32) -> MessageId {
    MessageId::derive(key(), step, generation)
}

/// A participant's reply id.
fn rid(n: u128) -> MessageId {
    MessageId::from_uuid(Uuid::from_u128(0xBEEF_0000 + n))
}

// ---- participant commands ------------------------------------------------------------------

fn reserve() -> ParticipantCommand {
    ReserveStock {
        message_id: mid(Step::Reserve, 1),
        saga_id: saga_id(),
        order_id: order_id(),
        store_id: store_id(),
        items: lines(),
    }
    .into()
}
fn authorize() -> ParticipantCommand {
    AuthorizePayment {
        message_id: mid(Step::Authorize, 1),
        saga_id: saga_id(),
        order_id: order_id(),
        customer_id: customer(),
        amount_minor: TOTAL,
        currency: eur(),
    }
    .into()
}
fn release() -> ParticipantCommand {
    ReleaseStock {
        message_id: mid(Step::Release, 1),
        saga_id: saga_id(),
        order_id: order_id(),
        reservation_id: reservation(),
    }
    .into()
}
fn commit() -> ParticipantCommand {
    CommitStock {
        message_id: mid(Step::Commit, 1),
        saga_id: saga_id(),
        order_id: order_id(),
        reservation_id: reservation(),
    }
    .into()
}
fn void() -> ParticipantCommand {
    VoidPayment {
        message_id: mid(Step::Void, 1),
        saga_id: saga_id(),
        order_id: order_id(),
        payment_id: payment(),
        amount_minor: TOTAL,
    }
    .into()
}
fn capture(generation: u32) -> ParticipantCommand {
    CapturePayment {
        message_id: mid(Step::Capture, generation),
        saga_id: saga_id(),
        order_id: order_id(),
        payment_id: payment(),
        amount_minor: TOTAL,
    }
    .into()
}
fn refund() -> ParticipantCommand {
    RefundPayment {
        message_id: mid(Step::Refund, 1),
        saga_id: saga_id(),
        order_id: order_id(),
        payment_id: payment(),
        amount_minor: TOTAL,
    }
    .into()
}

/// `command` sent for the `attempt`-th time, timing out at `deadline`.
fn sent(command: ParticipantCommand, attempt: u32, deadline: DateTime<Utc>) -> SagaChange {
    // sent when the policy's wait for this attempt began
    let wait = policy().deadline(t(0), attempt) - t(0);
    SagaChange::requested(command, attempt, deadline, deadline - wait)
}

// ---- participant replies -------------------------------------------------------------------

fn reserved(n: u128) -> Reply {
    StockReserved {
        message_id: rid(n),
        saga_id: saga_id(),
        order_id: order_id(),
        in_reply_to: mid(Step::Reserve, 1),
        reservation_id: reservation(),
    }
    .into()
}
fn rejected(n: u128) -> Reply {
    StockRejected {
        message_id: rid(n),
        saga_id: saga_id(),
        order_id: order_id(),
        in_reply_to: mid(Step::Reserve, 1),
        reason: "out of stock".into(),
        unavailable: unavailable(),
    }
    .into()
}
fn unavailable() -> Vec<UnavailableItem> {
    vec![UnavailableItem {
        sku: "TEA".into(),
        requested: 2,
        available: 0,
    }]
}
fn released(n: u128) -> Reply {
    StockReleased {
        message_id: rid(n),
        saga_id: saga_id(),
        order_id: order_id(),
        in_reply_to: mid(Step::Release, 1),
    }
    .into()
}
fn committed(n: u128) -> Reply {
    StockCommitted {
        message_id: rid(n),
        saga_id: saga_id(),
        order_id: order_id(),
        in_reply_to: mid(Step::Commit, 1),
    }
    .into()
}
fn authorized(n: u128) -> Reply {
    PaymentAuthorized {
        message_id: rid(n),
        saga_id: saga_id(),
        order_id: order_id(),
        in_reply_to: mid(Step::Authorize, 1),
        payment_id: payment(),
        amount_minor: TOTAL,
        currency: eur(),
    }
    .into()
}
fn declined(n: u128) -> Reply {
    PaymentDeclined {
        message_id: rid(n),
        saga_id: saga_id(),
        order_id: order_id(),
        in_reply_to: mid(Step::Authorize, 1),
        reason: "insufficient funds".into(),
    }
    .into()
}
fn voided(n: u128) -> Reply {
    PaymentVoided {
        message_id: rid(n),
        saga_id: saga_id(),
        order_id: order_id(),
        in_reply_to: mid(Step::Void, 1),
        amount_minor: None,
    }
    .into()
}
fn captured(n: u128, generation: u32) -> Reply {
    PaymentCaptured {
        message_id: rid(n),
        saga_id: saga_id(),
        order_id: order_id(),
        in_reply_to: mid(Step::Capture, generation),
        amount_minor: TOTAL,
        currency: eur(),
    }
    .into()
}
fn capture_failed(n: u128) -> Reply {
    PaymentCaptureFailed {
        message_id: rid(n),
        saga_id: saga_id(),
        order_id: order_id(),
        in_reply_to: mid(Step::Capture, 1),
        reason: "card expired".into(),
    }
    .into()
}
fn refunded(n: u128) -> Reply {
    PaymentRefunded {
        message_id: rid(n),
        saga_id: saga_id(),
        order_id: order_id(),
        in_reply_to: mid(Step::Refund, 1),
        amount_minor: Some(TOTAL),
    }
    .into()
}

// ---- the events the saga records for those replies -----------------------------------------

fn stock_reserved(n: u128) -> SagaChange {
    SagaChange::StockReserved {
        reply_id: rid(n),
        in_reply_to: mid(Step::Reserve, 1),
        reservation_id: reservation(),
    }
}
fn stock_rejected(n: u128) -> SagaChange {
    SagaChange::StockRejected {
        reply_id: rid(n),
        in_reply_to: mid(Step::Reserve, 1),
        reason: "out of stock".into(),
        unavailable: unavailable(),
    }
}
fn stock_released(n: u128) -> SagaChange {
    SagaChange::StockReleased {
        reply_id: rid(n),
        in_reply_to: mid(Step::Release, 1),
    }
}
fn stock_committed(n: u128) -> SagaChange {
    SagaChange::StockCommitted {
        reply_id: rid(n),
        in_reply_to: mid(Step::Commit, 1),
    }
}
fn payment_authorized(n: u128) -> SagaChange {
    SagaChange::PaymentAuthorized {
        reply_id: rid(n),
        in_reply_to: mid(Step::Authorize, 1),
        payment_id: payment(),
    }
}
fn payment_declined(n: u128) -> SagaChange {
    SagaChange::PaymentDeclined {
        reply_id: rid(n),
        in_reply_to: mid(Step::Authorize, 1),
        reason: "insufficient funds".into(),
    }
}
fn payment_voided(n: u128) -> SagaChange {
    SagaChange::PaymentVoided {
        reply_id: rid(n),
        in_reply_to: mid(Step::Void, 1),
    }
}
fn payment_captured(n: u128, generation: u32) -> SagaChange {
    SagaChange::PaymentCaptured {
        reply_id: rid(n),
        in_reply_to: mid(Step::Capture, generation),
    }
}
fn payment_capture_failed(n: u128) -> SagaChange {
    SagaChange::PaymentCaptureFailed {
        reply_id: rid(n),
        in_reply_to: mid(Step::Capture, 1),
        reason: "card expired".into(),
    }
}
fn payment_refunded(n: u128) -> SagaChange {
    SagaChange::PaymentRefunded {
        reply_id: rid(n),
        in_reply_to: mid(Step::Refund, 1),
    }
}

// ---- commands ------------------------------------------------------------------------------

fn start(at: i64) -> SagaCommand {
    SagaCommand::Start {
        order: snapshot(),
        command_id_key: key(),
        now: t(at),
    }
}
fn reply(reply: Reply, at: i64) -> SagaCommand {
    SagaCommand::HandleReply { reply, now: t(at) }
}
fn cancelled(at: i64) -> SagaCommand {
    SagaCommand::OrderCancelled { now: t(at) }
}
fn fulfilled(at: i64) -> SagaCommand {
    SagaCommand::OrderFulfilled { now: t(at) }
}
fn timeout(at: i64) -> SagaCommand {
    SagaCommand::Timeout { now: t(at) }
}
fn retry(at: i64) -> SagaCommand {
    SagaCommand::Retry { now: t(at) }
}

// ---- histories (given) and expectations (then) ---------------------------------------------

/// Stored events for `changes`, stamped as the saga itself would (stamps do not affect `apply`).
fn history(changes: Vec<SagaChange>) -> Vec<SagaEvent> {
    let mut state = OrderSaga::default();
    changes
        .into_iter()
        .map(|change| {
            state.apply(SagaEvent {
                change: change.clone(),
                status: S::ReservingStock,
                next_deadline_at: None,
            });
            SagaEvent {
                change,
                status: state.status().unwrap(),
                next_deadline_at: state.deadline(),
            }
        })
        .collect()
}

/// The events one decision produces: each stamped with the status and deadline it leads to.
fn then(changes: Vec<SagaChange>, status: SagaStatus, deadline: Option<i64>) -> Vec<SagaEvent> {
    changes
        .into_iter()
        .map(|change| SagaEvent {
            change,
            status,
            next_deadline_at: deadline.map(t),
        })
        .collect()
}

fn cat(parts: &[Vec<SagaChange>]) -> Vec<SagaChange> {
    parts.concat()
}

fn saga_started() -> SagaChange {
    SagaChange::SagaStarted {
        saga_id: saga_id(),
        order_id: order_id(),
        store_id: store_id(),
        customer_id: customer(),
        currency: eur(),
        total_minor: TOTAL,
        lines: lines(),
        started_at: t(0),
        command_id_key: Some(key()),
    }
}

/// Started at t0: reservation in flight until t10.
fn started() -> Vec<SagaChange> {
    vec![saga_started(), sent(reserve(), 1, t(10))]
}
/// Reserved at t2: authorization in flight until t12.
fn stock_held() -> Vec<SagaChange> {
    cat(&[
        started(),
        vec![stock_reserved(1), sent(authorize(), 1, t(12))],
    ])
}
/// Authorized at t4: confirmed.
fn confirmed() -> Vec<SagaChange> {
    cat(&[
        stock_held(),
        vec![payment_authorized(2), SagaChange::OrderConfirmationDue],
    ])
}
/// Fulfilled at t100: capture and commit in flight until t110.
fn capturing() -> Vec<SagaChange> {
    cat(&[
        confirmed(),
        vec![
            SagaChange::FulfillmentReceived { at: t(100) },
            sent(capture(1), 1, t(110)),
            sent(commit(), 1, t(110)),
        ],
    ])
}
/// Captured at t101, committed at t102.
fn completed() -> Vec<SagaChange> {
    cat(&[
        capturing(),
        vec![
            payment_captured(3, 1),
            stock_committed(4),
            SagaChange::SagaCompleted,
        ],
    ])
}
/// Confirmed, then cancelled at t50: release and void in flight until t60.
fn cancelling_confirmed() -> Vec<SagaChange> {
    cat(&[
        confirmed(),
        vec![
            SagaChange::CancellationReceived { at: t(50) },
            sent(release(), 1, t(60)),
            sent(void(), 1, t(60)),
        ],
    ])
}

fn out_of_stock_reason() -> Reason {
    reason("stock could not be reserved: out of stock")
}
fn declined_reason() -> Reason {
    reason("payment declined: insufficient funds")
}
fn silent_inventory_reason() -> Reason {
    reason("the inventory service did not answer the stock reservation")
}
fn silent_payment_reason() -> Reason {
    reason("the payment service did not answer the authorization")
}

fn ignored(reason: IgnoredReason) -> SagaError {
    SagaError::ReplyIgnored { reason }
}

/// Runs commands through `decide` and `apply`, keeping the log: for scenarios longer than one
/// given/when/then.
#[derive(Default)]
struct Run {
    saga: OrderSaga,
    log: Vec<SagaEvent>,
}

impl Run {
    fn send(&mut self, command: &SagaCommand) -> Result<Vec<SagaEvent>, SagaError> {
        let events = self.saga.decide(command, &policy())?;
        for event in &events {
            self.saga.apply(event.clone());
        }
        self.log.extend(events.iter().cloned());
        Ok(events)
    }

    fn ok(&mut self, command: &SagaCommand) -> Vec<SagaEvent> {
        self.send(command).expect("command accepted")
    }

    fn status(&self) -> SagaStatus {
        self.saga.status().expect("started")
    }

    /// Every participant command the log asks the relay to publish, re-sends included.
    fn published(&self) -> Vec<ParticipantCommand> {
        self.log
            .iter()
            .filter_map(|e| e.change.participant_command())
            .collect()
    }

    fn event_types(&self) -> Vec<String> {
        self.log.iter().map(DomainEvent::event_type).collect()
    }
}

// ---- happy path ----------------------------------------------------------------------------

#[test]
fn a_placed_order_starts_the_saga_and_requests_the_stock_reservation() {
    saga()
        .given_no_previous_events()
        .when(start(0))
        .then_expect_events(then(started(), S::ReservingStock, Some(10)));
}

#[test]
fn starting_a_started_saga_again_changes_nothing() {
    saga()
        .given(history(started()))
        .when(start(5))
        .then_expect_events(vec![]);
}

#[test]
fn reserved_stock_requests_the_payment_authorization() {
    saga()
        .given(history(started()))
        .when(reply(reserved(1), 2))
        .then_expect_events(then(
            vec![stock_reserved(1), sent(authorize(), 1, t(12))],
            S::AuthorizingPayment,
            Some(12),
        ));
}

#[test]
fn an_authorized_payment_makes_the_order_due_for_confirmation() {
    saga()
        .given(history(stock_held()))
        .when(reply(authorized(2), 4))
        .then_expect_events(then(
            vec![payment_authorized(2), SagaChange::OrderConfirmationDue],
            S::Confirmed,
            None,
        ));
}

#[test]
fn fulfilment_requests_the_capture_and_the_commit() {
    saga()
        .given(history(confirmed()))
        .when(fulfilled(100))
        .then_expect_events(then(
            vec![
                SagaChange::FulfillmentReceived { at: t(100) },
                sent(capture(1), 1, t(110)),
                sent(commit(), 1, t(110)),
            ],
            S::Capturing,
            Some(110),
        ));
}

#[test]
fn the_capture_alone_does_not_complete_the_saga() {
    saga()
        .given(history(capturing()))
        .when(reply(captured(3, 1), 101))
        .then_expect_events(then(vec![payment_captured(3, 1)], S::Capturing, Some(110)));
}

#[test]
fn capture_and_commit_complete_the_saga() {
    saga()
        .given(history(cat(&[capturing(), vec![payment_captured(3, 1)]])))
        .when(reply(committed(4), 102))
        .then_expect_events(then(
            vec![stock_committed(4), SagaChange::SagaCompleted],
            S::Completed,
            None,
        ));
}

#[test]
fn the_happy_path_runs_from_placed_to_completed() {
    let mut run = Run::default();
    run.ok(&start(0));
    assert_eq!(run.status(), S::ReservingStock);
    assert_eq!(run.saga.deadline(), Some(t(10)));
    assert_eq!(run.saga.pending_commands(), vec![&reserve()]);
    run.ok(&reply(reserved(1), 2));
    assert_eq!(run.status(), S::AuthorizingPayment);
    assert_eq!(run.saga.reservation_id(), Some(&reservation()));
    run.ok(&reply(authorized(2), 4));
    assert_eq!(run.status(), S::Confirmed);
    assert_eq!(run.saga.verdict(), Some(&OrderVerdict::Confirm));
    assert_eq!(run.saga.payment_id(), Some(&payment()));
    assert_eq!(run.saga.deadline(), None);
    assert!(run.saga.pending_commands().is_empty());
    run.ok(&fulfilled(100));
    assert_eq!(run.status(), S::Capturing);
    assert_eq!(run.saga.pending_commands(), vec![&capture(1), &commit()]);
    run.ok(&reply(captured(3, 1), 101));
    run.ok(&reply(committed(4), 102));
    assert_eq!(run.status(), S::Completed);
    assert_eq!(run.saga.deadline(), None);
    assert_eq!(run.saga.attempts(Step::Reserve), Some(1));
    assert_eq!(
        run.event_types(),
        [
            "SagaStarted",
            "StockReservationRequested",
            "StockReserved",
            "PaymentAuthorizationRequested",
            "PaymentAuthorized",
            "OrderConfirmationDue",
            "FulfillmentReceived",
            "PaymentCaptureRequested",
            "StockCommitRequested",
            "PaymentCaptured",
            "StockCommitted",
            "SagaCompleted",
        ]
    );
    // nothing left to do: late timeouts and repeated fulfilment are harmless
    assert_eq!(run.ok(&timeout(10_000)), vec![]);
    assert_eq!(run.ok(&fulfilled(10_001)), vec![]);
}

// ---- failures ------------------------------------------------------------------------------

#[test]
fn out_of_stock_fails_the_saga_and_rejects_the_order() {
    saga()
        .given(history(started()))
        .when(reply(rejected(1), 2))
        .then_expect_events(then(
            vec![
                stock_rejected(1),
                SagaChange::OrderRejectionDue {
                    reason: out_of_stock_reason(),
                },
                SagaChange::SagaFailed {
                    reason: out_of_stock_reason(),
                },
            ],
            S::Failed,
            None,
        ));
}

#[test]
fn out_of_stock_never_sends_a_payment_command() {
    let mut run = Run::default();
    run.ok(&start(0));
    run.ok(&reply(rejected(1), 2));
    // nothing the saga is told afterwards makes it ask for money
    for command in [timeout(1_000), cancelled(1_001), timeout(2_000)] {
        run.ok(&command);
    }
    assert_eq!(
        run.saga.decide(&fulfilled(1_002), &policy()),
        Err(SagaError::NotApplicable {
            command: "OrderFulfilled",
            status: S::Failed
        })
    );
    assert_eq!(run.published(), vec![reserve()]);
    assert!(run
        .published()
        .iter()
        .all(|c| !c.subject().starts_with("payment.")));
    assert_eq!(
        run.saga.verdict(),
        Some(&OrderVerdict::Reject {
            reason: out_of_stock_reason()
        })
    );
}

#[test]
fn a_declined_payment_releases_the_stock_and_rejects_the_order() {
    saga()
        .given(history(stock_held()))
        .when(reply(declined(2), 4))
        .then_expect_events(then(
            vec![
                payment_declined(2),
                SagaChange::OrderRejectionDue {
                    reason: declined_reason(),
                },
                sent(release(), 1, t(14)),
            ],
            S::Compensating,
            Some(14),
        ));
}

#[test]
fn after_a_decline_the_released_stock_ends_the_saga_as_failed() {
    saga()
        .given(history(cat(&[
            stock_held(),
            vec![
                payment_declined(2),
                SagaChange::OrderRejectionDue {
                    reason: declined_reason(),
                },
                sent(release(), 1, t(14)),
            ],
        ])))
        .when(reply(released(3), 5))
        .then_expect_events(then(
            vec![
                stock_released(3),
                SagaChange::SagaFailed {
                    reason: declined_reason(),
                },
            ],
            S::Failed,
            None,
        ));
}

// ---- cancellation --------------------------------------------------------------------------

#[test]
fn cancelling_a_confirmed_order_releases_the_stock_and_voids_the_payment() {
    saga()
        .given(history(confirmed()))
        .when(cancelled(50))
        .then_expect_events(then(
            vec![
                SagaChange::CancellationReceived { at: t(50) },
                sent(release(), 1, t(60)),
                sent(void(), 1, t(60)),
            ],
            S::Compensating,
            Some(60),
        ));
}

#[test]
fn a_cancelled_saga_ends_once_every_compensation_is_acknowledged() {
    saga()
        .given(history(cancelling_confirmed()))
        .when(reply(released(3), 51))
        .then_expect_events(then(vec![stock_released(3)], S::Compensating, Some(60)));
    saga()
        .given(history(cat(&[
            cancelling_confirmed(),
            vec![stock_released(3)],
        ])))
        .when(reply(voided(4), 52))
        .then_expect_events(then(
            vec![payment_voided(4), SagaChange::SagaCancelled],
            S::Cancelled,
            None,
        ));
}

#[test]
fn cancelling_twice_changes_nothing() {
    saga()
        .given(history(cancelling_confirmed()))
        .when(cancelled(55))
        .then_expect_events(vec![]);
}

#[test]
fn cancelling_after_capture_refunds_the_payment() {
    saga()
        .given(history(completed()))
        .when(cancelled(200))
        .then_expect_events(then(
            vec![
                SagaChange::CancellationReceived { at: t(200) },
                sent(refund(), 1, t(210)),
            ],
            S::Compensating,
            Some(210),
        ));
    saga()
        .given(history(cat(&[
            completed(),
            vec![
                SagaChange::CancellationReceived { at: t(200) },
                sent(refund(), 1, t(210)),
            ],
        ])))
        .when(reply(refunded(5), 201))
        .then_expect_events(then(
            vec![payment_refunded(5), SagaChange::SagaCancelled],
            S::Cancelled,
            None,
        ));
}

#[test]
fn cancelling_while_the_reservation_is_in_flight_waits_for_its_answer() {
    saga()
        .given(history(started()))
        .when(cancelled(5))
        .then_expect_events(then(
            vec![SagaChange::CancellationReceived { at: t(5) }],
            S::Compensating,
            Some(10),
        ));
}

fn cancelled_while_reserving() -> Vec<SagaChange> {
    cat(&[
        started(),
        vec![SagaChange::CancellationReceived { at: t(5) }],
    ])
}

#[test]
fn a_reservation_arriving_after_the_cancel_is_released() {
    saga()
        .given(history(cancelled_while_reserving()))
        .when(reply(reserved(1), 6))
        .then_expect_events(then(
            vec![stock_reserved(1), sent(release(), 1, t(16))],
            S::Compensating,
            Some(16),
        ));
    saga()
        .given(history(cat(&[
            cancelled_while_reserving(),
            vec![stock_reserved(1), sent(release(), 1, t(16))],
        ])))
        .when(reply(released(2), 7))
        .then_expect_events(then(
            vec![stock_released(2), SagaChange::SagaCancelled],
            S::Cancelled,
            None,
        ));
}

#[test]
fn a_rejection_arriving_after_the_cancel_ends_the_saga_without_rejecting_the_order() {
    saga()
        .given(history(cancelled_while_reserving()))
        .when(reply(rejected(1), 6))
        .then_expect_events(then(
            vec![stock_rejected(1), SagaChange::SagaCancelled],
            S::Cancelled,
            None,
        ));
}

#[test]
fn a_reservation_in_flight_at_cancel_is_abandoned_at_its_deadline_not_re_sent() {
    saga()
        .given(history(cancelled_while_reserving()))
        .when(timeout(10))
        .then_expect_events(then(
            vec![
                SagaChange::RequestAbandoned {
                    step: Step::Reserve,
                    message_id: mid(Step::Reserve, 1),
                    attempts: 1,
                },
                SagaChange::SagaCancelled,
            ],
            S::Cancelled,
            None,
        ));
}

#[test]
fn cancelling_while_the_authorization_is_in_flight_releases_the_stock_at_once() {
    saga()
        .given(history(stock_held()))
        .when(cancelled(5))
        .then_expect_events(then(
            vec![
                SagaChange::CancellationReceived { at: t(5) },
                sent(release(), 1, t(15)),
            ],
            // the authorization is still awaited (t12), the release until t15
            S::Compensating,
            Some(12),
        ));
}

#[test]
fn an_authorization_arriving_after_the_cancel_is_voided_and_never_confirms_the_order() {
    let given = cat(&[
        stock_held(),
        vec![
            SagaChange::CancellationReceived { at: t(5) },
            sent(release(), 1, t(15)),
        ],
    ]);
    saga()
        .given(history(given.clone()))
        .when(reply(authorized(2), 7))
        .then_expect_events(then(
            vec![payment_authorized(2), sent(void(), 1, t(17))],
            S::Compensating,
            Some(15),
        ));
    saga()
        .given(history(cat(&[
            given,
            vec![
                payment_authorized(2),
                sent(void(), 1, t(17)),
                stock_released(3),
            ],
        ])))
        .when(reply(voided(4), 9))
        .then_expect_events(then(
            vec![payment_voided(4), SagaChange::SagaCancelled],
            S::Cancelled,
            None,
        ));
}

// ---- silent participants -------------------------------------------------------------------

#[test]
fn a_silent_inventory_gets_the_same_reservation_again_with_growing_deadlines() {
    saga()
        .given(history(started()))
        .when(timeout(10))
        .then_expect_events(then(
            vec![sent(reserve(), 2, t(30))],
            S::ReservingStock,
            Some(30),
        ));
    // third attempt: 40 s would be the double, the cap is 30 s
    saga()
        .given(history(cat(&[started(), vec![sent(reserve(), 2, t(30))]])))
        .when(timeout(30))
        .then_expect_events(then(
            vec![sent(reserve(), 3, t(60))],
            S::ReservingStock,
            Some(60),
        ));
}

#[test]
fn a_timeout_before_the_deadline_changes_nothing() {
    saga()
        .given(history(started()))
        .when(timeout(9))
        .then_expect_events(vec![]);
}

fn reservation_given_up() -> Vec<SagaChange> {
    cat(&[
        started(),
        vec![sent(reserve(), 2, t(30)), sent(reserve(), 3, t(60))],
        vec![
            SagaChange::RequestAbandoned {
                step: Step::Reserve,
                message_id: mid(Step::Reserve, 1),
                attempts: 3,
            },
            SagaChange::OrderRejectionDue {
                reason: silent_inventory_reason(),
            },
            SagaChange::SagaFailed {
                reason: silent_inventory_reason(),
            },
        ],
    ])
}

#[test]
fn a_reservation_unanswered_after_the_last_attempt_fails_the_order() {
    saga()
        .given(history(cat(&[
            started(),
            vec![sent(reserve(), 2, t(30)), sent(reserve(), 3, t(60))],
        ])))
        .when(timeout(60))
        .then_expect_events(then(reservation_given_up()[4..].to_vec(), S::Failed, None));
}

#[test]
fn a_reservation_arriving_after_the_saga_gave_up_is_released() {
    saga()
        .given(history(reservation_given_up()))
        .when(reply(reserved(1), 70))
        .then_expect_events(then(
            vec![stock_reserved(1), sent(release(), 1, t(80))],
            S::Compensating,
            Some(80),
        ));
    // back to failed, without announcing the failure twice
    saga()
        .given(history(cat(&[
            reservation_given_up(),
            vec![stock_reserved(1), sent(release(), 1, t(80))],
        ])))
        .when(reply(released(2), 71))
        .then_expect_events(then(vec![stock_released(2)], S::Failed, None));
}

fn authorization_re_sent() -> Vec<SagaChange> {
    cat(&[
        stock_held(),
        vec![sent(authorize(), 2, t(32)), sent(authorize(), 3, t(62))],
    ])
}

fn authorization_given_up() -> Vec<SagaChange> {
    cat(&[
        authorization_re_sent(),
        vec![
            SagaChange::RequestAbandoned {
                step: Step::Authorize,
                message_id: mid(Step::Authorize, 1),
                attempts: 3,
            },
            SagaChange::OrderRejectionDue {
                reason: silent_payment_reason(),
            },
            sent(release(), 1, t(72)),
        ],
    ])
}

#[test]
fn an_authorization_unanswered_after_the_last_attempt_releases_the_stock_and_fails_the_order() {
    saga()
        .given(history(authorization_re_sent()))
        .when(timeout(62))
        .then_expect_events(then(
            authorization_given_up()[6..].to_vec(),
            S::Compensating,
            Some(72),
        ));
    saga()
        .given(history(authorization_given_up()))
        .when(reply(released(3), 63))
        .then_expect_events(then(
            vec![
                stock_released(3),
                SagaChange::SagaFailed {
                    reason: silent_payment_reason(),
                },
            ],
            S::Failed,
            None,
        ));
}

#[test]
fn an_authorization_arriving_after_compensation_is_voided() {
    let failed = cat(&[
        authorization_given_up(),
        vec![
            stock_released(3),
            SagaChange::SagaFailed {
                reason: silent_payment_reason(),
            },
        ],
    ]);
    saga()
        .given(history(failed.clone()))
        .when(reply(authorized(4), 100))
        .then_expect_events(then(
            vec![payment_authorized(4), sent(void(), 1, t(110))],
            S::Compensating,
            Some(110),
        ));
    saga()
        .given(history(cat(&[
            failed,
            vec![payment_authorized(4), sent(void(), 1, t(110))],
        ])))
        .when(reply(voided(5), 101))
        .then_expect_events(then(vec![payment_voided(5)], S::Failed, None));
}

#[test]
fn a_silent_participant_gets_one_message_id_until_the_saga_gives_up() {
    let mut run = Run::default();
    run.ok(&start(0));
    run.ok(&reply(reserved(1), 2));
    for at in [12, 32, 62] {
        run.ok(&timeout(at));
    }
    let authorizations: Vec<_> = run
        .published()
        .into_iter()
        .filter(|c| c.step() == Step::Authorize)
        .collect();
    assert_eq!(authorizations, vec![authorize(); 3]);
    assert_eq!(run.status(), S::Compensating);
    assert_eq!(
        run.saga.verdict(),
        Some(&OrderVerdict::Reject {
            reason: silent_payment_reason()
        })
    );
    // counter-check: an authorization answered in time is not re-sent
    let mut answered = Run::default();
    answered.ok(&start(0));
    answered.ok(&reply(reserved(1), 2));
    answered.ok(&reply(authorized(2), 4));
    assert_eq!(answered.ok(&timeout(12)), vec![]);
}

// ---- needs attention and admin retry -------------------------------------------------------

fn capture_failed_history() -> Vec<SagaChange> {
    cat(&[
        capturing(),
        vec![
            payment_capture_failed(3),
            SagaChange::SagaNeedsAttention {
                step: Step::Capture,
                message_id: mid(Step::Capture, 1),
                reason: "capture failed: card expired".into(),
            },
        ],
    ])
}

#[test]
fn a_failed_capture_needs_attention() {
    saga()
        .given(history(capturing()))
        .when(reply(capture_failed(3), 101))
        .then_expect_events(then(
            capture_failed_history()[capturing().len()..].to_vec(),
            S::NeedsAttention,
            // the commit is still awaited
            Some(110),
        ));
}

#[test]
fn an_admin_retry_after_a_failed_capture_asks_for_a_new_capture() {
    let parked = cat(&[capture_failed_history(), vec![stock_committed(4)]]);
    saga()
        .given(history(parked.clone()))
        .when(retry(300))
        .then_expect_events(then(
            vec![
                SagaChange::SagaRetried { at: t(300) },
                sent(capture(2), 1, t(310)),
            ],
            S::Capturing,
            Some(310),
        ));
    saga()
        .given(history(cat(&[
            parked,
            vec![
                SagaChange::SagaRetried { at: t(300) },
                sent(capture(2), 1, t(310)),
            ],
        ])))
        .when(reply(captured(5, 2), 301))
        .then_expect_events(then(
            vec![payment_captured(5, 2), SagaChange::SagaCompleted],
            S::Completed,
            None,
        ));
}

fn release_re_sent() -> Vec<SagaChange> {
    cat(&[
        cancelling_confirmed(),
        vec![
            payment_voided(4),
            sent(release(), 2, t(80)),
            sent(release(), 3, t(110)),
        ],
    ])
}

fn release_parked() -> Vec<SagaChange> {
    cat(&[
        release_re_sent(),
        vec![SagaChange::SagaNeedsAttention {
            step: Step::Release,
            message_id: mid(Step::Release, 1),
            reason: "release got no reply after 3 attempts".into(),
        }],
    ])
}

#[test]
fn a_compensation_that_keeps_timing_out_needs_attention() {
    saga()
        .given(history(cat(&[
            cancelling_confirmed(),
            vec![payment_voided(4)],
        ])))
        .when(timeout(60))
        .then_expect_events(then(
            vec![sent(release(), 2, t(80))],
            S::Compensating,
            Some(80),
        ));
    saga()
        .given(history(release_re_sent()))
        .when(timeout(110))
        .then_expect_events(then(
            release_parked()[release_re_sent().len()..].to_vec(),
            S::NeedsAttention,
            None,
        ));
}

#[test]
fn an_admin_retry_re_sends_the_parked_compensation_with_the_same_message_id() {
    saga()
        .given(history(release_parked()))
        .when(retry(500))
        .then_expect_events(then(
            vec![
                SagaChange::SagaRetried { at: t(500) },
                // attempts reset: the first wait again
                sent(release(), 1, t(510)),
            ],
            S::Compensating,
            Some(510),
        ));
    saga()
        .given(history(cat(&[
            release_parked(),
            vec![
                SagaChange::SagaRetried { at: t(500) },
                sent(release(), 1, t(510)),
            ],
        ])))
        .when(reply(released(5), 505))
        .then_expect_events(then(
            vec![stock_released(5), SagaChange::SagaCancelled],
            S::Cancelled,
            None,
        ));
}

#[test]
fn a_late_answer_to_a_parked_compensation_resolves_it() {
    saga()
        .given(history(release_parked()))
        .when(reply(released(5), 400))
        .then_expect_events(then(
            vec![stock_released(5), SagaChange::SagaCancelled],
            S::Cancelled,
            None,
        ));
}

#[test]
fn a_parked_saga_stays_parked_and_says_why() {
    let mut run = Run::default();
    for change in release_parked() {
        run.saga.apply(SagaEvent {
            change,
            status: S::ReservingStock,
            next_deadline_at: None,
        });
    }
    assert_eq!(run.status(), S::NeedsAttention);
    assert_eq!(
        run.saga.attention(),
        vec![(Step::Release, "release got no reply after 3 attempts")]
    );
    assert_eq!(run.saga.pending_commands(), vec![&release()]);
    assert_eq!(run.saga.attempts(Step::Release), Some(3));
    // no deadline: the deadline worker leaves it to the admin
    assert_eq!(run.saga.deadline(), None);
    assert_eq!(run.ok(&timeout(100_000)), vec![]);
}

#[test]
fn a_capture_and_commit_nobody_answers_need_attention() {
    let re_sent = cat(&[
        capturing(),
        vec![
            sent(capture(1), 2, t(130)),
            sent(commit(), 2, t(130)),
            sent(capture(1), 3, t(160)),
            sent(commit(), 3, t(160)),
        ],
    ]);
    saga()
        .given(history(re_sent))
        .when(timeout(160))
        .then_expect_events(then(
            vec![
                SagaChange::SagaNeedsAttention {
                    step: Step::Capture,
                    message_id: mid(Step::Capture, 1),
                    reason: "capture got no reply after 3 attempts".into(),
                },
                SagaChange::SagaNeedsAttention {
                    step: Step::Commit,
                    message_id: mid(Step::Commit, 1),
                    reason: "commit got no reply after 3 attempts".into(),
                },
            ],
            S::NeedsAttention,
            None,
        ));
}

#[test]
fn retrying_a_saga_that_does_not_need_attention_is_refused() {
    saga()
        .given(history(confirmed()))
        .when(retry(60))
        .then_expect_error(SagaError::NothingToRetry {
            status: S::Confirmed,
        });
}

// ---- duplicates ----------------------------------------------------------------------------

#[test]
fn a_reply_delivered_again_yields_no_events() {
    saga()
        .given(history(stock_held()))
        .when(reply(reserved(1), 3))
        .then_expect_events(vec![]);
}

#[test]
fn the_same_answer_under_a_new_message_id_yields_no_events() {
    // a participant that got the re-sent command answers it again, with a new message id
    saga()
        .given(history(stock_held()))
        .when(reply(reserved(99), 3))
        .then_expect_events(vec![]);
}

#[test]
fn a_reply_under_an_already_processed_message_id_is_a_re_delivery() {
    // The message id is the dedupe key (as `Nats-Msg-Id` is for JetStream): a second message
    // under it is the first one again, whatever its body.
    let Reply::StockReserved(mut again) = reserved(1) else {
        unreachable!()
    };
    again.reservation_id = ReservationId::new("res-2");
    saga()
        .given(history(stock_held()))
        .when(reply(again.clone().into(), 3))
        .then_expect_events(vec![]);
    // counter-test: under a new message id the same body contradicts the first answer
    again.message_id = rid(50);
    saga()
        .given(history(stock_held()))
        .when(reply(again.into(), 3))
        .then_expect_error(ignored(IgnoredReason::AlreadySettled {
            step: Step::Reserve,
            answer: order_sagas::ReplyKind::StockReserved,
        }));
}

#[test]
fn every_reply_delivered_three_times_yields_its_events_once() {
    let mut run = Run::default();
    run.ok(&start(0));
    let replies = [
        (reserved(1), 2),
        (authorized(2), 4),
        (captured(3, 1), 101),
        (committed(4), 102),
    ];
    for (i, (r, at)) in replies.into_iter().enumerate() {
        if i == 2 {
            run.ok(&fulfilled(100));
        }
        let first = run.ok(&reply(r.clone(), at));
        assert!(!first.is_empty(), "{}", r.subject());
        assert_eq!(run.ok(&reply(r.clone(), at + 1)), vec![], "{}", r.subject());
        assert_eq!(run.ok(&reply(r.clone(), at + 2)), vec![], "{}", r.subject());
    }
    let mut once = Run::default();
    once.ok(&start(0));
    once.ok(&reply(reserved(1), 2));
    once.ok(&reply(authorized(2), 4));
    once.ok(&fulfilled(100));
    once.ok(&reply(captured(3, 1), 101));
    once.ok(&reply(committed(4), 102));
    assert_eq!(run.log, once.log);
    assert_eq!(run.status(), S::Completed);

    // the compensating replies too
    let mut run = Run::default();
    run.ok(&start(0));
    run.ok(&reply(reserved(1), 2));
    run.ok(&reply(authorized(2), 4));
    run.ok(&cancelled(50));
    for (r, at) in [(released(3), 51), (voided(4), 52)] {
        assert!(!run.ok(&reply(r.clone(), at)).is_empty());
        assert_eq!(run.ok(&reply(r.clone(), at)), vec![]);
        assert_eq!(run.ok(&reply(r, at)), vec![]);
    }
    assert_eq!(run.status(), S::Cancelled);
    let cancelled_events = run
        .event_types()
        .iter()
        .filter(|t| *t == "SagaCancelled")
        .count();
    assert_eq!(cancelled_events, 1);
}

#[test]
fn failure_replies_delivered_three_times_reject_the_order_once() {
    for failure in [rejected(1), declined(2)] {
        let mut run = Run::default();
        run.ok(&start(0));
        if failure.kind() == order_sagas::ReplyKind::PaymentDeclined {
            run.ok(&reply(reserved(1), 2));
        }
        for _ in 0..3 {
            run.ok(&reply(failure.clone(), 4));
        }
        let rejections = run
            .event_types()
            .iter()
            .filter(|t| *t == "OrderRejectionDue")
            .count();
        assert_eq!(rejections, 1, "{}", failure.subject());
    }
}

// ---- wrong replies -------------------------------------------------------------------------

#[test]
fn a_reply_for_a_saga_that_never_started_is_ignored() {
    saga()
        .given_no_previous_events()
        .when(reply(reserved(1), 2))
        .then_expect_error(ignored(IgnoredReason::UnknownSaga));
}

#[test]
fn a_reply_for_another_saga_is_ignored() {
    let other = SagaId::from_uuid(Uuid::from_u128(0xB0B));
    let Reply::StockReserved(mut wrong) = reserved(1) else {
        unreachable!()
    };
    wrong.saga_id = other;
    saga()
        .given(history(started()))
        .when(reply(wrong.into(), 2))
        .then_expect_error(ignored(IgnoredReason::WrongSaga {
            expected: saga_id(),
            got: other,
        }));
}

#[test]
fn a_reply_for_another_order_is_ignored() {
    let other = OrderId::from_uuid(Uuid::from_u128(0xB0B));
    let Reply::StockReserved(mut wrong) = reserved(1) else {
        unreachable!()
    };
    wrong.order_id = other;
    saga()
        .given(history(started()))
        .when(reply(wrong.into(), 2))
        .then_expect_error(ignored(IgnoredReason::WrongOrder {
            expected: order_id(),
            got: other,
        }));
}

#[test]
fn a_re_delivered_message_id_for_another_saga_is_still_wrong_not_a_duplicate() {
    let Reply::StockReserved(mut wrong) = reserved(1) else {
        unreachable!()
    };
    wrong.saga_id = SagaId::from_uuid(Uuid::from_u128(0xB0B));
    let result = saga()
        .given(history(stock_held()))
        .when(reply(wrong.into(), 3))
        .inspect_result();
    assert!(matches!(
        result,
        Err(SagaError::ReplyIgnored {
            reason: IgnoredReason::WrongSaga { .. }
        })
    ));
}

#[test]
fn a_reply_to_a_message_this_saga_never_sent_is_ignored() {
    let stranger = MessageId::from_uuid(Uuid::from_u128(0xDEAD));
    let Reply::StockReserved(mut wrong) = reserved(1) else {
        unreachable!()
    };
    wrong.in_reply_to = stranger;
    saga()
        .given(history(started()))
        .when(reply(wrong.into(), 2))
        .then_expect_error(ignored(IgnoredReason::UnknownRequest {
            in_reply_to: stranger,
        }));
    // a command of a later step that was not sent yet is unknown too
    saga()
        .given(history(started()))
        .when(reply(authorized(2), 2))
        .then_expect_error(ignored(IgnoredReason::UnknownRequest {
            in_reply_to: mid(Step::Authorize, 1),
        }));
}

#[test]
fn a_reply_of_the_wrong_kind_for_its_command_is_ignored() {
    let Reply::PaymentAuthorized(mut wrong) = authorized(2) else {
        unreachable!()
    };
    wrong.in_reply_to = mid(Step::Reserve, 1);
    saga()
        .given(history(started()))
        .when(reply(wrong.into(), 2))
        .then_expect_error(ignored(IgnoredReason::UnexpectedReply {
            step: Step::Reserve,
            reply: order_sagas::ReplyKind::PaymentAuthorized,
        }));
}

#[test]
fn an_authorization_of_another_amount_or_currency_is_ignored() {
    let Reply::PaymentAuthorized(mut wrong) = authorized(2) else {
        unreachable!()
    };
    wrong.amount_minor = TOTAL - 1;
    saga()
        .given(history(stock_held()))
        .when(reply(wrong.clone().into(), 4))
        .then_expect_error(ignored(IgnoredReason::WrongAmount {
            expected: TOTAL,
            got: TOTAL - 1,
        }));
    wrong.amount_minor = TOTAL;
    wrong.currency = Currency::parse("USD").unwrap();
    saga()
        .given(history(stock_held()))
        .when(reply(wrong.clone().into(), 4))
        .then_expect_error(ignored(IgnoredReason::WrongCurrency {
            expected: eur(),
            got: Currency::parse("USD").unwrap(),
        }));
    // counter-test: with the order's amount and currency the reply is accepted
    wrong.currency = eur();
    let events = saga()
        .given(history(stock_held()))
        .when(reply(wrong.into(), 4))
        .inspect_result()
        .unwrap();
    assert_eq!(events.len(), 2);
}

#[test]
fn a_capture_of_another_amount_is_ignored() {
    let Reply::PaymentCaptured(mut wrong) = captured(3, 1) else {
        unreachable!()
    };
    wrong.amount_minor = TOTAL * 2;
    saga()
        .given(history(capturing()))
        .when(reply(wrong.clone().into(), 101))
        .then_expect_error(ignored(IgnoredReason::WrongAmount {
            expected: TOTAL,
            got: TOTAL * 2,
        }));
    wrong.amount_minor = TOTAL;
    wrong.currency = Currency::parse("USD").unwrap();
    saga()
        .given(history(capturing()))
        .when(reply(wrong.clone().into(), 101))
        .then_expect_error(ignored(IgnoredReason::WrongCurrency {
            expected: eur(),
            got: Currency::parse("USD").unwrap(),
        }));
    // counter-test: the order's amount and currency are believed
    wrong.currency = eur();
    assert!(saga()
        .given(history(capturing()))
        .when(reply(wrong.into(), 101))
        .inspect_result()
        .is_ok());
}

#[test]
fn a_reply_to_the_id_guessable_from_the_order_id_is_ignored() {
    // Before keys, ids were UUIDv5(saga id, "<step>/<generation>"): anyone who knew the order
    // id could name the authorization and confirm the order without paying.
    let guessed = MessageId::derive(CommandIdKey::legacy(saga_id()), Step::Authorize, 1);
    let Reply::PaymentAuthorized(mut forged) = authorized(2) else {
        unreachable!()
    };
    forged.in_reply_to = guessed;
    saga()
        .given(history(stock_held()))
        .when(reply(forged.into(), 4))
        .then_expect_error(ignored(IgnoredReason::UnknownRequest {
            in_reply_to: guessed,
        }));
}

#[test]
fn a_saga_started_before_keys_existed_keeps_answering_its_old_ids() {
    let legacy =
        |step, generation| MessageId::derive(CommandIdKey::legacy(saga_id()), step, generation);
    let SagaChange::SagaStarted {
        saga_id,
        order_id,
        store_id,
        customer_id,
        currency,
        total_minor,
        lines,
        started_at,
        ..
    } = saga_started()
    else {
        unreachable!()
    };
    let old = SagaChange::SagaStarted {
        saga_id,
        order_id,
        store_id,
        customer_id,
        currency,
        total_minor,
        lines,
        started_at,
        command_id_key: None,
    };
    let Reply::StockReserved(mut answer) = reserved(1) else {
        unreachable!()
    };
    answer.in_reply_to = legacy(Step::Reserve, 1);
    let mut request = reserve();
    if let ParticipantCommand::ReserveStock(c) = &mut request {
        c.message_id = legacy(Step::Reserve, 1);
    }
    let events = saga()
        .given(history(vec![old, sent(request, 1, t(10))]))
        .when(reply(answer.into(), 2))
        .inspect_result()
        .unwrap();
    assert!(events.iter().any(|e| e.event_type() == "StockReserved"));
}

#[test]
fn a_reply_contradicting_an_earlier_answer_is_ignored() {
    saga()
        .given(history(stock_held()))
        .when(reply(rejected(7), 3))
        .then_expect_error(ignored(IgnoredReason::AlreadySettled {
            step: Step::Reserve,
            answer: order_sagas::ReplyKind::StockReserved,
        }));
    let Reply::StockReserved(mut other_reservation) = reserved(8) else {
        unreachable!()
    };
    other_reservation.reservation_id = ReservationId::new("res-2");
    saga()
        .given(history(stock_held()))
        .when(reply(other_reservation.into(), 3))
        .then_expect_error(ignored(IgnoredReason::AlreadySettled {
            step: Step::Reserve,
            answer: order_sagas::ReplyKind::StockReserved,
        }));
}

// ---- other refusals ------------------------------------------------------------------------

#[test]
fn fulfilment_before_confirmation_is_refused() {
    saga()
        .given(history(stock_held()))
        .when(fulfilled(5))
        .then_expect_error(SagaError::NotApplicable {
            command: "OrderFulfilled",
            status: S::AuthorizingPayment,
        });
}

#[test]
fn fulfilling_twice_changes_nothing() {
    saga()
        .given(history(capturing()))
        .when(fulfilled(105))
        .then_expect_events(vec![]);
}

#[test]
fn commands_for_a_saga_that_never_started_are_refused() {
    for command in [cancelled(1), fulfilled(1), timeout(1), retry(1)] {
        saga()
            .given_no_previous_events()
            .when(command)
            .then_expect_error(SagaError::NotStarted);
    }
}

// ---- wiring --------------------------------------------------------------------------------

#[test]
fn the_snapshot_comes_from_order_placed() {
    let placed = OrderChange::OrderPlaced {
        customer_id: customer(),
        store_id: store_id(),
        currency: eur(),
        total_minor: TOTAL,
        lines: vec![LineSnapshot {
            line_id: LineId::new(1),
            sku: Sku::parse("TEA").unwrap(),
            name: ProductName::parse("Green tea").unwrap(),
            quantity: 2,
            unit_price_minor: 450,
            line_total_minor: 900,
        }],
    };
    assert_eq!(
        OrderSnapshot::from_order_placed(order_id(), &placed),
        Ok(snapshot())
    );
    assert_eq!(
        OrderSnapshot::from_order_placed(order_id(), &OrderChange::OrderConfirmed),
        Err(SnapshotError::NotOrderPlaced {
            event_type: "OrderConfirmed"
        })
    );
}

#[test]
fn a_request_recorded_before_sent_at_was_kept_still_reads() {
    let mut json = serde_json::to_value(SagaEvent {
        change: sent(reserve(), 1, t(10)),
        status: S::ReservingStock,
        next_deadline_at: Some(t(10)),
    })
    .unwrap();
    json.as_object_mut().unwrap().remove("sent_at");
    let old: SagaEvent = serde_json::from_value(json).unwrap();
    let mut saga = OrderSaga::default();
    saga.apply(SagaEvent {
        change: saga_started(),
        status: S::ReservingStock,
        next_deadline_at: None,
    });
    saga.apply(old);
    assert_eq!(saga.requests()[0].first_sent_at, None);
    assert_eq!(saga.requests()[0].attempt, 1);
}

#[test]
fn a_request_keeps_when_it_was_first_sent_across_re_sends() {
    let events = saga()
        .given(history(started()))
        .when(timeout(10))
        .inspect_result()
        .unwrap();
    let mut saga = OrderSaga::default();
    for e in history(started()).into_iter().chain(events) {
        saga.apply(e);
    }
    let reserve = &saga.requests()[0];
    assert_eq!(reserve.attempt, 2);
    assert_eq!(reserve.first_sent_at, Some(t(0)));
}

#[test]
fn events_are_flat_json_with_a_type_tag_the_command_and_the_stamp() {
    let event = then(vec![sent(reserve(), 2, t(30))], S::ReservingStock, Some(30))
        .pop()
        .unwrap();
    let json = serde_json::to_value(&event).unwrap();
    let keys: Vec<&str> = json
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        keys,
        [
            "attempt",
            "command",
            "deadline_at",
            "next_deadline_at",
            "sent_at",
            "status",
            "type"
        ]
    );
    assert_eq!(json["type"], "StockReservationRequested");
    assert_eq!(json["status"], "reserving_stock");
    assert_eq!(
        json["command"]["message_id"],
        mid(Step::Reserve, 1).to_string()
    );
    assert_eq!(json["deadline_at"], "2026-11-22T12:00:30Z");
    assert_eq!(serde_json::from_value::<SagaEvent>(json).unwrap(), event);
    assert_eq!(event.event_type(), "StockReservationRequested");
    assert_eq!(event.event_version(), "1");
    assert_eq!(OrderSaga::TYPE, "OrderSaga");
    // every event of a full history survives a round trip
    for event in history(cat(&[capture_failed_history(), release_parked()])) {
        let json = serde_json::to_string(&event).unwrap();
        assert_eq!(serde_json::from_str::<SagaEvent>(&json).unwrap(), event);
    }
}
