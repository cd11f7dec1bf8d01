//! Given / when / then tests of the `Order` aggregate: every allowed transition, every refusal.

use cqrs_es::test::TestFramework;
use order_domain::*;
use uuid::Uuid;

type Given = Vec<OrderEvent>;

fn eur() -> Currency {
    Currency::parse("EUR").unwrap()
}
fn sku(s: &str) -> Sku {
    Sku::parse(s).unwrap()
}
fn qty(n: i64) -> Quantity {
    Quantity::parse(n).unwrap()
}
fn order_id() -> OrderId {
    OrderId::from_uuid(Uuid::from_u128(1))
}
fn store_id() -> StoreId {
    StoreId::from_uuid(Uuid::from_u128(2))
}
fn reason(s: &str) -> Reason {
    Reason::parse(s).unwrap()
}

fn prices() -> PriceList {
    PriceList::new()
        .with(
            sku("TEA"),
            CatalogProduct {
                name: ProductName::parse("Green tea").unwrap(),
                unit_price: Money::new(450, eur()).unwrap(),
                active: true,
            },
        )
        .with(
            sku("CAKE"),
            CatalogProduct {
                name: ProductName::parse("Cheesecake").unwrap(),
                unit_price: Money::new(300, eur()).unwrap(),
                active: true,
            },
        )
        .with(
            sku("OLD"),
            CatalogProduct {
                name: ProductName::parse("Retired").unwrap(),
                unit_price: Money::new(100, eur()).unwrap(),
                active: false,
            },
        )
        .with(
            sku("DOLLAR"),
            CatalogProduct {
                name: ProductName::parse("Import").unwrap(),
                unit_price: Money::new(100, Currency::parse("USD").unwrap()).unwrap(),
                active: true,
            },
        )
        .with(
            sku("GOLD"),
            CatalogProduct {
                name: ProductName::parse("Gold bar").unwrap(),
                unit_price: Money::new(Money::MAX_MINOR, eur()).unwrap(),
                active: true,
            },
        )
}

fn order() -> TestFramework<Order> {
    TestFramework::with(prices())
}

fn cmd(c: OrderCommand) -> Envelope {
    c.into()
}

fn create_command(items: Vec<NewItem>) -> OrderCommand {
    OrderCommand::CreateOrder(Box::new(CreateOrder {
        order_id: order_id(),
        customer_id: CustomerId::parse("cust-1").unwrap(),
        store_id: store_id(),
        currency: eur(),
        customer_email: Some(Email::parse("ada@example.com").unwrap()),
        shipping_address: None,
        items,
    }))
}

fn created() -> OrderChange {
    OrderChange::OrderCreated {
        order_id: order_id(),
        customer_id: CustomerId::parse("cust-1").unwrap(),
        store_id: store_id(),
        currency: eur(),
        customer_email: Some(Email::parse("ada@example.com").unwrap()),
        shipping_address: None,
    }
}

fn tea_added(quantity: u32, order_total: i64) -> OrderChange {
    OrderChange::ItemAdded {
        line_id: LineId::new(1),
        sku: sku("TEA"),
        name: ProductName::parse("Green tea").unwrap(),
        quantity,
        unit_price_minor: 450,
        line_total_minor: 450 * i64::from(quantity),
        order_total_minor: order_total,
    }
}

fn placed() -> OrderChange {
    OrderChange::OrderPlaced {
        customer_id: CustomerId::parse("cust-1").unwrap(),
        store_id: store_id(),
        currency: eur(),
        total_minor: 900,
        lines: vec![LineSnapshot {
            line_id: LineId::new(1),
            sku: sku("TEA"),
            name: ProductName::parse("Green tea").unwrap(),
            quantity: 2,
            unit_price_minor: 450,
            line_total_minor: 900,
        }],
    }
}

fn ev(changes: Vec<OrderChange>) -> Given {
    changes.into_iter().map(OrderEvent::from).collect()
}

fn draft() -> Given {
    ev(vec![created(), tea_added(2, 900)])
}
fn in_status(status: OrderStatus) -> Given {
    use OrderStatus as S;
    let mut changes = vec![created(), tea_added(2, 900)];
    let path: &[OrderChange] = &[
        placed(),
        OrderChange::OrderConfirmed,
        OrderChange::PreparationStarted { note: None },
        OrderChange::OrderReadyForPickup { note: None },
    ];
    let steps = match status {
        S::Draft => 0,
        S::Placed => 1,
        S::Confirmed => 2,
        S::Preparing => 3,
        S::ReadyForPickup => 4,
        S::Rejected => {
            changes.push(placed());
            changes.push(OrderChange::OrderRejected {
                reason: reason("no stock"),
            });
            return ev(changes);
        }
        S::PickedUp => {
            changes.extend_from_slice(path);
            changes.push(OrderChange::OrderPickedUp { note: None });
            return ev(changes);
        }
        S::Shipped | S::Delivered => {
            changes.extend_from_slice(&path[..3]);
            changes.push(shipped());
            if status == S::Delivered {
                changes.push(OrderChange::OrderDelivered { note: None });
            }
            return ev(changes);
        }
        S::Cancelled => {
            changes.push(placed());
            changes.push(OrderChange::OrderCancelled {
                reason: reason("changed my mind"),
                previous_status: S::Placed,
            });
            return ev(changes);
        }
        S::Discarded => {
            changes.push(OrderChange::DraftDiscarded);
            return ev(changes);
        }
    };
    changes.extend_from_slice(&path[..steps]);
    ev(changes)
}

fn shipped() -> OrderChange {
    OrderChange::OrderShipped {
        carrier: Carrier::parse("DHL").unwrap(),
        tracking_number: TrackingNumber::parse("JJD000390007").unwrap(),
        note: None,
    }
}

fn ship_command() -> OrderCommand {
    OrderCommand::ShipOrder {
        carrier: Carrier::parse("DHL").unwrap(),
        tracking_number: TrackingNumber::parse("JJD000390007").unwrap(),
        note: None,
    }
}

fn change_status(status: OrderStatus) -> OrderCommand {
    OrderCommand::ChangeStatus { status, note: None }
}

// ---- creation and items ---------------------------------------------------------------------

#[test]
fn creating_an_order_opens_a_draft() {
    order()
        .given_no_previous_events()
        .when(cmd(create_command(vec![])))
        .then_expect_events(ev(vec![created()]));
}

#[test]
fn creating_an_order_with_items_prices_them_from_the_catalog_and_merges_repeated_skus() {
    order()
        .given_no_previous_events()
        .when(cmd(create_command(vec![
            NewItem {
                sku: sku("TEA"),
                quantity: qty(1),
            },
            NewItem {
                sku: sku("TEA"),
                quantity: qty(1),
            },
        ])))
        .then_expect_events(ev(vec![
            created(),
            tea_added(1, 450),
            OrderChange::ItemQuantityChanged {
                line_id: LineId::new(1),
                sku: sku("TEA"),
                previous_quantity: 1,
                quantity: 2,
                line_total_minor: 900,
                order_total_minor: 900,
            },
        ]));
}

#[test]
fn creating_an_order_with_an_unknown_sku_is_refused_whole() {
    order()
        .given_no_previous_events()
        .when(cmd(create_command(vec![
            NewItem {
                sku: sku("TEA"),
                quantity: qty(1),
            },
            NewItem {
                sku: sku("NOPE"),
                quantity: qty(1),
            },
        ])))
        .then_expect_error(OrderError::UnknownSku { sku: sku("NOPE") });
}

#[test]
fn creating_an_order_twice_is_refused() {
    order()
        .given(ev(vec![created()]))
        .when(cmd(create_command(vec![])))
        .then_expect_error(OrderError::AlreadyExists);
}

#[test]
fn commanding_an_order_that_does_not_exist_is_refused() {
    order()
        .given_no_previous_events()
        .when(cmd(OrderCommand::PlaceOrder))
        .then_expect_error(OrderError::NotFound);
}

#[test]
fn adding_an_item_snapshots_name_and_price_and_totals() {
    order()
        .given(ev(vec![created()]))
        .when(cmd(OrderCommand::AddItem {
            sku: sku("TEA"),
            quantity: qty(2),
        }))
        .then_expect_events(ev(vec![tea_added(2, 900)]));
}

#[test]
fn adding_a_second_product_opens_a_new_line_and_adds_to_the_total() {
    order()
        .given(draft())
        .when(cmd(OrderCommand::AddItem {
            sku: sku("CAKE"),
            quantity: qty(1),
        }))
        .then_expect_events(ev(vec![OrderChange::ItemAdded {
            line_id: LineId::new(2),
            sku: sku("CAKE"),
            name: ProductName::parse("Cheesecake").unwrap(),
            quantity: 1,
            unit_price_minor: 300,
            line_total_minor: 300,
            order_total_minor: 1200,
        }]));
}

#[test]
fn adding_an_unknown_sku_is_refused() {
    order()
        .given(draft())
        .when(cmd(OrderCommand::AddItem {
            sku: sku("NOPE"),
            quantity: qty(1),
        }))
        .then_expect_error(OrderError::UnknownSku { sku: sku("NOPE") });
}

#[test]
fn adding_an_inactive_product_is_refused() {
    order()
        .given(draft())
        .when(cmd(OrderCommand::AddItem {
            sku: sku("OLD"),
            quantity: qty(1),
        }))
        .then_expect_error(OrderError::ProductInactive { sku: sku("OLD") });
}

#[test]
fn adding_a_product_priced_in_another_currency_is_refused() {
    order()
        .given(draft())
        .when(cmd(OrderCommand::AddItem {
            sku: sku("DOLLAR"),
            quantity: qty(1),
        }))
        .then_expect_error(OrderError::CurrencyMismatch {
            order: eur(),
            product: Currency::parse("USD").unwrap(),
        });
}

#[test]
fn a_line_cannot_grow_past_the_maximum_quantity() {
    order()
        .given(ev(vec![created(), tea_added(10_000, 4_500_000)]))
        .when(cmd(OrderCommand::AddItem {
            sku: sku("TEA"),
            quantity: qty(1),
        }))
        .then_expect_error(OrderError::QuantityTooLarge { max: Quantity::MAX });
}

#[test]
fn an_order_total_past_the_largest_amount_is_refused() {
    order()
        .given(draft())
        .when(cmd(OrderCommand::AddItem {
            sku: sku("GOLD"),
            quantity: qty(2),
        }))
        .then_expect_error(OrderError::AmountTooLarge);
}

#[test]
fn an_order_holds_at_most_max_lines() {
    let mut given = vec![created()];
    let mut prices = prices();
    for n in 1..=u32::try_from(MAX_LINES).unwrap() {
        let s = sku(&format!("P{n}"));
        prices.insert(
            s.clone(),
            CatalogProduct {
                name: ProductName::parse("x").unwrap(),
                unit_price: Money::new(1, eur()).unwrap(),
                active: true,
            },
        );
        given.push(OrderChange::ItemAdded {
            line_id: LineId::new(n),
            sku: s,
            name: ProductName::parse("x").unwrap(),
            quantity: 1,
            unit_price_minor: 1,
            line_total_minor: 1,
            order_total_minor: i64::from(n),
        });
    }
    TestFramework::<Order>::with(prices)
        .given(ev(given))
        .when(cmd(OrderCommand::AddItem {
            sku: sku("TEA"),
            quantity: qty(1),
        }))
        .then_expect_error(OrderError::TooManyLines { max: MAX_LINES });
}

/// A draft whose one line went from 1 to 2 units and back, again and again, up to `version`.
fn churned_draft(version: u64) -> Given {
    let mut given = vec![created(), tea_added(1, 450)];
    while (given.len() as u64) < version {
        let quantity = if given.len() % 2 == 0 { 2 } else { 1 };
        given.push(OrderChange::ItemQuantityChanged {
            line_id: LineId::new(1),
            sku: sku("TEA"),
            previous_quantity: 3 - quantity,
            quantity,
            line_total_minor: 450 * i64::from(quantity),
            order_total_minor: 450 * i64::from(quantity),
        });
    }
    ev(given)
}

#[test]
fn a_draft_takes_item_changes_only_up_to_a_bound_and_can_still_be_placed() {
    let add = || {
        cmd(OrderCommand::AddItem {
            sku: sku("CAKE"),
            quantity: qty(1),
        })
    };
    order()
        .given(churned_draft(MAX_DRAFT_EVENTS))
        .when(add())
        .then_expect_error(OrderError::TooManyChanges {
            max: MAX_DRAFT_EVENTS,
        });
    // counter-test: one version below the bound, the same change is taken
    assert!(order()
        .given(churned_draft(MAX_DRAFT_EVENTS - 1))
        .when(add())
        .inspect_result()
        .is_ok());
    // at the bound the draft can still be placed (or discarded)
    assert!(order()
        .given(churned_draft(MAX_DRAFT_EVENTS))
        .when(cmd(OrderCommand::PlaceOrder))
        .inspect_result()
        .is_ok());
}

#[test]
fn updating_a_line_quantity_recomputes_totals() {
    order()
        .given(draft())
        .when(cmd(OrderCommand::UpdateItemQuantity {
            line_id: LineId::new(1),
            quantity: qty(3),
        }))
        .then_expect_events(ev(vec![OrderChange::ItemQuantityChanged {
            line_id: LineId::new(1),
            sku: sku("TEA"),
            previous_quantity: 2,
            quantity: 3,
            line_total_minor: 1350,
            order_total_minor: 1350,
        }]));
}

#[test]
fn updating_a_line_to_its_current_quantity_changes_nothing() {
    order()
        .given(draft())
        .when(cmd(OrderCommand::UpdateItemQuantity {
            line_id: LineId::new(1),
            quantity: qty(2),
        }))
        .then_expect_events(vec![]);
}

#[test]
fn updating_or_removing_a_missing_line_is_refused() {
    order()
        .given(draft())
        .when(cmd(OrderCommand::UpdateItemQuantity {
            line_id: LineId::new(9),
            quantity: qty(1),
        }))
        .then_expect_error(OrderError::LineNotFound {
            line_id: LineId::new(9),
        });
    order()
        .given(draft())
        .when(cmd(OrderCommand::RemoveItem {
            line_id: LineId::new(9),
        }))
        .then_expect_error(OrderError::LineNotFound {
            line_id: LineId::new(9),
        });
}

#[test]
fn removing_a_line_lowers_the_total() {
    order()
        .given(draft())
        .when(cmd(OrderCommand::RemoveItem {
            line_id: LineId::new(1),
        }))
        .then_expect_events(ev(vec![OrderChange::ItemRemoved {
            line_id: LineId::new(1),
            sku: sku("TEA"),
            order_total_minor: 0,
        }]));
}

#[test]
fn line_ids_are_never_reused_after_a_removal() {
    let mut o = Order::default();
    for e in draft() {
        cqrs_es::Aggregate::apply(&mut o, e);
    }
    cqrs_es::Aggregate::apply(
        &mut o,
        OrderChange::ItemRemoved {
            line_id: LineId::new(1),
            sku: sku("TEA"),
            order_total_minor: 0,
        }
        .into(),
    );
    let decision = o
        .decide(
            &cmd(OrderCommand::AddItem {
                sku: sku("CAKE"),
                quantity: qty(1),
            }),
            &prices(),
        )
        .unwrap();
    let Decision::Events(events) = decision else {
        panic!("expected events")
    };
    assert!(
        matches!(events[0].change, OrderChange::ItemAdded { line_id, .. } if line_id == LineId::new(2))
    );
}

#[test]
fn items_are_locked_once_the_order_is_placed() {
    for status in OrderStatus::ALL
        .into_iter()
        .filter(|s| *s != OrderStatus::Draft)
    {
        for command in [
            OrderCommand::AddItem {
                sku: sku("TEA"),
                quantity: qty(1),
            },
            OrderCommand::UpdateItemQuantity {
                line_id: LineId::new(1),
                quantity: qty(5),
            },
            OrderCommand::RemoveItem {
                line_id: LineId::new(1),
            },
        ] {
            order()
                .given(in_status(status))
                .when(cmd(command))
                .then_expect_error(OrderError::ItemsLocked { status });
        }
    }
}

// ---- placing, saga outcomes ---------------------------------------------------------------

#[test]
fn placing_a_draft_snapshots_its_lines_and_total() {
    order()
        .given(draft())
        .when(cmd(OrderCommand::PlaceOrder))
        .then_expect_events(ev(vec![placed()]));
}

#[test]
fn placing_an_order_without_items_is_refused() {
    order()
        .given(ev(vec![created()]))
        .when(cmd(OrderCommand::PlaceOrder))
        .then_expect_error(OrderError::EmptyOrder);
}

#[test]
fn the_saga_confirms_or_rejects_a_placed_order() {
    order()
        .given(in_status(OrderStatus::Placed))
        .when(cmd(OrderCommand::ConfirmOrder))
        .then_expect_events(ev(vec![OrderChange::OrderConfirmed]));
    order()
        .given(in_status(OrderStatus::Placed))
        .when(cmd(OrderCommand::RejectOrder {
            reason: reason("declined"),
        }))
        .then_expect_events(ev(vec![OrderChange::OrderRejected {
            reason: reason("declined"),
        }]));
}

#[test]
fn a_repeated_saga_outcome_changes_nothing() {
    order()
        .given(in_status(OrderStatus::Confirmed))
        .when(cmd(OrderCommand::ConfirmOrder))
        .then_expect_events(vec![]);
    order()
        .given(in_status(OrderStatus::Rejected))
        .when(cmd(OrderCommand::RejectOrder {
            reason: reason("again"),
        }))
        .then_expect_events(vec![]);
}

#[test]
fn a_cancelled_order_cannot_be_confirmed_afterwards() {
    order()
        .given(in_status(OrderStatus::Cancelled))
        .when(cmd(OrderCommand::ConfirmOrder))
        .then_expect_error(OrderError::IllegalTransition {
            from: OrderStatus::Cancelled,
            to: OrderStatus::Confirmed,
        });
}

// ---- the whole transition table -----------------------------------------------------------

/// Every (status, command) pair: the allowed ones produce their event, all others are refused
/// with the rule that names both ends of the transition.
#[test]
fn every_status_command_pair_follows_the_transition_table() {
    use OrderStatus as S;
    let allowed: &[(S, &str)] = &[
        (S::Draft, "place"),
        (S::Draft, "discard"),
        (S::Placed, "confirm"),
        (S::Placed, "reject"),
        (S::Placed, "cancel"),
        (S::Confirmed, "preparing"),
        (S::Confirmed, "cancel"),
        (S::Confirmed, "confirm"), // no-op for the saga's retries
        (S::Preparing, "ready_for_pickup"),
        (S::Preparing, "ship"),
        (S::Preparing, "cancel"),
        (S::ReadyForPickup, "picked_up"),
        (S::ReadyForPickup, "ship"),
        (S::ReadyForPickup, "cancel"),
        (S::Shipped, "delivered"),
        (S::Rejected, "reject"), // no-op
    ];
    let commands: Vec<(&str, OrderCommand, S)> = vec![
        ("place", OrderCommand::PlaceOrder, S::Placed),
        ("discard", OrderCommand::DiscardDraft, S::Discarded),
        ("confirm", OrderCommand::ConfirmOrder, S::Confirmed),
        (
            "reject",
            OrderCommand::RejectOrder {
                reason: reason("r"),
            },
            S::Rejected,
        ),
        (
            "cancel",
            OrderCommand::CancelOrder {
                reason: reason("r"),
            },
            S::Cancelled,
        ),
        ("preparing", change_status(S::Preparing), S::Preparing),
        (
            "ready_for_pickup",
            change_status(S::ReadyForPickup),
            S::ReadyForPickup,
        ),
        ("picked_up", change_status(S::PickedUp), S::PickedUp),
        ("ship", ship_command(), S::Shipped),
        ("delivered", change_status(S::Delivered), S::Delivered),
    ];
    for from in S::ALL {
        for (name, command, to) in &commands {
            let result = order()
                .given(in_status(from))
                .when(cmd(command.clone()))
                .inspect_result();
            if allowed.contains(&(from, *name)) {
                let events = result.unwrap_or_else(|e| panic!("{from} --{name}--> refused: {e}"));
                if from == *to {
                    assert!(
                        events.is_empty(),
                        "{from} --{name}--> again must change nothing"
                    );
                } else {
                    assert_eq!(events.len(), 1, "{from} --{name}-->");
                    assert_eq!(
                        events[0].change.resulting_status(),
                        Some(*to),
                        "{from} --{name}-->"
                    );
                }
            } else {
                assert_eq!(
                    result,
                    Err(OrderError::IllegalTransition { from, to: *to }),
                    "{from} --{name}--> should be refused"
                );
            }
        }
    }
}

#[test]
fn statuses_with_their_own_command_cannot_be_set_directly() {
    use OrderStatus as S;
    for status in [
        S::Draft,
        S::Placed,
        S::Confirmed,
        S::Rejected,
        S::Shipped,
        S::Cancelled,
        S::Discarded,
    ] {
        order()
            .given(in_status(S::Confirmed))
            .when(cmd(change_status(status)))
            .then_expect_error(OrderError::StatusNotSettable { status });
    }
}

#[test]
fn cancelling_records_the_reason_and_the_status_it_left() {
    order()
        .given(in_status(OrderStatus::Preparing))
        .when(cmd(OrderCommand::CancelOrder {
            reason: reason("customer called"),
        }))
        .then_expect_events(ev(vec![OrderChange::OrderCancelled {
            reason: reason("customer called"),
            previous_status: OrderStatus::Preparing,
        }]));
}

#[test]
fn shipping_records_carrier_and_tracking_number() {
    order()
        .given(in_status(OrderStatus::Preparing))
        .when(cmd(ship_command()))
        .then_expect_events(ev(vec![shipped()]));
}

// ---- idempotency ----------------------------------------------------------------------------

fn mark(id: u128, fingerprint: u128) -> CommandMark {
    CommandMark {
        id: Uuid::from_u128(id),
        fingerprint: Uuid::from_u128(fingerprint),
    }
}

#[test]
fn a_marked_command_carries_its_mark_on_its_last_event() {
    let envelope = Envelope {
        command: OrderCommand::AddItem {
            sku: sku("CAKE"),
            quantity: qty(1),
        },
        mark: Some(mark(7, 8)),
    };
    let events = order()
        .given(draft())
        .when(envelope)
        .inspect_result()
        .unwrap();
    assert_eq!(events.last().unwrap().command, Some(mark(7, 8)));
}

#[test]
fn a_retried_request_appends_nothing_and_replays_its_version() {
    let mut given = draft();
    given.last_mut().unwrap().command = Some(mark(7, 8));
    let envelope = Envelope {
        command: OrderCommand::AddItem {
            sku: sku("TEA"),
            quantity: qty(2),
        },
        mark: Some(mark(7, 8)),
    };
    order()
        .given(given.clone())
        .when(envelope.clone())
        .then_expect_events(vec![]);

    let mut o = Order::default();
    for e in given.into_iter().chain(ev(vec![placed()])) {
        cqrs_es::Aggregate::apply(&mut o, e);
    }
    assert_eq!(
        o.decide(&envelope, &prices()),
        Ok(Decision::Replayed { version: 2 })
    );
}

#[test]
fn reusing_an_idempotency_key_for_another_request_is_refused() {
    let mut given = draft();
    given.last_mut().unwrap().command = Some(mark(7, 8));
    order()
        .given(given)
        .when(Envelope {
            command: OrderCommand::PlaceOrder,
            mark: Some(mark(7, 9)),
        })
        .then_expect_error(OrderError::IdempotencyKeyReused);
}

#[test]
fn a_retried_create_replays_instead_of_failing_as_a_duplicate() {
    let mut given = ev(vec![created()]);
    given[0].command = Some(mark(1, 1));
    order()
        .given(given)
        .when(Envelope {
            command: create_command(vec![]),
            mark: Some(mark(1, 1)),
        })
        .then_expect_events(vec![]);
}

// ---- serialization --------------------------------------------------------------------------

#[test]
fn events_serialize_flat_with_a_type_tag_and_round_trip() {
    let mut event = OrderEvent::from(tea_added(2, 900));
    event.command = Some(mark(1, 2));
    let json = serde_json::to_value(&event).unwrap();
    assert_eq!(json["type"], "ItemAdded");
    assert_eq!(json["sku"], "TEA");
    assert_eq!(json["line_total_minor"], 900);
    assert!(json["command"].is_object());
    let back: OrderEvent = serde_json::from_value(json).unwrap();
    assert_eq!(back, event);
    for e in in_status(OrderStatus::Delivered)
        .into_iter()
        .chain(in_status(OrderStatus::Cancelled))
    {
        let back: OrderEvent = serde_json::from_str(&serde_json::to_string(&e).unwrap()).unwrap();
        assert_eq!(back, e);
    }
}

#[test]
fn status_names_are_snake_case() {
    assert_eq!(
        serde_json::to_string(&OrderStatus::ReadyForPickup).unwrap(),
        "\"ready_for_pickup\""
    );
    for s in OrderStatus::ALL {
        assert_eq!(OrderStatus::parse(s.as_str()), Some(s));
        assert_eq!(serde_json::to_string(&s).unwrap(), format!("\"{s}\""));
    }
}

#[test]
fn an_order_total_past_the_largest_amount_is_refused_even_when_each_line_fits() {
    let half = Money::MAX_MINOR / 2 + 1;
    let prices = prices().with(
        sku("HALF"),
        CatalogProduct {
            name: ProductName::parse("Half").unwrap(),
            unit_price: Money::new(half, eur()).unwrap(),
            active: true,
        },
    );
    let given = ev(vec![
        created(),
        OrderChange::ItemAdded {
            line_id: LineId::new(1),
            sku: sku("BIG"),
            name: ProductName::parse("Big").unwrap(),
            quantity: 1,
            unit_price_minor: half,
            line_total_minor: half,
            order_total_minor: half,
        },
    ]);
    TestFramework::<Order>::with(prices.clone())
        .given(given.clone())
        .when(cmd(OrderCommand::AddItem {
            sku: sku("HALF"),
            quantity: qty(1),
        }))
        .then_expect_error(OrderError::AmountTooLarge);
    TestFramework::<Order>::with(prices)
        .given(given)
        .when(cmd(OrderCommand::UpdateItemQuantity {
            line_id: LineId::new(1),
            quantity: qty(2),
        }))
        .then_expect_error(OrderError::AmountTooLarge);
}

#[test]
fn adding_more_of_a_product_no_longer_sold_is_refused() {
    let prices = PriceList::new().with(
        sku("TEA"),
        CatalogProduct {
            name: ProductName::parse("Green tea").unwrap(),
            unit_price: Money::new(450, eur()).unwrap(),
            active: false,
        },
    );
    TestFramework::<Order>::with(prices)
        .given(draft())
        .when(cmd(OrderCommand::AddItem {
            sku: sku("TEA"),
            quantity: qty(1),
        }))
        .then_expect_error(OrderError::ProductInactive { sku: sku("TEA") });
}

#[test]
fn an_order_remembers_only_its_most_recent_requests() {
    let mut o = Order::default();
    cqrs_es::Aggregate::apply(&mut o, created().into());
    let total = order_domain::order::REMEMBERED_REQUESTS as u128 + 1;
    for n in 0..total {
        let mut e = OrderEvent::from(OrderChange::PreparationStarted { note: None });
        e.command = Some(mark(1000 + n, 1));
        cqrs_es::Aggregate::apply(&mut o, e);
    }
    // The oldest mark was forgotten; the newest is still answered as a replay.
    assert_eq!(o.replay_of(Some(mark(1000, 1))), Ok(None));
    assert_eq!(
        o.replay_of(Some(mark(1000 + total - 1, 1))),
        Ok(Some(u64::try_from(total).unwrap() + 1))
    );
}

#[test]
fn a_closed_store_takes_no_new_order() {
    TestFramework::<Order>::with(prices().with_store_closed(true))
        .given_no_previous_events()
        .when(cmd(create_command(vec![])))
        .then_expect_error(OrderError::StoreClosed);
}

#[test]
fn a_closed_store_takes_no_placement_of_a_draft() {
    TestFramework::<Order>::with(prices().with_store_closed(true))
        .given(draft())
        .when(cmd(OrderCommand::PlaceOrder))
        .then_expect_error(OrderError::StoreClosed);
}

#[test]
fn a_closed_store_still_moves_its_placed_orders_on() {
    TestFramework::<Order>::with(prices().with_store_closed(true))
        .given(in_status(OrderStatus::Confirmed))
        .when(cmd(OrderCommand::ChangeStatus {
            status: OrderStatus::Preparing,
            note: None,
        }))
        .then_expect_events(ev(vec![OrderChange::PreparationStarted { note: None }]));
}

#[test]
fn the_store_of_a_new_order_and_of_a_placement_is_checked_and_no_other() {
    let create = create_command(vec![]);
    assert_eq!(Order::default().store_to_check(&create), Some(store_id()));
    assert_eq!(
        Order::default().store_to_check(&OrderCommand::PlaceOrder),
        None
    );
    assert_eq!(
        Order::default().store_to_check(&OrderCommand::ConfirmOrder),
        None
    );
}
