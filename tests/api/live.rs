//! Live feeds (`/v1/orders/{id}/live`, `/v1/stores/{id}/live`) as a client sees them: SSE and
//! WebSocket, snapshots, every change once and in order while commands race, resuming with
//! the last id, and the same refusals as the rest of the API.

use std::time::Duration;

use futures::StreamExt as _;
use order_service::http::auth::Role;
use order_service::live::{LiveMessage, OrderStart};
use reqwest::Method;
use serde_json::{json, Value};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite;
use uuid::Uuid;

use crate::helpers::{sample, spawn_app, spawn_app_with, TestApp, Who};

/// Longer than any wait for a message on a working feed.
const PATIENCE: Duration = Duration::from_secs(15);

/// One message of a feed.
#[derive(Debug, Clone, PartialEq)]
struct Message {
    kind: String,
    id: String,
    data: Value,
}

/// A client of an SSE feed, parsing the stream as `EventSource` does.
struct Sse {
    response: reqwest::Response,
    buffer: String,
}

impl Sse {
    /// Opens `path` as an event stream; panics unless it is one.
    async fn open(app: &TestApp, path: &str, who: &Who, last_event_id: Option<&str>) -> Self {
        let mut req = app
            .client
            .get(format!("{}{path}", app.address))
            .bearer_auth(&who.token)
            .header("accept", "text/event-stream");
        if let Some(id) = last_event_id {
            req = req.header("last-event-id", id);
        }
        let response = req.send().await.expect("request sent");
        assert_eq!(response.status(), 200, "{path}");
        assert_eq!(
            response
                .headers()
                .get("content-type")
                .and_then(|v| v.to_str().ok()),
            Some("text/event-stream")
        );
        Self {
            response,
            buffer: String::new(),
        }
    }

    /// The next message (comments skipped).
    async fn next(&mut self) -> Message {
        tokio::time::timeout(PATIENCE, async {
            loop {
                if let Some(end) = self.buffer.find("\n\n") {
                    let block: String = self.buffer.drain(..end + 2).collect();
                    let (mut kind, mut id, mut data) =
                        (String::from("message"), String::new(), String::new());
                    for line in block.lines() {
                        if let Some(v) = line.strip_prefix("event:") {
                            v.trim().clone_into(&mut kind);
                        } else if let Some(v) = line.strip_prefix("id:") {
                            v.trim().clone_into(&mut id);
                        } else if let Some(v) = line.strip_prefix("data:") {
                            data.push_str(v.trim_start());
                        }
                    }
                    if data.is_empty() {
                        continue; // a keep-alive comment
                    }
                    return Message {
                        kind,
                        id,
                        data: serde_json::from_str(&data).expect("JSON data"),
                    };
                }
                let chunk = self
                    .response
                    .chunk()
                    .await
                    .expect("stream readable")
                    .expect("the feed stays open");
                self.buffer
                    .push_str(std::str::from_utf8(&chunk).expect("UTF-8"));
            }
        })
        .await
        .expect("a message in time")
    }

    /// The next `n` messages.
    async fn take(&mut self, n: usize) -> Vec<Message> {
        let mut out = Vec::with_capacity(n);
        for _ in 0..n {
            out.push(self.next().await);
        }
        out
    }

    /// The next message is the event `event_type` taking order `order` to `version`, and it
    /// is returned. A test that wants to show nothing more was due on the feed makes that change
    /// after the point in question and calls this: a feed sends in log order, so anything
    /// unexpected (a repeat, another order's event) would have come first. The change's arrival
    /// is the signal; no clock decides when "nothing" has been seen long enough.
    async fn assert_next_is_only(
        &mut self,
        order: Uuid,
        version: u64,
        event_type: &str,
    ) -> Message {
        let next = self.next().await;
        assert_eq!(
            (
                next.kind.as_str(),
                next.data["order_id"].as_str(),
                next.data["version"].as_u64(),
                next.data["event_type"].as_str(),
            ),
            (
                "event",
                Some(order.to_string().as_str()),
                Some(version),
                Some(event_type)
            ),
            "something came before the marker change: {next:?}"
        );
        next
    }
}

fn versions(messages: &[Message]) -> Vec<u64> {
    messages
        .iter()
        .map(|m| m.data["version"].as_u64().expect("version"))
        .collect()
}

fn types(messages: &[Message]) -> Vec<&str> {
    messages
        .iter()
        .map(|m| m.data["event_type"].as_str().expect("event_type"))
        .collect()
}

#[tokio::test]
async fn an_order_feed_starts_with_a_snapshot_then_sends_each_change_as_it_commits() {
    // Arrange
    let app = spawn_app().await;
    let store = app.store_with_products().await;
    let alice = app.customer("alice");
    let order = app.draft_with_tea(&alice, store).await;
    let mut feed = Sse::open(&app, &format!("/v1/orders/{order}/live"), &alice, None).await;

    // Act + assert: the order as it stands, then its changes.
    let snapshot = feed.next().await;
    assert_eq!(snapshot.kind, "snapshot");
    assert_eq!(snapshot.id, "2");
    assert_eq!(snapshot.data["id"], order.to_string());
    assert_eq!(snapshot.data["status"], "draft");
    assert_eq!(snapshot.data["total_minor"], 450);

    app.add_item(&alice, order, "CAKE", 2)
        .await
        .assert_status(200);
    app.place(&alice, order).await.assert_status(200);
    app.confirm_internally(order).await;
    let changes = feed.take(3).await;
    assert_eq!(
        types(&changes),
        ["ItemAdded", "OrderPlaced", "OrderConfirmed"]
    );
    assert_eq!(versions(&changes), [3, 4, 5]);
    assert!(changes.iter().all(|m| m.kind == "event"));
    assert_eq!(
        changes.iter().map(|m| m.id.as_str()).collect::<Vec<_>>(),
        ["3", "4", "5"]
    );
    assert_eq!(changes[0].data["order_id"], order.to_string());
    assert_eq!(changes[0].data["payload"]["sku"], "CAKE");

    // Assert: nothing more was sent; the next change is what comes next.
    app.set_status(&app.admin(), order, "preparing")
        .await
        .assert_status(200);
    feed.assert_next_is_only(order, 6, "PreparationStarted")
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_order_feed_sees_every_version_once_and_in_order_while_commands_race() {
    // Arrange: a feed opened while 30 items are being added concurrently.
    let app = spawn_app().await;
    let store = app.store_with_products().await;
    app.add_products(store, 30).await;
    let admin = app.admin();
    let order = app.create_order(&admin, store).await;
    let writers: Vec<_> = (1..=30)
        .map(|i| {
            let (client, address, token) =
                (app.client.clone(), app.address.clone(), admin.token.clone());
            tokio::spawn(async move {
                // 409 (too many concurrent writers) is an allowed answer; retry until added
                loop {
                    let r = client
                        .post(format!("{address}/v1/orders/{order}/items"))
                        .bearer_auth(&token)
                        .json(&json!({"sku": format!("P{i}"), "quantity": 1}))
                        .send()
                        .await
                        .expect("sent");
                    if r.status() == 200 {
                        return;
                    }
                    assert_eq!(r.status(), 409);
                }
            })
        })
        .collect();
    let mut feed = Sse::open(&app, &format!("/v1/orders/{order}/live"), &admin, None).await;

    // Act
    for w in writers {
        w.await.expect("writer");
    }
    let snapshot = feed.next().await;
    let from: u64 = snapshot.id.parse().expect("version");
    let rest = feed.take(usize::try_from(31 - from).expect("small")).await;

    // Assert: after the snapshot, each later version exactly once, in order, then only the
    // next change.
    assert_eq!(snapshot.kind, "snapshot");
    assert_eq!(versions(&rest), (from + 1..=31).collect::<Vec<_>>());
    app.add_item(&admin, order, "TEA", 1)
        .await
        .assert_status(200);
    feed.assert_next_is_only(order, 32, "ItemAdded").await;
}

#[tokio::test]
async fn a_resumed_order_feed_gets_exactly_what_it_missed() {
    // Arrange: the client saw version 2, then went away while the order moved on.
    let app = spawn_app().await;
    let store = app.store_with_products().await;
    let alice = app.customer("alice");
    let order = app.draft_with_tea(&alice, store).await;
    app.add_item(&alice, order, "CAKE", 1)
        .await
        .assert_status(200);
    app.place(&alice, order).await.assert_status(200);

    // Act
    let mut feed = Sse::open(&app, &format!("/v1/orders/{order}/live"), &alice, Some("2")).await;
    let missed = feed.take(2).await;
    app.confirm_internally(order).await;
    let live = feed.next().await;

    // Assert: no snapshot, the missed events, then the live one, then only the next change.
    assert_eq!(types(&missed), ["ItemAdded", "OrderPlaced"]);
    assert_eq!(versions(&missed), [3, 4]);
    assert_eq!(types(std::slice::from_ref(&live)), ["OrderConfirmed"]);
    assert_eq!(live.id, "5");
    app.set_status(&app.admin(), order, "preparing")
        .await
        .assert_status(200);
    feed.assert_next_is_only(order, 6, "PreparationStarted")
        .await;
}

#[tokio::test]
async fn a_store_feed_carries_its_own_orders_and_resumes_after_its_last_id() {
    // Arrange: two stores; the feed of the first, for its staff.
    let app = spawn_app().await;
    let a = app.store_with_products().await;
    let b = app.store_with_products().await;
    let staff = app.staff(a);
    let admin = app.admin();
    let mut feed = Sse::open(&app, &format!("/v1/stores/{a}/live"), &staff, None).await;

    // Act 1: orders in both stores.
    let in_a = app.draft_with_tea(&admin, a).await;
    let in_b = app.draft_with_tea(&admin, b).await;
    app.place(&admin, in_b).await.assert_status(200);
    app.place(&admin, in_a).await.assert_status(200);
    let seen = feed.take(3).await;

    // Assert 1: only store A's, in log order, and none of B's after them: a new order in A is
    // what comes next (its id is where the client leaves off).
    assert!(
        seen.iter().all(|m| m.data["order_id"] == in_a.to_string()),
        "{seen:?}"
    );
    assert_eq!(types(&seen), ["OrderCreated", "ItemAdded", "OrderPlaced"]);
    let marker = app.create_order(&admin, a).await;
    let last = feed.assert_next_is_only(marker, 1, "OrderCreated").await.id;
    drop(feed);

    // Act 2: changes while the client is away, then it comes back with its last id.
    app.confirm_internally(in_a).await;
    app.confirm_internally(in_b).await;
    app.set_status(&admin, in_a, "preparing")
        .await
        .assert_status(200);
    let mut feed = Sse::open(&app, &format!("/v1/stores/{a}/live"), &staff, Some(&last)).await;
    let missed = feed.take(2).await;
    let another = app.draft_with_tea(&admin, a).await;
    let live = feed.take(2).await;

    // Assert 2: exactly the missed events of store A, then live ones, then only the next change.
    assert_eq!(types(&missed), ["OrderConfirmed", "PreparationStarted"]);
    assert!(missed
        .iter()
        .all(|m| m.data["order_id"] == in_a.to_string()));
    assert_eq!(types(&live), ["OrderCreated", "ItemAdded"]);
    assert!(live
        .iter()
        .all(|m| m.data["order_id"] == another.to_string()));
    app.place(&admin, another).await.assert_status(200);
    feed.assert_next_is_only(another, 3, "OrderPlaced").await;
}

#[tokio::test]
async fn the_websocket_feed_sends_the_same_messages_as_frames() {
    // Arrange
    let app = spawn_app().await;
    let store = app.store_with_products().await;
    let alice = app.customer("alice");
    let order = app.draft_with_tea(&alice, store).await;
    let mut socket = app.order_socket(&alice, order).await;
    let mut next = async || loop {
        let frame = tokio::time::timeout(PATIENCE, socket.next())
            .await
            .expect("a frame in time")
            .expect("socket open")
            .expect("frame");
        if let tungstenite::Message::Text(text) = frame {
            return serde_json::from_str::<Value>(&text).expect("JSON frame");
        }
    };

    // Act + assert
    let snapshot = next().await;
    assert_eq!(snapshot["type"], "snapshot");
    assert_eq!(snapshot["id"], "2");
    assert_eq!(snapshot["data"]["status"], "draft");
    app.place(&alice, order).await.assert_status(200);
    let placed = next().await;
    assert_eq!(placed["type"], "event");
    assert_eq!(placed["id"], "3");
    assert_eq!(placed["data"]["event_type"], "OrderPlaced");
    socket.close(None).await.expect("close");
}

/// The next `n` messages of a feed opened in-process.
async fn receive(feed: &mut mpsc::Receiver<LiveMessage>, n: usize) -> Vec<LiveMessage> {
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        let m = tokio::time::timeout(PATIENCE, feed.recv())
            .await
            .expect("a message in time")
            .expect("the feed stays open");
        out.push(m);
    }
    out
}

#[tokio::test]
async fn feeds_whose_client_stops_reading_catch_up_from_the_database_without_a_gap() {
    // Arrange: a broadcast one batch deep; an order feed and a store feed, opened in-process,
    // whose messages nobody takes yet (a feed holds 64, then it stops taking batches).
    let app = spawn_app_with(|s| s.live.broadcast_batches = 1).await;
    let store = app.store_with_products().await;
    app.add_products(store, 30).await;
    let admin = app.admin();
    let order = app.draft_with_tea(&admin, store).await;
    let live = &app.app_state.live;
    let mut order_feed = live
        .order(order, OrderStart::After(2))
        .await
        .expect("order feed");
    let mut store_feed = live.store(store, None).await.expect("store feed");

    // Act: 90 changes, each its own batch (the next waits until the follower passed the last
    // one: under load it would otherwise read several per batch, and the broadcast might not
    // overflow), then the client reads again.
    let position = async || {
        sample(
            &app.metrics_page().await,
            "log_reader_position{reader=\"live\"}",
        )
    };
    let changes = 90_i64;
    for i in 0..changes {
        let before = position().await;
        app.add_item(&admin, order, &format!("P{}", i % 30 + 1), 1)
            .await
            .assert_status(200);
        let deadline = std::time::Instant::now() + PATIENCE;
        while position().await == before {
            assert!(
                std::time::Instant::now() < deadline,
                "the follower did not move"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
    let n = usize::try_from(changes).expect("count");
    let of_order = receive(&mut order_feed, n).await;
    let of_store = receive(&mut store_feed, n).await;
    let page = app.metrics_page().await;
    for feed in ["order", "store"] {
        let lagged = format!("live_catch_ups_total{{feed=\"{feed}\",reason=\"lagged\"}}");
        assert!(sample(&page, &lagged) >= 1, "{feed} fell behind: {page}");
    }

    // Assert: both carry every version once, in order.
    let versions = |ms: &[LiveMessage]| -> Vec<i64> {
        ms.iter()
            .map(|m| m.data["version"].as_i64().expect("version"))
            .collect()
    };
    assert_eq!(versions(&of_order), (3..=changes + 2).collect::<Vec<_>>());
    assert_eq!(versions(&of_store), (3..=changes + 2).collect::<Vec<_>>());
    let ids: Vec<&str> = of_order.iter().map(|m| m.id.as_str()).collect();
    assert_eq!(ids.first(), Some(&"3"));

    // Assert: nothing more queued behind them (no repeat from the catch-ups): one more change
    // is what comes next on both, and then nothing.
    app.add_item(&admin, order, "P1", 1)
        .await
        .assert_status(200);
    assert_eq!(versions(&receive(&mut order_feed, 1).await), [changes + 3]);
    assert_eq!(versions(&receive(&mut store_feed, 1).await), [changes + 3]);
    assert!(
        order_feed.try_recv().is_err(),
        "nothing more on the order feed"
    );
    assert!(
        store_feed.try_recv().is_err(),
        "nothing more on the store feed"
    );
}

#[tokio::test]
async fn feeds_opened_just_after_a_change_do_not_send_it_again() {
    // Arrange: an order whose version 2 committed while an older transaction still ran. A
    // reader starting "now" stands before every transaction still running (`end_of_log`), so
    // the follower the first feed starts lies before version 2 and reads it once the older
    // transaction ends: the broadcast carries an event the feeds opened after.
    let app = spawn_app().await;
    let store = app.store_with_products().await;
    let admin = app.admin();
    let order = app.create_order(&admin, store).await;
    let mut held = app.pool.begin().await.expect("transaction");
    sqlx::query("select pg_current_xact_id()")
        .execute(&mut *held)
        .await
        .expect("a transaction id");
    app.add_item(&admin, order, "TEA", 1)
        .await
        .assert_status(200);
    let live = &app.app_state.live;
    let mut store_feed = live.store(store, None).await.expect("store feed");
    let mut order_feed = live
        .order(order, OrderStart::After(2))
        .await
        .expect("order feed");
    held.rollback().await.expect("rolled back");

    // Act: the next change.
    app.add_item(&admin, order, "TEA", 1)
        .await
        .assert_status(200);

    // Assert: the first message of each feed is that change, not version 2 again.
    let first = |ms: Vec<LiveMessage>| ms[0].data["version"].as_i64().expect("version");
    assert_eq!(first(receive(&mut store_feed, 1).await), 3, "store feed");
    assert_eq!(first(receive(&mut order_feed, 1).await), 3, "order feed");
}

#[tokio::test]
async fn a_resume_id_the_order_never_reached_gets_the_snapshot() {
    // Arrange: an order at version 2, and a client with an id from elsewhere.
    let app = spawn_app().await;
    let store = app.store_with_products().await;
    let alice = app.customer("alice");
    let order = app.draft_with_tea(&alice, store).await;

    // Act
    let mut feed = Sse::open(
        &app,
        &format!("/v1/orders/{order}/live"),
        &alice,
        Some("41"),
    )
    .await;
    let first = feed.next().await;

    // Assert: the order as it stands, whose id is what to resume with from now on; no event up
    // to it follows (the next change is what comes next).
    assert_eq!(first.kind, "snapshot");
    assert_eq!(first.id, "2");
    assert_eq!(first.data["version"], 2);
    app.add_item(&alice, order, "CAKE", 1)
        .await
        .assert_status(200);
    feed.assert_next_is_only(order, 3, "ItemAdded").await;
}

#[tokio::test]
async fn a_feed_ends_when_the_token_that_opened_it_expires() {
    // Arrange: a token good for two more seconds.
    let app = spawn_app().await;
    let store = app.store_with_products().await;
    let alice = app.customer("alice");
    let order = app.draft_with_tea(&alice, store).await;
    let brief = app.token_valid_for("alice", &[Role::Customer], &[], Duration::from_secs(2));
    let mut feed = Sse::open(&app, &format!("/v1/orders/{order}/live"), &brief, None).await;
    assert_eq!(feed.next().await.kind, "snapshot");
    let opened = std::time::Instant::now();

    // Act: read until the service ends the stream.
    let ended = tokio::time::timeout(PATIENCE, async {
        while feed.response.chunk().await.expect("readable").is_some() {}
    })
    .await;

    // Assert: it ended, at the expiry rather than at once.
    assert!(ended.is_ok(), "the feed outlived its token");
    assert!(
        opened.elapsed() >= Duration::from_millis(500),
        "{:?}",
        opened.elapsed()
    );
}

#[tokio::test]
async fn a_closed_feed_is_counted_and_its_follower_stops() {
    let app = spawn_app().await;
    let store = app.store_with_products().await;
    let admin = app.admin();
    let order = app.draft_with_tea(&admin, store).await;
    let metrics = async || app.metrics_page().await;

    let mut feed = Sse::open(&app, &format!("/v1/orders/{order}/live"), &admin, None).await;
    feed.next().await;
    // The follower takes its connection on its own time (the snapshot comes from the feed, not
    // from it): wait until it says it is active.
    let deadline = std::time::Instant::now() + PATIENCE;
    let open = loop {
        let page = metrics().await;
        if sample(&page, "log_reader_active{reader=\"live\"}") == 1 {
            break page;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the follower never became active: {page}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(
        sample(&open, "live_feeds_open{feed=\"order\"}"),
        1,
        "{open}"
    );
    drop(feed);

    // The service notices a client gone when writing to it: keep the order changing.
    let deadline = std::time::Instant::now() + PATIENCE;
    loop {
        app.add_item(&admin, order, "TEA", 1)
            .await
            .assert_status(200);
        let now = metrics().await;
        if sample(&now, "live_feeds_open{feed=\"order\"}") == 0
            && sample(&now, "log_reader_active{reader=\"live\"}") == 0
        {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{now}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn live_feeds_refuse_like_the_rest_of_the_api() {
    let app = spawn_app().await;
    let a = app.store_with_products().await;
    let b = app.store_with_products().await;
    let alice = app.customer("alice");
    let order = app.draft_with_tea(&alice, a).await;
    let order_feed = format!("/v1/orders/{order}/live");
    let store_feed = format!("/v1/stores/{a}/live");
    let sse: &[(&str, &str)] = &[("accept", "text/event-stream")];

    let cases = [
        Case::new(&order_feed, None, sse, 401, "token-missing"),
        Case::new(
            &order_feed,
            None,
            &[
                ("accept", "text/event-stream"),
                ("authorization", "Bearer nope"),
            ],
            401,
            "token-malformed",
        ),
        Case::new(
            &order_feed,
            Some(app.customer("bob")),
            sse,
            404,
            "order-not-found",
        ),
        Case::new(
            &order_feed,
            Some(app.customer("bob")),
            &[("accept", "text/event-stream"), ("last-event-id", "1")],
            404,
            "order-not-found",
        ),
        Case::new(
            &format!("/v1/orders/{}/live", Uuid::new_v4()),
            Some(app.admin()),
            sse,
            404,
            "order-not-found",
        ),
        Case::new(
            "/v1/orders/not-a-uuid/live",
            Some(app.admin()),
            sse,
            400,
            "invalid-parameter",
        ),
        Case::new(
            &order_feed,
            Some(alice.clone()),
            &[("accept", "text/event-stream"), ("last-event-id", "three")],
            400,
            "invalid-parameter",
        ),
        Case::new(
            &order_feed,
            Some(alice.clone()),
            &[("accept", "application/json")],
            406,
            "not-acceptable",
        ),
        Case::new(&store_feed, Some(alice.clone()), sse, 403, "forbidden"),
        Case::new(&store_feed, Some(app.staff(b)), sse, 403, "forbidden"),
        Case::new(
            &format!("/v1/stores/{}/live", Uuid::new_v4()),
            Some(app.admin()),
            sse,
            404,
            "store-not-found",
        ),
        Case::new(
            &store_feed,
            Some(app.staff(a)),
            &[("accept", "text/event-stream"), ("last-event-id", "12")],
            400,
            "invalid-parameter",
        ),
    ];
    for c in cases {
        let answer = app
            .send(Method::GET, &c.path, c.who.as_ref(), None, c.headers)
            .await;
        assert_eq!(
            answer.status.as_u16(),
            c.status,
            "{} {:?}: {}",
            c.path,
            c.headers,
            answer.text
        );
        answer.assert_problem(c.status, c.slug);
    }
    let missing = app.send(Method::GET, &order_feed, None, None, sse).await;
    assert!(missing.header("www-authenticate").is_some());
    let post = app
        .send(Method::POST, &order_feed, Some(&alice), None, sse)
        .await;
    post.assert_problem(405, "method-not-allowed");

    // The token may come in the query (browsers' EventSource cannot send headers).
    let response = app
        .client
        .get(format!(
            "{}{order_feed}?access_token={}",
            app.address, alice.token
        ))
        .header("accept", "text/event-stream")
        .send()
        .await
        .expect("sent");
    assert_eq!(response.status(), 200);
}

/// One refused request: where, by whom, with which headers, and the answer expected.
struct Case<'a> {
    path: String,
    who: Option<Who>,
    headers: &'a [(&'a str, &'a str)],
    status: u16,
    slug: &'static str,
}

impl<'a> Case<'a> {
    fn new(
        path: &str,
        who: Option<Who>,
        headers: &'a [(&'a str, &'a str)],
        status: u16,
        slug: &'static str,
    ) -> Self {
        Self {
            path: path.to_owned(),
            who,
            headers,
            status,
            slug,
        }
    }
}

/// The `status` and `previous_status` of each event message.
fn statuses(messages: &[Value]) -> Vec<(&str, &str)> {
    messages
        .iter()
        .map(|m| {
            (
                m["status"].as_str().expect("status"),
                m["previous_status"].as_str().unwrap_or("-"),
            )
        })
        .collect()
}

#[tokio::test]
async fn every_live_message_says_the_status_the_order_is_in_and_was_in() {
    // Arrange: an order followed over SSE and over a WebSocket, and its store's feed.
    let app = spawn_app().await;
    let store = app.store_with_products().await;
    let alice = app.customer("alice");
    let staff = app.staff(store);
    let order = app.draft_with_tea(&alice, store).await;
    let mut sse = Sse::open(&app, &format!("/v1/orders/{order}/live"), &alice, None).await;
    assert_eq!(sse.next().await.data["status"], "draft", "the snapshot");
    let mut socket = app.order_socket(&alice, order).await;
    let mut frames = Vec::new();
    let mut store_feed = Sse::open(&app, &format!("/v1/stores/{store}/live"), &staff, None).await;

    // Act: the order's way to the customer's hands.
    app.place(&alice, order).await.assert_status(200);
    app.confirm_internally(order).await;
    for status in ["preparing", "ready_for_pickup", "picked_up"] {
        app.set_status(&staff, order, status)
            .await
            .assert_status(200);
    }

    // Assert: each feed says where the order went and where it came from.
    let expected = [
        ("placed", "draft"),
        ("confirmed", "placed"),
        ("preparing", "confirmed"),
        ("ready_for_pickup", "preparing"),
        ("picked_up", "ready_for_pickup"),
    ];
    let over_sse: Vec<Value> = sse.take(5).await.into_iter().map(|m| m.data).collect();
    assert_eq!(statuses(&over_sse), expected);
    while frames.len() < 6 {
        let frame = tokio::time::timeout(PATIENCE, socket.next())
            .await
            .expect("a frame in time")
            .expect("socket open")
            .expect("frame");
        if let tungstenite::Message::Text(text) = frame {
            frames.push(serde_json::from_str::<Value>(&text).expect("JSON frame"));
        }
    }
    assert_eq!(frames[0]["type"], "snapshot");
    let over_ws: Vec<Value> = frames[1..].iter().map(|f| f["data"].clone()).collect();
    assert_eq!(statuses(&over_ws), expected);
    // the store feed (opened after the draft was made) says the same
    let on_store: Vec<Value> = store_feed
        .take(5)
        .await
        .into_iter()
        .map(|m| m.data)
        .collect();
    assert!(on_store.iter().all(|d| d["order_id"] == order.to_string()));
    assert_eq!(statuses(&on_store), expected);

    // A feed resumed from the database after the fact says the same.
    let mut resumed = Sse::open(&app, &format!("/v1/orders/{order}/live"), &alice, Some("2")).await;
    let replayed: Vec<Value> = resumed.take(5).await.into_iter().map(|m| m.data).collect();
    assert_eq!(statuses(&replayed), expected);

    // A cancelled order's feed ends in cancelled.
    let other = app.draft_with_tea(&alice, store).await;
    let mut cancelled = Sse::open(&app, &format!("/v1/orders/{other}/live"), &alice, None).await;
    cancelled.next().await;
    app.place(&alice, other).await.assert_status(200);
    app.post(
        &format!("/v1/orders/{other}/cancel"),
        &alice,
        json!({"reason": "changed my mind"}),
    )
    .await
    .assert_status(200);
    let last: Vec<Value> = cancelled
        .take(2)
        .await
        .into_iter()
        .map(|m| m.data)
        .collect();
    assert_eq!(
        statuses(&last),
        [("placed", "draft"), ("cancelled", "placed")]
    );
}
