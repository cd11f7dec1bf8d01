//! The notifier: the log reader that queues an email for each notifiable order event
//! ([`NOTIFIABLE_EVENTS`]) of an order with a customer email address, rendered at once, in
//! the batch's transaction, which also moves its checkpoint: each event is queued exactly
//! once, whatever crashes. An order without an address queues nothing.

use std::collections::HashMap;
use std::sync::Arc;

use cqrs_es::Aggregate as _;
use order_domain::Order;
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

use super::message::{render, Notice, NOTIFIABLE_EVENTS};
use super::outbox::{self, Queued};
use crate::log::{Decoded, LogEvent, LogHandler, LogReader, ReaderConfig};
use crate::telemetry::Metrics;

/// Name of the notifier's reader (checkpoint, lock, metric label).
pub const READER: &str = "notifier";

/// The display name of a store that is gone from the catalog (never deleted today).
const UNKNOWN_STORE: &str = "Your store";

#[derive(Debug, Clone, Copy)]
pub struct Notifier;

impl Notifier {
    /// Its reader: only the notifiable event types, a transaction per batch.
    pub fn reader(pool: PgPool, metrics: Arc<Metrics>) -> LogReader {
        LogReader::new(
            pool,
            ReaderConfig::new(READER).wanting(&NOTIFIABLE_EVENTS),
            metrics,
        )
    }

    /// Where a notifier that never ran starts: at the end of the log, not its beginning, so
    /// turning notifications on does not mail the customers of every past order.
    pub async fn start_at_end_if_new(pool: &PgPool) -> anyhow::Result<()> {
        let mut conn = pool.acquire().await?;
        let exists: bool =
            sqlx::query_scalar("select exists (select from reader_checkpoints where name = $1)")
                .bind(READER)
                .fetch_one(&mut *conn)
                .await?;
        if !exists {
            let end = crate::log::end_of_log(&mut conn).await?;
            // a replica starting at the same moment may have written it: the first one stays
            crate::log::save_checkpoint(&mut conn, READER, end).await?;
            tracing::info!(at = ?end, "notifier starts at the end of the log");
        }
        Ok(())
    }
}

/// What the notifier needs of an order: its address and its store.
struct Recipient {
    email: Option<String>,
    store_id: Option<Uuid>,
}

/// The address and store of each of `orders`, from their `OrderCreated` events.
async fn recipients(
    conn: &mut PgConnection,
    orders: &[String],
) -> anyhow::Result<HashMap<String, Recipient>> {
    let rows: Vec<(String, Option<String>, Option<String>)> = sqlx::query_as(
        "select aggregate_id, payload->>'customer_email', payload->>'store_id'
           from events
          where aggregate_type = $1 and aggregate_id = any($2) and sequence = 1",
    )
    .bind(Order::TYPE)
    .bind(orders)
    .fetch_all(conn)
    .await?;
    Ok(rows
        .into_iter()
        .map(|(id, email, store)| {
            let store_id = store.and_then(|s| s.parse().ok());
            (id, Recipient { email, store_id })
        })
        .collect())
}

/// The names of `stores`.
async fn store_names(
    conn: &mut PgConnection,
    stores: &[Uuid],
) -> anyhow::Result<HashMap<Uuid, String>> {
    let rows: Vec<(Uuid, String)> =
        sqlx::query_as("select id, name from stores where id = any($1)")
            .bind(stores)
            .fetch_all(conn)
            .await?;
    Ok(rows.into_iter().collect())
}

impl LogHandler for Notifier {
    async fn handle(&mut self, tx: &mut PgConnection, batch: &[LogEvent]) -> anyhow::Result<()> {
        let mut notices = Vec::new();
        for e in batch {
            if let Decoded::Order { order_id, event } = e.decode()? {
                if let Some(notice) = Notice::of(&event.change) {
                    notices.push((e, order_id, notice));
                }
            }
        }
        if notices.is_empty() {
            return Ok(());
        }
        let orders: Vec<String> = notices
            .iter()
            .map(|(e, ..)| e.aggregate_id.clone())
            .collect();
        let recipients = recipients(tx, &orders).await?;
        let stores: Vec<Uuid> = recipients.values().filter_map(|r| r.store_id).collect();
        let names = store_names(tx, &stores).await?;
        let mut rows = Vec::new();
        for (e, order_id, notice) in notices {
            let Some(recipient) = recipients.get(&e.aggregate_id) else {
                anyhow::bail!("order {order_id} has no OrderCreated event");
            };
            let Some(email) = recipient.email.clone() else {
                continue;
            };
            let store = recipient
                .store_id
                .and_then(|s| names.get(&s))
                .map_or(UNKNOWN_STORE, String::as_str);
            let rendered = render(order_id, store, &notice);
            rows.push(Queued {
                order_id: order_id.as_uuid(),
                event_id: e.event_id,
                kind: notice.status(),
                recipient: email,
                sender_name: store.to_owned(),
                subject: rendered.subject,
                body_text: rendered.text,
                body_html: rendered.html,
            });
        }
        outbox::queue(tx, &rows).await?;
        Ok(())
    }
}
