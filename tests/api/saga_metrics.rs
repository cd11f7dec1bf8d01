//! The saga funnel an SRE pages on (DESIGN §11): deltas of `saga_started_total`,
//! `saga_finished_total{outcome}`, `saga_compensations_total{step}`,
//! `saga_step_duration_seconds{step,outcome}` after a happy, a rejected and a compensated saga,
//! and `sagas_needs_attention` for a parked saga, also on a process that just started.

use std::time::Duration;

use order_service::simulator::SimulatorConfig;
use serde_json::json;

use crate::forged_replies::{message_id, publish, reply};
use crate::helpers::{sample, spawn_saga_app, spawn_saga_app_without_simulator, TestApp};

const WAIT: Duration = Duration::from_secs(20);

/// Reads every family the funnel uses, as a scrape shows them.
async fn funnel(app: &TestApp) -> Vec<(String, i64)> {
    let page = app.metrics_page().await;
    let mut names = vec!["saga_started_total".to_owned()];
    for outcome in ["completed", "cancelled", "failed"] {
        names.push(format!("saga_finished_total{{outcome=\"{outcome}\"}}"));
    }
    for step in ["release", "void", "refund"] {
        names.push(format!("saga_compensations_total{{step=\"{step}\"}}"));
    }
    for (step, outcome) in [
        ("reserve", "ok"),
        ("reserve", "refused"),
        ("authorize", "ok"),
        ("capture", "ok"),
        ("commit", "ok"),
        ("release", "ok"),
        ("void", "ok"),
    ] {
        names.push(format!(
            "saga_step_duration_seconds_count{{outcome=\"{outcome}\",step=\"{step}\"}}"
        ));
    }
    names.push("sagas_needs_attention".to_owned());
    names
        .into_iter()
        .map(|n| {
            let v = sample(&page, &n);
            (n, v)
        })
        .collect()
}

/// The families that moved between two scrapes, with how much.
fn moved(before: &[(String, i64)], after: &[(String, i64)]) -> Vec<(String, i64)> {
    before
        .iter()
        .zip(after)
        .filter(|((_, b), (_, a))| a != b)
        .map(|((n, b), (_, a))| (n.clone(), a - b))
        .collect()
}

fn deltas(pairs: &[(&str, i64)]) -> Vec<(String, i64)> {
    pairs.iter().map(|(n, d)| ((*n).to_owned(), *d)).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_happy_then_a_cancelled_saga_move_the_funnel() {
    let app = spawn_saga_app(SimulatorConfig::default(), |_| {}).await;
    let store = app.store_with_products().await;
    let alice = app.customer("alice");
    let staff = app.staff(store);

    // Happy: confirmed, picked up, completed.
    let before = funnel(&app).await;
    let order = app.draft_with_tea(&alice, store).await;
    app.place(&alice, order).await.assert_status(200);
    app.wait_for_order(order, WAIT, |o| o["status"] == "confirmed")
        .await;
    for status in ["preparing", "ready_for_pickup", "picked_up"] {
        app.set_status(&staff, order, status)
            .await
            .assert_status(200);
    }
    app.wait_for_saga(order, "completed", WAIT).await;
    assert_eq!(
        moved(&before, &funnel(&app).await),
        deltas(&[
            ("saga_started_total", 1),
            ("saga_finished_total{outcome=\"completed\"}", 1),
            (
                "saga_step_duration_seconds_count{outcome=\"ok\",step=\"reserve\"}",
                1
            ),
            (
                "saga_step_duration_seconds_count{outcome=\"ok\",step=\"authorize\"}",
                1
            ),
            (
                "saga_step_duration_seconds_count{outcome=\"ok\",step=\"capture\"}",
                1
            ),
            (
                "saga_step_duration_seconds_count{outcome=\"ok\",step=\"commit\"}",
                1
            ),
        ])
    );

    // Compensated: cancelled once confirmed, the stock released and the money voided.
    let before = funnel(&app).await;
    let order = app.draft_with_tea(&alice, store).await;
    app.place(&alice, order).await.assert_status(200);
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
    assert_eq!(
        moved(&before, &funnel(&app).await),
        deltas(&[
            ("saga_started_total", 1),
            ("saga_finished_total{outcome=\"cancelled\"}", 1),
            ("saga_compensations_total{step=\"release\"}", 1),
            ("saga_compensations_total{step=\"void\"}", 1),
            (
                "saga_step_duration_seconds_count{outcome=\"ok\",step=\"reserve\"}",
                1
            ),
            (
                "saga_step_duration_seconds_count{outcome=\"ok\",step=\"authorize\"}",
                1
            ),
            (
                "saga_step_duration_seconds_count{outcome=\"ok\",step=\"release\"}",
                1
            ),
            (
                "saga_step_duration_seconds_count{outcome=\"ok\",step=\"void\"}",
                1
            ),
        ])
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rejected_saga_is_counted_as_failed() {
    let app = spawn_saga_app(
        SimulatorConfig {
            out_of_stock_rate: 1.0,
            ..SimulatorConfig::default()
        },
        |_| {},
    )
    .await;
    let store = app.store_with_products().await;
    let alice = app.customer("alice");
    let before = funnel(&app).await;
    let order = app.draft_with_tea(&alice, store).await;
    app.place(&alice, order).await.assert_status(200);
    app.wait_for_saga(order, "failed", WAIT).await;
    assert_eq!(
        moved(&before, &funnel(&app).await),
        deltas(&[
            ("saga_started_total", 1),
            ("saga_finished_total{outcome=\"failed\"}", 1),
            (
                "saga_step_duration_seconds_count{outcome=\"refused\",step=\"reserve\"}",
                1
            ),
        ])
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_parked_saga_shows_in_the_gauge_also_right_after_a_restart() {
    // The test is both participants; nobody answers the capture, which is tried once.
    let app = spawn_saga_app_without_simulator(|s| {
        s.saga.step_timeout_ms = 200;
        s.saga.max_attempts = 1;
    })
    .await;
    let store = app.store_with_products().await;
    let alice = app.customer("alice");
    let order = app.draft_with_tea(&alice, store).await;
    app.place(&alice, order).await.assert_status(200);
    let reserve = message_id(&app, order, "reserve").await;
    publish(
        &app,
        "inventory.replies.reserved",
        reply(order, &reserve, json!({"reservation_id": "res-1"})),
    )
    .await;
    let authorize = message_id(&app, order, "authorize").await;
    publish(
        &app,
        "payment.replies.authorized",
        reply(
            order,
            &authorize,
            json!({"payment_id": "pay-1", "amount_minor": 450, "currency": "EUR"}),
        ),
    )
    .await;
    app.wait_for_order(order, WAIT, |o| o["status"] == "confirmed")
        .await;
    assert_eq!(
        sample(&app.metrics_page().await, "sagas_needs_attention"),
        0
    );
    app.set_status(&app.staff(store), order, "preparing")
        .await
        .assert_status(200);
    app.post(
        &format!("/v1/orders/{order}/ship"),
        &app.staff(store),
        json!({"carrier": "DHL", "tracking_number": "T1"}),
    )
    .await
    .assert_status(200);
    app.wait_for_saga(order, "needs_attention", WAIT).await;
    app.wait_for_projector(WAIT).await;

    assert_eq!(
        sample(&app.metrics_page().await, "sagas_needs_attention"),
        1
    );
    // A process that has just started (a new replica, or this one restarted) says the same
    // at its first scrape: the gauge comes from the store, not from what the process saw.
    let restarted = app.replica().await;
    assert_eq!(
        sample(&restarted.metrics_page().await, "sagas_needs_attention"),
        1
    );
}
