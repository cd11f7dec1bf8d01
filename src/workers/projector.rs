//! The projector: the log reader that keeps the read models of `order-projections`, and the
//! rebuild that replays the whole log into shadow tables and swaps them in.

use std::sync::Arc;

use anyhow::Context as _;
use order_domain::OrderEvent;
use order_projections::{Recorded, SCHEMA, SHADOW_SCHEMA};
use sqlx::{Connection as _, PgConnection, PgPool};

use crate::log::{Cursor, LogEvent, LogHandler, LogReader, ReaderConfig};
use crate::telemetry::Metrics;

/// Name of the projector's reader (checkpoint row, lock, metric label).
pub const READER: &str = "projector";

/// Applies order events to the read models in `schema`.
#[derive(Debug, Clone)]
pub struct Projector {
    schema: &'static str,
}

impl Projector {
    /// The live projector.
    pub fn live() -> Self {
        Self { schema: SCHEMA }
    }

    /// The reader that runs it.
    pub fn reader(pool: PgPool, metrics: Arc<Metrics>) -> LogReader {
        LogReader::new(pool, ReaderConfig::new(READER), metrics)
    }
}

impl LogHandler for Projector {
    async fn handle(&mut self, tx: &mut PgConnection, batch: &[LogEvent]) -> anyhow::Result<()> {
        apply_batch(tx, self.schema, batch).await
    }
}

/// Applies a batch of log events to the read models in `schema`, inside the caller's
/// transaction.
async fn apply_batch(
    tx: &mut PgConnection,
    schema: &'static str,
    batch: &[LogEvent],
) -> anyhow::Result<()> {
    // The projection SQL names tables without a schema: point it at the right one.
    sqlx::query(&format!("set local search_path to {schema}, public"))
        .execute(&mut *tx)
        .await?;
    for e in batch {
        match e.aggregate_type.as_str() {
            "Order" => apply_order(tx, e).await?,
            "OrderSaga" => apply_saga(tx, e).await?,
            _ => {}
        }
    }
    Ok(())
}

async fn apply_saga(tx: &mut PgConnection, e: &LogEvent) -> anyhow::Result<()> {
    let event: order_sagas::SagaEvent =
        serde_json::from_value(e.payload.clone()).with_context(|| {
            format!(
                "saga event {} ({}) does not decode",
                e.event_id, e.event_type
            )
        })?;
    let attention = match &event.change {
        order_sagas::SagaChange::SagaNeedsAttention { reason, .. } => Some(reason.as_str()),
        _ => None,
    };
    order_projections::apply_saga(
        tx,
        order_projections::SagaRecorded {
            order_id: e
                .aggregate_id
                .parse()
                .with_context(|| format!("saga id {}", e.aggregate_id))?,
            sequence: e.sequence,
            event_type: &e.event_type,
            status: event.status.as_str(),
            deadline_at: event.next_deadline_at,
            attention,
            recorded_at: e.recorded_at,
        },
    )
    .await?;
    Ok(())
}

async fn apply_order(tx: &mut PgConnection, e: &LogEvent) -> anyhow::Result<()> {
    let event: OrderEvent = serde_json::from_value(e.payload.clone())
        .with_context(|| format!("event {} ({}) does not decode", e.event_id, e.event_type))?;
    let order_id = e
        .aggregate_id
        .parse()
        .with_context(|| format!("order id {}", e.aggregate_id))?;
    let principal = e
        .metadata
        .get("principal")
        .and_then(serde_json::Value::as_str);
    order_projections::apply(
        tx,
        Recorded {
            order_id,
            sequence: e.sequence,
            event: &event,
            recorded_at: e.recorded_at,
            principal,
        },
    )
    .await?;
    Ok(())
}

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

/// Rebuilds every read model from the log while the service keeps serving: replays the log
/// into `read_rebuild`, then, holding the live tables for a moment, catches up to the live
/// projector's checkpoint and swaps the schemas in one transaction.
pub async fn rebuild(pool: &PgPool) -> anyhow::Result<RebuildReport> {
    let started = std::time::Instant::now();
    let mut conn = pool.acquire().await?.detach();
    let tables: Vec<String> = sqlx::query_scalar(
        "select tablename::text from pg_tables where schemaname = $1 order by tablename",
    )
    .bind(SCHEMA)
    .fetch_all(&mut conn)
    .await?;
    anyhow::ensure!(
        !tables.is_empty(),
        "no read models in schema {SCHEMA}: run the migrations first"
    );

    // 1. Fresh, empty shadow tables with the live tables' columns, constraints and indexes.
    let mut tx = conn.begin().await?;
    sqlx::query(&format!("drop schema if exists {SHADOW_SCHEMA} cascade"))
        .execute(&mut *tx)
        .await?;
    sqlx::query(&format!("create schema {SHADOW_SCHEMA}"))
        .execute(&mut *tx)
        .await?;
    for t in &tables {
        sqlx::query(&format!(
            "create table {SHADOW_SCHEMA}.{t} (like {SCHEMA}.{t} including all)"
        ))
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await?;

    // 2. Replay the log into them, batch by batch, without holding anything the API needs.
    let mut at = Cursor::default();
    let mut events = 0_u64;
    loop {
        let mut tx = conn.begin().await?;
        let batch = crate::log::read_batch(&mut tx, at, 2_000).await?;
        let Some(last) = batch.last().map(LogEvent::cursor) else {
            break;
        };
        apply_batch(&mut tx, SHADOW_SCHEMA, &batch).await?;
        tx.commit().await?;
        events += batch.len() as u64;
        at = last;
    }

    // 3. Swap. Locking the live tables first waits for the projector's current batch and holds
    //    its next one; then the shadow catches up to exactly the live checkpoint.
    let mut tx = conn.begin().await?;
    let list = tables
        .iter()
        .map(|t| format!("{SCHEMA}.{t}"))
        .collect::<Vec<_>>()
        .join(", ");
    sqlx::query(&format!("lock table {list} in access exclusive mode"))
        .execute(&mut *tx)
        .await?;
    let live = crate::log::load_checkpoint(&mut tx, READER).await?;
    loop {
        let batch = crate::log::read_batch(&mut tx, at, 2_000).await?;
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
    crate::log::reset_checkpoint(&mut tx, READER, at).await?;
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
    conn.close().await.ok();
    Ok(RebuildReport {
        events,
        seconds: started.elapsed().as_secs_f64(),
    })
}
