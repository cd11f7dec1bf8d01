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
//!
//! **Memberships.** A staff or merchant token's memberships (`store_members`, kept by the
//! service) are added to its [`Principal`] right after the token verifies ([`authenticate`]):
//! from memory on the hot path, one indexed select on a cache miss (`store/members.rs`). A
//! member acts on its store's orders as a `store_ids` claim allows; owners also manage the
//! store, its catalog, its members and read its changes. Both sources work side by side.

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
use crate::store::catalog::StoreFilter;

/// A verified caller. Every `/v1` operation takes one.
#[derive(Debug, SecurityScheme)]
#[oai(ty = "bearer", bearer_format = "JWT", checker = "verify_bearer")]
pub struct BearerAuth(pub Principal);

async fn verify_bearer(req: &Request, bearer: Bearer) -> poem::Result<Principal> {
    let state = req
        .data::<AppState>()
        .ok_or_else(|| ApiError::Internal(anyhow::anyhow!("AppState missing from request data")))?;
    Ok(authenticate(state, &bearer.token).await?)
}

/// Verifies `token` and adds what the service knows of its subject: the memberships of a
/// staff or merchant token (see the module's doc).
pub async fn authenticate(state: &AppState, token: &str) -> Result<Principal, ApiError> {
    let mut principal = state
        .verifier
        .verify(token)
        .await
        .map_err(ApiError::Unauthorized)?;
    with_memberships(state, &mut principal).await?;
    Ok(principal)
}

/// Reads `p`'s memberships again (a live feed re-checks them when they change).
pub async fn with_memberships(state: &AppState, p: &mut Principal) -> Result<(), ApiError> {
    if p.reads_memberships() {
        p.memberships = state
            .catalog
            .members()
            .of(&p.subject)
            .await
            .map_err(ApiError::infra)?
            .to_vec();
    }
    Ok(())
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

/// Admins, services not scoped to stores, and merchants (who become the owner): opening
/// stores.
#[derive(Debug)]
pub struct Operators;

impl Gate for Operators {
    fn admits(p: &Principal) -> bool {
        p.reaches_every_store() || p.has(Role::Merchant)
    }
    const REFUSAL: &'static str =
        "only merchants, admins and services not scoped to stores open stores";
}

/// Admins, services, staff and merchants: a store itself, its catalog, its members and its
/// orders' fulfilment (which store, and whether as owner, is decided per request).
#[derive(Debug)]
pub struct StoreHands;

impl Gate for StoreHands {
    fn admits(p: &Principal) -> bool {
        p.is_admin() || p.has(Role::Service) || p.has(Role::Staff) || p.has(Role::Merchant)
    }
    const REFUSAL: &'static str =
        "only a store's owners, staff, services and admins manage it and fulfil its orders";
}

/// Customers, staff, merchants, services and admins: creating orders and changing their items
/// (whose order, which store is decided per request). Analysts only read.
#[derive(Debug)]
pub struct Shoppers;

impl Gate for Shoppers {
    fn admits(p: &Principal) -> bool {
        p.has(Role::Customer) || StoreHands::admits(p)
    }
    const REFUSAL: &'static str = "this role may only read orders";
}

/// Analysts, admins, services, staff and merchants: reports (staff and members about their own
/// stores, decided per request).
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
    // staff, services and members of the order's store (a service not scoped to stores
    // reaches all)
    let operator = p.is_admin()
        || order
            .store_id()
            .map_or(p.reaches_every_store(), |s| p.can_access_store(s.as_uuid()));
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

/// Admins and unscoped services manage every store's catalog; staff and store-scoped
/// services the stores of their token, owners theirs.
pub fn authorize_store_admin(p: &Principal, store: Uuid) -> Result<(), ApiError> {
    if p.manages_store(store) {
        Ok(())
    } else {
        Err(ApiError::forbidden(
            "only admins, services, the store's staff and its owners manage its products",
        ))
    }
}

/// The store itself and its members, and who changed what: its owners, admins and services
/// not scoped to stores.
pub fn authorize_store_owner(p: &Principal, store: Uuid) -> Result<(), ApiError> {
    if p.reaches_every_store() || p.owns(store) {
        Ok(())
    } else {
        Err(ApiError::forbidden(
            "only the store's owners and admins manage the store and its members and read its changes",
        ))
    }
}

/// Whether `p` sees every store, open or closed, and its whole catalog: admins, services,
/// staff and analysts (customers see open stores and what they may order; merchants the
/// stores they belong to).
fn sees_every_store(p: &Principal) -> bool {
    p.is_admin() || p.has(Role::Service) || p.has(Role::Staff) || p.has(Role::Analyst)
}

/// Whether `p` sees store `store`, open or not: a store it may not see answers 404.
pub fn can_see_store(p: &Principal, store: Uuid, open: bool) -> bool {
    sees_every_store(p) || (p.has(Role::Customer) && open) || p.member_role(store).is_some()
}

/// Whether `p` sees the whole catalog of `store` (retired and inactive products too), not only
/// what can be ordered.
pub fn sees_whole_catalog(p: &Principal, store: Uuid) -> bool {
    sees_every_store(p) || p.member_role(store).is_some()
}

/// The stores `p` is shown in a list.
pub fn store_filter(p: &Principal) -> StoreFilter {
    StoreFilter {
        all: sees_every_store(p),
        open: p.has(Role::Customer),
        ids: p.memberships.iter().map(|m| m.store_id).collect(),
    }
}
