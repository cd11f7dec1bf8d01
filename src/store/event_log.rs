//! The event store's repository: postgres-es for reading, one statement for appending.
//!
//! postgres-es appends a command's events in its own transaction, one `INSERT` per event:
//! `BEGIN`, N inserts, `COMMIT`, so N + 2 round trips for every command. [`EventLog`] appends
//! them all with a single `INSERT ... SELECT FROM unnest(...)`, which PostgreSQL runs atomically
//! in its own implicit transaction: one round trip, whatever N. The primary key
//! `(aggregate_type, aggregate_id, sequence)` still turns a concurrent writer of the same
//! sequence into an optimistic-lock conflict. Reads are postgres-es' own. After each append the
//! log readers are woken through the [`AppendSignal`].

use cqrs_es::persist::{
    PersistedEventRepository, PersistenceError, ReplayStream, SerializedEvent, SerializedSnapshot,
};
use cqrs_es::Aggregate;
use postgres_es::PostgresEventRepository;
use serde_json::Value;
use sqlx::PgPool;

use crate::log::AppendSignal;

/// The event store's repository (see the module docs).
pub struct EventLog {
    pool: PgPool,
    reads: PostgresEventRepository,
    appended: AppendSignal,
}

impl EventLog {
    pub fn new(pool: PgPool, appended: AppendSignal) -> Self {
        Self {
            reads: PostgresEventRepository::new(pool.clone()),
            pool,
            appended,
        }
    }
}

const APPEND: &str = "insert into events
    (aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata)
    select * from unnest($1::text[], $2::text[], $3::bigint[], $4::text[], $5::text[],
                         $6::jsonb[], $7::jsonb[])";

impl PersistedEventRepository for EventLog {
    async fn get_events<A: Aggregate>(
        &self,
        aggregate_id: &str,
    ) -> Result<Vec<SerializedEvent>, PersistenceError> {
        self.reads.get_events::<A>(aggregate_id).await
    }

    async fn get_last_events<A: Aggregate>(
        &self,
        aggregate_id: &str,
        last_sequence: usize,
    ) -> Result<Vec<SerializedEvent>, PersistenceError> {
        self.reads
            .get_last_events::<A>(aggregate_id, last_sequence)
            .await
    }

    async fn get_snapshot<A: Aggregate>(
        &self,
        aggregate_id: &str,
    ) -> Result<Option<SerializedSnapshot>, PersistenceError> {
        self.reads.get_snapshot::<A>(aggregate_id).await
    }

    async fn persist<A: Aggregate>(
        &self,
        events: &[SerializedEvent],
        snapshot_update: Option<(String, Value, usize)>,
    ) -> Result<(), PersistenceError> {
        if snapshot_update.is_some() {
            // Pure event-store mode only: the snapshot modes of cqrs-es 0.5 double-apply events.
            return Err(PersistenceError::UnknownError(
                "snapshots are not supported by this event store".into(),
            ));
        }
        if events.is_empty() {
            return Ok(());
        }
        let n = events.len();
        let (
            mut types,
            mut ids,
            mut sequences,
            mut names,
            mut versions,
            mut payloads,
            mut metadata,
        ) = (
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
        );
        for e in events {
            types.push(A::TYPE);
            ids.push(e.aggregate_id.as_str());
            sequences.push(
                i64::try_from(e.sequence)
                    .map_err(|e| PersistenceError::UnknownError(Box::new(e)))?,
            );
            names.push(e.event_type.as_str());
            versions.push(e.event_version.as_str());
            payloads.push(&e.payload);
            metadata.push(&e.metadata);
        }
        sqlx::query(APPEND)
            .bind(&types)
            .bind(&ids)
            .bind(&sequences)
            .bind(&names)
            .bind(&versions)
            .bind(&payloads)
            .bind(&metadata)
            .execute(&self.pool)
            .await
            .map_err(persistence_error)?;
        self.appended.appended();
        Ok(())
    }

    async fn stream_events<A: Aggregate>(
        &self,
        aggregate_id: &str,
    ) -> Result<ReplayStream, PersistenceError> {
        self.reads.stream_events::<A>(aggregate_id).await
    }

    async fn stream_all_events<A: Aggregate>(&self) -> Result<ReplayStream, PersistenceError> {
        self.reads.stream_all_events::<A>().await
    }
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
