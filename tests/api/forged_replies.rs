//! Trust on NATS, from the saga's side (DESIGN §8): replies anyone could have written are
//! believed by no saga, each is counted by reason, and the genuine reply still confirms; the
//! command ids a forger would need are shown to admins and services only; streams are bounded.

use std::time::Duration;

use order_service::simulator::SimulatorConfig;
use serde_json::{json, Value};
use uuid::Uuid;

use crate::helpers::{sample, spawn_saga_app, spawn_saga_app_without_simulator, TestApp};

const WAIT: Duration = Duration::from_secs(20);

/// The id of the saga's command for `step`, as an admin reads it.
pub(crate) async fn message_id(app: &TestApp, order: Uuid, step: &str) -> String {
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let saga = app
            .get(&format!("/v1/orders/{order}/saga"), &app.admin())
            .await;
        if let Some(id) = saga.body["steps"].as_array().and_then(|steps| {
            steps
                .iter()
                .find(|s| s["step"] == step)
                .and_then(|s| s["message_id"].as_str())
        }) {
            return id.to_owned();
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no {step} request in {}",
            saga.text
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// Publishes `body` on `subject` (without the prefix) as a participant would, or anyone who can
/// reach the server.
pub(crate) async fn publish(app: &TestApp, subject: &str, body: Value) {
    let url = app.settings.nats_url.clone().expect("nats url");
    let nats = order_service::nats::Nats::connect(&url, &app.settings.nats)
        .await
        .expect("nats");
    let mut headers = async_nats::HeaderMap::new();
    headers.insert("Nats-Msg-Id", Uuid::new_v4().to_string().as_str());
    headers.insert("Content-Type", "application/json");
    nats.publish(
        nats.subject(subject),
        headers,
        serde_json::to_vec(&body).expect("json").into(),
    )
    .await
    .expect("stored by JetStream");
}

/// A reply's body: the envelope every reply carries, plus `fields`.
pub(crate) fn reply(order: Uuid, in_reply_to: &str, fields: Value) -> Value {
    let mut body = json!({
        "message_id": Uuid::new_v4().to_string(),
        "saga_id": order.to_string(),
        "order_id": order.to_string(),
        "in_reply_to": in_reply_to,
    });
    if let (Some(body), Value::Object(fields)) = (body.as_object_mut(), fields) {
        body.extend(fields);
    }
    body
}

/// The id anyone could compute before ids were keyed: UUIDv5 of the order id and the step.
fn guessed(order: Uuid, step: &str) -> String {
    Uuid::new_v5(&order, format!("{step}/1").as_bytes()).to_string()
}

fn ignored(page: &str, reason: &str) -> i64 {
    sample(
        page,
        &format!("saga_replies_ignored_total{{reason=\"{reason}\"}}"),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_replies_never_move_an_order_and_the_genuine_one_still_confirms() {
    // Arrange: a placed order whose saga waits for the inventory; the test is the participant.
    let app = spawn_saga_app_without_simulator(|_| {}).await;
    let store = app.store_with_products().await;
    let alice = app.customer("alice");
    let order = app.create_order(&alice, store).await;
    app.add_item(&alice, order, "TEA", 2)
        .await
        .assert_status(200);
    app.place(&alice, order).await.assert_status(200);
    let reserve = message_id(&app, order, "reserve").await;
    let before = app.metrics_page().await;

    // Act: forgeries before the stock is reserved...
    let forgeries_on_reserve = [
        (
            "inventory.replies.rejected",
            reply(
                order,
                &guessed(order, "reserve"),
                json!({"reason": "forged"}),
            ),
        ),
        (
            "inventory.replies.released",
            reply(order, &guessed(order, "release"), json!({})),
        ),
    ];
    for (subject, body) in forgeries_on_reserve {
        publish(&app, subject, body).await;
    }
    // ...then the genuine reservation...
    publish(
        &app,
        "inventory.replies.reserved",
        reply(order, &reserve, json!({"reservation_id": "res-1"})),
    )
    .await;
    let authorize = message_id(&app, order, "authorize").await;
    // ...and forged authorizations and refusals of every kind.
    let eur = json!("EUR");
    let forgeries = [
        // no amount, no currency: outside the contract
        json!({"payment_id": "pay-x"}),
        json!({"payment_id": "pay-x", "amount_minor": 1, "currency": eur}),
        json!({"payment_id": "pay-x", "amount_minor": 900, "currency": "USD"}),
    ]
    .into_iter()
    .map(|fields| {
        (
            "payment.replies.authorized",
            reply(order, &authorize, fields),
        )
    })
    .chain([
        (
            "payment.replies.authorized",
            reply(
                order,
                &guessed(order, "authorize"),
                json!({"payment_id": "pay-x", "amount_minor": 900, "currency": eur}),
            ),
        ),
        // an old id: the reservation's, answered already
        (
            "payment.replies.authorized",
            reply(
                order,
                &reserve,
                json!({"payment_id": "pay-x", "amount_minor": 900, "currency": eur}),
            ),
        ),
        (
            "payment.replies.declined",
            reply(
                order,
                &guessed(order, "authorize"),
                json!({"reason": "forged"}),
            ),
        ),
        (
            "inventory.replies.released",
            reply(order, &guessed(order, "release"), json!({})),
        ),
    ]);
    for (subject, body) in forgeries {
        publish(&app, subject, body).await;
    }
    app.wait_for_replies_settled(WAIT).await;

    // Assert: nothing moved, and every forgery was counted by its reason.
    let o = app.get(&format!("/v1/orders/{order}"), &alice).await;
    assert_eq!(o.body["status"], "placed", "{}", o.text);
    let saga = app
        .get(&format!("/v1/orders/{order}/saga"), &app.admin())
        .await;
    assert_eq!(saga.body["status"], "authorizing_payment", "{}", saga.text);
    for event in [
        "StockRejected",
        "StockReleased",
        "PaymentAuthorized",
        "PaymentDeclined",
    ] {
        assert_eq!(app.saga_events(order, event).await, 0, "{event}");
    }
    let after = app.metrics_page().await;
    for (reason, forged) in [
        ("unknown_request", 5),
        ("wrong_amount", 1),
        ("wrong_currency", 1),
        ("unexpected_reply", 1),
        ("malformed", 1),
    ] {
        assert_eq!(
            ignored(&after, reason) - ignored(&before, reason),
            forged,
            "saga_replies_ignored_total{{reason={reason}}}"
        );
    }

    // The genuine authorization, amount and currency as the saga asked, confirms the order.
    publish(
        &app,
        "payment.replies.authorized",
        reply(
            order,
            &authorize,
            json!({"payment_id": "pay-1", "amount_minor": 900, "currency": "EUR"}),
        ),
    )
    .await;
    app.wait_for_order(order, WAIT, |o| o["status"] == "confirmed")
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_admins_and_services_see_the_command_ids_a_reply_must_name() {
    let app = spawn_saga_app(SimulatorConfig::default(), |_| {}).await;
    let store = app.store_with_products().await;
    let alice = app.customer("alice");
    let order = app.draft_with_tea(&alice, store).await;
    app.place(&alice, order).await.assert_status(200);
    app.wait_for_order(order, WAIT, |o| o["status"] == "confirmed")
        .await;

    let path = format!("/v1/orders/{order}/saga");
    for who in [alice.clone(), app.staff(store)] {
        let saga = app.get(&path, &who).await;
        saga.assert_status(200);
        let steps = saga.body["steps"].as_array().expect("steps");
        assert_eq!(steps.len(), 2, "{}", saga.text);
        assert!(
            steps.iter().all(|s| s.get("message_id").is_none()),
            "a customer or staff member sees a command id: {}",
            saga.text
        );
    }
    for who in [app.admin(), app.service()] {
        let saga = app.get(&path, &who).await;
        let steps = saga.body["steps"].as_array().expect("steps");
        assert!(
            steps.iter().all(|s| s["message_id"].is_string()),
            "{}",
            saga.text
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_streams_drop_their_oldest_messages_and_the_service_goes_on() {
    // Arrange: dead letters and order events bounded to a few KiB.
    const BOUND: i64 = 4_096;
    let app = spawn_saga_app(SimulatorConfig::default(), |s| {
        s.nats.streams.dead_letters.max_bytes = BOUND;
        s.nats.streams.order_events.max_bytes = BOUND;
    })
    .await;
    let url = app.settings.nats_url.clone().expect("nats url");
    let nats = order_service::nats::Nats::connect(&url, &app.settings.nats)
        .await
        .expect("nats");

    // Act: garbage on a reply subject (each dead-lettered), then orders whose events overflow
    // ORDER_EVENTS.
    let garbage = 60;
    for n in 0..garbage {
        publish(
            &app,
            "payment.replies.authorized",
            json!({"garbage": n, "padding": "x".repeat(100)}),
        )
        .await;
    }
    app.wait_for_replies_settled(WAIT).await;
    let store = app.store_with_products().await;
    let alice = app.customer("alice");
    for _ in 0..3 {
        let order = app.draft_with_tea(&alice, store).await;
        app.place(&alice, order).await.assert_status(200);
        app.wait_for_order(order, WAIT, |o| o["status"] == "confirmed")
            .await;
    }

    // Assert: both streams hold at most their bound, having dropped their oldest messages, and
    // the dead letters were all stored (the service went on, nothing was refused).
    for stream in ["DEAD_LETTERS", "ORDER_EVENTS"] {
        let info = nats
            .js
            .get_stream(nats.stream_name(stream))
            .await
            .expect("stream")
            .get_info()
            .await
            .expect("info");
        let state = info.state;
        assert!(
            i64::try_from(state.bytes).expect("bytes") <= BOUND,
            "{stream} holds {} bytes",
            state.bytes
        );
        assert!(
            state.first_sequence > 1,
            "{stream} dropped nothing: {state:?}"
        );
        assert_eq!(info.config.max_bytes, BOUND);
    }
    let page = app.metrics_page().await;
    assert_eq!(
        sample(
            &page,
            "nats_consumed_total{consumer=\"saga-replies\",outcome=\"dead_lettered\"}"
        ),
        garbage
    );
    app.get("/health/ready", &app.admin())
        .await
        .assert_status(200);
}
