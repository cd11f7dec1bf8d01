//! The OpenAPI document's examples: one per schema (poem-openapi's `#[oai(example)]`, through
//! [`Example`]), and [`bodies`], the body examples an operation's schema example cannot give
//! (arrays, an order as each command leaves it, one problem per status), which
//! [`super::spec::finish`] puts on the operations. They are built from the views themselves, so
//! they have the fields and types the service answers with; their values tell one story
//! ([`super::example_data`]).

use poem_openapi::types::{Example, ToJSON};
use serde_json::{json, Value};

use super::admin::{NotificationView, ReaderView, RebuildView};
use super::cursor::encode_event_cursor;
use super::example_data as x;
use super::ops::{Check, Readiness};
use super::orders::dto::{
    AddressBody, AddressView, CancelBody, ChangeStatusBody, CreateOrderBody, ItemBody, LineView,
    OrderView, ShipBody, ShipmentView, Status, UpdateItemBody,
};
use super::problem::{FieldProblem, ProblemDetails};
use super::queries::{
    AuditEventView, OrderDetailView, OrderPageView, OrderSummaryView, StatusChangeView,
};
use super::sagas::{SagaStepView, SagaSummary, SagaView};
use super::spec::BodyExamples;
use super::text::Text;

fn text(s: &str) -> Text {
    Text(s.to_owned())
}

fn json_of<T: ToJSON>(value: &T) -> Value {
    value.to_json().unwrap_or_default()
}

/// A list answer: `{"items": [...]}`, with `next` when another page follows.
fn items(listed: &Value, next: Option<String>) -> Value {
    let mut page = serde_json::json!({ "items": listed });
    if let Some(next) = next {
        page["next"] = next.into();
    }
    page
}

// ---- request bodies -------------------------------------------------------------------------

impl Example for AddressBody {
    fn example() -> Self {
        let [name, line1, line2, city, postal_code, country] = x::ADDRESS;
        Self {
            name: text(name),
            line1: text(line1),
            line2: Some(text(line2)),
            city: text(city),
            postal_code: text(postal_code),
            country: text(country),
        }
    }
}

impl Example for ItemBody {
    fn example() -> Self {
        Self {
            sku: text(x::MUG_SKU),
            quantity: x::MUG_QUANTITY,
        }
    }
}

impl Example for CreateOrderBody {
    fn example() -> Self {
        Self {
            customer_id: None,
            store_id: x::STORE_ID,
            currency: Some(text(x::CURRENCY)),
            customer_email: Some(text(x::CUSTOMER_EMAIL)),
            shipping_address: Some(AddressBody::example()),
            items: Some(vec![
                ItemBody {
                    sku: text(x::TEA_SKU),
                    quantity: x::TEA_QUANTITY,
                },
                ItemBody::example(),
            ]),
        }
    }
}

impl Example for UpdateItemBody {
    fn example() -> Self {
        Self { quantity: 3 }
    }
}

impl Example for ChangeStatusBody {
    fn example() -> Self {
        Self {
            status: Status::Preparing,
            note: Some(text("Packing started")),
        }
    }
}

impl Example for ShipBody {
    fn example() -> Self {
        Self {
            carrier: text(x::CARRIER),
            tracking_number: text(x::TRACKING_NUMBER),
            note: Some(text("One parcel, 1.2 kg")),
        }
    }
}

const CANCEL_REASON: &str = "Ordered the wrong size, will order again";

impl Example for CancelBody {
    fn example() -> Self {
        Self {
            reason: text(CANCEL_REASON),
        }
    }
}

// ---- an order -------------------------------------------------------------------------------

impl Example for AddressView {
    fn example() -> Self {
        let [name, line1, line2, city, postal_code, country] = x::ADDRESS;
        Self {
            name: name.to_owned(),
            line1: line1.to_owned(),
            line2: Some(line2.to_owned()),
            city: city.to_owned(),
            postal_code: postal_code.to_owned(),
            country: country.to_owned(),
        }
    }
}

fn line(line_id: i64, sku: &str, name: &str, quantity: i64, unit_price_minor: i64) -> LineView {
    LineView {
        line_id,
        sku: sku.to_owned(),
        name: name.to_owned(),
        quantity,
        unit_price_minor,
        line_total_minor: quantity * unit_price_minor,
    }
}

/// Line 1: the tea, `quantity` packs.
fn tea(quantity: i64) -> LineView {
    line(1, x::TEA_SKU, x::TEA_NAME, quantity, x::TEA_PRICE_MINOR)
}

/// Line 2: the mug.
fn mug() -> LineView {
    line(
        2,
        x::MUG_SKU,
        x::MUG_NAME,
        x::MUG_QUANTITY,
        x::MUG_PRICE_MINOR,
    )
}

impl Example for LineView {
    fn example() -> Self {
        tea(x::TEA_QUANTITY)
    }
}

impl Example for ShipmentView {
    fn example() -> Self {
        Self {
            carrier: x::CARRIER.to_owned(),
            tracking_number: x::TRACKING_NUMBER.to_owned(),
        }
    }
}

/// The example order at `version`, in `status`, with `lines`.
fn order(status: Status, version: i64, lines: Vec<LineView>) -> OrderView {
    OrderView {
        id: x::ORDER_ID,
        version,
        status,
        customer_id: x::CUSTOMER_ID.to_owned(),
        store_id: x::STORE_ID,
        currency: x::CURRENCY.to_owned(),
        customer_email: Some(x::CUSTOMER_EMAIL.to_owned()),
        shipping_address: Some(AddressView::example()),
        total_minor: lines.iter().map(|l| l.line_total_minor).sum(),
        lines,
        shipment: None,
        cancel_reason: None,
    }
}

/// Both lines as the order was created with them.
fn both_lines() -> Vec<LineView> {
    vec![tea(x::TEA_QUANTITY), mug()]
}

impl Example for OrderView {
    /// Confirmed: created with two items (versions 1 to 3), placed (4), confirmed (5).
    fn example() -> Self {
        order(Status::Confirmed, 5, both_lines())
    }
}

impl Example for OrderSummaryView {
    /// Shipped: confirmed (5), preparing (6), shipped (7).
    fn example() -> Self {
        Self {
            id: x::ORDER_ID,
            version: 7,
            status: Status::Shipped,
            customer_id: x::CUSTOMER_ID.to_owned(),
            store_id: x::STORE_ID,
            currency: x::CURRENCY.to_owned(),
            customer_email: Some(x::CUSTOMER_EMAIL.to_owned()),
            total_minor: x::TOTAL_MINOR,
            line_count: 2,
            item_count: x::TEA_QUANTITY + x::MUG_QUANTITY,
            shipment: Some(ShipmentView::example()),
            cancel_reason: None,
            reject_reason: None,
            created_at: x::created_at(),
            updated_at: x::shipped_at(),
            placed_at: Some(x::placed_at()),
            confirmed_at: Some(x::confirmed_at()),
            rejected_at: None,
            preparing_at: Some(x::preparing_at()),
            ready_for_pickup_at: None,
            picked_up_at: None,
            shipped_at: Some(x::shipped_at()),
            delivered_at: None,
            cancelled_at: None,
            discarded_at: None,
        }
    }
}

impl Example for OrderDetailView {
    fn example() -> Self {
        Self {
            summary: OrderSummaryView::example(),
            shipping_address: Some(AddressView::example()),
            lines: both_lines(),
        }
    }
}

impl Example for OrderPageView {
    fn example() -> Self {
        Self {
            items: vec![OrderSummaryView::example()],
            next: Some("AQAGBNcCrlzLPyuMHl1KTHueIYpvDZtMVw".to_owned()),
        }
    }
}

/// A step of the example order's history.
fn step(
    version: i64,
    status: Status,
    previous_status: Option<Status>,
    principal: Option<&str>,
    recorded_at: chrono::DateTime<chrono::Utc>,
) -> StatusChangeView {
    StatusChangeView {
        version,
        status,
        previous_status,
        note: None,
        principal: principal.map(str::to_owned),
        recorded_at,
    }
}

const STAFF: &str = x::STAFF_ID;

impl Example for StatusChangeView {
    fn example() -> Self {
        StatusChangeView {
            note: Some("One parcel, 1.2 kg".to_owned()),
            ..step(
                7,
                Status::Shipped,
                Some(Status::Preparing),
                Some(STAFF),
                x::shipped_at(),
            )
        }
    }
}

/// The example order's status history, oldest first.
fn history() -> Vec<StatusChangeView> {
    vec![
        step(
            1,
            Status::Draft,
            None,
            Some(x::CUSTOMER_ID),
            x::created_at(),
        ),
        step(
            4,
            Status::Placed,
            Some(Status::Draft),
            Some(x::CUSTOMER_ID),
            x::placed_at(),
        ),
        step(
            5,
            Status::Confirmed,
            Some(Status::Placed),
            None,
            x::confirmed_at(),
        ),
        StatusChangeView {
            note: Some("Packing started".to_owned()),
            ..step(
                6,
                Status::Preparing,
                Some(Status::Confirmed),
                Some(STAFF),
                x::preparing_at(),
            )
        },
        StatusChangeView::example(),
    ]
}

/// The metadata the example order's customer requests leave on events.
fn customer_metadata() -> Value {
    json!({
        "correlation_id": "checkout-7f3a9c",
        "causation_id": "checkout-7f3a9c",
        "principal": x::CUSTOMER_ID,
        "traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        "idempotency_key": "c8a1d0e4-checkout",
    })
}

impl Example for AuditEventView {
    /// The order's first event.
    fn example() -> Self {
        let [name, line1, line2, city, postal_code, country] = x::ADDRESS;
        Self {
            version: 1,
            event_id: uuid::Uuid::from_u128(0x0195_9a37_1d58_7c0e_a4b2_6e90_d3f1_8c25),
            event_type: "OrderCreated".to_owned(),
            event_version: "1".to_owned(),
            payload: json!({
                "type": "OrderCreated",
                "order_id": x::ORDER_ID,
                "customer_id": x::CUSTOMER_ID,
                "store_id": x::STORE_ID,
                "currency": x::CURRENCY,
                "customer_email": x::CUSTOMER_EMAIL,
                "shipping_address": {
                    "name": name, "line1": line1, "line2": line2,
                    "city": city, "postal_code": postal_code, "country": country,
                },
            }),
            metadata: customer_metadata(),
            recorded_at: x::created_at(),
        }
    }
}

/// The example order's first two events.
fn events() -> Vec<AuditEventView> {
    let tea = tea(x::TEA_QUANTITY);
    vec![
        AuditEventView::example(),
        AuditEventView {
            version: 2,
            event_id: uuid::Uuid::from_u128(0x0195_9a37_1d58_7c0f_b6c1_2a47_e8d9_3f10),
            event_type: "ItemAdded".to_owned(),
            event_version: "1".to_owned(),
            payload: json!({
                "type": "ItemAdded",
                "line_id": tea.line_id,
                "sku": tea.sku,
                "name": tea.name,
                "quantity": tea.quantity,
                "unit_price_minor": tea.unit_price_minor,
                "line_total_minor": tea.line_total_minor,
                "order_total_minor": tea.line_total_minor,
            }),
            metadata: customer_metadata(),
            recorded_at: x::created_at(),
        },
    ]
}

// ---- sagas ----------------------------------------------------------------------------------

impl Example for SagaStepView {
    fn example() -> Self {
        Self {
            step: "reserve".to_owned(),
            message_id: Some(x::RESERVE_MESSAGE_ID),
            attempt: 1,
            deadline_at: None,
            answer: Some("reserved".to_owned()),
            abandoned: false,
            parked: None,
        }
    }
}

impl Example for SagaView {
    /// The example order's saga once stock is reserved and payment authorized.
    fn example() -> Self {
        Self {
            order_id: x::ORDER_ID,
            status: "confirmed".to_owned(),
            started_at: Some(x::placed_at()),
            deadline_at: None,
            reservation_id: Some("res-5c1e0a7d".to_owned()),
            payment_id: Some("pay-91f3b2c8".to_owned()),
            steps: vec![
                SagaStepView::example(),
                SagaStepView {
                    step: "authorize".to_owned(),
                    message_id: Some(x::AUTHORIZE_MESSAGE_ID),
                    answer: Some("authorized".to_owned()),
                    ..SagaStepView::example()
                },
            ],
        }
    }
}

impl Example for SagaSummary {
    /// Another order's saga, parked for a human.
    fn example() -> Self {
        Self {
            order_id: uuid::Uuid::from_u128(0x8d0c_41f7_2b6e_4a93_b1d5_7e2f_c0a8_9364),
            status: "needs_attention".to_owned(),
            deadline_at: None,
            last_event: "SagaNeedsAttention".to_owned(),
            attention: Some("payment capture failed: card expired".to_owned()),
            started_at: x::at(8, 12, 40),
            updated_at: x::at(11, 47, 2),
        }
    }
}

// ---- admin and operations -------------------------------------------------------------------

impl Example for ReaderView {
    fn example() -> Self {
        Self {
            name: "projector".to_owned(),
            active: true,
            tx_id: "48213977".to_owned(),
            position: 1832,
            lag_events: 0,
            lag_seconds: 0.0,
            updated_at: Some(x::shipped_at()),
        }
    }
}

impl Example for RebuildView {
    fn example() -> Self {
        Self {
            events: 18_342,
            seconds: 4.7,
        }
    }
}

impl Example for NotificationView {
    /// The email telling the example order's customer it is confirmed.
    fn example() -> Self {
        Self {
            id: 412,
            order_id: x::ORDER_ID,
            event_id: x::CONFIRMED_EVENT_ID,
            kind: "confirmed".to_owned(),
            recipient: x::CUSTOMER_EMAIL.to_owned(),
            subject: "Your order 3f2b8c1e at Teehaus Mitte is confirmed".to_owned(),
            status: "sent".to_owned(),
            attempts: 1,
            next_attempt_at: x::confirmed_at(),
            last_error: None,
            created_at: x::confirmed_at(),
            sent_at: Some(x::at(9, 31, 10)),
            requeued_at: None,
        }
    }
}

/// A notification that had failed, just sent back to the queue by an admin.
fn requeued_notification() -> NotificationView {
    NotificationView {
        status: "pending".to_owned(),
        attempts: 3,
        next_attempt_at: x::at(11, 2, 0),
        last_error: Some("451 4.3.0 mailbox temporarily unavailable".to_owned()),
        sent_at: None,
        requeued_at: Some(x::at(11, 2, 0)),
        ..NotificationView::example()
    }
}

fn check(name: &str, ok: bool, detail: Option<&str>) -> Check {
    Check {
        name: name.to_owned(),
        ok,
        detail: detail.map(str::to_owned),
    }
}

impl Example for Check {
    fn example() -> Self {
        check("database", true, None)
    }
}

impl Example for Readiness {
    fn example() -> Self {
        Self {
            ready: true,
            checks: vec![
                Check::example(),
                check("migrations", true, None),
                check("nats", true, None),
                check("projector", true, None),
            ],
        }
    }
}

// ---- problems -------------------------------------------------------------------------------

/// One problem per status, as the service renders it.
fn problem(status: i32, slug: &str, detail: &str, errors: Vec<FieldProblem>) -> Value {
    let mut title = slug.replace('-', " ");
    if let Some(first) = title.get_mut(0..1) {
        first.make_ascii_uppercase();
    }
    json_of(&ProblemDetails {
        type_uri: format!("/problems/{slug}"),
        title,
        status,
        detail: detail.to_owned(),
        instance: Some("urn:request:checkout-7f3a9c".to_owned()),
        errors,
    })
}

fn problems() -> Vec<(u16, Value)> {
    let quantity = FieldProblem {
        field: "items[0].quantity".to_owned(),
        message: "quantity must be between 1 and 10000, got 0".to_owned(),
    };
    vec![
        (400, problem(400, "invalid-parameter", "path `id`: expected a UUID", vec![])),
        (401, problem(401, "token-missing", "no bearer token; send `Authorization: Bearer <token>`", vec![])),
        (403, problem(403, "forbidden", "customers list only their own orders", vec![])),
        (404, problem(404, "order-not-found", "order does not exist", vec![])),
        (406, problem(406, "not-acceptable", "this resource is served as application/json only", vec![])),
        (409, problem(409, "illegal-transition", "an order cannot go from draft to shipped", vec![])),
        (410, problem(410, "resume-too-old", "the feed holds no message with that id any more; read the order list, then open the feed from now", vec![])),
        (412, problem(412, "version-mismatch", "the order is at version 5, not 4", vec![])),
        (413, problem(413, "body-too-large", "the request body exceeds the size limit", vec![])),
        (415, problem(415, "unsupported-media-type", "the request's content type is not supported; send application/json", vec![])),
        (422, problem(422, "validation-failed", "the request has 1 invalid value(s)", vec![quantity])),
        (429, problem(429, "rate-limited", "too many commands; retry after 1 s", vec![])),
        (500, problem(500, "internal-error", "internal error", vec![])),
        (503, problem(503, "service-unavailable", "service temporarily unavailable", vec![])),
    ]
}

// ---- text bodies ----------------------------------------------------------------------------

/// The product-sales report of `ProductSalesReport`'s example, as CSV.
fn product_sales_csv() -> String {
    let row = |sku: &str, name: &str, quantity: i64, price: i64, orders: i64| {
        let (store, currency, revenue) = (x::STORE_ID, x::CURRENCY, quantity * price);
        format!("{store},{sku},\"{name}\",{currency},{quantity},{revenue},{orders}\r\n")
    };
    [
        "store_id,sku,name,currency,quantity,revenue_minor,orders\r\n".to_owned(),
        row(x::TEA_SKU, x::TEA_NAME, 186, x::TEA_PRICE_MINOR, 121),
        row(x::MUG_SKU, x::MUG_NAME, 64, x::MUG_PRICE_MINOR, 58),
    ]
    .concat()
}

/// A few lines of the Prometheus exposition.
const METRICS: &str = "\
# HELP http_requests_total HTTP requests by route, method and status
# TYPE http_requests_total counter
http_requests_total{method=\"GET\",route=\"getOrder\",status=\"200\"} 9051
http_requests_total{method=\"POST\",route=\"createOrder\",status=\"201\"} 1432
";

/// The example order's feed: the message telling it shipped.
fn order_live_message() -> Value {
    let data = json!({
        "order_id": x::ORDER_ID,
        "version": 7,
        "event_id": "0195a0c2-41d7-7e3b-9f08-5c6d2e1a7b94",
        "event_type": "OrderShipped",
        "payload": {
            "type": "OrderShipped",
            "carrier": x::CARRIER,
            "tracking_number": x::TRACKING_NUMBER,
            "note": "One parcel, 1.2 kg",
        },
        "recorded_at": x::shipped_at(),
        "status": "shipped",
        "previous_status": "preparing",
    });
    json!({ "event": "event", "id": "7", "data": data.to_string() })
}

/// The example store's feed: the same event, with its log position (`<tx>.<position>`) as id.
fn store_live_message() -> Value {
    let mut message = order_live_message();
    message["id"] = "48213977.1832".into();
    message
}

// ---- the bodies of the operations -----------------------------------------------------------

/// What each command answers: the example order as that command leaves it.
fn commands() -> Vec<(&'static str, OrderView)> {
    let draft = |version, lines| order(Status::Draft, version, lines);
    vec![
        ("createOrder", draft(3, both_lines())),
        ("addItem", draft(3, both_lines())),
        ("updateItem", draft(4, vec![tea(3), mug()])),
        ("removeItem", draft(4, vec![tea(x::TEA_QUANTITY)])),
        ("discardDraft", order(Status::Discarded, 4, both_lines())),
        ("placeOrder", order(Status::Placed, 4, both_lines())),
        (
            "changeOrderStatus",
            order(Status::Preparing, 6, both_lines()),
        ),
        (
            "shipOrder",
            OrderView {
                shipment: Some(ShipmentView::example()),
                ..order(Status::Shipped, 7, both_lines())
            },
        ),
        (
            "cancelOrder",
            OrderView {
                cancel_reason: Some(CANCEL_REASON.to_owned()),
                ..order(Status::Cancelled, 6, both_lines())
            },
        ),
    ]
}

/// The body examples of the operations, for [`super::spec::finish`].
pub fn bodies() -> BodyExamples {
    const JSON: &str = "application/json";
    let mut answers: Vec<(&'static str, u16, &'static str, Value)> = commands()
        .iter()
        .map(|(operation, view)| {
            let status = if *operation == "createOrder" {
                201
            } else {
                200
            };
            (*operation, status, JSON, json_of(view))
        })
        .collect();
    let not_ready = Readiness {
        ready: false,
        checks: vec![
            Check::example(),
            check("migrations", true, None),
            check("nats", false, Some("connection refused (127.0.0.1:4222)")),
            check("projector", true, None),
        ],
    };
    answers.extend([
        (
            "listOrderItems",
            200,
            JSON,
            items(&json_of(&both_lines()), None),
        ),
        (
            "getStatusHistory",
            200,
            JSON,
            items(&json_of(&history()), None),
        ),
        (
            "getOrderEvents",
            200,
            JSON,
            items(&json_of(&events()), Some(encode_event_cursor(3))),
        ),
        (
            "listReaders",
            200,
            JSON,
            items(&json_of(&vec![ReaderView::example()]), None),
        ),
        (
            "listSagas",
            200,
            JSON,
            items(&json_of(&vec![SagaSummary::example()]), None),
        ),
        (
            "listNotifications",
            200,
            JSON,
            items(&json_of(&vec![NotificationView::example()]), None),
        ),
        (
            "retryNotification",
            200,
            JSON,
            json_of(&requeued_notification()),
        ),
        ("ready", 503, JSON, json_of(&not_ready)),
        (
            "productSalesReport",
            200,
            "text/csv",
            product_sales_csv().into(),
        ),
        ("live", 200, "text/plain", "ok".into()),
        ("metrics", 200, "text/plain", METRICS.into()),
        ("orderLive", 200, "text/event-stream", order_live_message()),
        ("storeLive", 200, "text/event-stream", store_live_message()),
    ]);
    BodyExamples {
        answers,
        problems: problems(),
    }
}
