//! What the API reads: order lists, one order with its lines, its status history, its raw
//! audit log, and the sales reports. Every function is one round trip to PostgreSQL over the
//! live schema [`SCHEMA`] (`read`), whose indexes serve each of them (`docs/queries.md` shows
//! the plans); the audit log comes straight from the event store through the `order_events`
//! view, so it is never behind.
//!
//! Authorization is the caller's business, except for lists: [`Visibility`] narrows a list to
//! what a restricted caller may see, inside the same query.

use chrono::{DateTime, NaiveDate, Utc};
use order_domain::{OrderStatus, ShippingAddress};
use serde::Deserialize;
use sqlx::types::Json;
use sqlx::{PgPool, Postgres, QueryBuilder};
use uuid::Uuid;

use crate::SCHEMA;

// The SQL below names the live schema literally, so that it reads (and is copied into
// docs/queries.md) as it runs; this keeps it in step with `SCHEMA`.
const _: () = assert!(matches!(SCHEMA.as_bytes(), b"read"));

/// The columns of [`OrderSummary`], in its field order.
const SUMMARY_COLUMNS: &str = "s.order_id, s.version, s.status, s.customer_id, s.store_id, \
     s.currency, s.customer_email, s.total_minor, s.line_count, s.item_count, s.carrier, \
     s.tracking_number, s.cancel_reason, s.reject_reason, s.created_at, s.updated_at, \
     s.placed_at, s.confirmed_at, s.rejected_at, s.preparing_at, s.ready_at, s.picked_up_at, \
     s.shipped_at, s.delivered_at, s.cancelled_at, s.discarded_at";

/// One row of `read.order_summaries`: an order's status, totals and status timestamps.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct OrderSummary {
    pub order_id: Uuid,
    /// Sequence of the last event applied.
    pub version: i64,
    /// snake_case [`OrderStatus`] name.
    pub status: String,
    pub customer_id: String,
    pub store_id: Uuid,
    pub currency: String,
    pub customer_email: Option<String>,
    pub total_minor: i64,
    pub line_count: i32,
    pub item_count: i32,
    pub carrier: Option<String>,
    pub tracking_number: Option<String>,
    pub cancel_reason: Option<String>,
    pub reject_reason: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub placed_at: Option<DateTime<Utc>>,
    pub confirmed_at: Option<DateTime<Utc>>,
    pub rejected_at: Option<DateTime<Utc>>,
    pub preparing_at: Option<DateTime<Utc>>,
    pub ready_at: Option<DateTime<Utc>>,
    pub picked_up_at: Option<DateTime<Utc>>,
    pub shipped_at: Option<DateTime<Utc>>,
    pub delivered_at: Option<DateTime<Utc>>,
    pub cancelled_at: Option<DateTime<Utc>>,
    pub discarded_at: Option<DateTime<Utc>>,
}

/// One line of an order, as it stands.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow, Deserialize)]
pub struct OrderLine {
    pub line_id: i32,
    pub sku: String,
    pub name: String,
    pub quantity: i32,
    pub unit_price_minor: i64,
    pub line_total_minor: i64,
}

/// An order with its lines, and how far the event store is ahead of it.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct OrderDetail {
    #[sqlx(flatten)]
    pub summary: OrderSummary,
    pub shipping_address: Option<Json<ShippingAddress>>,
    /// In line id order.
    pub lines: Json<Vec<OrderLine>>,
    /// The order's latest version in the event store when the row was read: the summary is
    /// up to date when `summary.version` equals it.
    pub log_version: i64,
}

/// Who an order belongs to and how far it got, according to the event store itself.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct LoggedOrder {
    pub customer_id: String,
    pub store_id: Uuid,
    /// Its latest version (sequence of its last event).
    pub version: i64,
}

/// One step of an order's status history.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct StatusChange {
    /// The version of the event that made the step.
    pub version: i64,
    pub status: String,
    pub previous_status: Option<String>,
    /// The note or reason given with the step.
    pub note: Option<String>,
    /// Who caused it (the token's `sub`), when recorded.
    pub principal: Option<String>,
    pub recorded_at: DateTime<Utc>,
}

/// One event of an order's audit log, as stored.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct AuditEvent {
    pub version: i64,
    pub event_id: Uuid,
    pub event_type: String,
    pub event_version: String,
    pub payload: serde_json::Value,
    pub metadata: serde_json::Value,
    pub recorded_at: DateTime<Utc>,
}

/// A position in the newest-first order list: the last order of the previous page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Keyset {
    pub created_at: DateTime<Utc>,
    pub order_id: Uuid,
}

/// Which orders a restricted caller may list at all.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Visibility {
    /// Every order.
    #[default]
    All,
    /// Only orders of this customer, or of one of these stores (none when both are empty).
    Only {
        customer_id: Option<String>,
        store_ids: Vec<Uuid>,
    },
}

/// What to list. Every filter given must hold.
#[derive(Debug, Clone, Default)]
pub struct OrderFilter {
    pub status: Option<OrderStatus>,
    pub store_id: Option<Uuid>,
    pub customer_id: Option<String>,
    /// Created at or after.
    pub created_from: Option<DateTime<Utc>>,
    /// Created before.
    pub created_to: Option<DateTime<Utc>>,
    /// Free text, matched case-insensitively anywhere in the customer email, item names and
    /// SKUs. Taken literally: `%` and `_` are not wildcards.
    pub text: Option<String>,
    pub visibility: Visibility,
}

/// One page of orders, newest first.
#[derive(Debug, Clone)]
pub struct OrderPage {
    pub items: Vec<OrderSummary>,
    /// Where the next page starts; `None` on the last page.
    pub next: Option<Keyset>,
}

/// Accumulates `where` conditions joined by `and`.
struct Conditions<'a> {
    query: QueryBuilder<'a, Postgres>,
    any: bool,
}

impl<'a> Conditions<'a> {
    fn new(select: &str) -> Self {
        Self {
            query: QueryBuilder::new(select),
            any: false,
        }
    }

    /// Starts the next condition.
    fn and(&mut self) -> &mut QueryBuilder<'a, Postgres> {
        self.query.push(if self.any { " and " } else { " where " });
        self.any = true;
        &mut self.query
    }
}

/// Escapes LIKE wildcards so that the text matches literally (backslash is the default escape).
fn like_literal(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for c in text.chars() {
        if matches!(c, '\\' | '%' | '_') {
            escaped.push('\\');
        }
        escaped.push(c);
    }
    escaped
}

/// Lists orders newest first (`created_at desc, order_id desc`), `limit` per page, starting
/// after `after`. Only the filters given become conditions, so that each combination is its
/// own statement with its own plan: equality filters go to the `(column, created_at desc,
/// order_id desc)` indexes and stop after `limit` rows, free text to the trigram index. The
/// orders of one customer are this list with `customer_id` set.
pub async fn list_orders(
    pool: &PgPool,
    filter: &OrderFilter,
    after: Option<Keyset>,
    limit: u32,
) -> Result<OrderPage, sqlx::Error> {
    let mut q = Conditions::new(&format!(
        "select {SUMMARY_COLUMNS} from read.order_summaries s"
    ));
    if let Some(status) = filter.status {
        q.and().push("s.status = ").push_bind(status.as_str());
    }
    if let Some(store) = filter.store_id {
        q.and().push("s.store_id = ").push_bind(store);
    }
    if let Some(customer) = &filter.customer_id {
        q.and().push("s.customer_id = ").push_bind(customer.clone());
    }
    if let Visibility::Only {
        customer_id,
        store_ids,
    } = &filter.visibility
    {
        match (customer_id, store_ids.as_slice()) {
            (None, []) => {
                q.and().push("false");
            }
            (Some(customer), []) => {
                q.and().push("s.customer_id = ").push_bind(customer.clone());
            }
            (None, [store]) => {
                q.and().push("s.store_id = ").push_bind(*store);
            }
            (None, stores) => {
                q.and()
                    .push("s.store_id = any(")
                    .push_bind(stores.to_vec())
                    .push(")");
            }
            (Some(customer), stores) => {
                q.and()
                    .push("(s.customer_id = ")
                    .push_bind(customer.clone())
                    .push(" or s.store_id = any(")
                    .push_bind(stores.to_vec())
                    .push("))");
            }
        }
    }
    if let Some(from) = filter.created_from {
        q.and().push("s.created_at >= ").push_bind(from);
    }
    if let Some(to) = filter.created_to {
        q.and().push("s.created_at < ").push_bind(to);
    }
    if let Some(text) = &filter.text {
        q.and()
            .push("s.order_id in (select x.order_id from read.order_search x where x.search_text ilike '%' || lower(")
            .push_bind(like_literal(text))
            .push(") || '%')");
    }
    if let Some(after) = after {
        q.and()
            .push("(s.created_at, s.order_id) < (")
            .push_bind(after.created_at)
            .push(", ")
            .push_bind(after.order_id)
            .push(")");
    }
    // One row more than asked says whether another page follows.
    q.query
        .push(" order by s.created_at desc, s.order_id desc limit ")
        .push_bind(i64::from(limit) + 1);
    let mut items: Vec<OrderSummary> = q.query.build_query_as().fetch_all(pool).await?;
    let limit = usize::try_from(limit).unwrap_or(usize::MAX);
    let next = if items.len() > limit {
        items.truncate(limit);
        items.last().map(|last| Keyset {
            created_at: last.created_at,
            order_id: last.order_id,
        })
    } else {
        None
    };
    Ok(OrderPage { items, next })
}

/// One order with its lines, and its latest version in the event store; `None` while the read
/// model has no row for it.
pub async fn order_detail(
    pool: &PgPool,
    order_id: Uuid,
) -> Result<Option<OrderDetail>, sqlx::Error> {
    sqlx::query_as(&format!(
        "select {SUMMARY_COLUMNS}, s.shipping_address,
                coalesce((select jsonb_agg(jsonb_build_object(
                                 'line_id', l.line_id, 'sku', l.sku, 'name', l.name,
                                 'quantity', l.quantity, 'unit_price_minor', l.unit_price_minor,
                                 'line_total_minor', l.line_total_minor) order by l.line_id)
                            from read.order_lines l
                           where l.order_id = s.order_id), '[]'::jsonb) as lines,
                coalesce((select max(e.version) from order_events e
                           where e.aggregate_id = $2), 0) as log_version
           from read.order_summaries s
          where s.order_id = $1"
    ))
    .bind(order_id)
    .bind(order_id.to_string())
    .fetch_optional(pool)
    .await
}

/// Who an order belongs to and its latest version, from the event store (its `OrderCreated`
/// event); `None` for an order that was never created.
pub async fn logged_order(
    pool: &PgPool,
    order_id: Uuid,
) -> Result<Option<LoggedOrder>, sqlx::Error> {
    sqlx::query_as(
        "select c.payload ->> 'customer_id' as customer_id,
                (c.payload ->> 'store_id')::uuid as store_id,
                (select max(e.version) from order_events e where e.aggregate_id = $1) as version
           from order_events c
          where c.aggregate_id = $1 and c.version = 1",
    )
    .bind(order_id.to_string())
    .fetch_optional(pool)
    .await
}

/// The store of each of `order_ids` (the event store's text keys) that was ever created, from
/// its `OrderCreated` event: one primary-key read per order.
pub async fn stores_of_orders(
    conn: &mut sqlx::PgConnection,
    order_ids: &[String],
) -> Result<Vec<(Uuid, Uuid)>, sqlx::Error> {
    sqlx::query_as(
        "select order_id, (payload ->> 'store_id')::uuid
           from order_events
          where aggregate_id = any($1) and version = 1",
    )
    .bind(order_ids)
    .fetch_all(conn)
    .await
}

/// The type of every event of these orders (ids as the event store keys them), oldest first
/// per order.
pub async fn order_event_types(
    conn: &mut sqlx::PgConnection,
    order_ids: &[String],
) -> Result<Vec<(Uuid, i64, String)>, sqlx::Error> {
    sqlx::query_as(
        "select order_id, version, event_type
           from order_events
          where aggregate_id = any($1)
          order by order_id, version",
    )
    .bind(order_ids)
    .fetch_all(conn)
    .await
}

/// Every status an order went through, oldest first.
pub async fn status_history(
    pool: &PgPool,
    order_id: Uuid,
) -> Result<Vec<StatusChange>, sqlx::Error> {
    sqlx::query_as(
        "select version, status, previous_status, note, principal, recorded_at
           from read.order_status_history
          where order_id = $1
          order by version",
    )
    .bind(order_id)
    .fetch_all(pool)
    .await
}

/// How many sagas are parked in `needs_attention` (the `saga_progress_status_idx` index).
pub async fn sagas_needing_attention(pool: &PgPool) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar("select count(*) from read.saga_progress where status = 'needs_attention'")
        .fetch_one(pool)
        .await
}

/// Up to `limit` events of an order's audit log after version `after_version`, in version
/// order, straight from the event store.
pub async fn order_events(
    pool: &PgPool,
    order_id: Uuid,
    after_version: i64,
    limit: u32,
) -> Result<Vec<AuditEvent>, sqlx::Error> {
    // `aggregate_id` (the store's text key) rather than the view's `order_id` (a uuid cast
    // of it): only the former reaches the events primary key.
    sqlx::query_as(
        "select version, event_id, event_type, event_version, payload, metadata, recorded_at
           from order_events
          where aggregate_id = $1 and version > $2
          order by version
          limit $3",
    )
    .bind(order_id.to_string())
    .bind(after_version)
    .bind(i64::from(limit))
    .fetch_all(pool)
    .await
}

/// How the product-sales report is ranked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SalesRanking {
    /// Revenue, then quantity, descending.
    #[default]
    Revenue,
    /// Quantity, then revenue, descending.
    Quantity,
}

/// What the product-sales report covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProductSalesQuery {
    /// First day, inclusive (UTC).
    pub from: NaiveDate,
    /// Last day, inclusive (UTC).
    pub to: NaiveDate,
    pub store_id: Option<Uuid>,
    pub ranking: SalesRanking,
    pub limit: u32,
}

/// Units and revenue of one product of one store over the report's days.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct ProductSales {
    pub store_id: Uuid,
    pub sku: String,
    /// The product's name on the latest day it sold.
    pub name: String,
    pub currency: String,
    pub quantity: i64,
    pub revenue_minor: i64,
    /// Orders that contained it.
    pub orders: i64,
}

/// Sales per product (store, SKU, currency) over a range of days, from
/// `read.product_sales_daily`: confirmed orders count on their confirmation day, and a later
/// cancellation takes them back out. Products whose every sale was cancelled are left out.
pub async fn product_sales(
    pool: &PgPool,
    query: &ProductSalesQuery,
) -> Result<Vec<ProductSales>, sqlx::Error> {
    let mut q = QueryBuilder::<Postgres>::new(
        "select store_id, sku, currency, (array_agg(name order by day desc))[1] as name,
                sum(quantity)::bigint as quantity, sum(revenue_minor)::bigint as revenue_minor,
                sum(orders)::bigint as orders
           from read.product_sales_daily
          where day between ",
    );
    q.push_bind(query.from).push(" and ").push_bind(query.to);
    if let Some(store) = query.store_id {
        q.push(" and store_id = ").push_bind(store);
    }
    q.push(" group by store_id, sku, currency having sum(orders) > 0 order by ");
    q.push(match query.ranking {
        SalesRanking::Revenue => "revenue_minor desc, quantity desc",
        SalesRanking::Quantity => "quantity desc, revenue_minor desc",
    });
    q.push(", store_id, sku, currency limit ")
        .push_bind(i64::from(query.limit));
    q.build_query_as().fetch_all(pool).await
}

/// The period a sales summary adds up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Granularity {
    #[default]
    Day,
    /// ISO weeks, starting on Monday.
    Week,
    /// Calendar months.
    Month,
}

impl Granularity {
    /// The `date_trunc` field name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Day => "day",
            Self::Week => "week",
            Self::Month => "month",
        }
    }
}

/// What the sales summary covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SalesSummaryQuery {
    pub granularity: Granularity,
    /// First day, inclusive (UTC).
    pub from: Option<NaiveDate>,
    /// Last day, inclusive (UTC).
    pub to: Option<NaiveDate>,
    pub store_id: Option<Uuid>,
}

/// Orders, revenue and failures of one period in one currency.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct SalesSummary {
    /// First day of the period (a Monday for weeks, the 1st for months); periods cut by the
    /// range still carry their calendar start.
    pub period_start: NaiveDate,
    pub currency: String,
    /// Confirmed orders, less those cancelled later.
    pub orders: i64,
    pub revenue_minor: i64,
    /// `revenue_minor / orders`, rounded toward zero; 0 without orders.
    pub average_order_value_minor: i64,
    /// Orders cancelled in the period (whatever their status before).
    pub cancellations: i64,
    /// Orders rejected in the period.
    pub rejections: i64,
}

/// Orders, revenue, average order value, cancellations and rejections per period and currency,
/// from `read.store_sales_daily`, oldest period first.
pub async fn sales_summary(
    pool: &PgPool,
    query: &SalesSummaryQuery,
) -> Result<Vec<SalesSummary>, sqlx::Error> {
    // `granularity` is one of three literals, never input.
    let mut q = Conditions::new(&format!(
        "select date_trunc('{}', day::timestamp)::date as period_start, currency,
                sum(orders)::bigint as orders, sum(revenue_minor)::bigint as revenue_minor,
                coalesce(sum(revenue_minor)::bigint / nullif(sum(orders), 0), 0)
                    as average_order_value_minor,
                sum(cancellations)::bigint as cancellations, sum(rejections)::bigint as rejections
           from read.store_sales_daily",
        query.granularity.as_str()
    ));
    if let Some(store) = query.store_id {
        q.and().push("store_id = ").push_bind(store);
    }
    if let Some(from) = query.from {
        q.and().push("day >= ").push_bind(from);
    }
    if let Some(to) = query.to {
        q.and().push("day <= ").push_bind(to);
    }
    q.query.push(" group by 1, 2 order by 1, 2");
    q.query.build_query_as().fetch_all(pool).await
}

#[cfg(test)]
mod tests {
    use super::like_literal;

    #[test]
    fn like_wildcards_in_search_text_are_taken_literally() {
        assert_eq!(like_literal("50%_off\\"), "50\\%\\_off\\\\");
        assert_eq!(like_literal("tea"), "tea");
    }
}
