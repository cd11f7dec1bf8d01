//! Role × endpoint × ownership: every `/v1` operation, every kind of caller. Visibility comes
//! first (an invisible order is 404), then permission (403).

use reqwest::Method;
use serde_json::{json, Value};
use uuid::Uuid;

use order_service::http::auth::Role;

use crate::helpers::{spawn_app, TestApp, Who};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Caller {
    Owner,
    OtherCustomer,
    StaffOfStore,
    StaffElsewhere,
    Service,
    /// A service token scoped to the order's store (`store_ids`).
    ServiceOfStore,
    /// A service token scoped to another store.
    ServiceElsewhere,
    Analyst,
    Admin,
    Anonymous,
}

const CALLERS: [Caller; 10] = [
    Caller::Owner,
    Caller::OtherCustomer,
    Caller::StaffOfStore,
    Caller::StaffElsewhere,
    Caller::Service,
    Caller::ServiceOfStore,
    Caller::ServiceElsewhere,
    Caller::Analyst,
    Caller::Admin,
    Caller::Anonymous,
];

/// What state an order must be in for the operation to succeed when allowed.
#[derive(Debug, Clone, Copy)]
enum Needs {
    Nothing,
    Draft,
    Placed,
    Confirmed,
    Preparing,
}

struct Op {
    id: &'static str,
    method: Method,
    /// `{order}` and `{store}` are substituted.
    path: &'static str,
    body: Option<Value>,
    needs: Needs,
    /// Expected status per caller, in `CALLERS` order.
    expect: [u16; 10],
}

struct World<'a> {
    app: &'a TestApp,
    store: Uuid,
    other_store: Uuid,
}

impl World<'_> {
    fn who(&self, caller: Caller) -> Option<Who> {
        Some(match caller {
            Caller::Owner => self.app.customer("alice"),
            Caller::OtherCustomer => self.app.customer("mallory"),
            Caller::StaffOfStore => self.app.staff(self.store),
            Caller::StaffElsewhere => self.app.staff(self.other_store),
            Caller::Service => self.app.service(),
            Caller::ServiceOfStore => {
                self.app
                    .token("storefront-1", &[Role::Service], &[self.store])
            }
            Caller::ServiceElsewhere => {
                self.app
                    .token("storefront-2", &[Role::Service], &[self.other_store])
            }
            Caller::Analyst => self.app.analyst(),
            Caller::Admin => self.app.admin(),
            Caller::Anonymous => return None,
        })
    }

    /// A fresh order of alice's in the needed state.
    async fn order(&self, needs: Needs) -> Option<Uuid> {
        let admin = self.app.admin();
        if matches!(needs, Needs::Nothing) {
            return None;
        }
        let order = self.app.create_order_for(&admin, self.store, "alice").await;
        self.app
            .add_item(&admin, order, "TEA", 1)
            .await
            .assert_status(200);
        if matches!(needs, Needs::Draft) {
            return Some(order);
        }
        self.app.place(&admin, order).await.assert_status(200);
        if matches!(needs, Needs::Placed) {
            return Some(order);
        }
        self.app.confirm_internally(order).await;
        if matches!(needs, Needs::Preparing) {
            self.app
                .set_status(&admin, order, "preparing")
                .await
                .assert_status(200);
        }
        Some(order)
    }
}

#[tokio::test]
async fn every_operation_answers_each_kind_of_caller_as_documented() {
    let app = spawn_app().await;
    let store = app.store_with_products().await;
    let other_store = app.store_with_products().await;
    let world = World {
        app: &app,
        store,
        other_store,
    };

    //            owner other staff staff-x service svc-store svc-x analyst admin anon
    let read = [200, 404, 200, 404, 200, 200, 404, 200, 200, 401];
    let shop = [200, 404, 200, 404, 200, 200, 404, 403, 200, 401];
    let fulfil = [403, 404, 200, 404, 200, 200, 404, 403, 200, 401];
    let anyone = [200, 200, 200, 200, 200, 200, 200, 200, 200, 401];
    let manage_store = [403, 403, 201, 403, 201, 201, 403, 403, 201, 401];
    let patch_product = [403, 403, 200, 403, 200, 200, 403, 403, 200, 401];
    let open_store = [403, 403, 403, 403, 201, 403, 403, 403, 201, 401];
    let admin_only = [403, 403, 403, 403, 403, 403, 403, 403, 200, 401];
    // No saga machinery runs in this app: a visible order answers "no saga", an invisible one
    // "no order"; both are 404, and only the bearer check differs.
    let saga_of_draft = [404, 404, 404, 404, 404, 404, 404, 404, 404, 401];
    let retry_missing = [403, 403, 403, 403, 403, 403, 403, 403, 404, 401];
    // createOrder: the owner creates for itself; "other customer" tries to create for alice.
    let create = [201, 403, 201, 403, 201, 201, 403, 403, 201, 401];
    // alice's history: hidden from other customers; staff elsewhere get an empty page.
    let customer_history = [200, 404, 200, 200, 200, 200, 200, 200, 200, 401];
    // reports: analysts, services, admins, and staff about their own store.
    let report = [403, 403, 200, 403, 200, 200, 403, 200, 200, 401];

    let ops = vec![
        Op {
            id: "createOrder",
            method: Method::POST,
            path: "/v1/orders",
            body: Some(json!({"store_id": "{store}", "customer_id": "alice"})),
            needs: Needs::Nothing,
            expect: create,
        },
        Op {
            id: "getOrder",
            method: Method::GET,
            path: "/v1/orders/{order}",
            body: None,
            needs: Needs::Draft,
            expect: read,
        },
        Op {
            id: "listOrderItems",
            method: Method::GET,
            path: "/v1/orders/{order}/items",
            body: None,
            needs: Needs::Draft,
            expect: read,
        },
        Op {
            id: "getStatusHistory",
            method: Method::GET,
            path: "/v1/orders/{order}/status-history",
            body: None,
            needs: Needs::Draft,
            expect: read,
        },
        Op {
            id: "getOrderEvents",
            method: Method::GET,
            path: "/v1/orders/{order}/events",
            body: None,
            needs: Needs::Draft,
            expect: read,
        },
        Op {
            id: "listOrders",
            method: Method::GET,
            path: "/v1/orders",
            body: None,
            needs: Needs::Nothing,
            expect: anyone,
        },
        Op {
            id: "listCustomerOrders",
            method: Method::GET,
            path: "/v1/customers/alice/orders",
            body: None,
            needs: Needs::Nothing,
            expect: customer_history,
        },
        Op {
            id: "productSalesReport",
            method: Method::GET,
            path: "/v1/reports/product-sales?from=2026-01-01&to=2026-12-31&store_id={store}",
            body: None,
            needs: Needs::Nothing,
            expect: report,
        },
        Op {
            id: "salesSummary",
            method: Method::GET,
            path: "/v1/reports/sales-summary?store_id={store}",
            body: None,
            needs: Needs::Nothing,
            expect: report,
        },
        Op {
            id: "addItem",
            method: Method::POST,
            path: "/v1/orders/{order}/items",
            body: Some(json!({"sku": "CAKE", "quantity": 1})),
            needs: Needs::Draft,
            expect: shop,
        },
        Op {
            id: "updateItem",
            method: Method::PATCH,
            path: "/v1/orders/{order}/items/1",
            body: Some(json!({"quantity": 3})),
            needs: Needs::Draft,
            expect: shop,
        },
        Op {
            id: "removeItem",
            method: Method::DELETE,
            path: "/v1/orders/{order}/items/1",
            body: None,
            needs: Needs::Draft,
            expect: shop,
        },
        Op {
            id: "placeOrder",
            method: Method::POST,
            path: "/v1/orders/{order}/place",
            body: Some(json!({})),
            needs: Needs::Draft,
            expect: shop,
        },
        Op {
            id: "discardDraft",
            method: Method::DELETE,
            path: "/v1/orders/{order}",
            body: None,
            needs: Needs::Draft,
            expect: shop,
        },
        Op {
            id: "cancelOrder",
            method: Method::POST,
            path: "/v1/orders/{order}/cancel",
            body: Some(json!({"reason": "r"})),
            needs: Needs::Placed,
            expect: shop,
        },
        Op {
            id: "changeOrderStatus",
            method: Method::POST,
            path: "/v1/orders/{order}/status",
            body: Some(json!({"status": "preparing"})),
            needs: Needs::Confirmed,
            expect: fulfil,
        },
        Op {
            id: "shipOrder",
            method: Method::POST,
            path: "/v1/orders/{order}/ship",
            body: Some(json!({"carrier": "DHL", "tracking_number": "T1"})),
            needs: Needs::Preparing,
            expect: fulfil,
        },
        Op {
            id: "createStore",
            method: Method::POST,
            path: "/v1/stores",
            body: Some(json!({"name": "New", "currency": "EUR"})),
            needs: Needs::Nothing,
            expect: open_store,
        },
        Op {
            id: "listStores",
            method: Method::GET,
            path: "/v1/stores",
            body: None,
            needs: Needs::Nothing,
            expect: anyone,
        },
        Op {
            id: "getStore",
            method: Method::GET,
            path: "/v1/stores/{store}",
            body: None,
            needs: Needs::Nothing,
            expect: anyone,
        },
        Op {
            id: "createProduct",
            method: Method::POST,
            path: "/v1/stores/{store}/products",
            body: Some(json!({"sku": "NEW-{n}", "name": "New", "unit_price_minor": 1})),
            needs: Needs::Nothing,
            expect: manage_store,
        },
        Op {
            id: "getProduct",
            method: Method::GET,
            path: "/v1/stores/{store}/products/CAKE",
            body: None,
            needs: Needs::Nothing,
            expect: anyone,
        },
        Op {
            id: "getOrderSaga",
            method: Method::GET,
            path: "/v1/orders/{order}/saga",
            body: None,
            needs: Needs::Draft,
            expect: saga_of_draft,
        },
        Op {
            id: "listSagas",
            method: Method::GET,
            path: "/v1/admin/sagas?state=needs_attention",
            body: None,
            needs: Needs::Nothing,
            expect: admin_only,
        },
        Op {
            id: "retrySaga",
            method: Method::POST,
            path: "/v1/admin/sagas/{order}/retry",
            body: None,
            needs: Needs::Draft,
            expect: retry_missing,
        },
        Op {
            id: "listNotifications",
            method: Method::GET,
            path: "/v1/admin/notifications?status=failed",
            body: None,
            needs: Needs::Nothing,
            expect: admin_only,
        },
        Op {
            id: "listReaders",
            method: Method::GET,
            path: "/v1/admin/readers",
            body: None,
            needs: Needs::Nothing,
            expect: admin_only,
        },
        Op {
            id: "rebuildProjections",
            method: Method::POST,
            path: "/v1/admin/projections/rebuild",
            body: None,
            needs: Needs::Nothing,
            expect: admin_only,
        },
        Op {
            id: "listProducts",
            method: Method::GET,
            path: "/v1/stores/{store}/products",
            body: None,
            needs: Needs::Nothing,
            expect: anyone,
        },
        Op {
            id: "updateProduct",
            method: Method::PATCH,
            path: "/v1/stores/{store}/products/CAKE",
            body: Some(json!({"unit_price_minor": 310})),
            needs: Needs::Nothing,
            expect: patch_product,
        },
    ];

    // Every operation of the spec is in the matrix (the ops endpoints are public).
    let spec: Value = serde_json::from_str(&order_service::http::openapi().spec()).expect("spec");
    let mut documented: Vec<String> = spec["paths"]
        .as_object()
        .expect("paths")
        .iter()
        .filter(|(path, _)| path.starts_with("/v1"))
        .flat_map(|(_, methods)| {
            methods
                .as_object()
                .expect("methods")
                .values()
                .filter_map(|m| m["operationId"].as_str().map(str::to_owned))
        })
        .collect();
    documented.sort();
    let mut covered: Vec<String> = ops.iter().map(|o| o.id.to_owned()).collect();
    covered.sort();
    assert_eq!(
        covered, documented,
        "the matrix must cover every /v1 operation"
    );

    let mut failures = Vec::new();
    let mut n = 0;
    for op in &ops {
        for (i, caller) in CALLERS.iter().enumerate() {
            n += 1;
            let order = world.order(op.needs).await;
            let substitute = |s: &str| {
                s.replace("{order}", &order.map(|o| o.to_string()).unwrap_or_default())
                    .replace("{store}", &store.to_string())
                    .replace("{n}", &n.to_string())
            };
            let body = op
                .body
                .as_ref()
                .map(|b| serde_json::from_str(&substitute(&b.to_string())).expect("body"));
            let who = world.who(*caller);
            let events_before = app.event_count().await;
            let answer = app
                .send(
                    op.method.clone(),
                    &substitute(op.path),
                    who.as_ref(),
                    body,
                    &[],
                )
                .await;
            if answer.status.as_u16() != op.expect[i] {
                failures.push(format!(
                    "{} as {caller:?}: expected {}, got {} {}",
                    op.id, op.expect[i], answer.status, answer.text
                ));
            }
            if answer.status.is_client_error() && app.event_count().await != events_before {
                failures.push(format!(
                    "{} as {caller:?}: refused with {} but stored events",
                    op.id, answer.status
                ));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} cell(s) wrong:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
