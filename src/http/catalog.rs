//! Catalog endpoints: stores and their products. Orders snapshot name and price from here
//! when an item is added.

use order_domain::{Currency, Money, ProductName, Sku, StoreName};
use poem::web::Data;
use poem_openapi::param::{Header, Path, Query};
use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, Object, OpenApi};
use serde::Serialize;
use uuid::Uuid;

use crate::http::text::Text;

use super::command::IdempotencyKey;
use super::problem::{ApiError, FieldProblem};
use super::security::{authorize_store_admin, Allowed, BearerAuth, Operators, StoreHands};
use super::spec::ApiTags;
use crate::state::AppState;
use crate::store::catalog::{Inserted, NewProduct, ProductChanges, ProductRow, StoreRow};

/// Largest page of a catalog listing.
const MAX_PAGE: i64 = 200;

/// Opens a store.
#[derive(Debug, Clone, Object, Serialize)]
#[oai(deny_unknown_fields)]
pub struct CreateStoreBody {
    #[oai(validator(max_length = 200))]
    pub name: Text,
    /// ISO 4217 default currency of the store's products and orders.
    #[oai(validator(max_length = 3))]
    pub currency: Text,
}

/// A store.
#[derive(Debug, Clone, Object, PartialEq)]
pub struct StoreView {
    pub id: Uuid,
    pub name: String,
    pub currency: String,
    pub created_at: chrono::DateTime<chrono::Utc>,
}

impl From<StoreRow> for StoreView {
    fn from(r: StoreRow) -> Self {
        Self {
            id: r.id,
            name: r.name,
            currency: r.currency,
            created_at: r.created_at,
        }
    }
}

/// Adds a product to a store's catalog.
#[derive(Debug, Clone, Object, Serialize)]
#[oai(deny_unknown_fields)]
pub struct CreateProductBody {
    #[oai(validator(max_length = 64))]
    pub sku: Text,
    #[oai(validator(max_length = 200))]
    pub name: Text,
    /// Price of one unit in minor units (cents), ≥ 0.
    pub unit_price_minor: i64,
    /// ISO 4217; defaults to the store's currency.
    #[oai(validator(max_length = 3))]
    pub currency: Option<Text>,
    /// Whether the product can be ordered (default true).
    pub active: Option<bool>,
}

/// Changes a product; absent fields stay as they are. Orders already holding the product keep
/// the name and price they were given.
#[derive(Debug, Clone, Object, Serialize)]
#[oai(deny_unknown_fields)]
pub struct UpdateProductBody {
    #[oai(validator(max_length = 200))]
    pub name: Option<Text>,
    pub unit_price_minor: Option<i64>,
    pub active: Option<bool>,
}

/// A product.
#[derive(Debug, Clone, Object, PartialEq)]
pub struct ProductView {
    pub store_id: Uuid,
    pub sku: String,
    pub name: String,
    pub unit_price_minor: i64,
    pub currency: String,
    pub active: bool,
    pub created_at: chrono::DateTime<chrono::Utc>,
    pub updated_at: chrono::DateTime<chrono::Utc>,
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
        }
    }
}

/// A page of stores.
#[derive(Debug, Clone, Object)]
pub struct StorePage {
    pub items: Vec<StoreView>,
    /// Pass as `after` for the next page; absent on the last page.
    #[oai(skip_serializing_if_is_none)]
    pub next: Option<String>,
}

/// A page of products.
#[derive(Debug, Clone, Object)]
pub struct ProductPage {
    pub items: Vec<ProductView>,
    /// Pass as `after` for the next page; absent on the last page.
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

fn page_limit(limit: Option<i64>) -> Result<i64, ApiError> {
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

/// The operations of this module.
#[derive(Debug)]
pub struct CatalogApi;

#[OpenApi(prefix_path = "/v1", tag = "ApiTags::Catalog")]
impl CatalogApi {
    /// Open a store
    ///
    /// With an `Idempotency-Key` the store id derives from caller and key: a retry answers the
    /// same, the same key with another body is refused (422).
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
        let row = match state
            .catalog
            .create_store(id, name.as_str(), currency)
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
    #[oai(path = "/stores", method = "get", operation_id = "listStores")]
    async fn list_stores(
        &self,
        state: Data<&AppState>,
        _auth: BearerAuth,
        /// Id of the last store of the previous page.
        after: Query<Option<Uuid>>,
        /// Page size, 1-200 (default 50).
        #[oai(validator(minimum(value = "1"), maximum(value = "200")))]
        limit: Query<Option<i64>>,
    ) -> Result<StoresResponse, ApiError> {
        let limit = page_limit(limit.0)?;
        let rows = state
            .catalog
            .stores(after.0, limit)
            .await
            .map_err(ApiError::infra)?;
        let next = (rows.len() == usize::try_from(limit).unwrap_or(0))
            .then(|| rows.last().map(|r| r.id.to_string()))
            .flatten();
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
        _auth: BearerAuth,
        id: Path<Uuid>,
    ) -> Result<StoreResponse, ApiError> {
        let row = state
            .catalog
            .store(id.0)
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
        id: Path<Uuid>,
        body: Json<CreateProductBody>,
        /// Makes the command safe to retry: the same caller sending the same key gets the first
        /// answer again and nothing is done twice (1 to 255 visible ASCII characters).
        #[oai(name = "Idempotency-Key", validator(pattern = "^[!-~]{1,255}$"))]
        idempotency_key: Header<Option<String>>,
    ) -> Result<ProductCreated, ApiError> {
        authorize_store_admin(&auth.0, id.0)?;
        state.throttle.command(&auth.0.subject)?;
        let key = IdempotencyKey::parse(&auth.0, idempotency_key.0)?;
        let store = state
            .catalog
            .store(id.0)
            .await
            .map_err(ApiError::infra)?
            .ok_or_else(|| store_not_found(id.0))?;
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
            .create_product(id.0, &product)
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
    #[oai(
        path = "/stores/:id/products",
        method = "get",
        operation_id = "listProducts"
    )]
    async fn list_products(
        &self,
        state: Data<&AppState>,
        _auth: BearerAuth,
        id: Path<Uuid>,
        /// SKU of the last product of the previous page.
        after: Query<Option<String>>,
        /// Page size, 1-200 (default 50).
        #[oai(validator(minimum(value = "1"), maximum(value = "200")))]
        limit: Query<Option<i64>>,
    ) -> Result<ProductsResponse, ApiError> {
        let limit = page_limit(limit.0)?;
        state
            .catalog
            .store(id.0)
            .await
            .map_err(ApiError::infra)?
            .ok_or_else(|| store_not_found(id.0))?;
        let rows = state
            .catalog
            .products(id.0, after.0.as_deref(), limit)
            .await
            .map_err(ApiError::infra)?;
        let next = (rows.len() == usize::try_from(limit).unwrap_or(0))
            .then(|| rows.last().map(|r| r.sku.clone()))
            .flatten();
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
        _auth: BearerAuth,
        id: Path<Uuid>,
        sku: Path<String>,
    ) -> Result<ProductResponse, ApiError> {
        let not_found = || ApiError::NotFound {
            slug: "product-not-found",
            detail: format!("store {} has no sku {}", id.0, sku.0),
        };
        let sku = Sku::parse(sku.0.clone()).map_err(|_| not_found())?;
        let row = state
            .catalog
            .product(id.0, &sku)
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
        id: Path<Uuid>,
        sku: Path<String>,
        body: Json<UpdateProductBody>,
    ) -> Result<ProductResponse, ApiError> {
        authorize_store_admin(&auth.0, id.0)?;
        state.throttle.command(&auth.0.subject)?;
        let not_found = || ApiError::NotFound {
            slug: "product-not-found",
            detail: format!("store {} has no sku {}", id.0, sku.0),
        };
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
        };
        let row = state
            .catalog
            .update_product(id.0, &sku_value, &changes)
            .await
            .map_err(ApiError::infra)?
            .ok_or_else(not_found)?;
        Ok(ProductResponse::Ok(Json(row.into())))
    }
}
