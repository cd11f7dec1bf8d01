//! The `Order` aggregate: `decide` is pure and returns events or a refusal; `apply` only
//! mutates. `decide` checks every move of the status machine drawn in [`crate::status`]: a
//! command is refused with [`OrderError::IllegalTransition`] unless the order stands in one of
//! the statuses its arrow starts from.

use std::collections::VecDeque;

use cqrs_es::event_sink::EventSink;
use cqrs_es::Aggregate;
use serde::{Deserialize, Serialize};

use crate::command::{CommandMark, CreateOrder, Envelope, NewItem, OrderCommand, PriceList};
use crate::error::OrderError;
use crate::event::{LineSnapshot, OrderChange, OrderEvent};
use crate::status::OrderStatus;
use crate::values::{
    Carrier, Currency, CustomerId, Email, LineId, Money, OrderId, ProductName, Quantity,
    ShippingAddress, Sku, StoreId, TrackingNumber,
};

/// Most lines one order may hold.
pub const MAX_LINES: usize = 100;

/// Most events an order may reach through item changes. Only a draft's items can change
/// without end (every other transition moves the status forward), so a client looping on
/// them is stopped here: the draft is then placed or discarded.
pub const MAX_DRAFT_EVENTS: u64 = 1_000;

/// How many idempotent requests an order remembers (older keys may be replayed as new ones).
pub const REMEMBERED_REQUESTS: usize = 128;

/// One line of an order, with the catalog name and price snapshotted when it was added.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderLine {
    pub line_id: LineId,
    pub sku: Sku,
    pub name: ProductName,
    pub quantity: u32,
    pub unit_price_minor: i64,
    pub line_total_minor: i64,
}

/// Carrier and tracking number of a shipped order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Shipment {
    pub carrier: Carrier,
    pub tracking_number: TrackingNumber,
}

/// State of an order that exists.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct OrderState {
    id: OrderId,
    customer_id: CustomerId,
    store_id: StoreId,
    currency: Currency,
    customer_email: Option<Email>,
    shipping_address: Option<ShippingAddress>,
    status: OrderStatus,
    lines: Vec<OrderLine>,
    next_line: u32,
    total_minor: i64,
    shipment: Option<Shipment>,
    cancel_reason: Option<String>,
}

/// A remembered idempotent request and the version its events produced.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
struct Remembered {
    mark: CommandMark,
    version: u64,
}

/// The order aggregate. `Default` is "no such order yet".
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Order {
    version: u64,
    state: Option<OrderState>,
    recent: VecDeque<Remembered>,
}

/// What deciding a command led to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// New events to append (possibly none: the command changed nothing).
    Events(Vec<OrderEvent>),
    /// The same request was already handled; its events produced this version.
    Replayed { version: u64 },
}

impl Order {
    /// Number of events applied; the order's version (ETag, `If-Match`).
    pub fn version(&self) -> u64 {
        self.version
    }
    pub fn exists(&self) -> bool {
        self.state.is_some()
    }
    pub fn id(&self) -> Option<OrderId> {
        self.state.as_ref().map(|s| s.id)
    }
    pub fn status(&self) -> Option<OrderStatus> {
        self.state.as_ref().map(|s| s.status)
    }
    pub fn customer_id(&self) -> Option<&CustomerId> {
        self.state.as_ref().map(|s| &s.customer_id)
    }
    pub fn store_id(&self) -> Option<StoreId> {
        self.state.as_ref().map(|s| s.store_id)
    }
    pub fn currency(&self) -> Option<Currency> {
        self.state.as_ref().map(|s| s.currency)
    }
    pub fn customer_email(&self) -> Option<&Email> {
        self.state.as_ref().and_then(|s| s.customer_email.as_ref())
    }
    pub fn shipping_address(&self) -> Option<&ShippingAddress> {
        self.state
            .as_ref()
            .and_then(|s| s.shipping_address.as_ref())
    }
    pub fn lines(&self) -> &[OrderLine] {
        self.state.as_ref().map_or(&[], |s| s.lines.as_slice())
    }
    pub fn total_minor(&self) -> i64 {
        self.state.as_ref().map_or(0, |s| s.total_minor)
    }
    pub fn shipment(&self) -> Option<&Shipment> {
        self.state.as_ref().and_then(|s| s.shipment.as_ref())
    }
    pub fn cancel_reason(&self) -> Option<&str> {
        self.state.as_ref().and_then(|s| s.cancel_reason.as_deref())
    }

    /// Whether a request with this mark was handled already: the version its events produced,
    /// or a refusal when its key came with a different request. Checked before anything else
    /// (preconditions, catalog), so a retry answers exactly as the original did.
    pub fn replay_of(&self, mark: Option<CommandMark>) -> Result<Option<u64>, OrderError> {
        let Some(mark) = mark else { return Ok(None) };
        match self.recent.iter().find(|r| r.mark.id == mark.id) {
            Some(seen) if seen.mark.fingerprint == mark.fingerprint => Ok(Some(seen.version)),
            Some(_) => Err(OrderError::IdempotencyKeyReused),
            None => Ok(None),
        }
    }

    /// The catalog entries `command` needs priced: the store and SKUs to look up. The caller
    /// resolves them into a [`PriceList`] before [`Order::decide`].
    pub fn catalog_lookup(&self, command: &OrderCommand) -> Option<(StoreId, Vec<Sku>)> {
        match command {
            OrderCommand::CreateOrder(c) if !c.items.is_empty() => {
                Some((c.store_id, c.items.iter().map(|i| i.sku.clone()).collect()))
            }
            OrderCommand::AddItem { sku, .. } => Some((self.store_id()?, vec![sku.clone()])),
            _ => None,
        }
    }

    /// The store whose open or closed state `command` depends on: a new order's, and a
    /// draft's when it is placed (a closed store takes neither). The caller resolves it into
    /// the [`PriceList`] before [`Order::decide`].
    pub fn store_to_check(&self, command: &OrderCommand) -> Option<StoreId> {
        match command {
            OrderCommand::CreateOrder(c) => Some(c.store_id),
            OrderCommand::PlaceOrder => self.store_id(),
            _ => None,
        }
    }

    /// Decides a command: the events it produces, a replay of an earlier identical request, or
    /// the rule it breaks. Pure: same state, command and prices give the same answer.
    pub fn decide(&self, envelope: &Envelope, prices: &PriceList) -> Result<Decision, OrderError> {
        if let Some(version) = self.replay_of(envelope.mark)? {
            return Ok(Decision::Replayed { version });
        }
        let mut changes = self.decide_changes(&envelope.command, prices)?;
        let mut events: Vec<OrderEvent> = changes.drain(..).map(OrderEvent::from).collect();
        if let Some(last) = events.last_mut() {
            last.command = envelope.mark;
        }
        Ok(Decision::Events(events))
    }

    fn decide_changes(
        &self,
        command: &OrderCommand,
        prices: &PriceList,
    ) -> Result<Vec<OrderChange>, OrderError> {
        let OrderCommand::CreateOrder(create) = command else {
            let state = self.state.as_ref().ok_or(OrderError::NotFound)?;
            let item_change = matches!(
                command,
                OrderCommand::AddItem { .. }
                    | OrderCommand::UpdateItemQuantity { .. }
                    | OrderCommand::RemoveItem { .. }
            );
            if item_change && state.is_draft() && self.version >= MAX_DRAFT_EVENTS {
                return Err(OrderError::TooManyChanges {
                    max: MAX_DRAFT_EVENTS,
                });
            }
            return state.decide(command, prices);
        };
        if self.state.is_some() {
            return Err(OrderError::AlreadyExists);
        }
        if prices.store_closed() {
            return Err(OrderError::StoreClosed);
        }
        decide_create(create, prices)
    }
}

fn decide_create(create: &CreateOrder, prices: &PriceList) -> Result<Vec<OrderChange>, OrderError> {
    let created = OrderChange::OrderCreated {
        order_id: create.order_id,
        customer_id: create.customer_id.clone(),
        store_id: create.store_id,
        currency: create.currency,
        customer_email: create.customer_email.clone(),
        shipping_address: create.shipping_address.clone(),
    };
    // Decide the items against the state the creation leads to, so that the rules of AddItem
    // (catalog, currency, merging, limits) hold for items given at creation too.
    let mut draft = Order::default();
    draft.apply_change(&created);
    let mut changes = vec![created];
    for NewItem { sku, quantity } in &create.items {
        let state = draft.state.as_ref().ok_or(OrderError::NotFound)?;
        for change in state.decide_add(sku, *quantity, prices)? {
            draft.apply_change(&change);
            changes.push(change);
        }
    }
    Ok(changes)
}

impl OrderState {
    fn decide(
        &self,
        command: &OrderCommand,
        prices: &PriceList,
    ) -> Result<Vec<OrderChange>, OrderError> {
        use OrderStatus as S;
        match command {
            OrderCommand::CreateOrder(_) => Err(OrderError::AlreadyExists),
            OrderCommand::AddItem { sku, quantity } => {
                self.require_draft()?;
                self.decide_add(sku, *quantity, prices)
            }
            OrderCommand::UpdateItemQuantity { line_id, quantity } => {
                self.require_draft()?;
                let line = self.line(*line_id)?;
                if line.quantity == quantity.get() {
                    return Ok(vec![]);
                }
                self.quantity_change(line, *quantity)
            }
            OrderCommand::RemoveItem { line_id } => {
                self.require_draft()?;
                let line = self.line(*line_id)?;
                Ok(vec![OrderChange::ItemRemoved {
                    line_id: line.line_id,
                    sku: line.sku.clone(),
                    order_total_minor: self.total_minor - line.line_total_minor,
                }])
            }
            OrderCommand::PlaceOrder => {
                self.require_transition(S::Placed, &[S::Draft])?;
                if self.lines.is_empty() {
                    return Err(OrderError::EmptyOrder);
                }
                if prices.store_closed() {
                    return Err(OrderError::StoreClosed);
                }
                Ok(vec![OrderChange::OrderPlaced {
                    customer_id: self.customer_id.clone(),
                    store_id: self.store_id,
                    currency: self.currency,
                    total_minor: self.total_minor,
                    lines: self
                        .lines
                        .iter()
                        .map(|l| LineSnapshot {
                            line_id: l.line_id,
                            sku: l.sku.clone(),
                            name: l.name.clone(),
                            quantity: l.quantity,
                            unit_price_minor: l.unit_price_minor,
                            line_total_minor: l.line_total_minor,
                        })
                        .collect(),
                }])
            }
            OrderCommand::ChangeStatus { status, note } => {
                let note = note.clone();
                let (from, change) = match status {
                    S::Preparing => (
                        &[S::Confirmed][..],
                        OrderChange::PreparationStarted { note },
                    ),
                    S::ReadyForPickup => (
                        &[S::Preparing][..],
                        OrderChange::OrderReadyForPickup { note },
                    ),
                    S::PickedUp => (
                        &[S::ReadyForPickup][..],
                        OrderChange::OrderPickedUp { note },
                    ),
                    S::Delivered => (&[S::Shipped][..], OrderChange::OrderDelivered { note }),
                    other => return Err(OrderError::StatusNotSettable { status: *other }),
                };
                self.require_transition(*status, from)?;
                Ok(vec![change])
            }
            OrderCommand::ShipOrder {
                carrier,
                tracking_number,
                note,
            } => {
                self.require_transition(S::Shipped, &[S::Preparing, S::ReadyForPickup])?;
                Ok(vec![OrderChange::OrderShipped {
                    carrier: carrier.clone(),
                    tracking_number: tracking_number.clone(),
                    note: note.clone(),
                }])
            }
            OrderCommand::CancelOrder { reason } => {
                if !self.status.is_cancellable() {
                    return Err(OrderError::IllegalTransition {
                        from: self.status,
                        to: S::Cancelled,
                    });
                }
                Ok(vec![OrderChange::OrderCancelled {
                    reason: reason.clone(),
                    previous_status: self.status,
                }])
            }
            OrderCommand::DiscardDraft => {
                self.require_transition(S::Discarded, &[S::Draft])?;
                Ok(vec![OrderChange::DraftDiscarded])
            }
            // The saga delivers at least once: confirming a confirmed order changes nothing.
            OrderCommand::ConfirmOrder if self.status == S::Confirmed => Ok(vec![]),
            OrderCommand::ConfirmOrder => {
                self.require_transition(S::Confirmed, &[S::Placed])?;
                Ok(vec![OrderChange::OrderConfirmed])
            }
            OrderCommand::RejectOrder { .. } if self.status == S::Rejected => Ok(vec![]),
            OrderCommand::RejectOrder { reason } => {
                self.require_transition(S::Rejected, &[S::Placed])?;
                Ok(vec![OrderChange::OrderRejected {
                    reason: reason.clone(),
                }])
            }
        }
    }

    fn is_draft(&self) -> bool {
        self.status == OrderStatus::Draft
    }

    fn require_draft(&self) -> Result<(), OrderError> {
        if self.is_draft() {
            Ok(())
        } else {
            Err(OrderError::ItemsLocked {
                status: self.status,
            })
        }
    }

    fn require_transition(&self, to: OrderStatus, from: &[OrderStatus]) -> Result<(), OrderError> {
        if from.contains(&self.status) {
            Ok(())
        } else {
            Err(OrderError::IllegalTransition {
                from: self.status,
                to,
            })
        }
    }

    fn line(&self, line_id: LineId) -> Result<&OrderLine, OrderError> {
        self.lines
            .iter()
            .find(|l| l.line_id == line_id)
            .ok_or(OrderError::LineNotFound { line_id })
    }

    /// Adding a SKU already on the order raises that line's quantity instead of opening a
    /// second line for the same product.
    fn decide_add(
        &self,
        sku: &Sku,
        quantity: Quantity,
        prices: &PriceList,
    ) -> Result<Vec<OrderChange>, OrderError> {
        if let Some(line) = self.lines.iter().find(|l| &l.sku == sku) {
            // More of a product already on the order keeps the line's price, but only while
            // the store still sells it.
            if prices.get(sku).is_some_and(|p| !p.active) {
                return Err(OrderError::ProductInactive { sku: sku.clone() });
            }
            let total = i64::from(line.quantity) + i64::from(quantity.get());
            let quantity = Quantity::parse(total)
                .map_err(|_| OrderError::QuantityTooLarge { max: Quantity::MAX })?;
            return self.quantity_change(line, quantity);
        }
        let product = prices
            .get(sku)
            .ok_or_else(|| OrderError::UnknownSku { sku: sku.clone() })?;
        if !product.active {
            return Err(OrderError::ProductInactive { sku: sku.clone() });
        }
        if product.unit_price.currency() != self.currency {
            return Err(OrderError::CurrencyMismatch {
                order: self.currency,
                product: product.unit_price.currency(),
            });
        }
        if self.lines.len() >= MAX_LINES {
            return Err(OrderError::TooManyLines { max: MAX_LINES });
        }
        let line_total = product
            .unit_price
            .times(quantity)
            .ok_or(OrderError::AmountTooLarge)?;
        let order_total = line_total
            .plus(
                Money::new(self.total_minor, self.currency)
                    .map_err(|_| OrderError::AmountTooLarge)?,
            )
            .ok_or(OrderError::AmountTooLarge)?;
        Ok(vec![OrderChange::ItemAdded {
            line_id: LineId::new(self.next_line),
            sku: sku.clone(),
            name: product.name.clone(),
            quantity: quantity.get(),
            unit_price_minor: product.unit_price.amount_minor(),
            line_total_minor: line_total.amount_minor(),
            order_total_minor: order_total.amount_minor(),
        }])
    }

    fn quantity_change(
        &self,
        line: &OrderLine,
        quantity: Quantity,
    ) -> Result<Vec<OrderChange>, OrderError> {
        let unit = Money::new(line.unit_price_minor, self.currency)
            .map_err(|_| OrderError::AmountTooLarge)?;
        let line_total = unit
            .times(quantity)
            .ok_or(OrderError::AmountTooLarge)?
            .amount_minor();
        let order_total = self.total_minor - line.line_total_minor + line_total;
        if order_total > Money::MAX_MINOR {
            return Err(OrderError::AmountTooLarge);
        }
        Ok(vec![OrderChange::ItemQuantityChanged {
            line_id: line.line_id,
            sku: line.sku.clone(),
            previous_quantity: line.quantity,
            quantity: quantity.get(),
            line_total_minor: line_total,
            order_total_minor: order_total,
        }])
    }
}

impl Order {
    fn apply_change(&mut self, change: &OrderChange) {
        if let OrderChange::OrderCreated {
            order_id,
            customer_id,
            store_id,
            currency,
            customer_email,
            shipping_address,
        } = change
        {
            self.state = Some(OrderState {
                id: *order_id,
                customer_id: customer_id.clone(),
                store_id: *store_id,
                currency: *currency,
                customer_email: customer_email.clone(),
                shipping_address: shipping_address.clone(),
                status: OrderStatus::Draft,
                lines: Vec::new(),
                next_line: 1,
                total_minor: 0,
                shipment: None,
                cancel_reason: None,
            });
            return;
        }
        // Events of an order that was never created cannot exist in a consistent log; applying
        // must not fail, so they are ignored rather than panicking.
        let Some(state) = self.state.as_mut() else {
            return;
        };
        if let Some(status) = change.resulting_status() {
            state.status = status;
        }
        match change {
            OrderChange::ItemAdded {
                line_id,
                sku,
                name,
                quantity,
                unit_price_minor,
                line_total_minor,
                order_total_minor,
            } => {
                state.lines.push(OrderLine {
                    line_id: *line_id,
                    sku: sku.clone(),
                    name: name.clone(),
                    quantity: *quantity,
                    unit_price_minor: *unit_price_minor,
                    line_total_minor: *line_total_minor,
                });
                state.next_line = state.next_line.max(line_id.get() + 1);
                state.total_minor = *order_total_minor;
            }
            OrderChange::ItemQuantityChanged {
                line_id,
                quantity,
                line_total_minor,
                order_total_minor,
                ..
            } => {
                if let Some(line) = state.lines.iter_mut().find(|l| l.line_id == *line_id) {
                    line.quantity = *quantity;
                    line.line_total_minor = *line_total_minor;
                }
                state.total_minor = *order_total_minor;
            }
            OrderChange::ItemRemoved {
                line_id,
                order_total_minor,
                ..
            } => {
                state.lines.retain(|l| l.line_id != *line_id);
                state.total_minor = *order_total_minor;
            }
            OrderChange::OrderShipped {
                carrier,
                tracking_number,
                ..
            } => {
                state.shipment = Some(Shipment {
                    carrier: carrier.clone(),
                    tracking_number: tracking_number.clone(),
                });
            }
            OrderChange::OrderCancelled { reason, .. } => {
                state.cancel_reason = Some(reason.to_string());
            }
            _ => {}
        }
    }
}

impl Aggregate for Order {
    const TYPE: &'static str = "Order";
    type Command = Envelope;
    type Event = OrderEvent;
    type Error = OrderError;
    /// Catalog facts the command needs, resolved beforehand (see [`Order::catalog_lookup`]).
    type Services = PriceList;

    async fn handle(
        &mut self,
        command: Self::Command,
        prices: &Self::Services,
        sink: &EventSink<Self>,
    ) -> Result<(), Self::Error> {
        if let Decision::Events(events) = self.decide(&command, prices)? {
            for event in events {
                sink.write(event, self).await;
            }
        }
        Ok(())
    }

    fn apply(&mut self, event: Self::Event) {
        self.version += 1;
        self.apply_change(&event.change);
        if let Some(mark) = event.command {
            if self.recent.len() == REMEMBERED_REQUESTS {
                self.recent.pop_front();
            }
            self.recent.push_back(Remembered {
                mark,
                version: self.version,
            });
        }
    }
}
