//! How the APIs become one OpenAPI document: the operation groups ([`ApiTags`]);
//! [`SharedPaths`], which merges the `paths` entries of APIs that serve the same paths, so the
//! document names each path once; and [`finish`], what poem-openapi cannot say itself.

use poem_openapi::Tags;
use std::collections::HashMap;

use poem::http::Method;
use poem_openapi::registry::{MetaApi, Registry};
use poem_openapi::OpenApi;
use serde_json::{json, Map, Value};

use super::observe::MAX_REQUEST_ID;
use super::problem::PROBLEM_JSON;

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

/// What poem-openapi 5.1 cannot say itself, added to the serialized document: request bodies
/// (the `...Body` schemas, all `deny_unknown_fields`) refuse unknown properties
/// (`additionalProperties: false`), so a generated client and a fuzzer know it too; the
/// operations without a security scheme (health, metrics) say they need none (`security: []`)
/// rather than leaving it unsaid; every operation documents only the problem statuses it can
/// answer ([`can_answer`]), and the `x-request-id` a client may send and always gets back;
/// and every JSON body has an example ([`add_body_examples`]).
pub fn finish(spec: &str, examples: &BodyExamples) -> String {
    let Ok(mut doc) = serde_json::from_str::<Value>(spec) else {
        return spec.to_owned();
    };
    let schemas = doc
        .pointer("/components/schemas")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    if let Some(paths) = doc.pointer_mut("/paths").and_then(Value::as_object_mut) {
        for (path, methods) in paths.iter_mut() {
            let Some(methods) = methods.as_object_mut() else {
                continue;
            };
            for (method, operation) in methods.iter_mut() {
                if let Some(operation) = operation.as_object_mut() {
                    finish_operation(path, method, operation);
                    add_body_examples(operation, &schemas, examples);
                }
            }
        }
    }
    if let Some(components) = doc
        .pointer_mut("/components")
        .and_then(Value::as_object_mut)
    {
        components
            .entry("parameters")
            .or_insert_with(|| json!({}))
            .as_object_mut()
            .map(|p| p.insert(REQUEST_ID.into(), request_id_parameter()));
        components
            .entry("headers")
            .or_insert_with(|| json!({}))
            .as_object_mut()
            .map(|h| h.insert(REQUEST_ID.into(), request_id_header()));
        if let Some(shared) = components
            .entry("examples")
            .or_insert_with(|| json!({}))
            .as_object_mut()
        {
            for (status, problem) in &examples.problems {
                let summary = format!("{status} {}", problem["title"].as_str().unwrap_or(""));
                let example = json!({ "summary": summary, "value": problem });
                shared.insert(problem_example(*status), example);
            }
        }
    }
    if let Some(schemas) = doc
        .pointer_mut("/components/schemas")
        .and_then(Value::as_object_mut)
    {
        for (name, schema) in schemas.iter_mut() {
            if name.ends_with("Body") {
                if let Some(schema) = schema.as_object_mut() {
                    schema.insert("additionalProperties".into(), false.into());
                }
            }
            if name.starts_with("Update") && name.ends_with("Body") {
                nullable_when_optional(schema);
            }
            let properties = schema.get_mut("properties").and_then(Value::as_object_mut);
            for property in properties.into_iter().flat_map(|p| p.values_mut()) {
                describe_by_sibling(property);
            }
        }
    }
    serde_json::to_string(&doc).unwrap_or_else(|_| spec.to_owned())
}

/// Body examples poem-openapi cannot give: see `examples.rs`, which builds them.
#[derive(Debug, Default)]
pub struct BodyExamples {
    /// The example answer of an operation (by `operationId`) with a status in a media type (a
    /// prefix of it), where the schema's own example does not fit, an array or a text has none.
    pub answers: Vec<(&'static str, u16, &'static str, Value)>,
    /// The example problem (`application/problem+json`) of each status, shared by every
    /// operation (`components/examples`).
    pub problems: Vec<(u16, Value)>,
}

/// Puts an `example` on every body of `operation` that has none: the one `examples` gives for
/// the operation, status and media type, else its schema's example (for an array, its items'
/// example, once); a problem refers to the shared example of its status.
fn add_body_examples(
    operation: &mut Map<String, Value>,
    schemas: &Map<String, Value>,
    examples: &BodyExamples,
) {
    let id = operation
        .get("operationId")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    let of_schema = |schema: &Value| -> Option<Value> {
        let named = |s: &Value| {
            let name = s.get("$ref")?.as_str()?.rsplit('/').next()?;
            schemas.get(name)?.get("example").cloned()
        };
        named(schema).or_else(|| {
            (schema.get("type")? == "array")
                .then(|| named(schema.get("items")?))
                .flatten()
                .map(|item| Value::Array(vec![item]))
        })
    };
    // the answer given for the operation, else the schema's; a problem refers to its status's
    let fill = |content: Option<&mut Value>, status: u16, problem: Option<Value>| {
        let Some(content) = content.and_then(Value::as_object_mut) else {
            return;
        };
        for (media_type, media) in content.iter_mut() {
            let Some(media) = media.as_object_mut() else {
                continue;
            };
            if media.contains_key("example") || media.contains_key("examples") {
                continue;
            }
            if media_type == PROBLEM_JSON {
                if let Some(problem) = &problem {
                    media.insert("examples".into(), problem.clone());
                }
            } else {
                let example = examples
                    .answers
                    .iter()
                    .find(|(op, s, m, _)| *op == id && *s == status && media_type.starts_with(m))
                    .map(|(_, _, _, example)| example.clone())
                    .or_else(|| media.get("schema").and_then(of_schema));
                if let Some(example) = example {
                    media.insert("example".into(), example);
                }
            }
        }
    };
    let request = operation.get_mut("requestBody");
    fill(request.and_then(|b| b.get_mut("content")), 0, None);
    if let Some(responses) = operation
        .get_mut("responses")
        .and_then(Value::as_object_mut)
    {
        for (status, response) in responses.iter_mut() {
            let status: u16 = status.parse().unwrap_or_default();
            let problem =
                examples
                    .problems
                    .iter()
                    .find(|(s, _)| *s == status)
                    .map(|(_, problem)| {
                        let slug = problem["type"].as_str().unwrap_or("/problems/problem");
                        let slug = slug.rsplit('/').next().unwrap_or(slug);
                        let shared = format!("#/components/examples/{}", problem_example(status));
                        json!({ slug: { "$ref": shared } })
                    });
            fill(response.get_mut("content"), status, problem);
        }
    }
}

/// The name of the shared example (`components/examples`) of the problems with `status`.
fn problem_example(status: u16) -> String {
    format!("Problem{status}")
}

/// A described property of a named type: poem-openapi writes it
/// `{"allOf": [{"$ref": T}, {"description": D}], "description": D}`, which generators read as a
/// new type made of T (openapi-python-client refuses one made of an enum, and copies an
/// object's class). The second member only repeats its sibling: without it, the property is T,
/// described (OpenAPI 3.0's way, since a `$ref` ignores its siblings).
fn describe_by_sibling(property: &mut Value) {
    let Some(property) = property.as_object_mut() else {
        return;
    };
    let description = property.get("description").cloned();
    if let Some(members) = property.get_mut("allOf").and_then(Value::as_array_mut) {
        let repeats = |m: &Value| {
            m.as_object()
                .is_some_and(|m| m.len() == 1 && m.get("description") == description.as_ref())
        };
        if members.len() == 2 && members[0].get("$ref").is_some() && repeats(&members[1]) {
            members.truncate(1);
        }
    }
}

/// The optional properties of a partial update (`Update...Body`, a PATCH) are nullable: the
/// service reads `null` as it reads an absent property, "leave it as it is", and says so
/// rather than let a client believe `null` is refused.
fn nullable_when_optional(schema: &mut Value) {
    let required: Vec<String> = schema["required"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|r| r.as_str().map(str::to_owned))
        .collect();
    let properties = schema.get_mut("properties").and_then(Value::as_object_mut);
    for (name, property) in properties.into_iter().flatten() {
        if !required.contains(name) {
            if let Some(property) = property.as_object_mut() {
                property.insert("nullable".into(), true.into());
            }
        }
    }
}

/// The name of the request-id parameter and header components.
const REQUEST_ID: &str = "RequestId";

fn finish_operation(path: &str, method: &str, operation: &mut Map<String, Value>) {
    operation
        .entry("security")
        .or_insert_with(|| Value::Array(Vec::new()));
    let facts = Facts::of(path, method, operation);
    if let Some(responses) = operation
        .get_mut("responses")
        .and_then(Value::as_object_mut)
    {
        responses.retain(|status, response| {
            let problem = response
                .pointer("/content")
                .and_then(Value::as_object)
                .is_some_and(|content| content.contains_key(PROBLEM_JSON));
            !problem || status.parse().is_ok_and(|status| facts.can_answer(status))
        });
        for response in responses.values_mut().filter_map(Value::as_object_mut) {
            response
                .entry("headers")
                .or_insert_with(|| json!({}))
                .as_object_mut()
                .map(|h| {
                    h.insert(
                        "x-request-id".into(),
                        json!({ "$ref": format!("#/components/headers/{REQUEST_ID}") }),
                    )
                });
        }
    }
    if path.starts_with("/v1/") {
        if let Some(parameters) = operation
            .entry("parameters")
            .or_insert_with(|| json!([]))
            .as_array_mut()
        {
            parameters.push(json!({ "$ref": format!("#/components/parameters/{REQUEST_ID}") }));
        }
    }
}

/// What an operation takes, which decides the problems it can answer.
#[allow(clippy::struct_excessive_bools)] // five independent facts, read once
struct Facts {
    body: bool,
    if_match: bool,
    path_parameters: bool,
    query_parameters: bool,
    command: bool,
}

impl Facts {
    fn of(path: &str, method: &str, operation: &Map<String, Value>) -> Self {
        let parameters = operation.get("parameters").and_then(Value::as_array);
        let has = |place: &str| parameters.is_some_and(|ps| ps.iter().any(|p| p["in"] == place));
        Self {
            body: operation.contains_key("requestBody"),
            if_match: parameters.is_some_and(|ps| {
                ps.iter()
                    .any(|p| p["in"] == "header" && p["name"] == "If-Match")
            }),
            path_parameters: path.contains('{'),
            query_parameters: has("query"),
            command: method != "get",
        }
    }

    /// Whether the operation can answer `status` with a problem: 413 and 415 need a body, 412
    /// an `If-Match`, 404 a path parameter (an id that may be unknown or not the caller's),
    /// 409 a command, 422 a command or a query's bounds, 400 something to parse; anything
    /// may meet 401, 403, 406, 429, 500 and 503.
    fn can_answer(&self, status: u16) -> bool {
        match status {
            413 | 415 => self.body,
            412 => self.if_match,
            404 => self.path_parameters,
            409 => self.command,
            422 => self.command || self.query_parameters,
            400 => self.body || self.path_parameters || self.query_parameters || self.if_match,
            _ => true,
        }
    }
}

/// `x-request-id` as a request parameter: optional, plain, short (see `observe::PlainRequestId`).
fn request_id_parameter() -> Value {
    json!({
        "name": "x-request-id",
        "in": "header",
        "required": false,
        "description": format!(
            "Your id for this request, logged with it, stored in the metadata of the events it \
             writes and sent back in the response's `x-request-id`. Letters, digits, `-`, `_`, \
             `.`, `:`, at most {MAX_REQUEST_ID} characters; another value is replaced by a \
             fresh id (not refused)."
        ),
        // no pattern: another value is not refused, so the schema must not promise it is
        "schema": { "type": "string" },
        "example": "checkout-7f3a9c",
    })
}

fn request_id_header() -> Value {
    json!({
        "description": "The request's id: the caller's `x-request-id` when it sent a plain one, \
                        else a fresh one; quote it when reporting a problem.",
        "schema": { "type": "string", "maxLength": 64 },
    })
}
