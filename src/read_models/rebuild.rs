//! The rebuild: replay the whole log into shadow tables while the service keeps serving,
//! then swap them in (see [`rebuild`]).
//!
//! The service's database role runs no DDL (DESIGN §10): creating, indexing and swapping the
//! shadow tables happens in three functions the schema's owner defines (migration 0011,
//! `security definer`, taking no names from the caller), which the runtime role may execute.
//! Everything else (the lock, the replay, the catch-up, the checkpoint) is the runtime role's
//! own DML, as the live projector's.

use std::time::Duration;

use anyhow::Context as _;
use order_projections::{SCHEMA, SHADOW_SCHEMA};
use sqlx::{Connection as _, PgConnection, PgPool};

use super::apply::{apply_batch, PROJECTOR};
use crate::log::{Cursor, LogEvent};

/// Most events per batch (and transaction) of a rebuild.
const REBUILD_BATCH: i64 = 10_000;

/// What a rebuild did.
#[derive(Debug, Clone, Copy)]
pub struct RebuildReport {
    pub events: u64,
    pub seconds: f64,
}

impl RebuildReport {
    /// Events replayed per second.
    #[expect(clippy::cast_precision_loss, reason = "a rate for people to read")]
    pub fn rate(&self) -> f64 {
        self.events as f64 / self.seconds.max(1e-9)
    }
}

/// Advisory-lock key of the rebuild (hashed with `hashtextextended`): one rebuild at a time per
/// database, whichever process or replica starts it.
const REBUILD_LOCK: &str = "projections-rebuild";

/// How long one attempt at the swap waits for the live tables. Below PostgreSQL's default
/// `deadlock_timeout` (1 s): when the swap and a projector batch wait for each other, the swap
/// gives way before the deadlock detector aborts either, and tries again. It also bounds how
/// long queries of the read models queue behind the swap's lock request.
const SWAP_LOCK_TIMEOUT: Duration = Duration::from_millis(500);

/// Attempts at the swap before the rebuild gives up (about 9 s in all, pauses included).
const SWAP_ATTEMPTS: u32 = 8;

/// Why a rebuild did not happen. Either way the live read models are untouched.
#[derive(Debug, thiserror::Error)]
pub enum RebuildError {
    /// Another rebuild is running (in this process or another); this one did nothing.
    #[error("another rebuild of the read models is running; try again once it has finished")]
    AlreadyRunning,
    /// Other sessions kept the live read models locked through every attempt at the swap.
    #[error(
        "the live read models stayed locked by other sessions through {attempts} attempts at \
         the swap; nothing was swapped, try again later"
    )]
    LiveTablesBusy { attempts: u32 },
    #[error(transparent)]
    Failed(#[from] anyhow::Error),
}

/// Rebuilds every read model from the log while the service keeps serving: replays the log
/// into `read_rebuild`, then, holding the live tables for a moment, catches up to the live
/// projector's checkpoint and swaps the schemas in one transaction. The shadow tables get their
/// query indexes only after the replay, before the swap (same names and definitions as the live
/// ones).
///
/// Rebuilds exclude each other with a session advisory lock on a connection of their own (a
/// second one is refused with [`RebuildError::AlreadyRunning`]): two interleaved rebuilds would
/// replay into, drop and swap each other's shadow tables.
pub async fn rebuild(pool: &PgPool) -> Result<RebuildReport, RebuildError> {
    let started = std::time::Instant::now();
    // The lock lives and dies with this connection: a rebuild that fails or is dropped half-way
    // releases it when the connection closes.
    let mut conn = pool
        .acquire()
        .await
        .context("connecting the rebuild")?
        .detach();
    let locked: bool = sqlx::query_scalar("select pg_try_advisory_lock(hashtextextended($1, 0))")
        .bind(REBUILD_LOCK)
        .fetch_one(&mut conn)
        .await
        .context("taking the rebuild lock")?;
    let result = if locked {
        rebuild_holding_the_lock(&mut conn).await
    } else {
        Err(RebuildError::AlreadyRunning)
    };
    // Ends the session, and the lock with it, whatever state a failure left it in.
    conn.close().await.ok();
    Ok(RebuildReport {
        events: result?,
        seconds: started.elapsed().as_secs_f64(),
    })
}

/// The rebuild proper; returns the number of events applied.
async fn rebuild_holding_the_lock(conn: &mut PgConnection) -> Result<u64, RebuildError> {
    let tables: Vec<String> = sqlx::query_scalar(
        "select tablename::text from pg_tables where schemaname = $1 order by tablename",
    )
    .bind(SCHEMA)
    .fetch_all(&mut *conn)
    .await
    .context("listing the read models")?;
    if tables.is_empty() {
        return Err(
            anyhow::anyhow!("no read models in schema {SCHEMA}: run the migrations first").into(),
        );
    }

    create_shadow_tables(conn).await?;
    let (at, events) = replay(conn).await?;
    index_shadow_tables(conn).await?;
    Ok(events + swap_giving_way(conn, &tables, at).await?)
}

/// Step 1: fresh, empty shadow tables with the live tables' columns and constraints, but only
/// the indexes the replay needs (primary keys, unique indexes: its `on conflict` targets). The
/// DDL runs in `read_rebuild_prepare()` (migration 0011), with the rights of the schema's owner:
/// the service's role may not run DDL. No lower fillfactor: at 70 for the summaries, half their
/// replay updates became HOT instead of 2%, but the rebuild was no faster (measured on the
/// seeded 550k events).
async fn create_shadow_tables(conn: &mut PgConnection) -> anyhow::Result<()> {
    sqlx::query("select read_rebuild_prepare()")
        .execute(&mut *conn)
        .await
        .context(MIGRATED)
        .context("creating the shadow tables")?;
    Ok(())
}

/// Where the rebuild's functions come from, for an error that names them.
const MIGRATED: &str = "the rebuild runs functions of migration 0011 (`read_rebuild_*`), which \
    `order-service migrate` creates and grants to the runtime role";

/// Step 2: replays the log into the shadow tables, batch by batch, without holding anything the
/// API needs; returns where it ended and how many events it applied.
async fn replay(conn: &mut PgConnection) -> anyhow::Result<(Cursor, u64)> {
    let mut at = Cursor::default();
    let mut events = 0_u64;
    loop {
        let mut tx = conn.begin().await.context("replaying")?;
        // The shadow tables are rebuilt from scratch if the rebuild dies, so their commits
        // need not wait for the disk (never so for the live read models).
        sqlx::query("set local synchronous_commit = off")
            .execute(&mut *tx)
            .await
            .context("replaying")?;
        let batch = crate::log::read_batch(&mut tx, at, REBUILD_BATCH)
            .await
            .context("reading the log")?;
        let Some(last) = batch.last().map(LogEvent::cursor) else {
            break;
        };
        apply_batch(&mut tx, SHADOW_SCHEMA, &batch).await?;
        tx.commit().await.context("replaying")?;
        events += batch.len() as u64;
        at = last;
    }
    Ok((at, events))
}

/// Step 2b: the other indexes, each built once over the finished tables (by
/// `read_rebuild_create_indexes`, same names and definitions as the live ones): cheaper than
/// keeping them up to date through every update of the replay. Built here, before the swap takes
/// its locks, so the live tables are never locked while indexing.
async fn index_shadow_tables(conn: &mut PgConnection) -> anyhow::Result<()> {
    sqlx::query("select read_rebuild_create_indexes(false)")
        .execute(&mut *conn)
        .await
        .context(MIGRATED)
        .context("indexing the shadow tables")?;
    Ok(())
}

/// Step 3: swaps, giving way to whoever holds the live tables (see `SWAP_LOCK_TIMEOUT`); returns the
/// events caught up with while holding them.
async fn swap_giving_way(
    conn: &mut PgConnection,
    tables: &[String],
    at: Cursor,
) -> Result<u64, RebuildError> {
    let mut pause = Duration::from_millis(100);
    for attempt in 1..=SWAP_ATTEMPTS {
        match swap(conn, tables, at).await {
            Ok(caught_up) => return Ok(caught_up),
            Err(e) if is_lock_wait_failure(&e) => {
                tracing::warn!(
                    attempt,
                    error = format!("{e:#}"),
                    "the rebuild could not lock the live read models in time; trying again"
                );
                if attempt < SWAP_ATTEMPTS {
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(Duration::from_secs(1));
                }
            }
            Err(e) => return Err(e.into()),
        }
    }
    Err(RebuildError::LiveTablesBusy {
        attempts: SWAP_ATTEMPTS,
    })
}

/// One attempt at the swap, in one transaction: lock the live tables (which waits for the
/// projector's current batch and holds its next one), let the shadow catch up to exactly the
/// live checkpoint, point the checkpoint at the rebuilt tables and swap the schemas. Returns
/// the events applied while catching up.
async fn swap(conn: &mut PgConnection, tables: &[String], from: Cursor) -> anyhow::Result<u64> {
    let mut tx = conn.begin().await?;
    sqlx::query(&format!(
        "set local lock_timeout = {}",
        SWAP_LOCK_TIMEOUT.as_millis()
    ))
    .execute(&mut *tx)
    .await?;
    let list = tables
        .iter()
        .map(|t| format!("{SCHEMA}.{t}"))
        .collect::<Vec<_>>()
        .join(", ");
    sqlx::query(&format!("lock table {list} in access exclusive mode"))
        .execute(&mut *tx)
        .await
        .context("locking the live read models")?;
    let live = crate::log::load_checkpoint(&mut tx, PROJECTOR).await?;
    let mut at = from;
    let mut events = 0_u64;
    loop {
        let batch = crate::log::read_batch(&mut tx, at, REBUILD_BATCH).await?;
        let batch: Vec<LogEvent> = batch
            .into_iter()
            .take_while(|e| e.cursor() <= live)
            .collect();
        let Some(reached) = batch.last().map(LogEvent::cursor) else {
            break;
        };
        apply_batch(&mut tx, SHADOW_SCHEMA, &batch).await?;
        events += batch.len() as u64;
        at = reached;
    }
    anyhow::ensure!(
        at >= live,
        "the rebuild could not reach the live checkpoint {live:?} (reached {at:?})"
    );
    // The rebuilt tables may be ahead of a lagging projector: it continues from here. They
    // hold exactly the log up to `at`, so this sets the checkpoint rather than advancing it.
    crate::log::reset_checkpoint(&mut tx, PROJECTOR, at).await?;
    // The renames and the drop of the old read models, as their owner (migration 0011).
    sqlx::query("select read_rebuild_swap()")
        .execute(&mut *tx)
        .await
        .context(MIGRATED)
        .context("swapping the rebuilt read models in")?;
    tx.commit().await?;
    Ok(events)
}

/// Whether the swap failed for waiting on a lock: `lock_timeout` ran out (55P03), or the
/// deadlock detector chose it (40P01). Both leave nothing behind; the swap may be tried again.
fn is_lock_wait_failure(e: &anyhow::Error) -> bool {
    e.chain().any(|cause| {
        cause
            .downcast_ref::<sqlx::Error>()
            .and_then(sqlx::Error::as_database_error)
            .and_then(sqlx::error::DatabaseError::code)
            .is_some_and(|c| c == "55P03" || c == "40P01")
    })
}
