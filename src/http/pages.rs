//! Pages a person opens in a browser (DESIGN §9): `/board/{store_id}`, a store's open orders in
//! columns by status, moving live, with a button for each order's next step; and
//! `/track/{order_id}`, one order's timeline, live. Plain HTML, CSS and JavaScript embedded in
//! the binary (no build step, no CDN), calling the same REST API and live feeds as any client,
//! with the token the person enters once (or passes as `#token=...`), kept in the tab's
//! `sessionStorage`, never in the page URL.

use poem::http::{header, StatusCode};
use poem::{handler, Response};

/// A page or asset, with headers that keep it to itself: scripts and styles only from here,
/// connections only to this service, no framing, no referrer.
fn asset(content_type: &'static str, body: &'static str) -> Response {
    Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, content_type)
        .header(
            header::CONTENT_SECURITY_POLICY,
            "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; \
             img-src 'self' data:; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        )
        .header(header::X_CONTENT_TYPE_OPTIONS, "nosniff")
        .header(header::REFERRER_POLICY, "no-referrer")
        .header(header::CACHE_CONTROL, "no-cache")
        .body(body)
}

const HTML: &str = "text/html; charset=utf-8";

/// `GET /board/{store_id}`
#[handler]
pub fn board() -> Response {
    asset(HTML, include_str!("pages/board.html"))
}

/// `GET /track/{order_id}`
#[handler]
pub fn track() -> Response {
    asset(HTML, include_str!("pages/track.html"))
}

/// `GET /pages/{file}`: the pages' scripts and style sheet.
#[handler]
pub fn file(poem::web::Path(name): poem::web::Path<String>) -> Response {
    const JS: &str = "text/javascript; charset=utf-8";
    match name.as_str() {
        "app.js" => asset(JS, include_str!("pages/app.js")),
        "board.js" => asset(JS, include_str!("pages/board.js")),
        "track.js" => asset(JS, include_str!("pages/track.js")),
        "style.css" => asset("text/css; charset=utf-8", include_str!("pages/style.css")),
        _ => Response::builder().status(StatusCode::NOT_FOUND).finish(),
    }
}
