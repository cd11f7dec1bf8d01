//! Reading orders and reports from the read models: filters, pages, free text, read-your-writes,
//! the projection-behind answer, history and audit log, who may read what, and sales reports
//! that must equal an independent count of what the test did.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt::Write as _;
use std::time::{Duration, Instant};

use chrono::{Datelike as _, NaiveDate, Utc};
use rand::{Rng as _, SeedableRng as _};
use reqwest::Method;
use serde_json::{json, Value};
use uuid::Uuid;

use crate::helpers::{spawn_app, spawn_app_with, Answer, TestApp, Who};

/// Long enough for the projector on a busy test server.
const CATCH_UP: Duration = Duration::from_secs(15);

/// Creates an order by `who` for `customer` with an email and items; returns its id and version.
async fn create(
    app: &TestApp,
    who: &Who,
    store: Uuid,
    customer: &str,
    email: Option<&str>,
    items: &[(&str, i64)],
) -> (Uuid, u64) {
    let mut body = json!({
        "store_id": store,
        "customer_id": customer,
        "items": items.iter().map(|(sku, q)| json!({"sku": sku, "quantity": q})).collect::<Vec<_>>(),
    });
    if let Some(email) = email {
        body["customer_email"] = json!(email);
    }
    let created = app.post("/v1/orders", who, body).await;
    created.assert_status(201);
    (
        created.body["id"]
            .as_str()
            .expect("id")
            .parse()
            .expect("uuid"),
        created.body["version"].as_u64().expect("version"),
    )
}

/// The ids of a list answer's items, in order.
fn ids(answer: &Answer) -> Vec<Uuid> {
    answer.assert_status(200);
    answer.body["items"]
        .as_array()
        .unwrap_or_else(|| panic!("items: {}", answer.text))
        .iter()
        .map(|o| o["id"].as_str().expect("id").parse().expect("uuid"))
        .collect()
}

async fn list(app: &TestApp, who: &Who, query: &str) -> Vec<Uuid> {
    ids(&app.get(&format!("/v1/orders?{query}"), who).await)
}

/// A store of its own currency with `products` (sku, name, unit price).
async fn store_with(app: &TestApp, currency: &str, products: &[(&str, &str, i64)]) -> Uuid {
    let admin = app.admin();
    let store = app
        .post(
            "/v1/stores",
            &admin,
            json!({"name": format!("{currency} store"), "currency": currency}),
        )
        .await;
    store.assert_status(201);
    let id: Uuid = store.body["id"]
        .as_str()
        .expect("id")
        .parse()
        .expect("uuid");
    for (sku, name, price) in products {
        app.post(
            &format!("/v1/stores/{id}/products"),
            &admin,
            json!({"sku": sku, "name": name, "unit_price_minor": price}),
        )
        .await
        .assert_status(201);
    }
    id
}

#[tokio::test]
async fn orders_are_listed_newest_first_by_each_filter_and_by_free_text() {
    // Arrange: five orders, created one after the other.
    let app = spawn_app().await;
    let a = store_with(
        &app,
        "EUR",
        &[
            ("TEA", "Green tea", 450),
            ("CAKE", "Cheesecake", 300),
            ("MATCHA-LATTE", "Matcha latte", 520),
        ],
    )
    .await;
    let b = store_with(
        &app,
        "EUR",
        &[("TEA", "Green tea", 400), ("CAKE", "Cheesecake", 350)],
    )
    .await;
    let admin = app.admin();
    let (o1, _) = create(
        &app,
        &admin,
        a,
        "alice",
        Some("Alice@Example.com"),
        &[("TEA", 1)],
    )
    .await;
    app.place(&admin, o1).await.assert_status(200);
    let (o2, _) = create(
        &app,
        &admin,
        a,
        "bob",
        Some("bob@example.org"),
        &[("CAKE", 2)],
    )
    .await;
    let (o3, _) = create(
        &app,
        &admin,
        b,
        "alice",
        Some("alice@example.com"),
        &[("CAKE", 1)],
    )
    .await;
    app.place(&admin, o3).await.assert_status(200);
    app.confirm_internally(o3).await;
    let (o4, _) = create(&app, &admin, a, "carol", None, &[("MATCHA-LATTE", 1)]).await;
    let (o5, _) = create(&app, &admin, b, "bob", None, &[("TEA", 3)]).await;
    app.place(&admin, o5).await.assert_status(200);
    app.post(
        &format!("/v1/orders/{o5}/cancel"),
        &admin,
        json!({"reason": "out of cups"}),
    )
    .await
    .assert_status(200);
    app.wait_for_projector(CATCH_UP).await;

    // Act + assert: each filter alone, then combined.
    let analyst = app.analyst();
    assert_eq!(list(&app, &analyst, "").await, [o5, o4, o3, o2, o1]);
    assert_eq!(list(&app, &analyst, "status=placed").await, [o1]);
    assert_eq!(list(&app, &analyst, "status=draft").await, [o4, o2]);
    assert_eq!(list(&app, &analyst, "status=cancelled").await, [o5]);
    assert_eq!(
        list(&app, &analyst, &format!("store_id={a}")).await,
        [o4, o2, o1]
    );
    assert_eq!(list(&app, &analyst, "customer_id=alice").await, [o3, o1]);
    assert_eq!(
        list(&app, &analyst, &format!("status=draft&store_id={a}")).await,
        [o4, o2]
    );
    // Free text: email (any case), item name, SKU; wildcards are taken literally.
    assert_eq!(list(&app, &analyst, "q=ALICE%40example").await, [o3, o1]);
    assert_eq!(list(&app, &analyst, "q=cheesec").await, [o3, o2]);
    assert_eq!(list(&app, &analyst, "q=matcha-l").await, [o4]);
    assert_eq!(list(&app, &analyst, "q=example.org").await, [o2]);
    assert_eq!(list(&app, &analyst, "q=t_a").await, Vec::<Uuid>::new());
    assert_eq!(list(&app, &analyst, "q=%25ea").await, Vec::<Uuid>::new());
    // Creation time: `from` inclusive, `to` exclusive.
    let all = app.get("/v1/orders", &analyst).await;
    let created_o3 = all.body["items"][2]["created_at"]
        .as_str()
        .expect("created_at")
        .to_owned();
    let at = urlencode(&created_o3);
    assert_eq!(
        list(&app, &analyst, &format!("from={at}")).await,
        [o5, o4, o3]
    );
    assert_eq!(list(&app, &analyst, &format!("to={at}")).await, [o2, o1]);
    assert_eq!(
        list(&app, &analyst, &format!("from={at}&to={at}")).await,
        Vec::<Uuid>::new()
    );

    // A summary carries totals, counts and status timestamps.
    let summary = &all.body["items"][2];
    assert_eq!(summary["id"], o3.to_string());
    assert_eq!(summary["status"], "confirmed");
    assert_eq!(summary["total_minor"], 350);
    assert_eq!(summary["line_count"], 1);
    assert_eq!(summary["item_count"], 1);
    assert_eq!(summary["version"], 4);
    assert!(summary["placed_at"].is_string() && summary["confirmed_at"].is_string());
    assert!(summary["cancelled_at"].is_null());
    assert_eq!(all.body["items"][0]["cancel_reason"], "out of cups");
    assert!(all.body.get("next").is_none(), "one page only");
}

fn urlencode(raw: &str) -> String {
    raw.replace('+', "%2B").replace(':', "%3A")
}

#[tokio::test]
async fn the_free_text_follows_a_drafts_items_and_outlives_its_placement() {
    // Arrange: a draft with a tea; then a cheesecake added and the tea removed.
    let app = spawn_app().await;
    let store = store_with(
        &app,
        "EUR",
        &[("TEA", "Green tea", 450), ("CAKE", "Cheesecake", 300)],
    )
    .await;
    let admin = app.admin();
    let (order, _) = create(
        &app,
        &admin,
        store,
        "dora",
        Some("Dora@Example.com"),
        &[("TEA", 1)],
    )
    .await;
    app.wait_for_projector(CATCH_UP).await;
    let analyst = app.analyst();
    assert_eq!(list(&app, &analyst, "q=green").await, [order]);
    assert_eq!(list(&app, &analyst, "q=cheese").await, Vec::<Uuid>::new());

    // Act
    app.post(
        &format!("/v1/orders/{order}/items"),
        &admin,
        json!({"sku": "CAKE", "quantity": 1}),
    )
    .await
    .assert_status(200);
    app.send(
        Method::DELETE,
        &format!("/v1/orders/{order}/items/1"),
        Some(&admin),
        None,
        &[],
    )
    .await
    .assert_status(200);
    app.place(&admin, order).await.assert_status(200);
    app.confirm_internally(order).await;
    app.wait_for_projector(CATCH_UP).await;

    // Assert: the text is the order's items as they stand, and the email, after the status
    // changes too.
    assert_eq!(list(&app, &analyst, "q=cheese").await, [order]);
    assert_eq!(list(&app, &analyst, "q=green").await, Vec::<Uuid>::new());
    assert_eq!(list(&app, &analyst, "q=dora%40example").await, [order]);
    assert_eq!(
        list(&app, &analyst, "q=cake&status=confirmed").await,
        [order]
    );
}

#[tokio::test]
async fn pages_follow_the_cursor_without_gaps_or_duplicates() {
    let app = spawn_app().await;
    let store = app.store_with_products().await;
    let alice = app.customer("alice");
    let mut created = Vec::new();
    for _ in 0..23 {
        created.push(app.create_order(&alice, store).await);
    }
    app.wait_for_projector(CATCH_UP).await;

    let mut seen = Vec::new();
    let mut sizes = Vec::new();
    let mut path = "/v1/orders?limit=5".to_owned();
    loop {
        let page = app.get(&path, &alice).await;
        let page_ids = ids(&page);
        sizes.push(page_ids.len());
        seen.extend(page_ids);
        match page.body["next"].as_str() {
            Some(next) => path = format!("/v1/orders?limit=5&cursor={next}"),
            None => break,
        }
        assert!(sizes.len() <= 10, "pagination does not end");
    }

    created.reverse();
    assert_eq!(sizes, [5, 5, 5, 5, 3]);
    assert_eq!(seen, created, "every order once, newest first");
    assert_eq!(seen.iter().collect::<HashSet<_>>().len(), 23);
    // The same pages through the customer's history.
    let first = app.get("/v1/customers/alice/orders?limit=20", &alice).await;
    assert_eq!(ids(&first), created[..20]);
    let next = first.body["next"].as_str().expect("next");
    let rest = app
        .get(
            &format!("/v1/customers/alice/orders?limit=20&cursor={next}"),
            &alice,
        )
        .await;
    assert_eq!(ids(&rest), created[20..]);
    assert!(rest.body.get("next").is_none());
}

#[tokio::test]
async fn bad_list_and_report_parameters_are_400_invalid_parameter() {
    let app = spawn_app().await;
    let admin = app.admin();
    for path in [
        "/v1/orders?limit=0",
        "/v1/orders?limit=201",
        "/v1/orders?limit=ten",
        "/v1/orders?cursor=not-a-cursor",
        "/v1/orders?cursor=AQAAAAAAAAAA",
        "/v1/orders?from=yesterday",
        "/v1/orders?from=2026-01-01T00:00:00",
        "/v1/reports/product-sales?from=2026-01-01T00:00:00&to=2026-01-31",
        "/v1/orders?status=lost",
        "/v1/orders?q=ab",
        "/v1/customers/alice/orders?limit=500",
        "/v1/reports/product-sales?from=2026-01-01&to=2026-01-31&sort=price",
        "/v1/reports/product-sales?from=2026-01-01&to=2026-01-31&limit=0",
        "/v1/reports/product-sales?to=2026-01-31",
        "/v1/reports/sales-summary?granularity=year",
    ] {
        app.get(path, &admin)
            .await
            .assert_problem(400, "invalid-parameter");
    }
    let answer = app.get("/v1/orders?limit=201", &admin).await;
    assert!(
        answer.body["detail"]
            .as_str()
            .is_some_and(|d| d.contains("`limit`") && d.contains("200")),
        "{}",
        answer.text
    );
    // Each bound well-formed, together no range: 422 naming the rule.
    for path in [
        "/v1/orders?from=2026-02-01T00:00:00Z&to=2026-01-01T00:00:00Z",
        "/v1/reports/product-sales?from=2026-02-01&to=2026-01-01",
        "/v1/reports/sales-summary?from=2026-02-01&to=2026-01-01",
    ] {
        app.get(path, &admin)
            .await
            .assert_problem(422, "invalid-range");
    }
}

/// GET as a well-behaved client does: a 503 `projection-behind` is retried after its
/// `Retry-After` (the read model can fall more than the bounded wait behind when other databases
/// on the same server hold transactions open: the log's tailing rule waits for them too).
async fn get_fresh(app: &TestApp, who: &Who, path: &str) -> Answer {
    for _ in 0..10 {
        let answer = app.get(path, who).await;
        if answer.status.as_u16() != 503 {
            return answer;
        }
        answer.assert_problem(503, "projection-behind");
        let after: u64 = answer
            .header("retry-after")
            .and_then(|s| s.parse().ok())
            .expect("Retry-After");
        tokio::time::sleep(Duration::from_secs(after)).await;
    }
    panic!("{path}: the read model stayed behind for 20 s");
}

#[tokio::test]
async fn a_read_after_each_command_sees_that_command() {
    // Arrange
    let app = spawn_app().await;
    let store = app.store_with_products().await;
    app.add_products(store, 20).await;
    let alice = app.customer("alice");

    for i in 1..=20 {
        // A fresh order is readable at once (the read waits for its first projection).
        let (order, version) = create(&app, &alice, store, "alice", None, &[]).await;
        let read = get_fresh(&app, &alice, &format!("/v1/orders/{order}")).await;
        read.assert_status(200);
        assert_eq!(read.body["version"], version, "order {i}: {}", read.text);

        // Act: a command, then a read at the version it returned.
        let added = app.add_item(&alice, order, &format!("P{i}"), 2).await;
        added.assert_status(200);
        let version = added.body["version"].as_u64().expect("version");
        let read = get_fresh(
            &app,
            &alice,
            &format!("/v1/orders/{order}?min_version={version}"),
        )
        .await;

        // Assert: never an answer older than the command.
        read.assert_status(200);
        assert!(
            read.body["version"].as_u64() >= Some(version),
            "{}",
            read.text
        );
        assert_eq!(read.header("etag"), Some(format!("\"{version}\"").as_str()));
        assert_eq!(
            read.body["lines"][0]["sku"],
            format!("P{i}"),
            "{}",
            read.text
        );
        assert_eq!(read.body["total_minor"], 200);
        let items = get_fresh(
            &app,
            &alice,
            &format!("/v1/orders/{order}/items?min_version={version}"),
        )
        .await;
        items.assert_status(200);
        assert_eq!(items.body["items"][0]["quantity"], 2);
    }
}

#[tokio::test]
async fn a_version_the_read_model_does_not_reach_answers_503_projection_behind() {
    // Nothing projects: the order is at version 2 in the log, the read model never gets there.
    let app = spawn_app_with(|s| s.workers.projector = false).await;
    let store = app.store_with_products().await;
    let alice = app.customer("alice");
    let (order, _) = create(&app, &alice, store, "alice", None, &[("TEA", 1)]).await;

    let started = Instant::now();
    let read = app
        .get(&format!("/v1/orders/{order}?min_version=2"), &alice)
        .await;

    read.assert_problem(503, "projection-behind");
    assert_eq!(read.header("retry-after"), Some("1"));
    assert!(
        read.body["detail"]
            .as_str()
            .is_some_and(|d| d.contains("not yet at version 2")),
        "{}",
        read.text
    );
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(900) && waited < Duration::from_secs(5),
        "the wait is bounded: {waited:?}"
    );
}

#[tokio::test]
async fn a_min_version_beyond_the_orders_version_is_refused_without_waiting() {
    let app = spawn_app().await;
    let store = app.store_with_products().await;
    let alice = app.customer("alice");
    let (order, _) = create(&app, &alice, store, "alice", None, &[("TEA", 1)]).await;
    app.wait_for_projector(CATCH_UP).await;

    // No wait could reach these: refused at once (it used to poll for a second, then 503).
    // (The parameter is an int64: beyond that it is a plain 400 about its format.)
    for beyond in ["3", "1000", "4294967295", "9223372036854775807"] {
        let read = app
            .get(&format!("/v1/orders/{order}?min_version={beyond}"), &alice)
            .await;
        read.assert_problem(422, "min-version-beyond-order");
        assert!(
            read.body["detail"]
                .as_str()
                .is_some_and(|d| d.contains("beyond") && d.contains("version 2")),
            "{}",
            read.text
        );
    }
    // A version it has is answered at once.
    app.get(&format!("/v1/orders/{order}?min_version=2"), &alice)
        .await
        .assert_status(200);
}

#[tokio::test]
async fn without_a_projector_reads_wait_then_say_the_read_model_is_behind() {
    // The counter-test of read-your-writes: with nothing projecting, the wait cannot succeed,
    // so a read that "saw" the order would be reading something else.
    let app = spawn_app_with(|s| s.workers.projector = false).await;
    let store = app.store_with_products().await;
    let alice = app.customer("alice");
    let (order, _) = create(&app, &alice, store, "alice", None, &[("TEA", 1)]).await;

    let read = app.get(&format!("/v1/orders/{order}"), &alice).await;
    read.assert_problem(503, "projection-behind");
    assert!(
        read.text.contains("at version 0, not yet at version 2"),
        "{}",
        read.text
    );
    app.get(&format!("/v1/orders/{order}/items"), &alice)
        .await
        .assert_problem(503, "projection-behind");
    // Visibility and existence come from the event store, without waiting.
    let started = Instant::now();
    app.get(&format!("/v1/orders/{order}"), &app.customer("mallory"))
        .await
        .assert_problem(404, "order-not-found");
    app.get(&format!("/v1/orders/{}", Uuid::new_v4()), &alice)
        .await
        .assert_problem(404, "order-not-found");
    assert!(started.elapsed() < Duration::from_millis(900));
    // The audit log never waits for the projector.
    let events = app.get(&format!("/v1/orders/{order}/events"), &alice).await;
    events.assert_status(200);
    assert_eq!(events.body["items"].as_array().map(Vec::len), Some(2));
}

#[tokio::test]
async fn status_history_and_audit_log_tell_what_happened_to_an_order() {
    // Arrange
    let app = spawn_app().await;
    let store = app.store_with_products().await;
    let alice = app.customer("alice");
    let staff = app.staff(store);
    let (order, _) = create(&app, &alice, store, "alice", None, &[("TEA", 2)]).await;
    app.place(&alice, order).await.assert_status(200);
    app.confirm_internally(order).await;
    app.post(
        &format!("/v1/orders/{order}/status"),
        &staff,
        json!({"status": "preparing", "note": "oven on"}),
    )
    .await
    .assert_status(200);
    let cancelled = app
        .post(
            &format!("/v1/orders/{order}/cancel"),
            &alice,
            json!({"reason": "changed my mind"}),
        )
        .await;
    cancelled.assert_status(200);
    assert_eq!(cancelled.body["version"], 6);

    // Act
    let history = app
        .get(
            &format!("/v1/orders/{order}/status-history?min_version=6"),
            &alice,
        )
        .await;
    let events = app.get(&format!("/v1/orders/{order}/events"), &alice).await;

    // Assert: the history, step by step.
    history.assert_status(200);
    assert_eq!(history.header("etag"), Some("\"6\""));
    let steps: Vec<Value> = history.body["items"]
        .as_array()
        .expect("steps")
        .iter()
        .map(|s| {
            json!([
                s["version"],
                s["status"],
                s["previous_status"],
                s["note"],
                s["principal"]
            ])
        })
        .collect();
    assert_eq!(
        steps,
        [
            json!([1, "draft", null, null, "alice"]),
            json!([3, "placed", "draft", null, "alice"]),
            json!([4, "confirmed", "placed", null, null]),
            json!([5, "preparing", "confirmed", "oven on", "staff-1"]),
            json!([6, "cancelled", "preparing", "changed my mind", "alice"]),
        ]
    );
    // The audit log: every event as stored, in version order.
    events.assert_status(200);
    assert_eq!(events.header("etag"), Some("\"6\""));
    let log = events.body["items"].as_array().expect("events");
    assert!(
        events.body.get("next").is_none(),
        "one page: {}",
        events.text
    );
    let types: Vec<&str> = log
        .iter()
        .map(|e| e["event_type"].as_str().expect("type"))
        .collect();
    assert_eq!(
        types,
        [
            "OrderCreated",
            "ItemAdded",
            "OrderPlaced",
            "OrderConfirmed",
            "PreparationStarted",
            "OrderCancelled"
        ]
    );
    for (i, e) in log.iter().enumerate() {
        assert_eq!(e["version"], i + 1);
        assert_eq!(e["payload"]["type"], e["event_type"]);
        assert!(e["recorded_at"].is_string() && e["event_version"].is_string());
    }
    let event_ids: HashSet<&str> = log
        .iter()
        .map(|e| e["event_id"].as_str().expect("event id"))
        .collect();
    assert_eq!(event_ids.len(), 6);
    assert_eq!(log[0]["payload"]["customer_id"], "alice");
    assert_eq!(log[1]["payload"]["sku"], "TEA");
    assert_eq!(log[4]["metadata"]["principal"], "staff-1");
    assert_eq!(log[5]["payload"]["reason"], "changed my mind");
    // Paging through the log: pages of 4, then the rest after the cursor.
    let first = app
        .get(&format!("/v1/orders/{order}/events?limit=4"), &alice)
        .await;
    assert_eq!(first.body["items"].as_array().map(Vec::len), Some(4));
    let next = first.body["next"].as_str().expect("a next page");
    let tail = app
        .get(
            &format!("/v1/orders/{order}/events?limit=4&cursor={next}"),
            &alice,
        )
        .await;
    let versions: Vec<&Value> = tail.body["items"]
        .as_array()
        .expect("events")
        .iter()
        .map(|e| &e["version"])
        .collect();
    assert_eq!(versions, [&json!(5), &json!(6)]);
    assert!(
        tail.body.get("next").is_none(),
        "the last page: {}",
        tail.text
    );
    // counter-test: another list's cursor, or a forged one, is refused
    let orders_cursor = app.get("/v1/orders?limit=1", &alice).await.body["next"].clone();
    for forged in [orders_cursor.as_str().unwrap_or("AQ"), "not-a-cursor"] {
        app.get(
            &format!("/v1/orders/{order}/events?cursor={forged}"),
            &alice,
        )
        .await
        .assert_problem(400, "invalid-parameter");
    }
    // The detail shows every status timestamp reached, and the reason.
    let detail = app.get(&format!("/v1/orders/{order}"), &alice).await;
    detail.assert_status(200);
    for reached in ["placed_at", "confirmed_at", "preparing_at", "cancelled_at"] {
        assert!(
            detail.body[reached].is_string(),
            "{reached}: {}",
            detail.text
        );
    }
    for never in ["rejected_at", "shipped_at", "delivered_at", "discarded_at"] {
        assert!(detail.body[never].is_null(), "{never}: {}", detail.text);
    }
    assert_eq!(detail.body["status"], "cancelled");
    assert_eq!(detail.body["cancel_reason"], "changed my mind");
    assert_eq!(detail.body["lines"][0]["line_total_minor"], 900);
}

#[tokio::test]
async fn customers_reach_only_their_own_orders_and_staff_only_their_stores() {
    // Arrange
    let app = spawn_app().await;
    let a = app.store_with_products().await;
    let b = app.store_with_products().await;
    let admin = app.admin();
    let alice = app.customer("alice");
    let bob = app.customer("bob");
    let (alice_a, _) = create(&app, &admin, a, "alice", None, &[("TEA", 1)]).await;
    let (bob_a, _) = create(&app, &admin, a, "bob", None, &[("TEA", 1)]).await;
    let (bob_b, _) = create(&app, &admin, b, "bob", None, &[("CAKE", 1)]).await;
    let (alice_b, _) = create(&app, &admin, b, "alice", None, &[("CAKE", 1)]).await;
    app.wait_for_projector(CATCH_UP).await;

    // Customers: their own history only.
    assert_eq!(
        ids(&app.get("/v1/customers/alice/orders", &alice).await),
        [alice_b, alice_a]
    );
    app.get("/v1/customers/bob/orders", &alice)
        .await
        .assert_problem(404, "customer-not-found");
    assert_eq!(list(&app, &alice, "").await, [alice_b, alice_a]);
    assert_eq!(
        list(&app, &alice, &format!("store_id={a}")).await,
        [alice_a]
    );
    app.get("/v1/orders?customer_id=bob", &alice)
        .await
        .assert_problem(403, "forbidden");
    for path in ["", "/items", "/status-history", "/events"] {
        app.get(&format!("/v1/orders/{alice_a}{path}"), &bob)
            .await
            .assert_problem(404, "order-not-found");
        app.get(&format!("/v1/orders/{alice_a}{path}"), &alice)
            .await
            .assert_status(200);
    }

    // Staff: their stores only.
    let staff_a = app.staff(a);
    assert_eq!(list(&app, &staff_a, "").await, [bob_a, alice_a]);
    assert_eq!(list(&app, &staff_a, "customer_id=bob").await, [bob_a]);
    app.get(&format!("/v1/orders?store_id={b}"), &staff_a)
        .await
        .assert_problem(403, "forbidden");
    assert_eq!(
        ids(&app.get("/v1/customers/bob/orders", &staff_a).await),
        [bob_a]
    );
    app.get(&format!("/v1/orders/{bob_b}"), &staff_a)
        .await
        .assert_problem(404, "order-not-found");

    // Everyone else: everything.
    for who in [app.analyst(), app.service(), admin] {
        assert_eq!(
            ids(&app.get("/v1/customers/bob/orders", &who).await),
            [bob_b, bob_a]
        );
        assert_eq!(list(&app, &who, "").await.len(), 4);
    }
}

#[tokio::test]
async fn reports_answer_analysts_admins_services_and_the_staff_of_the_store() {
    let app = spawn_app().await;
    let a = app.store_with_products().await;
    let b = app.store_with_products().await;
    let range = "from=2026-01-01&to=2026-12-31";
    for report in ["product-sales", "sales-summary"] {
        let path = format!("/v1/reports/{report}?{range}");
        for who in [app.analyst(), app.admin(), app.service()] {
            app.get(&path, &who).await.assert_status(200);
            app.get(&format!("{path}&store_id={a}"), &who)
                .await
                .assert_status(200);
        }
        let staff = app.staff(a);
        app.get(&format!("{path}&store_id={a}"), &staff)
            .await
            .assert_status(200);
        app.get(&format!("{path}&store_id={b}"), &staff)
            .await
            .assert_problem(403, "forbidden");
        app.get(&path, &staff)
            .await
            .assert_problem(403, "forbidden");
        app.get(&format!("{path}&store_id={a}"), &app.customer("alice"))
            .await
            .assert_problem(403, "forbidden");
        app.send(reqwest::Method::GET, &path, None, None, &[])
            .await
            .assert_problem(401, "token-missing");
    }
}

// ---- reports are right ------------------------------------------------------------------------

/// What the workload does with one order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Draft,
    Placed,
    Confirmed,
    ConfirmedThenPreparing,
    ConfirmedThenCancelled,
    PlacedThenCancelled,
    Rejected,
}

const OUTCOMES: [Outcome; 7] = [
    Outcome::Draft,
    Outcome::Placed,
    Outcome::Confirmed,
    Outcome::ConfirmedThenPreparing,
    Outcome::ConfirmedThenCancelled,
    Outcome::PlacedThenCancelled,
    Outcome::Rejected,
];

/// A product the workload sells only in an order it then cancels.
const ONLY_CANCELLED: &str = "WREATH";

/// A store of the workload and what it sells.
struct Shop {
    id: Uuid,
    currency: &'static str,
    products: Vec<(&'static str, &'static str, i64)>,
}

/// One order as the workload left it.
struct Done {
    shop: usize,
    lines: Vec<(usize, i64)>,
    outcome: Outcome,
    /// UTC day of each event type, from the event store.
    days: HashMap<String, NaiveDate>,
}

impl Done {
    fn total(&self, shops: &[Shop]) -> i64 {
        self.lines
            .iter()
            .map(|(p, q)| shops[self.shop].products[*p].2 * q)
            .sum()
    }

    /// Counted as a sale: confirmed and not cancelled.
    fn sold(&self) -> bool {
        matches!(
            self.outcome,
            Outcome::Confirmed | Outcome::ConfirmedThenPreparing
        )
    }
}

async fn event_days(app: &TestApp, order: Uuid) -> HashMap<String, NaiveDate> {
    let rows: Vec<(String, chrono::DateTime<Utc>)> =
        sqlx::query_as("select event_type, recorded_at from events where aggregate_id = $1")
            .bind(order.to_string())
            .fetch_all(&app.pool)
            .await
            .expect("events");
    rows.into_iter()
        .map(|(t, at)| (t, at.date_naive()))
        .collect()
}

/// The product-sales rows the report must show, computed from the workload alone, in report
/// order for `sort`.
fn expected_product_sales(
    shops: &[Shop],
    done: &[Done],
    store: Option<Uuid>,
    sort: &str,
) -> Vec<Value> {
    /// One product's sales: currency, name, quantity, revenue, orders.
    struct Sold(String, String, i64, i64, i64);

    let mut rows: BTreeMap<(String, String), Sold> = BTreeMap::new();
    for d in done.iter().filter(|d| d.sold()) {
        let shop = &shops[d.shop];
        if store.is_some_and(|s| s != shop.id) {
            continue;
        }
        for (p, q) in &d.lines {
            let (sku, name, price) = shop.products[*p];
            let row = rows
                .entry((shop.id.to_string(), sku.to_owned()))
                .or_insert_with(|| Sold(shop.currency.to_owned(), name.to_owned(), 0, 0, 0));
            row.2 += q;
            row.3 += price * q;
            row.4 += 1;
        }
    }
    let rank = |r: &Sold| {
        if sort == "quantity" {
            (r.2, r.3)
        } else {
            (r.3, r.2)
        }
    };
    let mut rows: Vec<_> = rows.into_iter().collect();
    rows.sort_by(|((sa, ka), a), ((sb, kb), b)| {
        rank(b).cmp(&rank(a)).then(sa.cmp(sb)).then(ka.cmp(kb))
    });
    rows.into_iter()
        .map(
            |((store, sku), Sold(currency, name, quantity, revenue, orders))| {
                json!({
                    "store_id": store, "sku": sku, "name": name, "currency": currency,
                    "quantity": quantity, "revenue_minor": revenue, "orders": orders
                })
            },
        )
        .collect()
}

fn period_start(day: NaiveDate, granularity: &str) -> NaiveDate {
    match granularity {
        "week" => day - chrono::Days::new(u64::from(day.weekday().num_days_from_monday())),
        "month" => day.with_day(1).expect("first of month"),
        _ => day,
    }
}

/// The sales-summary rows the report must show, computed from the workload alone.
fn expected_summary(
    shops: &[Shop],
    done: &[Done],
    store: Option<Uuid>,
    granularity: &str,
) -> Vec<Value> {
    // (period, currency) -> (orders, revenue, cancellations, rejections)
    let mut rows: BTreeMap<(NaiveDate, String), (i64, i64, i64, i64)> = BTreeMap::new();
    for d in done {
        let shop = &shops[d.shop];
        if store.is_some_and(|s| s != shop.id) {
            continue;
        }
        let mut count = |event: &str, add: (i64, i64, i64, i64)| {
            let day = d.days[event];
            let row = rows
                .entry((period_start(day, granularity), shop.currency.to_owned()))
                .or_default();
            row.0 += add.0;
            row.1 += add.1;
            row.2 += add.2;
            row.3 += add.3;
        };
        if d.sold() {
            count("OrderConfirmed", (1, d.total(shops), 0, 0));
        }
        if d.outcome == Outcome::ConfirmedThenCancelled {
            // Counted and taken back on the confirmation day: the row exists, with zeros.
            count("OrderConfirmed", (0, 0, 0, 0));
        }
        if matches!(
            d.outcome,
            Outcome::ConfirmedThenCancelled | Outcome::PlacedThenCancelled
        ) {
            count("OrderCancelled", (0, 0, 1, 0));
        }
        if d.outcome == Outcome::Rejected {
            count("OrderRejected", (0, 0, 0, 1));
        }
    }
    rows.into_iter()
        .map(
            |((period, currency), (orders, revenue, cancellations, rejections))| {
                json!({
                    "period_start": period.to_string(), "currency": currency,
                    "orders": orders, "revenue_minor": revenue,
                    "average_order_value_minor": if orders > 0 { revenue / orders } else { 0 },
                    "cancellations": cancellations, "rejections": rejections
                })
            },
        )
        .collect()
}

fn csv_of(rows: &[Value]) -> String {
    let mut csv = String::from("store_id,sku,name,currency,quantity,revenue_minor,orders\r\n");
    for r in rows {
        let name = r["name"].as_str().expect("name");
        let name = if name.contains(',') {
            format!("\"{name}\"")
        } else {
            name.to_owned()
        };
        write!(
            csv,
            "{},{},{},{},{},{},{}\r\n",
            r["store_id"].as_str().expect("store"),
            r["sku"].as_str().expect("sku"),
            name,
            r["currency"].as_str().expect("currency"),
            r["quantity"],
            r["revenue_minor"],
            r["orders"]
        )
        .expect("write to a String");
    }
    csv
}

#[tokio::test]
async fn sales_reports_equal_an_independent_count_of_a_seeded_workload() {
    // Arrange: two stores in two currencies, 49 orders with random items, each outcome seven
    // times, and one more whose only product nobody else bought.
    let app = spawn_app().await;
    let mut shops = Vec::new();
    for (currency, products) in [
        (
            "EUR",
            vec![
                ("TEA", "Green tea", 450),
                ("CAKE", "Cheesecake", 300),
                ("SCONE", "Scone", 275),
                ("PIE", "Apple pie, warm", 1250),
                // Only ever in a cancelled order: must not appear in any report.
                (ONLY_CANCELLED, "Wreath", 2000),
            ],
        ),
        (
            "USD",
            vec![
                ("BAGEL", "Bagel", 199),
                ("COFFEE", "Filter coffee", 325),
                ("TEA", "Black tea", 400),
            ],
        ),
    ] {
        let id = store_with(&app, currency, &products).await;
        shops.push(Shop {
            id,
            currency,
            products,
        });
    }
    let admin = app.admin();
    let staff: Vec<Who> = shops.iter().map(|s| app.staff(s.id)).collect();
    let mut rng = rand::rngs::StdRng::seed_from_u64(20_261_122);
    let mut done = Vec::new();
    for i in 0..49 {
        let outcome = OUTCOMES[i % OUTCOMES.len()];
        let shop = rng.random_range(0..shops.len());
        let mut products: Vec<usize> = (0..shops[shop].products.len())
            .filter(|p| shops[shop].products[*p].0 != ONLY_CANCELLED)
            .collect();
        let mut lines = Vec::new();
        for _ in 0..rng.random_range(1..=3) {
            let p = products.remove(rng.random_range(0..products.len()));
            lines.push((p, rng.random_range(1..=4_i64)));
        }
        let items: Vec<(&str, i64)> = lines
            .iter()
            .map(|(p, q)| (shops[shop].products[*p].0, *q))
            .collect();
        let customer = format!("customer-{}", rng.random_range(1..=5));
        let (order, _) = create(&app, &admin, shops[shop].id, &customer, None, &items).await;
        if outcome != Outcome::Draft {
            app.place(&admin, order).await.assert_status(200);
        }
        if matches!(
            outcome,
            Outcome::Confirmed | Outcome::ConfirmedThenPreparing | Outcome::ConfirmedThenCancelled
        ) {
            app.confirm_internally(order).await;
        }
        if outcome == Outcome::ConfirmedThenPreparing {
            app.set_status(&staff[shop], order, "preparing")
                .await
                .assert_status(200);
        }
        if matches!(
            outcome,
            Outcome::ConfirmedThenCancelled | Outcome::PlacedThenCancelled
        ) {
            app.post(
                &format!("/v1/orders/{order}/cancel"),
                &admin,
                json!({"reason": "customer called"}),
            )
            .await
            .assert_status(200);
        }
        if outcome == Outcome::Rejected {
            app.reject_internally(order, "payment declined").await;
        }
        done.push(Done {
            shop,
            lines,
            outcome,
            days: event_days(&app, order).await,
        });
    }
    // One more, confirmed then cancelled, with the product nobody else bought.
    let wreath = shops[0].products.len() - 1;
    let (order, _) = create(
        &app,
        &admin,
        shops[0].id,
        "customer-1",
        None,
        &[(ONLY_CANCELLED, 1), ("CAKE", 2)],
    )
    .await;
    app.place(&admin, order).await.assert_status(200);
    app.confirm_internally(order).await;
    app.post(
        &format!("/v1/orders/{order}/cancel"),
        &admin,
        json!({"reason": "wrong wreath"}),
    )
    .await
    .assert_status(200);
    done.push(Done {
        shop: 0,
        lines: vec![(wreath, 1), (1, 2)],
        outcome: Outcome::ConfirmedThenCancelled,
        days: event_days(&app, order).await,
    });
    app.wait_for_projector(CATCH_UP).await;
    let analyst = app.analyst();
    let today = Utc::now().date_naive();
    let range = format!(
        "from={}&to={}",
        today - chrono::Days::new(40),
        today + chrono::Days::new(1)
    );
    let store_a = shops[0].id;

    // Act + assert: product sales, both rankings, all stores and one.
    for sort in ["revenue", "quantity"] {
        let expected = expected_product_sales(&shops, &done, None, sort);
        assert!(expected.len() >= 5, "the workload sold several products");
        let report = app
            .get(
                &format!("/v1/reports/product-sales?{range}&sort={sort}&limit=1000"),
                &analyst,
            )
            .await;
        report.assert_status(200);
        assert_eq!(report.body["items"], json!(expected), "sort={sort}");
        assert_eq!(report.body["sort"], sort);

        let expected = expected_product_sales(&shops, &done, Some(store_a), sort);
        let report = app
            .get(
                &format!("/v1/reports/product-sales?{range}&sort={sort}&store_id={store_a}"),
                &staff[0],
            )
            .await;
        assert_eq!(
            report.body["items"],
            json!(expected),
            "store A, sort={sort}"
        );
    }
    // `from`/`to` as RFC 3339 timestamps give the report of their UTC days (DESIGN §9): the
    // same as the dates, for both reports.
    let (first_day, last_day) = (today - chrono::Days::new(40), today + chrono::Days::new(1));
    let stamps = format!("from={first_day}T00:00:00Z&to={last_day}T23:30:00%2B00:00");
    for report in ["product-sales?limit=1000", "sales-summary?granularity=day"] {
        let by_dates = app
            .get(&format!("/v1/reports/{report}&{range}"), &analyst)
            .await;
        by_dates.assert_status(200);
        assert!(by_dates.body["items"]
            .as_array()
            .is_some_and(|i| !i.is_empty()));
        let by_stamps = app
            .get(&format!("/v1/reports/{report}&{stamps}"), &analyst)
            .await;
        assert_eq!(by_stamps.body, by_dates.body, "{report}");
    }

    // The default ranking is revenue; `limit` keeps the top rows.
    let top = expected_product_sales(&shops, &done, None, "revenue");
    let report = app
        .get(
            &format!("/v1/reports/product-sales?{range}&limit=3"),
            &analyst,
        )
        .await;
    assert_eq!(report.body["items"], json!(top[..3]));
    // CSV, byte for byte (the pie's name has a comma and must be quoted).
    let csv = app
        .send(
            reqwest::Method::GET,
            &format!("/v1/reports/product-sales?{range}"),
            Some(&analyst),
            None,
            &[("accept", "text/csv")],
        )
        .await;
    csv.assert_status(200);
    assert!(
        csv.header("content-type")
            .is_some_and(|c| c.starts_with("text/csv")),
        "{:?}",
        csv.header("content-type")
    );
    assert_eq!(csv.text, csv_of(&top));
    assert!(
        !top.iter().any(|r| r["sku"] == "PIE") || csv.text.contains("\"Apple pie, warm\""),
        "quoted"
    );
    // A range before any sale is empty.
    let empty = app
        .get(
            "/v1/reports/product-sales?from=2001-01-01&to=2001-12-31",
            &analyst,
        )
        .await;
    assert_eq!(empty.body["items"], json!([]));

    // Sales summary: every granularity, all stores and one.
    for granularity in ["day", "week", "month"] {
        let summary = app
            .get(
                &format!("/v1/reports/sales-summary?granularity={granularity}&{range}"),
                &analyst,
            )
            .await;
        summary.assert_status(200);
        assert_eq!(
            summary.body["items"],
            json!(expected_summary(&shops, &done, None, granularity)),
            "granularity={granularity}"
        );
        let summary = app
            .get(
                &format!("/v1/reports/sales-summary?granularity={granularity}&store_id={store_a}"),
                &staff[0],
            )
            .await;
        assert_eq!(
            summary.body["items"],
            json!(expected_summary(&shops, &done, Some(store_a), granularity)),
            "store A, granularity={granularity}"
        );
    }
    let default = app.get("/v1/reports/sales-summary", &analyst).await;
    assert_eq!(default.body["granularity"], "day");
    assert_eq!(
        default.body["items"],
        json!(expected_summary(&shops, &done, None, "day"))
    );
}
