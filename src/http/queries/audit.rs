//! An order's audit log as the API answers it: the events exactly as stored, a page at a time.

use chrono::{DateTime, Utc};
use order_projections::queries as read;
use poem_openapi::Object;
use uuid::Uuid;

use crate::http::cursor::{encode_event_cursor, page};

/// One event of an order's audit log, as stored.
#[derive(Debug, Clone, Object)]
#[oai(example)]
pub struct AuditEventView {
    /// The order's version after this event (1 for `OrderCreated`).
    pub version: i64,
    /// The event's identity outside the store (NATS `Nats-Msg-Id`, CloudEvents `ce-id`).
    pub event_id: Uuid,
    /// What happened, e.g. `OrderCreated`, `ItemAdded`, `OrderPlaced`, `OrderShipped`.
    pub event_type: String,
    /// The version of the event's schema, e.g. `1`.
    pub event_version: String,
    /// The event as recorded (`type` names the change).
    pub payload: serde_json::Value,
    /// Who caused it, request and trace ids, idempotency key.
    pub metadata: serde_json::Value,
    /// When it was recorded (RFC 3339, UTC).
    pub recorded_at: DateTime<Utc>,
}

/// A page of an order's audit log.
#[derive(Debug, Clone, Object)]
pub struct AuditEventPage {
    /// The events of this page, in version order.
    pub items: Vec<AuditEventView>,
    /// The cursor of the next page, to pass as `cursor`; absent on the last page.
    #[oai(skip_serializing_if_is_none)]
    pub next: Option<String>,
}

impl AuditEventPage {
    /// The page of up to `limit` of `events` (read with one more, to know whether more follow).
    pub fn of(events: Vec<read::AuditEvent>, limit: u32) -> Self {
        let (events, next) = page(events, i64::from(limit), |e| encode_event_cursor(e.version));
        Self {
            items: events
                .into_iter()
                .map(|e| AuditEventView {
                    version: e.version,
                    event_id: e.event_id,
                    event_type: e.event_type,
                    event_version: e.event_version,
                    payload: e.payload,
                    metadata: e.metadata,
                    recorded_at: e.recorded_at,
                })
                .collect(),
            next,
        }
    }
}
