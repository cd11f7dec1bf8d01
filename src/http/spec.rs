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

/// The methods each path answers, for the `Allow` header of a 405 (RFC 9110 §15.5.6): from the
/// documented operations, plus the routes outside the document (the live feeds, the spec).
#[derive(Debug, Default)]
pub struct AllowedMethods(Vec<(Vec<String>, String)>);

impl AllowedMethods {
    /// The table of `T`'s operations and of `extra` (`path`, `Allow` value) routes.
    pub fn of<T: OpenApi>(extra: &[(&str, &str)]) -> Self {
        let mut table: Vec<(Vec<String>, Vec<String>)> = Vec::new();
        for path in T::meta().into_iter().flat_map(|api| api.paths) {
            let methods = path.operations.iter().map(|op| op.method.to_string());
            let segments = segments(&path.path);
            match table.iter_mut().find(|(s, _)| *s == segments) {
                Some((_, known)) => known.extend(methods),
                None => table.push((segments, methods.collect())),
            }
        }
        let mut allowed: Vec<(Vec<String>, String)> = table
            .into_iter()
            .map(|(segments, mut methods)| {
                methods.sort();
                methods.dedup();
                (segments, methods.join(", "))
            })
            .collect();
        allowed.extend(extra.iter().map(|(p, m)| (segments(p), (*m).to_owned())));
        Self(allowed)
    }

    /// What `path` (a request's, without query) answers, when it is a known route.
    pub fn for_path(&self, path: &str) -> Option<&str> {
        let asked: Vec<&str> = path.trim_matches('/').split('/').collect();
        self.0
            .iter()
            .find(|(template, _)| {
                template.len() == asked.len()
                    && template.iter().zip(&asked).all(|(t, a)| {
                        t == a || ((t.starts_with('{') || t.starts_with(':')) && !a.is_empty())
                    })
            })
            .map(|(_, methods)| methods.as_str())
    }
}

fn segments(path: &str) -> Vec<String> {
    path.trim_matches('/')
        .split('/')
        .map(str::to_owned)
        .collect()
}

/// What poem-openapi 5.1 cannot say itself, added to the serialized document: request bodies
/// (the `...Body` schemas, all `deny_unknown_fields`) refuse unknown properties
/// (`additionalProperties: false`), so a generated client and a fuzzer know it too; and the
/// operations without a security scheme (health, metrics) say they need none (`security: []`)
/// rather than leaving it unsaid.
pub fn finish(spec: &str) -> String {
    let Ok(mut doc) = serde_json::from_str::<serde_json::Value>(spec) else {
        return spec.to_owned();
    };
    if let Some(paths) = doc
        .pointer_mut("/paths")
        .and_then(serde_json::Value::as_object_mut)
    {
        for operation in paths
            .values_mut()
            .filter_map(serde_json::Value::as_object_mut)
            .flat_map(|methods| methods.values_mut())
            .filter_map(serde_json::Value::as_object_mut)
        {
            operation
                .entry("security")
                .or_insert_with(|| serde_json::Value::Array(Vec::new()));
        }
    }
    if let Some(schemas) = doc
        .pointer_mut("/components/schemas")
        .and_then(serde_json::Value::as_object_mut)
    {
        for (name, schema) in schemas.iter_mut() {
            if name.ends_with("Body") {
                if let Some(schema) = schema.as_object_mut() {
                    schema.insert("additionalProperties".into(), false.into());
                }
            }
        }
    }
    serde_json::to_string(&doc).unwrap_or_else(|_| spec.to_owned())
}
