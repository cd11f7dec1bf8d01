//! The saga end to end: the real service, real PostgreSQL, real NATS JetStream, and the
//! participant simulator as the inventory and payment services.

use std::time::Duration;

use order_service::simulator::SimulatorConfig;
use serde_json::json;
use uuid::Uuid;

use crate::helpers::{spawn_saga_app, TestApp, Who};
use crate::poll::eventually;

const WAIT: Duration = Duration::from_secs(20);

async fn placed_order(app: &TestApp, who: &Who, store: Uuid, qty: i64) -> Uuid {
    let order = app.create_order(who, store).await;
    app.add_item(who, order, "TEA", qty)
        .await
        .assert_status(200);
    app.place(who, order).await.assert_status(200);
    order
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_placed_order_is_confirmed_then_captured_and_committed_once_when_shipped() {
    let app = spawn_saga_app(SimulatorConfig::default(), |_| {}).await;
    let store = app.store_with_products().await;
    let alice = app.customer("alice");
    let staff = app.staff(store);

    let order = placed_order(&app, &alice, store, 2).await;
    app.wait_for_order(order, WAIT, |o| o["status"] == "confirmed")
        .await;
    let books = app.books();
    assert_eq!(books.authorized_minor(), 900);
    assert_eq!(books.reserved_units(), 2);

    app.set_status(&staff, order, "preparing")
        .await
        .assert_status(200);
    app.post(
        &format!("/v1/orders/{order}/ship"),
        &staff,
        json!({"carrier": "DHL", "tracking_number": "T1"}),
    )
    .await
    .assert_status(200);
    let saga = app.wait_for_saga(order, "completed", WAIT).await;
    assert!(
        saga["steps"].as_array().is_some_and(|s| s.len() == 4),
        "{saga}"
    );
    let books = app.books();
    assert_eq!(books.captured_minor(), 900);
    assert_eq!(books.committed_units(), 2);
    assert_eq!(books.authorized_minor(), 0);
    assert_eq!(app.saga_events(order, "PaymentCaptureRequested").await, 1);
    assert_eq!(app.saga_events(order, "StockCommitRequested").await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn picked_up_orders_are_captured_and_committed_too() {
    let app = spawn_saga_app(SimulatorConfig::default(), |_| {}).await;
    let store = app.store_with_products().await;
    let alice = app.customer("alice");
    let staff = app.staff(store);
    let order = placed_order(&app, &alice, store, 1).await;
    app.wait_for_order(order, WAIT, |o| o["status"] == "confirmed")
        .await;
    for s in ["preparing", "ready_for_pickup", "picked_up"] {
        app.set_status(&staff, order, s).await.assert_status(200);
    }
    app.wait_for_saga(order, "completed", WAIT).await;
    assert_eq!(app.books().captured_minor(), 450);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn out_of_stock_rejects_the_order_and_never_touches_payment() {
    let app = spawn_saga_app(
        SimulatorConfig {
            out_of_stock_rate: 1.0,
            ..SimulatorConfig::default()
        },
        |_| {},
    )
    .await;
    let store = app.store_with_products().await;
    let order = placed_order(&app, &app.customer("alice"), store, 1).await;
    app.wait_for_order(order, WAIT, |o| o["status"] == "rejected")
        .await;
    app.wait_for_saga(order, "failed", WAIT).await;
    assert_eq!(
        app.saga_events(order, "PaymentAuthorizationRequested")
            .await,
        0
    );
    let books = app.books();
    assert_eq!(books.reserved_units(), 0);
    assert!(
        books.payments().next().is_none(),
        "no payment command may reach the payment service"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_declined_payment_releases_the_stock_and_rejects_the_order() {
    let app = spawn_saga_app(
        SimulatorConfig {
            decline_rate: 1.0,
            ..SimulatorConfig::default()
        },
        |_| {},
    )
    .await;
    let store = app.store_with_products().await;
    let order = placed_order(&app, &app.customer("alice"), store, 3).await;
    app.wait_for_order(order, WAIT, |o| o["status"] == "rejected")
        .await;
    app.wait_for_saga(order, "failed", WAIT).await;
    assert_eq!(app.saga_events(order, "StockReleaseRequested").await, 1);
    assert_eq!(app.books().reserved_units(), 0);
    assert_eq!(app.books().authorized_minor(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelling_a_confirmed_order_releases_the_stock_and_voids_the_payment() {
    let app = spawn_saga_app(SimulatorConfig::default(), |_| {}).await;
    let store = app.store_with_products().await;
    let alice = app.customer("alice");
    let order = placed_order(&app, &alice, store, 2).await;
    app.wait_for_order(order, WAIT, |o| o["status"] == "confirmed")
        .await;
    app.post(
        &format!("/v1/orders/{order}/cancel"),
        &alice,
        json!({"reason": "changed my mind"}),
    )
    .await
    .assert_status(200);
    app.wait_for_saga(order, "cancelled", WAIT).await;
    let books = app.books();
    assert_eq!(books.reserved_units(), 0);
    assert_eq!(books.authorized_minor(), 0);
    assert_eq!(books.voided_minor(), 900);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelling_while_the_saga_is_in_flight_leaves_nothing_reserved_or_authorized() {
    let slow = SimulatorConfig {
        min_latency: Duration::from_millis(150),
        max_latency: Duration::from_millis(300),
        ..SimulatorConfig::default()
    };
    let app = spawn_saga_app(slow, |_| {}).await;
    let store = app.store_with_products().await;
    let alice = app.customer("alice");
    let mut orders = Vec::new();
    for i in 0..6 {
        let order = placed_order(&app, &alice, store, 1).await;
        // Cancel at different moments of the saga. This sleep only spreads the cancellations;
        // the outcome is asserted after each saga is seen cancelled below.
        tokio::time::sleep(Duration::from_millis(60 * i)).await;
        app.post(
            &format!("/v1/orders/{order}/cancel"),
            &alice,
            json!({"reason": "too slow"}),
        )
        .await
        .assert_status(200);
        orders.push(order);
    }
    for order in orders {
        app.wait_for_saga(order, "cancelled", WAIT).await;
    }
    let books = app.books();
    assert_eq!(books.reserved_units(), 0, "stock left reserved");
    assert_eq!(books.authorized_minor(), 0, "money left authorized");
    assert_eq!(books.captured_minor(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_reply_delivered_several_times_has_one_effect() {
    let app = spawn_saga_app(
        SimulatorConfig {
            duplicate_reply_rate: 1.0,
            ..SimulatorConfig::default()
        },
        |_| {},
    )
    .await;
    let store = app.store_with_products().await;
    let alice = app.customer("alice");
    let staff = app.staff(store);
    let order = placed_order(&app, &alice, store, 2).await;
    app.wait_for_order(order, WAIT, |o| o["status"] == "confirmed")
        .await;
    app.set_status(&staff, order, "preparing")
        .await
        .assert_status(200);
    app.post(
        &format!("/v1/orders/{order}/ship"),
        &staff,
        json!({"carrier": "DHL", "tracking_number": "T2"}),
    )
    .await
    .assert_status(200);
    app.wait_for_saga(order, "completed", WAIT).await;
    for kind in [
        "StockReserved",
        "PaymentAuthorized",
        "PaymentCaptured",
        "StockCommitted",
        "OrderConfirmationDue",
    ] {
        assert_eq!(
            app.saga_events(order, kind).await,
            1,
            "{kind} recorded more than once"
        );
    }
    assert_eq!(
        app.event_types(order)
            .await
            .iter()
            .filter(|t| *t == "OrderConfirmed")
            .count(),
        1
    );
    assert_eq!(app.books().captured_minor(), 900);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_payment_service_gets_the_same_message_again_then_the_order_is_failed() {
    let app = spawn_saga_app(
        SimulatorConfig {
            silence_rate: 1.0,
            ..SimulatorConfig::default()
        },
        |s| {
            s.saga.step_timeout_ms = 200;
            s.saga.max_attempts = 3;
        },
    )
    .await;
    let store = app.store_with_products().await;
    let order = placed_order(&app, &app.customer("alice"), store, 1).await;
    app.wait_for_order(order, WAIT, |o| o["status"] == "rejected")
        .await;
    // Three sends of the reservation, one message id.
    assert_eq!(app.saga_events(order, "StockReservationRequested").await, 3);
    let saga = app.wait_for_saga(order, "failed", WAIT).await;
    let reserve = &saga["steps"][0];
    assert_eq!(reserve["step"], "reserve");
    assert_eq!(reserve["attempt"], 3);
    assert_eq!(reserve["abandoned"], true);
}

/// Every reply of a finished saga published twice more (fresh `Nats-Msg-Id`s, so JetStream does
/// not drop them): nothing changes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_reply_delivered_three_times_changes_nothing_more() {
    use futures::StreamExt as _;

    let app = spawn_saga_app(SimulatorConfig::default(), |_| {}).await;
    let store = app.store_with_products().await;
    let alice = app.customer("alice");
    let staff = app.staff(store);
    let order = placed_order(&app, &alice, store, 2).await;
    app.wait_for_order(order, WAIT, |o| o["status"] == "confirmed")
        .await;
    app.set_status(&staff, order, "preparing")
        .await
        .assert_status(200);
    app.post(
        &format!("/v1/orders/{order}/ship"),
        &staff,
        json!({"carrier": "DHL", "tracking_number": "T3"}),
    )
    .await
    .assert_status(200);
    app.wait_for_saga(order, "completed", WAIT).await;
    let saga_events_before: i64 =
        sqlx::query_scalar("select count(*) from events where aggregate_type = 'OrderSaga'")
            .fetch_one(&app.pool)
            .await
            .expect("count");
    let books_before = app.books();

    // Read back every reply and publish each twice more.
    let url = app.settings.nats_url.clone().expect("nats url");
    let nats = order_service::nats::Nats::connect(&url, &app.settings.nats)
        .await
        .expect("nats");
    let stream = nats
        .js
        .get_stream(nats.stream_name("SAGA_REPLIES"))
        .await
        .expect("stream");
    // Every reply is stored once the saga completed: fetch exactly as many as the stream holds
    // (`expires` only bounds a fetch that would otherwise never end).
    let stored = stream.get_info().await.expect("stream info").state.messages;
    let consumer = stream
        .create_consumer(async_nats::jetstream::consumer::pull::Config::default())
        .await
        .expect("consumer");
    let mut messages = consumer
        .fetch()
        .max_messages(usize::try_from(stored).expect("count"))
        .expires(WAIT)
        .messages()
        .await
        .expect("fetch");
    let mut replies = Vec::new();
    while let Some(Ok(m)) = messages.next().await {
        replies.push((m.subject.to_string(), m.payload.clone()));
    }
    assert_eq!(
        replies.len(),
        4,
        "reserved, authorized, captured, committed"
    );
    for round in 0..2 {
        for (i, (subject, payload)) in replies.iter().enumerate() {
            let mut headers = async_nats::HeaderMap::new();
            headers.insert("Nats-Msg-Id", format!("again-{round}-{i}").as_str());
            nats.publish(subject.clone(), headers, payload.clone())
                .await
                .expect("publish");
        }
    }
    // Every copy handled (the consumer acks a reply only after applying it) before asserting
    // that none of them changed anything.
    app.wait_for_replies_settled(WAIT).await;

    let saga_events_after: i64 =
        sqlx::query_scalar("select count(*) from events where aggregate_type = 'OrderSaga'")
            .fetch_one(&app.pool)
            .await
            .expect("count");
    assert_eq!(
        saga_events_after, saga_events_before,
        "a re-delivered reply changed the saga"
    );
    let books_after = app.books();
    assert_eq!(books_after.captured_minor(), books_before.captured_minor());
    assert_eq!(
        books_after.committed_units(),
        books_before.committed_units()
    );
}

/// A reply that can never be processed goes to the dead-letter stream and does not block the
/// replies behind it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unprocessable_reply_is_dead_lettered_and_others_go_on() {
    use futures::StreamExt as _;

    let app = spawn_saga_app(SimulatorConfig::default(), |_| {}).await;
    let url = app.settings.nats_url.clone().expect("nats url");
    let nats = order_service::nats::Nats::connect(&url, &app.settings.nats)
        .await
        .expect("nats");
    let mut headers = async_nats::HeaderMap::new();
    headers.insert("Nats-Msg-Id", "garbage-1");
    nats.publish(
        nats.subject("payment.replies.authorized"),
        headers,
        bytes::Bytes::from_static(b"{not json"),
    )
    .await
    .expect("publish");

    // The saga machinery still works...
    let store = app.store_with_products().await;
    let order = placed_order(&app, &app.customer("alice"), store, 1).await;
    app.wait_for_order(order, WAIT, |o| o["status"] == "confirmed")
        .await;

    // ...and the garbage waits in the dead-letter stream with its reason.
    let stream = nats
        .js
        .get_stream(nats.stream_name("DEAD_LETTERS"))
        .await
        .expect("stream");
    let consumer = stream
        .create_consumer(async_nats::jetstream::consumer::pull::Config::default())
        .await
        .expect("consumer");
    let mut messages = consumer
        .fetch()
        .max_messages(10)
        .expires(Duration::from_secs(2))
        .messages()
        .await
        .expect("fetch");
    let dead = messages
        .next()
        .await
        .expect("a dead letter")
        .expect("message");
    assert_eq!(
        dead.subject.as_str(),
        nats.subject("dead.replies.authorized")
    );
    assert_eq!(dead.payload.as_ref(), b"{not json");
    let reason = dead
        .headers
        .as_ref()
        .and_then(|h| h.get("dead-letter-reason"))
        .map(|v| v.as_str().to_owned());
    assert!(
        reason.is_some_and(|r| r.contains("unparseable")),
        "dead letters say why"
    );
    let metrics = app.metrics_page().await;
    assert!(
        metrics
            .contains("nats_consumed_total{consumer=\"saga-replies\",outcome=\"dead_lettered\"} 1"),
        "{}",
        metrics
    );
}

/// A payment service that stays silent until the saga gave up, then authorizes after all: the
/// saga released the stock and rejected the order, and now voids the late authorization.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_late_authorization_after_the_saga_gave_up_is_voided() {
    use futures::StreamExt as _;
    use order_sagas::{
        Message as _, MessageId, ParticipantCommand, PaymentAuthorized, PaymentId, ReservationId,
        StockReleased, StockReserved,
    };

    let app = crate::helpers::spawn_saga_app_without_simulator(|s| {
        s.saga.step_timeout_ms = 150;
        s.saga.max_attempts = 2;
    })
    .await;
    let url = app.settings.nats_url.clone().expect("nats url");
    let nats = order_service::nats::Nats::connect(&url, &app.settings.nats)
        .await
        .expect("nats");
    // Core subscriptions see what JetStream stores on these subjects.
    let mut commands = nats
        .client
        .subscribe(nats.subject("*.commands.*"))
        .await
        .expect("subscribe");
    let store = app.store_with_products().await;
    let order = placed_order(&app, &app.customer("alice"), store, 1).await;

    let publish = |subject: &'static str, body: Vec<u8>, id: String| {
        let nats = nats.clone();
        async move {
            let mut h = async_nats::HeaderMap::new();
            h.insert("Nats-Msg-Id", id.as_str());
            nats.publish(nats.subject(subject), h, body.into())
                .await
                .expect("reply");
        }
    };
    let mut authorize = None;
    let mut voided = false;
    let deadline = std::time::Instant::now() + WAIT;
    while !voided {
        assert!(
            std::time::Instant::now() < deadline,
            "no void for the late authorization"
        );
        let Ok(Some(msg)) = tokio::time::timeout(Duration::from_millis(500), commands.next()).await
        else {
            // Silent while the saga retries; once it failed the order, answer the authorization.
            if let (Some(cmd), true) = (&authorize, app.saga_events(order, "SagaFailed").await == 1)
            {
                let cmd: &order_sagas::AuthorizePayment = cmd;
                let reply = PaymentAuthorized {
                    message_id: MessageId::from_uuid(Uuid::new_v4()),
                    saga_id: cmd.saga_id,
                    order_id: cmd.order_id,
                    in_reply_to: cmd.message_id,
                    payment_id: PaymentId::new("late-pay"),
                    amount_minor: cmd.amount_minor,
                    currency: cmd.currency,
                };
                publish(
                    "payment.replies.authorized",
                    serde_json::to_vec(&reply).expect("json"),
                    "late".into(),
                )
                .await;
                authorize = None;
            }
            continue;
        };
        let subject = nats
            .unprefixed(msg.subject.as_str())
            .expect("prefix")
            .to_owned();
        match ParticipantCommand::parse(&subject, &msg.payload).expect("a contract command") {
            ParticipantCommand::ReserveStock(c) => {
                let reply = StockReserved {
                    message_id: MessageId::from_uuid(Uuid::new_v4()),
                    saga_id: c.saga_id,
                    order_id: c.order_id,
                    in_reply_to: c.message_id,
                    reservation_id: ReservationId::new("res-1"),
                };
                publish(
                    "inventory.replies.reserved",
                    serde_json::to_vec(&reply).expect("json"),
                    c.message_id().to_string(),
                )
                .await;
            }
            ParticipantCommand::ReleaseStock(c) => {
                let reply = StockReleased {
                    message_id: MessageId::from_uuid(Uuid::new_v4()),
                    saga_id: c.saga_id,
                    order_id: c.order_id,
                    in_reply_to: c.message_id,
                };
                publish(
                    "inventory.replies.released",
                    serde_json::to_vec(&reply).expect("json"),
                    c.message_id().to_string(),
                )
                .await;
            }
            ParticipantCommand::AuthorizePayment(c) => authorize = Some(c), // stay silent
            ParticipantCommand::VoidPayment(c) => {
                assert_eq!(c.payment_id.as_str(), "late-pay");
                voided = true;
            }
            other => panic!("unexpected command {other:?}"),
        }
    }
    let body = app
        .wait_for_order(order, WAIT, |o| o["status"] == "rejected")
        .await;
    assert_eq!(body["status"], "rejected");
    assert_eq!(
        app.saga_events(order, "PaymentAuthorizationRequested")
            .await,
        2,
        "sent, re-sent, then given up"
    );
    assert_eq!(app.saga_events(order, "PaymentVoidRequested").await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sagas_listing_pages_with_a_cursor_like_every_list() {
    let app = spawn_saga_app(SimulatorConfig::default(), |_| {}).await;
    let store = app.store_with_products().await;
    let alice = app.customer("alice");
    let admin = app.admin();
    let mut placed = Vec::new();
    for _ in 0..3 {
        let order = placed_order(&app, &alice, store, 1).await;
        app.wait_for_saga(order, "confirmed", WAIT).await;
        placed.push(order.to_string());
    }
    // the listing reads the saga read model, which follows the log: wait until it has all three
    eventually("the listing never showed 3 sagas", WAIT, || async {
        let listed = app.get("/v1/admin/sagas?state=confirmed", &admin).await;
        (listed.body["items"].as_array().map_or(0, Vec::len) >= 3).then_some(())
    })
    .await;

    let first = app
        .get("/v1/admin/sagas?state=confirmed&limit=2", &admin)
        .await;
    first.assert_status(200);
    let next = first.body["next"].as_str().expect("a second page");
    let second = app
        .get(
            &format!("/v1/admin/sagas?state=confirmed&limit=2&cursor={next}"),
            &admin,
        )
        .await;
    second.assert_status(200);
    assert!(second.body.get("next").is_none(), "{}", second.text);

    let mut listed: Vec<String> = [&first.body, &second.body]
        .iter()
        .flat_map(|page| page["items"].as_array().expect("items").clone())
        .map(|saga| saga["order_id"].as_str().expect("order id").to_owned())
        .collect();
    assert_eq!(listed.len(), 3, "no saga twice, none missing");
    listed.sort();
    placed.sort();
    assert_eq!(listed, placed);
    // counter-test: a cursor of another list is refused
    let events = app
        .get(&format!("/v1/orders/{}/events?limit=1", placed[0]), &admin)
        .await;
    let foreign = events.body["next"].as_str().expect("events cursor");
    app.get(&format!("/v1/admin/sagas?cursor={foreign}"), &admin)
        .await
        .assert_problem(400, "invalid-parameter");
}
