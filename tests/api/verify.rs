//! `order-service verify` judges a real system: every invariant holds after orders that were
//! confirmed, fulfilled, cancelled and rejected; a corrupted read-model row, a relayed message
//! deleted from its stream, a reservation gone from the inventory's books and a saga left stuck
//! are each named with their invariant and order.

use std::time::Duration;

use order_service::simulator::SimulatorConfig;
use order_service::verify::{verify, Options, Report, Witnesses};
use secrecy::ExposeSecret as _;
use serde_json::json;
use uuid::Uuid;

use crate::helpers::{spawn_saga_app, spawn_saga_app_without_simulator, TestApp};

const WAIT: Duration = Duration::from_secs(20);

fn options(stuck_after: Duration) -> Options {
    Options {
        stuck_after,
        settle: Duration::from_secs(20),
    }
}

fn broken(report: &Report) -> Vec<(&'static str, String)> {
    report
        .violations
        .iter()
        .map(|v| (v.invariant, v.subject.clone()))
        .collect()
}

async fn placed(app: &TestApp, store: Uuid) -> Uuid {
    let alice = app.customer("alice");
    let order = app.draft_with_tea(&alice, store).await;
    app.place(&alice, order).await.assert_status(200);
    order
}

/// Every witness: the app's NATS (I8) and the simulator's books (I4).
async fn witnesses(app: &TestApp) -> Witnesses {
    Witnesses {
        nats: Some(app.nats().await),
        books: Some(app.books().stock_ledger()),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_invariant_holds_after_a_clean_run_and_each_corruption_is_named() {
    let app = spawn_saga_app(SimulatorConfig::default(), |_| {}).await;
    let store = app.store_with_products().await;
    let staff = app.staff(store);
    let alice = app.customer("alice");
    // confirmed and left there; fulfilled; cancelled after confirmation; a draft
    let confirmed = placed(&app, store).await;
    let fulfilled = placed(&app, store).await;
    let cancelled = placed(&app, store).await;
    app.draft_with_tea(&alice, store).await;
    for order in [confirmed, fulfilled, cancelled] {
        app.wait_for_order(order, WAIT, |o| o["status"] == "confirmed")
            .await;
    }
    for s in ["preparing", "ready_for_pickup", "picked_up"] {
        app.set_status(&staff, fulfilled, s)
            .await
            .assert_status(200);
    }
    app.post(
        &format!("/v1/orders/{cancelled}/cancel"),
        &alice,
        json!({"reason": "changed my mind"}),
    )
    .await
    .assert_status(200);
    app.wait_for_saga(fulfilled, "completed", WAIT).await;
    app.wait_for_saga(cancelled, "cancelled", WAIT).await;

    let all = witnesses(&app).await;
    let report = verify(&app.pool, &all, &options(Duration::from_secs(60)))
        .await
        .expect("verify");
    assert_eq!(broken(&report), [], "{:?}", report.violations);
    assert_eq!(report.unchecked, Vec::<String>::new());
    assert_eq!(report.orders, 4);
    assert_eq!(report.sagas, 3);
    // every order event and participant command of the run was read back
    assert!(report.messages >= 20, "{} messages", report.messages);

    // a read-model row that no longer says what the log says
    sqlx::query(
        "update read.order_summaries set total_minor = total_minor + 1 where order_id = $1",
    )
    .bind(confirmed)
    .execute(&app.pool)
    .await
    .expect("corrupt");
    let nothing = Witnesses::default();
    let report = verify(&app.pool, &nothing, &options(Duration::from_secs(60)))
        .await
        .expect("verify");
    assert_eq!(broken(&report), [("I7", confirmed.to_string())]);
    assert!(
        report.violations[0].detail.contains("450"),
        "{:?}",
        report.violations
    );
    assert_eq!(report.unchecked.len(), 2, "{:?}", report.unchecked);
    sqlx::query(
        "update read.order_summaries set total_minor = total_minor - 1 where order_id = $1",
    )
    .bind(confirmed)
    .execute(&app.pool)
    .await
    .expect("mend");

    // a relayed message gone from its stream
    let nats = all.nats.clone().expect("nats");
    let stream = nats
        .js
        .get_stream(nats.stream_name(order_service::nats::ORDER_EVENTS))
        .await
        .expect("stream");
    let placed_message = stream
        .get_last_raw_message_by_subject(
            &nats.subject(&format!("orders.events.{confirmed}.OrderPlaced")),
        )
        .await
        .expect("the OrderPlaced message");
    assert!(stream
        .delete_message(placed_message.sequence)
        .await
        .expect("deleted"));
    let report = verify(&app.pool, &all, &options(Duration::from_secs(60)))
        .await
        .expect("verify");
    assert_eq!(broken(&report), [("I8", confirmed.to_string())]);
    assert!(
        report.violations[0].detail.contains("OrderPlaced v")
            && report.violations[0].detail.contains("not on ORDER_EVENTS"),
        "{:?}",
        report.violations
    );

    // the stream's last message gone too: named, not waited for
    let mut stream = stream;
    let last = stream.info().await.expect("info").state.last_sequence;
    assert!(stream.delete_message(last).await.expect("deleted"));
    let report = verify(&app.pool, &all, &options(Duration::from_secs(60)))
        .await
        .expect("verify");
    assert_eq!(report.violations.len(), 2, "{:?}", report.violations);
    assert!(
        report.violations.iter().all(|v| v.invariant == "I8"),
        "{:?}",
        report.violations
    );

    // the effect of a relayed `reserve` gone from the inventory's books
    let mut books = app.books().stock_ledger();
    books
        .reservations
        .retain(|r| r.order_id.as_uuid() != confirmed);
    let without = Witnesses {
        nats: None,
        books: Some(books),
    };
    let report = verify(&app.pool, &without, &options(Duration::from_secs(60)))
        .await
        .expect("verify");
    let named = broken(&report);
    assert!(
        named.contains(&("I4", confirmed.to_string())),
        "{:?}",
        report.violations
    );
    assert!(
        named.iter().all(|(invariant, _)| *invariant == "I4"),
        "{:?}",
        report.violations
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_saga_whose_deadline_passed_unseen_is_named_stuck() {
    // No participant answers, and the service (its deadline worker with it) stops before the
    // step's deadline: the deadline passes and nobody acts on it.
    let app = spawn_saga_app_without_simulator(|s| s.saga.step_timeout_ms = 3_000).await;
    let store = app.store_with_products().await;
    let order = placed(&app, store).await;
    app.wait_for_saga(order, "reserving_stock", WAIT).await;
    app.wait_for_projector(WAIT).await;
    // a pool of its own: the service's closes with it
    let url = app.settings.database_url.clone().expect("url");
    app.stop().await;
    let pool = sqlx::PgPool::connect(url.expose_secret())
        .await
        .expect("pool");

    // while its deadline is within the slack, it is in flight
    let report = verify(
        &pool,
        &Witnesses::default(),
        &options(Duration::from_secs(3600)),
    )
    .await
    .expect("verify");
    assert_eq!(broken(&report), []);
    assert_eq!(report.in_flight, 1);
    // past it, stuck
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let quick = Options {
            stuck_after: Duration::ZERO,
            settle: Duration::from_secs(1),
        };
        let report = verify(&pool, &Witnesses::default(), &quick)
            .await
            .expect("verify");
        if !report.violations.is_empty() {
            assert_eq!(broken(&report), [("I1", order.to_string())]);
            assert!(report.violations[0].detail.contains("stuck"));
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "never stuck");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // the command as an SRE runs it: the same verdict, as JSON, and a failing exit code
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_order-service"))
        .args([
            "verify",
            "--json",
            "--stuck-after-secs",
            "0",
            "--settle-secs",
            "1",
        ])
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("DATABASE_URL", url.expose_secret())
        .env("RUST_LOG", "error")
        .output()
        .await
        .expect("order-service verify runs");
    assert!(!out.status.success(), "a violation fails the command");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let report: serde_json::Value = serde_json::from_str(stdout.trim()).expect("one JSON object");
    assert_eq!(report["violations"][0]["invariant"], "I1", "{report}");
    assert_eq!(report["violations"][0]["subject"], order.to_string());
    assert!(
        report["unchecked"].as_array().is_some_and(|u| u.len() == 2),
        "{report}"
    );
}
