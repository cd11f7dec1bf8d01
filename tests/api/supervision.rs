//! Workers look after themselves: a worker that fails (a real fault: its connection killed; an
//! injected error; a panic) is restarted after a backoff, `worker_restarts_total{worker}`
//! counts it, and `/health/ready` answers 503 while it is down and 200 once it runs again.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::helpers::{sample, spawn_app_with, Answer, TestApp};

/// Restart waits long enough for a poll to see the worker down: the first is 1–2 s (equal
/// jitter of 2 s), the second 2–4 s.
const FIRST_MS: u64 = 2_000;
const MAX_MS: u64 = 8_000;

async fn app() -> TestApp {
    spawn_app_with(|s| {
        s.workers.restart_backoff_first_ms = FIRST_MS;
        s.workers.restart_backoff_max_ms = MAX_MS;
    })
    .await
}

async fn readiness(app: &TestApp) -> Answer {
    app.raw(app.client.get(format!("{}/health/ready", app.address)))
        .await
}

/// Polls `/health/ready` until it answers `status`; returns that answer.
async fn wait_for_readiness(app: &TestApp, status: u16) -> Answer {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let ready = readiness(app).await;
        if ready.status.as_u16() == status {
            return ready;
        }
        assert!(
            Instant::now() < deadline,
            "/health/ready never answered {status}: {}",
            ready.text
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The `workers` check of a readiness answer.
fn workers_check(ready: &Answer) -> Value {
    ready.body["checks"]
        .as_array()
        .and_then(|checks| checks.iter().find(|c| c["name"] == "workers"))
        .cloned()
        .unwrap_or_else(|| panic!("no workers check: {}", ready.text))
}

async fn restarts(app: &TestApp, worker: &str) -> i64 {
    sample(
        &app.metrics_page().await,
        &format!("worker_restarts_total{{worker=\"{worker}\"}}"),
    )
}

async fn catalog_listener_pid(app: &TestApp) -> Option<i32> {
    sqlx::query_scalar(
        "select pid from pg_stat_activity
          where datname = current_database() and application_name = $1",
    )
    .bind(order_service::store::catalog::LISTENER_APPLICATION_NAME)
    .fetch_optional(&app.pool)
    .await
    .expect("pg_stat_activity")
}

#[tokio::test]
async fn a_worker_whose_connection_is_killed_is_down_until_it_is_restarted_after_a_backoff() {
    // Arrange: the catalog watcher listens on its connection; the service is ready.
    let app = app().await;
    let deadline = Instant::now() + Duration::from_secs(10);
    let pid = loop {
        if let Some(pid) = catalog_listener_pid(&app).await {
            break pid;
        }
        assert!(
            Instant::now() < deadline,
            "the catalog watcher never listened"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let ready = readiness(&app).await;
    ready.assert_status(200);
    let workers = workers_check(&ready);
    assert_eq!(workers["ok"], true);
    for name in [
        "catalog-watcher",
        "wake-forwarder",
        "wake-listener",
        "projector",
    ] {
        assert!(
            workers["detail"].as_str().is_some_and(|d| d.contains(name)),
            "{name} not named: {workers}"
        );
    }
    assert_eq!(restarts(&app, "catalog-watcher").await, 0);

    // Act: the database ends the watcher's connection.
    let killed = Instant::now();
    let terminated: bool = sqlx::query_scalar("select pg_terminate_backend($1)")
        .bind(pid)
        .fetch_one(&app.pool)
        .await
        .expect("terminate");
    assert!(terminated);

    // Assert: not ready while the watcher waits to be restarted, and why; ready again once
    // it listens on a new connection, no sooner than the first backoff allows.
    let down = wait_for_readiness(&app, 503).await;
    assert_eq!(down.body["ready"], false);
    let workers = workers_check(&down);
    assert_eq!(workers["ok"], false);
    let detail = workers["detail"].as_str().expect("detail");
    assert!(
        detail.contains("down, restarting: catalog-watcher ("),
        "{detail}"
    );
    wait_for_readiness(&app, 200).await;
    assert!(
        killed.elapsed() >= Duration::from_millis(FIRST_MS / 2),
        "restarted after {:?}, sooner than the backoff",
        killed.elapsed()
    );
    assert_eq!(restarts(&app, "catalog-watcher").await, 1);
    let page = app.metrics_page().await;
    assert_eq!(sample(&page, "worker_up{worker=\"catalog-watcher\"}"), 1);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match catalog_listener_pid(&app).await {
            Some(new) if new != pid => break,
            _ => assert!(
                Instant::now() < deadline,
                "the watcher never listened again"
            ),
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// How the test worker's current attempt is to end.
enum Fault {
    Error,
    Panic,
}

#[tokio::test]
async fn a_worker_that_fails_or_panics_is_restarted_with_a_growing_backoff_and_readiness_follows() {
    // Arrange: a worker of the test's own under the service's supervisor, failing on demand.
    let app = app().await;
    let (faults, orders) = tokio::sync::mpsc::unbounded_channel::<Fault>();
    let orders = Arc::new(tokio::sync::Mutex::new(orders));
    app.app_state
        .supervisor
        .supervise("test-worker", move |token| {
            let orders = Arc::clone(&orders);
            async move {
                let mut orders = orders.lock().await;
                tokio::select! {
                    () = token.cancelled() => Ok(()),
                    fault = orders.recv() => match fault {
                        Some(Fault::Error) => Err(anyhow::anyhow!("injected failure")),
                        Some(Fault::Panic) => panic!("injected panic"),
                        None => {
                            token.cancelled().await;
                            Ok(())
                        }
                    },
                }
            }
        });
    let ready = wait_for_readiness(&app, 200).await;
    let workers = workers_check(&ready);
    assert!(
        workers["detail"]
            .as_str()
            .is_some_and(|d| d.contains("test-worker")),
        "{workers}"
    );

    // Act 1: an error.
    let failed = Instant::now();
    faults.send(Fault::Error).expect("worker");

    // Assert 1: down (and why) until restarted after the first backoff.
    let down = wait_for_readiness(&app, 503).await;
    let detail = workers_check(&down)["detail"].as_str().map(str::to_owned);
    assert!(
        detail
            .as_deref()
            .is_some_and(|d| d.contains("test-worker (injected failure)")),
        "{detail:?}"
    );
    let page = app.metrics_page().await;
    assert_eq!(sample(&page, "worker_up{worker=\"test-worker\"}"), 0);
    wait_for_readiness(&app, 200).await;
    let first = failed.elapsed();
    assert!(first >= Duration::from_millis(FIRST_MS / 2), "{first:?}");
    assert_eq!(restarts(&app, "test-worker").await, 1);

    // Act 2: a panic, right after the restart.
    let panicked = Instant::now();
    faults.send(Fault::Panic).expect("worker");

    // Assert 2: down again, for at least the doubled backoff, then up.
    let down = wait_for_readiness(&app, 503).await;
    let detail = workers_check(&down)["detail"].as_str().map(str::to_owned);
    assert!(
        detail
            .as_deref()
            .is_some_and(|d| d.contains("test-worker (panicked: injected panic)")),
        "{detail:?}"
    );
    wait_for_readiness(&app, 200).await;
    let second = panicked.elapsed();
    assert!(second >= Duration::from_millis(FIRST_MS), "{second:?}");
    assert_eq!(restarts(&app, "test-worker").await, 2);
    let page = app.metrics_page().await;
    assert_eq!(sample(&page, "worker_up{worker=\"test-worker\"}"), 1);
}
