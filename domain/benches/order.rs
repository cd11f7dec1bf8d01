//! Micro-benchmarks of the order aggregate and of its events as the event store keeps them:
//!
//! * `decide/*`: one command through `Order::handle` (decide, then apply through the sink),
//!   as the cqrs framework runs it, on an order in the state the command expects.
//! * `apply/*`: replaying a typical order history into a default aggregate, as every command
//!   and every read of an order does after loading its events.
//! * `serde_item_added/*`, `serde_history/*`: the event store's encoding, step by step:
//!   `OrderEvent` -> `serde_json::Value` (cqrs-es `SerializedEvent`), `Value` -> bytes (what the
//!   JSONB column receives), and back.
//!
//! Run with `cargo bench -p order-domain` (or `cargo bench --workspace`); pass criterion
//! options after `--`, e.g. `cargo bench -p order-domain -- --warm-up-time 1 decide`.

use std::collections::HashMap;
use std::hint::black_box;

use cqrs_es::event_sink::EventSink;
use cqrs_es::persist::SerializedEvent;
use cqrs_es::{Aggregate, EventEnvelope};
use criterion::async_executor::FuturesExecutor;
use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use order_domain::{
    AddressLine, Carrier, CatalogProduct, CommandMark, CountryCode, CreateOrder, Currency,
    CustomerId, Decision, Email, Envelope, Money, Order, OrderCommand, OrderEvent, OrderId,
    OrderStatus, PostalCode, PriceList, ProductName, Quantity, Reason, ShippingAddress, Sku,
    StoreId, TrackingNumber,
};
use serde_json::Value;
use uuid::Uuid;

// --- a typical order ---------------------------------------------------------------------------

fn order_id() -> OrderId {
    OrderId::from_uuid(Uuid::from_u128(0x0190_0000_0000_7000_8000_0000_0000_0001))
}

fn sku(raw: &str) -> Sku {
    Sku::parse(raw).expect("fixture SKUs are valid")
}

fn eur() -> Currency {
    Currency::parse("EUR").expect("EUR is a currency")
}

/// The store's catalog: the three products of the typical order and a fourth to add.
fn prices() -> PriceList {
    let product = |name: &str, price_minor| CatalogProduct {
        name: ProductName::parse(name).expect("fixture names are valid"),
        unit_price: Money::new(price_minor, eur()).expect("fixture prices are valid"),
        active: true,
    };
    PriceList::new()
        .with(sku("TEA-GREEN-250G"), product("Green tea, 250 g", 450))
        .with(sku("CAKE-CHEESE"), product("Cheesecake slice", 390))
        .with(
            sku("COFFEE-BEANS-1KG"),
            product("Espresso beans, 1 kg", 2_490),
        )
        .with(sku("SCONE"), product("Butter scone", 280))
}

/// A client request: every storefront command carries an `Idempotency-Key`, so every event
/// batch carries a mark the aggregate remembers.
fn request(n: u128, command: OrderCommand) -> Envelope {
    Envelope {
        command,
        mark: Some(CommandMark {
            id: Uuid::from_u128(0xA000 + n),
            fingerprint: Uuid::from_u128(0xF000 + n),
        }),
    }
}

/// A request from the saga or staff, without an idempotency key.
fn internal(command: OrderCommand) -> Envelope {
    command.into()
}

fn create() -> OrderCommand {
    let line = |raw: &str| AddressLine::parse(raw).expect("fixture address lines are valid");
    OrderCommand::CreateOrder(Box::new(CreateOrder {
        order_id: order_id(),
        customer_id: CustomerId::parse("auth0|5f7c8ec7c33c6c004bbafe82").expect("valid id"),
        store_id: StoreId::from_uuid(Uuid::from_u128(2)),
        currency: eur(),
        customer_email: Some(Email::parse("ada@example.com").expect("valid email")),
        shipping_address: Some(ShippingAddress {
            name: line("Ada Lovelace"),
            line1: line("12 St James's Square"),
            line2: None,
            city: line("London"),
            postal_code: PostalCode::parse("SW1Y 4JH").expect("valid postal code"),
            country: CountryCode::parse("GB").expect("valid country"),
        }),
        items: vec![],
    }))
}

fn add(n: u128, raw_sku: &str, quantity: i64) -> Envelope {
    request(
        n,
        OrderCommand::AddItem {
            sku: sku(raw_sku),
            quantity: Quantity::parse(quantity).expect("fixture quantities are valid"),
        },
    )
}

/// A draft with three lines, built the way clients build one.
fn draft_commands() -> Vec<Envelope> {
    vec![
        request(1, create()),
        add(2, "TEA-GREEN-250G", 2),
        add(3, "CAKE-CHEESE", 1),
        add(4, "COFFEE-BEANS-1KG", 1),
    ]
}

/// The draft, placed and confirmed by the saga.
fn confirmed_commands() -> Vec<Envelope> {
    let mut commands = draft_commands();
    commands.push(request(5, OrderCommand::PlaceOrder));
    commands.push(internal(OrderCommand::ConfirmOrder));
    commands
}

/// A whole life: created, three items, placed, confirmed, prepared, shipped, delivered.
fn delivered_commands() -> Vec<Envelope> {
    let mut commands = confirmed_commands();
    commands.push(internal(OrderCommand::ChangeStatus {
        status: OrderStatus::Preparing,
        note: None,
    }));
    commands.push(internal(OrderCommand::ShipOrder {
        carrier: Carrier::parse("DHL").expect("valid carrier"),
        tracking_number: TrackingNumber::parse("JJD000390007781234567").expect("valid number"),
        note: None,
    }));
    commands.push(internal(OrderCommand::ChangeStatus {
        status: OrderStatus::Delivered,
        note: None,
    }));
    commands
}

/// Decides `commands` one after the other from "no such order": the aggregate they lead to and
/// the events they produced. Uses the pure `decide`, so fixtures need no executor.
fn run(commands: Vec<Envelope>, prices: &PriceList) -> (Order, Vec<OrderEvent>) {
    let mut order = Order::default();
    let mut history = Vec::new();
    for envelope in commands {
        let name = envelope.command.name();
        match order.decide(&envelope, prices) {
            Ok(Decision::Events(events)) => {
                for event in events {
                    order.apply(event.clone());
                    history.push(event);
                }
            }
            other => panic!("fixture command {name} was not decided into events: {other:?}"),
        }
    }
    (order, history)
}

/// Metadata as the command executor stores it beside each event.
fn metadata() -> HashMap<String, String> {
    [
        ("correlation_id", "0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b"),
        ("principal", "auth0|5f7c8ec7c33c6c004bbafe82"),
        (
            "traceparent",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        ),
        ("idempotency_key", "3f0e6c1a-5d27-4b1e-9a53-1c0d9a2b7e44"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect()
}

fn envelopes(history: &[OrderEvent]) -> Vec<EventEnvelope<Order>> {
    history
        .iter()
        .zip(1..)
        .map(|(event, sequence)| EventEnvelope {
            aggregate_id: order_id().to_string(),
            sequence,
            payload: event.clone(),
            metadata: metadata(),
        })
        .collect()
}

// --- the steps measured ------------------------------------------------------------------------

/// One command as the cqrs framework runs it: handle into a fresh sink, then collect.
/// The aggregate is handed back so that dropping it is not measured.
async fn handle(
    mut order: Order,
    envelope: Envelope,
    prices: &PriceList,
) -> (Order, Vec<OrderEvent>) {
    let sink = EventSink::default();
    order
        .handle(envelope, prices, &sink)
        .await
        .expect("benchmarked commands are accepted");
    (order, sink.collect().await)
}

fn replay(history: Vec<OrderEvent>) -> Order {
    let mut order = Order::default();
    for event in history {
        order.apply(event);
    }
    order
}

/// What postgres-es does before inserting: `payload` and `metadata` as `serde_json::Value`.
fn to_value(envelope: &EventEnvelope<Order>) -> SerializedEvent {
    SerializedEvent::try_from(envelope).expect("events serialize")
}

/// What sqlx writes into the two JSONB columns.
fn to_bytes(event: &SerializedEvent) -> (Vec<u8>, Vec<u8>) {
    (
        serde_json::to_vec(&event.payload).expect("a Value serializes"),
        serde_json::to_vec(&event.metadata).expect("a Value serializes"),
    )
}

/// What sqlx reads back from the two JSONB columns.
fn from_bytes((payload, metadata): &(Vec<u8>, Vec<u8>)) -> (Value, Value) {
    (
        serde_json::from_slice(payload).expect("stored payloads are JSON"),
        serde_json::from_slice(metadata).expect("stored metadata is JSON"),
    )
}

/// What cqrs-es does after loading: the typed event back from its `Value`.
fn from_value(event: SerializedEvent) -> EventEnvelope<Order> {
    EventEnvelope::try_from(event).expect("stored events deserialize")
}

// --- benchmarks --------------------------------------------------------------------------------

fn decide(c: &mut Criterion) {
    let prices = prices();
    let (draft, _) = run(draft_commands(), &prices);
    let (confirmed, _) = run(confirmed_commands(), &prices);
    let cancel = internal(OrderCommand::CancelOrder {
        reason: Reason::parse("customer changed their mind").expect("valid reason"),
    });
    let cases = [
        (
            "create",
            Order::default(),
            request(1, create()),
            "OrderCreated",
        ),
        (
            "add_item_to_3_lines",
            draft.clone(),
            add(10, "SCONE", 2),
            "ItemAdded",
        ),
        (
            "place_3_lines",
            draft,
            request(11, OrderCommand::PlaceOrder),
            "OrderPlaced",
        ),
        ("cancel_confirmed", confirmed, cancel, "OrderCancelled"),
    ];

    let mut group = c.benchmark_group("decide");
    for (name, order, envelope, expected) in cases {
        // A refused or replayed command would be measured as a cheap no-op: check the case
        // produces the one event it is meant to before timing it.
        let produced = match order.decide(&envelope, &prices) {
            Ok(Decision::Events(events)) => events
                .iter()
                .map(|e| e.change.event_type())
                .collect::<Vec<_>>(),
            other => panic!("{name}: expected events, got {other:?}"),
        };
        assert_eq!(produced, [expected], "{name}");

        group.bench_function(name, |b| {
            b.to_async(FuturesExecutor).iter_batched(
                || (order.clone(), envelope.clone()),
                |(order, envelope)| handle(order, envelope, &prices),
                BatchSize::SmallInput,
            );
        });
    }
    group.finish();
}

fn apply(c: &mut Criterion) {
    let prices = prices();
    let (delivered, history) = run(delivered_commands(), &prices);
    assert_eq!(
        replay(history.clone()),
        delivered,
        "replay rebuilds the order"
    );

    let mut group = c.benchmark_group("apply");
    group.throughput(Throughput::Elements(history.len() as u64));
    group.bench_function(format!("replay_{}_events", history.len()), |b| {
        b.iter_batched(|| history.clone(), replay, BatchSize::SmallInput);
    });
    group.finish();
}

fn serde_item_added(c: &mut Criterion) {
    let (_, history) = run(draft_commands(), &prices());
    let all = envelopes(&history);
    let envelope = all
        .iter()
        .find(|e| e.payload.change.event_type() == "ItemAdded")
        .expect("the draft has items");
    let serialized = to_value(envelope);
    let bytes = to_bytes(&serialized);
    let (payload, metadata) = from_bytes(&bytes);
    assert_eq!(
        (&payload, &metadata),
        (&serialized.payload, &serialized.metadata)
    );
    assert_eq!(from_value(serialized.clone()).payload, envelope.payload);

    let mut group = c.benchmark_group("serde_item_added");
    group.bench_function("to_value", |b| b.iter(|| to_value(black_box(envelope))));
    group.bench_function("to_bytes", |b| b.iter(|| to_bytes(black_box(&serialized))));
    group.bench_function("from_bytes", |b| b.iter(|| from_bytes(black_box(&bytes))));
    group.bench_function("from_value", |b| {
        b.iter_batched(|| serialized.clone(), from_value, BatchSize::SmallInput);
    });
    group.finish();
}

fn serde_history(c: &mut Criterion) {
    let (_, history) = run(delivered_commands(), &prices());
    let all = envelopes(&history);
    let serialized: Vec<SerializedEvent> = all.iter().map(to_value).collect();
    let bytes: Vec<_> = serialized.iter().map(to_bytes).collect();
    let decoded: Vec<OrderEvent> = serialized
        .iter()
        .cloned()
        .map(|e| from_value(e).payload)
        .collect();
    assert_eq!(decoded, history, "the history survives the round trip");
    assert!(bytes.iter().map(from_bytes).eq(serialized
        .iter()
        .map(|e| (e.payload.clone(), e.metadata.clone()))));

    let mut group = c.benchmark_group("serde_history");
    group.throughput(Throughput::Elements(all.len() as u64));
    group.bench_function("to_value", |b| {
        b.iter(|| black_box(&all).iter().map(to_value).collect::<Vec<_>>());
    });
    group.bench_function("to_bytes", |b| {
        b.iter(|| {
            black_box(&serialized)
                .iter()
                .map(to_bytes)
                .collect::<Vec<_>>()
        });
    });
    group.bench_function("from_bytes", |b| {
        b.iter(|| black_box(&bytes).iter().map(from_bytes).collect::<Vec<_>>());
    });
    group.bench_function("from_value", |b| {
        b.iter_batched(
            || serialized.clone(),
            |events| events.into_iter().map(from_value).collect::<Vec<_>>(),
            BatchSize::SmallInput,
        );
    });
    group.finish();
}

criterion_group!(benches, decide, apply, serde_item_added, serde_history);
criterion_main!(benches);
