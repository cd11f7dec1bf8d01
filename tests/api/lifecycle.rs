//! An order's life as a storefront and a store drive it, with each refusal on the way.

use reqwest::Method;
use serde_json::json;

use crate::helpers::spawn_app;

#[tokio::test]
async fn a_storefront_builds_places_and_a_store_fulfils_an_order_for_pickup() {
    // Arrange
    let app = spawn_app().await;
    let store = app.store_with_products().await;
    let alice = app.customer("alice");
    let staff = app.staff(store);

    // Act: build the cart
    let order = app.create_order(&alice, store).await;
    let added = app.add_item(&alice, order, "TEA", 2).await;
    added.assert_status(200);
    assert_eq!(
        added.body["lines"][0]["name"], "Green tea",
        "name snapshotted from the catalog"
    );
    assert_eq!(added.body["lines"][0]["unit_price_minor"], 450);
    assert_eq!(added.body["total_minor"], 900);
    app.add_item(&alice, order, "CAKE", 1)
        .await
        .assert_status(200);
    let updated = app
        .send(
            Method::PATCH,
            &format!("/v1/orders/{order}/items/1"),
            Some(&alice),
            Some(json!({"quantity": 3})),
            &[],
        )
        .await;
    updated.assert_status(200);
    assert_eq!(updated.body["total_minor"], 3 * 450 + 300);
    let removed = app
        .send(
            Method::DELETE,
            &format!("/v1/orders/{order}/items/2"),
            Some(&alice),
            None,
            &[],
        )
        .await;
    removed.assert_status(200);
    assert_eq!(removed.body["lines"].as_array().map(Vec::len), Some(1));
    assert_eq!(removed.body["total_minor"], 1350);

    // A catalog price change later does not touch the order.
    app.update_product(store, "TEA", json!({"unit_price_minor": 999}))
        .await
        .assert_status(200);

    let placed = app.place(&alice, order).await;
    placed.assert_status(200);
    assert_eq!(placed.body["status"], "placed");
    assert_eq!(placed.body["total_minor"], 1350);

    // Items are locked once placed.
    app.add_item(&alice, order, "CAKE", 1)
        .await
        .assert_problem(409, "items-locked");
    // Fulfilment waits for the saga's confirmation.
    app.set_status(&staff, order, "preparing")
        .await
        .assert_problem(409, "illegal-transition");

    app.confirm_internally(order).await;
    for status in ["preparing", "ready_for_pickup", "picked_up"] {
        let moved = app.set_status(&staff, order, status).await;
        moved.assert_status(200);
        assert_eq!(moved.body["status"], status);
    }

    // Assert
    let read = app.get(&format!("/v1/orders/{order}"), &alice).await;
    read.assert_status(200);
    assert_eq!(read.body["status"], "picked_up");
    assert_eq!(
        read.header("etag"),
        Some(format!("\"{}\"", read.body["version"]).as_str())
    );
    assert_eq!(
        app.event_types(order).await,
        [
            "OrderCreated",
            "ItemAdded",
            "ItemAdded",
            "ItemQuantityChanged",
            "ItemRemoved",
            "OrderPlaced",
            "OrderConfirmed",
            "PreparationStarted",
            "OrderReadyForPickup",
            "OrderPickedUp"
        ]
    );
    // Terminal: nothing moves it any more.
    app.post(
        &format!("/v1/orders/{order}/cancel"),
        &alice,
        json!({"reason": "too late"}),
    )
    .await
    .assert_problem(409, "illegal-transition");
}

#[tokio::test]
async fn a_shipped_order_records_carrier_and_is_delivered() {
    let app = spawn_app().await;
    let store = app.store_with_products().await;
    let alice = app.customer("alice");
    let staff = app.staff(store);
    let order = app.draft_with_tea(&alice, store).await;
    app.place(&alice, order).await.assert_status(200);
    app.confirm_internally(order).await;
    app.set_status(&staff, order, "preparing")
        .await
        .assert_status(200);

    let shipped = app
        .post(
            &format!("/v1/orders/{order}/ship"),
            &staff,
            json!({"carrier": "DHL", "tracking_number": "JJD000390007"}),
        )
        .await;
    shipped.assert_status(200);
    assert_eq!(shipped.body["status"], "shipped");
    assert_eq!(shipped.body["shipment"]["tracking_number"], "JJD000390007");

    // Cancel is allowed only until shipped.
    app.post(
        &format!("/v1/orders/{order}/cancel"),
        &alice,
        json!({"reason": "changed my mind"}),
    )
    .await
    .assert_problem(409, "illegal-transition");
    // Shipped is set by /ship, not /status.
    app.set_status(&staff, order, "shipped")
        .await
        .assert_problem(422, "status-not-settable");

    let delivered = app.set_status(&staff, order, "delivered").await;
    delivered.assert_status(200);
    assert_eq!(delivered.body["status"], "delivered");
}

#[tokio::test]
async fn cancel_rules_follow_the_status() {
    let app = spawn_app().await;
    let store = app.store_with_products().await;
    let alice = app.customer("alice");
    let staff = app.staff(store);

    // A draft is discarded, not cancelled.
    let draft = app.create_order(&alice, store).await;
    app.post(
        &format!("/v1/orders/{draft}/cancel"),
        &alice,
        json!({"reason": "no"}),
    )
    .await
    .assert_problem(409, "illegal-transition");

    // Placed, confirmed, preparing, ready_for_pickup: cancellable, with the reason kept.
    for steps in 0_usize..4 {
        let order = app.draft_with_tea(&alice, store).await;
        app.place(&alice, order).await.assert_status(200);
        if steps >= 1 {
            app.confirm_internally(order).await;
        }
        for status in ["preparing", "ready_for_pickup"]
            .iter()
            .take(steps.saturating_sub(1))
        {
            app.set_status(&staff, order, status)
                .await
                .assert_status(200);
        }
        let cancelled = app
            .post(
                &format!("/v1/orders/{order}/cancel"),
                &alice,
                json!({"reason": "changed my mind"}),
            )
            .await;
        cancelled.assert_status(200);
        assert_eq!(cancelled.body["status"], "cancelled");
        assert_eq!(cancelled.body["cancel_reason"], "changed my mind");
        // Twice is refused.
        app.post(
            &format!("/v1/orders/{order}/cancel"),
            &alice,
            json!({"reason": "again"}),
        )
        .await
        .assert_problem(409, "illegal-transition");
    }
}

#[tokio::test]
async fn a_draft_can_be_discarded_once_and_never_placed_afterwards() {
    let app = spawn_app().await;
    let store = app.store_with_products().await;
    let alice = app.customer("alice");
    let order = app.draft_with_tea(&alice, store).await;

    let discarded = app
        .send(
            Method::DELETE,
            &format!("/v1/orders/{order}"),
            Some(&alice),
            None,
            &[],
        )
        .await;
    discarded.assert_status(200);
    assert_eq!(discarded.body["status"], "discarded");

    app.place(&alice, order)
        .await
        .assert_problem(409, "illegal-transition");
    app.send(
        Method::DELETE,
        &format!("/v1/orders/{order}"),
        Some(&alice),
        None,
        &[],
    )
    .await
    .assert_problem(409, "illegal-transition");
    app.add_item(&alice, order, "TEA", 1)
        .await
        .assert_problem(409, "items-locked");
}

#[tokio::test]
async fn catalog_rules_refuse_unknown_inactive_and_foreign_currency_items() {
    let app = spawn_app().await;
    let store = app.store_with_products().await;
    let alice = app.customer("alice");
    let order = app.create_order(&alice, store).await;
    let events_before = app.event_count().await;

    app.add_item(&alice, order, "NOPE", 1)
        .await
        .assert_problem(422, "unknown-sku");
    app.add_item(&alice, order, "OLD", 1)
        .await
        .assert_problem(422, "product-inactive");
    app.add_item(&alice, order, "USD-IMPORT", 1)
        .await
        .assert_problem(422, "currency-mismatch");
    app.place(&alice, order)
        .await
        .assert_problem(422, "empty-order");
    app.send(
        Method::PATCH,
        &format!("/v1/orders/{order}/items/7"),
        Some(&alice),
        Some(json!({"quantity": 1})),
        &[],
    )
    .await
    .assert_problem(404, "line-not-found");
    app.post(
        "/v1/orders",
        &alice,
        json!({"store_id": uuid::Uuid::new_v4()}),
    )
    .await
    .assert_problem(422, "unknown-store");
    app.post("/v1/orders", &alice, json!({"store_id": store, "items": [{"sku": "TEA", "quantity": 2}, {"sku": "NOPE", "quantity": 1}]}))
        .await
        .assert_problem(422, "unknown-sku");
    assert_eq!(app.event_types(order).await, ["OrderCreated"]);
    assert_eq!(
        app.event_count().await,
        events_before,
        "refused requests stored events"
    );
    assert_eq!(
        app.event_count().await,
        events_before,
        "refused requests stored events"
    );
}

#[tokio::test]
async fn an_order_created_with_items_prices_them_and_defaults_to_the_store_currency() {
    let app = spawn_app().await;
    let store = app.store_with_products().await;
    let alice = app.customer("alice");
    let created = app
        .post(
            "/v1/orders",
            &alice,
            json!({
                "store_id": store,
                "customer_email": "alice@example.com",
                "shipping_address": {"name": "Alice", "line1": "1 Main St", "city": "Berlin", "postal_code": "10115", "country": "DE"},
                "items": [{"sku": "TEA", "quantity": 1}, {"sku": "CAKE", "quantity": 2}, {"sku": "TEA", "quantity": 1}]
            }),
        )
        .await;
    created.assert_status(201);
    assert_eq!(created.body["currency"], "EUR");
    assert_eq!(created.body["customer_id"], "alice");
    assert_eq!(created.body["total_minor"], 2 * 450 + 2 * 300);
    assert_eq!(
        created.body["lines"].as_array().map(Vec::len),
        Some(2),
        "repeated SKU merged into one line"
    );
    assert_eq!(
        created.header("location"),
        Some(
            format!(
                "/v1/orders/{}",
                created.body["id"].as_str().unwrap_or_default()
            )
            .as_str()
        )
    );
}

#[tokio::test]
async fn if_match_makes_a_command_conditional() {
    let app = spawn_app().await;
    let store = app.store_with_products().await;
    let alice = app.customer("alice");
    let order = app.create_order(&alice, store).await;
    let path = format!("/v1/orders/{order}/items");

    let stale = app
        .send(
            Method::POST,
            &path,
            Some(&alice),
            Some(json!({"sku": "TEA", "quantity": 1})),
            &[("if-match", "\"7\"")],
        )
        .await;
    stale.assert_problem(412, "version-mismatch");
    let fresh = app
        .send(
            Method::POST,
            &path,
            Some(&alice),
            Some(json!({"sku": "TEA", "quantity": 1})),
            &[("if-match", "\"1\"")],
        )
        .await;
    fresh.assert_status(200);
    assert_eq!(fresh.header("etag"), Some("\"2\""));
    app.send(
        Method::POST,
        &path,
        Some(&alice),
        Some(json!({"sku": "TEA", "quantity": 1})),
        &[("if-match", "soon")],
    )
    .await
    .assert_problem(400, "invalid-if-match");
}

#[tokio::test]
async fn health_and_metrics_answer_without_a_token() {
    let app = spawn_app().await;
    let live = app
        .raw(app.client.get(format!("{}/health/live", app.address)))
        .await;
    live.assert_status(200);
    let ready = app
        .raw(app.client.get(format!("{}/health/ready", app.address)))
        .await;
    ready.assert_status(200);
    assert_eq!(ready.body["ready"], true);

    let store = app.store_with_products().await;
    let alice = app.customer("alice");
    app.create_order(&alice, store).await;
    let metrics = app.metrics_page().await;
    assert!(
        metrics.contains("order_commands_total{command=\"CreateOrder\",outcome=\"accepted\"} 1"),
        "{metrics}"
    );
    assert!(metrics.contains("events_appended_total{event_type=\"OrderCreated\"} 1"));
    // Log reader metrics: the projector is active and reports its lag.
    app.wait_for_projector(std::time::Duration::from_secs(10))
        .await;
    let metrics = app.metrics_page().await;
    for name in [
        "log_reader_active{reader=\"projector\"} 1",
        "log_reader_lag_events{reader=\"projector\"}",
        "log_reader_lag_seconds{reader=\"projector\"}",
        "log_reader_apply_seconds_count{reader=\"projector\"}",
    ] {
        assert!(metrics.contains(name), "{name} missing from /metrics");
    }
    assert!(metrics
        .contains("http_requests_total{method=\"POST\",route=\"createOrder\",status=\"201\"} 1"));
}

#[tokio::test]
async fn a_lost_database_answers_503_with_retry_after_not_500() {
    let app = spawn_app().await;
    let store = app.store_with_products().await;
    let alice = app.customer("alice");
    let order = app.create_order(&alice, store).await;

    app.pool.close().await;

    let read = app.get(&format!("/v1/orders/{order}"), &alice).await;
    read.assert_problem(503, "service-unavailable");
    assert_eq!(read.header("retry-after"), Some("1"));
    app.add_item(&alice, order, "TEA", 1)
        .await
        .assert_problem(503, "service-unavailable");
    let ready = app
        .raw(app.client.get(format!("{}/health/ready", app.address)))
        .await;
    ready.assert_status(503);
    assert_eq!(ready.body["ready"], false);
}
