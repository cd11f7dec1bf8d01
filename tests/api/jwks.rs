//! Tokens of an identity provider: the test plays the provider, serving its JWKS on loopback
//! (a small poem server on port 0) and signing tokens the way Keycloak issues them (roles under
//! `realm_access.roles`, `aud` a list, a `kid` in the header).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine as _;
use jsonwebtoken::jwk::Jwk;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use order_service::config::Settings;
use order_service::simulator::SimulatorConfig;
use poem::listener::{Acceptor as _, Listener as _, TcpListener};
use serde_json::{json, Value};
use uuid::Uuid;

use crate::helpers::{spawn_app_with, spawn_saga_app, TestApp, Who};

const ISSUER: &str = "https://idp.test/realms/shop";
const AUDIENCE: &str = "order-service";
const ROLES_CLAIM: &str = "realm_access.roles";

/// A test-only signing key (`tests/api/keys/`) under a kid.
struct SigningKey {
    kid: String,
    alg: Algorithm,
    key: EncodingKey,
}

/// The DER inside a PEM file.
fn der(pem: &str) -> Vec<u8> {
    let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    base64::engine::general_purpose::STANDARD
        .decode(body)
        .expect("PEM body")
}

impl SigningKey {
    fn rsa(kid: &str, pem: &str) -> Self {
        Self {
            kid: kid.to_owned(),
            alg: Algorithm::RS256,
            key: EncodingKey::from_rsa_der(&der(pem)),
        }
    }
    fn ec(kid: &str) -> Self {
        Self {
            kid: kid.to_owned(),
            alg: Algorithm::ES256,
            key: EncodingKey::from_ec_der(&der(include_str!("keys/ec-a.pem"))),
        }
    }
    fn ed(kid: &str) -> Self {
        Self {
            kid: kid.to_owned(),
            alg: Algorithm::EdDSA,
            key: EncodingKey::from_ed_der(&der(include_str!("keys/ed-a.pem"))),
        }
    }

    /// The public half, as the provider publishes it.
    fn jwk(&self) -> Value {
        let mut jwk = Jwk::from_encoding_key(&self.key, self.alg).expect("jwk");
        jwk.common.key_id = Some(self.kid.clone());
        serde_json::to_value(jwk).expect("json")
    }

    /// A token with `claims` signed by this key, naming it by kid.
    fn sign(&self, claims: &Value) -> String {
        let mut header = Header::new(self.alg);
        header.kid = Some(self.kid.clone());
        jsonwebtoken::encode(&header, claims, &self.key).expect("sign")
    }

    /// A Keycloak-shaped token for `sub` with `roles` (plus roles of other applications) and
    /// `store_ids`, living ten minutes.
    fn token(&self, sub: &str, roles: &[&str], store_ids: &[Uuid]) -> Who {
        let mut all: Vec<&str> = vec!["offline_access", "uma_authorization"];
        all.extend(roles);
        Who {
            token: self.sign(&claims(
                sub,
                &json!({"realm_access": {"roles": all}, "store_ids": store_ids}),
            )),
            sub: sub.to_owned(),
        }
    }
}

/// Standard claims for `sub` (valid now, ten minutes) with `extra` merged in.
fn claims(sub: &str, extra: &Value) -> Value {
    let now = jsonwebtoken::get_current_timestamp();
    let mut claims = json!({
        "sub": sub, "iss": ISSUER, "aud": [AUDIENCE, "account"], "iat": now, "exp": now + 600,
        "azp": "storefront", "typ": "Bearer",
    });
    claims
        .as_object_mut()
        .expect("object")
        .extend(extra.as_object().expect("object").clone());
    claims
}

/// The identity provider's JWKS endpoint: serves `keys` and counts the fetches.
struct Provider {
    url: String,
    keys: Arc<Mutex<Vec<Value>>>,
    fetches: Arc<AtomicUsize>,
}

impl Provider {
    async fn serving(keys: &[&SigningKey]) -> Self {
        let served = Arc::new(Mutex::new(keys.iter().map(|k| k.jwk()).collect::<Vec<_>>()));
        let fetches = Arc::new(AtomicUsize::new(0));
        let (s, f) = (served.clone(), fetches.clone());
        let endpoint = poem::endpoint::make_sync(move |_| {
            f.fetch_add(1, Ordering::SeqCst);
            let keys = s.lock().expect("keys").clone();
            poem::web::Json(json!({ "keys": keys }))
        });
        let acceptor = TcpListener::bind("127.0.0.1:0")
            .into_acceptor()
            .await
            .expect("bind");
        let port = acceptor.local_addr()[0]
            .as_socket_addr()
            .expect("tcp")
            .port();
        tokio::spawn(poem::Server::new_with_acceptor(acceptor).run(endpoint));
        Self {
            url: format!("http://127.0.0.1:{port}/realms/shop/protocol/openid-connect/certs"),
            keys: served,
            fetches,
        }
    }

    fn publish(&self, keys: &[&SigningKey]) {
        *self.keys.lock().expect("keys") = keys.iter().map(|k| k.jwk()).collect();
    }

    fn fetches(&self) -> usize {
        self.fetches.load(Ordering::SeqCst)
    }
}

/// Settings of a service trusting `provider`, with Keycloak's roles path.
fn trusting(provider: &Provider, min_refresh: Duration) -> impl FnOnce(&mut Settings) {
    let url = provider.url.clone();
    move |s| {
        s.auth.jwks_url = Some(url);
        ISSUER.clone_into(&mut s.auth.issuer);
        AUDIENCE.clone_into(&mut s.auth.audience);
        ROLES_CLAIM.clone_into(&mut s.auth.roles_claim);
        s.auth.jwks_min_refresh_interval_ms = u64::try_from(min_refresh.as_millis()).expect("ms");
        // no periodic refresh during a test: only the ones the test causes
        s.auth.jwks_refresh_interval_ms = 3_600_000;
    }
}

/// Polls the order as `who` until its status is `status`.
async fn wait_for_status(app: &TestApp, who: &Who, order: Uuid, status: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let answer = app.get(&format!("/v1/orders/{order}"), who).await;
        if answer.body["status"] == status {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "order not {status}: {}",
            answer.text
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn rs256_es256_and_eddsa_tokens_of_the_provider_drive_a_whole_order() {
    let rsa = SigningKey::rsa("rsa-1", include_str!("keys/rsa-a.pem"));
    let ec = SigningKey::ec("ec-1");
    let ed = SigningKey::ed("ed-1");
    let provider = Provider::serving(&[&rsa, &ec, &ed]).await;
    let app = spawn_saga_app(
        SimulatorConfig::default(),
        trusting(&provider, Duration::from_secs(10)),
    )
    .await;
    let admin = rsa.token("ops-1", &["admin"], &[]);
    let store = app
        .post(
            "/v1/stores",
            &admin,
            json!({"name": "Corner", "currency": "EUR"}),
        )
        .await;
    store.assert_status(201);
    let store: Uuid = store.body["id"]
        .as_str()
        .expect("id")
        .parse()
        .expect("uuid");
    app.post(
        &format!("/v1/stores/{store}/products"),
        &admin,
        json!({"sku": "TEA", "name": "Green tea", "unit_price_minor": 450}),
    )
    .await
    .assert_status(201);
    let alice = rsa.token("alice", &["customer"], &[]);
    let staff = ec.token("staff-1", &["staff"], &[store]);
    let analyst = ed.token("analyst-1", &["analyst"], &[]);

    let order = app.create_order(&alice, store).await;
    app.add_item(&alice, order, "TEA", 2)
        .await
        .assert_status(200);
    app.place(&alice, order).await.assert_status(200);
    wait_for_status(&app, &alice, order, "confirmed").await;
    for status in ["preparing", "ready_for_pickup", "picked_up"] {
        app.set_status(&staff, order, status)
            .await
            .assert_status(200);
    }

    wait_for_status(&app, &alice, order, "picked_up").await;
    app.get(&format!("/v1/orders/{order}"), &analyst)
        .await
        .assert_status(200);
    // the customer's token reaches no store: the staff's move was the staff's
    app.set_status(&alice, order, "delivered")
        .await
        .assert_problem(403, "forbidden");
}

#[tokio::test]
async fn a_rotated_key_is_fetched_and_unknown_kids_do_not_hammer_the_provider() {
    let old = SigningKey::rsa("2026-01", include_str!("keys/rsa-a.pem"));
    let new = SigningKey::rsa("2026-02", include_str!("keys/rsa-b.pem"));
    let provider = Provider::serving(&[&old]).await;
    let min_refresh = Duration::from_millis(300);
    let app = spawn_app_with(trusting(&provider, min_refresh)).await;
    let stores = "/v1/stores";
    app.get(stores, &old.token("a", &["analyst"], &[]))
        .await
        .assert_status(200);

    // rotation: the provider publishes the new key and signs with it
    provider.publish(&[&old, &new]);
    let rotated = new.token("a", &["analyst"], &[]);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let answer = app.get(stores, &rotated).await;
        if answer.status == 200 {
            break;
        }
        // refused only while the last fetch is too recent to fetch again
        answer.assert_problem(401, "unknown-kid");
        assert!(Instant::now() < deadline, "the new key was never fetched");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    app.get(stores, &old.token("a", &["analyst"], &[]))
        .await
        .assert_status(200);

    // a kid the provider never served: refused, and at most one fetch per interval
    let stranger = SigningKey::rsa("never-served", include_str!("keys/rsa-b.pem"));
    let before = provider.fetches();
    let started = Instant::now();
    for _ in 0..30 {
        app.get(stores, &stranger.token("a", &["analyst"], &[]))
            .await
            .assert_problem(401, "unknown-kid");
    }
    let intervals = started.elapsed().as_millis() / min_refresh.as_millis() + 1;
    let fetched = provider.fetches() - before;
    assert!(
        fetched as u128 <= intervals,
        "{fetched} fetches for 30 unknown kids in {intervals} interval(s)"
    );
    let page = app.metrics_page().await;
    assert!(
        page.contains("jwks_refreshes_total{outcome=\"rate_limited\",reason=\"unknown_kid\"}"),
        "{page}"
    );
}

#[tokio::test]
async fn without_the_rate_limit_every_unknown_kid_would_fetch() {
    // Counter-test of the bound above: the same 10 requests with no minimum interval fetch
    // 10 times, so counting fetches does catch a missing rate limit.
    let key = SigningKey::rsa("k1", include_str!("keys/rsa-a.pem"));
    let provider = Provider::serving(&[&key]).await;
    let app = spawn_app_with(trusting(&provider, Duration::ZERO)).await;
    let stranger = SigningKey::rsa("never-served", include_str!("keys/rsa-b.pem"));
    let before = provider.fetches();

    for _ in 0..10 {
        app.get("/v1/stores", &stranger.token("a", &["analyst"], &[]))
            .await
            .assert_problem(401, "unknown-kid");
    }

    assert_eq!(provider.fetches() - before, 10);
}

#[tokio::test]
async fn tokens_breaking_a_rule_are_refused_with_401_problem_json_naming_it() {
    let rsa = SigningKey::rsa("rsa-1", include_str!("keys/rsa-a.pem"));
    let ec = SigningKey::ec("ec-1");
    let provider = Provider::serving(&[&rsa, &ec]).await;
    let app = spawn_app_with(trusting(&provider, Duration::from_secs(60))).await;
    let now = jsonwebtoken::get_current_timestamp();
    let roles = json!({"realm_access": {"roles": ["analyst"]}});
    let forger = SigningKey::rsa("rsa-1", include_str!("keys/rsa-b.pem"));
    let mut no_kid = Header::new(Algorithm::RS256);
    no_kid.kid = None;
    // an ES256 token naming the RSA key's kid
    let mismatched = SigningKey {
        kid: "rsa-1".to_owned(),
        ..SigningKey::ec("x")
    };

    let cases: Vec<(&str, String, &str)> = vec![
        (
            "a good token (counter-test)",
            rsa.sign(&claims("a", &roles)),
            "",
        ),
        (
            "HS256 from the service's own secret",
            app.admin().token,
            "algorithm-not-accepted",
        ),
        (
            "an unknown kid",
            SigningKey::rsa("nope", include_str!("keys/rsa-a.pem")).sign(&claims("a", &roles)),
            "unknown-kid",
        ),
        (
            "a lifetime of two days",
            rsa.sign(&claims(
                "a",
                &json!({"realm_access": {"roles": ["analyst"]}, "exp": now + 2 * 86_400}),
            )),
            "token-lifetime-too-long",
        ),
        (
            "roles at the top level, not at realm_access.roles",
            rsa.sign(&claims("a", &json!({"roles": ["admin"]}))),
            "invalid-roles",
        ),
        (
            "only roles of other applications",
            rsa.sign(&claims(
                "a",
                &json!({"realm_access": {"roles": ["offline_access"]}}),
            )),
            "invalid-roles",
        ),
        (
            "no kid",
            jsonwebtoken::encode(&no_kid, &claims("a", &roles), &rsa.key).expect("sign"),
            "missing-kid",
        ),
        (
            "ES256 under an RSA key's kid",
            mismatched.sign(&claims("a", &roles)),
            "key-algorithm-mismatch",
        ),
        (
            "signed by another key under a served kid",
            forger.sign(&claims("a", &roles)),
            "bad-signature",
        ),
        (
            "another audience",
            rsa.sign(&claims(
                "a",
                &json!({"realm_access": {"roles": ["analyst"]}, "aud": "billing"}),
            )),
            "wrong-audience",
        ),
        (
            "store_ids that are not UUIDs",
            rsa.sign(&claims(
                "a",
                &json!({"realm_access": {"roles": ["staff"]}, "store_ids": ["shop-1"]}),
            )),
            "invalid-store-ids",
        ),
    ];

    for (case, token, slug) in cases {
        let answer = app
            .get(
                "/v1/stores",
                &Who {
                    token,
                    sub: "a".to_owned(),
                },
            )
            .await;
        if slug.is_empty() {
            answer.assert_status(200);
        } else {
            assert_eq!(answer.status, 401, "{case}: {}", answer.text);
            answer.assert_problem(401, slug);
        }
    }
}
