//! A batch of log events applied to the read models in one schema, inside the caller's
//! transaction: the live projector's batches and the rebuild's replay.

use order_domain::OrderEvent;
use order_projections::{Record, Recorded, SagaRecorded};
use order_sagas::{SagaChange, SagaEvent};
use sqlx::PgConnection;
use uuid::Uuid;

use crate::log::{self, LogEvent};

/// Name of the log reader that keeps the read models (checkpoint row, lock, metric label).
pub const PROJECTOR: &str = "projector";

/// Applies a batch of log events (in log order) to the read models in `schema`, inside the
/// caller's transaction, through the one batch apply of `order-projections`.
pub async fn apply_batch(
    tx: &mut PgConnection,
    schema: &'static str,
    batch: &[LogEvent],
) -> anyhow::Result<()> {
    // The projection SQL names tables without a schema: point it at the right one. And the
    // batch statements touch at most a few thousand rows, through indexes, but a large
    // batch's estimates cross `jit_above_cost`: on the seeded 100k-order read models, JIT
    // compiling the summaries update took about 150 ms, half of running it. Both for this
    // transaction only, in one round trip.
    sqlx::query("select set_config('search_path', $1, true), set_config('jit', 'off', true)")
        .bind(format!("{schema}, public"))
        .execute(&mut *tx)
        .await?;
    // Decode up to the first event that does not decode; the events before it are applied
    // first, so that a fault among them (a gap) is the one reported, as if applied in turn.
    let mut decoded = Vec::with_capacity(batch.len());
    let mut undecodable = None;
    for e in batch {
        match Decoded::from_log(e) {
            Ok(Some(d)) => decoded.push(d),
            Ok(None) => {}
            Err(err) => {
                undecodable = Some(err);
                break;
            }
        }
    }
    let records: Vec<Record<'_>> = decoded.iter().map(Decoded::record).collect();
    order_projections::apply_batch(tx, &records).await?;
    match undecodable {
        Some(err) => Err(err),
        None => Ok(()),
    }
}

/// A log event of a read model, decoded (what a [`Record`] borrows from).
enum Decoded<'a> {
    Order {
        order_id: Uuid,
        log: &'a LogEvent,
        event: OrderEvent,
    },
    Saga {
        order_id: Uuid,
        log: &'a LogEvent,
        event: SagaEvent,
    },
}

impl<'a> Decoded<'a> {
    /// The decoded event, or `None` for an aggregate no read model follows.
    fn from_log(e: &'a LogEvent) -> anyhow::Result<Option<Self>> {
        Ok(match e.decode()? {
            log::Decoded::Order { order_id, event } => Some(Self::Order {
                order_id: order_id.as_uuid(),
                log: e,
                event,
            }),
            log::Decoded::Saga { order_id, event } => Some(Self::Saga {
                order_id: order_id.as_uuid(),
                log: e,
                event,
            }),
            log::Decoded::Other => None,
        })
    }

    fn record(&self) -> Record<'_> {
        match self {
            Self::Order {
                order_id,
                log,
                event,
            } => Record::Order(Recorded {
                order_id: *order_id,
                sequence: log.sequence,
                event,
                recorded_at: log.recorded_at,
                principal: log
                    .metadata
                    .get("principal")
                    .and_then(serde_json::Value::as_str),
            }),
            Self::Saga {
                order_id,
                log,
                event,
            } => Record::Saga(SagaRecorded {
                order_id: *order_id,
                sequence: log.sequence,
                event_type: &log.event_type,
                status: event.status.as_str(),
                deadline_at: event.next_deadline_at,
                attention: match &event.change {
                    SagaChange::SagaNeedsAttention { reason, .. } => Some(reason.as_str()),
                    _ => None,
                },
                recorded_at: log.recorded_at,
            }),
        }
    }
}
