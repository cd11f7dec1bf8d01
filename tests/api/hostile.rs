//! Malformed and hostile requests: each gets the documented 4xx as problem+json, nothing is
//! stored, nothing answers 5xx.

use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use order_service::http::auth::{Role, TokenMinter};
use reqwest::Method;
use secrecy::SecretString;
use serde_json::{json, Value};
use uuid::Uuid;

use crate::helpers::{spawn_app, Who};

/// A token signed with the test secret but with claims of our choosing.
fn forged(claims: &Value, secret: &str) -> String {
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        claims,
        &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()),
    )
    .expect("encode")
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

const SECRET: &str = "test-secret-that-is-long-enough-for-hs256-0123456789";

fn raw_token(token: String) -> Who {
    Who {
        token,
        sub: "x".into(),
    }
}

struct Case {
    name: &'static str,
    method: Method,
    path: String,
    who: Option<Who>,
    body: Body,
    headers: Vec<(&'static str, String)>,
    status: u16,
    slug: &'static str,
}

enum Body {
    None,
    Json(Value),
    Raw(&'static str, Vec<u8>),
}

#[tokio::test]
async fn hostile_requests_are_refused_with_problems_and_store_nothing() {
    // Arrange: two customers with one order each.
    let app = spawn_app().await;
    let store = app.store_with_products().await;
    let alice = app.customer("alice");
    let bob = app.customer("bob");
    let order = app.draft_with_tea(&alice, store).await;
    let bobs = app.create_order(&bob, store).await;
    let items = format!("/v1/orders/{order}/items");
    let exp = now() + 600;
    let claims = |overrides: Value| {
        let mut c = json!({"sub": "alice", "roles": ["customer"], "iss": "order-service", "aud": "order-service", "exp": exp, "iat": now()});
        c.as_object_mut()
            .expect("object")
            .extend(overrides.as_object().expect("object").clone());
        c
    };
    let b64 = |v: &Value| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string());
    let alg_none = format!(
        "{}.{}.",
        b64(&json!({"alg": "none", "typ": "JWT"})),
        b64(&claims(json!({})))
    );
    let wrong_aud = TokenMinter::new(
        &SecretString::from(SECRET.to_owned()),
        "order-service",
        "someone-else",
    )
    .expect("minter")
    .mint(
        "alice",
        &[Role::Customer],
        &[],
        std::time::Duration::from_secs(60),
    )
    .expect("mint");
    let many_lines: Vec<Value> = (0..10_000)
        .map(|i| json!({"sku": format!("P{i}"), "quantity": 1}))
        .collect();
    let too_many_items: Vec<Value> = (0..101)
        .map(|i| json!({"sku": format!("P{i}"), "quantity": 1}))
        .collect();
    let add = |body: Value| Body::Json(body);
    let case = |name, method, path: &str, who: Option<&Who>, body, status, slug| Case {
        name,
        method,
        path: path.to_owned(),
        who: who.cloned(),
        body,
        headers: vec![],
        status,
        slug,
    };

    let mut cases = vec![
        // --- authentication
        case(
            "no token",
            Method::POST,
            &items,
            None,
            add(json!({"sku": "TEA", "quantity": 1})),
            401,
            "token-missing",
        ),
        case(
            "expired token",
            Method::GET,
            &format!("/v1/orders/{order}"),
            Some(&raw_token(forged(
                &claims(json!({"exp": now() - 3600})),
                SECRET,
            ))),
            Body::None,
            401,
            "token-expired",
        ),
        case(
            "alg none",
            Method::GET,
            &format!("/v1/orders/{order}"),
            Some(&raw_token(alg_none)),
            Body::None,
            401,
            "wrong-algorithm",
        ),
        case(
            "wrong audience",
            Method::GET,
            &format!("/v1/orders/{order}"),
            Some(&raw_token(wrong_aud)),
            Body::None,
            401,
            "wrong-audience",
        ),
        case(
            "wrong issuer",
            Method::GET,
            &format!("/v1/orders/{order}"),
            Some(&raw_token(forged(&claims(json!({"iss": "evil"})), SECRET))),
            Body::None,
            401,
            "wrong-issuer",
        ),
        case(
            "no audience claim",
            Method::GET,
            &format!("/v1/orders/{order}"),
            Some(&raw_token(forged(
                &json!({"sub": "alice", "roles": ["customer"], "iss": "order-service", "exp": exp}),
                SECRET,
            ))),
            Body::None,
            401,
            "missing-claim",
        ),
        case(
            "other secret",
            Method::GET,
            &format!("/v1/orders/{order}"),
            Some(&raw_token(forged(
                &claims(json!({})),
                "another-secret-that-is-also-long-enough-xxxxxxxx",
            ))),
            Body::None,
            401,
            "bad-signature",
        ),
        case(
            "garbage token",
            Method::GET,
            &format!("/v1/orders/{order}"),
            Some(&raw_token("not.a.jwt".into())),
            Body::None,
            401,
            "token-malformed",
        ),
        case(
            "self-granted role",
            Method::GET,
            &format!("/v1/orders/{order}"),
            Some(&raw_token(forged(
                &claims(json!({"roles": ["root"]})),
                SECRET,
            ))),
            Body::None,
            401,
            "invalid-roles",
        ),
        // --- malformed bodies
        case(
            "bad json",
            Method::POST,
            &items,
            Some(&alice),
            Body::Raw("application/json", b"{\"sku\": \"TEA\",".to_vec()),
            400,
            "invalid-body",
        ),
        case(
            "json null",
            Method::POST,
            &items,
            Some(&alice),
            Body::Raw("application/json", b"null".to_vec()),
            400,
            "invalid-body",
        ),
        case(
            "missing fields",
            Method::POST,
            &items,
            Some(&alice),
            add(json!({})),
            400,
            "invalid-body",
        ),
        case(
            "wrong type",
            Method::POST,
            &items,
            Some(&alice),
            add(json!({"sku": "TEA", "quantity": "two"})),
            400,
            "invalid-body",
        ),
        case(
            "quantity beyond i64",
            Method::POST,
            &items,
            Some(&alice),
            Body::Raw(
                "application/json",
                b"{\"sku\":\"TEA\",\"quantity\":1e30}".to_vec(),
            ),
            400,
            "invalid-body",
        ),
        case(
            "unknown field",
            Method::POST,
            &items,
            Some(&alice),
            add(json!({"sku": "TEA", "quantity": 1, "gift": true})),
            400,
            "invalid-body",
        ),
        case(
            "client-sent price",
            Method::POST,
            &items,
            Some(&alice),
            add(json!({"sku": "TEA", "quantity": 1, "unit_price_minor": 1})),
            400,
            "invalid-body",
        ),
        case(
            "client-sent status",
            Method::POST,
            "/v1/orders",
            Some(&alice),
            add(json!({"store_id": store, "status": "confirmed"})),
            400,
            "invalid-body",
        ),
        case(
            "client-sent total",
            Method::POST,
            "/v1/orders",
            Some(&alice),
            add(json!({"store_id": store, "total_minor": 0})),
            400,
            "invalid-body",
        ),
        case(
            "client-sent line price",
            Method::POST,
            "/v1/orders",
            Some(&alice),
            add(
                json!({"store_id": store, "items": [{"sku": "TEA", "quantity": 1, "unit_price_minor": 1}]}),
            ),
            400,
            "invalid-body",
        ),
        case(
            "wrong content type",
            Method::POST,
            &items,
            Some(&alice),
            Body::Raw("text/plain", b"sku=TEA".to_vec()),
            415,
            "unsupported-media-type",
        ),
        case(
            "10 000 lines",
            Method::POST,
            "/v1/orders",
            Some(&alice),
            add(json!({"store_id": store, "items": many_lines})),
            413,
            "body-too-large",
        ),
        case(
            "101 items",
            Method::POST,
            "/v1/orders",
            Some(&alice),
            add(json!({"store_id": store, "items": too_many_items})),
            400,
            "invalid-body",
        ),
        case(
            "2 MB body",
            Method::POST,
            &items,
            Some(&alice),
            Body::Raw("application/json", vec![b' '; 2 * 1024 * 1024]),
            413,
            "body-too-large",
        ),
        case(
            "unknown status",
            Method::POST,
            &format!("/v1/orders/{order}/status"),
            Some(&app.admin()),
            add(json!({"status": "flying"})),
            400,
            "invalid-body",
        ),
        // --- values that break rules
        case(
            "zero quantity",
            Method::POST,
            &items,
            Some(&alice),
            add(json!({"sku": "TEA", "quantity": 0})),
            422,
            "validation-failed",
        ),
        case(
            "negative quantity",
            Method::POST,
            &items,
            Some(&alice),
            add(json!({"sku": "TEA", "quantity": -5})),
            422,
            "validation-failed",
        ),
        case(
            "too large quantity",
            Method::POST,
            &items,
            Some(&alice),
            add(json!({"sku": "TEA", "quantity": 10_001})),
            422,
            "validation-failed",
        ),
        case(
            "sku with spaces",
            Method::POST,
            &items,
            Some(&alice),
            add(json!({"sku": "DROP TABLE", "quantity": 1})),
            422,
            "validation-failed",
        ),
        case(
            "unknown currency",
            Method::POST,
            "/v1/orders",
            Some(&alice),
            add(json!({"store_id": store, "currency": "XYZ"})),
            422,
            "validation-failed",
        ),
        case(
            "bad email",
            Method::POST,
            "/v1/orders",
            Some(&alice),
            add(json!({"store_id": store, "customer_email": "not-an-email"})),
            422,
            "validation-failed",
        ),
        case(
            "negative line quantity on create",
            Method::POST,
            "/v1/orders",
            Some(&alice),
            add(json!({"store_id": store, "items": [{"sku": "TEA", "quantity": -1}]})),
            422,
            "validation-failed",
        ),
        case(
            "set confirmed directly",
            Method::POST,
            &format!("/v1/orders/{order}/status"),
            Some(&app.admin()),
            add(json!({"status": "confirmed"})),
            422,
            "status-not-settable",
        ),
        case(
            "negative product price",
            Method::POST,
            &format!("/v1/stores/{store}/products"),
            Some(&app.admin()),
            add(json!({"sku": "NEG", "name": "Neg", "unit_price_minor": -1})),
            422,
            "validation-failed",
        ),
        // --- ownership and roles
        case(
            "other customer's order",
            Method::GET,
            &format!("/v1/orders/{bobs}"),
            Some(&alice),
            Body::None,
            404,
            "order-not-found",
        ),
        case(
            "other customer's order, command",
            Method::POST,
            &format!("/v1/orders/{bobs}/items"),
            Some(&alice),
            add(json!({"sku": "TEA", "quantity": 1})),
            404,
            "order-not-found",
        ),
        case(
            "order for another customer",
            Method::POST,
            "/v1/orders",
            Some(&alice),
            add(json!({"store_id": store, "customer_id": "bob"})),
            403,
            "forbidden",
        ),
        case(
            "analyst command",
            Method::POST,
            &items,
            Some(&app.analyst()),
            add(json!({"sku": "TEA", "quantity": 1})),
            403,
            "forbidden",
        ),
        case(
            "customer ships",
            Method::POST,
            &format!("/v1/orders/{order}/ship"),
            Some(&alice),
            add(json!({"carrier": "DHL", "tracking_number": "1"})),
            403,
            "forbidden",
        ),
        // --- paths, methods, headers
        case(
            "unknown order",
            Method::GET,
            &format!("/v1/orders/{}", Uuid::new_v4()),
            Some(&alice),
            Body::None,
            404,
            "order-not-found",
        ),
        case(
            "bad order id",
            Method::GET,
            "/v1/orders/not-a-uuid",
            Some(&alice),
            Body::None,
            400,
            "invalid-parameter",
        ),
        case(
            "bad line id",
            Method::PATCH,
            &format!("/v1/orders/{order}/items/abc"),
            Some(&alice),
            add(json!({"quantity": 1})),
            400,
            "invalid-parameter",
        ),
        case(
            "unknown route",
            Method::GET,
            "/v1/nothing-here",
            Some(&alice),
            Body::None,
            404,
            "not-found",
        ),
        case(
            "wrong method",
            Method::PUT,
            "/v1/orders",
            Some(&alice),
            add(json!({})),
            405,
            "method-not-allowed",
        ),
    ];
    let mut long_key = case(
        "idempotency key too long",
        Method::POST,
        &items,
        Some(&alice),
        add(json!({"sku": "TEA", "quantity": 1})),
        400,
        "invalid-idempotency-key",
    );
    long_key.headers.push(("idempotency-key", "k".repeat(300)));
    cases.push(long_key);
    let mut basic = case(
        "basic auth",
        Method::GET,
        &format!("/v1/orders/{order}"),
        None,
        Body::None,
        401,
        "token-missing",
    );
    basic
        .headers
        .push(("authorization", "Basic YWxpY2U6c2VjcmV0".into()));
    cases.push(basic);
    assert!(cases.len() >= 30);

    let events_before = app.event_count().await;

    // Act + assert, case by case.
    let mut failures = Vec::new();
    for c in cases {
        let mut req = app
            .client
            .request(c.method.clone(), format!("{}{}", app.address, c.path));
        if let Some(who) = &c.who {
            req = req.bearer_auth(&who.token);
        }
        for (k, v) in &c.headers {
            req = req.header(*k, v);
        }
        req = match c.body {
            Body::None => req,
            Body::Json(v) => req.json(&v),
            Body::Raw(ct, bytes) => req.header("content-type", ct).body(bytes),
        };
        let answer = app.raw(req).await;
        let result = std::panic::catch_unwind(|| answer.assert_problem(c.status, c.slug));
        if result.is_err() || answer.status.is_server_error() {
            failures.push(format!("{}: got {} {}", c.name, answer.status, answer.text));
        }
        if c.status == 401 {
            assert!(
                answer
                    .header("www-authenticate")
                    .is_some_and(|v| v.starts_with("Bearer")),
                "{}: WWW-Authenticate",
                c.name
            );
        }
    }
    assert!(
        failures.is_empty(),
        "{} case(s) failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
    assert_eq!(
        app.event_count().await,
        events_before,
        "hostile requests stored events"
    );
}

#[tokio::test]
async fn problem_bodies_name_the_request_they_answer() {
    let app = spawn_app().await;
    let answer = app
        .send(
            Method::GET,
            "/v1/orders/not-a-uuid",
            None,
            None,
            &[("x-request-id", "req-42")],
        )
        .await;
    answer.assert_problem(401, "token-missing");
    assert_eq!(answer.header("x-request-id"), Some("req-42"));
    assert_eq!(answer.body["instance"], "urn:request:req-42");
}

#[tokio::test]
async fn invalid_fields_are_listed_together() {
    let app = spawn_app().await;
    let store = app.store_with_products().await;
    let answer = app
        .post(
            "/v1/orders",
            &app.customer("alice"),
            json!({"store_id": store, "customer_email": "nope", "items": [{"sku": "ok", "quantity": 0}, {"sku": "bad sku", "quantity": 1}]}),
        )
        .await;
    answer.assert_problem(422, "validation-failed");
    let fields: Vec<&str> = answer.body["errors"]
        .as_array()
        .expect("errors")
        .iter()
        .filter_map(|e| e["field"].as_str())
        .collect();
    assert_eq!(
        fields,
        ["customer_email", "items[0].quantity", "items[1].sku"]
    );
}
