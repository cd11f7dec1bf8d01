//! The deadline worker: sends `Timeout` to every saga whose step deadline has passed (from the
//! `saga_progress` read model, whose partial index holds only sagas waiting for something).
//! The saga decides what a timeout means (re-send with the same message id, compensate, park);
//! a timeout that arrives early or twice changes nothing, so replicas may overlap.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use chrono::Utc;
use order_domain::OrderId;
use order_sagas::SagaCommand;
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::store::sagas::{SagaExecuteError, SagaRepository};

/// How often due deadlines are looked for.
pub const TICK: Duration = Duration::from_millis(250);

#[derive(Debug, Clone)]
pub struct DeadlineWorker {
    pub pool: PgPool,
    pub sagas: Arc<SagaRepository>,
}

impl DeadlineWorker {
    /// Looks for due deadlines every [`TICK`] until `shutdown` is cancelled, or until a look
    /// fails (the database is unreachable): its supervisor starts it again. A saga that could
    /// not be timed out is logged and looked at again at the next tick.
    pub async fn run(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        loop {
            self.tick()
                .await
                .context("looking for due saga deadlines")?;
            tokio::select! {
                () = tokio::time::sleep(TICK) => {}
                () = shutdown.cancelled() => return Ok(()),
            }
        }
    }

    async fn tick(&self) -> anyhow::Result<()> {
        let due: Vec<Uuid> = sqlx::query_scalar(
            "select order_id from read.saga_progress
              where deadline_at is not null and deadline_at <= now()
              order by deadline_at limit 200",
        )
        .fetch_all(&self.pool)
        .await?;
        for order in due {
            let order = OrderId::from_uuid(order);
            let command = SagaCommand::Timeout { now: Utc::now() };
            match self
                .sagas
                .execute(order, &command, std::collections::HashMap::new())
                .await
            {
                Ok(events) if !events.is_empty() => {
                    tracing::info!(%order, events = events.len(), "saga step timed out");
                }
                Ok(_) | Err(SagaExecuteError::Refused(_)) => {}
                Err(e) => tracing::warn!(%order, error = %e, "timing out a saga failed"),
            }
        }
        Ok(())
    }
}
