//! Reading orders and sales reports (DESIGN §6, §9), served from the read models that the
//! projector keeps (`order_projections::queries`), never from the aggregate.
//!
//! * Lists (`GET /v1/orders`, `GET /v1/customers/{id}/orders`) are newest first, filtered, and
//!   keyset-paginated by an opaque cursor; they show the read model as it is (eventually
//!   consistent, usually a few milliseconds behind).
//! * One order (`GET /v1/orders/{id}`, `/items`, `/status-history`) is read-your-writes: the
//!   answer waits, up to [`READ_WAIT`], until the read model holds `min_version`, or without it
//!   the order's latest version in the event store when the request arrived. An explicit
//!   `min_version` not reached in time answers 503 `projection-behind`; the implicit one serves
//!   the row as it stands (its `ETag` says which version that is).
//! * The audit log (`/events`) comes from the event store itself and is never behind.
//! * Reports are for analysts, admins and services, and for staff about one of their stores.
//!
//! Who sees which order is the rule of [`super::security`], applied to the read model's
//! `customer_id` and `store_id`.

// Query endpoints take one argument per filter, as poem-openapi extracts them.
#![expect(clippy::too_many_arguments)]

use std::collections::HashMap;
use std::fmt::Write as _;
use std::time::{Duration, Instant};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use chrono::{DateTime, NaiveDate, Utc};
use order_domain::OrderStatus;
use order_projections::queries::{
    self as read, Keyset, OrderDetail, OrderFilter, ProductSalesQuery, SalesRanking,
    SalesSummaryQuery, Visibility,
};
use poem::http::Method;
use poem::web::Data;
use poem::Request;
use poem_openapi::param::{Path, Query};
use poem_openapi::payload::{Json, PlainText};
use poem_openapi::registry::{MetaApi, Registry};
use poem_openapi::{ApiResponse, Enum, Object, OpenApi, ResponseContent};
use uuid::Uuid;

use super::auth::{Principal, Role};
use super::command::etag;
use super::orders::{AddressView, LineView, ShipmentView, Status};
use super::problem::ApiError;
use super::security::{can_see_order_of, sees_every_order, BearerAuth};
use super::ApiTags;
use crate::state::AppState;

/// Longest a read waits for the read model to reach the wanted version.
pub const READ_WAIT: Duration = Duration::from_secs(1);
/// Pause between two looks at the read model while waiting.
const READ_POLL: Duration = Duration::from_millis(15);
/// Page size of order lists unless `limit` says otherwise, and its bounds.
const DEFAULT_PAGE: u32 = 50;
const MAX_PAGE: u32 = 200;
/// Rows of the product-sales report unless `limit` says otherwise, and its bound.
const DEFAULT_REPORT_ROWS: u32 = 100;
const MAX_REPORT_ROWS: u32 = 1000;
/// Most audit-log events per answer.
const MAX_EVENTS: u32 = 1000;
/// Bounds of the free-text search: trigrams need three characters to narrow anything.
const MIN_TEXT: usize = 3;
const MAX_TEXT: usize = 100;
/// First byte of every cursor, so that its layout can change without misreading old ones.
const CURSOR_V1: u8 = 1;

// ---- responses ------------------------------------------------------------------------------

/// An order as the read model holds it: status, totals, and when it reached each status.
#[derive(Debug, Clone, Object)]
pub struct OrderSummaryView {
    pub id: Uuid,
    /// The version of the order this describes (number of its events applied); the ETag.
    pub version: u64,
    pub status: Status,
    pub customer_id: String,
    pub store_id: Uuid,
    pub currency: String,
    #[oai(skip_serializing_if_is_none)]
    pub customer_email: Option<String>,
    /// Sum of line totals, in minor units of `currency`.
    pub total_minor: i64,
    /// Number of lines.
    pub line_count: u32,
    /// Number of units over all lines.
    pub item_count: u32,
    #[oai(skip_serializing_if_is_none)]
    pub shipment: Option<ShipmentView>,
    #[oai(skip_serializing_if_is_none)]
    pub cancel_reason: Option<String>,
    #[oai(skip_serializing_if_is_none)]
    pub reject_reason: Option<String>,
    pub created_at: DateTime<Utc>,
    /// When the last event was recorded.
    pub updated_at: DateTime<Utc>,
    #[oai(skip_serializing_if_is_none)]
    pub placed_at: Option<DateTime<Utc>>,
    #[oai(skip_serializing_if_is_none)]
    pub confirmed_at: Option<DateTime<Utc>>,
    #[oai(skip_serializing_if_is_none)]
    pub rejected_at: Option<DateTime<Utc>>,
    #[oai(skip_serializing_if_is_none)]
    pub preparing_at: Option<DateTime<Utc>>,
    #[oai(skip_serializing_if_is_none)]
    pub ready_for_pickup_at: Option<DateTime<Utc>>,
    #[oai(skip_serializing_if_is_none)]
    pub picked_up_at: Option<DateTime<Utc>>,
    #[oai(skip_serializing_if_is_none)]
    pub shipped_at: Option<DateTime<Utc>>,
    #[oai(skip_serializing_if_is_none)]
    pub delivered_at: Option<DateTime<Utc>>,
    #[oai(skip_serializing_if_is_none)]
    pub cancelled_at: Option<DateTime<Utc>>,
    #[oai(skip_serializing_if_is_none)]
    pub discarded_at: Option<DateTime<Utc>>,
}

/// An order with its address and lines.
#[derive(Debug, Clone, Object)]
pub struct OrderDetailView {
    #[oai(flatten)]
    pub summary: OrderSummaryView,
    #[oai(skip_serializing_if_is_none)]
    pub shipping_address: Option<AddressView>,
    /// In line id order, with name and unit price as they were when the item was added.
    pub lines: Vec<LineView>,
}

/// One page of orders, newest first.
#[derive(Debug, Clone, Object)]
pub struct OrderPageView {
    pub items: Vec<OrderSummaryView>,
    /// Pass as `cursor` for the next page; absent on the last page.
    #[oai(skip_serializing_if_is_none)]
    pub next: Option<String>,
}

/// One status an order reached.
#[derive(Debug, Clone, Object)]
pub struct StatusChangeView {
    /// The order's version at this step.
    pub version: u64,
    pub status: Status,
    #[oai(skip_serializing_if_is_none)]
    pub previous_status: Option<Status>,
    /// The note or reason given with the step.
    #[oai(skip_serializing_if_is_none)]
    pub note: Option<String>,
    /// Who moved it (the token's `sub`), when known.
    #[oai(skip_serializing_if_is_none)]
    pub principal: Option<String>,
    pub recorded_at: DateTime<Utc>,
}

/// One event of an order's audit log, as stored.
#[derive(Debug, Clone, Object)]
pub struct AuditEventView {
    /// The order's version after this event (1 for `OrderCreated`).
    pub version: u64,
    /// The event's identity outside the store (NATS `Nats-Msg-Id`, CloudEvents `ce-id`).
    pub event_id: Uuid,
    pub event_type: String,
    pub event_version: String,
    /// The event as recorded (`type` names the change).
    pub payload: serde_json::Value,
    /// Who caused it, request and trace ids, idempotency key.
    pub metadata: serde_json::Value,
    pub recorded_at: DateTime<Utc>,
}

/// How the product-sales report is ranked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Enum)]
#[oai(rename_all = "snake_case")]
pub enum SalesSort {
    /// Revenue, then quantity, descending.
    Revenue,
    /// Quantity, then revenue, descending.
    Quantity,
}

/// One product of one store over the report's days.
#[derive(Debug, Clone, Object)]
pub struct ProductSalesView {
    pub store_id: Uuid,
    pub sku: String,
    /// The product's name on the latest day it sold.
    pub name: String,
    pub currency: String,
    /// Units sold.
    pub quantity: i64,
    pub revenue_minor: i64,
    /// Orders that contained the product.
    pub orders: i64,
}

/// Units and revenue per product of confirmed, not cancelled, orders.
#[derive(Debug, Clone, Object)]
pub struct ProductSalesReport {
    /// First day, inclusive (UTC).
    pub from: NaiveDate,
    /// Last day, inclusive (UTC).
    pub to: NaiveDate,
    #[oai(skip_serializing_if_is_none)]
    pub store_id: Option<Uuid>,
    pub sort: SalesSort,
    pub items: Vec<ProductSalesView>,
}

/// The period a sales summary adds up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Enum)]
#[oai(rename_all = "snake_case")]
pub enum Granularity {
    Day,
    /// ISO weeks, Monday to Sunday.
    Week,
    Month,
}

/// Sales of one period in one currency.
#[derive(Debug, Clone, Object)]
pub struct SalesPeriodView {
    /// First day of the period: the day, the week's Monday, the month's 1st.
    pub period_start: NaiveDate,
    pub currency: String,
    /// Orders confirmed in the period and not cancelled since.
    pub orders: i64,
    pub revenue_minor: i64,
    /// `revenue_minor / orders`, rounded toward zero; 0 without orders.
    pub average_order_value_minor: i64,
    /// Orders cancelled in the period.
    pub cancellations: i64,
    /// Orders rejected in the period.
    pub rejections: i64,
}

/// Orders, revenue, average order value, cancellations and rejections per period.
#[derive(Debug, Clone, Object)]
pub struct SalesSummaryReport {
    pub granularity: Granularity,
    #[oai(skip_serializing_if_is_none)]
    pub from: Option<NaiveDate>,
    #[oai(skip_serializing_if_is_none)]
    pub to: Option<NaiveDate>,
    #[oai(skip_serializing_if_is_none)]
    pub store_id: Option<Uuid>,
    /// Oldest period first, then by currency; periods without any activity are left out.
    pub items: Vec<SalesPeriodView>,
}

/// Answer of `listOrders` and `listCustomerOrders`.
#[derive(ApiResponse)]
pub enum OrderPageResponse {
    /// A page of orders.
    #[oai(status = 200)]
    Ok(Json<OrderPageView>),
}

/// Answer of `getOrder`.
#[derive(ApiResponse)]
pub enum OrderDetailResponse {
    /// The order.
    #[oai(status = 200)]
    Ok(Json<OrderDetailView>, #[oai(header = "ETag")] String),
}

/// Answer of `listOrderItems`.
#[derive(ApiResponse)]
pub enum OrderLinesResponse {
    /// The order's lines.
    #[oai(status = 200)]
    Ok(Json<Vec<LineView>>, #[oai(header = "ETag")] String),
}

/// Answer of `getStatusHistory`.
#[derive(ApiResponse)]
pub enum StatusHistoryResponse {
    /// Every status the order reached, oldest first.
    #[oai(status = 200)]
    Ok(Json<Vec<StatusChangeView>>, #[oai(header = "ETag")] String),
}

/// Answer of `getOrderEvents`.
#[derive(ApiResponse)]
pub enum OrderEventsResponse {
    /// The order's events in version order; `ETag` is the order's latest version.
    #[oai(status = 200)]
    Ok(Json<Vec<AuditEventView>>, #[oai(header = "ETag")] String),
}

/// The product-sales report in the media type asked for.
#[derive(ResponseContent)]
pub enum ProductSalesContent {
    Json(Json<ProductSalesReport>),
    /// Header row `store_id,sku,name,currency,quantity,revenue_minor,orders`, then one row per
    /// product (RFC 4180).
    #[oai(content_type = "text/csv; charset=utf-8")]
    Csv(PlainText<String>),
}

/// Answer of `productSalesReport`.
#[derive(ApiResponse)]
pub enum ProductSalesResponse {
    /// The report: JSON, or CSV with `Accept: text/csv`.
    #[oai(status = 200)]
    Ok(ProductSalesContent),
}

/// Answer of `salesSummary`.
#[derive(ApiResponse)]
pub enum SalesSummaryResponse {
    /// The summary.
    #[oai(status = 200)]
    Ok(Json<SalesSummaryReport>),
}

// ---- conversions ----------------------------------------------------------------------------

fn status_of(raw: &str) -> Result<Status, ApiError> {
    OrderStatus::parse(raw).map(Status::from).ok_or_else(|| {
        ApiError::Internal(anyhow::anyhow!(
            "the read model holds an unknown status `{raw}`"
        ))
    })
}

/// Versions and counts are never negative in the read model; `unsigned_abs` converts them
/// without a fallible path.
fn summary_view(s: read::OrderSummary) -> Result<OrderSummaryView, ApiError> {
    Ok(OrderSummaryView {
        id: s.order_id,
        version: s.version.unsigned_abs(),
        status: status_of(&s.status)?,
        customer_id: s.customer_id,
        store_id: s.store_id,
        currency: s.currency,
        customer_email: s.customer_email,
        total_minor: s.total_minor,
        line_count: s.line_count.unsigned_abs(),
        item_count: s.item_count.unsigned_abs(),
        shipment: match (s.carrier, s.tracking_number) {
            (Some(carrier), Some(tracking_number)) => Some(ShipmentView {
                carrier,
                tracking_number,
            }),
            _ => None,
        },
        cancel_reason: s.cancel_reason,
        reject_reason: s.reject_reason,
        created_at: s.created_at,
        updated_at: s.updated_at,
        placed_at: s.placed_at,
        confirmed_at: s.confirmed_at,
        rejected_at: s.rejected_at,
        preparing_at: s.preparing_at,
        ready_for_pickup_at: s.ready_at,
        picked_up_at: s.picked_up_at,
        shipped_at: s.shipped_at,
        delivered_at: s.delivered_at,
        cancelled_at: s.cancelled_at,
        discarded_at: s.discarded_at,
    })
}

fn line_view(l: &read::OrderLine) -> LineView {
    LineView {
        line_id: l.line_id.unsigned_abs(),
        sku: l.sku.clone(),
        name: l.name.clone(),
        quantity: l.quantity.unsigned_abs(),
        unit_price_minor: l.unit_price_minor,
        line_total_minor: l.line_total_minor,
    }
}

pub(crate) fn detail_view(d: OrderDetail) -> Result<OrderDetailView, ApiError> {
    let lines = d.lines.0.iter().map(line_view).collect();
    let shipping_address = d.shipping_address.map(|a| AddressView {
        name: a.name.to_string(),
        line1: a.line1.to_string(),
        line2: a.line2.as_ref().map(ToString::to_string),
        city: a.city.to_string(),
        postal_code: a.postal_code.to_string(),
        country: a.country.as_str().to_owned(),
    });
    Ok(OrderDetailView {
        summary: summary_view(d.summary)?,
        shipping_address,
        lines,
    })
}

fn page_view(page: read::OrderPage) -> Result<OrderPageView, ApiError> {
    Ok(OrderPageView {
        next: page.next.map(|k| encode_cursor(&k)),
        items: page
            .items
            .into_iter()
            .map(summary_view)
            .collect::<Result<_, _>>()?,
    })
}

/// A database failure: 503 when it is out of reach, 500 otherwise.
fn db(e: sqlx::Error) -> ApiError {
    ApiError::infra(anyhow::Error::new(e).context("reading the read models"))
}

// ---- parameters -----------------------------------------------------------------------------

fn invalid(detail: impl Into<String>) -> ApiError {
    ApiError::BadRequest {
        slug: "invalid-parameter",
        detail: detail.into(),
    }
}

/// `raw` within `1..=max`, `default` when absent.
fn bounded(name: &str, raw: Option<i64>, default: u32, max: u32) -> Result<u32, ApiError> {
    match raw {
        None => Ok(default),
        Some(n) => u32::try_from(n)
            .ok()
            .filter(|n| (1..=max).contains(n))
            .ok_or_else(|| invalid(format!("{name} must be between 1 and {max}, not {n}"))),
    }
}

/// The cursor of a page boundary: base64url of a version byte, `created_at` in microseconds
/// since the epoch (big-endian) and the order id.
fn encode_cursor(k: &Keyset) -> String {
    let mut bytes = Vec::with_capacity(25);
    bytes.push(CURSOR_V1);
    bytes.extend_from_slice(&k.created_at.timestamp_micros().to_be_bytes());
    bytes.extend_from_slice(k.order_id.as_bytes());
    URL_SAFE_NO_PAD.encode(bytes)
}

fn decode_cursor(raw: &str) -> Result<Keyset, ApiError> {
    let malformed = || invalid("cursor is not one this API handed out; pass `next` of a page");
    let bytes = URL_SAFE_NO_PAD.decode(raw).map_err(|_| malformed())?;
    let [CURSOR_V1, rest @ ..] = bytes.as_slice() else {
        return Err(malformed());
    };
    let (micros, id) = rest.split_first_chunk::<8>().ok_or_else(malformed)?;
    let created_at =
        DateTime::from_timestamp_micros(i64::from_be_bytes(*micros)).ok_or_else(malformed)?;
    let order_id = Uuid::from_slice(id).map_err(|_| malformed())?;
    Ok(Keyset {
        created_at,
        order_id,
    })
}

fn search_text(raw: Option<String>) -> Result<Option<String>, ApiError> {
    let Some(text) = raw.map(|t| t.trim().to_owned()) else {
        return Ok(None);
    };
    let n = text.chars().count();
    if (MIN_TEXT..=MAX_TEXT).contains(&n) {
        Ok(Some(text))
    } else {
        Err(invalid(format!(
            "q must be {MIN_TEXT} to {MAX_TEXT} characters, not {n}"
        )))
    }
}

/// `from` must not come after `to`.
fn ordered<T: PartialOrd + std::fmt::Display>(
    from: Option<T>,
    to: Option<T>,
) -> Result<(), ApiError> {
    match (from, to) {
        (Some(f), Some(t)) if f > t => Err(invalid(format!("from ({f}) is after to ({t})"))),
        _ => Ok(()),
    }
}

/// The list filters of one request, before authorization.
struct ListRequest {
    status: Option<Status>,
    store_id: Option<Uuid>,
    customer_id: Option<String>,
    from: Option<DateTime<Utc>>,
    to: Option<DateTime<Utc>>,
    q: Option<String>,
    cursor: Option<String>,
    limit: Option<i64>,
}

/// Which orders `p` may list at all.
fn visibility(p: &Principal) -> Visibility {
    if sees_every_order(p) {
        return Visibility::All;
    }
    Visibility::Only {
        customer_id: p.has(Role::Customer).then(|| p.subject.clone()),
        store_ids: if p.has(Role::Staff) {
            p.store_ids.clone()
        } else {
            Vec::new()
        },
    }
}

/// Parses and authorizes a list request, then reads the page.
async fn list(state: &AppState, p: &Principal, r: ListRequest) -> Result<OrderPageView, ApiError> {
    let limit = bounded("limit", r.limit, DEFAULT_PAGE, MAX_PAGE)?;
    let after = r.cursor.as_deref().map(decode_cursor).transpose()?;
    ordered(r.from, r.to)?;
    let text = search_text(r.q)?;
    let visibility = visibility(p);
    // Asking for what one may not see is refused rather than quietly answered empty.
    if let Visibility::Only {
        customer_id,
        store_ids,
    } = &visibility
    {
        if let Some(wanted) = &r.customer_id {
            if store_ids.is_empty() && customer_id.as_ref() != Some(wanted) {
                return Err(ApiError::forbidden("customers list only their own orders"));
            }
        }
        if let Some(wanted) = r.store_id {
            if customer_id.is_none() && !store_ids.contains(&wanted) {
                return Err(ApiError::forbidden(
                    "staff list only the orders of their own stores",
                ));
            }
        }
    }
    let filter = OrderFilter {
        status: r.status.map(OrderStatus::from),
        store_id: r.store_id,
        customer_id: r.customer_id,
        created_from: r.from,
        created_to: r.to,
        text,
        visibility,
    };
    let page = read::list_orders(&state.pool, &filter, after, limit)
        .await
        .map_err(db)?;
    page_view(page)
}

// ---- one order, read-your-writes ------------------------------------------------------------

/// The order as the read model holds it once it has reached `min_version` (or, without it,
/// the order's latest version in the event store when the request arrived), waiting up to
/// [`READ_WAIT`]. 404 when the order does not exist or `p` may not see it.
#[tracing::instrument(skip_all, fields(order_id = %id))]
pub(crate) async fn fresh_order(
    state: &AppState,
    p: &Principal,
    id: Uuid,
    min_version: Option<u64>,
) -> Result<OrderDetail, ApiError> {
    let deadline = Instant::now() + READ_WAIT;
    let mut wanted = min_version.map(|v| i64::try_from(v).unwrap_or(i64::MAX));
    let mut owner_checked = false;
    loop {
        let at = if let Some(order) = read::order_detail(&state.pool, id).await.map_err(db)? {
            if !can_see_order_of(p, &order.summary.customer_id, order.summary.store_id) {
                return Err(ApiError::order_not_found());
            }
            let target = *wanted.get_or_insert(order.log_version);
            if order.summary.version >= target {
                return Ok(order);
            }
            if min_version.is_none() && Instant::now() >= deadline {
                tracing::warn!(
                    at = order.summary.version,
                    wanted = target,
                    "read model behind; serving the version it has"
                );
                return Ok(order);
            }
            order.summary.version
        } else {
            // Not projected yet: does it exist at all, and may the caller see it? The event
            // store knows, without waiting.
            if !owner_checked {
                let logged = read::logged_order(&state.pool, id)
                    .await
                    .map_err(db)?
                    .ok_or_else(ApiError::order_not_found)?;
                if !can_see_order_of(p, &logged.customer_id, logged.store_id) {
                    return Err(ApiError::order_not_found());
                }
                wanted.get_or_insert(logged.version);
                owner_checked = true;
            }
            0
        };
        if Instant::now() >= deadline {
            return Err(ApiError::ProjectionBehind {
                order_id: id,
                at: at.unsigned_abs(),
                wanted: wanted.unwrap_or(0).unsigned_abs(),
            });
        }
        tokio::time::sleep(READ_POLL).await;
    }
}

// ---- reports --------------------------------------------------------------------------------

/// Analysts, admins and services read every report; staff only their own stores', one store
/// at a time; customers none.
fn authorize_report(p: &Principal, store_id: Option<Uuid>) -> Result<(), ApiError> {
    if sees_every_order(p) {
        return Ok(());
    }
    if !p.has(Role::Staff) {
        return Err(ApiError::forbidden(
            "reports are for analysts, admins, services and store staff",
        ));
    }
    match store_id {
        Some(store) if p.can_access_store(store) => Ok(()),
        Some(_) => Err(ApiError::forbidden(
            "staff read the reports of their own stores only",
        )),
        None => Err(ApiError::forbidden(
            "staff read the reports of one of their stores: pass its store_id",
        )),
    }
}

/// Whether the client prefers CSV: `text/csv` acceptable with a higher quality than JSON.
fn wants_csv(req: &Request) -> bool {
    let Some(accept) = req.header("accept") else {
        return false;
    };
    let mut quality: HashMap<&str, f32> = HashMap::new();
    for range in accept.split(',') {
        let mut parts = range.split(';').map(str::trim);
        let media = parts.next().unwrap_or_default();
        let q = parts
            .find_map(|p| p.strip_prefix("q="))
            .and_then(|q| q.parse::<f32>().ok())
            .unwrap_or(1.0);
        quality.insert(media, q);
    }
    let of = |media: &str| quality.get(media).copied();
    let csv = of("text/csv").or_else(|| of("text/*")).unwrap_or(0.0);
    let json = of("application/json")
        .or_else(|| of("application/*"))
        .or_else(|| of("*/*"))
        .unwrap_or(0.0);
    csv > 0.0 && csv > json
}

/// One CSV field (RFC 4180), with spreadsheet formulas defused: a field starting with `=`,
/// `+`, `-`, `@`, tab or CR gets a leading `'` (OWASP "CSV injection").
fn csv_field(raw: &str) -> String {
    let defused = if raw.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        format!("'{raw}")
    } else {
        raw.to_owned()
    };
    if defused.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", defused.replace('"', "\"\""))
    } else {
        defused
    }
}

fn product_sales_csv(rows: &[ProductSalesView]) -> String {
    let mut csv = String::from("store_id,sku,name,currency,quantity,revenue_minor,orders\r\n");
    for r in rows {
        // Writing into a String cannot fail.
        let _ = write!(
            csv,
            "{},{},{},{},{},{},{}\r\n",
            r.store_id,
            csv_field(&r.sku),
            csv_field(&r.name),
            csv_field(&r.currency),
            r.quantity,
            r.revenue_minor,
            r.orders
        );
    }
    csv
}

// ---- the API --------------------------------------------------------------------------------

/// The read operations of this module.
#[derive(Debug)]
pub struct QueriesApi;

#[OpenApi(prefix_path = "/v1")]
impl QueriesApi {
    /// List orders
    ///
    /// Newest first, filtered, one page at a time. Customers see only their own orders (a
    /// `customer_id` other than theirs is 403), staff only their stores' (a `store_id` outside
    /// them is 403); analysts, admins and services see all. The list shows the read model as it
    /// is, a few milliseconds behind the latest commands.
    #[oai(
        path = "/orders",
        method = "get",
        operation_id = "listOrders",
        tag = "ApiTags::Orders"
    )]
    async fn list_orders(
        &self,
        state: Data<&AppState>,
        auth: BearerAuth,
        /// Only orders in this status.
        status: Query<Option<Status>>,
        /// Only orders of this store.
        store_id: Query<Option<Uuid>>,
        /// Only orders of this customer.
        customer_id: Query<Option<String>>,
        /// Only orders created at or after this instant (RFC 3339).
        from: Query<Option<DateTime<Utc>>>,
        /// Only orders created before this instant (RFC 3339).
        to: Query<Option<DateTime<Utc>>>,
        /// Free text (3 to 100 characters), found case-insensitively anywhere in the customer
        /// email, item names and SKUs.
        q: Query<Option<String>>,
        /// `next` of the previous page.
        cursor: Query<Option<String>>,
        /// Orders per page, 1 to 200 (default 50).
        limit: Query<Option<i64>>,
    ) -> Result<OrderPageResponse, ApiError> {
        let request = ListRequest {
            status: status.0,
            store_id: store_id.0,
            customer_id: customer_id.0,
            from: from.0,
            to: to.0,
            q: q.0,
            cursor: cursor.0,
            limit: limit.0,
        };
        Ok(OrderPageResponse::Ok(Json(
            list(&state, &auth.0, request).await?,
        )))
    }

    /// Read an order
    ///
    /// From the read model, read-your-writes: waits (at most 1 s) until it holds `min_version`,
    /// or without it every change committed before this request. A `min_version` not reached
    /// in time answers 503 `projection-behind` with `Retry-After`.
    #[oai(
        path = "/orders/:id",
        method = "get",
        operation_id = "getOrder",
        tag = "ApiTags::Orders"
    )]
    async fn get_order(
        &self,
        state: Data<&AppState>,
        auth: BearerAuth,
        id: Path<Uuid>,
        /// The version (a command's `ETag`) the answer must reflect at least.
        min_version: Query<Option<u64>>,
    ) -> Result<OrderDetailResponse, ApiError> {
        let order = fresh_order(&state, &auth.0, id.0, min_version.0).await?;
        let view = detail_view(order)?;
        let tag = etag(view.summary.version);
        Ok(OrderDetailResponse::Ok(Json(view), tag))
    }

    /// List an order's lines
    ///
    /// Read-your-writes like `getOrder`.
    #[oai(
        path = "/orders/:id/items",
        method = "get",
        operation_id = "listOrderItems",
        tag = "ApiTags::Orders"
    )]
    async fn list_order_items(
        &self,
        state: Data<&AppState>,
        auth: BearerAuth,
        id: Path<Uuid>,
        /// The version the answer must reflect at least.
        min_version: Query<Option<u64>>,
    ) -> Result<OrderLinesResponse, ApiError> {
        let order = fresh_order(&state, &auth.0, id.0, min_version.0).await?;
        let lines = order.lines.0.iter().map(line_view).collect();
        Ok(OrderLinesResponse::Ok(
            Json(lines),
            etag(order.summary.version.unsigned_abs()),
        ))
    }

    /// An order's status history
    ///
    /// Every status the order reached, with who moved it and the note or reason given.
    /// Read-your-writes like `getOrder`.
    #[oai(
        path = "/orders/:id/status-history",
        method = "get",
        operation_id = "getStatusHistory",
        tag = "ApiTags::Orders"
    )]
    async fn get_status_history(
        &self,
        state: Data<&AppState>,
        auth: BearerAuth,
        id: Path<Uuid>,
        /// The version the answer must reflect at least.
        min_version: Query<Option<u64>>,
    ) -> Result<StatusHistoryResponse, ApiError> {
        let order = fresh_order(&state, &auth.0, id.0, min_version.0).await?;
        let steps = read::status_history(&state.pool, id.0)
            .await
            .map_err(db)?
            .into_iter()
            .map(|s| {
                Ok(StatusChangeView {
                    version: s.version.unsigned_abs(),
                    status: status_of(&s.status)?,
                    previous_status: s.previous_status.as_deref().map(status_of).transpose()?,
                    note: s.note,
                    principal: s.principal,
                    recorded_at: s.recorded_at,
                })
            })
            .collect::<Result<_, ApiError>>()?;
        Ok(StatusHistoryResponse::Ok(
            Json(steps),
            etag(order.summary.version.unsigned_abs()),
        ))
    }

    /// An order's audit log
    ///
    /// The order's events exactly as the event store recorded them, in version order: never
    /// behind. At most 1000 per answer; continue with `after_version`.
    #[oai(
        path = "/orders/:id/events",
        method = "get",
        operation_id = "getOrderEvents",
        tag = "ApiTags::Orders"
    )]
    async fn get_order_events(
        &self,
        state: Data<&AppState>,
        auth: BearerAuth,
        id: Path<Uuid>,
        /// Only events after this version (default 0: from the start).
        after_version: Query<Option<u64>>,
        /// Events per answer, 1 to 1000 (default 1000).
        limit: Query<Option<i64>>,
    ) -> Result<OrderEventsResponse, ApiError> {
        let limit = bounded("limit", limit.0, MAX_EVENTS, MAX_EVENTS)?;
        let logged = read::logged_order(&state.pool, id.0)
            .await
            .map_err(db)?
            .filter(|o| can_see_order_of(&auth.0, &o.customer_id, o.store_id))
            .ok_or_else(ApiError::order_not_found)?;
        let after = i64::try_from(after_version.0.unwrap_or(0)).unwrap_or(i64::MAX);
        let events = read::order_events(&state.pool, id.0, after, limit)
            .await
            .map_err(db)?
            .into_iter()
            .map(|e| AuditEventView {
                version: e.version.unsigned_abs(),
                event_id: e.event_id,
                event_type: e.event_type,
                event_version: e.event_version,
                payload: e.payload,
                metadata: e.metadata,
                recorded_at: e.recorded_at,
            })
            .collect();
        Ok(OrderEventsResponse::Ok(
            Json(events),
            etag(logged.version.unsigned_abs()),
        ))
    }

    /// A customer's orders
    ///
    /// `listOrders` for one customer. Customers reach only their own history (another
    /// customer's answers 404); staff see the customer's orders in their stores.
    #[oai(
        path = "/customers/:id/orders",
        method = "get",
        operation_id = "listCustomerOrders",
        tag = "ApiTags::Orders"
    )]
    async fn list_customer_orders(
        &self,
        state: Data<&AppState>,
        auth: BearerAuth,
        id: Path<String>,
        /// Only orders in this status.
        status: Query<Option<Status>>,
        /// Only orders of this store.
        store_id: Query<Option<Uuid>>,
        /// Only orders created at or after this instant (RFC 3339).
        from: Query<Option<DateTime<Utc>>>,
        /// Only orders created before this instant (RFC 3339).
        to: Query<Option<DateTime<Utc>>>,
        /// Free text (3 to 100 characters) over email, item names and SKUs.
        q: Query<Option<String>>,
        /// `next` of the previous page.
        cursor: Query<Option<String>>,
        /// Orders per page, 1 to 200 (default 50).
        limit: Query<Option<i64>>,
    ) -> Result<OrderPageResponse, ApiError> {
        let p = &auth.0;
        let own_only = p.has(Role::Customer) && !sees_every_order(p) && !p.has(Role::Staff);
        if own_only && id.0 != p.subject {
            return Err(ApiError::NotFound {
                slug: "customer-not-found",
                detail: "no such customer among those the caller may see".into(),
            });
        }
        let request = ListRequest {
            status: status.0,
            store_id: store_id.0,
            customer_id: Some(id.0),
            from: from.0,
            to: to.0,
            q: q.0,
            cursor: cursor.0,
            limit: limit.0,
        };
        Ok(OrderPageResponse::Ok(Json(list(&state, p, request).await?)))
    }

    /// Product sales
    ///
    /// Units, revenue and orders per product (store, SKU, currency) of orders confirmed in the
    /// date range and not cancelled since, on their confirmation day (UTC). JSON, or CSV with
    /// `Accept: text/csv`. Analysts, admins and services; staff for one of their stores.
    #[oai(
        path = "/reports/product-sales",
        method = "get",
        operation_id = "productSalesReport",
        tag = "ApiTags::Reports"
    )]
    async fn product_sales(
        &self,
        state: Data<&AppState>,
        req: &Request,
        auth: BearerAuth,
        /// First day, inclusive (UTC, `YYYY-MM-DD`).
        from: Query<NaiveDate>,
        /// Last day, inclusive (UTC, `YYYY-MM-DD`).
        to: Query<NaiveDate>,
        /// Only this store (required for staff).
        store_id: Query<Option<Uuid>>,
        /// Ranking: `revenue` (default) or `quantity`, descending.
        sort: Query<Option<SalesSort>>,
        /// Products in the report, 1 to 1000 (default 100).
        limit: Query<Option<i64>>,
    ) -> Result<ProductSalesResponse, ApiError> {
        authorize_report(&auth.0, store_id.0)?;
        ordered(Some(from.0), Some(to.0))?;
        let limit = bounded("limit", limit.0, DEFAULT_REPORT_ROWS, MAX_REPORT_ROWS)?;
        let sort = sort.0.unwrap_or(SalesSort::Revenue);
        let query = ProductSalesQuery {
            from: from.0,
            to: to.0,
            store_id: store_id.0,
            ranking: match sort {
                SalesSort::Revenue => SalesRanking::Revenue,
                SalesSort::Quantity => SalesRanking::Quantity,
            },
            limit,
        };
        let items: Vec<ProductSalesView> = read::product_sales(&state.pool, &query)
            .await
            .map_err(db)?
            .into_iter()
            .map(|r| ProductSalesView {
                store_id: r.store_id,
                sku: r.sku,
                name: r.name,
                currency: r.currency,
                quantity: r.quantity,
                revenue_minor: r.revenue_minor,
                orders: r.orders,
            })
            .collect();
        if wants_csv(req) {
            return Ok(ProductSalesResponse::Ok(ProductSalesContent::Csv(
                PlainText(product_sales_csv(&items)),
            )));
        }
        Ok(ProductSalesResponse::Ok(ProductSalesContent::Json(Json(
            ProductSalesReport {
                from: from.0,
                to: to.0,
                store_id: store_id.0,
                sort,
                items,
            },
        ))))
    }

    /// Sales summary
    ///
    /// Orders, revenue, average order value, cancellations and rejections per day, ISO week or
    /// month and currency. Orders count on their confirmation day and leave it again when
    /// cancelled; cancellations and rejections count on the day they happened. Analysts,
    /// admins and services; staff for one of their stores.
    #[oai(
        path = "/reports/sales-summary",
        method = "get",
        operation_id = "salesSummary",
        tag = "ApiTags::Reports"
    )]
    async fn sales_summary(
        &self,
        state: Data<&AppState>,
        auth: BearerAuth,
        /// `day` (default), `week` or `month`.
        granularity: Query<Option<Granularity>>,
        /// First day, inclusive (UTC, `YYYY-MM-DD`).
        from: Query<Option<NaiveDate>>,
        /// Last day, inclusive (UTC, `YYYY-MM-DD`).
        to: Query<Option<NaiveDate>>,
        /// Only this store (required for staff).
        store_id: Query<Option<Uuid>>,
    ) -> Result<SalesSummaryResponse, ApiError> {
        authorize_report(&auth.0, store_id.0)?;
        ordered(from.0, to.0)?;
        let granularity = granularity.0.unwrap_or(Granularity::Day);
        let query = SalesSummaryQuery {
            granularity: match granularity {
                Granularity::Day => read::Granularity::Day,
                Granularity::Week => read::Granularity::Week,
                Granularity::Month => read::Granularity::Month,
            },
            from: from.0,
            to: to.0,
            store_id: store_id.0,
        };
        let items = read::sales_summary(&state.pool, &query)
            .await
            .map_err(db)?
            .into_iter()
            .map(|r| SalesPeriodView {
                period_start: r.period_start,
                currency: r.currency,
                orders: r.orders,
                revenue_minor: r.revenue_minor,
                average_order_value_minor: r.average_order_value_minor,
                cancellations: r.cancellations,
                rejections: r.rejections,
            })
            .collect();
        Ok(SalesSummaryResponse::Ok(Json(SalesSummaryReport {
            granularity,
            from: from.0,
            to: to.0,
            store_id: store_id.0,
            items,
        })))
    }
}

// ---- commands and queries on the same paths ---------------------------------------------------

/// Serves several APIs as one, with one OpenAPI `paths` entry per path.
///
/// Commands (`orders.rs`) and queries (this module) share paths (`/v1/orders`,
/// `/v1/orders/{id}`, `/v1/orders/{id}/items`), and poem-openapi 5.1 writes one `paths` entry
/// per path *per API type*: the spec would name those paths twice, and JSON readers keep only
/// the last (poem-web/poem#1032). Routing already merges them; this merges the documentation.
#[derive(Debug)]
pub struct SharedPaths<T>(pub T);

impl<T: OpenApi> OpenApi for SharedPaths<T> {
    fn meta() -> Vec<MetaApi> {
        let mut merged = MetaApi { paths: Vec::new() };
        for path in T::meta().into_iter().flat_map(|api| api.paths) {
            match merged.paths.iter_mut().find(|p| p.path == path.path) {
                Some(existing) => existing.operations.extend(path.operations),
                None => merged.paths.push(path),
            }
        }
        vec![merged]
    }

    fn register(registry: &mut Registry) {
        T::register(registry);
    }

    fn add_routes(
        self,
        route_table: &mut HashMap<String, HashMap<Method, poem::endpoint::BoxEndpoint<'static>>>,
    ) {
        self.0.add_routes(route_table);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cursor_round_trips_to_the_microsecond() {
        let k = Keyset {
            created_at: DateTime::from_timestamp_micros(1_795_000_000_123_456).expect("time"),
            order_id: Uuid::new_v4(),
        };
        assert_eq!(decode_cursor(&encode_cursor(&k)).expect("decodes"), k);
    }

    #[test]
    fn a_forged_or_truncated_cursor_is_a_bad_parameter() {
        let good = encode_cursor(&Keyset {
            created_at: Utc::now(),
            order_id: Uuid::new_v4(),
        });
        for bad in [
            "",
            "!!!",
            &good[..good.len() - 2],
            "AAAA",
            &format!("{good}AA"),
        ] {
            assert!(
                matches!(
                    decode_cursor(bad),
                    Err(ApiError::BadRequest {
                        slug: "invalid-parameter",
                        ..
                    })
                ),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn csv_fields_are_quoted_and_formulas_defused() {
        assert_eq!(csv_field("Green tea"), "Green tea");
        assert_eq!(csv_field("Tea, green"), "\"Tea, green\"");
        assert_eq!(csv_field("6\" pie"), "\"6\"\" pie\"");
        assert_eq!(csv_field("=HYPERLINK(1)"), "'=HYPERLINK(1)");
        assert_eq!(csv_field("-1,5"), "\"'-1,5\"");
    }

    #[test]
    fn csv_is_chosen_only_when_preferred() {
        let with = |accept: &str| wants_csv(&Request::builder().header("accept", accept).finish());
        assert!(with("text/csv"));
        assert!(with("text/csv, application/json;q=0.5"));
        assert!(!with("application/json"));
        assert!(!with("*/*"));
        assert!(!with("application/json, text/csv;q=0.9"));
        assert!(!with("text/csv;q=0"));
        assert!(!wants_csv(&Request::builder().finish()));
    }
}
