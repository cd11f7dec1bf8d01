//! What a feed says about each order event beyond the event itself: the order's store (for
//! store feeds) and the order's status before and after it, so no client keeps its own table
//! from event types to statuses (DESIGN §9).
//!
//! Both are learnt from the events as they pass (an order's first event names its store and
//! status; each later one moves the status or keeps it), and looked up once, in the event
//! store, for an order first met in the middle of its history.

use std::collections::HashMap;

use anyhow::Context as _;
use order_domain::{status_reached_by, OrderStatus};
use order_projections::queries as read;
use sqlx::PgConnection;
use uuid::Uuid;

use super::message::LiveEvent;
use crate::log::{Aggregate, LogEvent};

/// Orders remembered (then all are forgotten, and looked up again when met).
const ENTRIES: usize = 100_000;

/// What is known of each order met so far.
#[derive(Debug, Default)]
pub(super) struct Known {
    stores: HashMap<Uuid, Uuid>,
    /// The order's status after its event of this version.
    statuses: HashMap<Uuid, (i64, OrderStatus)>,
}

impl Known {
    /// The order events of `batch`, each with its order's store and statuses.
    pub(super) async fn annotate(
        &mut self,
        conn: &mut PgConnection,
        batch: &[LogEvent],
    ) -> anyhow::Result<Vec<LiveEvent>> {
        if self.stores.len() > ENTRIES || self.statuses.len() > ENTRIES {
            self.stores.clear();
            self.statuses.clear();
        }
        self.look_up_strangers(conn, batch).await?;
        Ok(batch
            .iter()
            .filter_map(|e| {
                let order = e.aggregate.order_id()?.as_uuid();
                let store = self.stores.get(&order).copied();
                let previous = self
                    .statuses
                    .get(&order)
                    .filter(|(version, _)| *version == e.sequence - 1)
                    .map(|(_, status)| *status);
                let status = status_reached_by(&e.event_type).or(previous);
                if let Some(status) = status {
                    self.statuses.insert(order, (e.sequence, status));
                }
                let mut live = LiveEvent::of(e, store)?;
                live.status = status;
                live.previous_status = previous;
                Some(live)
            })
            .collect())
    }

    /// Learns the store and the status before the batch of every order of `batch` this does
    /// not know from its own events: one query for the stores, one for the statuses.
    async fn look_up_strangers(
        &mut self,
        conn: &mut PgConnection,
        batch: &[LogEvent],
    ) -> anyhow::Result<()> {
        let mut unknown_store = Vec::new();
        let mut unknown_status: HashMap<Uuid, (String, i64)> = HashMap::new();
        let mut seen = std::collections::HashSet::new();
        for e in batch {
            let Aggregate::Order(order) = e.aggregate else {
                continue;
            };
            let order = order.as_uuid();
            if e.sequence == 1 {
                if let Some(store) = e
                    .payload
                    .get("store_id")
                    .and_then(serde_json::Value::as_str)
                    .and_then(|s| s.parse().ok())
                {
                    self.stores.insert(order, store);
                }
            }
            if !seen.insert(order) {
                continue;
            }
            // the first event of the order in this batch: is what came before known?
            if !self.stores.contains_key(&order) && e.sequence > 1 {
                unknown_store.push(e.aggregate_id.clone());
            }
            let follows = self
                .statuses
                .get(&order)
                .is_some_and(|(version, _)| *version == e.sequence - 1);
            if e.sequence > 1 && !follows {
                unknown_status.insert(order, (e.aggregate_id.clone(), e.sequence));
            }
        }
        if !unknown_store.is_empty() {
            for (order, store) in read::stores_of_orders(conn, &unknown_store)
                .await
                .context("looking up the stores of orders")?
            {
                self.stores.insert(order, store);
            }
        }
        if !unknown_status.is_empty() {
            let ids: Vec<String> = unknown_status.values().map(|(id, _)| id.clone()).collect();
            let history = read::order_event_types(conn, &ids)
                .await
                .context("looking up the statuses of orders")?;
            // oldest first per order: fold the statuses up to just before the batch
            for (order, version, event_type) in history {
                let Some((_, first)) = unknown_status.get(&order) else {
                    continue;
                };
                if version >= *first {
                    continue;
                }
                let before = self
                    .statuses
                    .get(&order)
                    .filter(|(v, _)| *v == version - 1)
                    .map(|(_, s)| *s);
                if let Some(status) = status_reached_by(&event_type).or(before) {
                    self.statuses.insert(order, (version, status));
                }
            }
        }
        Ok(())
    }
}
