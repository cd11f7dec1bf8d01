//! What a batch is made of and what applying it answers: the recorded order and saga events
//! ([`Recorded`], [`SagaRecorded`], in log order as [`Record`]s), the outcome of each
//! ([`Applied`]) and why a batch is refused ([`ProjectionError`]). Shared by the database half
//! ([`crate::apply`]) and the in-memory half ([`crate::fold`]) of applying, so that neither
//! needs the other's types.

use chrono::{DateTime, Utc};
use order_domain::OrderEvent;
use uuid::Uuid;

/// One order event as the log recorded it.
#[derive(Debug, Clone, Copy)]
pub struct Recorded<'a> {
    pub order_id: Uuid,
    pub sequence: i64,
    pub event: &'a OrderEvent,
    pub recorded_at: DateTime<Utc>,
    /// Who caused it (`sub` of the token), from the event metadata.
    pub principal: Option<&'a str>,
}

/// One saga event as the log recorded it, reduced to what the saga read model keeps (the saga
/// events carry their resulting status and next deadline).
#[derive(Debug, Clone, Copy)]
pub struct SagaRecorded<'a> {
    pub order_id: Uuid,
    pub sequence: i64,
    pub event_type: &'a str,
    /// Snake-case saga status after the event.
    pub status: &'a str,
    pub deadline_at: Option<DateTime<Utc>>,
    /// Set by `SagaNeedsAttention`.
    pub attention: Option<&'a str>,
    pub recorded_at: DateTime<Utc>,
}

/// One event of a batch, in log order.
#[derive(Debug, Clone, Copy)]
pub enum Record<'a> {
    Order(Recorded<'a>),
    Saga(SagaRecorded<'a>),
}

/// What applying did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applied {
    Applied,
    /// Already applied earlier: nothing changed.
    Duplicate,
}

#[derive(Debug, thiserror::Error)]
pub enum ProjectionError {
    /// The read model is at `version`, the event is `sequence`: an earlier event is missing.
    #[error(
        "order {order_id}: event {sequence} arrived but the read model is at version {version}"
    )]
    Gap {
        order_id: Uuid,
        sequence: i64,
        version: i64,
    },
    /// The event contradicts the read model in a way a valid log never does (a line added
    /// twice, two lines of one SKU in a sale); the tables' keys refuse it.
    #[error("order {order_id}: event {sequence} {what}")]
    Inconsistent {
        order_id: Uuid,
        sequence: i64,
        what: &'static str,
    },
    #[error(transparent)]
    Database(#[from] sqlx::Error),
}
