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

/// One Server-Sent Event of a live feed, as `EventSource` hands it over.
#[derive(Debug, Object)]
#[oai(rename = "LiveMessage")]
pub struct LiveMessageDoc {
    /// `snapshot` (an order feed's first message when it does not resume) or `event`.
    #[oai(validator(pattern = "^(snapshot|event)$"))]
    pub event: String,
    /// What to resume with (`Last-Event-ID` or `?after=`).
    pub id: String,
    /// JSON. For `event`, one order event: `order_id`, `version` (the order's after it),
    /// `event_id`, `event_type` (e.g. `PreparationStarted`), `payload` (the event as recorded),
    /// `recorded_at`, `status` (the order's status after the event: draft, placed, confirmed,
    /// rejected, preparing, ready_for_pickup, picked_up, shipped, delivered, cancelled,
    /// discarded) and `previous_status` (before it; absent on the order's first event). For
    /// `snapshot`, the order as `GET /v1/orders/{id}` returns it (`OrderDetailView`).
    pub data: String,
}

/// Describes the live feeds.
#[derive(Debug)]
pub struct LiveFeedsDoc;

const FRAMING: &str = "Server-Sent Events (`Accept: text/event-stream`): each message is \
`event: snapshot` (an order feed's first message when it does not resume: `data` is the order \
as `GET /v1/orders/{id}` returns it) or `event: event` (`data`: the event with the order's `status` and `previous_status`), with `id:` \
the id to resume with (`Last-Event-ID` or `?after=`); a comment every 15 s keeps the stream \
open. A WebSocket upgrade on the same path sends the same messages as text frames \
`{\"type\", \"id\", \"data\"}`. Browsers may pass the token as `?access_token=`.";

fn param(
    name: &str,
    in_type: MetaParamIn,
    required: bool,
    description: &str,
    schema: MetaSchema,
) -> MetaOperationParam {
    MetaOperationParam {
        name: name.to_owned(),
        schema: MetaSchemaRef::Inline(Box::new(schema)),
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

/// A string parameter matching `pattern`.
fn text(pattern: &str) -> MetaSchema {
    MetaSchema {
        pattern: Some(pattern.to_owned()),
        max_length: Some(64),
        ..MetaSchema::new("string")
    }
}

fn feed(
    path: &str,
    operation_id: &'static str,
    summary: &'static str,
    id_description: &str,
    resume_id: &str,
    messages: MetaSchemaRef,
) -> MetaPath {
    let stream = MetaResponse {
        description: FRAMING,
        status: Some(200),
        status_range: None,
        content: vec![MetaMediaType {
            content_type: "text/event-stream",
            schema: messages,
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
                param(
                    "id",
                    MetaParamIn::Path,
                    true,
                    id_description,
                    MetaSchema::new_with_format("string", "uuid"),
                ),
                param(
                    "after",
                    MetaParamIn::Query,
                    false,
                    "Resume after this message id (as `Last-Event-ID`).",
                    text(resume_id),
                ),
                param(
                    "Last-Event-ID",
                    MetaParamIn::Header,
                    false,
                    "Resume after this message id (what `EventSource` sends when it reconnects).",
                    text(resume_id),
                ),
                param(
                    "access_token",
                    MetaParamIn::Query,
                    false,
                    "The bearer token, for clients that cannot send headers (`EventSource`, `WebSocket`).",
                    MetaSchema::new("string"),
                ),
            ],
            request: None,
            responses: MetaResponses {
                responses: vec![
                    stream,
                    problem(400, "A malformed resume id."),
                    problem(401, "No valid token."),
                    problem(403, "A role that may not follow this feed."),
                    problem(404, "No such order or store, or one the caller may not see."),
                    problem(406, "Neither `text/event-stream` accepted nor a WebSocket upgrade."),
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
                    // a version
                    "^[0-9]{1,18}$",
                    MetaSchemaRef::Reference("LiveMessage".to_owned()),
                ),
                feed(
                    "/v1/stores/{id}/live",
                    "storeLive",
                    "Follow a store's orders live",
                    "The store's id.",
                    // opaque (a log position); one the feed does not know is 410
                    "^.{0,64}$",
                    MetaSchemaRef::Reference("LiveMessage".to_owned()),
                ),
            ],
        }]
    }

    fn register(registry: &mut Registry) {
        LiveMessageDoc::register(registry);
        ProblemDetails::register(registry);
    }

    fn add_routes(
        self,
        _route_table: &mut HashMap<String, HashMap<Method, poem::endpoint::BoxEndpoint<'static>>>,
    ) {
    }
}
