//! The log folded in memory, one order at a time in log order, with the domain's and the saga's
//! own `apply`; I5 (versions without gaps) on the way, and the events the relay publishes.

use std::collections::HashMap;

use anyhow::Context as _;
use cqrs_es::Aggregate as _;
use order_domain::Order;
use order_sagas::OrderSaga;
use sqlx::PgPool;
use uuid::Uuid;

use super::relayed::Relayed;
use super::report::Report;
use crate::log::{read_tail, Cursor, Decoded};
use crate::workers::relay;

/// Reads events per round trip.
const BATCH: i64 = 5_000;

/// Every order of the log, by id.
pub type Orders = HashMap<Uuid, Order>;
/// Every saga of the log, by its order's id.
pub type Sagas = HashMap<Uuid, OrderSaga>;

/// The log, folded.
pub struct Folded {
    pub orders: Orders,
    pub sagas: Sagas,
    /// Every event the relay publishes, in log order (collected when `relay_at` is given).
    pub relayed: Vec<Relayed>,
}

/// Folds every order and saga of the log; I5 on the way. With the relay's checkpoint, collects
/// the relayed events too.
pub async fn fold_log(
    pool: &PgPool,
    relay_at: Option<Cursor>,
    report: &mut Report,
) -> anyhow::Result<Folded> {
    let mut orders = Orders::new();
    let mut sagas = Sagas::new();
    let mut relayed = Vec::new();
    let mut versions: HashMap<(String, String), i64> = HashMap::new();
    let mut at = Cursor::default();
    let mut conn = pool.acquire().await?;
    loop {
        let tail = read_tail(&mut conn, at, BATCH, None)
            .await
            .context("reading the log")?;
        let Some(last) = tail.last else { break };
        for e in &tail.events {
            report.events += 1;
            let key = (e.aggregate_type.clone(), e.aggregate_id.clone());
            let expected = versions.get(&key).map_or(1, |v| v + 1);
            if e.sequence != expected {
                report.broken(
                    "I5",
                    &format!("{} {}", e.aggregate_type, e.aggregate_id),
                    format!("version {} follows {}", e.sequence, expected - 1),
                );
            }
            versions.insert(key, e.sequence);
            let decoded = e.decode()?;
            if let (Some(acked), Some(stream)) = (relay_at, relay::destination(&decoded)) {
                relayed.push(Relayed {
                    event_id: e.event_id,
                    stream,
                    order_id: e.aggregate.order_id().map_or(Uuid::nil(), |o| o.as_uuid()),
                    what: format!("{} v{}", e.event_type, e.sequence),
                    acked: Cursor {
                        tx_id: e.tx_id,
                        position: e.position,
                    } <= acked,
                });
            }
            match decoded {
                Decoded::Order { order_id, event } => {
                    orders.entry(order_id.as_uuid()).or_default().apply(event);
                }
                Decoded::Saga { order_id, event } => {
                    sagas.entry(order_id.as_uuid()).or_default().apply(event);
                }
                Decoded::Other => {}
            }
        }
        at = last;
    }
    Ok(Folded {
        orders,
        sagas,
        relayed,
    })
}
