//! Least privilege in PostgreSQL (DESIGN §10, `deploy/postgres/`): the service runs as
//! `order_runtime`, which may read and append `events` but never update, delete or truncate them,
//! and runs no DDL; a trigger refuses those to the schema's owner too; `order_analyst` reads
//! `read.*` and nothing else, also after a rebuild swapped the read models. Each refusal has a
//! counter-test: the same statement where the role may run it succeeds, so the refusal is the
//! grant's or the trigger's, not a broken statement's.

use std::time::Duration;

use secrecy::ExposeSecret as _;
use sqlx::PgPool;

use crate::helpers::{pool_as, spawn_app, TestApp, ANALYST, MIGRATOR, RUNTIME};

/// PostgreSQL's "permission denied" (a grant is missing).
const INSUFFICIENT_PRIVILEGE: &str = "42501";
/// What the append-only trigger raises (migration 0009).
const RESTRICT_VIOLATION: &str = "23001";

/// A store, an order placed, the read models caught up.
async fn app_with_an_order() -> TestApp {
    let app = spawn_app().await;
    let store = app.store_with_products().await;
    let alice = app.customer("alice");
    let order = app.draft_with_tea(&alice, store).await;
    app.place(&alice, order).await.assert_status(200);
    app.wait_for_projector(Duration::from_secs(30)).await;
    app
}

/// The test database's URL (the service's, as the runtime role).
fn database_url(app: &TestApp) -> String {
    app.settings
        .database_url
        .as_ref()
        .expect("database url")
        .expose_secret()
        .to_owned()
}

/// Runs `statement` on `pool`; the SQLSTATE it failed with, `None` when it succeeded.
async fn sqlstate(pool: &PgPool, statement: &str) -> Option<String> {
    match sqlx::query(statement).execute(pool).await {
        Ok(_) => None,
        Err(sqlx::Error::Database(e)) => Some(e.code().expect("a sqlstate").into_owned()),
        Err(e) => panic!("{statement}: not a database error: {e}"),
    }
}

/// Every event, as text, in log order: what a refused statement must leave as it was.
async fn the_log(pool: &PgPool) -> Vec<String> {
    sqlx::query_scalar("select to_jsonb(e)::text from events e order by tx_id, position")
        .fetch_all(pool)
        .await
        .expect("the log")
}

#[tokio::test]
async fn the_service_runs_as_the_runtime_role_and_the_schema_belongs_to_the_migrator() {
    let app = spawn_app().await;

    let (current, session): (String, String) =
        sqlx::query_as("select current_user::text, session_user::text")
            .fetch_one(&app.pool)
            .await
            .expect("who");
    let owner: String =
        sqlx::query_scalar("select tableowner::text from pg_tables where tablename = 'events'")
            .fetch_one(&app.pool)
            .await
            .expect("owner");

    assert_eq!((current.as_str(), session.as_str()), (RUNTIME, RUNTIME));
    assert_eq!(owner, MIGRATOR);
}

#[tokio::test]
async fn the_runtime_role_may_not_update_delete_or_truncate_events() {
    // Arrange
    let app = app_with_an_order().await;
    let before = the_log(&app.pool).await;
    assert!(!before.is_empty());

    // Act
    let update = sqlstate(&app.pool, "update events set payload = '{}'").await;
    let delete = sqlstate(&app.pool, "delete from events").await;
    let truncate = sqlstate(&app.pool, "truncate events").await;
    // ...nor through a statement that touches no row
    let update_none = sqlstate(&app.pool, "update events set payload = payload where false").await;

    // Assert
    for (what, refused) in [
        ("update", update),
        ("delete", delete),
        ("truncate", truncate),
        ("update of no row", update_none),
    ] {
        assert_eq!(refused.as_deref(), Some(INSUFFICIENT_PRIVILEGE), "{what}");
    }
    assert_eq!(the_log(&app.pool).await, before, "the log changed");
}

#[tokio::test]
async fn counter_test_the_runtime_role_updates_and_deletes_the_tables_it_keeps() {
    // The statements refused on `events` are sound ones: where the runtime role has the grant,
    // they run.
    let app = app_with_an_order().await;

    for statement in [
        "update reader_checkpoints set updated_at = updated_at",
        "update products set updated_at = updated_at where false",
        "delete from read.order_lines where false",
        "insert into events (aggregate_type, aggregate_id, sequence, event_type, event_version,
                             payload, metadata)
         values ('Probe', 'least-privilege', 1, 'Probed', '1', '{}', '{}')",
        "select count(*) from events",
    ] {
        assert_eq!(sqlstate(&app.pool, statement).await, None, "{statement}");
    }
}

#[tokio::test]
async fn the_trigger_refuses_to_update_delete_or_truncate_events_even_to_their_owner() {
    // Arrange: the migrator owns `events`; no grant stands in its way.
    let app = app_with_an_order().await;
    let before = the_log(&app.owner_pool).await;

    // Act
    let refusals = [
        sqlstate(&app.owner_pool, "update events set payload = '{}'").await,
        sqlstate(&app.owner_pool, "delete from events").await,
        sqlstate(&app.owner_pool, "truncate events").await,
        // one of several tables in one statement
        sqlstate(&app.owner_pool, "truncate reader_checkpoints, events").await,
    ];

    // Assert: the trigger's refusal, with a message that says why.
    for refused in &refusals {
        assert_eq!(refused.as_deref(), Some(RESTRICT_VIOLATION));
    }
    let message = sqlx::query("delete from events where false")
        .execute(&app.owner_pool)
        .await
        .expect_err("refused")
        .to_string();
    assert!(message.contains("append-only"), "{message}");
    assert_eq!(the_log(&app.owner_pool).await, before, "the log changed");
    let checkpoints: i64 = sqlx::query_scalar("select count(*) from reader_checkpoints")
        .fetch_one(&app.owner_pool)
        .await
        .expect("count");
    assert!(
        checkpoints > 0,
        "the refused truncate emptied reader_checkpoints"
    );
}

#[tokio::test]
async fn counter_test_the_owner_updates_deletes_and_truncates_a_table_without_the_trigger() {
    // The trigger, not ownership, is what refuses the owner on `events`.
    let app = app_with_an_order().await;

    for statement in [
        "update reader_checkpoints set updated_at = updated_at",
        "delete from read.order_status_history where false",
        "truncate read.order_search",
    ] {
        assert_eq!(
            sqlstate(&app.owner_pool, statement).await,
            None,
            "{statement}"
        );
    }
}

#[tokio::test]
async fn the_runtime_role_runs_no_ddl() {
    let app = spawn_app().await;

    for statement in [
        "create table public.scratch (id int)",
        "create schema scratch",
        "alter table read.order_summaries add column scratch int",
        "drop table read.order_lines",
        "create index scratch_idx on events (recorded_at)",
        "drop trigger events_append_only on events",
    ] {
        assert_eq!(
            sqlstate(&app.pool, statement).await.as_deref(),
            Some(INSUFFICIENT_PRIVILEGE),
            "{statement}"
        );
    }
    // Counter-test: the migrator, which owns the schema, may.
    assert_eq!(
        sqlstate(&app.owner_pool, "create table public.scratch (id int)").await,
        None
    );
}

/// Rows of every read model as the analyst sees them, and whether it may read `events`.
async fn analyst_view(analyst: &PgPool) -> (i64, Option<String>) {
    let rows: i64 = sqlx::query_scalar(
        "select (select count(*) from read.order_summaries)
              + (select count(*) from read.order_lines)
              + (select count(*) from read.order_status_history)
              + (select count(*) from read.store_sales_daily)
              + (select count(*) from read.product_sales_daily)
              + (select count(*) from read.order_search)
              + (select count(*) from read.saga_progress)",
    )
    .fetch_one(analyst)
    .await
    .expect("the analyst reads the read models");
    (rows, sqlstate(analyst, "select count(*) from events").await)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_analyst_reads_the_read_models_and_nothing_else_also_after_a_rebuild() {
    // Arrange
    let app = app_with_an_order().await;
    let analyst = pool_as(&database_url(&app), ANALYST).await;

    // Act + assert: reads `read.*` (the counter-test of the refusals below)...
    let (rows, events) = analyst_view(&analyst).await;
    assert!(rows > 0);
    assert_eq!(events.as_deref(), Some(INSUFFICIENT_PRIVILEGE));
    // ...and nothing else, nor writes.
    for statement in [
        "select count(*) from order_events",
        "select count(*) from products",
        "select count(*) from reader_checkpoints",
        "delete from read.order_summaries",
        "insert into read.order_search (order_id, search_text) values (gen_random_uuid(), '')",
        "select read_rebuild_prepare()",
    ] {
        assert_eq!(
            sqlstate(&analyst, statement).await.as_deref(),
            Some(INSUFFICIENT_PRIVILEGE),
            "{statement}"
        );
    }

    // The rebuild swaps in new tables: they carry the same grants.
    order_service::read_models::rebuild(&app.pool)
        .await
        .expect("the runtime role rebuilds");
    assert_eq!(analyst_view(&analyst).await, (rows, events));
    assert_eq!(
        sqlstate(&analyst, "delete from read.order_summaries")
            .await
            .as_deref(),
        Some(INSUFFICIENT_PRIVILEGE)
    );
    assert_eq!(
        sqlstate(&app.pool, "truncate read.order_summaries")
            .await
            .as_deref(),
        Some(INSUFFICIENT_PRIVILEGE),
        "the rebuilt tables gave the runtime role more than it had"
    );
}

#[tokio::test]
async fn the_runtime_role_adds_to_the_stores_change_record_but_never_rewrites_it() {
    // Arrange: a store, whose opening is on record.
    let app = spawn_app().await;
    app.store_with_products().await;
    let record = || async {
        sqlx::query_scalar::<_, String>("select to_jsonb(c)::text from store_changes c order by id")
            .fetch_all(&app.pool)
            .await
            .expect("the record")
    };
    let before = record().await;
    assert!(!before.is_empty(), "the store's changes are on record");

    // Act
    let update = sqlstate(&app.pool, "update store_changes set actor = 'someone else'").await;
    let delete = sqlstate(&app.pool, "delete from store_changes").await;
    // counter-test: what the service does with it, it may
    let insert = sqlstate(
        &app.pool,
        "insert into store_changes (store_id, actor, entity, key, action)
         select store_id, 'probe', 'store', 'probe', 'probed' from store_changes limit 1",
    )
    .await;

    // Assert
    assert_eq!(update.as_deref(), Some(INSUFFICIENT_PRIVILEGE), "update");
    assert_eq!(delete.as_deref(), Some(INSUFFICIENT_PRIVILEGE), "delete");
    assert_eq!(insert, None, "insert");
    assert_eq!(
        record().await[..before.len()],
        before[..],
        "the record changed"
    );
}
