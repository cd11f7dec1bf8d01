//! Shops run themselves (issue 21): merchants open stores and own them, add and remove their
//! staff, close and reopen, retire products; strangers see nothing of it; every change is on
//! record with who, when, before and after.

use std::time::Duration;

use order_service::http::auth::Role;
use reqwest::Method;
use serde_json::{json, Value};
use uuid::Uuid;

use crate::helpers::{sample, spawn_app, Answer, TestApp, Who};

/// Longer than any wait for a signal that is due.
const PATIENCE: Duration = Duration::from_secs(30);

fn merchant(app: &TestApp, sub: &str) -> Who {
    app.token(sub, &[Role::Merchant], &[])
}

/// A staff token without `store_ids`: what it reaches, it reaches as a member.
fn waiter(app: &TestApp, sub: &str) -> Who {
    app.token(sub, &[Role::Staff], &[])
}

async fn send(app: &TestApp, method: Method, path: &str, who: &Who, body: Option<Value>) -> Answer {
    app.send(method, path, Some(who), body, &[]).await
}

/// `who` makes `sub` a member with `role` through `members` (a store's members path); it must
/// work.
async fn put_member(app: &TestApp, members: &str, sub: &str, role: &str, who: &Who) {
    send(
        app,
        Method::PUT,
        &format!("{members}/{sub}"),
        who,
        Some(json!({ "role": role })),
    )
    .await
    .assert_status(200);
}

/// `owner` opens a store selling TEA (450) and CAKE (300); its id.
async fn shop_of(app: &TestApp, owner: &Who) -> Uuid {
    let store = app
        .post(
            "/v1/stores",
            owner,
            json!({"name": "Corner Café", "currency": "EUR"}),
        )
        .await;
    store.assert_status(201);
    let id: Uuid = store.body["id"]
        .as_str()
        .expect("id")
        .parse()
        .expect("uuid");
    for (sku, name, price) in [("TEA", "Green tea", 450), ("CAKE", "Cheesecake", 300)] {
        app.post(
            &format!("/v1/stores/{id}/products"),
            owner,
            json!({"sku": sku, "name": name, "unit_price_minor": price}),
        )
        .await
        .assert_status(201);
    }
    id
}

/// A confirmed order of `customer` in `store` holding `sku` × `quantity`.
async fn confirmed_order(
    app: &TestApp,
    customer: &Who,
    store: Uuid,
    sku: &str,
    quantity: i64,
) -> Uuid {
    let order = app.create_order(customer, store).await;
    app.add_item(customer, order, sku, quantity)
        .await
        .assert_status(200);
    app.place(customer, order).await.assert_status(200);
    app.confirm_internally(order).await;
    order
}

/// The store's changes as (actor, entity, key, action), oldest first, read page by page.
async fn changes(app: &TestApp, store: Uuid, owner: &Who) -> Vec<(String, String, String, String)> {
    let mut out = Vec::new();
    let mut after = String::new();
    loop {
        let page = app
            .get(&format!("/v1/stores/{store}/changes?limit=2{after}"), owner)
            .await;
        page.assert_status(200);
        for c in page.body["items"].as_array().expect("items") {
            let field = |k: &str| c[k].as_str().expect(k).to_owned();
            out.push((
                field("actor"),
                field("entity"),
                field("key"),
                field("action"),
            ));
        }
        match page.body["next"].as_str() {
            Some(next) => after = format!("&cursor={next}"),
            None => return out,
        }
    }
}

/// Reads an SSE response until the server ends it cleanly; false when it is still open after
/// [`PATIENCE`] or broke off otherwise (the test client's own request timeout, say).
async fn ends(mut feed: reqwest::Response) -> bool {
    tokio::time::timeout(PATIENCE, async {
        loop {
            match feed.chunk().await {
                Ok(Some(_)) => {}
                Ok(None) => return true,
                Err(_) => return false,
            }
        }
    })
    .await
    .unwrap_or(false)
}

async fn open_store_feed(app: &TestApp, store: Uuid, who: &Who) -> reqwest::Response {
    let feed = app
        .client
        .get(format!("{}/v1/stores/{store}/live", app.address))
        .bearer_auth(&who.token)
        .header("accept", "text/event-stream")
        .send()
        .await
        .expect("feed opened");
    assert_eq!(feed.status(), 200);
    feed
}

#[tokio::test]
async fn a_merchant_runs_a_shop_with_a_waiter_and_a_removed_waiter_loses_it_at_once() {
    // Arrange: a merchant's store, two products, a waiter added as staff.
    let app = spawn_app().await;
    let owner = merchant(&app, "merchant-1");
    let store = shop_of(&app, &owner).await;
    let member = send(
        &app,
        Method::PUT,
        &format!("/v1/stores/{store}/members/waiter-1"),
        &owner,
        Some(json!({"role": "staff"})),
    )
    .await;
    member.assert_status(200);
    assert_eq!(member.body["role"], "staff");
    let waiter = waiter(&app, "waiter-1");
    let alice = app.customer("alice");
    let order = confirmed_order(&app, &alice, store, "TEA", 2).await;

    // Act: the waiter moves the order from confirmed to picked up.
    for status in ["preparing", "ready_for_pickup", "picked_up"] {
        app.set_status(&waiter, order, status)
            .await
            .assert_status(200);
    }

    // Assert: the owner sees both members; a second merchant sees nothing of the store.
    let members = app
        .get(&format!("/v1/stores/{store}/members"), &owner)
        .await;
    members.assert_status(200);
    let roles: Vec<(&str, &str)> = members.body["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|m| (m["sub"].as_str().unwrap(), m["role"].as_str().unwrap()))
        .collect();
    assert_eq!(roles, [("merchant-1", "owner"), ("waiter-1", "staff")]);
    let stranger = merchant(&app, "merchant-2");
    for path in ["", "/members", "/changes"] {
        app.get(&format!("/v1/stores/{store}{path}"), &stranger)
            .await
            .assert_problem(404, "store-not-found");
    }
    send(
        &app,
        Method::PUT,
        &format!("/v1/stores/{store}/members/merchant-2"),
        &stranger,
        Some(json!({"role": "owner"})),
    )
    .await
    .assert_problem(404, "store-not-found");
    app.send(
        Method::GET,
        &format!("/v1/stores/{store}/live"),
        Some(&stranger),
        None,
        &[("accept", "text/event-stream")],
    )
    .await
    .assert_problem(404, "store-not-found");
    let listed = app.get("/v1/stores", &stranger).await;
    assert_eq!(listed.body["items"], json!([]), "{}", listed.text);
    let waiters_next = confirmed_order(&app, &alice, store, "CAKE", 1).await;

    // Act: the waiter follows the store live; the owner removes the waiter.
    let feed = open_store_feed(&app, store, &waiter).await;
    send(
        &app,
        Method::DELETE,
        &format!("/v1/stores/{store}/members/waiter-1"),
        &owner,
        None,
    )
    .await
    .assert_status(204);

    // Assert: the next command is 404 and the open feed ends.
    app.set_status(&waiter, waiters_next, "preparing")
        .await
        .assert_problem(404, "order-not-found");
    assert!(ends(feed).await, "the removed waiter's store feed ended");
    // counter-check: the owner's command on the same order still works
    app.set_status(&owner, waiters_next, "preparing")
        .await
        .assert_status(200);
    // and everything is on record
    let recorded = changes(&app, store, &owner).await;
    let of = |actor: &str, entity: &str, key: &str, action: &str| {
        (actor.into(), entity.into(), key.into(), action.into())
    };
    assert_eq!(
        recorded,
        vec![
            of("merchant-1", "store", &store.to_string(), "created"),
            of("merchant-1", "member", "merchant-1", "added"),
            of("merchant-1", "product", "TEA", "created"),
            of("merchant-1", "product", "CAKE", "created"),
            of("merchant-1", "member", "waiter-1", "added"),
            of("merchant-1", "member", "waiter-1", "removed"),
        ]
    );
}

#[tokio::test]
async fn a_closed_store_refuses_new_orders_and_placements_until_it_reopens_and_keeps_its_reports() {
    // Arrange: an order already sold, an open draft.
    let app = spawn_app().await;
    let owner = merchant(&app, "merchant-1");
    let store = shop_of(&app, &owner).await;
    let alice = app.customer("alice");
    confirmed_order(&app, &alice, store, "TEA", 3).await;
    let draft = app.draft_with_tea(&alice, store).await;

    // Act: the owner closes the store.
    let closed = send(
        &app,
        Method::PATCH,
        &format!("/v1/stores/{store}"),
        &owner,
        Some(json!({"open": false, "contact_email": "shop@example.com"})),
    )
    .await;
    closed.assert_status(200);
    assert_eq!(closed.body["open"], false);
    assert_eq!(closed.body["contact_email"], "shop@example.com");

    // Assert: no new order, no placement, nothing stored; customers no longer see the store.
    let events = app.event_count().await;
    app.post("/v1/orders", &alice, json!({"store_id": store}))
        .await
        .assert_problem(422, "store-closed");
    let refused = app.place(&alice, draft).await;
    refused.assert_problem(422, "store-closed");
    assert!(refused.body["detail"].as_str().unwrap().contains("closed"));
    assert_eq!(app.event_count().await, events, "nothing stored");
    app.get(&format!("/v1/stores/{store}"), &alice)
        .await
        .assert_problem(404, "store-not-found");
    let listed = app.get("/v1/stores", &alice).await;
    assert_eq!(listed.body["items"], json!([]), "{}", listed.text);
    // its orders stay the customer's to read, its reports still count them (the owner's)
    app.wait_for_projector(PATIENCE).await;
    assert_eq!(
        app.get("/v1/orders", &alice).await.body["items"]
            .as_array()
            .map(Vec::len),
        Some(2)
    );
    let report = app
        .get(
            &format!("/v1/reports/product-sales?from=2026-01-01&to=2030-12-31&store_id={store}"),
            &owner,
        )
        .await;
    report.assert_status(200);
    assert_eq!(report.body["items"][0]["sku"], "TEA", "{}", report.text);
    assert_eq!(report.body["items"][0]["quantity"], 3, "{}", report.text);

    // Act + assert: reopened, both work again.
    send(
        &app,
        Method::PATCH,
        &format!("/v1/stores/{store}"),
        &owner,
        Some(json!({"open": true})),
    )
    .await
    .assert_status(200);
    app.post("/v1/orders", &alice, json!({"store_id": store}))
        .await
        .assert_status(201);
    app.place(&alice, draft).await.assert_status(200);
    let listed = app.get("/v1/stores", &alice).await;
    assert_eq!(listed.body["items"][0]["id"], store.to_string());
}

#[tokio::test]
async fn a_retired_product_cannot_be_added_and_stays_on_orders_and_in_reports() {
    // Arrange: an order holding CAKE, a draft.
    let app = spawn_app().await;
    let owner = merchant(&app, "merchant-1");
    let store = shop_of(&app, &owner).await;
    let alice = app.customer("alice");
    let order = confirmed_order(&app, &alice, store, "CAKE", 2).await;
    let draft = app.draft_with_tea(&alice, store).await;

    // Act: a new price for TEA, then CAKE retired.
    send(
        &app,
        Method::PATCH,
        &format!("/v1/stores/{store}/products/TEA"),
        &owner,
        Some(json!({"unit_price_minor": 480, "name": "Sencha"})),
    )
    .await
    .assert_status(200);
    let retired = send(
        &app,
        Method::DELETE,
        &format!("/v1/stores/{store}/products/CAKE"),
        &owner,
        None,
    )
    .await;
    retired.assert_status(200);
    assert!(retired.body["retired_at"].is_string(), "{}", retired.text);

    // Assert: CAKE cannot be added; the lines already in orders keep name and price.
    app.add_item(&alice, draft, "CAKE", 1)
        .await
        .assert_problem(422, "product-inactive");
    let held = app.get(&format!("/v1/orders/{order}"), &alice).await;
    held.assert_status(200);
    assert_eq!(held.body["lines"][0]["sku"], "CAKE", "{}", held.text);
    assert_eq!(held.body["lines"][0]["unit_price_minor"], 300);
    let tea = app.get(&format!("/v1/orders/{draft}"), &alice).await;
    assert_eq!(tea.body["lines"][0]["name"], "Green tea", "{}", tea.text);
    assert_eq!(tea.body["lines"][0]["unit_price_minor"], 450);
    // listed only when asked for, and never to customers
    let skus = |a: &Answer| -> Vec<String> {
        a.body["items"]
            .as_array()
            .expect("items")
            .iter()
            .map(|p| p["sku"].as_str().unwrap().to_owned())
            .collect()
    };
    let path = format!("/v1/stores/{store}/products");
    assert_eq!(skus(&app.get(&path, &owner).await), ["TEA"]);
    assert_eq!(
        skus(
            &app.get(&format!("{path}?include_retired=true"), &owner)
                .await
        ),
        ["CAKE", "TEA"]
    );
    assert_eq!(
        skus(
            &app.get(&format!("{path}?include_retired=true"), &alice)
                .await
        ),
        ["TEA"]
    );
    // reports still count it
    app.wait_for_projector(PATIENCE).await;
    let report = app
        .get(
            &format!("/v1/reports/product-sales?from=2026-01-01&to=2030-12-31&store_id={store}"),
            &owner,
        )
        .await;
    assert_eq!(report.body["items"][0]["sku"], "CAKE", "{}", report.text);
    assert_eq!(report.body["items"][0]["quantity"], 2);
    // the price dispute: who changed TEA's price, from what to what
    let page = app
        .get(&format!("/v1/stores/{store}/changes"), &owner)
        .await;
    let items = page.body["items"].as_array().expect("items");
    let tea_change = items
        .iter()
        .find(|c| c["key"] == "TEA" && c["action"] == "updated")
        .expect("TEA's change on record");
    assert_eq!(tea_change["actor"], "merchant-1");
    assert_eq!(tea_change["before"]["unit_price_minor"], 450);
    assert_eq!(tea_change["after"]["unit_price_minor"], 480);
    assert!(tea_change["at"].is_string());
    assert!(items
        .iter()
        .any(|c| c["key"] == "CAKE" && c["action"] == "retired"));
}

#[tokio::test]
async fn a_retired_product_brought_back_is_orderable_again_and_the_change_log_says_so() {
    // Arrange: CAKE retired.
    let app = spawn_app().await;
    let owner = merchant(&app, "merchant-1");
    let store = shop_of(&app, &owner).await;
    let alice = app.customer("alice");
    let cake = format!("/v1/stores/{store}/products/CAKE");
    send(&app, Method::DELETE, &cake, &owner, None)
        .await
        .assert_status(200);
    let draft = app.draft_with_tea(&alice, store).await;
    app.add_item(&alice, draft, "CAKE", 1)
        .await
        .assert_problem(422, "product-inactive");

    // Act: brought back, at a new price.
    let back = send(
        &app,
        Method::PATCH,
        &cake,
        &owner,
        Some(json!({"retired": false, "unit_price_minor": 320})),
    )
    .await;

    // Assert: listed, orderable at the new price, and on record as reinstated.
    back.assert_status(200);
    assert!(back.body.get("retired_at").is_none(), "{}", back.text);
    assert_eq!(back.body["active"], true, "{}", back.text);
    app.add_item(&alice, draft, "CAKE", 1)
        .await
        .assert_status(200);
    let order = app.get(&format!("/v1/orders/{draft}"), &alice).await;
    let cake_line = order.body["lines"]
        .as_array()
        .expect("lines")
        .iter()
        .find(|l| l["sku"] == "CAKE")
        .cloned()
        .expect("a CAKE line");
    assert_eq!(cake_line["unit_price_minor"], 320);
    let listed = app
        .get(&format!("/v1/stores/{store}/products"), &alice)
        .await;
    assert!(listed.text.contains("\"CAKE\""), "{}", listed.text);
    let actions: Vec<String> = changes(&app, store, &owner)
        .await
        .into_iter()
        .filter(|(_, _, key, _)| key == "CAKE")
        .map(|(_, _, _, action)| action)
        .collect();
    assert_eq!(actions, ["created", "retired", "reinstated"]);
    // retiring through PATCH is retiring; bringing back a sold one changes nothing
    let gone = send(
        &app,
        Method::PATCH,
        &cake,
        &owner,
        Some(json!({"retired": true})),
    )
    .await;
    gone.assert_status(200);
    assert!(gone.body["retired_at"].is_string(), "{}", gone.text);
    send(
        &app,
        Method::PATCH,
        &cake,
        &owner,
        Some(json!({"retired": false})),
    )
    .await
    .assert_status(200);
    send(
        &app,
        Method::PATCH,
        &cake,
        &owner,
        Some(json!({"retired": false})),
    )
    .await
    .assert_status(200);
    let count = changes(&app, store, &owner)
        .await
        .iter()
        .filter(|(_, _, key, _)| key == "CAKE")
        .count();
    assert_eq!(
        count, 5,
        "created, retired, reinstated, retired, reinstated"
    );
}

#[tokio::test]
async fn the_last_owner_stays_and_refused_shop_changes_change_nothing() {
    let app = spawn_app().await;
    let owner = merchant(&app, "merchant-1");
    let store = shop_of(&app, &owner).await;
    let members = format!("/v1/stores/{store}/members");
    let recorded = changes(&app, store, &owner).await.len();

    // the last owner can neither leave nor become staff
    send(
        &app,
        Method::DELETE,
        &format!("{members}/merchant-1"),
        &owner,
        None,
    )
    .await
    .assert_problem(422, "last-owner");
    send(
        &app,
        Method::PUT,
        &format!("{members}/merchant-1"),
        &owner,
        Some(json!({"role": "staff"})),
    )
    .await
    .assert_problem(422, "last-owner");
    // malformed and hostile requests: problem documents, nothing stored
    for (method, path, body, status) in [
        (
            Method::PUT,
            format!("{members}/x"),
            json!({"role": "boss"}),
            400,
        ),
        (
            Method::PUT,
            format!("{members}/x"),
            json!({"role": "staff", "admin": true}),
            400,
        ),
        (
            Method::PATCH,
            format!("/v1/stores/{store}"),
            json!({"contact_email": "nope"}),
            422,
        ),
        (
            Method::PATCH,
            format!("/v1/stores/{store}"),
            json!({"name": ""}),
            422,
        ),
        (
            Method::PATCH,
            format!("/v1/stores/{store}"),
            json!({"open": "no"}),
            400,
        ),
    ] {
        let answer = send(&app, method, &path, &owner, Some(body)).await;
        assert_eq!(answer.status.as_u16(), status, "{path}: {}", answer.text);
        assert_eq!(
            answer.header("content-type"),
            Some("application/problem+json")
        );
    }
    send(
        &app,
        Method::DELETE,
        &format!("{members}/nobody"),
        &owner,
        None,
    )
    .await
    .assert_problem(404, "member-not-found");
    // a staff member acts on orders but does not manage the store
    put_member(&app, &members, "waiter-1", "staff", &owner).await;
    let waiter = waiter(&app, "waiter-1");
    send(
        &app,
        Method::PATCH,
        &format!("/v1/stores/{store}"),
        &waiter,
        Some(json!({"open": false})),
    )
    .await
    .assert_problem(403, "forbidden");
    send(
        &app,
        Method::DELETE,
        &format!("{members}/merchant-1"),
        &waiter,
        None,
    )
    .await
    .assert_problem(403, "forbidden");
    assert_eq!(
        changes(&app, store, &owner).await.len(),
        recorded + 1,
        "only the waiter's addition is on record"
    );

    // with a second owner, the first may go
    put_member(&app, &members, "merchant-2", "owner", &owner).await;
    send(
        &app,
        Method::DELETE,
        &format!("{members}/merchant-1"),
        &owner,
        None,
    )
    .await
    .assert_status(204);
    app.get(&format!("/v1/stores/{store}"), &owner)
        .await
        .assert_problem(404, "store-not-found");
    app.get(
        &format!("/v1/stores/{store}"),
        &merchant(&app, "merchant-2"),
    )
    .await
    .assert_status(200);
}

#[tokio::test]
async fn a_membership_removed_elsewhere_reaches_this_process() {
    // Arrange: a waiter whose membership this process has cached.
    let app = spawn_app().await;
    let owner = merchant(&app, "merchant-1");
    let store = shop_of(&app, &owner).await;
    put_member(
        &app,
        &format!("/v1/stores/{store}/members"),
        "waiter-1",
        "staff",
        &owner,
    )
    .await;
    let waiter = waiter(&app, "waiter-1");
    let order = confirmed_order(&app, &app.customer("alice"), store, "TEA", 1).await;
    let read = format!("/v1/orders/{order}");
    app.get(&read, &waiter).await.assert_status(200);

    // Act: another replica (here: SQL) removes the membership.
    let mut changed = app.app_state.catalog.members().changes();
    sqlx::query("delete from store_members where subject = 'waiter-1'")
        .execute(&app.pool)
        .await
        .expect("removed");

    // Assert: the notification empties the cache; the waiter's reads turn to 404.
    loop {
        let answer = app.get(&read, &waiter).await;
        if answer.status == 404 {
            break;
        }
        answer.assert_status(200);
        tokio::time::timeout(PATIENCE, changed.changed())
            .await
            .expect("the removal reached this process")
            .expect("the cache lives");
    }
}

#[tokio::test]
async fn two_owners_removing_each_other_at_once_leave_one_owner() {
    let app = spawn_app().await;
    let (ann, bob) = (merchant(&app, "ann"), merchant(&app, "bob"));
    let store = shop_of(&app, &ann).await;
    let members = format!("/v1/stores/{store}/members");
    put_member(&app, &members, "bob", "owner", &ann).await;

    for _ in 0..5 {
        // Act: each removes the other at the same moment.
        let (ann_path, bob_path) = (format!("{members}/ann"), format!("{members}/bob"));
        let (by_ann, by_bob) = tokio::join!(
            send(&app, Method::DELETE, &bob_path, &ann, None),
            send(&app, Method::DELETE, &ann_path, &bob, None),
        );

        // Assert: one went; the other is refused, as the last owner (422) or, when the
        // removal of its sender came first, as one who no longer sees the store (404).
        let mut statuses = [by_ann.status.as_u16(), by_bob.status.as_u16()];
        statuses.sort_unstable();
        assert!(
            statuses == [204, 404] || statuses == [204, 422],
            "{statuses:?}: {} / {}",
            by_ann.text,
            by_bob.text
        );
        let (stayed, left) = if by_ann.status == 204 {
            (&ann, "bob")
        } else {
            (&bob, "ann")
        };
        let page = app.get(&members, stayed).await;
        assert_eq!(page.body["items"].as_array().map(Vec::len), Some(1));
        // the one who went comes back as owner for the next round
        send(
            &app,
            Method::PUT,
            &format!("{members}/{left}"),
            stayed,
            Some(json!({"role": "owner"})),
        )
        .await
        .assert_status(200);
    }
}

#[tokio::test]
async fn a_members_commands_read_its_memberships_from_memory() {
    // Arrange: a waiter whose memberships this process has read once.
    let app = spawn_app().await;
    let owner = merchant(&app, "merchant-1");
    let store = shop_of(&app, &owner).await;
    put_member(
        &app,
        &format!("/v1/stores/{store}/members"),
        "waiter-1",
        "staff",
        &owner,
    )
    .await;
    let waiter = waiter(&app, "waiter-1");
    let order = confirmed_order(&app, &app.customer("alice"), store, "TEA", 1).await;
    app.get(&format!("/v1/orders/{order}"), &waiter)
        .await
        .assert_status(200);
    let lookups = |page: &str| {
        (
            sample(page, "store_member_lookups_total{source=\"database\"}"),
            sample(page, "store_member_lookups_total{source=\"cache\"}"),
        )
    };
    // Act: the waiter's commands, in rounds of three; a notification of the arrangement's
    // catalog writes may still arrive and empty the cache once, so some round, not the first,
    // is the one that shows it.
    let mut rounds = Vec::new();
    for status in ["preparing", "ready_for_pickup", "picked_up"] {
        let (database_before, cache_before) = lookups(&app.metrics_page().await);
        app.set_status(&waiter, order, status)
            .await
            .assert_status(200);
        for _ in 0..2 {
            app.get(&format!("/v1/orders/{order}"), &waiter)
                .await
                .assert_status(200);
        }
        let (database_after, cache_after) = lookups(&app.metrics_page().await);
        rounds.push((database_after - database_before, cache_after - cache_before));
    }

    // Assert: a round of three requests without a read of the table, all from memory.
    assert!(
        rounds.contains(&(0, 3)),
        "(database, cache) lookups per round: {rounds:?}"
    );
}
