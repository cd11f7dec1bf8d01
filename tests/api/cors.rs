//! Browser clients from other origins (`APP__HTTP__CORS_ORIGINS`): a listed origin gets its
//! preflight answered and may read the answers; any other origin is served without a grant
//! (the browser keeps the answer from its page), and nothing is refused for its `Origin`.

use order_service::config::CorsOrigins;
use reqwest::Method;

use crate::helpers::{spawn_app, spawn_app_with};

const SHOP: &str = "https://shop.example";

#[tokio::test]
async fn a_listed_origin_gets_its_preflight_answered_and_may_read_answers() {
    let app = spawn_app_with(|s| {
        s.http.cors_origins = CorsOrigins(vec![SHOP.into(), "http://localhost:5173".into()]);
    })
    .await;
    let admin = app.admin();

    // Arrange + Act: the preflight a browser sends before a POST with a token and a key.
    let preflight = app
        .raw(
            app.client
                .request(Method::OPTIONS, format!("{}/v1/orders", app.address))
                .header("Origin", SHOP)
                .header("Access-Control-Request-Method", "POST")
                .header(
                    "Access-Control-Request-Headers",
                    "authorization, content-type, idempotency-key",
                ),
        )
        .await;

    // Assert
    preflight.assert_status(204);
    assert_eq!(preflight.header("access-control-allow-origin"), Some(SHOP));
    let methods = preflight
        .header("access-control-allow-methods")
        .unwrap_or("");
    assert!(
        methods.contains("POST") && methods.contains("PATCH"),
        "{methods}"
    );
    let headers = preflight
        .header("access-control-allow-headers")
        .unwrap_or("");
    for needed in [
        "authorization",
        "content-type",
        "idempotency-key",
        "if-match",
    ] {
        assert!(headers.contains(needed), "{needed} not in {headers}");
    }
    assert_eq!(preflight.header("access-control-max-age"), Some("600"));

    // The request itself: granted, with the headers a page needs exposed.
    let listed = app
        .raw(
            app.client
                .get(format!("{}/v1/stores", app.address))
                .bearer_auth(&admin.token)
                .header("Origin", SHOP),
        )
        .await;
    listed.assert_status(200);
    assert_eq!(listed.header("access-control-allow-origin"), Some(SHOP));
    let exposed = listed.header("access-control-expose-headers").unwrap_or("");
    for needed in ["etag", "location", "x-request-id", "retry-after"] {
        assert!(exposed.contains(needed), "{needed} not in {exposed}");
    }
    assert_eq!(listed.header("vary"), Some("Origin"));

    // A problem answer is readable too: the page can show it.
    let unknown = app
        .raw(
            app.client
                .get(format!("{}/v1/orders/{}", app.address, uuid::Uuid::nil()))
                .bearer_auth(&admin.token)
                .header("Origin", SHOP),
        )
        .await;
    unknown.assert_status(404);
    assert_eq!(unknown.header("access-control-allow-origin"), Some(SHOP));
}

#[tokio::test]
async fn another_origin_is_served_without_a_grant() {
    let app = spawn_app_with(|s| s.http.cors_origins = CorsOrigins(vec![SHOP.into()])).await;
    let admin = app.admin();

    let answer = app
        .raw(
            app.client
                .get(format!("{}/v1/stores", app.address))
                .bearer_auth(&admin.token)
                .header("Origin", "https://evil.example"),
        )
        .await;
    answer.assert_status(200);
    assert_eq!(answer.header("access-control-allow-origin"), None);

    // its preflight is not answered as one: the browser stops there
    let preflight = app
        .raw(
            app.client
                .request(Method::OPTIONS, format!("{}/v1/orders", app.address))
                .header("Origin", "https://evil.example")
                .header("Access-Control-Request-Method", "POST"),
        )
        .await;
    assert_eq!(preflight.header("access-control-allow-origin"), None);
    assert_ne!(preflight.status, 204);
}

#[tokio::test]
async fn without_origins_configured_nothing_is_granted() {
    let app = spawn_app().await;
    let answer = app
        .raw(
            app.client
                .get(format!("{}/v1/stores", app.address))
                .bearer_auth(&app.admin().token)
                .header("Origin", SHOP),
        )
        .await;
    answer.assert_status(200);
    assert_eq!(answer.header("access-control-allow-origin"), None);
}
