//! Rebuilding the read models against real PostgreSQL: rebuilds exclude each other, the swap
//! gives way to a projector batch instead of deadlocking with it, and a swap that cannot get
//! the live tables gives up cleanly. Every rebuild that succeeds leaves exactly what the live
//! projection had.

use std::time::Duration;

use order_service::read_models::{rebuild, RebuildError};
use sqlx::{Acquire as _, PgPool};
use tokio::time::{timeout, Instant};

use crate::helpers::{read_models, spawn_app, TestApp};

/// A few placed orders, projected.
async fn app_with_read_models() -> TestApp {
    let app = spawn_app().await;
    let store = app.store_with_products().await;
    for i in 0..6 {
        let who = app.customer(&format!("customer-{i}"));
        let order = app.create_order(&who, store).await;
        app.add_item(&who, order, "TEA", i + 1)
            .await
            .assert_status(200);
        app.add_item(&who, order, "CAKE", 1)
            .await
            .assert_status(200);
        if i % 2 == 0 {
            app.place(&who, order).await.assert_status(200);
        }
    }
    app.wait_for_projector(Duration::from_secs(30)).await;
    app
}

/// Waits until some session waits for an exclusive lock on `read.<table>`: a rebuild at the
/// swap.
async fn wait_for_swap_waiting_on(pool: &PgPool, table: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let waiting: bool = sqlx::query_scalar(
            "select exists(select 1 from pg_locks
                            where database = (select oid from pg_database
                                               where datname = current_database())
                              and relation = to_regclass('read.' || $1)
                              and mode = 'AccessExclusiveLock' and not granted)",
        )
        .bind(table)
        .fetch_one(pool)
        .await
        .expect("pg_locks");
        if waiting {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "no rebuild reached the swap on {table}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rebuild_started_while_another_runs_is_refused_and_the_first_swaps_in_the_log() {
    // Arrange: a report reading the read models holds the first rebuild at its swap.
    let app = app_with_read_models().await;
    let live = read_models(&app.pool).await;
    let mut report = app.pool.begin().await.expect("begin");
    sqlx::query("lock table read.order_summaries in access share mode")
        .execute(&mut *report)
        .await
        .expect("lock");
    let first = tokio::spawn({
        let pool = app.pool.clone();
        async move { rebuild(&pool).await }
    });
    wait_for_swap_waiting_on(&app.pool, "order_summaries").await;

    // Act: a second rebuild through the admin API, and a third in-process.
    let second = app
        .post(
            "/v1/admin/projections/rebuild",
            &app.admin(),
            serde_json::json!({}),
        )
        .await;
    let third = rebuild(&app.pool).await;
    report.commit().await.expect("the report ends");
    let first = timeout(Duration::from_secs(30), first)
        .await
        .expect("the first rebuild finished")
        .expect("task");

    // Assert
    second.assert_problem(409, "rebuild-in-progress");
    assert!(
        matches!(third, Err(RebuildError::AlreadyRunning)),
        "{third:?}"
    );
    let report = first.expect("the first rebuild");
    assert!(report.events > 0);
    assert_eq!(read_models(&app.pool).await, live);
    // The lock went with the first rebuild: the next one runs.
    rebuild(&app.pool).await.expect("a later rebuild");
    assert_eq!(read_models(&app.pool).await, live);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_rebuilds_never_interleave_and_leave_the_live_projection() {
    let app = app_with_read_models().await;
    let live = read_models(&app.pool).await;

    let results = futures::future::join_all((0..4).map(|_| rebuild(&app.pool))).await;

    let mut succeeded = 0;
    for r in &results {
        match r {
            Ok(_) => succeeded += 1,
            Err(RebuildError::AlreadyRunning) => {}
            Err(e) => panic!("a rebuild failed: {e:#}"),
        }
    }
    assert!(succeeded >= 1, "no rebuild ran: {results:?}");
    assert_eq!(read_models(&app.pool).await, live);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_swap_gives_way_to_a_projector_batch_instead_of_deadlocking_with_it() {
    // Arrange: a projector batch has written to the last read model (in lock order)...
    let app = app_with_read_models().await;
    let live = read_models(&app.pool).await;
    let mut conn = app.pool.acquire().await.expect("conn");
    let mut batch = conn.begin().await.expect("begin");
    sqlx::query("lock table read.store_sales_daily in row exclusive mode")
        .execute(&mut *batch)
        .await
        .expect("first write");
    // ...when the swap, holding every other read model, waits for it.
    let rebuilding = tokio::spawn({
        let pool = app.pool.clone();
        async move { rebuild(&pool).await }
    });
    wait_for_swap_waiting_on(&app.pool, "store_sales_daily").await;

    // Act: the batch goes on to write a read model the swap holds.
    let second_write = timeout(
        Duration::from_secs(10),
        sqlx::query("lock table read.order_lines in row exclusive mode").execute(&mut *batch),
    )
    .await
    .expect("the batch got its lock: the swap gave way");
    second_write.expect("the batch was not chosen as a deadlock victim");
    batch.commit().await.expect("the batch commits");

    // Assert: the rebuild went through on a later attempt.
    let rebuilt = timeout(Duration::from_secs(30), rebuilding)
        .await
        .expect("the rebuild finished")
        .expect("task");
    rebuilt.expect("the rebuild tried again and swapped");
    assert_eq!(read_models(&app.pool).await, live);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rebuild_that_never_gets_the_live_tables_gives_up_and_leaves_them_as_they_were() {
    let app = app_with_read_models().await;
    let live = read_models(&app.pool).await;
    let mut report = app.pool.begin().await.expect("begin");
    sqlx::query("lock table read.order_lines in access share mode")
        .execute(&mut *report)
        .await
        .expect("lock");

    let started = Instant::now();
    let given_up = timeout(Duration::from_secs(60), rebuild(&app.pool))
        .await
        .expect("the rebuild gave up rather than waiting for ever");

    assert!(
        matches!(given_up, Err(RebuildError::LiveTablesBusy { .. })),
        "{given_up:?}"
    );
    assert!(started.elapsed() < Duration::from_secs(30));
    report.commit().await.expect("the report ends");
    assert_eq!(read_models(&app.pool).await, live);
    rebuild(&app.pool)
        .await
        .expect("a rebuild once the tables are free");
    assert_eq!(read_models(&app.pool).await, live);
}

/// The live read models' indexes and constraints: name and definition, with the shadow schema's
/// name written as the live one's (a definition naming `read_rebuild` after the swap would be
/// told apart only by that).
async fn indexes_and_constraints(pool: &PgPool) -> Vec<(String, String)> {
    sqlx::query_as(
        "select 'index ' || indexname, regexp_replace(indexdef, 'read_rebuild', 'read')
           from pg_indexes where schemaname = 'read'
         union all
         select 'constraint ' || conrelid::regclass::text || '.' || conname,
                pg_get_constraintdef(oid)
           from pg_constraint where connamespace = 'read'::regnamespace
         order by 1, 2",
    )
    .fetch_all(pool)
    .await
    .expect("pg_indexes")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rebuild_leaves_the_read_models_with_the_same_indexes_and_constraints() {
    // Arrange
    let app = app_with_read_models().await;
    let live = read_models(&app.pool).await;
    let before = indexes_and_constraints(&app.pool).await;
    assert!(
        before
            .iter()
            .any(|(name, _)| name.contains("order_search_text_idx")),
        "{before:?}"
    );

    // Act
    rebuild(&app.pool).await.expect("rebuild");

    // Assert
    assert_eq!(indexes_and_constraints(&app.pool).await, before);
    assert_eq!(read_models(&app.pool).await, live);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_index_is_told_apart_from_the_live_ones() {
    // Counter-test of the comparison above: it notices one index gone.
    let app = app_with_read_models().await;
    let before = indexes_and_constraints(&app.pool).await;

    sqlx::query("drop index read.order_search_text_idx")
        .execute(&app.owner_pool)
        .await
        .expect("drop index");

    assert_ne!(indexes_and_constraints(&app.pool).await, before);
}
