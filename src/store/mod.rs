//! Persistence: the event store (postgres-es in pure event-store mode, appends in one
//! statement: [`event_log`]), the one command [`executor`] of every aggregate (its lock per id
//! [`locks`], its [`cache`]) with the orders' and sagas' hooks ([`orders`], [`sagas`]), the
//! catalog tables with the stores' [`members`] and who changed what ([`changes`]), the store's
//! metrics, and the connection pool they share.

pub mod append;
pub mod cache;
pub mod catalog;
pub mod changes;
pub mod event_log;
pub mod executor;
pub mod locks;
pub mod members;
pub mod metrics;
pub mod orders;
pub mod saga_metrics;
pub mod sagas;

use std::time::Duration;

use anyhow::Context as _;
use secrecy::{ExposeSecret as _, SecretString};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::PgPool;

use crate::config::DatabaseSettings;

/// All SQL migrations, embedded at compile time.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// Opens the pool. Tuned per DESIGN §14: no ping on every checkout (`test_before_acquire`
/// would add a round trip to each of them), and an idle-in-transaction timeout so a stuck
/// client cannot hold back every log reader's snapshot horizon.
pub async fn connect(url: &SecretString, settings: &DatabaseSettings) -> anyhow::Result<PgPool> {
    pool(connect_options(url)?, settings)
        .await
        .context("connecting to PostgreSQL")
}

/// What `DATABASE_URL` says, with what the service adds to every session.
pub fn connect_options(url: &SecretString) -> anyhow::Result<PgConnectOptions> {
    Ok(url
        .expose_secret()
        .parse::<PgConnectOptions>()
        .context("DATABASE_URL is not a valid PostgreSQL connection string")?
        .application_name("order-service")
        .options([("idle_in_transaction_session_timeout", "30s")]))
}

/// The pool on `options` (see [`connect`]), with its first connection open.
pub async fn pool(options: PgConnectOptions, settings: &DatabaseSettings) -> sqlx::Result<PgPool> {
    PgPoolOptions::new()
        .max_connections(settings.max_connections)
        .min_connections(1)
        .acquire_timeout(Duration::from_millis(settings.acquire_timeout_ms))
        .test_before_acquire(false)
        .connect_with(options)
        .await
}

/// A `LISTEN` connection named `application_name` (so other sessions can tell it apart in
/// `pg_stat_activity`), on a one-connection pool of its own beside `pool`, so that the name
/// stays when the listener reconnects.
pub async fn named_listener(
    pool: &PgPool,
    application_name: &str,
) -> Result<sqlx::postgres::PgListener, sqlx::Error> {
    let options = pool
        .connect_options()
        .as_ref()
        .clone()
        .application_name(application_name);
    let named = PgPoolOptions::new()
        .max_connections(1)
        .connect_lazy_with(options);
    sqlx::postgres::PgListener::connect_with(&named).await
}

/// Applies pending migrations as the schema's owner (the migrator role of
/// `deploy/postgres/roles.sql`, or the one role of a single-role setup), then grants the service's
/// and the analyst's roles what they need on every object, when those roles exist (migration
/// 0010): objects of later migrations, and roles created after the database was migrated, get
/// their grants without a migration of their own. Idempotent.
pub async fn migrate(pool: &PgPool) -> anyhow::Result<()> {
    MIGRATOR
        .run(pool)
        .await
        .context("running database migrations")?;
    sqlx::query("select order_service_grant_roles()")
        .execute(pool)
        .await
        .context("granting the database roles their privileges (migration 0010)")?;
    Ok(())
}

/// Whether every embedded migration has been applied (readiness).
pub async fn migrations_applied(pool: &PgPool) -> anyhow::Result<bool> {
    let applied: Vec<i64> =
        sqlx::query_scalar("select version from _sqlx_migrations where success order by version")
            .fetch_all(pool)
            .await
            .context("reading applied migrations")?;
    Ok(MIGRATOR
        .iter()
        .filter(|m| m.migration_type.is_up_migration())
        .all(|m| applied.contains(&m.version)))
}

/// Whether an error means "the database is out of reach" (pool exhausted or closed, I/O, TLS)
/// rather than a bug: such requests answer 503 and may be retried.
pub fn is_unavailable(e: &anyhow::Error) -> bool {
    e.chain().any(|cause| {
        cause
            .downcast_ref::<sqlx::Error>()
            .is_some_and(sqlx_unavailable)
    })
}

/// The sqlx errors that mean the database is out of reach.
pub fn sqlx_unavailable(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::Protocol(_)
        | sqlx::Error::WorkerCrashed => true,
        // connection exceptions (08), too many connections, admin/crash shutdown, starting up
        sqlx::Error::Database(db) => db.code().is_some_and(|c| {
            c.starts_with("08") || matches!(c.as_ref(), "53300" | "57P01" | "57P02" | "57P03")
        }),
        _ => false,
    }
}
