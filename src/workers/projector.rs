//! The projector: the log reader that applies the log to the read models as it grows
//! (`read_models` says how; it also rebuilds them).

use std::sync::Arc;
use std::time::Duration;

use order_projections::SCHEMA;
use sqlx::{PgConnection, PgPool};

use crate::log::{LogEvent, LogHandler, LogReader, ReaderConfig};
use crate::read_models::{apply_batch, PROJECTOR};
use crate::telemetry::Metrics;

/// Most events per live batch. A batch costs a handful of statements whatever its size, so a
/// projector that fell behind catches up in large steps; a live batch is usually small.
const LIVE_BATCH: i64 = 2_000;

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

    /// The reader that runs it, starting a batch at most every `batch_interval` while it
    /// keeps up.
    pub fn reader(pool: PgPool, metrics: Arc<Metrics>, batch_interval: Duration) -> LogReader {
        let mut config = ReaderConfig::new(PROJECTOR);
        config.batch_size = LIVE_BATCH;
        config.batch_interval = batch_interval;
        LogReader::new(pool, config, metrics)
    }
}

impl LogHandler for Projector {
    async fn handle(&mut self, tx: &mut PgConnection, batch: &[LogEvent]) -> anyhow::Result<()> {
        apply_batch(tx, self.schema, batch).await
    }
}
