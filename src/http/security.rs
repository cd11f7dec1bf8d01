//! Bearer authentication for poem-openapi, and who may do what (DESIGN §10).
//!
//! Visibility comes before permission: an order the caller may not see answers 404 whatever
//! the command, so ids of other customers' orders leak nothing. A visible order the caller's
//! role may not change answers 403. Which stores a caller reaches is
//! [`Principal::can_access_store`]'s: a service token listing `store_ids` is held to those
//! stores like staff (the full matrix: `docs/security.md`).

use order_domain::Order;
use poem::Request;
use poem_openapi::auth::Bearer;
use poem_openapi::SecurityScheme;
use uuid::Uuid;

use super::auth::{Principal, Role};
use super::problem::ApiError;
use crate::state::AppState;

/// A verified caller. Every `/v1` operation takes one.
#[derive(Debug, SecurityScheme)]
#[oai(ty = "bearer", bearer_format = "JWT", checker = "verify_bearer")]
pub struct BearerAuth(pub Principal);

async fn verify_bearer(req: &Request, bearer: Bearer) -> poem::Result<Principal> {
    let state = req
        .data::<AppState>()
        .ok_or_else(|| ApiError::Internal(anyhow::anyhow!("AppState missing from request data")))?;
    state
        .verifier
        .verify(&bearer.token)
        .await
        .map_err(|e| ApiError::Unauthorized(e).into())
}

/// What a caller wants to do with an existing order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OrderAction {
    /// Read the order, its items, history.
    Read,
    /// The customer's side: items, place, cancel, discard.
    Shop,
    /// The store's side: fulfilment statuses, shipping.
    Fulfil,
}

/// Whether `p` sees every order, whoever and wherever it belongs to: admins, analysts and
/// services not scoped to stores.
pub fn sees_every_order(p: &Principal) -> bool {
    p.reaches_every_store() || p.has(Role::Analyst)
}

/// Whether `p` may see an order of customer `customer_id` in store `store_id`: the one
/// visibility rule, for orders loaded from the event store and read-model rows alike.
pub fn can_see_order_of(p: &Principal, customer_id: &str, store_id: Uuid) -> bool {
    sees_every_order(p)
        || (p.has(Role::Customer) && customer_id == p.subject)
        || p.can_access_store(store_id)
}

/// Whether `p` may see `order` at all.
pub fn can_see(p: &Principal, order: &Order) -> bool {
    match (order.customer_id(), order.store_id()) {
        (Some(customer), Some(store)) => can_see_order_of(p, customer.as_str(), store.as_uuid()),
        // An order never created belongs to no one.
        _ => sees_every_order(p),
    }
}

/// Authorizes `action` on `order` for `p`: 404 when invisible, 403 when not permitted.
pub fn authorize_order(p: &Principal, order: &Order, action: OrderAction) -> Result<(), ApiError> {
    if !can_see(p, order) {
        return Err(ApiError::order_not_found());
    }
    let own = p.has(Role::Customer) && order.customer_id().is_some_and(|c| c.as_str() == p.subject);
    // staff and services of the order's store (a service not scoped to stores reaches all)
    let operator = p.is_admin()
        || ((p.has(Role::Staff) || p.has(Role::Service))
            && order
                .store_id()
                .map_or(p.reaches_every_store(), |s| p.can_access_store(s.as_uuid())));
    let allowed = match action {
        OrderAction::Read => true,
        OrderAction::Shop => operator || own,
        OrderAction::Fulfil => operator,
    };
    if allowed {
        Ok(())
    } else {
        Err(ApiError::forbidden(match action {
            OrderAction::Fulfil => {
                "only the store's staff, services and admins move orders through fulfilment"
            }
            _ => "this role may only read orders",
        }))
    }
}

/// Admins and unscoped services manage every store; staff and store-scoped services only
/// their own.
pub fn authorize_store_admin(p: &Principal, store: Uuid) -> Result<(), ApiError> {
    if p.can_access_store(store) {
        Ok(())
    } else {
        Err(ApiError::forbidden(
            "only admins, services and the store's staff manage its products",
        ))
    }
}

/// Only admins and services not scoped to stores open stores (a scoped one could not reach
/// the store it opened).
pub fn require_operator(p: &Principal) -> Result<(), ApiError> {
    if p.reaches_every_store() {
        Ok(())
    } else {
        Err(ApiError::forbidden(
            "only admins and services not scoped to stores may do this",
        ))
    }
}
