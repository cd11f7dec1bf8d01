//! The event store's repository: postgres-es for reading, the group writer for appending.
//!
//! postgres-es appends a command's events in its own transaction, one `INSERT` per event:
//! `BEGIN`, N inserts, `COMMIT`, so N + 2 round trips for every command. [`EventLog`] hands
//! them to the [`Appender`], which writes the events of concurrent commands in one statement
//! and one commit, each command's all or none (`store::append`). The primary key
//! `(aggregate_type, aggregate_id, sequence)` still turns a concurrent writer of the same
//! sequence into an optimistic-lock conflict. Reads are postgres-es' own. After each append the
//! log readers are woken through the [`AppendSignal`].

use std::sync::Arc;

use cqrs_es::persist::{
    PersistedEventRepository, PersistenceError, ReplayStream, SerializedEvent, SerializedSnapshot,
};
use cqrs_es::Aggregate;
use postgres_es::PostgresEventRepository;
use serde_json::Value;
use sqlx::PgPool;

use super::append::{Appender, Rows};
use crate::log::AppendSignal;
use crate::telemetry::Metrics;

/// The event store's repository (see the module docs).
pub struct EventLog {
    reads: PostgresEventRepository,
    appender: Appender,
}

impl EventLog {
    /// Reads from `pool`; appends through a group writer of its own on the current runtime.
    pub fn new(pool: PgPool, appended: AppendSignal, metrics: Arc<Metrics>) -> Self {
        Self {
            reads: PostgresEventRepository::new(pool.clone()),
            appender: Appender::start(pool, appended, metrics),
        }
    }
}

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
        let mut rows = Rows::default();
        for e in events {
            rows.types.push(A::TYPE);
            rows.ids.push(e.aggregate_id.clone());
            rows.sequences.push(
                i64::try_from(e.sequence)
                    .map_err(|e| PersistenceError::UnknownError(Box::new(e)))?,
            );
            rows.names.push(e.event_type.clone());
            rows.versions.push(e.event_version.clone());
            rows.payloads.push(e.payload.clone());
            rows.metadata.push(e.metadata.clone());
        }
        self.appender.append(rows).await
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
