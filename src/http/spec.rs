//! How the APIs become one OpenAPI document: the operation groups ([`ApiTags`]), and
//! [`SharedPaths`], which merges the `paths` entries of
//! APIs that serve the same paths, so the document names each path once.

use poem_openapi::Tags;
use std::collections::HashMap;

use poem::http::Method;
use poem_openapi::registry::{MetaApi, Registry};
use poem_openapi::OpenApi;

/// Groups of operations in the OpenAPI document.
#[derive(Debug, Tags)]
pub enum ApiTags {
    /// Create orders, change their items, place, fulfil, ship and cancel them; read them back,
    /// with their status history, audit log and saga.
    Orders,
    /// Stores and the products they sell.
    Catalog,
    /// Sales reports for analysts and store staff.
    Reports,
    /// Health and metrics.
    Ops,
}

/// Serves several APIs as one, with one OpenAPI `paths` entry per path.
///
/// Commands (`orders.rs`) and queries (`queries.rs`) share paths (`/v1/orders`,
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
