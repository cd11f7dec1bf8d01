//! The batch apply of the read models against real PostgreSQL: the whole log in one batch, in
//! small batches and one event at a time leaves the same tables; a batch applied again changes
//! nothing; a batch with a gap fails before it writes anything.

use order_domain::{
    Carrier, CreateOrder, Currency, CustomerId, Email, LineId, NewItem, Note, OrderCommand,
    OrderId, OrderStatus, Quantity, Reason, ShippingAddress, Sku, StoreId, TrackingNumber,
};
use order_projections::ProjectionError;
use order_service::log::{read_batch, Cursor, LogEvent};
use order_service::read_models::apply_batch;
use rand::{Rng as _, SeedableRng as _};
use serde_json::{json, Value};
use sqlx::PgPool;
use uuid::Uuid;

use crate::helpers::{spawn_app_with, TestApp};

/// The read-model tables, by name.
const TABLES: [&str; 7] = [
    "order_lines",
    "order_search",
    "order_status_history",
    "order_summaries",
    "product_sales_daily",
    "saga_progress",
    "store_sales_daily",
];

/// Every row of every read model in `schema`, in a stable order.
async fn tables(pool: &PgPool, schema: &str) -> Vec<(&'static str, Vec<Value>)> {
    let mut out = Vec::new();
    for t in TABLES {
        let rows: Vec<Value> = sqlx::query_scalar(&format!(
            "select to_jsonb(t) from {schema}.{t} t order by to_jsonb(t)::text"
        ))
        .fetch_all(pool)
        .await
        .expect("rows");
        out.push((t, rows));
    }
    out
}

/// Empty read-model tables in a schema of their own, like the rebuild's shadow. Through the
/// schema owner's pool (`app.owner_pool`): the service's role may not create schemas, and the
/// tests of the apply then read and write these tables as their owner.
async fn empty_schema(pool: &PgPool, schema: &str) {
    sqlx::query(&format!("create schema {schema}"))
        .execute(pool)
        .await
        .expect("schema");
    for t in TABLES {
        sqlx::query(&format!(
            "create table {schema}.{t} (like read.{t} including all)"
        ))
        .execute(pool)
        .await
        .expect("table");
    }
}

/// Applies `events` to `schema`, `size` events per batch, each batch in its own transaction.
async fn apply_in_batches(
    pool: &PgPool,
    schema: &'static str,
    events: &[LogEvent],
    size: usize,
) -> anyhow::Result<()> {
    for chunk in events.chunks(size) {
        let mut tx = pool.begin().await?;
        apply_batch(&mut tx, schema, chunk).await?;
        tx.commit().await?;
    }
    Ok(())
}

async fn the_log(pool: &PgPool) -> Vec<LogEvent> {
    let mut conn = pool.acquire().await.expect("conn");
    read_batch(&mut conn, Cursor::default(), 1_000_000)
        .await
        .expect("log")
}

fn cmd_item(sku: &str, quantity: i64) -> NewItem {
    NewItem {
        sku: Sku::parse(sku).expect("sku"),
        quantity: Quantity::parse(quantity).expect("quantity"),
    }
}

/// A seeded workload that produces every kind of order event (emails, addresses, quantity
/// changes, removals, discards, notes, rejections, cancellations before and after
/// confirmation, shipping, pickup), through the real command executor. No projector runs.
async fn app_with_a_varied_log(orders: usize) -> TestApp {
    let app = spawn_app_with(|s| s.workers.projector = false).await;
    let store = app.store_with_products().await;
    // A name that `lower()` must fold beyond ASCII.
    app.post(
        &format!("/v1/stores/{store}/products"),
        &app.admin(),
        json!({"sku": "CREME", "name": "Crème BRÛLÉE", "unit_price_minor": 520}),
    )
    .await
    .assert_status(201);
    let mut rng = rand::rngs::StdRng::seed_from_u64(11);
    let skus = ["TEA", "CAKE", "CREME"];
    let note = || Some(Note::parse("by the window").expect("note"));
    for i in 0..orders {
        let id = Uuid::from_u128(rng.random());
        let email = rng
            .random_bool(0.5)
            .then(|| Email::parse(format!("Guest.{i}@Example.COM")).expect("email"));
        let address = rng.random_bool(0.3).then(|| {
            serde_json::from_value::<ShippingAddress>(json!({
                "name": "Ann", "line1": "Main St 1", "city": "Köln", "postal_code": "50667",
                "country": "DE"}))
            .expect("address")
        });
        app.command(
            id,
            OrderCommand::CreateOrder(Box::new(CreateOrder {
                order_id: OrderId::from_uuid(id),
                customer_id: CustomerId::parse(format!("customer-{}", i % 5)).expect("customer"),
                store_id: StoreId::from_uuid(store),
                currency: Currency::parse("EUR").expect("eur"),
                customer_email: email,
                shipping_address: address,
                items: vec![cmd_item(
                    skus[rng.random_range(0..3)],
                    rng.random_range(1..=3),
                )],
            })),
        )
        .await;
        // Lines come and go while a draft.
        let mut lines = 1;
        for _ in 0..rng.random_range(0..3) {
            let sku = skus[rng.random_range(0..3)];
            let new_line = app
                .try_command(
                    id,
                    OrderCommand::AddItem {
                        sku: Sku::parse(sku).expect("sku"),
                        quantity: Quantity::parse(rng.random_range(1..=2)).expect("q"),
                    },
                )
                .await;
            lines = lines.max(u32::from(new_line) + lines);
        }
        if rng.random_bool(0.4) {
            app.try_command(
                id,
                OrderCommand::UpdateItemQuantity {
                    line_id: LineId::new(1),
                    quantity: Quantity::parse(rng.random_range(1..=5)).expect("q"),
                },
            )
            .await;
        }
        if lines > 1 && rng.random_bool(0.4) {
            app.try_command(
                id,
                OrderCommand::RemoveItem {
                    line_id: LineId::new(rng.random_range(1..=lines)),
                },
            )
            .await;
        }
        let roll: f64 = rng.random();
        if roll < 0.1 {
            app.command(id, OrderCommand::DiscardDraft).await;
            continue;
        }
        if roll < 0.2 {
            continue; // stays a draft
        }
        if !app.try_command(id, OrderCommand::PlaceOrder).await {
            continue; // its lines were all removed
        }
        let roll: f64 = rng.random();
        if roll < 0.15 {
            app.command(
                id,
                OrderCommand::RejectOrder {
                    reason: Reason::parse("out of stock").expect("r"),
                },
            )
            .await;
            continue;
        }
        if roll < 0.25 {
            app.command(
                id,
                OrderCommand::CancelOrder {
                    reason: Reason::parse("too slow").expect("r"),
                },
            )
            .await;
            continue;
        }
        if roll < 0.3 {
            continue; // placed
        }
        app.command(id, OrderCommand::ConfirmOrder).await;
        let roll: f64 = rng.random();
        let change = |status| OrderCommand::ChangeStatus {
            status,
            note: note(),
        };
        if roll < 0.2 {
            app.command(
                id,
                OrderCommand::CancelOrder {
                    reason: Reason::parse("changed mind").expect("r"),
                },
            )
            .await;
        } else if roll < 0.6 {
            app.command(id, change(OrderStatus::Preparing)).await;
            if rng.random_bool(0.5) {
                app.command(
                    id,
                    OrderCommand::ShipOrder {
                        carrier: Carrier::parse("DHL").expect("c"),
                        tracking_number: TrackingNumber::parse(format!("T{i}")).expect("t"),
                        note: note(),
                    },
                )
                .await;
                app.command(id, change(OrderStatus::Delivered)).await;
            } else {
                app.command(id, change(OrderStatus::ReadyForPickup)).await;
                app.command(id, change(OrderStatus::PickedUp)).await;
            }
        }
    }
    app
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_batch_small_batches_and_one_event_at_a_time_leave_the_same_read_models() {
    // Arrange
    let app = app_with_a_varied_log(150).await;
    let log = the_log(&app.owner_pool).await;
    for schema in ["batch_all", "batch_small", "batch_single"] {
        empty_schema(&app.owner_pool, schema).await;
    }

    // Act
    apply_in_batches(&app.owner_pool, "batch_all", &log, log.len())
        .await
        .expect("one batch");
    apply_in_batches(&app.owner_pool, "batch_small", &log, 7)
        .await
        .expect("batches of 7");
    apply_in_batches(&app.owner_pool, "batch_single", &log, 1)
        .await
        .expect("one at a time");

    // Assert
    let single = tables(&app.owner_pool, "batch_single").await;
    for (table, rows) in &single {
        if *table != "saga_progress" {
            assert!(
                !rows.is_empty(),
                "{table} is empty: the test proves nothing"
            );
        }
    }
    let kinds: std::collections::BTreeSet<&str> =
        log.iter().map(|e| e.event_type.as_str()).collect();
    assert_eq!(kinds.len(), 14, "every kind of order event: {kinds:?}");
    for schema in ["batch_all", "batch_small"] {
        let other = tables(&app.owner_pool, schema).await;
        for ((table, a), (_, b)) in single.iter().zip(&other) {
            assert_eq!(a.len(), b.len(), "{schema}.{table}: row count differs");
            for (x, y) in a.iter().zip(b) {
                assert_eq!(x, y, "{schema}.{table}: a row differs");
            }
        }
    }
    // Counter-test: the comparison notices a single changed cell.
    sqlx::query(
        "update batch_small.product_sales_daily set quantity = quantity + 1
          where (store_id, day, sku) = (select store_id, day, sku
                                          from batch_small.product_sales_daily limit 1)",
    )
    .execute(&app.owner_pool)
    .await
    .expect("tamper");
    assert_ne!(tables(&app.owner_pool, "batch_small").await, single);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_applied_again_changes_nothing_and_a_batch_with_a_gap_writes_nothing() {
    // Arrange
    let app = app_with_a_varied_log(40).await;
    let log = the_log(&app.owner_pool).await;
    empty_schema(&app.owner_pool, "replayed").await;
    apply_in_batches(&app.owner_pool, "replayed", &log, 50)
        .await
        .expect("applies");
    let applied = tables(&app.owner_pool, "replayed").await;

    // Act 1: the log again, in batches cut elsewhere, and the first half once more.
    apply_in_batches(&app.owner_pool, "replayed", &log, 13)
        .await
        .expect("duplicates are no error");
    apply_in_batches(
        &app.owner_pool,
        "replayed",
        &log[..log.len() / 2],
        log.len(),
    )
    .await
    .expect("duplicates are no error");

    // Assert 1
    assert_eq!(tables(&app.owner_pool, "replayed").await, applied);

    // Arrange 2: a fresh schema; the log without one order's second event.
    empty_schema(&app.owner_pool, "gapped").await;
    let third = log
        .iter()
        .find(|e| e.aggregate_type == "Order" && e.sequence == 3)
        .expect("an order with three events");
    let skipped = log
        .iter()
        .position(|e| e.aggregate_id == third.aggregate_id && e.sequence == 2)
        .expect("its second event");
    let mut gapped: Vec<LogEvent> = log.clone();
    gapped.remove(skipped);

    // Act 2: one transaction, the batch fails in it; look before rolling back.
    let mut tx = app.owner_pool.begin().await.expect("begin");
    let failed = apply_batch(&mut tx, "gapped", &gapped)
        .await
        .expect_err("a gap fails the batch");
    let written: i64 = sqlx::query_scalar(
        "select (select count(*) from gapped.order_summaries)
              + (select count(*) from gapped.order_status_history)
              + (select count(*) from gapped.order_lines)",
    )
    .fetch_one(&mut *tx)
    .await
    .expect("count");
    tx.rollback().await.expect("rollback");

    // Assert 2
    let gap = failed.downcast_ref::<ProjectionError>();
    assert!(
        matches!(gap, Some(ProjectionError::Gap { sequence: 3, version: 1, order_id })
                 if order_id.to_string() == log[skipped].aggregate_id),
        "{failed:#}"
    );
    assert_eq!(written, 0, "nothing of the failed batch was written");
    // Counter-test: the same log without the hole applies.
    apply_in_batches(&app.owner_pool, "gapped", &log, log.len())
        .await
        .expect("the whole log applies");
    assert_eq!(tables(&app.owner_pool, "gapped").await, applied);
}
