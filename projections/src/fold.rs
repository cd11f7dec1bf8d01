//! The pure half of applying a batch: folds recorded events, in log order, into the state of
//! the orders and sagas they touch, and collects what changed as rows for the set-based writes
//! of [`crate::apply`]. No database here, so every rule of the read models (idempotency, gaps,
//! history, sales) is unit-tested in memory.
//!
//! What the fold cannot see exactly like SQL does stays in SQL: the line-derived columns
//! (`line_count`, `item_count`, and `order_search.search_text`, which lower-cases with the
//! database's locale) are recomputed from `order_lines` by the write, for every order whose
//! lines changed.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, NaiveDate, Utc};
use order_domain::{Email, Note, OrderChange, OrderStatus};
use uuid::Uuid;

use crate::apply::{Applied, ProjectionError, Recorded, SagaRecorded};

/// One line of an order, as `order_lines` holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Line {
    pub sku: String,
    pub name: String,
    pub quantity: i64,
    pub unit_price_minor: i64,
    pub line_total_minor: i64,
}

/// What the fold needs of an order's `order_summaries` row (and, when its events need them,
/// its `order_lines`), as the database holds it before the batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderRow {
    pub version: i64,
    pub status: String,
    pub store_id: Uuid,
    pub currency: String,
    pub total_minor: i64,
    pub confirmed_at: Option<DateTime<Utc>>,
    /// By `line_id`. Loaded only for orders that [`needs_lines`] says need them.
    pub lines: BTreeMap<i64, Line>,
}

/// Whether folding `change` into an order that exists before the batch reads or writes its
/// lines (so the loader must fetch them).
pub fn needs_lines(change: &OrderChange) -> bool {
    matches!(
        change,
        OrderChange::ItemAdded { .. }
            | OrderChange::ItemQuantityChanged { .. }
            | OrderChange::ItemRemoved { .. }
            | OrderChange::OrderConfirmed
            | OrderChange::OrderCancelled { .. }
    )
}

/// The columns of an order created in this batch that never change afterwards.
#[derive(Debug, Clone, PartialEq)]
pub struct Created {
    pub customer_id: String,
    pub customer_email: Option<String>,
    pub shipping_address: Option<serde_json::Value>,
    pub created_at: DateTime<Utc>,
}

/// Timestamp columns stamped in this batch (one per status).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stamps {
    pub placed_at: Option<DateTime<Utc>>,
    pub confirmed_at: Option<DateTime<Utc>>,
    pub rejected_at: Option<DateTime<Utc>>,
    pub preparing_at: Option<DateTime<Utc>>,
    pub ready_at: Option<DateTime<Utc>>,
    pub picked_up_at: Option<DateTime<Utc>>,
    pub shipped_at: Option<DateTime<Utc>>,
    pub delivered_at: Option<DateTime<Utc>>,
    pub cancelled_at: Option<DateTime<Utc>>,
    pub discarded_at: Option<DateTime<Utc>>,
}

/// An order the batch touched: its state after the batch's events, and which columns they set.
/// Columns left `None` here keep their stored value.
#[derive(Debug, Clone, PartialEq)]
pub struct OrderState {
    pub order_id: Uuid,
    pub row: OrderRow,
    /// Set when the batch created the order: it is inserted rather than updated.
    pub created: Option<Created>,
    /// An event of the batch was applied to it (it must be written).
    pub changed: bool,
    /// A line event was applied: the line-derived columns are recomputed.
    pub lines_changed: bool,
    /// Lines added or changed by the batch (upserted if still there at the end).
    pub dirty_lines: BTreeSet<i64>,
    /// Lines removed by the batch (deleted unless still there at the end).
    pub removed_lines: BTreeSet<i64>,
    pub updated_at: Option<DateTime<Utc>>,
    pub stamps: Stamps,
    pub carrier: Option<String>,
    pub tracking_number: Option<String>,
    pub cancel_reason: Option<String>,
    pub reject_reason: Option<String>,
}

impl OrderState {
    fn new(order_id: Uuid, row: OrderRow, created: Option<Created>) -> Self {
        Self {
            order_id,
            row,
            created,
            changed: false,
            lines_changed: false,
            dirty_lines: BTreeSet::new(),
            removed_lines: BTreeSet::new(),
            updated_at: None,
            stamps: Stamps::default(),
            carrier: None,
            tracking_number: None,
            cancel_reason: None,
            reject_reason: None,
        }
    }
}

/// One `order_status_history` row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistoryRow {
    pub order_id: Uuid,
    pub version: i64,
    pub status: &'static str,
    pub previous_status: Option<&'static str>,
    pub note: Option<String>,
    pub principal: Option<String>,
    pub recorded_at: DateTime<Utc>,
}

/// Key of `product_sales_daily`: store, day, SKU, currency.
pub type ProductSaleKey = (Uuid, NaiveDate, String, String);

/// What the batch adds to one `product_sales_daily` row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProductSale {
    /// The name of the last line counted (the row keeps the latest name).
    pub name: String,
    pub quantity: i64,
    pub revenue_minor: i64,
    pub orders: i64,
}

/// Key of `store_sales_daily`: store, day, currency.
pub type StoreSaleKey = (Uuid, NaiveDate, String);

/// What the batch adds to one `store_sales_daily` row.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StoreSale {
    pub orders: i64,
    pub revenue_minor: i64,
    pub cancellations: i64,
    pub rejections: i64,
}

/// A saga's `saga_progress` row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SagaRow {
    pub version: i64,
    pub status: String,
    pub deadline_at: Option<DateTime<Utc>>,
    pub last_event: String,
    pub attention: Option<String>,
    pub started_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// A saga the batch touched: its row after the batch, and whether the batch changed it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SagaState {
    pub row: SagaRow,
    pub changed: bool,
}

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
            let row = OrderRow {
                version: e.sequence,
                status: OrderStatus::Draft.as_str().to_owned(),
                store_id: store_id.as_uuid(),
                currency: currency.as_str().to_owned(),
                total_minor: 0,
                confirmed_at: None,
                lines: BTreeMap::new(),
            };
            let created = Created {
                customer_id: customer_id.as_str().to_owned(),
                customer_email: customer_email.as_ref().map(|m| Email::as_str(m).to_owned()),
                shipping_address: shipping_address
                    .as_ref()
                    .and_then(|a| serde_json::to_value(a).ok()),
                created_at: e.recorded_at,
            };
            let mut state = OrderState::new(e.order_id, row, Some(created));
            state.changed = true;
            state.updated_at = Some(e.recorded_at);
            self.orders.insert(e.order_id, state);
            self.history
                .push(history(e, OrderStatus::Draft, None, None));
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
        let at = e.recorded_at;
        let previous = OrderStatus::parse(&o.row.status);
        let moved = |o: &mut OrderState, to: OrderStatus, note: Option<&str>| {
            to.as_str().clone_into(&mut o.row.status);
            history(e, to, previous, note)
        };
        let mut step = None;
        let mut sales = Vec::new();
        let mut counter = None;
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
                let line_id = i64::from(line_id.get());
                if o.row.lines.contains_key(&line_id) {
                    return Err(ProjectionError::Inconsistent {
                        order_id: e.order_id,
                        sequence: e.sequence,
                        what: "adds a line the order already has",
                    });
                }
                o.row.lines.insert(
                    line_id,
                    Line {
                        sku: sku.as_str().to_owned(),
                        name: name.as_str().to_owned(),
                        quantity: i64::from(*quantity),
                        unit_price_minor: *unit_price_minor,
                        line_total_minor: *line_total_minor,
                    },
                );
                o.dirty_lines.insert(line_id);
                lines_changed(o, *order_total_minor);
            }
            OrderChange::ItemQuantityChanged {
                line_id,
                quantity,
                line_total_minor,
                order_total_minor,
                ..
            } => {
                let line_id = i64::from(line_id.get());
                // A change of a line the order does not have changes no line (as the
                // per-row update did), but the totals still follow the event.
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
            OrderChange::OrderPlaced { .. } => {
                o.stamps.placed_at = Some(at);
                step = Some(moved(o, OrderStatus::Placed, None));
            }
            OrderChange::OrderConfirmed => {
                sales.push(sale(o, e, day_of(at), 1)?);
                o.stamps.confirmed_at = Some(at);
                o.row.confirmed_at = Some(at);
                step = Some(moved(o, OrderStatus::Confirmed, None));
            }
            OrderChange::OrderRejected { reason } => {
                o.stamps.rejected_at = Some(at);
                o.reject_reason = Some(reason.as_str().to_owned());
                step = Some(moved(o, OrderStatus::Rejected, Some(reason.as_str())));
                counter = Some((Counter::Rejection, day_of(at)));
            }
            OrderChange::PreparationStarted { note } => {
                o.stamps.preparing_at = Some(at);
                step = Some(moved(o, OrderStatus::Preparing, note_str(note.as_ref())));
            }
            OrderChange::OrderReadyForPickup { note } => {
                o.stamps.ready_at = Some(at);
                step = Some(moved(
                    o,
                    OrderStatus::ReadyForPickup,
                    note_str(note.as_ref()),
                ));
            }
            OrderChange::OrderPickedUp { note } => {
                o.stamps.picked_up_at = Some(at);
                step = Some(moved(o, OrderStatus::PickedUp, note_str(note.as_ref())));
            }
            OrderChange::OrderShipped {
                carrier,
                tracking_number,
                note,
            } => {
                o.stamps.shipped_at = Some(at);
                o.carrier = Some(carrier.as_str().to_owned());
                o.tracking_number = Some(tracking_number.as_str().to_owned());
                step = Some(moved(o, OrderStatus::Shipped, note_str(note.as_ref())));
            }
            OrderChange::OrderDelivered { note } => {
                o.stamps.delivered_at = Some(at);
                step = Some(moved(o, OrderStatus::Delivered, note_str(note.as_ref())));
            }
            OrderChange::OrderCancelled { reason, .. } => {
                // A confirmed order counted as a sale on its confirmation day: take it back
                // there.
                if let Some(confirmed_at) = o.row.confirmed_at {
                    sales.push(sale(o, e, day_of(confirmed_at), -1)?);
                }
                o.stamps.cancelled_at = Some(at);
                o.cancel_reason = Some(reason.as_str().to_owned());
                step = Some(moved(o, OrderStatus::Cancelled, Some(reason.as_str())));
                counter = Some((Counter::Cancellation, day_of(at)));
            }
            OrderChange::DraftDiscarded => {
                o.stamps.discarded_at = Some(at);
                step = Some(moved(o, OrderStatus::Discarded, None));
            }
        }
        o.row.version = e.sequence;
        o.updated_at = Some(at);
        o.changed = true;
        let store_key = (o.row.store_id, o.row.currency.clone());
        if let Some(step) = step {
            self.history.push(step);
        }
        for sale in sales {
            self.count_sale(sale);
        }
        if let Some((counter, day)) = counter {
            let row = self
                .store_sales
                .entry((store_key.0, day, store_key.1))
                .or_default();
            match counter {
                Counter::Cancellation => row.cancellations += 1,
                Counter::Rejection => row.rejections += 1,
            }
        }
        Ok(Applied::Applied)
    }

    /// Adds one order's sale (or take-back) to the day's product and store rows.
    fn count_sale(&mut self, sale: Sale) {
        for (sku, name, quantity, revenue) in sale.lines {
            let key = (sale.store_id, sale.day, sku, sale.currency.clone());
            match self.product_sales.get_mut(&key) {
                Some(p) => {
                    p.name = name;
                    p.quantity += quantity;
                    p.revenue_minor += revenue;
                    p.orders += sale.sign;
                }
                None => {
                    self.product_sales.insert(
                        key,
                        ProductSale {
                            name,
                            quantity,
                            revenue_minor: revenue,
                            orders: sale.sign,
                        },
                    );
                }
            }
        }
        let store = self
            .store_sales
            .entry((sale.store_id, sale.day, sale.currency))
            .or_default();
        store.orders += sale.sign;
        store.revenue_minor += sale.sign * sale.total_minor;
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

/// A store counter of `store_sales_daily`.
enum Counter {
    Cancellation,
    Rejection,
}

/// An order's lines and total counted as sales of `day` (`sign` 1) or taken back (-1).
struct Sale {
    store_id: Uuid,
    day: NaiveDate,
    currency: String,
    sign: i64,
    total_minor: i64,
    /// SKU, name, quantity, revenue.
    lines: Vec<(String, String, i64, i64)>,
}

/// The sale of the order as it stands. Each SKU may appear once: the per-order upsert of
/// `product_sales_daily` could not count one row twice.
fn sale(
    o: &OrderState,
    e: &Recorded<'_>,
    day: NaiveDate,
    sign: i64,
) -> Result<Sale, ProjectionError> {
    let mut skus = BTreeSet::new();
    let mut lines = Vec::with_capacity(o.row.lines.len());
    for line in o.row.lines.values() {
        if !skus.insert(line.sku.as_str()) {
            return Err(ProjectionError::Inconsistent {
                order_id: e.order_id,
                sequence: e.sequence,
                what: "sells an order with two lines of the same SKU",
            });
        }
        lines.push((
            line.sku.clone(),
            line.name.clone(),
            sign * line.quantity,
            sign * line.line_total_minor,
        ));
    }
    Ok(Sale {
        store_id: o.row.store_id,
        day,
        currency: o.row.currency.clone(),
        sign,
        total_minor: o.row.total_minor,
        lines,
    })
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone as _;
    use order_domain::OrderEvent;
    use serde_json::json;

    use super::*;

    const STORE: Uuid = Uuid::from_u128(0x5707e);

    fn at(day: u32, minute: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 3, day, 10, minute, 0)
            .single()
            .expect("a valid time")
    }

    fn event(change: serde_json::Value) -> OrderEvent {
        serde_json::from_value(change).expect("an order event")
    }

    fn created(order: Uuid) -> OrderEvent {
        event(
            json!({"type": "OrderCreated", "order_id": order, "customer_id": "c-1",
                     "store_id": STORE, "currency": "EUR", "customer_email": "Ann@Example.com"}),
        )
    }

    fn added(line: u32, sku: &str, name: &str, quantity: u32, unit: i64, total: i64) -> OrderEvent {
        event(
            json!({"type": "ItemAdded", "line_id": line, "sku": sku, "name": name,
                     "quantity": quantity, "unit_price_minor": unit,
                     "line_total_minor": i64::from(quantity) * unit, "order_total_minor": total}),
        )
    }

    fn step(kind: &str) -> OrderEvent {
        event(json!({"type": kind}))
    }

    fn cancelled(previous: &str) -> OrderEvent {
        event(
            json!({"type": "OrderCancelled", "reason": "changed my mind",
                     "previous_status": previous}),
        )
    }

    fn rec(order: Uuid, sequence: i64, event: &OrderEvent, t: DateTime<Utc>) -> Recorded<'_> {
        Recorded {
            order_id: order,
            sequence,
            event,
            recorded_at: t,
            principal: Some("staff-1"),
        }
    }

    /// The row of an order that exists before the batch, at `version`, placed, with one line.
    fn placed_row(version: i64, confirmed_at: Option<DateTime<Utc>>) -> OrderRow {
        OrderRow {
            version,
            status: if confirmed_at.is_some() {
                "confirmed"
            } else {
                "placed"
            }
            .to_owned(),
            store_id: STORE,
            currency: "EUR".to_owned(),
            total_minor: 600,
            confirmed_at,
            lines: BTreeMap::from([(
                1,
                Line {
                    sku: "TEA".to_owned(),
                    name: "Green tea".to_owned(),
                    quantity: 2,
                    unit_price_minor: 300,
                    line_total_minor: 600,
                },
            )]),
        }
    }

    fn existing(order: Uuid, row: OrderRow) -> Fold {
        Fold::new(BTreeMap::from([(order, row)]), BTreeMap::new())
    }

    #[test]
    fn several_events_of_one_order_in_one_batch_end_in_its_last_state() {
        // Arrange
        let order = Uuid::from_u128(1);
        let events = [
            created(order),
            added(1, "TEA", "Green tea", 2, 300, 600),
            added(2, "CAKE", "Cheesecake", 1, 450, 1050),
            event(
                json!({"type": "ItemQuantityChanged", "line_id": 1, "sku": "TEA",
                         "previous_quantity": 2, "quantity": 3, "line_total_minor": 900,
                         "order_total_minor": 1350}),
            ),
            event(json!({"type": "ItemRemoved", "line_id": 2, "sku": "CAKE",
                         "order_total_minor": 900})),
            event(
                json!({"type": "OrderPlaced", "customer_id": "c-1", "store_id": STORE,
                         "currency": "EUR", "total_minor": 900, "lines": []}),
            ),
            step("OrderConfirmed"),
        ];
        let mut fold = Fold::default();

        // Act
        let outcomes: Vec<Applied> = events
            .iter()
            .zip(1..)
            .map(|(e, seq)| fold.order(&rec(order, seq, e, at(2, u32::try_from(seq).unwrap()))))
            .collect::<Result<_, _>>()
            .expect("applies");

        // Assert
        assert_eq!(outcomes, vec![Applied::Applied; 7]);
        let o = &fold.orders[&order];
        assert_eq!(o.row.version, 7);
        assert_eq!(o.row.status, "confirmed");
        assert_eq!(o.row.total_minor, 900);
        assert_eq!(o.row.lines.keys().copied().collect::<Vec<_>>(), vec![1]);
        assert_eq!(o.row.lines[&1].quantity, 3);
        assert!(o.lines_changed && o.changed);
        assert_eq!(o.dirty_lines, BTreeSet::from([1]));
        assert_eq!(o.removed_lines, BTreeSet::from([2]));
        let c = o.created.as_ref().expect("created in the batch");
        assert_eq!(c.created_at, at(2, 1));
        assert_eq!(c.customer_email.as_deref(), Some("Ann@Example.com"));
        assert_eq!(o.updated_at, Some(at(2, 7)));
        assert_eq!(o.stamps.placed_at, Some(at(2, 6)));
        assert_eq!(o.stamps.confirmed_at, Some(at(2, 7)));
        let steps: Vec<_> = fold
            .history
            .iter()
            .map(|h| (h.version, h.status, h.previous_status))
            .collect();
        assert_eq!(
            steps,
            vec![
                (1, "draft", None),
                (6, "placed", Some("draft")),
                (7, "confirmed", Some("placed")),
            ]
        );
        assert!(fold
            .history
            .iter()
            .all(|h| h.principal.as_deref() == Some("staff-1")));
        let day = at(2, 0).date_naive();
        let tea = &fold.product_sales[&(STORE, day, "TEA".to_owned(), "EUR".to_owned())];
        assert_eq!((tea.quantity, tea.revenue_minor, tea.orders), (3, 900, 1));
        assert_eq!(fold.product_sales.len(), 1, "the removed line was not sold");
        let store = &fold.store_sales[&(STORE, day, "EUR".to_owned())];
        assert_eq!(
            store,
            &StoreSale {
                orders: 1,
                revenue_minor: 900,
                ..StoreSale::default()
            }
        );
    }

    #[test]
    fn events_at_or_below_the_version_are_duplicates_that_change_nothing() {
        // Arrange: the order is at version 3; the batch repeats 2 and 3, then brings 4 twice.
        let order = Uuid::from_u128(2);
        let mut fold = existing(order, placed_row(3, None));
        let before = fold.orders[&order].clone();
        let old = added(1, "TEA", "Green tea", 2, 300, 600);
        let placed = event(json!({"type": "OrderPlaced", "customer_id": "c-1",
                                  "store_id": STORE, "currency": "EUR", "total_minor": 600,
                                  "lines": []}));
        let confirmed = step("OrderConfirmed");
        let create = created(order);

        // Act
        let repeats = [
            fold.order(&rec(order, 1, &create, at(3, 0))),
            fold.order(&rec(order, 2, &old, at(3, 1))),
            fold.order(&rec(order, 3, &placed, at(3, 2))),
        ]
        .map(|r| r.expect("a duplicate is no error"));
        let unchanged = fold.orders[&order].clone();
        let first = fold.order(&rec(order, 4, &confirmed, at(3, 3))).expect("4");
        let again = fold
            .order(&rec(order, 4, &confirmed, at(3, 4)))
            .expect("4 again");

        // Assert
        assert_eq!(repeats, [Applied::Duplicate; 3]);
        assert_eq!(unchanged, before);
        assert_eq!((first, again), (Applied::Applied, Applied::Duplicate));
        assert_eq!(fold.history.len(), 1, "one confirmation in the history");
        let sales = &fold.store_sales[&(STORE, at(3, 0).date_naive(), "EUR".to_owned())];
        assert_eq!(
            (sales.orders, sales.revenue_minor),
            (1, 600),
            "counted once"
        );
        assert_eq!(fold.orders[&order].updated_at, Some(at(3, 3)));
    }

    #[test]
    fn an_event_beyond_the_next_version_is_a_gap_and_changes_nothing() {
        // Arrange
        let order = Uuid::from_u128(3);
        let unknown = Uuid::from_u128(4);
        let mut fold = existing(order, placed_row(3, None));
        let confirmed = step("OrderConfirmed");
        let prepared = event(json!({"type": "PreparationStarted"}));

        // Act
        let skipped = fold.order(&rec(order, 5, &confirmed, at(4, 0)));
        let never_created = fold.order(&rec(unknown, 2, &confirmed, at(4, 0)));
        fold.order(&rec(order, 4, &confirmed, at(4, 1)))
            .expect("the next one applies");
        let after_progress = fold.order(&rec(order, 6, &prepared, at(4, 2)));

        // Assert
        assert!(
            matches!(
                skipped,
                Err(ProjectionError::Gap {
                    sequence: 5,
                    version: 3,
                    ..
                })
            ),
            "{skipped:?}"
        );
        assert!(
            matches!(
                never_created,
                Err(ProjectionError::Gap {
                    sequence: 2,
                    version: 0,
                    ..
                })
            ),
            "{never_created:?}"
        );
        assert!(
            matches!(
                after_progress,
                Err(ProjectionError::Gap {
                    sequence: 6,
                    version: 4,
                    ..
                })
            ),
            "the gap is measured against the batch's own progress: {after_progress:?}"
        );
        assert_eq!(fold.orders[&order].row.version, 4);
        assert_eq!(fold.history.len(), 1);
    }

    #[test]
    fn sales_of_a_batch_add_up_per_store_day_and_sku_and_a_cancellation_takes_back_its_day() {
        // Arrange: two new orders sell TEA on day 5; an order confirmed on day 1 is cancelled
        // on day 5; a fourth order is rejected.
        let (a, b, c, d) = (
            Uuid::from_u128(10),
            Uuid::from_u128(11),
            Uuid::from_u128(12),
            Uuid::from_u128(13),
        );
        let mut fold = Fold::new(
            BTreeMap::from([(c, placed_row(4, Some(at(1, 0)))), (d, placed_row(3, None))]),
            BTreeMap::new(),
        );
        let placed = event(json!({"type": "OrderPlaced", "customer_id": "c-1",
                                  "store_id": STORE, "currency": "EUR", "total_minor": 0,
                                  "lines": []}));
        let (ca, cb) = (created(a), created(b));
        let tea_a = added(1, "TEA", "Green tea", 1, 300, 300);
        let tea_b = added(1, "TEA", "Green tea (new name)", 4, 300, 1500);
        let cake_b = added(2, "CAKE", "Cheesecake", 1, 300, 1500);
        let confirmed = step("OrderConfirmed");
        let cancel = cancelled("confirmed");
        let reject = event(json!({"type": "OrderRejected", "reason": "out of stock"}));
        let batch = [
            rec(a, 1, &ca, at(5, 0)),
            rec(b, 1, &cb, at(5, 0)),
            rec(a, 2, &tea_a, at(5, 1)),
            rec(b, 2, &tea_b, at(5, 1)),
            rec(b, 3, &cake_b, at(5, 1)),
            rec(a, 3, &placed, at(5, 2)),
            rec(b, 4, &placed, at(5, 2)),
            rec(a, 4, &confirmed, at(5, 3)),
            rec(c, 5, &cancel, at(5, 4)),
            rec(b, 5, &confirmed, at(5, 5)),
            rec(d, 4, &reject, at(5, 6)),
        ];

        // Act
        for e in &batch {
            fold.order(e).expect("applies");
        }

        // Assert
        let (day1, day5) = (at(1, 0).date_naive(), at(5, 0).date_naive());
        let key = |day, sku: &str| (STORE, day, sku.to_owned(), "EUR".to_owned());
        let tea = &fold.product_sales[&key(day5, "TEA")];
        assert_eq!(
            tea,
            &ProductSale {
                name: "Green tea (new name)".to_owned(),
                quantity: 5,
                revenue_minor: 1500,
                orders: 2,
            },
            "one row per store, day and SKU, named after the last sale"
        );
        assert_eq!(fold.product_sales[&key(day5, "CAKE")].orders, 1);
        let back = &fold.product_sales[&key(day1, "TEA")];
        assert_eq!(
            (back.quantity, back.revenue_minor, back.orders),
            (-2, -600, -1)
        );
        let store = |day| &fold.store_sales[&(STORE, day, "EUR".to_owned())];
        assert_eq!(
            store(day5),
            &StoreSale {
                orders: 2,
                revenue_minor: 300 + 1500,
                cancellations: 1,
                rejections: 1,
            }
        );
        assert_eq!(
            store(day1),
            &StoreSale {
                orders: -1,
                revenue_minor: -600,
                ..StoreSale::default()
            }
        );
        assert_eq!(
            fold.orders[&c].cancel_reason.as_deref(),
            Some("changed my mind")
        );
        assert_eq!(
            fold.orders[&d].reject_reason.as_deref(),
            Some("out of stock")
        );
        let history_of_c: Vec<_> = fold
            .history
            .iter()
            .filter(|h| h.order_id == c)
            .map(|h| (h.status, h.previous_status, h.note.as_deref()))
            .collect();
        assert_eq!(
            history_of_c,
            vec![("cancelled", Some("confirmed"), Some("changed my mind"))]
        );
    }

    #[test]
    fn a_cancellation_before_confirmation_takes_no_sale_back() {
        let order = Uuid::from_u128(20);
        let mut fold = existing(order, placed_row(4, None));
        let cancel = cancelled("placed");

        fold.order(&rec(order, 5, &cancel, at(6, 0)))
            .expect("applies");

        assert!(fold.product_sales.is_empty());
        assert_eq!(
            fold.store_sales[&(STORE, at(6, 0).date_naive(), "EUR".to_owned())],
            StoreSale {
                cancellations: 1,
                ..StoreSale::default()
            }
        );
    }

    #[test]
    fn a_created_order_that_already_exists_is_a_duplicate() {
        let order = Uuid::from_u128(30);
        let mut fold = existing(order, placed_row(4, None));
        let create = created(order);

        let outcome = fold
            .order(&rec(order, 1, &create, at(7, 0)))
            .expect("no error");

        assert_eq!(outcome, Applied::Duplicate);
        assert!(fold.history.is_empty() && !fold.orders[&order].changed);
    }

    #[test]
    fn a_line_added_twice_is_refused_like_the_key_of_order_lines_refuses_it() {
        let order = Uuid::from_u128(40);
        let mut fold = existing(order, placed_row(4, None));
        let again = added(1, "TEA", "Green tea", 1, 300, 900);

        let outcome = fold.order(&rec(order, 5, &again, at(8, 0)));

        assert!(
            matches!(
                outcome,
                Err(ProjectionError::Inconsistent { sequence: 5, .. })
            ),
            "{outcome:?}"
        );
        assert_eq!(fold.orders[&order].row.version, 4);
    }

    fn saga(
        order: Uuid,
        sequence: i64,
        status: &'static str,
        t: DateTime<Utc>,
    ) -> SagaRecorded<'static> {
        SagaRecorded {
            order_id: order,
            sequence,
            event_type: "SagaStep",
            status,
            deadline_at: None,
            attention: None,
            recorded_at: t,
        }
    }

    #[test]
    fn saga_events_follow_the_version_and_keep_attention_only_while_it_is_needed() {
        // Arrange
        let id = Uuid::from_u128(50);
        let mut fold = Fold::default();
        let needs = SagaRecorded {
            attention: Some("payment stuck"),
            ..saga(id, 3, "needs_attention", at(9, 2))
        };

        // Act
        let first = fold.saga(&saga(id, 1, "reserving_stock", at(9, 0)));
        let second = fold.saga(&saga(id, 2, "authorizing_payment", at(9, 1)));
        let repeat = fold.saga(&saga(id, 2, "authorizing_payment", at(9, 1)));
        let third = fold.saga(&needs);
        let still = fold.saga(&saga(id, 4, "needs_attention", at(9, 3)));
        let kept = fold.sagas[&id].row.attention.clone();
        let resolved = fold.saga(&saga(id, 5, "completed", at(9, 4)));
        let gap = fold.saga(&saga(id, 7, "completed", at(9, 5)));

        // Assert
        for applied in [first, second, third, still, resolved] {
            assert_eq!(applied.expect("applies"), Applied::Applied);
        }
        assert_eq!(repeat.expect("duplicate"), Applied::Duplicate);
        assert_eq!(kept.as_deref(), Some("payment stuck"));
        assert!(
            matches!(
                gap,
                Err(ProjectionError::Gap {
                    sequence: 7,
                    version: 5,
                    ..
                })
            ),
            "{gap:?}"
        );
        let row = &fold.sagas[&id].row;
        assert_eq!((row.version, row.status.as_str()), (5, "completed"));
        assert_eq!(row.attention, None);
        assert_eq!((row.started_at, row.updated_at), (at(9, 0), at(9, 4)));
    }
}
