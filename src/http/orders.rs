//! Order commands (`POST /v1/orders`, items, place, status, ship, cancel, discard), each
//! answering with the order as the command left it. Bodies are parsed into domain values here;
//! the aggregate decides the rest. Reads are served from the read models (`queries.rs`).

// Handlers take one argument per poem-openapi extractor (state, request, auth, path, body,
// Idempotency-Key, If-Match), and `run` receives them all.
#![expect(clippy::too_many_arguments)]

use order_domain::{
    AddressLine, Carrier, CountryCode, CreateOrder, Currency, CustomerId, Email, LineId, NewItem,
    Note, Order, OrderCommand, OrderId, OrderStatus, PostalCode, Quantity, Reason, ShippingAddress,
    Sku, StoreId, TrackingNumber, ValueError,
};
use poem::web::Data;
use poem::Request;
use poem_openapi::param::{Header, Path};
use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, Enum, Object, OpenApi};
use serde::Serialize;
use uuid::Uuid;

use super::auth::Role;
use super::command::{etag, metadata, parse_if_match, IdempotencyKey};
use super::problem::{ApiError, FieldProblem};
use super::security::{authorize_order, BearerAuth, OrderAction};
use super::ApiTags;
use crate::state::AppState;
use crate::store::orders::CommandRequest;

/// Most lines one create request may carry (the order itself holds at most as many).
const MAX_ITEMS: usize = order_domain::MAX_LINES;

// ---- request bodies -------------------------------------------------------------------------

/// A postal address.
#[derive(Debug, Clone, Object, Serialize)]
#[oai(deny_unknown_fields)]
pub struct AddressBody {
    #[oai(validator(max_length = 200))]
    pub name: String,
    #[oai(validator(max_length = 200))]
    pub line1: String,
    #[oai(validator(max_length = 200))]
    pub line2: Option<String>,
    #[oai(validator(max_length = 200))]
    pub city: String,
    #[oai(validator(max_length = 20))]
    pub postal_code: String,
    /// ISO 3166-1 alpha-2, e.g. `DE`.
    #[oai(validator(max_length = 2))]
    pub country: String,
}

/// One product and how many.
#[derive(Debug, Clone, Object, Serialize)]
#[oai(deny_unknown_fields)]
pub struct ItemBody {
    #[oai(validator(max_length = 64))]
    pub sku: String,
    /// 1 to 10 000.
    pub quantity: i64,
}

/// Opens a draft order. Prices, totals and status are never sent by clients.
#[derive(Debug, Clone, Object, Serialize)]
#[oai(deny_unknown_fields)]
pub struct CreateOrderBody {
    /// The customer; customers may omit it (it is their token's `sub`).
    #[oai(validator(max_length = 128))]
    pub customer_id: Option<String>,
    pub store_id: Uuid,
    /// ISO 4217; defaults to the store's currency.
    #[oai(validator(max_length = 3))]
    pub currency: Option<String>,
    #[oai(validator(max_length = 254))]
    pub customer_email: Option<String>,
    pub shipping_address: Option<AddressBody>,
    /// Initial items, at most 100.
    #[oai(validator(max_items = 100))]
    pub items: Option<Vec<ItemBody>>,
}

/// Sets a line's quantity.
#[derive(Debug, Clone, Object, Serialize)]
#[oai(deny_unknown_fields)]
pub struct UpdateItemBody {
    /// 1 to 10 000.
    pub quantity: i64,
}

/// A status an order can be in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Enum, Serialize)]
#[oai(rename_all = "snake_case")]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Draft,
    Placed,
    Confirmed,
    Rejected,
    Preparing,
    ReadyForPickup,
    PickedUp,
    Shipped,
    Delivered,
    Cancelled,
    Discarded,
}

impl From<Status> for OrderStatus {
    fn from(s: Status) -> Self {
        match s {
            Status::Draft => Self::Draft,
            Status::Placed => Self::Placed,
            Status::Confirmed => Self::Confirmed,
            Status::Rejected => Self::Rejected,
            Status::Preparing => Self::Preparing,
            Status::ReadyForPickup => Self::ReadyForPickup,
            Status::PickedUp => Self::PickedUp,
            Status::Shipped => Self::Shipped,
            Status::Delivered => Self::Delivered,
            Status::Cancelled => Self::Cancelled,
            Status::Discarded => Self::Discarded,
        }
    }
}

impl From<OrderStatus> for Status {
    fn from(s: OrderStatus) -> Self {
        match s {
            OrderStatus::Draft => Self::Draft,
            OrderStatus::Placed => Self::Placed,
            OrderStatus::Confirmed => Self::Confirmed,
            OrderStatus::Rejected => Self::Rejected,
            OrderStatus::Preparing => Self::Preparing,
            OrderStatus::ReadyForPickup => Self::ReadyForPickup,
            OrderStatus::PickedUp => Self::PickedUp,
            OrderStatus::Shipped => Self::Shipped,
            OrderStatus::Delivered => Self::Delivered,
            OrderStatus::Cancelled => Self::Cancelled,
            OrderStatus::Discarded => Self::Discarded,
        }
    }
}

/// Moves an order through fulfilment: `preparing`, `ready_for_pickup`, `picked_up`,
/// `delivered`. Shipping and cancelling have their own operations.
#[derive(Debug, Clone, Object, Serialize)]
#[oai(deny_unknown_fields)]
pub struct ChangeStatusBody {
    pub status: Status,
    #[oai(validator(max_length = 500))]
    pub note: Option<String>,
}

/// Hands the order to a carrier.
#[derive(Debug, Clone, Object, Serialize)]
#[oai(deny_unknown_fields)]
pub struct ShipBody {
    #[oai(validator(max_length = 64))]
    pub carrier: String,
    #[oai(validator(max_length = 64))]
    pub tracking_number: String,
    #[oai(validator(max_length = 500))]
    pub note: Option<String>,
}

/// Cancels a placed order (allowed until it is shipped or picked up).
#[derive(Debug, Clone, Object, Serialize)]
#[oai(deny_unknown_fields)]
pub struct CancelBody {
    #[oai(validator(max_length = 500))]
    pub reason: String,
}

// ---- responses ------------------------------------------------------------------------------

/// A postal address.
#[derive(Debug, Clone, Object)]
pub struct AddressView {
    pub name: String,
    pub line1: String,
    #[oai(skip_serializing_if_is_none)]
    pub line2: Option<String>,
    pub city: String,
    pub postal_code: String,
    pub country: String,
}

/// One line, with name and unit price as they were when the item was added.
#[derive(Debug, Clone, Object)]
pub struct LineView {
    pub line_id: u32,
    pub sku: String,
    pub name: String,
    pub quantity: u32,
    pub unit_price_minor: i64,
    pub line_total_minor: i64,
}

/// Carrier and tracking number.
#[derive(Debug, Clone, Object)]
pub struct ShipmentView {
    pub carrier: String,
    pub tracking_number: String,
}

/// An order.
#[derive(Debug, Clone, Object)]
pub struct OrderView {
    pub id: Uuid,
    /// Number of events; the ETag, and what `If-Match` expects.
    pub version: u64,
    pub status: Status,
    pub customer_id: String,
    pub store_id: Uuid,
    pub currency: String,
    #[oai(skip_serializing_if_is_none)]
    pub customer_email: Option<String>,
    #[oai(skip_serializing_if_is_none)]
    pub shipping_address: Option<AddressView>,
    pub lines: Vec<LineView>,
    /// Sum of line totals, in minor units of `currency`.
    pub total_minor: i64,
    #[oai(skip_serializing_if_is_none)]
    pub shipment: Option<ShipmentView>,
    #[oai(skip_serializing_if_is_none)]
    pub cancel_reason: Option<String>,
}

impl OrderView {
    /// The view of an existing order; `None` for one never created.
    pub fn of(order: &Order) -> Option<Self> {
        Some(Self {
            id: order.id()?.as_uuid(),
            version: order.version(),
            status: order.status()?.into(),
            customer_id: order.customer_id()?.to_string(),
            store_id: order.store_id()?.as_uuid(),
            currency: order.currency()?.to_string(),
            customer_email: order.customer_email().map(|e| e.as_str().to_owned()),
            shipping_address: order.shipping_address().map(|a| AddressView {
                name: a.name.to_string(),
                line1: a.line1.to_string(),
                line2: a.line2.as_ref().map(ToString::to_string),
                city: a.city.to_string(),
                postal_code: a.postal_code.to_string(),
                country: a.country.as_str().to_owned(),
            }),
            lines: lines_of(order),
            total_minor: order.total_minor(),
            shipment: order.shipment().map(|s| ShipmentView {
                carrier: s.carrier.to_string(),
                tracking_number: s.tracking_number.to_string(),
            }),
            cancel_reason: order.cancel_reason().map(str::to_owned),
        })
    }
}

fn lines_of(order: &Order) -> Vec<LineView> {
    order
        .lines()
        .iter()
        .map(|l| LineView {
            line_id: l.line_id.get(),
            sku: l.sku.to_string(),
            name: l.name.to_string(),
            quantity: l.quantity,
            unit_price_minor: l.unit_price_minor,
            line_total_minor: l.line_total_minor,
        })
        .collect()
}

#[derive(ApiResponse)]
pub enum CreatedResponse {
    /// The order was created (or, for a retried request, had been).
    #[oai(status = 201)]
    Created(
        Json<OrderView>,
        #[oai(header = "Location")] String,
        #[oai(header = "ETag")] String,
        #[oai(header = "Idempotent-Replayed")] Option<bool>,
    ),
}

#[derive(ApiResponse)]
pub enum OrderResponse {
    /// The order after the command.
    #[oai(status = 200)]
    Ok(
        Json<OrderView>,
        #[oai(header = "ETag")] String,
        #[oai(header = "Idempotent-Replayed")] Option<bool>,
    ),
}

// ---- parsing --------------------------------------------------------------------------------

/// Collects field problems while parsing a body, so one answer lists all of them.
#[derive(Default)]
struct Fields(Vec<FieldProblem>);

impl Fields {
    fn take<T>(&mut self, field: impl Into<String>, r: Result<T, ValueError>) -> Option<T> {
        r.map_err(|e| {
            self.0.push(FieldProblem {
                field: field.into(),
                message: e.to_string(),
            });
        })
        .ok()
    }

    fn finish<T>(self, value: Option<T>) -> Result<T, ApiError> {
        match value {
            Some(v) if self.0.is_empty() => Ok(v),
            _ => Err(ApiError::invalid_fields(self.0)),
        }
    }
}

fn parse_address(f: &mut Fields, a: &AddressBody) -> Option<ShippingAddress> {
    let name = f.take("shipping_address.name", AddressLine::parse(a.name.clone()));
    let line1 = f.take(
        "shipping_address.line1",
        AddressLine::parse(a.line1.clone()),
    );
    let line2 = match &a.line2 {
        Some(l) => Some(f.take("shipping_address.line2", AddressLine::parse(l.clone()))?),
        None => None,
    };
    let city = f.take("shipping_address.city", AddressLine::parse(a.city.clone()));
    let postal_code = f.take(
        "shipping_address.postal_code",
        PostalCode::parse(a.postal_code.clone()),
    );
    let country = f.take("shipping_address.country", CountryCode::parse(&a.country));
    Some(ShippingAddress {
        name: name?,
        line1: line1?,
        line2,
        city: city?,
        postal_code: postal_code?,
        country: country?,
    })
}

fn parse_items(f: &mut Fields, items: &[ItemBody]) -> Option<Vec<NewItem>> {
    let parsed: Vec<Option<NewItem>> = items
        .iter()
        .enumerate()
        .map(|(i, item)| {
            let sku = f.take(format!("items[{i}].sku"), Sku::parse(item.sku.clone()));
            let quantity = f.take(
                format!("items[{i}].quantity"),
                Quantity::parse(item.quantity),
            );
            Some(NewItem {
                sku: sku?,
                quantity: quantity?,
            })
        })
        .collect();
    parsed.into_iter().collect()
}

/// Parses an optional field: absent is `None`; invalid is `None` with the problem recorded.
fn optional<T>(
    f: &mut Fields,
    field: &str,
    raw: Option<&String>,
    parse: impl Fn(String) -> Result<T, ValueError>,
) -> Option<T> {
    f.take(field, parse(raw?.clone()))
}

/// The operations of this module.
#[derive(Debug)]
pub struct OrdersApi;

/// Runs one command on an existing order and answers with the order after it.
#[expect(
    clippy::too_many_arguments,
    reason = "one place that every command endpoint shares"
)]
async fn run(
    state: &AppState,
    req: &Request,
    auth: &BearerAuth,
    order_id: Uuid,
    action: OrderAction,
    command: OrderCommand,
    operation: &str,
    body: &impl Serialize,
    idempotency_key: Option<String>,
    if_match: Option<String>,
) -> Result<OrderResponse, ApiError> {
    let principal = &auth.0;
    let key = IdempotencyKey::parse(principal, idempotency_key)?;
    let expected_version = parse_if_match(if_match.as_deref())?;
    let mark = key
        .as_ref()
        .map(|k| k.mark(&format!("{operation} {order_id}"), body));
    let executed = state
        .orders
        .execute(
            CommandRequest {
                order_id: OrderId::from_uuid(order_id),
                command,
                mark,
                expected_version,
                metadata: metadata(req, principal, key.as_ref()),
            },
            |order| authorize_order(principal, order, action),
        )
        .await?;
    let view = OrderView::of(&executed.order).ok_or_else(ApiError::order_not_found)?;
    Ok(OrderResponse::Ok(
        Json(view.clone()),
        etag(view.version),
        executed.replayed.then_some(true),
    ))
}

fn text<T>(
    field: &str,
    raw: &str,
    parse: impl Fn(String) -> Result<T, ValueError>,
) -> Result<T, ApiError> {
    parse(raw.to_owned()).map_err(|e| ApiError::invalid_field(field, &e))
}

fn opt_text<T>(
    field: &str,
    raw: Option<&String>,
    parse: impl Fn(String) -> Result<T, ValueError>,
) -> Result<Option<T>, ApiError> {
    raw.map(|r| text(field, r, parse)).transpose()
}

#[OpenApi(prefix_path = "/v1", tag = "ApiTags::Orders")]
impl OrdersApi {
    /// Create a draft order
    ///
    /// With an `Idempotency-Key`, the order id is derived from the caller and the key, so a
    /// retried request creates nothing new and answers the same.
    #[oai(path = "/orders", method = "post", operation_id = "createOrder")]
    async fn create_order(
        &self,
        state: Data<&AppState>,
        req: &Request,
        auth: BearerAuth,
        body: Json<CreateOrderBody>,
        #[oai(name = "Idempotency-Key")] idempotency_key: Header<Option<String>>,
    ) -> Result<CreatedResponse, ApiError> {
        let principal = &auth.0;
        let key = IdempotencyKey::parse(principal, idempotency_key.0)?;
        let body = body.0;

        // Who may open an order for whom, and where.
        let customer_raw = if principal.has(Role::Customer)
            && !principal.has(Role::Admin)
            && !principal.has(Role::Service)
        {
            match &body.customer_id {
                Some(c) if *c != principal.subject => {
                    return Err(ApiError::forbidden(
                        "customers create orders only for themselves",
                    ));
                }
                _ => principal.subject.clone(),
            }
        } else if principal.has(Role::Admin)
            || principal.has(Role::Service)
            || principal.has(Role::Staff)
        {
            if principal.has(Role::Staff)
                && !principal.has(Role::Admin)
                && !principal.has(Role::Service)
                && !principal.can_access_store(body.store_id)
            {
                return Err(ApiError::forbidden(
                    "staff create orders only in their own stores",
                ));
            }
            body.customer_id.clone().ok_or_else(|| {
                ApiError::invalid_fields(vec![FieldProblem {
                    field: "customer_id".into(),
                    message: "customer_id is required unless a customer creates its own order"
                        .into(),
                }])
            })?
        } else {
            return Err(ApiError::forbidden("this role may only read orders"));
        };

        let mut f = Fields::default();
        let customer_id = f.take("customer_id", CustomerId::parse(customer_raw));
        let currency = optional(&mut f, "currency", body.currency.as_ref(), |c| {
            Currency::parse(&c)
        });
        let customer_email = optional(
            &mut f,
            "customer_email",
            body.customer_email.as_ref(),
            Email::parse,
        );
        let shipping_address = body
            .shipping_address
            .as_ref()
            .and_then(|a| parse_address(&mut f, a));
        let items = parse_items(&mut f, body.items.as_deref().unwrap_or_default());
        let parsed = (|| Some((customer_id?, items?)))();
        let (customer_id, items) = f.finish(parsed)?;
        debug_assert!(items.len() <= MAX_ITEMS);

        let store = state
            .catalog
            .store(body.store_id)
            .await
            .map_err(ApiError::infra)?
            .ok_or_else(|| ApiError::Invalid {
                slug: "unknown-store",
                detail: format!("store {} does not exist", body.store_id),
                errors: vec![],
            })?;
        let currency = match currency {
            Some(c) => c,
            None => Currency::parse(&store.currency).map_err(|e| ApiError::Internal(e.into()))?,
        };

        let order_id = key
            .as_ref()
            .map_or_else(OrderId::new, |k| OrderId::from_uuid(k.id()));
        let mark = key.as_ref().map(|k| k.mark("createOrder", &body));
        let executed = state
            .orders
            .execute(
                CommandRequest {
                    order_id,
                    command: OrderCommand::CreateOrder(Box::new(CreateOrder {
                        order_id,
                        customer_id,
                        store_id: StoreId::from_uuid(body.store_id),
                        currency,
                        customer_email,
                        shipping_address,
                        items,
                    })),
                    mark,
                    expected_version: None,
                    metadata: metadata(req, principal, key.as_ref()),
                },
                // A retried create is answered only to the caller that may see the order.
                |order| authorize_order(principal, order, OrderAction::Read),
            )
            .await?;
        let view = OrderView::of(&executed.order).ok_or_else(ApiError::order_not_found)?;
        Ok(CreatedResponse::Created(
            Json(view.clone()),
            format!("/v1/orders/{}", view.id),
            etag(view.version),
            executed.replayed.then_some(true),
        ))
    }

    /// Add an item to a draft
    ///
    /// Name and unit price come from the store's catalog and are kept with the line. Adding a
    /// SKU already on the order raises that line's quantity.
    #[oai(path = "/orders/:id/items", method = "post", operation_id = "addItem")]
    async fn add_item(
        &self,
        state: Data<&AppState>,
        req: &Request,
        auth: BearerAuth,
        id: Path<Uuid>,
        body: Json<ItemBody>,
        #[oai(name = "Idempotency-Key")] idempotency_key: Header<Option<String>>,
        #[oai(name = "If-Match")] if_match: Header<Option<String>>,
    ) -> Result<OrderResponse, ApiError> {
        let mut f = Fields::default();
        let sku = f.take("sku", Sku::parse(body.sku.clone()));
        let quantity = f.take("quantity", Quantity::parse(body.quantity));
        let (sku, quantity) = f.finish((|| Some((sku?, quantity?)))())?;
        run(
            &state,
            req,
            &auth,
            id.0,
            OrderAction::Shop,
            OrderCommand::AddItem { sku, quantity },
            "addItem",
            &body.0,
            idempotency_key.0,
            if_match.0,
        )
        .await
    }

    /// Change a line's quantity
    #[oai(
        path = "/orders/:id/items/:line_id",
        method = "patch",
        operation_id = "updateItem"
    )]
    async fn update_item(
        &self,
        state: Data<&AppState>,
        req: &Request,
        auth: BearerAuth,
        id: Path<Uuid>,
        line_id: Path<u32>,
        body: Json<UpdateItemBody>,
        #[oai(name = "Idempotency-Key")] idempotency_key: Header<Option<String>>,
        #[oai(name = "If-Match")] if_match: Header<Option<String>>,
    ) -> Result<OrderResponse, ApiError> {
        let quantity =
            Quantity::parse(body.quantity).map_err(|e| ApiError::invalid_field("quantity", &e))?;
        let command = OrderCommand::UpdateItemQuantity {
            line_id: LineId::new(line_id.0),
            quantity,
        };
        run(
            &state,
            req,
            &auth,
            id.0,
            OrderAction::Shop,
            command,
            &format!("updateItem {}", line_id.0),
            &body.0,
            idempotency_key.0,
            if_match.0,
        )
        .await
    }

    /// Remove a line
    #[oai(
        path = "/orders/:id/items/:line_id",
        method = "delete",
        operation_id = "removeItem"
    )]
    async fn remove_item(
        &self,
        state: Data<&AppState>,
        req: &Request,
        auth: BearerAuth,
        id: Path<Uuid>,
        line_id: Path<u32>,
        #[oai(name = "Idempotency-Key")] idempotency_key: Header<Option<String>>,
        #[oai(name = "If-Match")] if_match: Header<Option<String>>,
    ) -> Result<OrderResponse, ApiError> {
        let command = OrderCommand::RemoveItem {
            line_id: LineId::new(line_id.0),
        };
        run(
            &state,
            req,
            &auth,
            id.0,
            OrderAction::Shop,
            command,
            &format!("removeItem {}", line_id.0),
            &(),
            idempotency_key.0,
            if_match.0,
        )
        .await
    }

    /// Place a draft
    ///
    /// Starts the saga that reserves stock and authorizes payment; the order is then
    /// `confirmed` or `rejected`.
    #[oai(
        path = "/orders/:id/place",
        method = "post",
        operation_id = "placeOrder"
    )]
    async fn place(
        &self,
        state: Data<&AppState>,
        req: &Request,
        auth: BearerAuth,
        id: Path<Uuid>,
        #[oai(name = "Idempotency-Key")] idempotency_key: Header<Option<String>>,
        #[oai(name = "If-Match")] if_match: Header<Option<String>>,
    ) -> Result<OrderResponse, ApiError> {
        run(
            &state,
            req,
            &auth,
            id.0,
            OrderAction::Shop,
            OrderCommand::PlaceOrder,
            "placeOrder",
            &(),
            idempotency_key.0,
            if_match.0,
        )
        .await
    }

    /// Move an order through fulfilment
    #[oai(
        path = "/orders/:id/status",
        method = "post",
        operation_id = "changeOrderStatus"
    )]
    async fn change_status(
        &self,
        state: Data<&AppState>,
        req: &Request,
        auth: BearerAuth,
        id: Path<Uuid>,
        body: Json<ChangeStatusBody>,
        #[oai(name = "Idempotency-Key")] idempotency_key: Header<Option<String>>,
        #[oai(name = "If-Match")] if_match: Header<Option<String>>,
    ) -> Result<OrderResponse, ApiError> {
        let note = opt_text("note", body.note.as_ref(), Note::parse)?;
        let command = OrderCommand::ChangeStatus {
            status: body.status.into(),
            note,
        };
        run(
            &state,
            req,
            &auth,
            id.0,
            OrderAction::Fulfil,
            command,
            "changeOrderStatus",
            &body.0,
            idempotency_key.0,
            if_match.0,
        )
        .await
    }

    /// Ship an order
    #[oai(path = "/orders/:id/ship", method = "post", operation_id = "shipOrder")]
    async fn ship(
        &self,
        state: Data<&AppState>,
        req: &Request,
        auth: BearerAuth,
        id: Path<Uuid>,
        body: Json<ShipBody>,
        #[oai(name = "Idempotency-Key")] idempotency_key: Header<Option<String>>,
        #[oai(name = "If-Match")] if_match: Header<Option<String>>,
    ) -> Result<OrderResponse, ApiError> {
        let mut f = Fields::default();
        let carrier = f.take("carrier", Carrier::parse(body.carrier.clone()));
        let tracking_number = f.take(
            "tracking_number",
            TrackingNumber::parse(body.tracking_number.clone()),
        );
        let note = optional(&mut f, "note", body.note.as_ref(), Note::parse);
        let (carrier, tracking_number) = f.finish((|| Some((carrier?, tracking_number?)))())?;
        let command = OrderCommand::ShipOrder {
            carrier,
            tracking_number,
            note,
        };
        run(
            &state,
            req,
            &auth,
            id.0,
            OrderAction::Fulfil,
            command,
            "shipOrder",
            &body.0,
            idempotency_key.0,
            if_match.0,
        )
        .await
    }

    /// Cancel an order
    #[oai(
        path = "/orders/:id/cancel",
        method = "post",
        operation_id = "cancelOrder"
    )]
    async fn cancel(
        &self,
        state: Data<&AppState>,
        req: &Request,
        auth: BearerAuth,
        id: Path<Uuid>,
        body: Json<CancelBody>,
        #[oai(name = "Idempotency-Key")] idempotency_key: Header<Option<String>>,
        #[oai(name = "If-Match")] if_match: Header<Option<String>>,
    ) -> Result<OrderResponse, ApiError> {
        let reason = text("reason", &body.reason, Reason::parse)?;
        run(
            &state,
            req,
            &auth,
            id.0,
            OrderAction::Shop,
            OrderCommand::CancelOrder { reason },
            "cancelOrder",
            &body.0,
            idempotency_key.0,
            if_match.0,
        )
        .await
    }

    /// Discard a draft
    #[oai(path = "/orders/:id", method = "delete", operation_id = "discardDraft")]
    async fn discard(
        &self,
        state: Data<&AppState>,
        req: &Request,
        auth: BearerAuth,
        id: Path<Uuid>,
        #[oai(name = "Idempotency-Key")] idempotency_key: Header<Option<String>>,
        #[oai(name = "If-Match")] if_match: Header<Option<String>>,
    ) -> Result<OrderResponse, ApiError> {
        run(
            &state,
            req,
            &auth,
            id.0,
            OrderAction::Shop,
            OrderCommand::DiscardDraft,
            "discardDraft",
            &(),
            idempotency_key.0,
            if_match.0,
        )
        .await
    }
}
