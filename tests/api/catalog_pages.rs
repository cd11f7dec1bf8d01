//! The catalog lists page as every list does: `{"items", "next"}`, `next` an opaque cursor
//! passed back as `cursor`; a cursor of another list or a forged one is 400
//! `invalid-parameter`, never a wrong page.

use order_service::http::auth::Role;
use reqwest::Method;
use serde_json::json;
use uuid::Uuid;

use crate::helpers::{spawn_app, TestApp, Who};

/// Every item of `path` (which takes `limit=2`), read page by page by `key`, and each page's
/// `next`.
async fn pages(app: &TestApp, path: &str, who: &Who, key: &str) -> (Vec<Vec<String>>, Vec<String>) {
    let (mut items, mut cursors) = (Vec::new(), Vec::new());
    let mut cursor = String::new();
    loop {
        let page = app.get(&format!("{path}?limit=2{cursor}"), who).await;
        page.assert_status(200);
        items.push(
            page.body["items"]
                .as_array()
                .expect("items")
                .iter()
                .map(|i| i[key].as_str().expect(key).to_owned())
                .collect(),
        );
        match page.body["next"].as_str() {
            Some(next) => {
                assert!(next.len() <= 64, "{next}");
                cursors.push(next.to_owned());
                cursor = format!("&cursor={next}");
            }
            None => return (items, cursors),
        }
    }
}

/// Pages are disjoint, in order, and together the whole list.
fn assert_pages(pages: &[Vec<String>], whole: &[&str]) {
    let flat: Vec<&str> = pages.iter().flatten().map(String::as_str).collect();
    assert_eq!(flat, whole, "pages {pages:?}");
    assert!(
        pages.iter().all(|p| !p.is_empty() && p.len() <= 2),
        "{pages:?}"
    );
}

#[tokio::test]
async fn the_catalog_lists_page_by_cursor_without_overlap_and_refuse_foreign_cursors() {
    // Arrange: a merchant with three stores (it sees those only), one with products and members.
    let app = spawn_app().await;
    let merchant = app.token("pager", &[Role::Merchant], &[]);
    let mut stores = Vec::new();
    for name in ["One", "Two", "Three"] {
        let store = app
            .post(
                "/v1/stores",
                &merchant,
                json!({"name": name, "currency": "EUR"}),
            )
            .await;
        store.assert_status(201);
        stores.push(store.body["id"].as_str().expect("id").to_owned());
    }
    stores.sort();
    let store: Uuid = stores[0].parse().expect("uuid");
    for sku in ["C", "A", "B"] {
        app.post(
            &format!("/v1/stores/{store}/products"),
            &merchant,
            json!({"sku": sku, "name": sku, "unit_price_minor": 100}),
        )
        .await
        .assert_status(201);
    }
    for sub in ["waiter-b", "waiter-a"] {
        app.send(
            Method::PUT,
            &format!("/v1/stores/{store}/members/{sub}"),
            Some(&merchant),
            Some(json!({"role": "staff"})),
            &[],
        )
        .await
        .assert_status(200);
    }

    // Act: each list, two at a time.
    let (store_pages, store_cursors) = pages(&app, "/v1/stores", &merchant, "id").await;
    let products = format!("/v1/stores/{store}/products");
    let (product_pages, product_cursors) = pages(&app, &products, &merchant, "sku").await;
    let members = format!("/v1/stores/{store}/members");
    let (member_pages, member_cursors) = pages(&app, &members, &merchant, "sub").await;
    let changes = format!("/v1/stores/{store}/changes");
    let (change_pages, change_cursors) = pages(&app, &changes, &merchant, "action").await;

    // Assert: two pages each, no overlap, nothing missing.
    let stores: Vec<&str> = stores.iter().map(String::as_str).collect();
    assert_pages(&store_pages, &stores);
    assert_pages(&product_pages, &["A", "B", "C"]);
    assert_pages(&member_pages, &["pager", "waiter-a", "waiter-b"]);
    let all = app.get(&format!("{changes}?limit=200"), &merchant).await;
    let all: Vec<String> = all.body["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|c| c["action"].as_str().expect("action").to_owned())
        .collect();
    let all: Vec<&str> = all.iter().map(String::as_str).collect();
    assert!(all.len() >= 6, "{all:?}");
    assert_pages(&change_pages, &all);

    // and a cursor of another list, or a forged one, is refused
    let foreign = [
        ("/v1/stores".to_owned(), &product_cursors[0]),
        (products.clone(), &store_cursors[0]),
        (products.clone(), &member_cursors[0]),
        (members.clone(), &change_cursors[0]),
        (changes.clone(), &product_cursors[0]),
    ];
    for (path, cursor) in foreign {
        app.get(&format!("{path}?cursor={cursor}"), &merchant)
            .await
            .assert_problem(400, "invalid-parameter");
    }
    for path in ["/v1/stores", &products, &members, &changes] {
        for forged in ["AAAA", "not-base64!", "BQ"] {
            app.get(&format!("{path}?cursor={forged}"), &merchant)
                .await
                .assert_problem(400, "invalid-parameter");
        }
    }
}
