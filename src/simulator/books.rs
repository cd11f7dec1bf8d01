//! The simulated participants' books: stock per SKU, reservations, payments, and the answer
//! given to every command, kept by `message_id` so a repeated command gets the same reply and no
//! second effect.
//!
//! Everything here is pure: the caller rolls the dice ([`Luck`]) and does the I/O. Tests read
//! the books (through [`super::Simulator::books`]) to check the ledger the saga leaves behind.
//!
//! A command the books contradict and for which the contract has no failure reply (committing a
//! released reservation, voiding a captured payment, ...) gets **no reply**: the saga's re-sends
//! then run out and it parks in `needs_attention`, which is what should happen when the other
//! side disagrees. Such a command is recorded in [`Books::anomalies`].

mod ids;
mod inventory;
mod payments;

use std::collections::HashMap;

use order_domain::OrderId;
use order_sagas::messages::{
    Message, MessageId, ParticipantCommand, PaymentId, Reply, ReservationId,
};

pub use self::ids::reply_id;
use self::inventory::InventoryBook;
pub use self::inventory::{Reservation, ReservationState, StockLedger, StockLevel};
use self::payments::PaymentBook;
pub use self::payments::{PaymentRecord, PaymentState};

/// A command the books contradict and that got no reply (see the module docs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Anomaly {
    /// `message_id` of the command.
    pub command: MessageId,
    pub order_id: OrderId,
    pub description: String,
}

/// The dice already rolled for one command (the books themselves draw nothing).
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct Luck {
    /// `authorize` is declined whatever the amount.
    pub declined: bool,
    /// `reserve` is rejected whatever the stock.
    pub out_of_stock: bool,
}

/// What the books say to one delivery of a command.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Answer {
    /// `None`: the command contradicts the books and the contract has no reply for that.
    pub reply: Option<Reply>,
    /// The command was answered before; nothing changed this time.
    pub repeated: bool,
}

/// Stock, reservations and payments of both simulated participants, and the answer given to
/// every command.
#[derive(Debug, Clone, Default)]
pub struct Books {
    inventory: InventoryBook,
    payments: PaymentBook,
    /// The answer to every command seen, by its message id (kept for the simulator's lifetime).
    answers: HashMap<MessageId, Option<Reply>>,
    deliveries: HashMap<MessageId, u32>,
    anomalies: Vec<Anomaly>,
}

impl Books {
    /// Books with `stock` available per SKU and `default_stock` for any other SKU.
    pub fn new(stock: &HashMap<String, u64>, default_stock: u64) -> Self {
        Self {
            inventory: InventoryBook::new(stock, default_stock),
            ..Self::default()
        }
    }

    // ---- reading -------------------------------------------------------------------------

    /// The stock of `sku` (an SKU never seen has `default_stock` available).
    pub fn stock(&self, sku: &str) -> StockLevel {
        self.inventory.stock(sku)
    }

    /// A reservation by id.
    pub fn reservation(&self, id: &ReservationId) -> Option<&Reservation> {
        self.inventory.reservation(id)
    }

    /// The latest reservation made for `order_id`.
    pub fn reservation_of(&self, order_id: OrderId) -> Option<&Reservation> {
        self.inventory.reservation_of(order_id)
    }

    /// Every reservation, in no particular order.
    pub fn reservations(&self) -> impl Iterator<Item = &Reservation> {
        self.inventory.reservations()
    }

    /// A payment by id.
    pub fn payment(&self, id: &PaymentId) -> Option<&PaymentRecord> {
        self.payments.payment(id)
    }

    /// The latest payment authorized for `order_id`.
    pub fn payment_of(&self, order_id: OrderId) -> Option<&PaymentRecord> {
        self.payments.payment_of(order_id)
    }

    /// Every payment, in no particular order.
    pub fn payments(&self) -> impl Iterator<Item = &PaymentRecord> {
        self.payments.payments()
    }

    /// The inventory's books as `verify` reads them.
    pub fn stock_ledger(&self) -> StockLedger {
        self.inventory.ledger()
    }

    /// Units currently held by reservations, over all SKUs.
    pub fn reserved_units(&self) -> u64 {
        self.inventory.reserved_units()
    }

    /// Units committed (shipped), over all SKUs.
    pub fn committed_units(&self) -> u64 {
        self.inventory.committed_units()
    }

    /// Money currently held: the amounts of payments still [`PaymentState::Authorized`].
    ///
    /// Each payment counts in exactly one of the four totals, by its current state; amounts of
    /// all currencies are added up (tests use one currency).
    pub fn authorized_minor(&self) -> i64 {
        self.payments
            .total(PaymentState::Authorized, |p| p.amount_minor)
    }

    /// Authorized amounts of payments that were voided.
    pub fn voided_minor(&self) -> i64 {
        self.payments
            .total(PaymentState::Voided, |p| p.amount_minor)
    }

    /// Money taken and kept: captured amounts of payments [`PaymentState::Captured`] (a
    /// refunded payment counts in [`Books::refunded_minor`] instead).
    pub fn captured_minor(&self) -> i64 {
        self.payments
            .total(PaymentState::Captured, |p| p.captured_minor)
    }

    /// Money given back: refunded amounts of payments [`PaymentState::Refunded`].
    pub fn refunded_minor(&self) -> i64 {
        self.payments
            .total(PaymentState::Refunded, |p| p.refunded_minor)
    }

    /// How many times a command with this message id arrived (every JetStream delivery counts).
    pub fn deliveries_of(&self, command: MessageId) -> u32 {
        self.deliveries.get(&command).copied().unwrap_or(0)
    }

    /// How many distinct commands (by message id) were decided.
    pub fn commands_decided(&self) -> usize {
        self.answers.len()
    }

    /// The reply decided for a command, if it was decided and had one.
    pub fn reply_to(&self, command: MessageId) -> Option<&Reply> {
        self.answers.get(&command).and_then(Option::as_ref)
    }

    /// Commands that contradicted the books and got no reply.
    pub fn anomalies(&self) -> &[Anomaly] {
        &self.anomalies
    }

    // ---- deciding ------------------------------------------------------------------------

    /// Counts one arrival of `command`; returns the delivery number (1 for the first).
    pub(super) fn record_delivery(&mut self, command: MessageId) -> u32 {
        let n = self.deliveries.entry(command).or_insert(0);
        *n = n.saturating_add(1);
        *n
    }

    /// Decides `command` once: the first time it acts on the books and remembers the reply;
    /// every later time it returns that same reply (same reply message id) and changes nothing.
    pub(super) fn answer(&mut self, command: &ParticipantCommand, luck: Luck) -> Answer {
        let id = command.message_id();
        if let Some(reply) = self.answers.get(&id) {
            return Answer {
                reply: reply.clone(),
                repeated: true,
            };
        }
        let reply = match command {
            ParticipantCommand::ReserveStock(c) => {
                Some(self.inventory.reserve(c, luck.out_of_stock))
            }
            ParticipantCommand::ReleaseStock(c) => {
                let decided = self.inventory.release(c);
                self.unless_contradicted(c, decided)
            }
            ParticipantCommand::CommitStock(c) => {
                let decided = self.inventory.commit(c);
                self.unless_contradicted(c, decided)
            }
            ParticipantCommand::AuthorizePayment(c) => {
                Some(self.payments.authorize(c, luck.declined))
            }
            ParticipantCommand::VoidPayment(c) => {
                let decided = self.payments.void(c);
                self.unless_contradicted(c, decided)
            }
            ParticipantCommand::CapturePayment(c) => Some(self.payments.capture(c)),
            ParticipantCommand::RefundPayment(c) => {
                let decided = self.payments.refund(c);
                self.unless_contradicted(c, decided)
            }
        };
        self.answers.insert(id, reply.clone());
        Answer {
            reply,
            repeated: false,
        }
    }

    /// The reply a book decided; or, when the book contradicts the command
    /// (`Err(description)`), no reply and an [`Anomaly`] recorded.
    fn unless_contradicted(
        &mut self,
        command: &impl Message,
        decided: Result<Reply, String>,
    ) -> Option<Reply> {
        let description = match decided {
            Ok(reply) => return Some(reply),
            Err(description) => description,
        };
        let anomaly = Anomaly {
            command: command.message_id(),
            order_id: command.order_id(),
            description,
        };
        tracing::warn!(
            order_id = %anomaly.order_id,
            "simulator: {}; no reply",
            anomaly.description
        );
        self.anomalies.push(anomaly);
        None
    }
}

#[cfg(test)]
mod tests {
    use order_domain::{Currency, CustomerId, Quantity, Sku, StoreId};
    use order_sagas::messages::{
        AuthorizePayment, CapturePayment, CommitStock, RefundPayment, ReleaseStock, ReplyKind,
        ReserveStock, SagaId, StockItem, UnavailableItem, VoidPayment,
    };
    use uuid::Uuid;

    use super::*;

    const ORDER: u128 = 0xabc;

    fn mid(n: u128) -> MessageId {
        MessageId::from_uuid(Uuid::from_u128(n))
    }
    fn order() -> OrderId {
        OrderId::from_uuid(Uuid::from_u128(ORDER))
    }
    fn saga() -> SagaId {
        SagaId::for_order(order())
    }
    fn books(stock: &[(&str, u64)]) -> Books {
        let stock = stock.iter().map(|(s, n)| ((*s).to_owned(), *n)).collect();
        Books::new(&stock, 1_000)
    }
    fn reserve(n: u128, lines: &[(&str, i64)]) -> ParticipantCommand {
        ReserveStock {
            message_id: mid(n),
            saga_id: saga(),
            order_id: order(),
            store_id: StoreId::from_uuid(Uuid::from_u128(9)),
            items: lines
                .iter()
                .map(|(sku, q)| StockItem {
                    sku: Sku::parse(*sku).unwrap(),
                    quantity: Quantity::parse(*q).unwrap(),
                })
                .collect(),
        }
        .into()
    }
    fn release(n: u128, reservation_id: &ReservationId) -> ParticipantCommand {
        ReleaseStock {
            message_id: mid(n),
            saga_id: saga(),
            order_id: order(),
            reservation_id: reservation_id.clone(),
        }
        .into()
    }
    fn commit(n: u128, reservation_id: &ReservationId) -> ParticipantCommand {
        CommitStock {
            message_id: mid(n),
            saga_id: saga(),
            order_id: order(),
            reservation_id: reservation_id.clone(),
        }
        .into()
    }
    fn authorize(n: u128, amount_minor: i64) -> ParticipantCommand {
        AuthorizePayment {
            message_id: mid(n),
            saga_id: saga(),
            order_id: order(),
            customer_id: CustomerId::parse("cust-1").unwrap(),
            amount_minor,
            currency: Currency::parse("EUR").unwrap(),
        }
        .into()
    }
    fn void(n: u128, payment_id: &PaymentId, amount_minor: i64) -> ParticipantCommand {
        VoidPayment {
            message_id: mid(n),
            saga_id: saga(),
            order_id: order(),
            payment_id: payment_id.clone(),
            amount_minor,
        }
        .into()
    }
    fn capture(n: u128, payment_id: &PaymentId, amount_minor: i64) -> ParticipantCommand {
        CapturePayment {
            message_id: mid(n),
            saga_id: saga(),
            order_id: order(),
            payment_id: payment_id.clone(),
            amount_minor,
        }
        .into()
    }
    fn refund(n: u128, payment_id: &PaymentId, amount_minor: i64) -> ParticipantCommand {
        RefundPayment {
            message_id: mid(n),
            saga_id: saga(),
            order_id: order(),
            payment_id: payment_id.clone(),
            amount_minor,
        }
        .into()
    }
    fn reply(books: &mut Books, command: &ParticipantCommand) -> Reply {
        books
            .answer(command, Luck::default())
            .reply
            .expect("a reply")
    }
    fn reserved(books: &mut Books, command: &ParticipantCommand) -> ReservationId {
        match reply(books, command) {
            Reply::StockReserved(r) => r.reservation_id,
            other => panic!("not reserved: {other:?}"),
        }
    }
    fn authorized(books: &mut Books, command: &ParticipantCommand) -> PaymentId {
        match reply(books, command) {
            Reply::PaymentAuthorized(r) => r.payment_id,
            other => panic!("not authorized: {other:?}"),
        }
    }

    #[test]
    fn a_reservation_adds_up_lines_of_one_sku_and_moves_them_to_reserved() {
        let mut books = books(&[("TEA", 10)]);
        let command = reserve(1, &[("TEA", 2), ("TEA", 3), ("MUG", 1)]);

        let Reply::StockReserved(r) = reply(&mut books, &command) else {
            panic!("not reserved")
        };

        assert_eq!(r.in_reply_to, mid(1));
        assert_eq!(r.message_id, reply_id(mid(1), ReplyKind::StockReserved));
        assert_eq!(
            books.stock("TEA"),
            StockLevel {
                available: 5,
                reserved: 5,
                committed: 0
            }
        );
        assert_eq!(books.stock("MUG").available, 999);
        assert_eq!(books.reserved_units(), 6);
        let reservation = books.reservation_of(order()).unwrap();
        assert_eq!(reservation.id, r.reservation_id);
        assert_eq!(reservation.units(), 6);
        assert_eq!(reservation.state, ReservationState::Reserved);
    }

    #[test]
    fn a_shortfall_rejects_the_whole_reservation_and_holds_nothing() {
        let mut books = books(&[("TEA", 1), ("MUG", 5)]);

        let answer = reply(&mut books, &reserve(1, &[("TEA", 2), ("MUG", 1)]));

        let Reply::StockRejected(r) = answer else {
            panic!("not rejected: {answer:?}")
        };
        assert_eq!(
            r.unavailable,
            vec![UnavailableItem {
                sku: "TEA".into(),
                requested: 2,
                available: 1
            }]
        );
        assert_eq!(books.stock("TEA").available, 1);
        assert_eq!(books.stock("MUG").available, 5);
        assert_eq!(books.reserved_units(), 0);
        assert!(books.reservation_of(order()).is_none());
    }

    #[test]
    fn a_simulated_stock_out_rejects_even_with_plenty_in_stock() {
        let mut books = books(&[("TEA", 100)]);
        let luck = Luck {
            out_of_stock: true,
            ..Luck::default()
        };

        let answer = books.answer(&reserve(1, &[("TEA", 1)]), luck).reply;

        assert!(
            matches!(answer, Some(Reply::StockRejected(ref r)) if r.unavailable.len() == 1),
            "{answer:?}"
        );
        assert_eq!(books.stock("TEA").available, 100);
    }

    #[test]
    fn a_repeated_command_gets_the_same_reply_and_no_second_effect() {
        let mut books = books(&[("TEA", 10)]);
        let command = reserve(1, &[("TEA", 4)]);

        let first = books.answer(&command, Luck::default());
        // Different luck on a later delivery must not change a decided answer.
        let again = books.answer(
            &command,
            Luck {
                out_of_stock: true,
                declined: true,
            },
        );

        assert!(!first.repeated);
        assert!(again.repeated);
        assert_eq!(first.reply, again.reply);
        assert_eq!(books.stock("TEA").reserved, 4);
        assert_eq!(books.commands_decided(), 1);
    }

    #[test]
    fn release_gives_stock_back_once_and_is_answered_for_unknown_reservations() {
        let mut books = books(&[("TEA", 10)]);
        let id = reserved(&mut books, &reserve(1, &[("TEA", 4)]));

        let first = reply(&mut books, &release(2, &id));
        let second = reply(&mut books, &release(3, &id));
        let unknown = reply(&mut books, &release(4, &ReservationId::new("res-nope")));

        assert!(matches!(first, Reply::StockReleased(_)));
        assert!(matches!(second, Reply::StockReleased(_)));
        assert!(matches!(unknown, Reply::StockReleased(_)));
        assert_eq!(
            books.stock("TEA"),
            StockLevel {
                available: 10,
                reserved: 0,
                committed: 0
            }
        );
        assert_eq!(
            books.reservation(&id).unwrap().state,
            ReservationState::Released
        );
        assert!(books.anomalies().is_empty());
    }

    #[test]
    fn commit_makes_a_reservation_final_and_a_released_one_cannot_be_committed() {
        let mut books = books(&[("TEA", 10)]);
        let kept = reserved(&mut books, &reserve(1, &[("TEA", 4)]));
        assert!(matches!(
            reply(&mut books, &commit(2, &kept)),
            Reply::StockCommitted(_)
        ));
        assert_eq!(
            books.stock("TEA"),
            StockLevel {
                available: 6,
                reserved: 0,
                committed: 4
            }
        );
        // Releasing what shipped contradicts the books: no reply, an anomaly.
        assert_eq!(
            books.answer(&release(3, &kept), Luck::default()).reply,
            None
        );

        let given_back = reserved(&mut books, &reserve(4, &[("TEA", 1)]));
        reply(&mut books, &release(5, &given_back));
        assert_eq!(
            books.answer(&commit(6, &given_back), Luck::default()).reply,
            None
        );

        assert_eq!(books.anomalies().len(), 2);
        assert_eq!(books.stock("TEA").committed, 4);
        assert_eq!(books.stock("TEA").available, 6);
    }

    #[test]
    fn authorize_echoes_amount_and_currency_and_a_decline_holds_nothing() {
        let mut books = books(&[]);
        let Reply::PaymentAuthorized(a) = reply(&mut books, &authorize(1, 900)) else {
            panic!("not authorized")
        };
        assert_eq!(a.amount_minor, 900);
        assert_eq!(a.currency, Currency::parse("EUR").unwrap());
        assert_eq!(books.authorized_minor(), 900);

        let luck = Luck {
            declined: true,
            ..Luck::default()
        };
        let declined = books.answer(&authorize(2, 500), luck).reply;
        assert!(matches!(declined, Some(Reply::PaymentDeclined(_))));
        assert_eq!(books.authorized_minor(), 900);
        assert_eq!(books.payments().count(), 1);
    }

    #[test]
    fn a_voided_payment_cannot_be_captured() {
        let mut books = books(&[]);
        let id = authorized(&mut books, &authorize(1, 900));

        let voided = reply(&mut books, &void(2, &id, 900));
        let captured = reply(&mut books, &capture(3, &id, 900));

        assert_eq!(voided.amount_minor(), Some(900));
        assert!(
            matches!(captured, Reply::PaymentCaptureFailed(_)),
            "{captured:?}"
        );
        assert_eq!(books.voided_minor(), 900);
        assert_eq!((books.authorized_minor(), books.captured_minor()), (0, 0));
    }

    #[test]
    fn capture_then_refund_moves_the_money_through_the_totals() {
        let mut books = books(&[]);
        let id = authorized(&mut books, &authorize(1, 900));

        assert!(matches!(
            reply(&mut books, &capture(2, &id, 1_000)),
            Reply::PaymentCaptureFailed(_)
        ));
        assert_eq!(
            reply(&mut books, &capture(3, &id, 900)).amount_minor(),
            Some(900)
        );
        assert_eq!((books.authorized_minor(), books.captured_minor()), (0, 900));
        // A void after capture contradicts the books.
        assert_eq!(
            books.answer(&void(4, &id, 900), Luck::default()).reply,
            None
        );
        assert_eq!(
            reply(&mut books, &refund(5, &id, 900)).amount_minor(),
            Some(900)
        );
        assert_eq!(
            reply(&mut books, &refund(6, &id, 900)).amount_minor(),
            Some(900)
        );

        assert_eq!((books.captured_minor(), books.refunded_minor()), (0, 900));
        assert_eq!(
            books.payment_of(order()).unwrap().state,
            PaymentState::Refunded
        );
        assert_eq!(books.anomalies().len(), 1);
    }

    #[test]
    fn deliveries_are_counted_per_message_id() {
        let mut books = books(&[]);
        assert_eq!(books.record_delivery(mid(1)), 1);
        assert_eq!(books.record_delivery(mid(1)), 2);
        assert_eq!(books.record_delivery(mid(2)), 1);
        assert_eq!(books.deliveries_of(mid(1)), 2);
        assert_eq!(books.deliveries_of(mid(3)), 0);
    }
}
