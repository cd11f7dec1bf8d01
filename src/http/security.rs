//! Bearer authentication for poem-openapi, and who may do what (DESIGN §10).
//!
//! Visibility comes before permission: an order the caller may not see answers 404 whatever
//! the command, so ids of other customers' orders leak nothing. A visible order the caller's
//! role may not change answers 403. Which stores a caller reaches is
//! [`Principal::can_access_store`]'s: a service token listing `store_ids` is held to those
//! stores like staff (the full matrix: `docs/security.md`).
//!
//! **Roles before parameters.** poem-openapi extracts an operation's arguments in order and
//! answers the first that fails, so a role check in the handler would run after every
//! parameter and body was parsed: a caller who may never call an operation would learn its
//! parameter rules from 400s and 422s. Operations that some roles may never call take an
//! [`Allowed`] extractor instead of [`BearerAuth`], placed before every parameter: it verifies
//! the token and refuses those roles with 403 before anything else is read. What depends on the
//! request (which order, which store) is still decided in the handler, visibility first.

use std::marker::PhantomData;

use order_domain::Order;
use poem::{Request, RequestBody};
use poem_openapi::auth::Bearer;
use poem_openapi::registry::Registry;
use poem_openapi::{ApiExtractor, ApiExtractorType, ExtractParamOptions, SecurityScheme};
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

/// Which roles may call an operation at all, whatever its parameters.
pub trait Gate: Send + Sync {
    /// Whether `p` may call the operation.
    fn admits(p: &Principal) -> bool;
    /// The 403's detail for everyone else.
    const REFUSAL: &'static str;
}

/// A verified caller whose role may call the operation ([`Gate`] `G`): the bearer check, then
/// the role check, before any parameter is read. Documented as the same bearer scheme.
#[derive(Debug)]
pub struct Allowed<G>(pub Principal, PhantomData<G>);

impl<'a, G: Gate> ApiExtractor<'a> for Allowed<G> {
    const TYPES: &'static [ApiExtractorType] = &[ApiExtractorType::SecurityScheme];
    type ParamType = <BearerAuth as ApiExtractor<'a>>::ParamType;
    type ParamRawType = <BearerAuth as ApiExtractor<'a>>::ParamRawType;

    fn register(registry: &mut Registry) {
        <BearerAuth as ApiExtractor<'a>>::register(registry);
    }

    fn security_schemes() -> Vec<&'static str> {
        <BearerAuth as ApiExtractor<'a>>::security_schemes()
    }

    async fn from_request(
        request: &'a Request,
        body: &mut RequestBody,
        param_opts: ExtractParamOptions<Self::ParamType>,
    ) -> poem::Result<Self> {
        let BearerAuth(principal) =
            <BearerAuth as ApiExtractor<'a>>::from_request(request, body, param_opts).await?;
        if G::admits(&principal) {
            Ok(Self(principal, PhantomData))
        } else {
            Err(ApiError::forbidden(G::REFUSAL).into())
        }
    }
}

/// Admins only: the operations endpoints under `/v1/admin`.
#[derive(Debug)]
pub struct Admins;

impl Gate for Admins {
    fn admits(p: &Principal) -> bool {
        p.is_admin()
    }
    const REFUSAL: &'static str = "only admins run operations";
}

/// Admins and services not scoped to stores: opening stores.
#[derive(Debug)]
pub struct Operators;

impl Gate for Operators {
    fn admits(p: &Principal) -> bool {
        p.reaches_every_store()
    }
    const REFUSAL: &'static str = "only admins and services not scoped to stores may do this";
}

/// Admins, services and staff: a store's catalog and its orders' fulfilment (which store is
/// decided per request).
#[derive(Debug)]
pub struct StoreHands;

impl Gate for StoreHands {
    fn admits(p: &Principal) -> bool {
        p.is_admin() || p.has(Role::Service) || p.has(Role::Staff)
    }
    const REFUSAL: &'static str =
        "only a store's staff, services and admins manage its catalog and fulfil its orders";
}

/// Customers, staff, services and admins: creating orders and changing their items (whose
/// order, which store is decided per request). Analysts only read.
#[derive(Debug)]
pub struct Shoppers;

impl Gate for Shoppers {
    fn admits(p: &Principal) -> bool {
        p.has(Role::Customer) || StoreHands::admits(p)
    }
    const REFUSAL: &'static str = "this role may only read orders";
}

/// Analysts, admins, services and staff: reports (staff about their own stores, decided per
/// request).
#[derive(Debug)]
pub struct ReportReaders;

impl Gate for ReportReaders {
    fn admits(p: &Principal) -> bool {
        p.has(Role::Analyst) || StoreHands::admits(p)
    }
    const REFUSAL: &'static str = "reports are for analysts, admins, services and store staff";
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
