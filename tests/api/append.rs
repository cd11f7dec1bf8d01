//! The group writer (`store::append`) against PostgreSQL: concurrent commands share one
//! statement, a conflicting one fails alone, and no command is ever written in part.

use cqrs_es::persist::PersistenceError;
use order_service::log::AppendSignal;
use order_service::store::append::{Appender, Rows};
use order_service::telemetry::Metrics;
use serde_json::json;
use uuid::Uuid;

use crate::helpers::spawn_app;

/// A command's rows: `sequences` of one order.
fn rows(order: &str, sequences: &[i64]) -> Rows {
    let mut r = Rows::default();
    for &s in sequences {
        r.types.push("Order");
        r.ids.push(order.to_owned());
        r.sequences.push(s);
        r.names.push("ItemAdded".to_owned());
        r.versions.push("1.0".to_owned());
        r.payloads.push(json!({"type": "ItemAdded", "n": s}));
        r.metadata.push(json!({}));
    }
    r
}

/// (sequence, position, tx_id as text) of an order's events, in sequence order.
async fn written(pool: &sqlx::PgPool, order: &str) -> Vec<(i64, i64, String)> {
    sqlx::query_as(
        "select sequence, position, tx_id::text from events
          where aggregate_type = 'Order' and aggregate_id = $1 order by sequence",
    )
    .bind(order)
    .fetch_all(pool)
    .await
    .expect("events")
}

// current_thread (the default): every append of an `Act` below is queued before the writer
// runs, so they form one batch, deterministically.
#[tokio::test]
async fn a_conflicting_command_fails_alone_and_the_rest_of_its_batch_is_written() {
    // Arrange: an order already at sequence 1; a writer of our own, to read its metrics.
    let app = spawn_app().await;
    let metrics = Metrics::new().expect("metrics");
    let appender = Appender::start(app.pool.clone(), AppendSignal::default(), metrics.clone());
    let taken = Uuid::new_v4().to_string();
    appender.append(rows(&taken, &[1])).await.expect("first");
    let others: Vec<String> = (0..20).map(|_| Uuid::new_v4().to_string()).collect();

    // Act: 20 commands of two events each, and among them one that writes sequences 1 and 2
    // of the taken order (its 1 conflicts).
    let mut appends = Vec::new();
    for (i, order) in others.iter().enumerate() {
        if i == 10 {
            appends.push(appender.append(rows(&taken, &[1, 2])));
        }
        appends.push(appender.append(rows(order, &[1, 2])));
    }
    let outcomes = futures::future::join_all(appends).await;

    // Assert: only the conflicting command failed, as a conflict, and wrote nothing.
    let failed: Vec<_> = outcomes
        .iter()
        .enumerate()
        .filter(|(_, o)| o.is_err())
        .collect();
    assert_eq!(failed.len(), 1, "{outcomes:?}");
    assert_eq!(failed[0].0, 10);
    assert!(matches!(
        failed[0].1,
        Err(PersistenceError::OptimisticLockError)
    ));
    assert_eq!(written(&app.pool, &taken).await.len(), 1, "no part of it");
    for order in &others {
        let events = written(&app.pool, order).await;
        assert_eq!(events.len(), 2, "{order}");
        // each command's events: in order, one transaction
        assert!(events[1].1 > events[0].1);
        assert_eq!(events[0].2, events[1].2);
    }
    assert_eq!(metrics.store.append_batches_apart.get(), 1);
}

#[tokio::test]
async fn concurrent_commands_share_one_statement_and_one_transaction() {
    // Arrange
    let app = spawn_app().await;
    let metrics = Metrics::new().expect("metrics");
    let appender = Appender::start(app.pool.clone(), AppendSignal::default(), metrics.clone());
    let orders: Vec<String> = (0..21).map(|_| Uuid::new_v4().to_string()).collect();

    // Act: 21 commands at once.
    let outcomes =
        futures::future::join_all(orders.iter().map(|o| appender.append(rows(o, &[1, 2, 3]))))
            .await;

    // Assert: every command written, in one statement, each command's events in order.
    assert!(outcomes.iter().all(Result::is_ok), "{outcomes:?}");
    let mut transactions = std::collections::BTreeSet::new();
    for order in &orders {
        let events = written(&app.pool, order).await;
        assert_eq!(
            events.iter().map(|e| e.0).collect::<Vec<_>>(),
            [1, 2, 3],
            "{order}"
        );
        assert!(events
            .windows(2)
            .all(|w| w[1].1 > w[0].1 && w[1].2 == w[0].2));
        transactions.insert(events[0].2.clone());
    }
    assert_eq!(transactions.len(), 1, "{transactions:?}");
    assert_eq!(metrics.store.append_batch_commands.get_sample_count(), 1);
    assert!((metrics.store.append_batch_commands.get_sample_sum() - 21.0).abs() < f64::EPSILON);
    assert_eq!(metrics.store.append_batches_apart.get(), 0);
}

#[tokio::test]
async fn a_command_the_database_refuses_fails_alone() {
    // Arrange
    let app = spawn_app().await;
    let metrics = Metrics::new().expect("metrics");
    let appender = Appender::start(app.pool.clone(), AppendSignal::default(), metrics.clone());
    let orders: Vec<String> = (0..6).map(|_| Uuid::new_v4().to_string()).collect();

    // Act: one batch, and in it a command with a sequence the table's check refuses (>= 1).
    let outcomes = futures::future::join_all(orders.iter().enumerate().map(|(i, o)| {
        let sequences: &[i64] = if i == 3 { &[0] } else { &[1] };
        appender.append(rows(o, sequences))
    }))
    .await;

    // Assert: that one failed, not as a conflict; the others are written.
    for (i, (order, outcome)) in orders.iter().zip(&outcomes).enumerate() {
        if i == 3 {
            assert!(
                matches!(outcome, Err(PersistenceError::UnknownError(_))),
                "{outcome:?}"
            );
            assert!(written(&app.pool, order).await.is_empty());
        } else {
            assert!(outcome.is_ok(), "{outcome:?}");
            assert_eq!(written(&app.pool, order).await.len(), 1);
        }
    }
    assert_eq!(metrics.store.append_batches_apart.get(), 1);
}

#[tokio::test]
async fn when_the_outcome_is_unknown_every_command_of_the_batch_says_so_and_none_is_retried() {
    // Arrange: a writer whose database cannot be reached (nothing listens on port 1).
    let metrics = Metrics::new().expect("metrics");
    let pool = sqlx::postgres::PgPoolOptions::new()
        .acquire_timeout(std::time::Duration::from_millis(300))
        .connect_lazy("postgres://postgres@127.0.0.1:1/none")
        .expect("lazy pool");
    let appender = Appender::start(pool, AppendSignal::default(), metrics.clone());
    let orders: Vec<String> = (0..5).map(|_| Uuid::new_v4().to_string()).collect();

    // Act
    let outcomes =
        futures::future::join_all(orders.iter().map(|o| appender.append(rows(o, &[1])))).await;

    // Assert: unavailable (503 upstream), for each; no command-by-command second try.
    assert!(
        outcomes
            .iter()
            .all(|o| matches!(o, Err(PersistenceError::ConnectionError(_)))),
        "{outcomes:?}"
    );
    assert_eq!(metrics.store.append_batches_apart.get(), 0);
}

#[tokio::test]
async fn a_command_whose_caller_gave_up_before_its_batch_is_not_written() {
    // Arrange
    let app = spawn_app().await;
    let metrics = Metrics::new().expect("metrics");
    let appender = Appender::start(app.pool.clone(), AppendSignal::default(), metrics);
    let (dropped, kept) = (Uuid::new_v4().to_string(), Uuid::new_v4().to_string());

    // Act: one append queued, then its caller gone (a dropped request), then another.
    {
        let mut given_up = std::pin::pin!(appender.append(rows(&dropped, &[1])));
        assert!(futures::poll!(given_up.as_mut()).is_pending(), "queued");
    }
    appender.append(rows(&kept, &[1])).await.expect("kept");

    // Assert
    assert!(written(&app.pool, &dropped).await.is_empty());
    assert_eq!(written(&app.pool, &kept).await.len(), 1);
}
