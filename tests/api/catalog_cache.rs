//! Order commands read prices from an in-memory catalog cache: a change made through this
//! process, another replica, or plain SQL reaches the next command.

use std::time::Duration;

use serde_json::json;

use uuid::Uuid;

use crate::helpers::{spawn_app, TestApp, Who};

/// The price TEA gets in a new order.
async fn price_of_tea(app: &TestApp, who: &Who, store: Uuid) -> i64 {
    let order = app.create_order(who, store).await;
    let added = app.add_item(who, order, "TEA", 1).await;
    added.assert_status(200);
    added.body["lines"][0]["unit_price_minor"]
        .as_i64()
        .expect("a price")
}

/// Keeps pricing TEA in new orders until it costs `expected` or two seconds pass.
async fn eventual_price_of_tea(app: &TestApp, who: &Who, store: Uuid, expected: i64) -> i64 {
    let mut last = -1;
    for _ in 0..40 {
        last = price_of_tea(app, who, store).await;
        if last == expected {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    last
}

#[tokio::test]
async fn a_price_change_through_this_process_applies_to_the_very_next_item() {
    let app = spawn_app().await;
    let store = app.store_with_products().await;
    let alice = app.customer("alice");
    app.draft_with_tea(&alice, store).await;

    app.update_product(store, "TEA", json!({"unit_price_minor": 999}))
        .await
        .assert_status(200);
    assert_eq!(price_of_tea(&app, &alice, store).await, 999);

    app.update_product(store, "TEA", json!({"active": false}))
        .await
        .assert_status(200);
    let order = app.create_order(&alice, store).await;
    app.add_item(&alice, order, "TEA", 1)
        .await
        .assert_problem(422, "product-inactive");
}

#[tokio::test]
async fn a_price_change_by_another_replica_or_by_sql_reaches_this_process() {
    let app = spawn_app().await;
    let store = app.store_with_products().await;
    let alice = app.customer("alice");
    let order = app.create_order(&alice, store).await;
    // cached here
    app.add_item(&alice, order, "TEA", 1)
        .await
        .assert_status(200);

    let other = app.replica().await;
    other
        .update_product(store, "TEA", json!({"unit_price_minor": 777}))
        .await
        .assert_status(200);
    assert_eq!(eventual_price_of_tea(&app, &alice, store, 777).await, 777);

    sqlx::query("update products set unit_price_minor = 555 where store_id = $1 and sku = 'TEA'")
        .bind(store)
        .execute(&app.pool)
        .await
        .expect("update");
    assert_eq!(eventual_price_of_tea(&app, &alice, store, 555).await, 555);
}
