//! The live feeds in the OpenAPI document: `GET /v1/orders/{id}/live` and
//! `GET /v1/stores/{id}/live` answer `text/event-stream` (and upgrade to a WebSocket, which
//! OpenAPI cannot say; `docs/live.md` describes the frames). The routes themselves are
//! `live.rs`'s, beside the OpenAPI service: this API only describes them, and adds no route.

use std::collections::HashMap;

use poem::http::Method;
use poem_openapi::registry::{
    MetaApi, MetaMediaType, MetaOperation, MetaOperationParam, MetaParamIn, MetaPath, MetaResponse,
    MetaResponses, MetaSchema, MetaSchemaRef, Registry,
};
use poem_openapi::types::Type as _;
use poem_openapi::{Object, OpenApi, Tags as _};

use super::problem::ProblemDetails;
use super::spec::ApiTags;

/// The `data` of an `event` message on a live feed (one order event).
#[derive(Debug, Object)]
#[oai(rename = "LiveEvent")]
pub struct LiveEventDoc {
    /// The order the event belongs to.
    pub order_id: uuid::Uuid,
    /// The order's version after the event.
    pub version: i64,
    /// The event's id.
    pub event_id: uuid::Uuid,
    /// The event's type, e.g. `OrderPlaced`, `PreparationStarted`.
    pub event_type: String,
    /// The event as recorded; its fields depend on `event_type`.
    pub payload: serde_json::Value,
    /// When the event was recorded.
    pub recorded_at: chrono::DateTime<chrono::Utc>,
    /// The order's status after the event (draft, placed, confirmed, rejected, preparing,
    /// ready_for_pickup, picked_up, shipped, delivered, cancelled, discarded).
    pub status: String,
    /// The order's status before the event; absent on the order's first event.
    pub previous_status: Option<String>,
}

/// Describes the live feeds.
#[derive(Debug)]
pub struct LiveFeedsDoc;

const FRAMING: &str = "Server-Sent Events (`Accept: text/event-stream`): each message is \
`event: snapshot` (an order feed's first message when it does not resume: `data` is the order \
as `GET /v1/orders/{id}` returns it) or `event: event` (`data` is a `LiveEvent`), with `id:` \
the id to resume with (`Last-Event-ID` or `?after=`); a comment every 15 s keeps the stream \
open. A WebSocket upgrade on the same path sends the same messages as text frames \
`{\"type\", \"id\", \"data\"}`. Browsers may pass the token as `?access_token=`.";

fn param(
    name: &str,
    in_type: MetaParamIn,
    required: bool,
    description: &str,
) -> MetaOperationParam {
    MetaOperationParam {
        name: name.to_owned(),
        schema: MetaSchemaRef::Inline(Box::new(MetaSchema::new("string"))),
        in_type,
        description: Some(description.to_owned()),
        required,
        deprecated: false,
        explode: true,
        style: None,
    }
}

fn problem(status: u16, description: &'static str) -> MetaResponse {
    MetaResponse {
        description,
        status: Some(status),
        status_range: None,
        content: vec![MetaMediaType {
            content_type: "application/problem+json",
            schema: ProblemDetails::schema_ref(),
        }],
        headers: Vec::new(),
    }
}

fn feed(
    path: &str,
    operation_id: &'static str,
    summary: &'static str,
    id_description: &str,
) -> MetaPath {
    let stream = MetaResponse {
        description: FRAMING,
        status: Some(200),
        status_range: None,
        content: vec![MetaMediaType {
            content_type: "text/event-stream",
            schema: MetaSchemaRef::Reference("LiveEvent".to_owned()),
        }],
        headers: Vec::new(),
    };
    MetaPath {
        path: path.to_owned(),
        operations: vec![MetaOperation {
            method: Method::GET,
            tags: vec![ApiTags::Orders.name()],
            summary: Some(summary),
            description: Some(FRAMING),
            external_docs: None,
            params: vec![
                param("id", MetaParamIn::Path, true, id_description),
                param(
                    "after",
                    MetaParamIn::Query,
                    false,
                    "Resume after this message id (as `Last-Event-ID`).",
                ),
                param(
                    "Last-Event-ID",
                    MetaParamIn::Header,
                    false,
                    "Resume after this message id (what `EventSource` sends when it reconnects).",
                ),
                param(
                    "access_token",
                    MetaParamIn::Query,
                    false,
                    "The bearer token, for clients that cannot send headers (`EventSource`, `WebSocket`).",
                ),
            ],
            request: None,
            responses: MetaResponses {
                responses: vec![
                    stream,
                    problem(401, "No valid token."),
                    problem(404, "No such order or store, or one the caller may not see."),
                    problem(410, "The resume id is older than the feed keeps (store feeds)."),
                    problem(429, "Too many feeds open for this caller."),
                ],
            },
            deprecated: false,
            security: vec![HashMap::from([("BearerAuth", Vec::new())])],
            operation_id: Some(operation_id),
            code_samples: Vec::new(),
        }],
    }
}

impl OpenApi for LiveFeedsDoc {
    fn meta() -> Vec<MetaApi> {
        vec![MetaApi {
            paths: vec![
                feed(
                    "/v1/orders/{id}/live",
                    "orderLive",
                    "Follow one order live",
                    "The order's id.",
                ),
                feed(
                    "/v1/stores/{id}/live",
                    "storeLive",
                    "Follow a store's orders live",
                    "The store's id.",
                ),
            ],
        }]
    }

    fn register(registry: &mut Registry) {
        LiveEventDoc::register(registry);
        ProblemDetails::register(registry);
    }

    fn add_routes(
        self,
        _route_table: &mut HashMap<String, HashMap<Method, poem::endpoint::BoxEndpoint<'static>>>,
    ) {
    }
}
