//! Catalog endpoints: stores and their products. Orders snapshot name and price from here
//! when an item is added, so no later change of a price or name touches an order's lines.
//!
//! Who sees what (`security.rs`): admins, services, staff and analysts every store and its
//! whole catalog; customers open stores and what they can order; merchants the stores they
//! belong to (others answer 404). Merchants open stores and become their owners; owners
//! change their store (`PATCH`, closing it stops new orders and placements) and retire
//! products. Every change is recorded with who, when, before and after (`members.rs` serves
//! them).

use order_domain::{Currency, Email, Money, ProductName, Sku, StoreName};
use poem::web::Data;
use poem_openapi::param::{Header, Path, Query};
use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, Object, OpenApi};
use serde::Serialize;
use uuid::Uuid;

use crate::http::text::Text;

use super::auth::{Principal, Role};
use super::command::IdempotencyKey;
use super::cursor::{
    decode_product_cursor, decode_store_cursor, encode_product_cursor, encode_store_cursor, page,
};
use super::problem::{ApiError, FieldProblem};
use super::security::{
    authorize_store_admin, authorize_store_owner, can_see_store, sees_whole_catalog, store_filter,
    Allowed, BearerAuth, Operators, StoreHands,
};
use super::spec::ApiTags;
use crate::state::AppState;
use crate::store::catalog::{
    Inserted, NewProduct, ProductChanges, ProductFilter, ProductRow, StoreChanges, StoreRow,
};

/// Largest page of a catalog listing.
const MAX_PAGE: i64 = 200;

/// Opens a store.
#[derive(Debug, Clone, Object, Serialize)]
#[oai(deny_unknown_fields, example)]
pub struct CreateStoreBody {
    /// The store's name, as customers see it (1 to 200 characters).
    #[oai(validator(max_length = 200))]
    pub name: Text,
    /// ISO 4217 default currency of the store's products and orders.
    #[oai(validator(max_length = 3))]
    pub currency: Text,
}

/// Changes a store; absent (or `null`) fields stay as they are. A closed store (`"open": false`) takes no
/// new order and no placement (422 `store-closed`); its orders, their fulfilment and its
/// reports go on.
#[derive(Debug, Clone, Object, Serialize)]
#[oai(deny_unknown_fields, example)]
pub struct UpdateStoreBody {
    /// The store's new name, as customers see it (1 to 200 characters).
    #[oai(validator(max_length = 200), skip_serializing_if_is_none)]
    pub name: Option<Text>,
    /// Where customers and the platform reach the store.
    #[oai(validator(max_length = 254), skip_serializing_if_is_none)]
    pub contact_email: Option<Text>,
    /// Whether the store takes new orders.
    #[oai(skip_serializing_if_is_none)]
    pub open: Option<bool>,
}

/// A store.
#[derive(Debug, Clone, Object, PartialEq)]
#[oai(example)]
pub struct StoreView {
    /// The store's id.
    pub id: Uuid,
    /// The store's name, as customers see it.
    pub name: String,
    /// ISO 4217 default currency of the store's products and orders.
    pub currency: String,
    /// When the store was opened (RFC 3339, UTC).
    pub created_at: chrono::DateTime<chrono::Utc>,
    /// Where customers and the platform reach the store; absent until set.
    #[oai(skip_serializing_if_is_none)]
    pub contact_email: Option<String>,
    /// Whether the store takes new orders and placements.
    pub open: bool,
    /// When the store last changed (RFC 3339, UTC).
    pub updated_at: chrono::DateTime<chrono::Utc>,
}

impl From<StoreRow> for StoreView {
    fn from(r: StoreRow) -> Self {
        Self {
            id: r.id,
            name: r.name,
            currency: r.currency,
            created_at: r.created_at,
            contact_email: r.contact_email,
            open: r.open,
            updated_at: r.updated_at,
        }
    }
}

/// Adds a product to a store's catalog.
#[derive(Debug, Clone, Object, Serialize)]
#[oai(deny_unknown_fields, example)]
pub struct CreateProductBody {
    /// The product's stock keeping unit, unique in the store: 1 to 64 characters of
    /// `[A-Za-z0-9._-]`.
    #[oai(validator(max_length = 64))]
    pub sku: Text,
    /// The product's name, as orders show it (1 to 200 characters).
    #[oai(validator(max_length = 200))]
    pub name: Text,
    /// Price of one unit in minor units (cents), ≥ 0.
    pub unit_price_minor: i64,
    /// ISO 4217; defaults to the store's currency.
    #[oai(validator(max_length = 3), skip_serializing_if_is_none)]
    pub currency: Option<Text>,
    /// Whether the product can be ordered (default true).
    #[oai(skip_serializing_if_is_none)]
    pub active: Option<bool>,
}

/// Changes a product; absent fields stay as they are. Orders already holding the product keep
/// the name and price they were given. A retired product stays retired (not orderable,
/// whatever `active` says) until `retired` is `false`.
#[derive(Debug, Clone, Object, Serialize)]
#[oai(deny_unknown_fields, example)]
pub struct UpdateProductBody {
    /// The product's new name (1 to 200 characters).
    #[oai(validator(max_length = 200), skip_serializing_if_is_none)]
    pub name: Option<Text>,
    /// The new price of one unit in minor units (cents), ≥ 0; orders already holding the
    /// product keep theirs.
    #[oai(skip_serializing_if_is_none)]
    pub unit_price_minor: Option<i64>,
    /// Whether the product can be ordered.
    #[oai(skip_serializing_if_is_none)]
    pub active: Option<bool>,
    /// `false` brings a retired product back (orderable again if `active`, listed again);
    /// `true` retires it, as `DELETE` does.
    #[oai(skip_serializing_if_is_none)]
    pub retired: Option<bool>,
}

/// A product.
#[derive(Debug, Clone, Object, PartialEq)]
#[oai(example)]
pub struct ProductView {
    /// The store that sells it.
    pub store_id: Uuid,
    /// The product's stock keeping unit, unique in the store.
    pub sku: String,
    /// The product's name, as orders show it.
    pub name: String,
    /// Price of one unit in minor units (cents).
    pub unit_price_minor: i64,
    /// ISO 4217 currency of the price.
    pub currency: String,
    /// Whether the product can be ordered (a retired one cannot, whatever this says).
    pub active: bool,
    /// When the product was added (RFC 3339, UTC).
    pub created_at: chrono::DateTime<chrono::Utc>,
    /// When the product last changed (RFC 3339, UTC).
    pub updated_at: chrono::DateTime<chrono::Utc>,
    /// When the product was retired (no longer orderable, listed only with
    /// `include_retired=true`); absent while it is sold.
    #[oai(skip_serializing_if_is_none)]
    pub retired_at: Option<chrono::DateTime<chrono::Utc>>,
}

impl From<ProductRow> for ProductView {
    fn from(r: ProductRow) -> Self {
        Self {
            store_id: r.store_id,
            sku: r.sku,
            name: r.name,
            unit_price_minor: r.unit_price_minor,
            currency: r.currency,
            active: r.active,
            created_at: r.created_at,
            updated_at: r.updated_at,
            retired_at: r.retired_at,
        }
    }
}

/// A page of stores.
#[derive(Debug, Clone, Object)]
#[oai(example)]
pub struct StorePage {
    /// The stores of this page, ordered by id.
    pub items: Vec<StoreView>,
    /// The cursor of the next page, to pass as `cursor`; absent on the last page.
    #[oai(skip_serializing_if_is_none)]
    pub next: Option<String>,
}

/// A page of products.
#[derive(Debug, Clone, Object)]
#[oai(example)]
pub struct ProductPage {
    /// The products of this page, ordered by SKU.
    pub items: Vec<ProductView>,
    /// The cursor of the next page, to pass as `cursor`; absent on the last page.
    #[oai(skip_serializing_if_is_none)]
    pub next: Option<String>,
}

#[derive(ApiResponse)]
pub enum StoreCreated {
    /// The store was created (or, for a retried request, had been).
    #[oai(status = 201)]
    Created(Json<StoreView>, #[oai(header = "Location")] String),
}

#[derive(ApiResponse)]
pub enum StoreResponse {
    #[oai(status = 200)]
    Ok(Json<StoreView>),
}

#[derive(ApiResponse)]
pub enum StoresResponse {
    #[oai(status = 200)]
    Ok(Json<StorePage>),
}

#[derive(ApiResponse)]
pub enum ProductCreated {
    /// The product was added (or, for a retried identical request, had been).
    #[oai(status = 201)]
    Created(Json<ProductView>, #[oai(header = "Location")] String),
}

#[derive(ApiResponse)]
pub enum ProductResponse {
    #[oai(status = 200)]
    Ok(Json<ProductView>),
}

#[derive(ApiResponse)]
pub enum ProductsResponse {
    #[oai(status = 200)]
    Ok(Json<ProductPage>),
}

/// The page size asked for (default 50), within 1 to [`MAX_PAGE`]: every catalog listing's rule.
pub(crate) fn page_limit(limit: Option<i64>) -> Result<i64, ApiError> {
    match limit {
        None => Ok(50),
        Some(n) if (1..=MAX_PAGE).contains(&n) => Ok(n),
        Some(_) => Err(ApiError::BadRequest {
            slug: "invalid-parameter",
            detail: format!("limit must be between 1 and {MAX_PAGE}"),
        }),
    }
}

pub(crate) fn store_not_found(id: Uuid) -> ApiError {
    ApiError::NotFound {
        slug: "store-not-found",
        detail: format!("store {id} does not exist"),
    }
}

/// Store `id` if `p` may see it; 404 otherwise, whether it exists or not.
pub(crate) async fn visible_store(
    state: &AppState,
    p: &Principal,
    id: Uuid,
) -> Result<StoreRow, ApiError> {
    state
        .catalog
        .store(id)
        .await
        .map_err(ApiError::infra)?
        .filter(|s| can_see_store(p, s.id, s.open))
        .ok_or_else(|| store_not_found(id))
}

fn product_not_found(store: Uuid, sku: &str) -> ApiError {
    ApiError::NotFound {
        slug: "product-not-found",
        detail: format!("store {store} has no sku {sku}"),
    }
}

/// The operations of this module.
#[derive(Debug)]
pub struct CatalogApi;

#[OpenApi(prefix_path = "/v1", tag = "ApiTags::Catalog")]
impl CatalogApi {
    /// Open a store
    ///
    /// A merchant opening a store becomes its `owner` member. With an `Idempotency-Key` the
    /// store id derives from caller and key: a retry answers the same, the same key with
    /// another body is refused (422).
    #[oai(path = "/stores", method = "post", operation_id = "createStore")]
    async fn create_store(
        &self,
        state: Data<&AppState>,
        auth: Allowed<Operators>,
        body: Json<CreateStoreBody>,
        /// Makes the command safe to retry: the same caller sending the same key gets the first
        /// answer again and nothing is done twice (1 to 255 visible ASCII characters).
        #[oai(name = "Idempotency-Key", validator(pattern = "^[!-~]{1,255}$"))]
        idempotency_key: Header<Option<String>>,
    ) -> Result<StoreCreated, ApiError> {
        state.throttle.command(&auth.0.subject)?;
        let key = IdempotencyKey::parse(&auth.0, idempotency_key.0)?;
        let currency =
            Currency::parse(&body.currency).map_err(|e| ApiError::invalid_field("currency", &e))?;
        let name =
            StoreName::parse(body.name.clone()).map_err(|e| ApiError::invalid_field("name", &e))?;
        let id = key.as_ref().map_or_else(Uuid::now_v7, IdempotencyKey::id);
        // a merchant becomes the owner of the store it opens
        let owner = auth
            .0
            .has(Role::Merchant)
            .then_some(auth.0.subject.as_str());
        let row = match state
            .catalog
            .create_store(id, name.as_str(), currency, owner, &auth.0.subject)
            .await
            .map_err(ApiError::infra)?
        {
            Inserted::Created(row) => row,
            Inserted::Existing(row)
                if row.name == name.as_str() && row.currency == currency.as_str() =>
            {
                row
            }
            Inserted::Existing(_) => {
                return Err(ApiError::Invalid {
                    slug: "idempotency-key-reused",
                    detail: "this idempotency key already opened a store with other values".into(),
                    errors: vec![],
                })
            }
        };
        Ok(StoreCreated::Created(
            Json(row.into()),
            format!("/v1/stores/{id}"),
        ))
    }

    /// List stores
    ///
    /// Customers see open stores, merchants the stores they belong to, other roles every store.
    #[oai(path = "/stores", method = "get", operation_id = "listStores")]
    async fn list_stores(
        &self,
        state: Data<&AppState>,
        auth: BearerAuth,
        /// The `next` of the previous page; absent: the first page.
        #[oai(validator(max_length = 64))]
        cursor: Query<Option<String>>,
        /// Stores per page, ordered by id (1-200, default 50).
        #[oai(validator(minimum(value = "1"), maximum(value = "200")))]
        limit: Query<Option<i64>>,
    ) -> Result<StoresResponse, ApiError> {
        let limit = page_limit(limit.0)?;
        let after = cursor.0.as_deref().map(decode_store_cursor).transpose()?;
        let rows = state
            .catalog
            .stores(&store_filter(&auth.0), after, limit + 1)
            .await
            .map_err(ApiError::infra)?;
        let (rows, next) = page(rows, limit, |r| encode_store_cursor(r.id));
        Ok(StoresResponse::Ok(Json(StorePage {
            items: rows.into_iter().map(Into::into).collect(),
            next,
        })))
    }

    /// Read a store
    #[oai(path = "/stores/:id", method = "get", operation_id = "getStore")]
    async fn get_store(
        &self,
        state: Data<&AppState>,
        auth: BearerAuth,
        /// The store's id.
        id: Path<Uuid>,
    ) -> Result<StoreResponse, ApiError> {
        let row = visible_store(&state, &auth.0, id.0).await?;
        Ok(StoreResponse::Ok(Json(row.into())))
    }

    /// Change a store
    ///
    /// Its owners (and admins) change its name, contact email, and whether it is open. A
    /// closed store takes no new order and no placement of a draft (422 `store-closed`) and
    /// keeps its history; reopened, it takes them again.
    #[oai(path = "/stores/:id", method = "patch", operation_id = "updateStore")]
    async fn update_store(
        &self,
        state: Data<&AppState>,
        auth: Allowed<StoreHands>,
        /// The store's id.
        id: Path<Uuid>,
        body: Json<UpdateStoreBody>,
    ) -> Result<StoreResponse, ApiError> {
        visible_store(&state, &auth.0, id.0).await?;
        authorize_store_owner(&auth.0, id.0)?;
        state.throttle.command(&auth.0.subject)?;
        let mut errors = Vec::new();
        let name = body
            .name
            .clone()
            .map(StoreName::parse)
            .transpose()
            .map_err(|e| errors.push(FieldProblem::of("name", &e)))
            .ok()
            .flatten();
        let contact_email = body
            .contact_email
            .clone()
            .map(Email::parse)
            .transpose()
            .map_err(|e| errors.push(FieldProblem::of("contact_email", &e)))
            .ok()
            .flatten();
        if !errors.is_empty() {
            return Err(ApiError::invalid_fields(errors));
        }
        let changes = StoreChanges {
            name: name.map(|n| n.as_str().to_owned()),
            contact_email: contact_email.map(|e| e.as_str().to_owned()),
            open: body.open,
        };
        let row = state
            .catalog
            .update_store(id.0, &changes, &auth.0.subject)
            .await
            .map_err(ApiError::infra)?
            .ok_or_else(|| store_not_found(id.0))?;
        Ok(StoreResponse::Ok(Json(row.into())))
    }

    /// Add a product to a store
    #[oai(
        path = "/stores/:id/products",
        method = "post",
        operation_id = "createProduct"
    )]
    async fn create_product(
        &self,
        state: Data<&AppState>,
        auth: Allowed<StoreHands>,
        /// The store's id.
        id: Path<Uuid>,
        body: Json<CreateProductBody>,
        /// Makes the command safe to retry: the same caller sending the same key gets the first
        /// answer again and nothing is done twice (1 to 255 visible ASCII characters).
        #[oai(name = "Idempotency-Key", validator(pattern = "^[!-~]{1,255}$"))]
        idempotency_key: Header<Option<String>>,
    ) -> Result<ProductCreated, ApiError> {
        let store = visible_store(&state, &auth.0, id.0).await?;
        authorize_store_admin(&auth.0, id.0)?;
        state.throttle.command(&auth.0.subject)?;
        let key = IdempotencyKey::parse(&auth.0, idempotency_key.0)?;
        let mut errors = Vec::new();
        let mut field = |name: &str, e: order_domain::ValueError| {
            errors.push(FieldProblem {
                field: name.into(),
                message: e.to_string(),
            });
        };
        let sku = Sku::parse(body.sku.clone())
            .map_err(|e| field("sku", e))
            .ok();
        let name = ProductName::parse(body.name.clone())
            .map_err(|e| field("name", e))
            .ok();
        let currency = Currency::parse(body.currency.as_deref().unwrap_or(&store.currency))
            .map_err(|e| field("currency", e))
            .ok();
        let price = currency.and_then(|c| {
            Money::new(body.unit_price_minor, c)
                .map_err(|e| field("unit_price_minor", e))
                .ok()
        });
        let (Some(sku), Some(name), Some(unit_price)) = (sku, name, price) else {
            return Err(ApiError::invalid_fields(errors));
        };
        let product = NewProduct {
            sku,
            name,
            unit_price,
            active: body.active.unwrap_or(true),
        };
        let row = match state
            .catalog
            .create_product(id.0, &product, &auth.0.subject)
            .await
            .map_err(ApiError::infra)?
        {
            Inserted::Created(row) => row,
            // A retry of the same request under its key answers as the first time.
            Inserted::Existing(row)
                if key.is_some()
                    && row.name == product.name.as_str()
                    && row.unit_price_minor == product.unit_price.amount_minor()
                    && row.currency == product.unit_price.currency().as_str()
                    && row.active == product.active =>
            {
                row
            }
            Inserted::Existing(row) => {
                return Err(ApiError::AlreadyExists {
                    slug: "product-exists",
                    detail: format!(
                        "store {} already sells sku {}; change it with PATCH",
                        row.store_id, row.sku
                    ),
                })
            }
        };
        let location = format!("/v1/stores/{}/products/{}", row.store_id, row.sku);
        Ok(ProductCreated::Created(Json(row.into()), location))
    }

    /// List a store's products
    ///
    /// Retired products are listed only with `include_retired=true`. Customers see what they
    /// can order (active, not retired) and nothing else.
    #[oai(
        path = "/stores/:id/products",
        method = "get",
        operation_id = "listProducts"
    )]
    async fn list_products(
        &self,
        state: Data<&AppState>,
        auth: BearerAuth,
        /// The store's id.
        id: Path<Uuid>,
        /// The `next` of the previous page; absent: the first page.
        #[oai(validator(max_length = 88))]
        cursor: Query<Option<String>>,
        /// Products per page, ordered by SKU (1-200, default 50).
        #[oai(validator(minimum(value = "1"), maximum(value = "200")))]
        limit: Query<Option<i64>>,
        /// List retired products too (default false).
        include_retired: Query<Option<bool>>,
    ) -> Result<ProductsResponse, ApiError> {
        let limit = page_limit(limit.0)?;
        let after = cursor.0.as_deref().map(decode_product_cursor).transpose()?;
        visible_store(&state, &auth.0, id.0).await?;
        let whole = sees_whole_catalog(&auth.0, id.0);
        let filter = ProductFilter {
            include_retired: whole && include_retired.0.unwrap_or(false),
            orderable_only: !whole,
        };
        let rows = state
            .catalog
            .products(id.0, filter, after.as_deref(), limit + 1)
            .await
            .map_err(ApiError::infra)?;
        let (rows, next) = page(rows, limit, |r| encode_product_cursor(&r.sku));
        Ok(ProductsResponse::Ok(Json(ProductPage {
            items: rows.into_iter().map(Into::into).collect(),
            next,
        })))
    }

    /// Read a product
    #[oai(
        path = "/stores/:id/products/:sku",
        method = "get",
        operation_id = "getProduct"
    )]
    async fn get_product(
        &self,
        state: Data<&AppState>,
        auth: BearerAuth,
        /// The store's id.
        id: Path<Uuid>,
        /// The product's SKU.
        sku: Path<String>,
    ) -> Result<ProductResponse, ApiError> {
        let not_found = || product_not_found(id.0, &sku.0);
        let sku = Sku::parse(sku.0.clone()).map_err(|_| not_found())?;
        visible_store(&state, &auth.0, id.0).await?;
        let whole = sees_whole_catalog(&auth.0, id.0);
        let row = state
            .catalog
            .product(id.0, &sku)
            .await
            .map_err(ApiError::infra)?
            .filter(|p| whole || (p.active && p.retired_at.is_none()))
            .ok_or_else(not_found)?;
        Ok(ProductResponse::Ok(Json(row.into())))
    }

    /// Retire a product
    ///
    /// The product can no longer be ordered (adding it answers 422 `product-inactive`) and is
    /// listed only with `include_retired=true`; orders that hold it keep their lines, and
    /// reports still count it. Retiring a retired product changes nothing.
    #[oai(
        path = "/stores/:id/products/:sku",
        method = "delete",
        operation_id = "retireProduct"
    )]
    async fn retire_product(
        &self,
        state: Data<&AppState>,
        auth: Allowed<StoreHands>,
        /// The store's id.
        id: Path<Uuid>,
        /// The product's SKU.
        sku: Path<String>,
    ) -> Result<ProductResponse, ApiError> {
        visible_store(&state, &auth.0, id.0).await?;
        authorize_store_admin(&auth.0, id.0)?;
        state.throttle.command(&auth.0.subject)?;
        let not_found = || product_not_found(id.0, &sku.0);
        let sku = Sku::parse(sku.0.clone()).map_err(|_| not_found())?;
        let row = state
            .catalog
            .retire_product(id.0, &sku, &auth.0.subject)
            .await
            .map_err(ApiError::infra)?
            .ok_or_else(not_found)?;
        Ok(ProductResponse::Ok(Json(row.into())))
    }

    /// Change a product
    #[oai(
        path = "/stores/:id/products/:sku",
        method = "patch",
        operation_id = "updateProduct"
    )]
    async fn update_product(
        &self,
        state: Data<&AppState>,
        auth: Allowed<StoreHands>,
        /// The store's id.
        id: Path<Uuid>,
        /// The product's SKU.
        sku: Path<String>,
        body: Json<UpdateProductBody>,
    ) -> Result<ProductResponse, ApiError> {
        visible_store(&state, &auth.0, id.0).await?;
        authorize_store_admin(&auth.0, id.0)?;
        state.throttle.command(&auth.0.subject)?;
        let not_found = || product_not_found(id.0, &sku.0);
        let sku_value = Sku::parse(sku.0.clone()).map_err(|_| not_found())?;
        let name = body
            .name
            .clone()
            .map(ProductName::parse)
            .transpose()
            .map_err(|e| ApiError::invalid_field("name", &e))?;
        if let Some(p) = body.unit_price_minor {
            if !(0..=Money::MAX_MINOR).contains(&p) {
                return Err(ApiError::invalid_fields(vec![FieldProblem {
                    field: "unit_price_minor".into(),
                    message: format!(
                        "amount must be between 0 and {} minor units",
                        Money::MAX_MINOR
                    ),
                }]));
            }
        }
        let changes = ProductChanges {
            name,
            unit_price_minor: body.unit_price_minor,
            active: body.active,
            retired: body.retired,
        };
        let row = state
            .catalog
            .update_product(id.0, &sku_value, &changes, &auth.0.subject)
            .await
            .map_err(ApiError::infra)?
            .ok_or_else(not_found)?;
        Ok(ProductResponse::Ok(Json(row.into())))
    }
}
