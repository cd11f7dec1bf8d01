//! What a live feed carries: the order events the follower broadcasts ([`LiveEvent`]), the
//! messages a client receives ([`LiveMessage`], an id to resume with and JSON), how a store
//! feed's ids name log positions, and where an order feed starts ([`OrderStart`]).
//!
//! An order feed's message id is the order's version after the event; a store feed's is the
//! event's log position. Both only grow along a feed, so the last one a client got says
//! exactly what it has (DESIGN §9).

use chrono::{DateTime, Utc};
use order_domain::OrderStatus;
use serde::Serialize;
use uuid::Uuid;

use crate::log::{Aggregate, Cursor, LogEvent};

/// One order event as the feeds carry it.
#[derive(Debug, Clone)]
pub struct LiveEvent {
    /// Its position in the log (a store feed's message id).
    pub at: Cursor,
    pub order_id: Uuid,
    /// The order's store (`None` when the event store does not know the order's creation).
    pub store_id: Option<Uuid>,
    /// The order's version after it (an order feed's message id).
    pub version: i64,
    pub event_id: Uuid,
    pub event_type: String,
    pub payload: serde_json::Value,
    pub recorded_at: DateTime<Utc>,
    /// The order's status after the event (`None` only when its history is unknown).
    pub status: Option<OrderStatus>,
    /// The order's status before the event (`None` for its first).
    pub previous_status: Option<OrderStatus>,
}

/// The JSON of an order event on a feed.
#[derive(Debug, Clone, Serialize)]
pub struct LiveEventView<'a> {
    pub order_id: Uuid,
    /// The order's version after this event.
    pub version: i64,
    pub event_id: Uuid,
    pub event_type: &'a str,
    /// The event as recorded (`type` names the change).
    pub payload: &'a serde_json::Value,
    pub recorded_at: DateTime<Utc>,
    /// The order's status after this event.
    pub status: Option<OrderStatus>,
    /// The order's status before this event (absent for its first).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub previous_status: Option<OrderStatus>,
}

impl LiveEvent {
    fn view(&self) -> LiveEventView<'_> {
        LiveEventView {
            order_id: self.order_id,
            version: self.version,
            event_id: self.event_id,
            event_type: &self.event_type,
            payload: &self.payload,
            recorded_at: self.recorded_at,
            status: self.status,
            previous_status: self.previous_status,
        }
    }

    /// The order event `e` of the log, if it is one.
    pub(super) fn of(e: &LogEvent, store_id: Option<Uuid>) -> Option<Self> {
        let Aggregate::Order(order_id) = e.aggregate else {
            return None;
        };
        Some(Self {
            at: e.cursor(),
            order_id: order_id.as_uuid(),
            store_id,
            version: e.sequence,
            event_id: e.event_id,
            event_type: e.event_type.clone(),
            payload: e.payload.clone(),
            recorded_at: e.recorded_at,
            status: None,
            previous_status: None,
        })
    }
}

/// One message of a feed: `kind` is `snapshot` (an order as it stands, first on an order feed
/// that does not resume) or `event`; `id` is what the client resumes with.
#[derive(Debug, Clone, PartialEq)]
pub struct LiveMessage {
    pub kind: &'static str,
    pub id: String,
    pub data: serde_json::Value,
}

impl LiveMessage {
    /// The message of event `e`, whose id is `id`.
    pub(super) fn event(id: String, e: &LiveEvent) -> anyhow::Result<Self> {
        Ok(Self {
            kind: "event",
            id,
            data: serde_json::to_value(e.view())?,
        })
    }
}

/// A store feed's message id: the event's log position, `<tx_id>.<position>`.
pub fn store_feed_id(at: Cursor) -> String {
    format!("{}.{}", at.tx_id, at.position)
}

/// The position a store feed message id names; `None` when it is not one.
pub fn parse_store_feed_id(id: &str) -> Option<Cursor> {
    let (tx_id, position) = id.trim().split_once('.')?;
    Some(Cursor {
        tx_id: tx_id.parse().ok()?,
        position: position.parse().ok()?,
    })
}

/// Where an order feed starts.
#[derive(Debug, Clone)]
pub enum OrderStart {
    /// With the order as it stands (its detail as JSON) at `version`.
    Snapshot {
        version: i64,
        detail: serde_json::Value,
    },
    /// After the event of this version (what the client got last).
    After(i64),
}
