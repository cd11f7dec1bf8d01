//! Applying recorded events to the read models, a batch at a time: load the rows of every order
//! and saga the batch touches (one query each, into [`crate::rows`]), fold the events in memory
//! ([`crate::fold`]), and write the result with a handful of set-based statements (`unnest`
//! arrays, one upsert per sales row and batch). The live projector and the rebuild both apply through
//! [`apply_batch`]; [`apply`] and [`apply_saga`] are batches of one.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, NaiveDate, Utc};
use sqlx::PgConnection;
use uuid::Uuid;

use crate::fold::Fold;
use crate::record::{Applied, ProjectionError, Record, Recorded, SagaRecorded};
use crate::rows::{needs_lines, Line, OrderRow, OrderState, SagaRow};

/// Schema of the live read models.
pub const SCHEMA: &str = "read";
/// Schema a rebuild fills before it is swapped in.
pub const SHADOW_SCHEMA: &str = "read_rebuild";

/// Folds one order event into the read models (a batch of one). Must run inside a transaction.
pub async fn apply(conn: &mut PgConnection, e: Recorded<'_>) -> Result<Applied, ProjectionError> {
    Ok(apply_batch(conn, &[Record::Order(e)]).await?[0])
}

/// Folds one saga event into `saga_progress` (a batch of one); idempotent through `version`.
pub async fn apply_saga(
    conn: &mut PgConnection,
    e: SagaRecorded<'_>,
) -> Result<Applied, ProjectionError> {
    Ok(apply_batch(conn, &[Record::Saga(e)]).await?[0])
}

/// Folds a batch of events, in log order, into the read models; returns what happened to each
/// event. Must run inside a transaction (the caller's, which also sets `search_path`).
///
/// Exactly as if each event were applied in turn: an event at or below its order's (saga's)
/// stored version is a duplicate and changes nothing; the first event beyond `version + 1`
/// fails the whole batch with [`ProjectionError::Gap`], before anything is written.
pub async fn apply_batch(
    conn: &mut PgConnection,
    batch: &[Record<'_>],
) -> Result<Vec<Applied>, ProjectionError> {
    let mut fold = load(conn, batch).await?;
    let outcomes = batch
        .iter()
        .map(|r| match r {
            Record::Order(e) => fold.order(e),
            Record::Saga(e) => fold.saga(e),
        })
        .collect::<Result<Vec<_>, _>>()?;
    write(conn, &fold).await?;
    Ok(outcomes)
}

/// Loads (and locks) the rows of every order and saga the batch touches.
async fn load(conn: &mut PgConnection, batch: &[Record<'_>]) -> Result<Fold, sqlx::Error> {
    let mut order_ids = BTreeSet::new();
    let mut line_ids = BTreeSet::new();
    let mut saga_ids = BTreeSet::new();
    for r in batch {
        match r {
            Record::Order(e) => {
                order_ids.insert(e.order_id);
                if needs_lines(&e.event.change) {
                    line_ids.insert(e.order_id);
                }
            }
            Record::Saga(e) => {
                saga_ids.insert(e.order_id);
            }
        }
    }
    let mut orders = load_orders(conn, order_ids).await?;
    load_lines(conn, &mut orders, line_ids).await?;
    let sagas = load_sagas(conn, saga_ids).await?;
    Ok(Fold::new(orders, sagas))
}

/// Loads (and locks) the summary rows of these orders; orders without one are not in the map.
async fn load_orders(
    conn: &mut PgConnection,
    order_ids: BTreeSet<Uuid>,
) -> Result<BTreeMap<Uuid, OrderRow>, sqlx::Error> {
    let mut orders = BTreeMap::new();
    if !order_ids.is_empty() {
        let rows: Vec<SummaryLoaded> = sqlx::query_as(
            "select order_id, version, status, store_id, currency, total_minor, confirmed_at
               from order_summaries where order_id = any($1) order by order_id for update",
        )
        .bind(order_ids.into_iter().collect::<Vec<_>>())
        .fetch_all(&mut *conn)
        .await?;
        for r in rows {
            orders.insert(
                r.order_id,
                OrderRow {
                    version: r.version,
                    status: r.status,
                    store_id: r.store_id,
                    currency: r.currency,
                    total_minor: r.total_minor,
                    confirmed_at: r.confirmed_at,
                    lines: BTreeMap::new(),
                },
            );
        }
    }
    Ok(orders)
}

/// Loads the lines of these orders into their rows.
async fn load_lines(
    conn: &mut PgConnection,
    orders: &mut BTreeMap<Uuid, OrderRow>,
    line_ids: BTreeSet<Uuid>,
) -> Result<(), sqlx::Error> {
    // Only orders that exist have lines to load.
    let line_ids: Vec<Uuid> = line_ids
        .into_iter()
        .filter(|id| orders.contains_key(id))
        .collect();
    if !line_ids.is_empty() {
        let rows: Vec<LineLoaded> = sqlx::query_as(
            "select order_id, line_id::int8 as line_id, sku, name, quantity::int8 as quantity,
                    unit_price_minor, line_total_minor
               from order_lines where order_id = any($1)",
        )
        .bind(line_ids)
        .fetch_all(&mut *conn)
        .await?;
        for r in rows {
            if let Some(order) = orders.get_mut(&r.order_id) {
                order.lines.insert(
                    r.line_id,
                    Line {
                        sku: r.sku,
                        name: r.name,
                        quantity: r.quantity,
                        unit_price_minor: r.unit_price_minor,
                        line_total_minor: r.line_total_minor,
                    },
                );
            }
        }
    }
    Ok(())
}

/// Loads (and locks) the progress rows of these sagas; sagas without one are not in the map.
async fn load_sagas(
    conn: &mut PgConnection,
    saga_ids: BTreeSet<Uuid>,
) -> Result<BTreeMap<Uuid, SagaRow>, sqlx::Error> {
    let mut sagas = BTreeMap::new();
    if !saga_ids.is_empty() {
        let rows: Vec<SagaLoaded> = sqlx::query_as(
            "select order_id, version, status, deadline_at, last_event, attention, started_at,
                    updated_at
               from saga_progress where order_id = any($1) order by order_id for update",
        )
        .bind(saga_ids.into_iter().collect::<Vec<_>>())
        .fetch_all(&mut *conn)
        .await?;
        for s in rows {
            sagas.insert(
                s.order_id,
                SagaRow {
                    version: s.version,
                    status: s.status,
                    deadline_at: s.deadline_at,
                    last_event: s.last_event,
                    attention: s.attention,
                    started_at: s.started_at,
                    updated_at: s.updated_at,
                },
            );
        }
    }
    Ok(sagas)
}

#[derive(sqlx::FromRow)]
struct SummaryLoaded {
    order_id: Uuid,
    version: i64,
    status: String,
    store_id: Uuid,
    currency: String,
    total_minor: i64,
    confirmed_at: Option<DateTime<Utc>>,
}

#[derive(sqlx::FromRow)]
struct LineLoaded {
    order_id: Uuid,
    line_id: i64,
    sku: String,
    name: String,
    quantity: i64,
    unit_price_minor: i64,
    line_total_minor: i64,
}

#[derive(sqlx::FromRow)]
struct SagaLoaded {
    order_id: Uuid,
    version: i64,
    status: String,
    deadline_at: Option<DateTime<Utc>>,
    last_event: String,
    attention: Option<String>,
    started_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

/// Writes a folded batch: lines first (the summaries' line-derived columns and the search text
/// are computed from them), then summaries, search text, history, sales, sagas. Each statement skips itself when it has no
/// rows.
async fn write(conn: &mut PgConnection, fold: &Fold) -> Result<(), sqlx::Error> {
    write_lines(conn, fold).await?;
    insert_created(conn, fold).await?;
    update_existing(conn, fold).await?;
    write_search(conn, fold).await?;
    write_history(conn, fold).await?;
    write_sales(conn, fold).await?;
    write_sagas(conn, fold).await?;
    Ok(())
}

async fn write_lines(conn: &mut PgConnection, fold: &Fold) -> Result<(), sqlx::Error> {
    let (mut del_order, mut del_line) = (Vec::new(), Vec::new());
    let mut up = LineColumns::default();
    for o in fold.orders.values() {
        for id in &o.removed_lines {
            if !o.row.lines.contains_key(id) {
                del_order.push(o.order_id);
                del_line.push(*id);
            }
        }
        for id in &o.dirty_lines {
            if let Some(line) = o.row.lines.get(id) {
                up.push(o.order_id, *id, line);
            }
        }
    }
    if !del_order.is_empty() {
        sqlx::query(
            "delete from order_lines l
              using unnest($1::uuid[], $2::int8[]) as d(order_id, line_id)
              where l.order_id = d.order_id and l.line_id = d.line_id",
        )
        .bind(del_order)
        .bind(del_line)
        .execute(&mut *conn)
        .await?;
    }
    if !up.order_id.is_empty() {
        sqlx::query(
            "insert into order_lines (order_id, line_id, sku, name, quantity, unit_price_minor,
                                      line_total_minor)
             select * from unnest($1::uuid[], $2::int8[], $3::text[], $4::text[], $5::int8[],
                                  $6::int8[], $7::int8[])
             on conflict (order_id, line_id) do update
                set sku = excluded.sku,
                    name = excluded.name,
                    quantity = excluded.quantity,
                    unit_price_minor = excluded.unit_price_minor,
                    line_total_minor = excluded.line_total_minor",
        )
        .bind(up.order_id)
        .bind(up.line_id)
        .bind(up.sku)
        .bind(up.name)
        .bind(up.quantity)
        .bind(up.unit_price_minor)
        .bind(up.line_total_minor)
        .execute(&mut *conn)
        .await?;
    }
    Ok(())
}

#[derive(Default)]
struct LineColumns<'a> {
    order_id: Vec<Uuid>,
    line_id: Vec<i64>,
    sku: Vec<&'a str>,
    name: Vec<&'a str>,
    quantity: Vec<i64>,
    unit_price_minor: Vec<i64>,
    line_total_minor: Vec<i64>,
}

impl<'a> LineColumns<'a> {
    fn push(&mut self, order_id: Uuid, line_id: i64, line: &'a Line) {
        self.order_id.push(order_id);
        self.line_id.push(line_id);
        self.sku.push(&line.sku);
        self.name.push(&line.name);
        self.quantity.push(line.quantity);
        self.unit_price_minor.push(line.unit_price_minor);
        self.line_total_minor.push(line.line_total_minor);
    }
}

/// The summary columns an event of the batch may set, one array each.
#[derive(Default)]
struct SummaryColumns<'a> {
    order_id: Vec<Uuid>,
    version: Vec<i64>,
    status: Vec<&'a str>,
    total_minor: Vec<i64>,
    lines_changed: Vec<bool>,
    carrier: Vec<Option<&'a str>>,
    tracking_number: Vec<Option<&'a str>>,
    cancel_reason: Vec<Option<&'a str>>,
    reject_reason: Vec<Option<&'a str>>,
    updated_at: Vec<Option<DateTime<Utc>>>,
    placed_at: Vec<Option<DateTime<Utc>>>,
    confirmed_at: Vec<Option<DateTime<Utc>>>,
    rejected_at: Vec<Option<DateTime<Utc>>>,
    preparing_at: Vec<Option<DateTime<Utc>>>,
    ready_at: Vec<Option<DateTime<Utc>>>,
    picked_up_at: Vec<Option<DateTime<Utc>>>,
    shipped_at: Vec<Option<DateTime<Utc>>>,
    delivered_at: Vec<Option<DateTime<Utc>>>,
    cancelled_at: Vec<Option<DateTime<Utc>>>,
    discarded_at: Vec<Option<DateTime<Utc>>>,
}

impl<'a> SummaryColumns<'a> {
    fn push(&mut self, o: &'a OrderState) {
        self.order_id.push(o.order_id);
        self.version.push(o.row.version);
        self.status.push(&o.row.status);
        self.total_minor.push(o.row.total_minor);
        self.lines_changed.push(o.lines_changed);
        self.carrier.push(o.carrier.as_deref());
        self.tracking_number.push(o.tracking_number.as_deref());
        self.cancel_reason.push(o.cancel_reason.as_deref());
        self.reject_reason.push(o.reject_reason.as_deref());
        self.updated_at.push(o.updated_at);
        let s = &o.stamps;
        self.placed_at.push(s.placed_at);
        self.confirmed_at.push(s.confirmed_at);
        self.rejected_at.push(s.rejected_at);
        self.preparing_at.push(s.preparing_at);
        self.ready_at.push(s.ready_at);
        self.picked_up_at.push(s.picked_up_at);
        self.shipped_at.push(s.shipped_at);
        self.delivered_at.push(s.delivered_at);
        self.cancelled_at.push(s.cancelled_at);
        self.discarded_at.push(s.discarded_at);
    }

    /// Binds the columns as `$1..$20`, in field order.
    fn bind<'q>(
        self,
        q: sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments>,
    ) -> sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments>
    where
        'a: 'q,
    {
        q.bind(self.order_id)
            .bind(self.version)
            .bind(self.status)
            .bind(self.total_minor)
            .bind(self.lines_changed)
            .bind(self.carrier)
            .bind(self.tracking_number)
            .bind(self.cancel_reason)
            .bind(self.reject_reason)
            .bind(self.updated_at)
            .bind(self.placed_at)
            .bind(self.confirmed_at)
            .bind(self.rejected_at)
            .bind(self.preparing_at)
            .bind(self.ready_at)
            .bind(self.picked_up_at)
            .bind(self.shipped_at)
            .bind(self.delivered_at)
            .bind(self.cancelled_at)
            .bind(self.discarded_at)
    }
}

/// `unnest` of [`SummaryColumns::bind`], as `u`.
const SUMMARY_UNNEST: &str = "unnest($1::uuid[], $2::int8[], $3::text[], $4::int8[], $5::bool[],
        $6::text[], $7::text[], $8::text[], $9::text[], $10::timestamptz[], $11::timestamptz[],
        $12::timestamptz[], $13::timestamptz[], $14::timestamptz[], $15::timestamptz[],
        $16::timestamptz[], $17::timestamptz[], $18::timestamptz[], $19::timestamptz[],
        $20::timestamptz[])
     as u(order_id, version, status, total_minor, lines_changed, carrier, tracking_number,
          cancel_reason, reject_reason, updated_at, placed_at, confirmed_at, rejected_at,
          preparing_at, ready_at, picked_up_at, shipped_at, delivered_at, cancelled_at,
          discarded_at)";

/// The line-derived columns of `u.order_id`, computed from `order_lines` as they now stand,
/// as `l` (nulls when `u.lines_changed` is false).
const LINES_OF_U: &str = "left join lateral (
        select count(*)::int as lines, coalesce(sum(quantity), 0)::int as items
          from order_lines where order_id = u.order_id) l on u.lines_changed";

/// Inserts the orders the batch created, in their state after the batch.
async fn insert_created(conn: &mut PgConnection, fold: &Fold) -> Result<(), sqlx::Error> {
    let mut cols = SummaryColumns::default();
    let (mut customer_id, mut store_id, mut currency) = (Vec::new(), Vec::new(), Vec::new());
    let (mut email, mut address, mut created_at) = (Vec::new(), Vec::new(), Vec::new());
    for o in fold.orders.values() {
        let Some(c) = &o.created else { continue };
        cols.push(o);
        customer_id.push(c.customer_id.as_str());
        store_id.push(o.row.store_id);
        currency.push(o.row.currency.as_str());
        email.push(c.customer_email.as_deref());
        address.push(c.shipping_address.clone());
        created_at.push(c.created_at);
    }
    if cols.order_id.is_empty() {
        return Ok(());
    }
    let sql = format!(
        "insert into order_summaries (order_id, version, status, customer_id, store_id, currency,
             customer_email, shipping_address, total_minor, line_count, item_count, carrier,
             tracking_number, cancel_reason, reject_reason, created_at, updated_at, placed_at,
             confirmed_at, rejected_at, preparing_at, ready_at, picked_up_at, shipped_at,
             delivered_at, cancelled_at, discarded_at)
         select u.order_id, u.version, u.status, c.customer_id, c.store_id, c.currency,
                c.customer_email, c.shipping_address, u.total_minor, coalesce(l.lines, 0),
                coalesce(l.items, 0), u.carrier, u.tracking_number, u.cancel_reason,
                u.reject_reason, c.created_at, u.updated_at, u.placed_at, u.confirmed_at,
                u.rejected_at, u.preparing_at, u.ready_at, u.picked_up_at, u.shipped_at,
                u.delivered_at, u.cancelled_at, u.discarded_at
           from {SUMMARY_UNNEST}
           join unnest($21::uuid[], $22::text[], $23::uuid[], $24::text[], $25::text[],
                       $26::jsonb[], $27::timestamptz[])
                as c(order_id, customer_id, store_id, currency, customer_email, shipping_address,
                     created_at)
             on c.order_id = u.order_id
           {LINES_OF_U}"
    );
    let order_ids = cols.order_id.clone();
    cols.bind(sqlx::query(&sql))
        .bind(order_ids)
        .bind(customer_id)
        .bind(store_id)
        .bind(currency)
        .bind(email)
        .bind(address)
        .bind(created_at)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// Updates the orders that existed before the batch and changed in it. Columns the batch did not
/// set keep their stored value.
async fn update_existing(conn: &mut PgConnection, fold: &Fold) -> Result<(), sqlx::Error> {
    let mut cols = SummaryColumns::default();
    for o in fold.orders.values() {
        if o.changed && o.created.is_none() {
            cols.push(o);
        }
    }
    if cols.order_id.is_empty() {
        return Ok(());
    }
    let sql = format!(
        "update order_summaries s
            set version = u.version,
                status = u.status,
                total_minor = u.total_minor,
                line_count = case when u.lines_changed then l.lines else s.line_count end,
                item_count = case when u.lines_changed then l.items else s.item_count end,
                carrier = coalesce(u.carrier, s.carrier),
                tracking_number = coalesce(u.tracking_number, s.tracking_number),
                cancel_reason = coalesce(u.cancel_reason, s.cancel_reason),
                reject_reason = coalesce(u.reject_reason, s.reject_reason),
                updated_at = u.updated_at,
                placed_at = coalesce(u.placed_at, s.placed_at),
                confirmed_at = coalesce(u.confirmed_at, s.confirmed_at),
                rejected_at = coalesce(u.rejected_at, s.rejected_at),
                preparing_at = coalesce(u.preparing_at, s.preparing_at),
                ready_at = coalesce(u.ready_at, s.ready_at),
                picked_up_at = coalesce(u.picked_up_at, s.picked_up_at),
                shipped_at = coalesce(u.shipped_at, s.shipped_at),
                delivered_at = coalesce(u.delivered_at, s.delivered_at),
                cancelled_at = coalesce(u.cancelled_at, s.cancelled_at),
                discarded_at = coalesce(u.discarded_at, s.discarded_at)
           from {SUMMARY_UNNEST}
           {LINES_OF_U}
          where s.order_id = u.order_id"
    );
    cols.bind(sqlx::query(&sql)).execute(&mut *conn).await?;
    Ok(())
}

/// Writes the search text (customer email, item names and SKUs, lower-cased) of the orders the
/// batch created or whose lines it changed, from the summaries and lines as they now stand. An
/// order's other events leave its search row (and its trigram index) alone.
async fn write_search(conn: &mut PgConnection, fold: &Fold) -> Result<(), sqlx::Error> {
    let ids: Vec<Uuid> = fold
        .orders
        .values()
        .filter(|o| o.created.is_some() || (o.changed && o.lines_changed))
        .map(|o| o.order_id)
        .collect();
    if ids.is_empty() {
        return Ok(());
    }
    sqlx::query(
        "insert into order_search (order_id, search_text)
         select s.order_id, lower(coalesce(s.customer_email, '')) || coalesce(' ' || l.words, '')
           from unnest($1::uuid[]) as u(order_id)
           join order_summaries s on s.order_id = u.order_id
           cross join lateral (
                select string_agg(lower(name || ' ' || sku), ' ' order by line_id) as words
                  from order_lines where order_id = u.order_id) l
         on conflict (order_id) do update set search_text = excluded.search_text
          where order_search.search_text is distinct from excluded.search_text",
    )
    .bind(ids)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

async fn write_history(conn: &mut PgConnection, fold: &Fold) -> Result<(), sqlx::Error> {
    if fold.history.is_empty() {
        return Ok(());
    }
    let h = &fold.history;
    sqlx::query(
        "insert into order_status_history (order_id, version, status, previous_status, note,
                                           principal, recorded_at)
         select * from unnest($1::uuid[], $2::int8[], $3::text[], $4::text[], $5::text[],
                              $6::text[], $7::timestamptz[])
         on conflict (order_id, version) do nothing",
    )
    .bind(h.iter().map(|r| r.order_id).collect::<Vec<_>>())
    .bind(h.iter().map(|r| r.version).collect::<Vec<_>>())
    .bind(h.iter().map(|r| r.status).collect::<Vec<_>>())
    .bind(h.iter().map(|r| r.previous_status).collect::<Vec<_>>())
    .bind(h.iter().map(|r| r.note.as_deref()).collect::<Vec<_>>())
    .bind(h.iter().map(|r| r.principal.as_deref()).collect::<Vec<_>>())
    .bind(h.iter().map(|r| r.recorded_at).collect::<Vec<_>>())
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// One upsert per sales row the batch touched, with the batch's sum (a row the batch counted
/// and took back is still created, as the per-event upserts did).
async fn write_sales(conn: &mut PgConnection, fold: &Fold) -> Result<(), sqlx::Error> {
    if !fold.product_sales.is_empty() {
        let p = &fold.product_sales;
        sqlx::query(
            "insert into product_sales_daily as p (store_id, day, sku, currency, name, quantity,
                                                  revenue_minor, orders)
             select * from unnest($1::uuid[], $2::date[], $3::text[], $4::text[], $5::text[],
                                  $6::int8[], $7::int8[], $8::int8[])
             on conflict (store_id, day, sku, currency) do update
                set quantity = p.quantity + excluded.quantity,
                    revenue_minor = p.revenue_minor + excluded.revenue_minor,
                    orders = p.orders + excluded.orders,
                    name = excluded.name",
        )
        .bind(p.keys().map(|k| k.0).collect::<Vec<_>>())
        .bind(p.keys().map(|k| k.1).collect::<Vec<NaiveDate>>())
        .bind(p.keys().map(|k| k.2.as_str()).collect::<Vec<_>>())
        .bind(p.keys().map(|k| k.3.as_str()).collect::<Vec<_>>())
        .bind(p.values().map(|v| v.name.as_str()).collect::<Vec<_>>())
        .bind(p.values().map(|v| v.quantity).collect::<Vec<_>>())
        .bind(p.values().map(|v| v.revenue_minor).collect::<Vec<_>>())
        .bind(p.values().map(|v| v.orders).collect::<Vec<_>>())
        .execute(&mut *conn)
        .await?;
    }
    if !fold.store_sales.is_empty() {
        let s = &fold.store_sales;
        sqlx::query(
            "insert into store_sales_daily as s (store_id, day, currency, orders, revenue_minor,
                                                cancellations, rejections)
             select * from unnest($1::uuid[], $2::date[], $3::text[], $4::int8[], $5::int8[],
                                  $6::int8[], $7::int8[])
             on conflict (store_id, day, currency) do update
                set orders = s.orders + excluded.orders,
                    revenue_minor = s.revenue_minor + excluded.revenue_minor,
                    cancellations = s.cancellations + excluded.cancellations,
                    rejections = s.rejections + excluded.rejections",
        )
        .bind(s.keys().map(|k| k.0).collect::<Vec<_>>())
        .bind(s.keys().map(|k| k.1).collect::<Vec<NaiveDate>>())
        .bind(s.keys().map(|k| k.2.as_str()).collect::<Vec<_>>())
        .bind(s.values().map(|v| v.orders).collect::<Vec<_>>())
        .bind(s.values().map(|v| v.revenue_minor).collect::<Vec<_>>())
        .bind(s.values().map(|v| v.cancellations).collect::<Vec<_>>())
        .bind(s.values().map(|v| v.rejections).collect::<Vec<_>>())
        .execute(&mut *conn)
        .await?;
    }
    Ok(())
}

/// Writes every saga the batch changed, whole (its row was loaded and locked).
async fn write_sagas(conn: &mut PgConnection, fold: &Fold) -> Result<(), sqlx::Error> {
    let changed: Vec<(&Uuid, &SagaRow)> = fold
        .sagas
        .iter()
        .filter(|(_, s)| s.changed)
        .map(|(id, s)| (id, &s.row))
        .collect();
    if changed.is_empty() {
        return Ok(());
    }
    sqlx::query(
        "insert into saga_progress as p (order_id, version, status, deadline_at, last_event,
                                         attention, started_at, updated_at)
         select * from unnest($1::uuid[], $2::int8[], $3::text[], $4::timestamptz[], $5::text[],
                              $6::text[], $7::timestamptz[], $8::timestamptz[])
         on conflict (order_id) do update
            set version = excluded.version,
                status = excluded.status,
                deadline_at = excluded.deadline_at,
                last_event = excluded.last_event,
                attention = excluded.attention,
                updated_at = excluded.updated_at",
    )
    .bind(changed.iter().map(|(id, _)| **id).collect::<Vec<_>>())
    .bind(changed.iter().map(|(_, s)| s.version).collect::<Vec<_>>())
    .bind(
        changed
            .iter()
            .map(|(_, s)| s.status.as_str())
            .collect::<Vec<_>>(),
    )
    .bind(
        changed
            .iter()
            .map(|(_, s)| s.deadline_at)
            .collect::<Vec<_>>(),
    )
    .bind(
        changed
            .iter()
            .map(|(_, s)| s.last_event.as_str())
            .collect::<Vec<_>>(),
    )
    .bind(
        changed
            .iter()
            .map(|(_, s)| s.attention.as_deref())
            .collect::<Vec<_>>(),
    )
    .bind(
        changed
            .iter()
            .map(|(_, s)| s.started_at)
            .collect::<Vec<_>>(),
    )
    .bind(
        changed
            .iter()
            .map(|(_, s)| s.updated_at)
            .collect::<Vec<_>>(),
    )
    .execute(&mut *conn)
    .await?;
    Ok(())
}
