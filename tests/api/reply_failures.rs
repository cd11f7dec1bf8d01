//! The reply consumer when things fail: a valid reply that meets a database outage waits for the
//! database however long it takes (never dead-lettered, never dropped by the server), and a
//! reply that can never be processed is not lost while the dead-letter stream is unavailable.
//! Real PostgreSQL, real NATS JetStream.

use std::time::{Duration, Instant};

use async_nats::jetstream::consumer::{pull, AckPolicy};
use futures::StreamExt as _;
use order_service::nats::Nats;
use order_service::simulator::SimulatorConfig;
use uuid::Uuid;

use crate::helpers::{sample, spawn_saga_app, spawn_saga_app_without_simulator, TestApp};

const WAIT: Duration = Duration::from_secs(30);

/// Deliveries after which the consumer of earlier versions gave a reply up (its `max_deliver`,
/// and the count after which it dead-lettered a reply whose saga command kept failing).
const OLD_MAX_DELIVER: i64 = 8;

async fn nats(app: &TestApp) -> Nats {
    let url = app.settings.nats_url.clone().expect("nats url");
    Nats::connect(&url, &app.settings.nats).await.expect("nats")
}

/// Polls `count` until it reaches `at_least`.
async fn wait_for_count(what: &str, at_least: u64, count: impl Fn() -> u64) {
    let deadline = Instant::now() + WAIT;
    while count() < at_least {
        assert!(
            Instant::now() < deadline,
            "{what}: {} after {WAIT:?}, wanted {at_least}",
            count()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Messages in the prefix's dead-letter stream.
async fn dead_letters(nats: &Nats) -> u64 {
    nats.js
        .get_stream(nats.stream_name("DEAD_LETTERS"))
        .await
        .expect("dead-letter stream")
        .info()
        .await
        .expect("stream info")
        .state
        .messages
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reply_that_meets_a_database_outage_is_applied_once_the_database_is_back() {
    // Arrange: the streams and the reply consumer as an earlier version left them
    // (`max_deliver: 8`), then the service on them.
    let url = std::env::var("NATS_URL").unwrap_or_else(|_| "nats://127.0.0.1:4222".to_owned());
    let prefix = format!("t{}.", Uuid::new_v4().simple());
    let settings = crate::helpers::test_nats_settings(&prefix);
    let nats = Nats::connect(&url, &settings).await.expect("nats");
    nats.ensure_streams(&settings.streams)
        .await
        .expect("streams");
    let replies = nats.stream_name("SAGA_REPLIES");
    let durable = format!("{replies}_order_service");
    nats.js
        .get_stream(&replies)
        .await
        .expect("replies stream")
        .create_consumer(pull::Config {
            durable_name: Some(durable.clone()),
            ack_policy: AckPolicy::Explicit,
            ack_wait: Duration::from_secs(5),
            max_deliver: OLD_MAX_DELIVER,
            max_ack_pending: 1_000,
            ..Default::default()
        })
        .await
        .expect("old consumer");
    let app = spawn_saga_app(SimulatorConfig::default(), |s| {
        s.nats.prefix = prefix.clone();
        // No saga deadline during the outage: the reply itself must get through.
        s.saga.step_timeout_ms = 600_000;
        s.saga.reply_retry_first_ms = 10;
        s.saga.reply_retry_max_ms = 80;
    })
    .await;
    let store = app.store_with_products().await;
    let alice = app.customer("alice");
    let order = app.draft_with_tea(&alice, store).await;
    // The outage: applying a reservation to the saga fails as against a database that is
    // starting up (everything else keeps working, so the reply does reach the consumer).
    sqlx::query(
        "create function fail_stock_reserved() returns trigger language plpgsql as $$
         begin
           raise exception 'the database system is starting up' using errcode = 'cannot_connect_now';
         end $$",
    )
    .execute(&app.owner_pool)
    .await
    .expect("function");
    sqlx::query(
        "create trigger outage before insert on events for each row
         when (new.aggregate_type = 'OrderSaga' and new.event_type = 'StockReserved')
         execute function fail_stock_reserved()",
    )
    .execute(&app.owner_pool)
    .await
    .expect("trigger");

    // Act: the reservation reply is delivered more often than the old limit while the outage
    // lasts, then the database comes back.
    app.place(&alice, order).await.assert_status(200);
    let failures = app
        .app_state
        .metrics
        .replies
        .transient_failures
        .with_label_values(&["store"]);
    let beyond_old_limit = u64::try_from(OLD_MAX_DELIVER).expect("positive") + 3;
    wait_for_count(
        "reply deliveries failed by the outage",
        beyond_old_limit,
        || failures.get(),
    )
    .await;
    assert_eq!(app.saga_events(order, "StockReserved").await, 0);
    sqlx::query("drop trigger outage on events")
        .execute(&app.owner_pool)
        .await
        .expect("end of the outage");

    // Assert: the reply was applied exactly once, the order went on, nothing was dead-lettered.
    app.wait_for_order(order, WAIT, |o| o["status"] == "confirmed")
        .await;
    assert_eq!(app.saga_events(order, "StockReserved").await, 1);
    assert_eq!(
        dead_letters(&nats).await,
        0,
        "a valid reply was dead-lettered"
    );
    let mut consumer = nats
        .js
        .get_stream(&replies)
        .await
        .expect("replies stream")
        .get_consumer::<pull::Config>(&durable)
        .await
        .expect("consumer");
    let info = consumer.info().await.expect("consumer info");
    assert_eq!(
        info.config.max_deliver, -1,
        "the server must not stop redelivering"
    );
    // the scrape shows the failures (the series exists from the start, at 0)
    let metrics = app.metrics_page().await;
    let scraped = sample(
        &metrics,
        "saga_reply_transient_failures_total{cause=\"store\"}",
    );
    assert!(
        u64::try_from(scraped).is_ok_and(|n| n >= beyond_old_limit),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unprocessable_reply_waits_while_the_dead_letter_stream_is_unavailable() {
    // Arrange: no dead-letter stream.
    let app = spawn_saga_app_without_simulator(|s| {
        s.saga.reply_retry_first_ms = 10;
        s.saga.reply_retry_max_ms = 80;
    })
    .await;
    let nats = nats(&app).await;
    nats.js
        .delete_stream(nats.stream_name("DEAD_LETTERS"))
        .await
        .expect("delete the dead-letter stream");

    // Act: garbage arrives; the dead-letter stream comes back after a while.
    let mut headers = async_nats::HeaderMap::new();
    headers.insert("Nats-Msg-Id", "garbage-while-no-dlq");
    nats.publish(
        nats.subject("payment.replies.authorized"),
        headers,
        bytes::Bytes::from_static(b"{not json"),
    )
    .await
    .expect("publish");
    let failures = app
        .app_state
        .metrics
        .replies
        .transient_failures
        .with_label_values(&["dead_letter"]);
    let beyond_old_limit = u64::try_from(OLD_MAX_DELIVER).expect("positive") + 3;
    wait_for_count("failed dead-letter publishes", beyond_old_limit, || {
        failures.get()
    })
    .await;
    nats.ensure_streams(&app.settings.nats.streams)
        .await
        .expect("streams back");

    // Assert: the garbage reached the dead letters, with its reason, once.
    let deadline = Instant::now() + WAIT;
    while dead_letters(&nats).await == 0 {
        assert!(Instant::now() < deadline, "the reply was lost");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut messages = nats
        .js
        .get_stream(nats.stream_name("DEAD_LETTERS"))
        .await
        .expect("stream")
        .create_consumer(pull::Config::default())
        .await
        .expect("consumer")
        .fetch()
        .max_messages(10)
        .expires(Duration::from_secs(1))
        .messages()
        .await
        .expect("fetch");
    let dead = messages
        .next()
        .await
        .expect("a dead letter")
        .expect("message");
    assert_eq!(dead.payload.as_ref(), b"{not json");
    assert!(
        dead.headers
            .as_ref()
            .and_then(|h| h.get("dead-letter-reason"))
            .is_some_and(|r| r.as_str().contains("unparseable")),
        "dead letters say why"
    );
    // The reply settled (terminated after its dead-lettering): no delivery of it is in flight
    // or to come, so a second dead letter would be there by now.
    app.wait_for_replies_settled(WAIT).await;
    assert_eq!(dead_letters(&nats).await, 1, "dead-lettered more than once");
}
