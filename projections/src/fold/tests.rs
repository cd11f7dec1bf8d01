//! Unit tests of [`super::Fold`]: batches folded in memory, checked row by row.

use std::collections::BTreeSet;

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
