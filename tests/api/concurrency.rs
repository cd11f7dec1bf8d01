//! Concurrent writers on one order, and idempotent retries.

use std::collections::BTreeSet;
use std::time::Duration;

use futures::future::join_all;
use reqwest::Method;
use serde_json::json;

use crate::helpers::{spawn_app, spawn_app_with};

#[tokio::test]
async fn fifty_concurrent_add_items_lose_no_update() {
    // Arrange
    let app = spawn_app().await;
    let store = app.store_with_products().await;
    app.add_products(store, 50).await;
    let alice = app.customer("alice");
    let order = app.create_order(&alice, store).await;

    // Act: 50 different products at once.
    let answers = join_all((1..=50).map(|i| {
        let app = &app;
        let alice = &alice;
        async move { (i, app.add_item(alice, order, &format!("P{i}"), 1).await) }
    }))
    .await;

    // Assert: each answered 2xx or 409, and exactly the 2xx ones are on the order.
    let mut accepted = BTreeSet::new();
    for (i, answer) in &answers {
        match answer.status.as_u16() {
            200 => {
                accepted.insert(format!("P{i}"));
            }
            409 => {
                answer.assert_problem(409, "concurrent-modification");
                assert!(answer.header("retry-after").is_some());
            }
            other => panic!("P{i}: unexpected {other}: {}", answer.text),
        }
    }
    // The read model once it holds every accepted change (a plain read serves what it has
    // after a second, which a loaded machine's projector can trail by): a lost update would
    // keep it from ever getting there.
    let expected_version = 1 + accepted.len();
    let read = app
        .wait_for_order(order, Duration::from_secs(30), |o| {
            o["version"] == expected_version
        })
        .await;
    let on_order: BTreeSet<String> = read["lines"]
        .as_array()
        .expect("lines")
        .iter()
        .map(|l| l["sku"].as_str().expect("sku").to_owned())
        .collect();
    assert_eq!(on_order, accepted);
    assert_eq!(
        read["total_minor"],
        100 * i64::try_from(accepted.len()).expect("len")
    );
    // Writers of one order queue behind each other inside one process: none is refused.
    // (Conflicts between processes are covered by the two-replica test below.)
    assert_eq!(accepted.len(), 50);
}

#[tokio::test]
async fn two_replicas_writing_one_order_lose_no_update() {
    // Arrange: two service processes on one database; each only serializes its own writers,
    // so they collide in the event store and must retry on the new state.
    let app = spawn_app().await;
    let replica = app.replica().await;
    let store = app.store_with_products().await;
    app.add_products(store, 40).await;
    let alice = app.customer("alice");
    let order = app.create_order(&alice, store).await;

    let answers = join_all((1..=40).map(|i| {
        let target = if i % 2 == 0 { &app } else { &replica };
        let alice = &alice;
        async move { (i, target.add_item(alice, order, &format!("P{i}"), 1).await) }
    }))
    .await;

    let accepted: BTreeSet<String> = answers
        .iter()
        .filter_map(|(i, a)| match a.status.as_u16() {
            200 => Some(format!("P{i}")),
            409 => None,
            other => panic!("P{i}: unexpected {other}: {}", a.text),
        })
        .collect();
    let read = app.get(&format!("/v1/orders/{order}"), &alice).await;
    let on_order: BTreeSet<String> = read.body["lines"]
        .as_array()
        .expect("lines")
        .iter()
        .map(|l| l["sku"].as_str().expect("sku").to_owned())
        .collect();
    assert_eq!(on_order, accepted);
    assert_eq!(read.body["version"], 1 + accepted.len());
    let retries = [&app, &replica]
        .iter()
        .map(|a| {
            a.app_state
                .metrics
                .store
                .command_retries
                .with_label_values(&["AddItem"])
                .get()
        })
        .sum::<u64>();
    assert!(
        retries > 0,
        "the replicas never collided: the test did not exercise the retry path"
    );
}

/// How often `app` decided on a cached order that turned out to be stale.
fn stale_cache_hits(app: &crate::helpers::TestApp) -> u64 {
    app.app_state
        .metrics
        .store
        .order_cache
        .with_label_values(&["stale"])
        .get()
}

#[tokio::test]
async fn a_replica_with_an_older_copy_of_the_order_decides_on_the_stored_one() {
    // Arrange: the first process's last command left each order in its cache; the replica
    // then moves both orders on.
    let app = spawn_app().await;
    let replica = app.replica().await;
    let store = app.store_with_products().await;
    let alice = app.customer("alice");
    let placed = app.draft_with_tea(&alice, store).await;
    replica.place(&alice, placed).await.assert_status(200);
    let grown = app.create_order(&alice, store).await;
    replica
        .add_item(&alice, grown, "TEA", 1)
        .await
        .assert_status(200);
    let events_before = app.event_count().await;

    // Act: commands that the cached copies (a draft; version 1) would decide differently.
    let late_add = app.add_item(&alice, placed, "CAKE", 1).await;
    let with_if_match = app
        .send(
            Method::POST,
            &format!("/v1/orders/{grown}/items"),
            Some(&alice),
            Some(json!({"sku": "CAKE", "quantity": 2})),
            &[("if-match", "\"2\"")],
        )
        .await;

    // Assert: each was decided on the order as stored.
    late_add.assert_problem(409, "items-locked");
    with_if_match.assert_status(200);
    assert_eq!(with_if_match.body["version"], 3);
    assert_eq!(app.event_count().await, events_before + 1);
    assert_eq!(stale_cache_hits(&app), 2);
    // and the copies are fresh again: the next command needs no second look
    app.add_item(&alice, grown, "TEA", 1)
        .await
        .assert_status(200);
    assert_eq!(stale_cache_hits(&app), 2);
}

#[tokio::test]
async fn without_the_order_cache_commands_load_every_time() {
    let app = spawn_app_with(|s| s.database.order_cache_entries = 0).await;
    let replica = app.replica().await;
    let store = app.store_with_products().await;
    let alice = app.customer("alice");
    let order = app.create_order(&alice, store).await;
    replica
        .add_item(&alice, order, "TEA", 1)
        .await
        .assert_status(200);

    app.add_item(&alice, order, "CAKE", 1)
        .await
        .assert_status(200);

    let lookups = |outcome: &str| {
        app.app_state
            .metrics
            .store
            .order_cache
            .with_label_values(&[outcome])
            .get()
    };
    assert_eq!(
        (lookups("hit"), lookups("miss"), lookups("stale")),
        (0, 0, 0)
    );
    assert_eq!(
        app.app_state
            .metrics
            .store
            .command_retries
            .with_label_values(&["AddItem"])
            .get(),
        0
    );
}

#[tokio::test]
async fn the_same_create_sent_five_times_in_parallel_makes_one_order() {
    let app = spawn_app().await;
    let store = app.store_with_products().await;
    let alice = app.customer("alice");
    let body = json!({"store_id": store, "items": [{"sku": "TEA", "quantity": 2}]});

    let answers = join_all((0..5).map(|_| {
        app.send(
            Method::POST,
            "/v1/orders",
            Some(&alice),
            Some(body.clone()),
            &[("idempotency-key", "checkout-123")],
        )
    }))
    .await;

    let ids: BTreeSet<String> = answers
        .iter()
        .map(|a| {
            a.assert_status(201);
            a.body["id"].as_str().expect("id").to_owned()
        })
        .collect();
    assert_eq!(ids.len(), 1, "one order id for one key");
    assert!(
        answers.iter().all(|a| a.body == answers[0].body),
        "the same answer every time"
    );
    let created: i64 =
        sqlx::query_scalar("select count(*) from events where event_type = 'OrderCreated'")
            .fetch_one(&app.pool)
            .await
            .expect("count");
    assert_eq!(created, 1);
    assert_eq!(
        answers
            .iter()
            .filter(|a| a.header("idempotent-replayed") == Some("true"))
            .count(),
        4
    );
}

#[tokio::test]
async fn a_retried_command_appends_nothing_and_a_reused_key_is_refused() {
    let app = spawn_app().await;
    let store = app.store_with_products().await;
    let alice = app.customer("alice");
    let order = app.create_order(&alice, store).await;
    let path = format!("/v1/orders/{order}/items");
    let key = [("idempotency-key", "add-tea-1")];

    let first = app
        .send(
            Method::POST,
            &path,
            Some(&alice),
            Some(json!({"sku": "TEA", "quantity": 1})),
            &key,
        )
        .await;
    first.assert_status(200);
    app.add_item(&alice, order, "CAKE", 1)
        .await
        .assert_status(200);
    let retry = app
        .send(
            Method::POST,
            &path,
            Some(&alice),
            Some(json!({"sku": "TEA", "quantity": 1})),
            &key,
        )
        .await;
    retry.assert_status(200);
    assert_eq!(
        retry.body, first.body,
        "the retry answers with the order as the first request left it"
    );
    assert_eq!(retry.header("idempotent-replayed"), Some("true"));
    assert_eq!(
        app.event_types(order).await,
        ["OrderCreated", "ItemAdded", "ItemAdded"]
    );

    let reused = app
        .send(
            Method::POST,
            &path,
            Some(&alice),
            Some(json!({"sku": "TEA", "quantity": 5})),
            &key,
        )
        .await;
    reused.assert_problem(422, "idempotency-key-reused");
    let other_create = app
        .send(
            Method::POST,
            "/v1/orders",
            Some(&alice),
            Some(json!({"store_id": store})),
            &[("idempotency-key", "k1")],
        )
        .await;
    other_create.assert_status(201);
    app.send(
        Method::POST,
        "/v1/orders",
        Some(&alice),
        Some(json!({"store_id": store, "customer_email": "a@b.de"})),
        &[("idempotency-key", "k1")],
    )
    .await
    .assert_problem(422, "idempotency-key-reused");
}

#[tokio::test]
async fn the_same_create_through_two_replicas_makes_one_order() {
    let app = spawn_app().await;
    let replica = app.replica().await;
    let store = app.store_with_products().await;
    let alice = app.customer("alice");
    let body = json!({"store_id": store, "items": [{"sku": "TEA", "quantity": 1}]});

    let answers = join_all((0..6).map(|i| {
        let target = if i % 2 == 0 { &app } else { &replica };
        target.send(
            Method::POST,
            "/v1/orders",
            Some(&alice),
            Some(body.clone()),
            &[("idempotency-key", "two-replicas")],
        )
    }))
    .await;

    for a in &answers {
        a.assert_status(201);
        assert_eq!(a.body, answers[0].body);
    }
    let created: i64 =
        sqlx::query_scalar("select count(*) from events where event_type = 'OrderCreated'")
            .fetch_one(&app.pool)
            .await
            .expect("count");
    assert_eq!(created, 1);
}

#[tokio::test]
async fn a_retry_with_if_match_is_replayed_not_refused_as_stale() {
    let app = spawn_app().await;
    let store = app.store_with_products().await;
    let alice = app.customer("alice");
    let order = app.draft_with_tea(&alice, store).await;
    let headers = [("idempotency-key", "place-1"), ("if-match", "\"2\"")];
    let path = format!("/v1/orders/{order}/place");

    let first = app
        .send(Method::POST, &path, Some(&alice), None, &headers)
        .await;
    first.assert_status(200);
    let retry = app
        .send(Method::POST, &path, Some(&alice), None, &headers)
        .await;
    retry.assert_status(200);
    assert_eq!(retry.body, first.body);
    assert_eq!(retry.header("idempotent-replayed"), Some("true"));
    // Without the key, the same stale If-Match is refused.
    app.send(
        Method::POST,
        &path,
        Some(&alice),
        None,
        &[("if-match", "\"2\"")],
    )
    .await
    .assert_problem(412, "version-mismatch");
}

#[tokio::test]
async fn if_match_on_an_unknown_order_answers_404() {
    let app = spawn_app().await;
    let alice = app.customer("alice");
    app.send(
        Method::POST,
        &format!("/v1/orders/{}/place", uuid::Uuid::new_v4()),
        Some(&alice),
        None,
        &[("if-match", "\"1\"")],
    )
    .await
    .assert_problem(404, "order-not-found");
}

#[tokio::test]
async fn two_customers_may_use_the_same_idempotency_key() {
    let app = spawn_app().await;
    let store = app.store_with_products().await;
    let body = json!({"store_id": store});
    let key = [("idempotency-key", "cart-1")];
    let alice = app
        .send(
            Method::POST,
            "/v1/orders",
            Some(&app.customer("alice")),
            Some(body.clone()),
            &key,
        )
        .await;
    let bob = app
        .send(
            Method::POST,
            "/v1/orders",
            Some(&app.customer("bob")),
            Some(body),
            &key,
        )
        .await;
    alice.assert_status(201);
    bob.assert_status(201);
    assert_ne!(alice.body["id"], bob.body["id"]);
    assert_eq!(bob.body["customer_id"], "bob");
}

#[tokio::test]
async fn a_replay_is_not_answered_to_a_caller_who_cannot_see_the_order() {
    let app = spawn_app().await;
    let store = app.store_with_products().await;
    let staff = app.staff(store);
    let key = [("idempotency-key", "staff-order-1")];
    let body = json!({"store_id": store, "customer_id": "carol"});
    app.send(
        Method::POST,
        "/v1/orders",
        Some(&staff),
        Some(body.clone()),
        &key,
    )
    .await
    .assert_status(201);
    // Same subject and key, but the token no longer covers that store.
    let moved = app.token(
        "staff-1",
        &[order_service::http::auth::Role::Staff],
        &[uuid::Uuid::new_v4()],
    );
    app.send(Method::POST, "/v1/orders", Some(&moved), Some(body), &key)
        .await
        .assert_status(403);
}

/// A saga command decided on this process's cached saga after another replica moved the saga
/// on is decided again on the saga as stored.
#[tokio::test]
async fn a_replica_with_an_older_copy_of_the_saga_decides_on_the_stored_one() {
    use order_sagas::{OrderSnapshot, SagaCommand, StockItem};
    let app = spawn_app().await;
    let replica = app.replica().await;
    let lookups = |outcome: &str| {
        app.app_state
            .metrics
            .store
            .saga_cache
            .with_label_values(&[outcome])
            .get()
    };
    let order = order_domain::OrderId::new();
    let now = chrono::Utc::now();
    let start = SagaCommand::Start {
        order: OrderSnapshot {
            order_id: order,
            store_id: order_domain::StoreId::from_uuid(uuid::Uuid::from_u128(7)),
            customer_id: order_domain::CustomerId::parse("alice").expect("customer"),
            currency: order_domain::Currency::parse("EUR").expect("currency"),
            total_minor: 450,
            lines: vec![StockItem {
                sku: order_domain::Sku::parse("TEA").expect("sku"),
                quantity: order_domain::Quantity::parse(1).expect("quantity"),
            }],
        },
        command_id_key: order_sagas::CommandIdKey::from_uuid(uuid::Uuid::new_v4()),
        now,
    };
    let execute = |on: &crate::helpers::TestApp, command: &SagaCommand| {
        let sagas = on.app_state.sagas.clone();
        let command = command.clone();
        async move {
            sagas
                .execute(order, &command, std::collections::HashMap::new())
                .await
        }
    };
    let started = execute(&app, &start).await.expect("started");
    assert!(!started.is_empty());
    assert_eq!(lookups("miss"), 1);

    // the replica cancels: the first process's copy is now behind
    let cancel = SagaCommand::OrderCancelled { now };
    let compensating = execute(&replica, &cancel)
        .await
        .expect("cancelled on the replica");
    assert!(!compensating.is_empty());
    let events_before = app.event_count().await;

    // on its stale copy the first process would compensate a second time
    let again = execute(&app, &cancel).await.expect("cancel again");
    assert!(again.is_empty(), "decided on the stale copy: {again:?}");
    assert_eq!(app.event_count().await, events_before);
    assert_eq!((lookups("hit"), lookups("stale")), (1, 1));

    // and the stored saga is cached again only by a command that appends: this one looks again
    let _ = execute(&app, &cancel).await.expect("cancel a third time");
    assert_eq!(lookups("miss"), 2);
}
