//! The pure half of applying a batch: folds recorded events, in log order, into the state of
//! the orders and sagas they touch ([`crate::rows`]), and collects what changed as rows for the
//! set-based writes of [`crate::apply`]. No database here, so every rule of the read models
//! (idempotency, gaps, history, sales) is unit-tested in memory.
//!
//! What the fold cannot see exactly like SQL does stays in SQL: the line-derived columns
//! (`line_count`, `item_count`, and `order_search.search_text`, which lower-cases with the
//! database's locale) are recomputed from `order_lines` by the write, for every order whose
//! lines changed.

use std::collections::BTreeMap;

use chrono::{DateTime, NaiveDate, Utc};
use order_domain::{Email, Note, OrderChange, OrderStatus};
use uuid::Uuid;

use crate::record::{Applied, ProjectionError, Recorded, SagaRecorded};
use crate::rows::{
    Created, HistoryRow, Line, OrderRow, OrderState, ProductSale, ProductSaleKey, SagaRow,
    SagaState, StoreSale, StoreSaleKey,
};
use crate::sales::{Counter, Sale};

/// A batch folded in memory: the touched orders and sagas, and the rows to add.
#[derive(Debug, Default)]
pub struct Fold {
    pub orders: BTreeMap<Uuid, OrderState>,
    pub history: Vec<HistoryRow>,
    pub product_sales: BTreeMap<ProductSaleKey, ProductSale>,
    pub store_sales: BTreeMap<StoreSaleKey, StoreSale>,
    pub sagas: BTreeMap<Uuid, SagaState>,
}

impl Fold {
    /// A fold over the rows the database holds for the orders and sagas of the batch (those
    /// missing from the maps have no row yet).
    pub fn new(orders: BTreeMap<Uuid, OrderRow>, sagas: BTreeMap<Uuid, SagaRow>) -> Self {
        Self {
            orders: orders
                .into_iter()
                .map(|(id, row)| (id, OrderState::new(id, row, None)))
                .collect(),
            sagas: sagas
                .into_iter()
                .map(|(id, row)| {
                    (
                        id,
                        SagaState {
                            row,
                            changed: false,
                        },
                    )
                })
                .collect(),
            ..Self::default()
        }
    }

    /// Folds one order event. An event at or below the order's version is a duplicate (nothing
    /// changes); one beyond `version + 1`, or for an order that was never created, is a gap.
    pub fn order(&mut self, e: &Recorded<'_>) -> Result<Applied, ProjectionError> {
        if let OrderChange::OrderCreated {
            order_id: _,
            customer_id,
            store_id,
            currency,
            customer_email,
            shipping_address,
        } = &e.event.change
        {
            if self.orders.contains_key(&e.order_id) {
                return Ok(Applied::Duplicate);
            }
            let created = Created {
                customer_id: customer_id.as_str().to_owned(),
                customer_email: customer_email.as_ref().map(|m| Email::as_str(m).to_owned()),
                shipping_address: shipping_address
                    .as_ref()
                    .and_then(|a| serde_json::to_value(a).ok()),
                created_at: e.recorded_at,
            };
            self.create(e, store_id.as_uuid(), currency.as_str(), created);
            return Ok(Applied::Applied);
        }
        let Some(o) = self.orders.get_mut(&e.order_id) else {
            return Err(ProjectionError::Gap {
                order_id: e.order_id,
                sequence: e.sequence,
                version: 0,
            });
        };
        if o.row.version >= e.sequence {
            return Ok(Applied::Duplicate);
        }
        if o.row.version != e.sequence - 1 {
            return Err(ProjectionError::Gap {
                order_id: e.order_id,
                sequence: e.sequence,
                version: o.row.version,
            });
        }
        // Everything the event needs is checked before anything changes: an error leaves the
        // fold as it was.
        let effects = fold_change(o, e)?;
        o.row.version = e.sequence;
        o.updated_at = Some(e.recorded_at);
        o.changed = true;
        let (store_id, currency) = (o.row.store_id, o.row.currency.clone());
        if let Some(step) = effects.step {
            self.history.push(step);
        }
        for sale in effects.sales {
            sale.count_into(&mut self.product_sales, &mut self.store_sales);
        }
        if let Some((counter, day)) = effects.counter {
            counter.count_into((store_id, day, currency), &mut self.store_sales);
        }
        Ok(Applied::Applied)
    }

    /// Adds the order an `OrderCreated` starts: in draft, with no lines yet.
    fn create(&mut self, e: &Recorded<'_>, store_id: Uuid, currency: &str, created: Created) {
        let row = OrderRow {
            version: e.sequence,
            status: OrderStatus::Draft.as_str().to_owned(),
            store_id,
            currency: currency.to_owned(),
            total_minor: 0,
            confirmed_at: None,
            lines: BTreeMap::new(),
        };
        let mut state = OrderState::new(e.order_id, row, Some(created));
        state.changed = true;
        state.updated_at = Some(e.recorded_at);
        self.orders.insert(e.order_id, state);
        self.history
            .push(history(e, OrderStatus::Draft, None, None));
    }

    /// Folds one saga event into `saga_progress`. The first event of a saga without a row
    /// starts it whatever its sequence; later ones must follow the stored version.
    pub fn saga(&mut self, e: &SagaRecorded<'_>) -> Result<Applied, ProjectionError> {
        let Some(s) = self.sagas.get_mut(&e.order_id) else {
            self.sagas.insert(
                e.order_id,
                SagaState {
                    row: SagaRow {
                        version: e.sequence,
                        status: e.status.to_owned(),
                        deadline_at: e.deadline_at,
                        last_event: e.event_type.to_owned(),
                        attention: e.attention.map(str::to_owned),
                        started_at: e.recorded_at,
                        updated_at: e.recorded_at,
                    },
                    changed: true,
                },
            );
            return Ok(Applied::Applied);
        };
        if s.row.version == e.sequence - 1 {
            // The reason a saga needs a human is kept while it does, and only then.
            let attention = if e.status == "needs_attention" {
                e.attention.map(str::to_owned).or(s.row.attention.take())
            } else {
                None
            };
            s.row = SagaRow {
                version: e.sequence,
                status: e.status.to_owned(),
                deadline_at: e.deadline_at,
                last_event: e.event_type.to_owned(),
                attention,
                started_at: s.row.started_at,
                updated_at: e.recorded_at,
            };
            s.changed = true;
            Ok(Applied::Applied)
        } else if s.row.version >= e.sequence {
            Ok(Applied::Duplicate)
        } else {
            Err(ProjectionError::Gap {
                order_id: e.order_id,
                sequence: e.sequence,
                version: s.row.version,
            })
        }
    }
}

/// What folding one event into its order adds to the batch's other rows.
#[derive(Default)]
struct Effects {
    /// The status step, for `order_status_history`.
    step: Option<HistoryRow>,
    /// Sales counted (or taken back) by the event.
    sales: Vec<Sale>,
    /// A store counter the event raises, and the day it counts on.
    counter: Option<(Counter, NaiveDate)>,
}

/// Folds an event of an existing order into its state: line events here, status events in
/// [`fold_step`]. Fails, before changing anything, when the event contradicts the state.
fn fold_change(o: &mut OrderState, e: &Recorded<'_>) -> Result<Effects, ProjectionError> {
    match &e.event.change {
        OrderChange::OrderCreated { .. } => {}
        OrderChange::ItemAdded {
            line_id,
            sku,
            name,
            quantity,
            unit_price_minor,
            line_total_minor,
            order_total_minor,
        } => {
            let line = Line {
                sku: sku.as_str().to_owned(),
                name: name.as_str().to_owned(),
                quantity: i64::from(*quantity),
                unit_price_minor: *unit_price_minor,
                line_total_minor: *line_total_minor,
            };
            add_line(o, e, i64::from(line_id.get()), line, *order_total_minor)?;
        }
        OrderChange::ItemQuantityChanged {
            line_id,
            quantity,
            line_total_minor,
            order_total_minor,
            ..
        } => {
            let line_id = i64::from(line_id.get());
            // A change of a line the order does not have changes no line (as the per-row
            // update did), but the totals still follow the event.
            if let Some(line) = o.row.lines.get_mut(&line_id) {
                line.quantity = i64::from(*quantity);
                line.line_total_minor = *line_total_minor;
                o.dirty_lines.insert(line_id);
            }
            lines_changed(o, *order_total_minor);
        }
        OrderChange::ItemRemoved {
            line_id,
            order_total_minor,
            ..
        } => {
            let line_id = i64::from(line_id.get());
            if o.row.lines.remove(&line_id).is_some() {
                o.dirty_lines.remove(&line_id);
                o.removed_lines.insert(line_id);
            }
            lines_changed(o, *order_total_minor);
        }
        OrderChange::OrderPlaced { .. }
        | OrderChange::OrderConfirmed
        | OrderChange::OrderRejected { .. }
        | OrderChange::PreparationStarted { .. }
        | OrderChange::OrderReadyForPickup { .. }
        | OrderChange::OrderPickedUp { .. }
        | OrderChange::OrderShipped { .. }
        | OrderChange::OrderDelivered { .. }
        | OrderChange::OrderCancelled { .. }
        | OrderChange::DraftDiscarded => return fold_step(o, e),
    }
    Ok(Effects::default())
}

/// Adds a line; a line the order already has is refused, as the key of `order_lines` would.
fn add_line(
    o: &mut OrderState,
    e: &Recorded<'_>,
    line_id: i64,
    line: Line,
    order_total_minor: i64,
) -> Result<(), ProjectionError> {
    if o.row.lines.contains_key(&line_id) {
        return Err(ProjectionError::Inconsistent {
            order_id: e.order_id,
            sequence: e.sequence,
            what: "adds a line the order already has",
        });
    }
    o.row.lines.insert(line_id, line);
    o.dirty_lines.insert(line_id);
    lines_changed(o, order_total_minor);
    Ok(())
}

/// Folds a status event: the new status and its timestamp, the history step, and the sales
/// and store counters the move implies.
fn fold_step(o: &mut OrderState, e: &Recorded<'_>) -> Result<Effects, ProjectionError> {
    let at = e.recorded_at;
    let previous = OrderStatus::parse(&o.row.status);
    let moved = |o: &mut OrderState, to: OrderStatus, note: Option<&str>| {
        to.as_str().clone_into(&mut o.row.status);
        Some(history(e, to, previous, note))
    };
    let mut fx = Effects::default();
    match &e.event.change {
        OrderChange::OrderPlaced { .. } => {
            o.stamps.placed_at = Some(at);
            fx.step = moved(o, OrderStatus::Placed, None);
        }
        OrderChange::OrderConfirmed => {
            fx.sales.push(Sale::of(o, e, day_of(at), 1)?);
            o.stamps.confirmed_at = Some(at);
            o.row.confirmed_at = Some(at);
            fx.step = moved(o, OrderStatus::Confirmed, None);
        }
        OrderChange::OrderRejected { reason } => {
            o.stamps.rejected_at = Some(at);
            o.reject_reason = Some(reason.as_str().to_owned());
            fx.step = moved(o, OrderStatus::Rejected, Some(reason.as_str()));
            fx.counter = Some((Counter::Rejection, day_of(at)));
        }
        OrderChange::PreparationStarted { note } => {
            o.stamps.preparing_at = Some(at);
            fx.step = moved(o, OrderStatus::Preparing, note_str(note.as_ref()));
        }
        OrderChange::OrderReadyForPickup { note } => {
            o.stamps.ready_at = Some(at);
            fx.step = moved(o, OrderStatus::ReadyForPickup, note_str(note.as_ref()));
        }
        OrderChange::OrderPickedUp { note } => {
            o.stamps.picked_up_at = Some(at);
            fx.step = moved(o, OrderStatus::PickedUp, note_str(note.as_ref()));
        }
        OrderChange::OrderShipped {
            carrier,
            tracking_number,
            note,
        } => {
            o.stamps.shipped_at = Some(at);
            o.carrier = Some(carrier.as_str().to_owned());
            o.tracking_number = Some(tracking_number.as_str().to_owned());
            fx.step = moved(o, OrderStatus::Shipped, note_str(note.as_ref()));
        }
        OrderChange::OrderDelivered { note } => {
            o.stamps.delivered_at = Some(at);
            fx.step = moved(o, OrderStatus::Delivered, note_str(note.as_ref()));
        }
        OrderChange::OrderCancelled { reason, .. } => {
            // A confirmed order counted as a sale on its confirmation day: take it back there.
            if let Some(confirmed_at) = o.row.confirmed_at {
                fx.sales.push(Sale::of(o, e, day_of(confirmed_at), -1)?);
            }
            o.stamps.cancelled_at = Some(at);
            o.cancel_reason = Some(reason.as_str().to_owned());
            fx.step = moved(o, OrderStatus::Cancelled, Some(reason.as_str()));
            fx.counter = Some((Counter::Cancellation, day_of(at)));
        }
        OrderChange::DraftDiscarded => {
            o.stamps.discarded_at = Some(at);
            fx.step = moved(o, OrderStatus::Discarded, None);
        }
        // Not status events: folded by `fold_change`, or by `Fold::create`.
        OrderChange::OrderCreated { .. }
        | OrderChange::ItemAdded { .. }
        | OrderChange::ItemQuantityChanged { .. }
        | OrderChange::ItemRemoved { .. } => {}
    }
    Ok(fx)
}

fn day_of(t: DateTime<Utc>) -> NaiveDate {
    t.date_naive()
}

fn note_str(note: Option<&Note>) -> Option<&str> {
    note.map(Note::as_str)
}

fn history(
    e: &Recorded<'_>,
    to: OrderStatus,
    previous: Option<OrderStatus>,
    note: Option<&str>,
) -> HistoryRow {
    HistoryRow {
        order_id: e.order_id,
        version: e.sequence,
        status: to.as_str(),
        previous_status: previous.map(OrderStatus::as_str),
        note: note.map(str::to_owned),
        principal: e.principal.map(str::to_owned),
        recorded_at: e.recorded_at,
    }
}

/// A line event: the order's total follows the event; the line-derived columns are recomputed
/// from the lines when the batch is written.
fn lines_changed(o: &mut OrderState, order_total_minor: i64) {
    o.row.total_minor = order_total_minor;
    o.lines_changed = true;
}

#[cfg(test)]
mod tests;
