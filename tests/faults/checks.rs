//! What the log says about the orders the clients saw: lost commands, duplicated effects,
//! sagas still unfinished.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use sqlx::PgPool;
use uuid::Uuid;

use crate::load::OrderSeen;
use crate::poll::within;

/// Event types that one order or saga may hold at most once: a second one is an effect applied
/// twice (a command or a participant's reply taken twice).
const ONCE: [&str; 13] = [
    "OrderCreated",
    "ItemAdded",
    "OrderPlaced",
    "OrderConfirmed",
    "OrderRejected",
    "SagaStarted",
    "StockReserved",
    "StockRejected",
    "PaymentAuthorized",
    "PaymentDeclined",
    "OrderConfirmationDue",
    "SagaCompleted",
    "SagaFailed",
];

/// Commands answered 2xx whose effect is not in the log.
#[derive(Debug, Default)]
pub struct Judgement {
    pub lost: Vec<String>,
    pub duplicated: Vec<String>,
}

/// Event types per order id (orders and sagas share the id).
async fn events_by_order(pool: &PgPool) -> HashMap<Uuid, Vec<(String, String)>> {
    let rows: Vec<(String, String, String)> =
        sqlx::query_as("select aggregate_type, aggregate_id, event_type from events")
            .fetch_all(pool)
            .await
            .expect("reading the log");
    let mut out: HashMap<Uuid, Vec<(String, String)>> = HashMap::new();
    for (aggregate, id, event) in rows {
        if let Ok(id) = id.parse() {
            out.entry(id).or_default().push((aggregate, event));
        }
    }
    out
}

pub async fn judge(pool: &PgPool, seen: &[OrderSeen]) -> Judgement {
    let log = events_by_order(pool).await;
    let mut j = Judgement::default();
    let count = |id: &Uuid, event: &str| {
        log.get(id)
            .map_or(0, |es| es.iter().filter(|(_, e)| e == event).count())
    };
    for o in seen {
        if count(&o.id, "OrderCreated") == 0 {
            j.lost
                .push(format!("{} created (2xx) but not in the log", o.id));
        }
        if o.added && count(&o.id, "ItemAdded") == 0 {
            j.lost
                .push(format!("{}: item added (2xx) but not in the log", o.id));
        }
        if o.placed && count(&o.id, "OrderPlaced") == 0 {
            j.lost
                .push(format!("{}: placed (2xx) but not in the log", o.id));
        }
    }
    for (id, events) in &log {
        let mut per: HashMap<&(String, String), usize> = HashMap::new();
        for e in events {
            *per.entry(e).or_default() += 1;
        }
        for ((aggregate, event), n) in per {
            if n > 1 && ONCE.contains(&event.as_str()) {
                j.duplicated.push(format!("{aggregate} {id}: {event} ×{n}"));
            }
        }
    }
    j
}

/// The log's last position now: orders placed up to it are the ones [`sagas_finish`] waits for.
pub async fn log_end(pool: &PgPool) -> i64 {
    sqlx::query_scalar("select coalesce(max(position), 0) from events")
        .fetch_one(pool)
        .await
        .expect("log end")
}

/// Placed orders (in the log up to `upto`) neither confirmed nor rejected yet.
pub async fn unfinished_sagas(pool: &PgPool, upto: i64) -> i64 {
    sqlx::query_scalar(
        "select count(*) from events p
          where p.aggregate_type = 'Order' and p.event_type = 'OrderPlaced' and p.position <= $1
            and not exists (select 1 from events v
                             where v.aggregate_type = 'Order'
                               and v.aggregate_id = p.aggregate_id
                               and v.event_type in ('OrderConfirmed', 'OrderRejected'))",
    )
    .bind(upto)
    .fetch_one(pool)
    .await
    .unwrap_or(i64::MAX)
}

/// Waits until every order placed up to `upto` (a position; the load may go on) has its
/// saga's verdict; how long that took.
pub async fn sagas_finish(pool: &PgPool, upto: i64, patience: Duration) -> Duration {
    let began = Instant::now();
    let left = std::cell::Cell::new(0);
    let done = within(patience, || async {
        left.set(unfinished_sagas(pool, upto).await);
        (left.get() == 0).then_some(())
    })
    .await;
    assert!(
        done.is_some(),
        "{} placed order(s) without a verdict after {patience:?}",
        left.get()
    );
    began.elapsed()
}

/// Orders of the clients' store in the log that no client saw answered: with one order per key,
/// each is a create that was retried and made a second order, or a create never answered.
pub async fn orders_in_log(pool: &PgPool) -> i64 {
    sqlx::query_scalar(
        "select count(*) from events where aggregate_type = 'Order' and event_type = 'OrderCreated'",
    )
    .fetch_one(pool)
    .await
    .expect("count")
}
