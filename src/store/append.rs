//! Group append: the events of concurrent commands in one statement and one commit.
//!
//! Every command appends its events in one statement (`insert … select from unnest`), in its
//! own implicit transaction. Under load that is a statement, a commit and a WAL flush per
//! command, and PostgreSQL spends more on those than on the rows. [`Appender`] queues each
//! command's rows and writes whatever has queued while earlier writes were running, up to
//! [`MAX_BATCH_ROWS`], as one statement:
//!
//! * **All or nothing per batch.** The statement inserts with `on conflict do nothing` and
//!   divides by zero unless every row went in, so a batch with one conflicting command writes
//!   nothing. Then each of its commands is appended on its own, as without batching: the
//!   conflicting one gets its optimistic-lock conflict (and is decided again), the others
//!   succeed. A command's events are never written in part.
//! * **Log order is each command's order.** Rows keep their order in the statement, so each
//!   command's events get ascending positions, in sequence order, in one transaction (the
//!   log's order is transaction, then position).
//! * **Bounded.** At most [`FLUSHES_IN_FLIGHT`] statements run at once; what arrives meanwhile
//!   waits for the next one, which is how batches form (nothing waits on a timer). At most
//!   [`QUEUE_COMMANDS`] commands wait; more wait to be queued.
//! * **Unknown stays unknown.** Only PostgreSQL refusing the statement (its guard, a
//!   constraint, a data exception) sends the commands one by one. Any other failure, a lost
//!   connection above all, may have come after the commit: every command of the batch gets it
//!   as it is (503, outcome unknown), as a single command's append would, and none is written
//!   again.
//! * **A command given up is not written.** One whose caller stopped waiting before its batch
//!   formed (the request was dropped) is left out.

use std::sync::Arc;
use std::time::Instant;

use cqrs_es::persist::PersistenceError;
use futures::StreamExt as _;
use serde_json::Value;
use sqlx::PgPool;
use tokio::sync::{mpsc, oneshot, Semaphore};
use tracing::Instrument as _;

use crate::log::AppendSignal;
use crate::telemetry::Metrics;

/// Rows of one statement at most (a command larger than this is a batch of its own).
pub const MAX_BATCH_ROWS: usize = 500;

/// Append statements running at once (each holds a pooled connection while it runs), also
/// when a batch is written command by command.
pub const FLUSHES_IN_FLIGHT: usize = 4;

/// Commands waiting for a batch at most.
pub const QUEUE_COMMANDS: usize = 4096;

/// One command's events: `insert … select from unnest`, one transaction.
const APPEND_ONE: &str = "insert into events
    (aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata)
    select * from unnest($1::text[], $2::text[], $3::bigint[], $4::text[], $5::text[],
                         $6::jsonb[], $7::jsonb[])";

/// Several commands' events, all or none: a conflicting row is skipped by `on conflict`, and
/// then the count differs and the division by zero aborts the statement (SQLSTATE 22012).
const APPEND_ALL: &str = "with appended as (
      insert into events
        (aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata)
        select * from unnest($1::text[], $2::text[], $3::bigint[], $4::text[], $5::text[],
                             $6::jsonb[], $7::jsonb[])
        on conflict (aggregate_type, aggregate_id, sequence) do nothing
        returning 1)
    select 1 / (count(*) = $8)::int from appended";

/// The rows of one or more commands, column by column.
#[derive(Debug, Default)]
pub struct Rows {
    pub types: Vec<&'static str>,
    pub ids: Vec<String>,
    pub sequences: Vec<i64>,
    pub names: Vec<String>,
    pub versions: Vec<String>,
    pub payloads: Vec<Value>,
    pub metadata: Vec<Value>,
}

impl Rows {
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    /// `query` with the seven columns bound as `$1` to `$7`.
    fn bound_to<'q>(
        &'q self,
        query: sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments>,
    ) -> sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments> {
        query
            .bind(&self.types)
            .bind(&self.ids)
            .bind(&self.sequences)
            .bind(&self.names)
            .bind(&self.versions)
            .bind(&self.payloads)
            .bind(&self.metadata)
    }

    fn extend_from(&mut self, other: &Self) {
        self.types.extend_from_slice(&other.types);
        self.ids.extend_from_slice(&other.ids);
        self.sequences.extend_from_slice(&other.sequences);
        self.names.extend_from_slice(&other.names);
        self.versions.extend_from_slice(&other.versions);
        self.payloads.extend_from_slice(&other.payloads);
        self.metadata.extend_from_slice(&other.metadata);
    }
}

/// A command's rows waiting for their statement, and where its outcome goes.
struct Pending {
    rows: Rows,
    done: oneshot::Sender<Result<(), PersistenceError>>,
}

/// Queues appends for the group writer (see the module docs). Cheap to clone.
#[derive(Debug, Clone)]
pub struct Appender {
    queue: mpsc::Sender<Pending>,
}

impl Appender {
    /// Starts the writer on the current runtime; it stops when the last clone is dropped.
    pub fn start(pool: PgPool, appended: AppendSignal, metrics: Arc<Metrics>) -> Self {
        let (queue, pending) = mpsc::channel(QUEUE_COMMANDS);
        tokio::spawn(write(pool, appended, metrics, pending));
        Self { queue }
    }

    /// Appends one command's rows, atomically; a duplicate sequence is an
    /// [`PersistenceError::OptimisticLockError`].
    pub async fn append(&self, rows: Rows) -> Result<(), PersistenceError> {
        let (done, outcome) = oneshot::channel();
        self.queue
            .send(Pending { rows, done })
            .await
            .map_err(|_| unavailable("the event writer has stopped"))?;
        outcome
            .await
            .map_err(|_| unavailable("the event writer stopped during the append"))?
    }
}

fn unavailable(why: &str) -> PersistenceError {
    PersistenceError::ConnectionError(why.into())
}

/// The writer: takes what has queued, writes it, at most [`FLUSHES_IN_FLIGHT`] at once.
async fn write(
    pool: PgPool,
    appended: AppendSignal,
    metrics: Arc<Metrics>,
    mut pending: mpsc::Receiver<Pending>,
) {
    let slots = Arc::new(Semaphore::new(FLUSHES_IN_FLIGHT));
    while let Some(first) = pending.recv().await {
        // a free slot first: while none is, the queue fills, and the next batch is larger
        let Ok(slot) = Arc::clone(&slots).acquire_owned().await else {
            return;
        };
        let mut rows = first.rows.len();
        let mut batch = vec![first];
        while rows < MAX_BATCH_ROWS {
            match pending.try_recv() {
                Ok(p) => {
                    rows += p.rows.len();
                    batch.push(p);
                }
                Err(_) => break,
            }
        }
        batch.retain(|p| !p.done.is_closed());
        if batch.is_empty() {
            continue;
        }
        let (pool, appended, metrics) = (pool.clone(), appended.clone(), Arc::clone(&metrics));
        let span = tracing::debug_span!("event_log.append", commands = batch.len(), rows);
        tokio::spawn(
            async move {
                // here, not in the writer's loop, which every append waits for
                let event_types = event_types(&batch);
                flush(&pool, &metrics, batch).await;
                appended.appended(&event_types);
                drop(slot);
            }
            .instrument(span),
        );
    }
}

/// The event types of `batch`, each once (what the readers woken by the append look for).
fn event_types(batch: &[Pending]) -> Vec<String> {
    let mut types: Vec<String> = Vec::new();
    for name in batch.iter().flat_map(|p| &p.rows.names) {
        if !types.contains(name) {
            types.push(name.clone());
        }
    }
    types
}

/// Writes `batch` in one statement, or each of its commands on its own when that fails.
async fn flush(pool: &PgPool, metrics: &Metrics, batch: Vec<Pending>) {
    let started = Instant::now();
    let commands = batch.len();
    if commands == 1 {
        let p = batch.into_iter().next().expect("one");
        let _ = p.done.send(append_one(pool, &p.rows).await);
        metrics.store.observe_append(1, started.elapsed(), false);
        return;
    }
    let mut all = Rows::default();
    for p in &batch {
        all.extend_from(&p.rows);
    }
    let together = all
        .bound_to(sqlx::query(APPEND_ALL))
        .bind(i64::try_from(all.len()).unwrap_or(i64::MAX))
        .execute(pool)
        .await;
    let apart = match together {
        Ok(_) => {
            for p in batch {
                let _ = p.done.send(Ok(()));
            }
            false
        }
        Err(e) if written_nothing(&e) => {
            // a conflict: nothing was written; each command as if alone, a few at a time
            futures::stream::iter(batch)
                .map(|p| async move {
                    let outcome = append_one(pool, &p.rows).await;
                    let _ = p.done.send(outcome);
                })
                .buffer_unordered(FLUSHES_IN_FLIGHT)
                .collect::<()>()
                .await;
            true
        }
        Err(e) => {
            // maybe committed, maybe not: nobody may write these rows again on a guess
            let kind = persistence_error(e);
            for p in batch {
                let _ = p.done.send(Err(same_failure(&kind)));
            }
            false
        }
    };
    metrics
        .store
        .observe_append(commands, started.elapsed(), apart);
}

/// Whether PostgreSQL refused the batch statement itself, so it wrote nothing and one of its
/// commands may be the cause: its guard (22012: a conflict skipped a row), another data
/// exception (22), an integrity violation (23), a transaction rollback (40). Anything else
/// (no answer, a lost connection, a shutdown) may have come after the commit.
fn written_nothing(e: &sqlx::Error) -> bool {
    e.as_database_error()
        .and_then(sqlx::error::DatabaseError::code)
        .is_some_and(|code| matches!(code.get(..2), Some("22" | "23" | "40")))
}

/// `e` again, for one more of the commands it happened to.
fn same_failure(e: &PersistenceError) -> PersistenceError {
    match e {
        PersistenceError::OptimisticLockError => PersistenceError::OptimisticLockError,
        PersistenceError::ConnectionError(e) => {
            PersistenceError::ConnectionError(e.to_string().into())
        }
        PersistenceError::DeserializationError(e) => {
            PersistenceError::DeserializationError(e.to_string().into())
        }
        PersistenceError::UnknownError(e) => PersistenceError::UnknownError(e.to_string().into()),
    }
}

async fn append_one(pool: &PgPool, rows: &Rows) -> Result<(), PersistenceError> {
    rows.bound_to(sqlx::query(APPEND_ONE))
        .execute(pool)
        .await
        .map(|_| ())
        .map_err(persistence_error)
}

/// A duplicate `(aggregate_type, aggregate_id, sequence)` is another writer that got there
/// first: the optimistic-lock conflict the command retries on.
fn persistence_error(e: sqlx::Error) -> PersistenceError {
    let conflict = e
        .as_database_error()
        .is_some_and(|db| db.code().as_deref() == Some("23505"));
    if conflict {
        PersistenceError::OptimisticLockError
    } else if super::sqlx_unavailable(&e) {
        PersistenceError::ConnectionError(Box::new(e))
    } else {
        PersistenceError::UnknownError(Box::new(e))
    }
}
