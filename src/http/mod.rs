//! The HTTP API: poem-openapi services by resource, assembled into one endpoint with the
//! middleware every request passes through (outermost first): request id, observation
//! (metrics + span), problem+json rendering, body size limit, then the routes.

pub mod admin;
pub mod allowed;
pub mod auth;
pub mod catalog;
mod catalog_examples;
pub mod command;
pub mod consistency;
pub mod cors;
pub mod cursor;
pub mod dates;
pub mod example_data;
pub mod examples;
pub mod limits;
pub mod live;
pub mod live_doc;
pub mod members;
pub mod metrics;
pub mod negotiate;
pub mod observe;
pub mod ops;
pub mod orders;
pub mod pages;
pub mod problem;
pub mod queries;
pub mod reading;
pub mod sagas;
pub mod security;
pub mod server;
pub mod spec;
pub mod starting;
pub mod text;
pub mod throttle;

use poem::middleware::{RequestId, ReuseId};
use poem::{Endpoint, EndpointExt as _, IntoEndpoint, Route};
use poem_openapi::OpenApiService;

use crate::state::AppState;

pub use spec::ApiTags;

type Apis = spec::SharedPaths<(
    orders::OrdersApi,
    queries::QueriesApi,
    sagas::SagasApi,
    catalog::CatalogApi,
    members::MembersApi,
    admin::AdminApi,
    ops::OpsApi,
    live_doc::LiveFeedsDoc,
)>;

/// The OpenAPI service (also used by `order-service openapi` to print the spec).
pub fn openapi() -> OpenApiService<Apis, ()> {
    OpenApiService::new(
        spec::SharedPaths((
            orders::OrdersApi,
            queries::QueriesApi,
            sagas::SagasApi,
            catalog::CatalogApi,
            members::MembersApi,
            admin::AdminApi,
            ops::OpsApi,
            live_doc::LiveFeedsDoc,
        )),
        "order-service",
        env!("CARGO_PKG_VERSION"),
    )
    .description(
        "Event-sourced order service. Every `/v1` operation needs a bearer JWT; every error is \
         `application/problem+json` whose `type` names the broken rule.",
    )
    .license(
        poem_openapi::LicenseObject::new("Apache-2.0")
            .url("https://www.apache.org/licenses/LICENSE-2.0"),
    )
    .server(
        poem_openapi::ServerObject::new("/")
            .description("this service: the same host and port as this document"),
    )
}

/// The OpenAPI document as served at `/openapi.json` and printed by `order-service openapi`.
pub fn openapi_json() -> String {
    spec::finish(&openapi().spec(), &examples::bodies())
}

/// The whole HTTP application.
pub fn app(state: AppState) -> impl Endpoint {
    let api = openapi();
    let document = openapi_json();
    let spec = poem::endpoint::make_sync(move |_| {
        poem::Response::builder()
            .content_type("application/json; charset=utf-8")
            .body(document.clone())
    });
    let docs = api.swagger_ui();
    let max_body = state.limits.max_body_bytes;
    let state_limits = state.limits.clone();
    let metrics = state.metrics.clone();
    let cors = state.cors.clone();
    let routes = Route::new()
        .at("/v1/orders/:id/live", poem::get(live::order_live))
        .at("/v1/stores/:id/live", poem::get(live::store_live))
        .at("/board/:store_id", poem::get(pages::board))
        .at("/track/:order_id", poem::get(pages::track))
        .at("/pages/:file", poem::get(pages::file))
        .nest("/", api)
        .at("/openapi.json", spec)
        .nest("/docs", docs)
        .data(state);
    let body_timeout = std::time::Duration::from_millis(state_limits.body_timeout_ms);
    let limited = limits::BodyLimit::new(routes.into_endpoint(), max_body, body_timeout);
    let allowed = allowed::AllowedMethods::of::<Apis>(&[
        ("/v1/orders/{id}/live", "GET"),
        ("/v1/stores/{id}/live", "GET"),
        ("/openapi.json", "GET"),
    ]);
    let observed = observe::Observe::new(problem::ProblemEndpoint(limited, allowed), metrics)
        .with(RequestId::default().reuse_id(ReuseId::Use));
    cors::Cors::new(cors, observe::PlainRequestId(observed))
}
