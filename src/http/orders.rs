//! Order commands (`POST /v1/orders`, items, place, status, ship, cancel, discard), each
//! answering with the order as the command left it. Bodies ([`dto`]) are parsed into domain
//! values (`orders/parse.rs`); the aggregate decides the rest. Reads are served from the read models
//! (`queries.rs`).

// Handlers take one argument per poem-openapi extractor (state, request, auth, path, body,
// Idempotency-Key, If-Match), and `run` receives them all.
#![expect(clippy::too_many_arguments)]

pub mod dto;
mod parse;

use order_domain::{
    Carrier, CreateOrder, Currency, LineId, Note, OrderCommand, OrderId, Quantity, Reason, Sku,
    StoreId, TrackingNumber,
};
use poem::web::Data;
use poem::Request;
use poem_openapi::param::{Header, Path};
use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, OpenApi};
use serde::Serialize;
use uuid::Uuid;

use self::dto::{
    CancelBody, ChangeStatusBody, CreateOrderBody, ItemBody, OrderView, ShipBody, UpdateItemBody,
};
use self::parse::{opt_text, optional, parse_create, text, Fields};
use super::auth::{Principal, Role};
use super::command::{etag, metadata, parse_if_match, IdempotencyKey};
use super::problem::{ApiError, FieldProblem};
use super::security::{authorize_order, Allowed, OrderAction, Shoppers, StoreHands};
use super::spec::ApiTags;
use crate::state::AppState;
use crate::store::orders::CommandRequest;

// ---- responses ------------------------------------------------------------------------------

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
    principal: &Principal,
    order_id: Uuid,
    action: OrderAction,
    command: OrderCommand,
    operation: &str,
    body: &impl Serialize,
    idempotency_key: Option<String>,
    if_match: Option<String>,
) -> Result<OrderResponse, ApiError> {
    state.throttle.command(&principal.subject)?;
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

// ---- creating -------------------------------------------------------------------------------

/// Who may open an order for whom, and where: customers only for themselves (their token's
/// `sub`); staff for anyone in their own stores; admins and services for anyone anywhere
/// (staff, admins and services must name the customer). Returns the customer's raw id.
fn customer_of_new_order(
    principal: &Principal,
    body: &CreateOrderBody,
) -> Result<String, ApiError> {
    let is = |role| principal.has(role);
    if is(Role::Customer) && !is(Role::Admin) && !is(Role::Service) {
        return match &body.customer_id {
            Some(c) if c.0 != principal.subject => Err(ApiError::forbidden(
                "customers create orders only for themselves",
            )),
            _ => Ok(principal.subject.clone()),
        };
    }
    if !(is(Role::Admin) || is(Role::Service) || is(Role::Staff) || is(Role::Merchant)) {
        return Err(ApiError::forbidden("this role may only read orders"));
    }
    if !principal.can_access_store(body.store_id) {
        return Err(ApiError::forbidden(
            "staff, members and store-scoped services create orders only in their own stores",
        ));
    }
    body.customer_id.clone().map(String::from).ok_or_else(|| {
        ApiError::invalid_fields(vec![FieldProblem {
            field: "customer_id".into(),
            message: "customer_id is required unless a customer creates its own order".into(),
        }])
    })
}

/// The new order's currency: the one asked for, else the store's. 422 `unknown-store` when the
/// catalog has no such store, whether a currency was asked for or not.
async fn order_currency(
    state: &AppState,
    store_id: Uuid,
    asked: Option<Currency>,
) -> Result<Currency, ApiError> {
    let store = state
        .catalog
        .store(store_id)
        .await
        .map_err(ApiError::infra)?
        .ok_or_else(|| ApiError::Invalid {
            slug: "unknown-store",
            detail: format!("store {store_id} does not exist"),
            errors: vec![],
        })?;
    match asked {
        Some(c) => Ok(c),
        None => Currency::parse(&store.currency).map_err(|e| ApiError::Internal(e.into())),
    }
}

// ---- the API --------------------------------------------------------------------------------

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
        auth: Allowed<Shoppers>,
        body: Json<CreateOrderBody>,
        /// Makes the command safe to retry: the same caller sending the same key gets the first
        /// answer again and nothing is done twice (1 to 255 visible ASCII characters).
        #[oai(name = "Idempotency-Key", validator(pattern = "^[!-~]{1,255}$"))]
        idempotency_key: Header<Option<String>>,
    ) -> Result<CreatedResponse, ApiError> {
        let principal = &auth.0;
        state.throttle.command(&principal.subject)?;
        let key = IdempotencyKey::parse(principal, idempotency_key.0)?;
        let body = body.0;
        let customer = customer_of_new_order(principal, &body)?;
        let new = parse_create(customer, &body)?;
        let currency = order_currency(&state, body.store_id, new.currency).await?;

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
                        customer_id: new.customer_id,
                        store_id: StoreId::from_uuid(body.store_id),
                        currency,
                        customer_email: new.customer_email,
                        shipping_address: new.shipping_address,
                        items: new.items,
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
        auth: Allowed<Shoppers>,
        /// The order's id (UUID).
        id: Path<Uuid>,
        body: Json<ItemBody>,
        /// Makes the command safe to retry: the same caller sending the same key gets the first
        /// answer again and nothing is done twice (1 to 255 visible ASCII characters).
        #[oai(name = "Idempotency-Key", validator(pattern = "^[!-~]{1,255}$"))]
        idempotency_key: Header<Option<String>>,
        /// Run the command only if the order is at this version (its `ETag`, e.g. `"3"`, or
        /// `*`); 412 otherwise.
        #[oai(
            name = "If-Match",
            validator(pattern = "^(\\*|[0-9]{1,18}|\"[0-9]{1,18}\")$")
        )]
        if_match: Header<Option<String>>,
    ) -> Result<OrderResponse, ApiError> {
        let mut f = Fields::default();
        let sku = f.take("sku", Sku::parse(body.sku.clone()));
        let quantity = f.take("quantity", Quantity::parse(body.quantity));
        let (sku, quantity) = f.finish((|| Some((sku?, quantity?)))())?;
        run(
            &state,
            req,
            &auth.0,
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
        auth: Allowed<Shoppers>,
        /// The order's id (UUID).
        id: Path<Uuid>,
        /// The line's number in the order (from 1).
        #[oai(validator(minimum(value = "1"), maximum(value = "4294967295")))]
        line_id: Path<i64>,
        body: Json<UpdateItemBody>,
        /// Makes the command safe to retry: the same caller sending the same key gets the first
        /// answer again and nothing is done twice (1 to 255 visible ASCII characters).
        #[oai(name = "Idempotency-Key", validator(pattern = "^[!-~]{1,255}$"))]
        idempotency_key: Header<Option<String>>,
        /// Run the command only if the order is at this version (its `ETag`, e.g. `"3"`, or
        /// `*`); 412 otherwise.
        #[oai(
            name = "If-Match",
            validator(pattern = "^(\\*|[0-9]{1,18}|\"[0-9]{1,18}\")$")
        )]
        if_match: Header<Option<String>>,
    ) -> Result<OrderResponse, ApiError> {
        let quantity =
            Quantity::parse(body.quantity).map_err(|e| ApiError::invalid_field("quantity", &e))?;
        let command = OrderCommand::UpdateItemQuantity {
            line_id: line_of(line_id.0),
            quantity,
        };
        run(
            &state,
            req,
            &auth.0,
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
        auth: Allowed<Shoppers>,
        /// The order's id (UUID).
        id: Path<Uuid>,
        /// The line's number in the order (from 1).
        #[oai(validator(minimum(value = "1"), maximum(value = "4294967295")))]
        line_id: Path<i64>,
        /// Makes the command safe to retry: the same caller sending the same key gets the first
        /// answer again and nothing is done twice (1 to 255 visible ASCII characters).
        #[oai(name = "Idempotency-Key", validator(pattern = "^[!-~]{1,255}$"))]
        idempotency_key: Header<Option<String>>,
        /// Run the command only if the order is at this version (its `ETag`, e.g. `"3"`, or
        /// `*`); 412 otherwise.
        #[oai(
            name = "If-Match",
            validator(pattern = "^(\\*|[0-9]{1,18}|\"[0-9]{1,18}\")$")
        )]
        if_match: Header<Option<String>>,
    ) -> Result<OrderResponse, ApiError> {
        let command = OrderCommand::RemoveItem {
            line_id: line_of(line_id.0),
        };
        run(
            &state,
            req,
            &auth.0,
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
        auth: Allowed<Shoppers>,
        /// The order's id (UUID).
        id: Path<Uuid>,
        /// Makes the command safe to retry: the same caller sending the same key gets the first
        /// answer again and nothing is done twice (1 to 255 visible ASCII characters).
        #[oai(name = "Idempotency-Key", validator(pattern = "^[!-~]{1,255}$"))]
        idempotency_key: Header<Option<String>>,
        /// Run the command only if the order is at this version (its `ETag`, e.g. `"3"`, or
        /// `*`); 412 otherwise.
        #[oai(
            name = "If-Match",
            validator(pattern = "^(\\*|[0-9]{1,18}|\"[0-9]{1,18}\")$")
        )]
        if_match: Header<Option<String>>,
    ) -> Result<OrderResponse, ApiError> {
        run(
            &state,
            req,
            &auth.0,
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
        auth: Allowed<StoreHands>,
        /// The order's id (UUID).
        id: Path<Uuid>,
        body: Json<ChangeStatusBody>,
        /// Makes the command safe to retry: the same caller sending the same key gets the first
        /// answer again and nothing is done twice (1 to 255 visible ASCII characters).
        #[oai(name = "Idempotency-Key", validator(pattern = "^[!-~]{1,255}$"))]
        idempotency_key: Header<Option<String>>,
        /// Run the command only if the order is at this version (its `ETag`, e.g. `"3"`, or
        /// `*`); 412 otherwise.
        #[oai(
            name = "If-Match",
            validator(pattern = "^(\\*|[0-9]{1,18}|\"[0-9]{1,18}\")$")
        )]
        if_match: Header<Option<String>>,
    ) -> Result<OrderResponse, ApiError> {
        let note = opt_text("note", body.note.as_ref(), Note::parse)?;
        let command = OrderCommand::ChangeStatus {
            status: body.status.into(),
            note,
        };
        run(
            &state,
            req,
            &auth.0,
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
        auth: Allowed<StoreHands>,
        /// The order's id (UUID).
        id: Path<Uuid>,
        body: Json<ShipBody>,
        /// Makes the command safe to retry: the same caller sending the same key gets the first
        /// answer again and nothing is done twice (1 to 255 visible ASCII characters).
        #[oai(name = "Idempotency-Key", validator(pattern = "^[!-~]{1,255}$"))]
        idempotency_key: Header<Option<String>>,
        /// Run the command only if the order is at this version (its `ETag`, e.g. `"3"`, or
        /// `*`); 412 otherwise.
        #[oai(
            name = "If-Match",
            validator(pattern = "^(\\*|[0-9]{1,18}|\"[0-9]{1,18}\")$")
        )]
        if_match: Header<Option<String>>,
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
            &auth.0,
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
        auth: Allowed<Shoppers>,
        /// The order's id (UUID).
        id: Path<Uuid>,
        body: Json<CancelBody>,
        /// Makes the command safe to retry: the same caller sending the same key gets the first
        /// answer again and nothing is done twice (1 to 255 visible ASCII characters).
        #[oai(name = "Idempotency-Key", validator(pattern = "^[!-~]{1,255}$"))]
        idempotency_key: Header<Option<String>>,
        /// Run the command only if the order is at this version (its `ETag`, e.g. `"3"`, or
        /// `*`); 412 otherwise.
        #[oai(
            name = "If-Match",
            validator(pattern = "^(\\*|[0-9]{1,18}|\"[0-9]{1,18}\")$")
        )]
        if_match: Header<Option<String>>,
    ) -> Result<OrderResponse, ApiError> {
        let reason = text("reason", &body.reason, Reason::parse)?;
        run(
            &state,
            req,
            &auth.0,
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
        auth: Allowed<Shoppers>,
        /// The order's id (UUID).
        id: Path<Uuid>,
        /// Makes the command safe to retry: the same caller sending the same key gets the first
        /// answer again and nothing is done twice (1 to 255 visible ASCII characters).
        #[oai(name = "Idempotency-Key", validator(pattern = "^[!-~]{1,255}$"))]
        idempotency_key: Header<Option<String>>,
        /// Run the command only if the order is at this version (its `ETag`, e.g. `"3"`, or
        /// `*`); 412 otherwise.
        #[oai(
            name = "If-Match",
            validator(pattern = "^(\\*|[0-9]{1,18}|\"[0-9]{1,18}\")$")
        )]
        if_match: Header<Option<String>>,
    ) -> Result<OrderResponse, ApiError> {
        run(
            &state,
            req,
            &auth.0,
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

/// The line a validated `line_id` parameter (1 to `u32::MAX`) names.
fn line_of(raw: i64) -> LineId {
    // the validator keeps `raw` in range; 0 names no line (404) should it ever not
    LineId::new(u32::try_from(raw).unwrap_or(0))
}
