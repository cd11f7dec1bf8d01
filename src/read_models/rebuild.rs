//! The rebuild: replay the whole log into shadow tables while the service keeps serving,
//! then swap them in (see [`rebuild`]).

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

    let indexes = live_indexes(conn).await?;
    create_shadow_tables(conn, &tables, &indexes).await?;
    let (at, events) = replay(conn).await?;
    index_shadow_tables(conn, &indexes).await?;
    Ok(events + swap_giving_way(conn, &tables, at).await?)
}

/// Step 1: fresh, empty shadow tables with the live tables' columns and constraints, but only
/// the indexes the replay needs (see `LiveIndex::needed_by_the_replay`). No lower
/// fillfactor: at 70 for the summaries, half their replay updates became HOT instead of
/// 2%, but the rebuild was no faster (measured on the seeded 550k events).
async fn create_shadow_tables(
    conn: &mut PgConnection,
    tables: &[String],
    indexes: &[LiveIndex],
) -> anyhow::Result<()> {
    let mut tx = conn.begin().await.context("creating the shadow tables")?;
    sqlx::query(&format!("drop schema if exists {SHADOW_SCHEMA} cascade"))
        .execute(&mut *tx)
        .await
        .context("dropping an old shadow schema")?;
    sqlx::query(&format!("create schema {SHADOW_SCHEMA}"))
        .execute(&mut *tx)
        .await
        .context("creating the shadow schema")?;
    for t in tables {
        sqlx::query(&format!(
            "create table {SHADOW_SCHEMA}.{t} (like {SCHEMA}.{t} including all excluding indexes)"
        ))
        .execute(&mut *tx)
        .await
        .with_context(|| format!("creating the shadow of {t}"))?;
    }
    for index in indexes.iter().filter(|i| i.needed_by_the_replay()) {
        index.create_in_shadow(&mut tx).await?;
    }
    tx.commit().await.context("creating the shadow tables")?;
    Ok(())
}

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

/// Step 2b: the other indexes, each built once over the finished tables: cheaper than keeping
/// them up to date through every update of the replay. Built here, before the swap takes its
/// locks, so the live tables are never locked while indexing.
async fn index_shadow_tables(conn: &mut PgConnection, indexes: &[LiveIndex]) -> anyhow::Result<()> {
    for index in indexes.iter().filter(|i| !i.needed_by_the_replay()) {
        let mut tx = conn.begin().await.context("indexing the shadow tables")?;
        sqlx::query(&format!(
            "set local maintenance_work_mem = '{INDEX_BUILD_MEMORY}'"
        ))
        .execute(&mut *tx)
        .await
        .context("indexing the shadow tables")?;
        index.create_in_shadow(&mut tx).await?;
        tx.commit().await.context("indexing the shadow tables")?;
    }
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

/// Memory for building one index of the shadow tables (`maintenance_work_mem`, for the
/// transaction that builds it). A trigram GIN build flushes its entries and a btree build
/// sorts on disk whenever this runs out. On the seeded 100k orders the builds fit the 64MB
/// default (16, 64 and 256MB built the search index equally fast, about 2.3 s); this leaves
/// room for larger read models, one rebuild (and one index) at a time.
const INDEX_BUILD_MEMORY: &str = "256MB";

/// An index of a live read model, as the catalog defines it.
#[derive(Debug)]
struct LiveIndex {
    table: String,
    name: String,
    /// `pg_get_indexdef`: `CREATE [UNIQUE] INDEX <name> ON read.<table> USING ...`.
    definition: String,
    /// The constraint the index implements (primary key, unique, exclusion) with its
    /// definition (`pg_get_constraintdef`), if any.
    constraint: Option<String>,
    unique: bool,
}

impl LiveIndex {
    /// Whether the shadow table needs the index while the log is replayed into it: the
    /// constraints it enforces and the `on conflict` targets of the upserts are primary keys
    /// and unique indexes. The others only serve queries.
    fn needed_by_the_replay(&self) -> bool {
        self.constraint.is_some() || self.unique
    }

    /// Creates the same index (or constraint), with the same name, on the shadow table.
    async fn create_in_shadow(&self, conn: &mut PgConnection) -> anyhow::Result<()> {
        let statement = if let Some(definition) = &self.constraint {
            format!(
                "alter table {SHADOW_SCHEMA}.{} add constraint {} {definition}",
                self.table, self.name
            )
        } else {
            // The definition names the table schema-qualified, always.
            let live = format!(" ON {SCHEMA}.{} ", self.table);
            anyhow::ensure!(
                self.definition.matches(&live).count() == 1,
                "unexpected definition of index {}: {}",
                self.name,
                self.definition
            );
            self.definition
                .replacen(&live, &format!(" ON {SHADOW_SCHEMA}.{} ", self.table), 1)
        };
        sqlx::query(&statement)
            .execute(&mut *conn)
            .await
            .with_context(|| format!("creating index {} of the shadow tables", self.name))?;
        Ok(())
    }
}

/// The indexes of the live read models.
async fn live_indexes(conn: &mut PgConnection) -> anyhow::Result<Vec<LiveIndex>> {
    let rows: Vec<(String, String, String, Option<String>, bool)> = sqlx::query_as(
        "select t.relname::text, i.relname::text, pg_get_indexdef(x.indexrelid),
                pg_get_constraintdef(c.oid), x.indisunique
           from pg_index x
           join pg_class t on t.oid = x.indrelid
           join pg_class i on i.oid = x.indexrelid
           left join pg_constraint c
                  on c.conindid = x.indexrelid and c.conrelid = x.indrelid
                 and c.contype in ('p', 'u', 'x')
          where t.relnamespace = $1::regnamespace and t.relkind = 'r'
          order by t.relname, i.relname",
    )
    .bind(SCHEMA)
    .fetch_all(&mut *conn)
    .await
    .context("listing the indexes of the read models")?;
    Ok(rows
        .into_iter()
        .map(|(table, name, definition, constraint, unique)| LiveIndex {
            table,
            name,
            definition,
            constraint,
            unique,
        })
        .collect())
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
    sqlx::query(&format!("alter schema {SCHEMA} rename to {SCHEMA}_old"))
        .execute(&mut *tx)
        .await?;
    sqlx::query(&format!("alter schema {SHADOW_SCHEMA} rename to {SCHEMA}"))
        .execute(&mut *tx)
        .await?;
    sqlx::query(&format!("drop schema {SCHEMA}_old cascade"))
        .execute(&mut *tx)
        .await?;
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
