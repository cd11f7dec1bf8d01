//! Reading orders and sales reports (DESIGN §6, §9), served from the read models that the
//! projector keeps (`order_projections::queries`), never from the aggregate.
//!
//! * Lists (`GET /v1/orders`, `GET /v1/customers/{id}/orders`) are newest first, filtered, and
//!   keyset-paginated by an opaque cursor; they show the read model as it is (eventually
//!   consistent, usually a few milliseconds behind).
//! * One order (`GET /v1/orders/{id}`, `/items`, `/status-history`) is read-your-writes
//!   ([`super::consistency`]): the answer waits, up to a second, until the read model holds
//!   `min_version`, or without it the order's latest version in the event store when the
//!   request arrived. An explicit `min_version` not reached in time answers 503
//!   `projection-behind`; the implicit one serves the row as it stands (its `ETag` says which
//!   version that is).
//! * The audit log (`/events`) comes from the event store itself and is never behind.
//! * Reports are for analysts, admins and services, and for staff about one of their stores.
//!
//! Who sees which order is the rule of [`super::security`], applied to the read model's
//! `customer_id` and `store_id`.
//!
//! The pieces around the endpoints live apart: the reports' representations and CSV in
//! `queries/reports.rs`, the page cursor in [`super::cursor`], `Accept` in [`super::negotiate`], the
//! shared parameter parsing in [`super::reading`].

// Query endpoints take one argument per filter, as poem-openapi extracts them.
#![expect(clippy::too_many_arguments)]

mod audit;
mod reports;

use chrono::{DateTime, Utc};
use order_domain::OrderStatus;
use order_projections::queries::{
    self as read, OrderDetail, OrderFilter, ProductSalesQuery, SalesRanking, SalesSummaryQuery,
    Visibility,
};
use poem::web::Data;
use poem::Request;
use poem_openapi::param::{Path, Query};
use poem_openapi::payload::{Json, PlainText};
use poem_openapi::{ApiResponse, Object, OpenApi};
use uuid::Uuid;

pub use self::audit::{AuditEventPage, AuditEventView};
use self::reports::{
    authorize_report, product_sales_csv, Granularity, ProductSalesContent, ProductSalesReport,
    ProductSalesResponse, ProductSalesView, SalesPeriodView, SalesSort, SalesSummaryReport,
    SalesSummaryResponse,
};
use super::auth::{Principal, Role};
use super::command::etag;
use super::consistency::fresh_order;
use super::cursor::{decode_cursor, decode_event_cursor, encode_cursor};
use super::dates::{Bound, Day};
use super::negotiate::wants_csv;
use super::orders::dto::{AddressView, LineView, ShipmentView, Status};
use super::problem::ApiError;
use super::reading::{bounded, db, ordered, printable, search_text};
use super::security::{can_see_order_of, sees_every_order, Allowed, BearerAuth, ReportReaders};
use super::spec::ApiTags;
use crate::state::AppState;

/// Page size of order lists unless `limit` says otherwise, and its bounds.
const DEFAULT_PAGE: u32 = 50;
const MAX_PAGE: u32 = 200;
/// Rows of the product-sales report unless `limit` says otherwise, and its bound.
const DEFAULT_REPORT_ROWS: u32 = 100;
const MAX_REPORT_ROWS: u32 = 1000;
/// Most audit-log events per answer.
const MAX_EVENTS: u32 = 1000;

// ---- responses ------------------------------------------------------------------------------

/// An order as the read model holds it: status, totals, and when it reached each status.
#[derive(Debug, Clone, Object)]
#[oai(skip_serializing_if_is_none, example)]
pub struct OrderSummaryView {
    /// The order's id (UUID).
    pub id: Uuid,
    /// The version of the order this describes (number of its events applied); the ETag.
    pub version: i64,
    /// Where the order stands now.
    pub status: Status,
    /// The customer: the `sub` of their token.
    pub customer_id: String,
    /// The store that sells and fulfils the order.
    pub store_id: Uuid,
    /// ISO 4217 code of every amount of the order, e.g. `EUR`.
    pub currency: String,
    /// Where the order's emails go; absent when none was given.
    pub customer_email: Option<String>,
    /// Sum of line totals, in minor units of `currency`.
    pub total_minor: i64,
    /// Number of lines.
    pub line_count: i64,
    /// Number of units over all lines.
    pub item_count: i64,
    /// Carrier and tracking number; absent until the order is shipped.
    pub shipment: Option<ShipmentView>,
    /// Why it was cancelled; absent unless it was.
    pub cancel_reason: Option<String>,
    /// Why it was rejected (out of stock, payment declined); absent unless it was.
    pub reject_reason: Option<String>,
    /// When the draft was created.
    pub created_at: DateTime<Utc>,
    /// When the last event was recorded.
    pub updated_at: DateTime<Utc>,
    /// When it was placed (RFC 3339, UTC; each `..._at` below is absent until then).
    pub placed_at: Option<DateTime<Utc>>,
    /// When stock was reserved and payment authorized.
    pub confirmed_at: Option<DateTime<Utc>>,
    /// When it was rejected.
    pub rejected_at: Option<DateTime<Utc>>,
    /// When the store started preparing it.
    pub preparing_at: Option<DateTime<Utc>>,
    /// When it was ready for pickup.
    pub ready_for_pickup_at: Option<DateTime<Utc>>,
    /// When the customer picked it up.
    pub picked_up_at: Option<DateTime<Utc>>,
    /// When it was handed to the carrier.
    pub shipped_at: Option<DateTime<Utc>>,
    /// When it was delivered.
    pub delivered_at: Option<DateTime<Utc>>,
    /// When it was cancelled.
    pub cancelled_at: Option<DateTime<Utc>>,
    /// When the draft was discarded.
    pub discarded_at: Option<DateTime<Utc>>,
}

/// An order with its address and lines.
#[derive(Debug, Clone, Object)]
#[oai(example)]
pub struct OrderDetailView {
    #[oai(flatten)]
    pub summary: OrderSummaryView,
    /// Where the order is delivered; absent for an order picked up at the store.
    #[oai(skip_serializing_if_is_none)]
    pub shipping_address: Option<AddressView>,
    /// In line id order, with name and unit price as they were when the item was added.
    pub lines: Vec<LineView>,
}

/// One page of orders, newest first.
#[derive(Debug, Clone, Object)]
#[oai(example)]
pub struct OrderPageView {
    /// The orders of this page, newest first; empty when none match.
    pub items: Vec<OrderSummaryView>,
    /// Pass as `cursor` for the next page; absent on the last page.
    #[oai(skip_serializing_if_is_none)]
    pub next: Option<String>,
}

/// One status an order reached.
#[derive(Debug, Clone, Object)]
#[oai(skip_serializing_if_is_none, example)]
pub struct StatusChangeView {
    /// The order's version at this step.
    pub version: i64,
    /// The status the order reached.
    pub status: Status,
    /// The status before; absent on the first step (`draft`).
    pub previous_status: Option<Status>,
    /// The note or reason given with the step.
    pub note: Option<String>,
    /// Who moved it (the token's `sub`), when known.
    pub principal: Option<String>,
    /// When it happened (RFC 3339, UTC).
    pub recorded_at: DateTime<Utc>,
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

/// An order's lines: the whole list, in one answer (an order holds at most 100), shaped as
/// every list is (`items`; no `next`).
#[derive(Debug, Clone, Object)]
pub struct LineList {
    /// The lines, in the order they were added.
    pub items: Vec<LineView>,
}

/// An order's status history: the whole list, in one answer (a status is reached once),
/// shaped as every list is (`items`; no `next`).
#[derive(Debug, Clone, Object)]
pub struct StatusHistoryList {
    /// Every status the order reached, oldest first.
    pub items: Vec<StatusChangeView>,
}

/// Answer of `listOrderItems`.
#[derive(ApiResponse)]
pub enum OrderLinesResponse {
    /// The order's lines.
    #[oai(status = 200)]
    Ok(Json<LineList>, #[oai(header = "ETag")] String),
}

/// Answer of `getStatusHistory`.
#[derive(ApiResponse)]
pub enum StatusHistoryResponse {
    /// Every status the order reached, oldest first.
    #[oai(status = 200)]
    Ok(Json<StatusHistoryList>, #[oai(header = "ETag")] String),
}

/// Answer of `getOrderEvents`.
#[derive(ApiResponse)]
pub enum OrderEventsResponse {
    /// A page of the order's events in version order; `ETag` is the order's latest version.
    #[oai(status = 200)]
    Ok(Json<AuditEventPage>, #[oai(header = "ETag")] String),
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
        version: s.version,
        status: status_of(&s.status)?,
        customer_id: s.customer_id,
        store_id: s.store_id,
        currency: s.currency,
        customer_email: s.customer_email,
        total_minor: s.total_minor,
        line_count: s.line_count.into(),
        item_count: s.item_count.into(),
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
        line_id: l.line_id.into(),
        sku: l.sku.clone(),
        name: l.name.clone(),
        quantity: l.quantity.into(),
        unit_price_minor: l.unit_price_minor,
        line_total_minor: l.line_total_minor,
    }
}

pub(crate) fn detail_view(d: OrderDetail) -> Result<OrderDetailView, ApiError> {
    let lines = d.lines.0.iter().map(line_view).collect();
    Ok(OrderDetailView {
        summary: summary_view(d.summary)?,
        shipping_address: d.shipping_address.map(|a| AddressView::of(&a)),
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

// ---- lists ---------------------------------------------------------------------------------

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
        // token `store_ids` of staff and services, and memberships
        store_ids: p.scoped_stores(),
    }
}

/// Parses and authorizes a list request, then reads the page.
async fn list(state: &AppState, p: &Principal, r: ListRequest) -> Result<OrderPageView, ApiError> {
    let limit = bounded("limit", r.limit, DEFAULT_PAGE, MAX_PAGE)?;
    let after = r.cursor.as_deref().map(decode_cursor).transpose()?;
    ordered(r.from, r.to)?;
    let text = search_text(r.q)?;
    if let Some(customer) = &r.customer_id {
        printable("customer_id", customer)?;
    }
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
        #[oai(validator(max_length = 128, pattern = "^[^\\u0000-\\u001F\\u007F-\\u009F]+$"))]
        customer_id: Query<Option<String>>,
        /// Only orders created at or after this instant: an RFC 3339 timestamp, or a date
        /// (`YYYY-MM-DD`, that day 00:00 UTC).
        from: Query<Option<Bound>>,
        /// Only orders created before this instant: an RFC 3339 timestamp, or a date
        /// (`YYYY-MM-DD`, that day 00:00 UTC).
        to: Query<Option<Bound>>,
        /// Free text (3 to 100 characters), found case-insensitively anywhere in the customer
        /// email, item names and SKUs.
        #[oai(validator(
            max_length = 100,
            pattern = "^[^\\u0000-\\u001F\\u007F-\\u009F]*[^\\s\\u0000-\\u001F\\u007F-\\u009F][^\\u0000-\\u001F\\u007F-\\u009F]+[^\\s\\u0000-\\u001F\\u007F-\\u009F][^\\u0000-\\u001F\\u007F-\\u009F]*$"
        ))]
        q: Query<Option<String>>,
        /// `next` of the previous page.
        cursor: Query<Option<String>>,
        /// Orders per page, 1 to 200 (default 50).
        #[oai(validator(minimum(value = "1"), maximum(value = "200")))]
        limit: Query<Option<i64>>,
    ) -> Result<OrderPageResponse, ApiError> {
        let request = ListRequest {
            status: status.0,
            store_id: store_id.0,
            customer_id: customer_id.0,
            from: from.0.map(Bound::instant),
            to: to.0.map(Bound::instant),
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
        /// The order's id (UUID).
        id: Path<Uuid>,
        /// The version (a command's `ETag`) the answer must reflect at least.
        #[oai(validator(minimum(value = "0")))]
        min_version: Query<Option<i64>>,
    ) -> Result<OrderDetailResponse, ApiError> {
        let order =
            fresh_order(&state, &auth.0, id.0, min_version.0.map(i64::unsigned_abs)).await?;
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
        /// The order's id (UUID).
        id: Path<Uuid>,
        /// The version the answer must reflect at least.
        #[oai(validator(minimum(value = "0")))]
        min_version: Query<Option<i64>>,
    ) -> Result<OrderLinesResponse, ApiError> {
        let order =
            fresh_order(&state, &auth.0, id.0, min_version.0.map(i64::unsigned_abs)).await?;
        let items = order.lines.0.iter().map(line_view).collect();
        Ok(OrderLinesResponse::Ok(
            Json(LineList { items }),
            etag(order.summary.version),
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
        /// The order's id (UUID).
        id: Path<Uuid>,
        /// The version the answer must reflect at least.
        #[oai(validator(minimum(value = "0")))]
        min_version: Query<Option<i64>>,
    ) -> Result<StatusHistoryResponse, ApiError> {
        let order =
            fresh_order(&state, &auth.0, id.0, min_version.0.map(i64::unsigned_abs)).await?;
        let steps = read::status_history(&state.pool, id.0)
            .await
            .map_err(db)?
            .into_iter()
            .map(|s| {
                Ok(StatusChangeView {
                    version: s.version,
                    status: status_of(&s.status)?,
                    previous_status: s.previous_status.as_deref().map(status_of).transpose()?,
                    note: s.note,
                    principal: s.principal,
                    recorded_at: s.recorded_at,
                })
            })
            .collect::<Result<_, ApiError>>()?;
        Ok(StatusHistoryResponse::Ok(
            Json(StatusHistoryList { items: steps }),
            etag(order.summary.version),
        ))
    }

    /// An order's audit log
    ///
    /// The order's events exactly as the event store recorded them, in version order: never
    /// behind. At most `limit` (1000) per page; `next` continues.
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
        /// The order's id (UUID).
        id: Path<Uuid>,
        /// The `next` of the previous page; absent: from the first event.
        #[oai(validator(max_length = 64))]
        cursor: Query<Option<String>>,
        /// Events per answer, 1 to 1000 (default 1000).
        #[oai(validator(minimum(value = "1"), maximum(value = "1000")))]
        limit: Query<Option<i64>>,
    ) -> Result<OrderEventsResponse, ApiError> {
        let limit = bounded("limit", limit.0, MAX_EVENTS, MAX_EVENTS)?;
        let logged = read::logged_order(&state.pool, id.0)
            .await
            .map_err(db)?
            .filter(|o| can_see_order_of(&auth.0, &o.customer_id, o.store_id))
            .ok_or_else(ApiError::order_not_found)?;
        let after = cursor.0.as_deref().map(decode_event_cursor).transpose()?;
        let events = read::order_events(&state.pool, id.0, after.unwrap_or(0), limit + 1)
            .await
            .map_err(db)?;
        let page = AuditEventPage::of(events, limit);
        Ok(OrderEventsResponse::Ok(Json(page), etag(logged.version)))
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
        /// The customer's id: the `sub` of their token.
        #[oai(validator(max_length = 128, pattern = "^[^\\u0000-\\u001F\\u007F-\\u009F]+$"))]
        id: Path<String>,
        /// Only orders in this status.
        status: Query<Option<Status>>,
        /// Only orders of this store.
        store_id: Query<Option<Uuid>>,
        /// Only orders created at or after this instant: an RFC 3339 timestamp, or a date
        /// (`YYYY-MM-DD`, that day 00:00 UTC).
        from: Query<Option<Bound>>,
        /// Only orders created before this instant: an RFC 3339 timestamp, or a date
        /// (`YYYY-MM-DD`, that day 00:00 UTC).
        to: Query<Option<Bound>>,
        /// Free text (3 to 100 characters) over email, item names and SKUs.
        #[oai(validator(
            max_length = 100,
            pattern = "^[^\\u0000-\\u001F\\u007F-\\u009F]*[^\\s\\u0000-\\u001F\\u007F-\\u009F][^\\u0000-\\u001F\\u007F-\\u009F]+[^\\s\\u0000-\\u001F\\u007F-\\u009F][^\\u0000-\\u001F\\u007F-\\u009F]*$"
        ))]
        q: Query<Option<String>>,
        /// `next` of the previous page.
        cursor: Query<Option<String>>,
        /// Orders per page, 1 to 200 (default 50).
        #[oai(validator(minimum(value = "1"), maximum(value = "200")))]
        limit: Query<Option<i64>>,
    ) -> Result<OrderPageResponse, ApiError> {
        let p = &auth.0;
        let own_only = p.has(Role::Customer)
            && !sees_every_order(p)
            && !p.has(Role::Staff)
            && !p.has(Role::Service)
            && p.memberships.is_empty();
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
            from: from.0.map(Bound::instant),
            to: to.0.map(Bound::instant),
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
        auth: Allowed<ReportReaders>,
        /// First day, inclusive: a date (`YYYY-MM-DD`), or an RFC 3339 timestamp, which
        /// counts as its UTC day.
        from: Query<Bound>,
        /// Last day, inclusive: a date (`YYYY-MM-DD`), or an RFC 3339 timestamp, which counts
        /// as its UTC day.
        to: Query<Bound>,
        /// Only this store (required for staff).
        store_id: Query<Option<Uuid>>,
        /// Ranking: `revenue` (default) or `quantity`, descending.
        sort: Query<Option<SalesSort>>,
        /// Products in the report, 1 to 1000 (default 100).
        #[oai(validator(minimum(value = "1"), maximum(value = "1000")))]
        limit: Query<Option<i64>>,
    ) -> Result<ProductSalesResponse, ApiError> {
        authorize_report(&auth.0, store_id.0)?;
        let (from, to) = (from.0.day(), to.0.day());
        ordered(Some(from), Some(to))?;
        let limit = bounded("limit", limit.0, DEFAULT_REPORT_ROWS, MAX_REPORT_ROWS)?;
        let sort = sort.0.unwrap_or(SalesSort::Revenue);
        let query = ProductSalesQuery {
            from,
            to,
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
            let csv = product_sales_csv(&items).map_err(ApiError::Internal)?;
            return Ok(ProductSalesResponse::Ok(ProductSalesContent::Csv(
                PlainText(csv),
            )));
        }
        Ok(ProductSalesResponse::Ok(ProductSalesContent::Json(Json(
            ProductSalesReport {
                from: Day(from),
                to: Day(to),
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
        auth: Allowed<ReportReaders>,
        /// `day` (default), `week` or `month`.
        granularity: Query<Option<Granularity>>,
        /// First day, inclusive: a date (`YYYY-MM-DD`), or an RFC 3339 timestamp, which
        /// counts as its UTC day.
        from: Query<Option<Bound>>,
        /// Last day, inclusive: a date (`YYYY-MM-DD`), or an RFC 3339 timestamp, which counts
        /// as its UTC day.
        to: Query<Option<Bound>>,
        /// Only this store (required for staff).
        store_id: Query<Option<Uuid>>,
    ) -> Result<SalesSummaryResponse, ApiError> {
        authorize_report(&auth.0, store_id.0)?;
        let (from, to) = (from.0.map(Bound::day), to.0.map(Bound::day));
        ordered(from, to)?;
        let granularity = granularity.0.unwrap_or(Granularity::Day);
        let query = SalesSummaryQuery {
            granularity: match granularity {
                Granularity::Day => read::Granularity::Day,
                Granularity::Week => read::Granularity::Week,
                Granularity::Month => read::Granularity::Month,
            },
            from,
            to,
            store_id: store_id.0,
        };
        let items = read::sales_summary(&state.pool, &query)
            .await
            .map_err(db)?
            .into_iter()
            .map(|r| SalesPeriodView {
                period_start: Day(r.period_start),
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
            from: from.map(Day),
            to: to.map(Day),
            store_id: store_id.0,
            items,
        })))
    }
}
