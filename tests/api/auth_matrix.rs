//! Role × endpoint × ownership: every `/v1` operation, every kind of caller. A role that may
//! never call an operation is 403 before anything else (its parameters included); then
//! visibility (an invisible order is 404), then permission (403).

use reqwest::Method;
use serde_json::{json, Value};
use uuid::Uuid;

use order_service::http::auth::Role;

use crate::helpers::{spawn_app, TestApp, Who};

/// Streams outside the OpenAPI service (documented in it): their roles are tested with real
/// SSE and WebSocket clients in `live.rs` (`live_feeds_refuse_like_the_rest_of_the_api`).
const LIVE_FEEDS: [&str; 2] = ["orderLive", "storeLive"];

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
    /// A merchant owning the order's store (a member, not a claim).
    OwnerMerchant,
    /// A merchant owning another store.
    OtherMerchant,
    /// A staff token without `store_ids`, a `staff` member of the order's store.
    MemberStaff,
}

const CALLERS: [Caller; 13] = [
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
    Caller::OwnerMerchant,
    Caller::OtherMerchant,
    Caller::MemberStaff,
];

/// What state an order must be in for the operation to succeed when allowed.
#[derive(Debug, Clone, Copy)]
enum Needs {
    Nothing,
    Draft,
    Placed,
    Confirmed,
    Preparing,
    /// A member `temp-{n}` of the store.
    Member,
    /// A product `RET-{n}` of the store.
    Product,
}

struct Op {
    id: &'static str,
    method: Method,
    /// `{order}` and `{store}` are substituted.
    path: &'static str,
    body: Option<Value>,
    needs: Needs,
    /// Expected status per caller, in `CALLERS` order.
    expect: [u16; 13],
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
            Caller::OwnerMerchant => self.app.token("merchant-1", &[Role::Merchant], &[]),
            Caller::OtherMerchant => self.app.token("merchant-2", &[Role::Merchant], &[]),
            Caller::MemberStaff => self.app.token("waiter-1", &[Role::Staff], &[]),
        })
    }

    /// Makes `sub` a member of `store` with `role`, as an admin.
    async fn member(&self, store: Uuid, sub: &str, role: &str) {
        self.app
            .send(
                Method::PUT,
                &format!("/v1/stores/{store}/members/{sub}"),
                Some(&self.app.admin()),
                Some(json!({"role": role})),
                &[],
            )
            .await
            .assert_status(200);
    }

    /// What a cell needs besides an order: a member or a product to remove (`{n}`).
    async fn prepare(&self, needs: Needs, n: usize) {
        match needs {
            Needs::Member => self.member(self.store, &format!("temp-{n}"), "staff").await,
            Needs::Product => {
                self.app
                    .post(
                        &format!("/v1/stores/{}/products", self.store),
                        &self.app.admin(),
                        json!({"sku": format!("RET-{n}"), "name": "Old", "unit_price_minor": 1}),
                    )
                    .await
                    .assert_status(201);
            }
            _ => {}
        }
    }

    /// The merchants and the member staff of the matrix.
    async fn members(&self) {
        self.member(self.store, "merchant-1", "owner").await;
        self.member(self.store, "waiter-1", "staff").await;
        self.member(self.other_store, "merchant-2", "owner").await;
    }

    /// A fresh order of alice's in the needed state.
    async fn order(&self, needs: Needs) -> Option<Uuid> {
        let admin = self.app.admin();
        if matches!(needs, Needs::Nothing | Needs::Member | Needs::Product) {
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
    world.members().await;

    //            owner other staff staff-x service svc-store svc-x analyst admin anon
    //            merchant merchant-x member-staff
    let read = [
        200, 404, 200, 404, 200, 200, 404, 200, 200, 401, 200, 404, 200,
    ];
    let shop = [
        200, 404, 200, 404, 200, 200, 404, 403, 200, 401, 200, 404, 200,
    ];
    // customers never fulfil: 403 whoever's order it is (the answer names no order)
    let fulfil = [
        403, 403, 200, 404, 200, 200, 404, 403, 200, 401, 200, 404, 200,
    ];
    // merchants see only their own stores (404), staff members do not manage the catalog
    let anyone = [
        200, 200, 200, 200, 200, 200, 200, 200, 200, 401, 200, 200, 200,
    ];
    let see_store = [
        200, 200, 200, 200, 200, 200, 200, 200, 200, 401, 200, 404, 200,
    ];
    let manage_store = [
        403, 403, 201, 403, 201, 201, 403, 403, 201, 401, 201, 404, 403,
    ];
    let patch_product = [
        403, 403, 200, 403, 200, 200, 403, 403, 200, 401, 200, 404, 403,
    ];
    let open_store = [
        403, 403, 403, 403, 201, 403, 403, 403, 201, 401, 201, 201, 403,
    ];
    let admin_only = [
        403, 403, 403, 403, 403, 403, 403, 403, 200, 401, 403, 403, 403,
    ];
    // the store itself, its members and its changes: owners, admins, unscoped services
    let owners = [
        403, 403, 403, 403, 200, 403, 403, 403, 200, 401, 200, 404, 403,
    ];
    let owners_remove = [
        403, 403, 403, 403, 204, 403, 403, 403, 204, 401, 204, 404, 403,
    ];
    // No saga machinery runs in this app: a visible order answers "no saga", an invisible one
    // "no order"; both are 404, and only the bearer check differs.
    let saga_of_draft = [
        404, 404, 404, 404, 404, 404, 404, 404, 404, 401, 404, 404, 404,
    ];
    let retry_missing = [
        403, 403, 403, 403, 403, 403, 403, 403, 404, 401, 403, 403, 403,
    ];
    // createOrder: the owner creates for itself; "other customer" tries to create for alice.
    let create = [
        201, 403, 201, 403, 201, 201, 403, 403, 201, 401, 201, 403, 201,
    ];
    // alice's history: hidden from other customers; staff elsewhere get an empty page.
    let customer_history = [
        200, 404, 200, 200, 200, 200, 200, 200, 200, 401, 200, 200, 200,
    ];
    // reports: analysts, services, admins, and staff and members about their own store.
    let report = [
        403, 403, 200, 403, 200, 200, 403, 200, 200, 401, 200, 403, 200,
    ];

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
            expect: see_store,
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
            expect: see_store,
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
            id: "retryNotification",
            method: Method::POST,
            path: "/v1/admin/notifications/999999999/retry",
            body: None,
            needs: Needs::Nothing,
            expect: retry_missing,
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
            expect: see_store,
        },
        Op {
            id: "updateProduct",
            method: Method::PATCH,
            path: "/v1/stores/{store}/products/CAKE",
            body: Some(json!({"unit_price_minor": 310})),
            needs: Needs::Nothing,
            expect: patch_product,
        },
        Op {
            id: "retireProduct",
            method: Method::DELETE,
            path: "/v1/stores/{store}/products/RET-{n}",
            body: None,
            needs: Needs::Product,
            expect: patch_product,
        },
        Op {
            id: "updateStore",
            method: Method::PATCH,
            path: "/v1/stores/{store}",
            body: Some(json!({"name": "Renamed {n}"})),
            needs: Needs::Nothing,
            expect: owners,
        },
        Op {
            id: "listMembers",
            method: Method::GET,
            path: "/v1/stores/{store}/members",
            body: None,
            needs: Needs::Nothing,
            expect: owners,
        },
        Op {
            id: "putMember",
            method: Method::PUT,
            path: "/v1/stores/{store}/members/put-{n}",
            body: Some(json!({"role": "staff"})),
            needs: Needs::Nothing,
            expect: owners,
        },
        Op {
            id: "removeMember",
            method: Method::DELETE,
            path: "/v1/stores/{store}/members/temp-{n}",
            body: None,
            needs: Needs::Member,
            expect: owners_remove,
        },
        Op {
            id: "listStoreChanges",
            method: Method::GET,
            path: "/v1/stores/{store}/changes",
            body: None,
            needs: Needs::Nothing,
            expect: owners,
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
        // the live feeds answer roles as the rest does: live::live_feeds_refuse_like_the_rest_of_the_api
        .filter(|id| !LIVE_FEEDS.contains(&id.as_str()))
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
            world.prepare(op.needs, n).await;
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

/// Which roles may call an operation at all (the server's `security::Gate`s).
#[derive(Debug, Clone, Copy)]
enum Gate {
    Anyone,
    /// customers, staff, services, admins, merchants
    Shoppers,
    /// staff, services, admins, merchants
    StoreHands,
    /// analysts, staff, services, admins, merchants
    ReportReaders,
    /// admins, services not scoped to stores, merchants
    Operators,
    Admins,
}

fn admits(gate: Gate, caller: Caller) -> bool {
    use Caller as C;
    let customer = matches!(caller, C::Owner | C::OtherCustomer);
    let staff = matches!(caller, C::StaffOfStore | C::StaffElsewhere | C::MemberStaff);
    let merchant = matches!(caller, C::OwnerMerchant | C::OtherMerchant);
    let service = matches!(caller, C::Service | C::ServiceOfStore | C::ServiceElsewhere);
    let admin = caller == C::Admin;
    match gate {
        Gate::Anyone => true,
        Gate::Shoppers => customer || staff || service || admin || merchant,
        Gate::StoreHands => staff || service || admin || merchant,
        Gate::ReportReaders => caller == C::Analyst || staff || service || admin || merchant,
        Gate::Operators => caller == C::Service || admin || merchant,
        Gate::Admins => admin,
    }
}

#[tokio::test]
async fn a_role_that_may_not_call_an_operation_learns_nothing_of_its_parameters() {
    let app = spawn_app().await;
    let store = app.store_with_products().await;
    let other_store = app.store_with_products().await;
    let world = World {
        app: &app,
        store,
        other_store,
    };
    world.members().await;
    let order = app.create_order_for(&app.admin(), store, "alice").await;
    // (operation, gate, method, a request with a malformed parameter or body)
    let bad_id = "/v1/orders/not-a-uuid";
    let cases: Vec<(&str, Gate, Method, String, Option<Value>)> = vec![
        (
            "createOrder",
            Gate::Shoppers,
            Method::POST,
            "/v1/orders".into(),
            Some(json!({"store_id": "nope"})),
        ),
        (
            "getOrder",
            Gate::Anyone,
            Method::GET,
            format!("/v1/orders/{order}?min_version=-1"),
            None,
        ),
        (
            "listOrderItems",
            Gate::Anyone,
            Method::GET,
            format!("/v1/orders/{order}/items?min_version=x"),
            None,
        ),
        (
            "getStatusHistory",
            Gate::Anyone,
            Method::GET,
            format!("{bad_id}/status-history"),
            None,
        ),
        (
            "getOrderEvents",
            Gate::Anyone,
            Method::GET,
            format!("/v1/orders/{order}/events?limit=x"),
            None,
        ),
        (
            "listOrders",
            Gate::Anyone,
            Method::GET,
            "/v1/orders?from=yesterday".into(),
            None,
        ),
        (
            "listCustomerOrders",
            Gate::Anyone,
            Method::GET,
            "/v1/customers/alice/orders?to=soon".into(),
            None,
        ),
        (
            "productSalesReport",
            Gate::ReportReaders,
            Method::GET,
            "/v1/reports/product-sales?from=2026-12-03T00:00:00&to=2026-12-31".into(),
            None,
        ),
        (
            "salesSummary",
            Gate::ReportReaders,
            Method::GET,
            "/v1/reports/sales-summary?granularity=hour".into(),
            None,
        ),
        (
            "addItem",
            Gate::Shoppers,
            Method::POST,
            format!("/v1/orders/{order}/items"),
            Some(json!({"sku": 1})),
        ),
        (
            "updateItem",
            Gate::Shoppers,
            Method::PATCH,
            format!("/v1/orders/{order}/items/0"),
            Some(json!({"quantity": 1})),
        ),
        (
            "removeItem",
            Gate::Shoppers,
            Method::DELETE,
            format!("/v1/orders/{order}/items/0"),
            None,
        ),
        (
            "placeOrder",
            Gate::Shoppers,
            Method::POST,
            format!("{bad_id}/place"),
            None,
        ),
        (
            "discardDraft",
            Gate::Shoppers,
            Method::DELETE,
            bad_id.into(),
            None,
        ),
        (
            "cancelOrder",
            Gate::Shoppers,
            Method::POST,
            format!("{bad_id}/cancel"),
            Some(json!({"reason": "r"})),
        ),
        (
            "changeOrderStatus",
            Gate::StoreHands,
            Method::POST,
            format!("/v1/orders/{order}/status"),
            Some(json!({"status": "teleported"})),
        ),
        (
            "shipOrder",
            Gate::StoreHands,
            Method::POST,
            format!("/v1/orders/{order}/ship"),
            Some(json!({})),
        ),
        (
            "createStore",
            Gate::Operators,
            Method::POST,
            "/v1/stores".into(),
            Some(json!({"name": 1})),
        ),
        (
            "listStores",
            Gate::Anyone,
            Method::GET,
            "/v1/stores?limit=x".into(),
            None,
        ),
        (
            "getStore",
            Gate::Anyone,
            Method::GET,
            "/v1/stores/not-a-uuid".into(),
            None,
        ),
        (
            "createProduct",
            Gate::StoreHands,
            Method::POST,
            format!("/v1/stores/{store}/products"),
            Some(json!({"sku": 1})),
        ),
        (
            "getProduct",
            Gate::Anyone,
            Method::GET,
            "/v1/stores/not-a-uuid/products/CAKE".into(),
            None,
        ),
        (
            "listProducts",
            Gate::Anyone,
            Method::GET,
            format!("/v1/stores/{store}/products?limit=x"),
            None,
        ),
        (
            "updateProduct",
            Gate::StoreHands,
            Method::PATCH,
            format!("/v1/stores/{store}/products/CAKE"),
            Some(json!({"unit_price_minor": "x"})),
        ),
        (
            "getOrderSaga",
            Gate::Anyone,
            Method::GET,
            format!("{bad_id}/saga"),
            None,
        ),
        (
            "listSagas",
            Gate::Admins,
            Method::GET,
            "/v1/admin/sagas?limit=x".into(),
            None,
        ),
        (
            "retrySaga",
            Gate::Admins,
            Method::POST,
            "/v1/admin/sagas/not-a-uuid/retry".into(),
            None,
        ),
        (
            "listNotifications",
            Gate::Admins,
            Method::GET,
            "/v1/admin/notifications?limit=x".into(),
            None,
        ),
        (
            "retryNotification",
            Gate::Admins,
            Method::POST,
            "/v1/admin/notifications/0/retry".into(),
            None,
        ),
        (
            "retireProduct",
            Gate::StoreHands,
            Method::DELETE,
            "/v1/stores/not-a-uuid/products/CAKE".into(),
            None,
        ),
        (
            "updateStore",
            Gate::StoreHands,
            Method::PATCH,
            format!("/v1/stores/{store}"),
            Some(json!({"open": "x"})),
        ),
        (
            "listMembers",
            Gate::StoreHands,
            Method::GET,
            format!("/v1/stores/{store}/members?limit=x"),
            None,
        ),
        (
            "putMember",
            Gate::StoreHands,
            Method::PUT,
            format!("/v1/stores/{store}/members/x"),
            Some(json!({"role": 1})),
        ),
        (
            "removeMember",
            Gate::StoreHands,
            Method::DELETE,
            "/v1/stores/not-a-uuid/members/x".into(),
            None,
        ),
        (
            "listStoreChanges",
            Gate::StoreHands,
            Method::GET,
            format!("/v1/stores/{store}/changes?cursor=x"),
            None,
        ),
    ];

    let mut failures = Vec::new();
    for (id, gate, method, path, body) in &cases {
        for caller in CALLERS {
            let who = world.who(caller);
            let events_before = app.event_count().await;
            let answer = app
                .send(method.clone(), path, who.as_ref(), body.clone(), &[])
                .await;
            let status = answer.status.as_u16();
            let ok = match (caller, admits(*gate, caller)) {
                (Caller::Anonymous, _) => status == 401,
                (_, false) => status == 403,
                // counter-check: the request really is malformed for those who may call it
                (_, true) => status == 400 || status == 422,
            };
            if !ok {
                failures.push(format!("{id} as {caller:?}: got {status} {}", answer.text));
            }
            if app.event_count().await != events_before {
                failures.push(format!(
                    "{id} as {caller:?}: a malformed request stored events"
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

    // Every operation with a parameter or a body is here; listReaders and rebuildProjections
    // take neither.
    let spec: Value = serde_json::from_str(&order_service::http::openapi().spec()).expect("spec");
    let mut with_input: Vec<String> = spec["paths"]
        .as_object()
        .expect("paths")
        .iter()
        .filter(|(path, _)| path.starts_with("/v1"))
        .flat_map(|(_, methods)| methods.as_object().expect("methods").values())
        .filter(|m| m.get("parameters").is_some() || m.get("requestBody").is_some())
        .filter_map(|m| m["operationId"].as_str().map(str::to_owned))
        .filter(|id| !LIVE_FEEDS.contains(&id.as_str()))
        .collect();
    with_input.sort();
    let mut covered: Vec<String> = cases.iter().map(|c| c.0.to_owned()).collect();
    covered.sort();
    assert_eq!(covered, with_input, "every operation with input is covered");
}
