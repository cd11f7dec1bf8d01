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

use std::collections::{BTreeMap, HashMap};

use order_domain::{Currency, OrderId};
use order_sagas::messages::{
    AuthorizePayment, CapturePayment, CommitStock, Message, MessageId, ParticipantCommand,
    PaymentAuthorized, PaymentCaptureFailed, PaymentCaptured, PaymentDeclined, PaymentId,
    PaymentRefunded, PaymentVoided, RefundPayment, ReleaseStock, Reply, ReplyKind, ReservationId,
    ReserveStock, SagaId, StockCommitted, StockRejected, StockReleased, StockReserved,
    UnavailableItem, VoidPayment,
};
use uuid::Uuid;

/// Units of one SKU by state. `available + reserved + committed` only changes when stock is
/// configured, never through commands.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StockLevel {
    /// Free to reserve.
    pub available: u64,
    /// Held by reservations in [`ReservationState::Reserved`].
    pub reserved: u64,
    /// Gone with committed reservations.
    pub committed: u64,
}

/// Where a reservation stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReservationState {
    Reserved,
    Released,
    Committed,
}

/// One stock reservation, created by a successful `reserve`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reservation {
    pub id: ReservationId,
    pub order_id: OrderId,
    /// Units per SKU (lines of the same SKU added up).
    pub items: BTreeMap<String, u64>,
    pub state: ReservationState,
}

impl Reservation {
    /// Units over all SKUs.
    pub fn units(&self) -> u64 {
        self.items.values().sum()
    }
}

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

/// Stock, reservations and payments of both simulated participants.
#[derive(Debug, Clone, Default)]
pub struct Books {
    default_stock: u64,
    stock: BTreeMap<String, StockLevel>,
    reservations: HashMap<ReservationId, Reservation>,
    reservation_by_order: HashMap<OrderId, ReservationId>,
    payments: HashMap<PaymentId, PaymentRecord>,
    payment_by_order: HashMap<OrderId, PaymentId>,
    /// The answer to every command seen, by its message id (kept for the simulator's lifetime).
    answers: HashMap<MessageId, Option<Reply>>,
    deliveries: HashMap<MessageId, u32>,
    anomalies: Vec<Anomaly>,
}

impl Books {
    /// Books with `stock` available per SKU and `default_stock` for any other SKU.
    pub fn new(stock: &HashMap<String, u64>, default_stock: u64) -> Self {
        Self {
            default_stock,
            stock: stock
                .iter()
                .map(|(sku, available)| {
                    let level = StockLevel {
                        available: *available,
                        ..StockLevel::default()
                    };
                    (sku.clone(), level)
                })
                .collect(),
            ..Self::default()
        }
    }

    // ---- reading -------------------------------------------------------------------------

    /// The stock of `sku` (an SKU never seen has `default_stock` available).
    pub fn stock(&self, sku: &str) -> StockLevel {
        self.stock.get(sku).copied().unwrap_or(StockLevel {
            available: self.default_stock,
            ..StockLevel::default()
        })
    }

    /// A reservation by id.
    pub fn reservation(&self, id: &ReservationId) -> Option<&Reservation> {
        self.reservations.get(id)
    }

    /// The latest reservation made for `order_id`.
    pub fn reservation_of(&self, order_id: OrderId) -> Option<&Reservation> {
        self.reservation_by_order
            .get(&order_id)
            .and_then(|id| self.reservations.get(id))
    }

    /// Every reservation, in no particular order.
    pub fn reservations(&self) -> impl Iterator<Item = &Reservation> {
        self.reservations.values()
    }

    /// A payment by id.
    pub fn payment(&self, id: &PaymentId) -> Option<&PaymentRecord> {
        self.payments.get(id)
    }

    /// The latest payment authorized for `order_id`.
    pub fn payment_of(&self, order_id: OrderId) -> Option<&PaymentRecord> {
        self.payment_by_order
            .get(&order_id)
            .and_then(|id| self.payments.get(id))
    }

    /// Every payment, in no particular order.
    pub fn payments(&self) -> impl Iterator<Item = &PaymentRecord> {
        self.payments.values()
    }

    /// Units currently held by reservations, over all SKUs.
    pub fn reserved_units(&self) -> u64 {
        self.stock.values().map(|s| s.reserved).sum()
    }

    /// Units committed (shipped), over all SKUs.
    pub fn committed_units(&self) -> u64 {
        self.stock.values().map(|s| s.committed).sum()
    }

    /// Money currently held: the amounts of payments still [`PaymentState::Authorized`].
    ///
    /// Each payment counts in exactly one of the four totals, by its current state; amounts of
    /// all currencies are added up (tests use one currency).
    pub fn authorized_minor(&self) -> i64 {
        self.payment_total(PaymentState::Authorized, |p| p.amount_minor)
    }

    /// Authorized amounts of payments that were voided.
    pub fn voided_minor(&self) -> i64 {
        self.payment_total(PaymentState::Voided, |p| p.amount_minor)
    }

    /// Money taken and kept: captured amounts of payments [`PaymentState::Captured`] (a
    /// refunded payment counts in [`Books::refunded_minor`] instead).
    pub fn captured_minor(&self) -> i64 {
        self.payment_total(PaymentState::Captured, |p| p.captured_minor)
    }

    /// Money given back: refunded amounts of payments [`PaymentState::Refunded`].
    pub fn refunded_minor(&self) -> i64 {
        self.payment_total(PaymentState::Refunded, |p| p.refunded_minor)
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

    fn payment_total(&self, state: PaymentState, amount: impl Fn(&PaymentRecord) -> i64) -> i64 {
        self.payments
            .values()
            .filter(|p| p.state == state)
            .map(amount)
            .sum()
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
            ParticipantCommand::ReserveStock(c) => Some(self.reserve(c, luck.out_of_stock)),
            ParticipantCommand::ReleaseStock(c) => self.release(c),
            ParticipantCommand::CommitStock(c) => self.commit(c),
            ParticipantCommand::AuthorizePayment(c) => Some(self.authorize(c, luck.declined)),
            ParticipantCommand::VoidPayment(c) => self.void(c),
            ParticipantCommand::CapturePayment(c) => Some(self.capture(c)),
            ParticipantCommand::RefundPayment(c) => self.refund(c),
        };
        self.answers.insert(id, reply.clone());
        Answer {
            reply,
            repeated: false,
        }
    }

    fn anomaly(&mut self, command: &impl Message, description: impl Into<String>) -> Option<Reply> {
        let anomaly = Anomaly {
            command: command.message_id(),
            order_id: command.order_id(),
            description: description.into(),
        };
        tracing::warn!(
            order_id = %anomaly.order_id,
            "simulator: {}; no reply",
            anomaly.description
        );
        self.anomalies.push(anomaly);
        None
    }

    fn level(&mut self, sku: &str) -> &mut StockLevel {
        let default = self.default_stock;
        self.stock.entry(sku.to_owned()).or_insert(StockLevel {
            available: default,
            ..StockLevel::default()
        })
    }

    fn reserve(&mut self, c: &ReserveStock, out_of_stock: bool) -> Reply {
        let mut wanted: BTreeMap<String, u64> = BTreeMap::new();
        for item in &c.items {
            *wanted.entry(item.sku.as_str().to_owned()).or_default() +=
                u64::from(item.quantity.get());
        }
        let (reason, unavailable): (&str, Vec<UnavailableItem>) = if out_of_stock {
            let all = wanted
                .iter()
                .map(|(sku, requested)| unavailable(sku, *requested, 0))
                .collect();
            ("out of stock (simulated)", all)
        } else {
            let short = wanted
                .iter()
                .filter_map(|(sku, requested)| {
                    let available = self.stock(sku).available;
                    (available < *requested).then(|| unavailable(sku, *requested, available))
                })
                .collect();
            ("insufficient stock", short)
        };
        let (message_id, saga_id, order_id, in_reply_to) = head(c, ReplyKind::StockRejected);
        if !unavailable.is_empty() {
            return StockRejected {
                message_id,
                saga_id,
                order_id,
                in_reply_to,
                reason: reason.to_owned(),
                unavailable,
            }
            .into();
        }
        for (sku, quantity) in &wanted {
            let level = self.level(sku);
            level.available -= quantity;
            level.reserved += quantity;
        }
        let id = ReservationId::new(format!("res-{}", derive(c.message_id, "reservation")));
        self.reservations.insert(
            id.clone(),
            Reservation {
                id: id.clone(),
                order_id: c.order_id,
                items: wanted,
                state: ReservationState::Reserved,
            },
        );
        self.reservation_by_order.insert(c.order_id, id.clone());
        let (message_id, saga_id, order_id, in_reply_to) = head(c, ReplyKind::StockReserved);
        StockReserved {
            message_id,
            saga_id,
            order_id,
            in_reply_to,
            reservation_id: id,
        }
        .into()
    }

    /// Ends a held reservation: its units go from `reserved` back to `available` (released) or
    /// on to `committed`.
    fn settle_reservation(&mut self, id: &ReservationId, released: bool) {
        let Some(reservation) = self.reservations.get_mut(id) else {
            return;
        };
        reservation.state = if released {
            ReservationState::Released
        } else {
            ReservationState::Committed
        };
        let items = reservation.items.clone();
        for (sku, quantity) in &items {
            let level = self.level(sku);
            level.reserved -= quantity;
            if released {
                level.available += quantity;
            } else {
                level.committed += quantity;
            }
        }
    }

    fn release(&mut self, c: &ReleaseStock) -> Option<Reply> {
        match self.reservations.get(&c.reservation_id).map(|r| r.state) {
            Some(ReservationState::Reserved) => {
                self.settle_reservation(&c.reservation_id, true);
            }
            Some(ReservationState::Released) => {}
            None => {
                // A compensation must be answerable: nothing is held under an unknown id, so
                // "released" is true (a restarted simulator forgot its books, say).
                tracing::warn!(reservation_id = %c.reservation_id, "simulator: release of an unknown reservation");
            }
            Some(ReservationState::Committed) => {
                return self.anomaly(
                    c,
                    format!("release of committed reservation {}", c.reservation_id),
                );
            }
        }
        let (message_id, saga_id, order_id, in_reply_to) = head(c, ReplyKind::StockReleased);
        Some(
            StockReleased {
                message_id,
                saga_id,
                order_id,
                in_reply_to,
            }
            .into(),
        )
    }

    fn commit(&mut self, c: &CommitStock) -> Option<Reply> {
        match self.reservations.get(&c.reservation_id).map(|r| r.state) {
            Some(ReservationState::Reserved) => {
                self.settle_reservation(&c.reservation_id, false);
            }
            Some(ReservationState::Committed) => {}
            Some(ReservationState::Released) => {
                return self.anomaly(
                    c,
                    format!("commit of released reservation {}", c.reservation_id),
                );
            }
            None => {
                return self.anomaly(
                    c,
                    format!("commit of unknown reservation {}", c.reservation_id),
                );
            }
        }
        let (message_id, saga_id, order_id, in_reply_to) = head(c, ReplyKind::StockCommitted);
        Some(
            StockCommitted {
                message_id,
                saga_id,
                order_id,
                in_reply_to,
            }
            .into(),
        )
    }

    fn authorize(&mut self, c: &AuthorizePayment, declined: bool) -> Reply {
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
            amount_minor: Some(c.amount_minor),
            currency: Some(c.currency),
        }
        .into()
    }

    fn void(&mut self, c: &VoidPayment) -> Option<Reply> {
        let amount = match self.payments.get_mut(&c.payment_id) {
            Some(p) if p.state == PaymentState::Authorized => {
                p.state = PaymentState::Voided;
                p.amount_minor
            }
            Some(p) if p.state == PaymentState::Voided => p.amount_minor,
            Some(p) => {
                let state = p.state;
                return self.anomaly(c, format!("void of {state:?} payment {}", c.payment_id));
            }
            None => {
                // As for release: nothing is held under an unknown id.
                tracing::warn!(payment_id = %c.payment_id, "simulator: void of an unknown payment");
                c.amount_minor
            }
        };
        let (message_id, saga_id, order_id, in_reply_to) = head(c, ReplyKind::PaymentVoided);
        Some(
            PaymentVoided {
                message_id,
                saga_id,
                order_id,
                in_reply_to,
                amount_minor: Some(amount),
            }
            .into(),
        )
    }

    fn capture(&mut self, c: &CapturePayment) -> Reply {
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
                    Ok(p.captured_minor)
                }
                PaymentState::Captured => Ok(p.captured_minor),
                PaymentState::Voided => Err("payment was voided".to_owned()),
                PaymentState::Refunded => Err("payment was refunded".to_owned()),
            },
        };
        match outcome {
            Ok(amount) => {
                let (message_id, saga_id, order_id, in_reply_to) =
                    head(c, ReplyKind::PaymentCaptured);
                PaymentCaptured {
                    message_id,
                    saga_id,
                    order_id,
                    in_reply_to,
                    amount_minor: Some(amount),
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

    fn refund(&mut self, c: &RefundPayment) -> Option<Reply> {
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
                return self.anomaly(c, description);
            }
            None => {
                // As for release: nothing was taken under an unknown id.
                tracing::warn!(payment_id = %c.payment_id, "simulator: refund of an unknown payment");
                c.amount_minor
            }
        };
        let (message_id, saga_id, order_id, in_reply_to) = head(c, ReplyKind::PaymentRefunded);
        Some(
            PaymentRefunded {
                message_id,
                saga_id,
                order_id,
                in_reply_to,
                amount_minor: Some(amount),
            }
            .into(),
        )
    }
}

/// `(message_id, saga_id, order_id, in_reply_to)` of the reply of `kind` to `command`. The
/// reply's id is derived from the command's id and the kind (UUIDv5), so every re-send of the
/// reply carries the same `Nats-Msg-Id` and JetStream de-duplicates it too.
fn head(command: &impl Message, kind: ReplyKind) -> (MessageId, SagaId, OrderId, MessageId) {
    (
        reply_id(command.message_id(), kind),
        command.saga_id(),
        command.order_id(),
        command.message_id(),
    )
}

/// The message id of the reply of `kind` to the command `command`.
pub fn reply_id(command: MessageId, kind: ReplyKind) -> MessageId {
    MessageId::from_uuid(derive(command, kind.subject()))
}

/// UUIDv5 in the command's namespace.
fn derive(command: MessageId, name: &str) -> Uuid {
    Uuid::new_v5(&command.as_uuid(), name.as_bytes())
}

fn unavailable(sku: &str, requested: u64, available: u64) -> UnavailableItem {
    UnavailableItem {
        sku: sku.to_owned(),
        requested: u32::try_from(requested).unwrap_or(u32::MAX),
        available: u32::try_from(available).unwrap_or(u32::MAX),
    }
}

#[cfg(test)]
mod tests {
    use order_domain::{CustomerId, Quantity, Sku, StoreId};
    use order_sagas::messages::StockItem;

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
        assert_eq!(a.amount_minor, Some(900));
        assert_eq!(a.currency, Some(Currency::parse("EUR").unwrap()));
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
