//! Hostile clients (DESIGN §10, issue "trust at the API"): each limit shown by what a client
//! that breaks it notices, with the well-behaved neighbour beside it.

use std::time::{Duration, Instant};

use futures::{SinkExt as _, StreamExt as _};
use reqwest::Method;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio_tungstenite::tungstenite::Message;
use uuid::Uuid;

use crate::helpers::{spawn_app, spawn_app_with, TestApp};

const WAIT: Duration = Duration::from_secs(10);

fn http_series(page: &str) -> usize {
    page.lines()
        .filter(|l| l.starts_with("http_") && !l.starts_with('#'))
        .count()
}

#[tokio::test]
async fn invented_methods_add_no_metric_series() {
    let app = spawn_app().await;
    let send = |method: String| {
        let method = Method::from_bytes(method.as_bytes()).expect("a token");
        app.raw(
            app.client
                .request(method, format!("{}/v1/orders", app.address)),
        )
    };
    // The first invented method opens the `other` series, the first scrape its own; no later
    // request adds any.
    send("INVENTED".into()).await;
    app.metrics_page().await;
    let before = app.metrics_page().await;
    for n in 0..1_000 {
        send(format!("X{}{n}", Uuid::new_v4().simple())).await;
    }
    let after = app.metrics_page().await;
    assert_eq!(http_series(&after), http_series(&before));
    // counter-test: they were counted, under `other`
    let other = |page: &str| {
        page.lines()
            .filter(|l| l.starts_with("http_requests_total{") && l.contains("method=\"other\""))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<i64>().ok())
            .sum::<i64>()
    };
    assert_eq!(other(&after) - other(&before), 1_000);
}

#[tokio::test]
async fn a_client_trickling_its_headers_is_cut_off_and_others_are_served() {
    let app = spawn_app_with(|s| s.http.header_timeout_ms = 1_000).await;
    let port = app.address.rsplit(':').next().expect("port").to_owned();
    let mut slow = tokio::net::TcpStream::connect(format!("127.0.0.1:{port}"))
        .await
        .expect("connect");
    let request =
        "GET /health/live HTTP/1.1\r\nHost: x\r\nX-Padding: ".to_owned() + &"a".repeat(200);
    let started = Instant::now();
    let mut cut = false;
    for byte in request.bytes() {
        if slow.write_all(&[byte]).await.is_err() {
            cut = true;
            break;
        }
        // one byte every 100 ms: the whole head would take 25 s
        let mut probe = [0u8; 1];
        if let Ok(Ok(0) | Err(_)) =
            tokio::time::timeout(Duration::from_millis(100), slow.read(&mut probe)).await
        {
            cut = true;
            break;
        }
    }
    assert!(
        cut,
        "a client sending its headers a byte at a time was never cut off"
    );
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "cut off only after {:?}",
        started.elapsed()
    );
    // A client that says what it has to say is served.
    app.get("/health/live", &app.admin())
        .await
        .assert_status(200);
}

#[tokio::test]
async fn a_large_websocket_frame_closes_the_feed_a_small_one_does_not() {
    let app = spawn_app().await;
    let store = app.store_with_products().await;
    let alice = app.customer("alice");
    let order = app.draft_with_tea(&alice, store).await;
    let mut socket = app.order_socket(&alice, order).await;
    assert!(next_text(&mut socket)
        .await
        .is_some_and(|t| t.contains("snapshot")));

    // A small message is ignored: the next change still arrives.
    socket
        .send(Message::Text("hello".into()))
        .await
        .expect("send");
    app.add_item(&alice, order, "CAKE", 1)
        .await
        .assert_status(200);
    assert!(
        next_text(&mut socket)
            .await
            .is_some_and(|t| t.contains("ItemAdded")),
        "the feed ended after a small message"
    );

    // A 1 MiB frame ends it.
    let _ = socket
        .send(Message::Binary(vec![0u8; 1 << 20].into()))
        .await;
    let ended = loop {
        match tokio::time::timeout(WAIT, socket.next()).await {
            Ok(None | Some(Err(_) | Ok(Message::Close(_)))) => break true,
            Ok(Some(Ok(_))) => {}
            Err(_) => break false,
        }
    };
    assert!(ended, "the feed survived a 1 MiB frame");
}

/// The next text frame, skipping pings; `None` when the socket ended or stayed silent.
async fn next_text<S>(socket: &mut S) -> Option<String>
where
    S: futures::Stream<Item = Result<Message, tokio_tungstenite::tungstenite::Error>> + Unpin,
{
    loop {
        match tokio::time::timeout(WAIT, socket.next()).await {
            Ok(Some(Ok(Message::Text(t)))) => return Some(t.to_string()),
            Ok(Some(Ok(Message::Ping(_) | Message::Pong(_)))) => {}
            _ => return None,
        }
    }
}

/// Opens an SSE order feed as `who` and returns its response once the headers arrived.
async fn open_feed(app: &TestApp, who: &crate::helpers::Who, order: Uuid) -> reqwest::Response {
    app.client
        .get(format!("{}/v1/orders/{order}/live", app.address))
        .bearer_auth(&who.token)
        .header("accept", "text/event-stream")
        .send()
        .await
        .expect("feed")
}

#[tokio::test]
async fn feeds_beyond_the_cap_are_refused_until_one_closes() {
    let app = spawn_app_with(|s| s.limits.feeds_per_subject = 2).await;
    let store = app.store_with_products().await;
    let alice = app.customer("alice");
    let order = app.draft_with_tea(&alice, store).await;

    let first = open_feed(&app, &alice, order).await;
    let second = open_feed(&app, &alice, order).await;
    assert_eq!(
        (first.status().as_u16(), second.status().as_u16()),
        (200, 200)
    );
    let third = open_feed(&app, &alice, order).await;
    assert_eq!(third.status().as_u16(), 429);
    assert_eq!(third.headers()["content-type"], "application/problem+json");
    let problem: serde_json::Value = third.json().await.expect("problem");
    assert_eq!(problem["type"], "/problems/too-many-feeds");
    // another caller is not affected
    let bob = app.customer("bob");
    let bobs = app.draft_with_tea(&bob, store).await;
    assert_eq!(open_feed(&app, &bob, bobs).await.status(), 200);

    // Closing one gives its place back (the service notices the client went away).
    drop(first);
    let deadline = Instant::now() + WAIT;
    loop {
        let again = open_feed(&app, &alice, order).await;
        if again.status() == 200 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the closed feed's place never came back"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    drop(second);
}

#[tokio::test]
async fn commands_beyond_the_rate_get_429_with_retry_after() {
    let app = spawn_app_with(|s| {
        s.limits.commands_per_second = 1;
        s.limits.command_burst = 10;
    })
    .await;
    // (the admin's store and products: 5 commands of its own budget)
    let store = app.store_with_products().await;
    let alice = app.customer("alice");

    // Twenty at once: the burst goes through, the rest wait their turn.
    let started = Instant::now();
    let answers = futures::future::join_all((0..20).map(|_| {
        app.raw(
            app.client
                .post(format!("{}/v1/orders", app.address))
                .bearer_auth(&alice.token)
                .json(&serde_json::json!({ "store_id": store })),
        )
    }))
    .await;
    let elapsed = started.elapsed().as_secs();
    let created = answers.iter().filter(|a| a.status == 201).count();
    let refused: Vec<_> = answers.iter().filter(|a| a.status == 429).collect();
    assert_eq!(created + refused.len(), 20, "only 201 and 429");
    // the burst, plus one per second the requests took to arrive
    assert!(
        (10..=10 + usize::try_from(elapsed).expect("secs") + 1).contains(&created),
        "{created} created in {elapsed} s"
    );
    for answer in &refused {
        answer.assert_problem(429, "rate-limited");
        let retry_after: u64 = answer
            .header("retry-after")
            .and_then(|v| v.parse().ok())
            .expect("Retry-After in seconds");
        assert!(
            (1..=10).contains(&retry_after),
            "Retry-After: {retry_after}"
        );
    }
    // nothing of a refused command was stored: one order per 201
    let orders: i64 =
        sqlx::query_scalar("select count(*) from events where event_type = 'OrderCreated'")
            .fetch_one(&app.pool)
            .await
            .expect("count");
    assert_eq!(orders, i64::try_from(created).expect("count"));
    // another caller has its own budget
    let bob = app.customer("bob");
    app.create_order(&bob, store).await;
}

#[tokio::test]
async fn a_store_feed_resume_id_older_than_the_window_is_refused() {
    // A window of zero seconds: even the message just sent is too old to resume from.
    let app = spawn_app_with(|s| s.live.store_resume_max_age_secs = 0).await;
    let store = app.store_with_products().await;
    let staff = app.staff(store);
    let (id, _) = first_store_message(&app, store, &staff).await;
    let resumed = app
        .client
        .get(format!("{}/v1/stores/{store}/live?after={id}", app.address))
        .bearer_auth(&staff.token)
        .header("accept", "text/event-stream")
        .send()
        .await
        .expect("answer");
    assert_eq!(resumed.status().as_u16(), 410);
}

/// Opens `store`'s feed from now, makes a change there, and returns the id of the message it
/// brought, with the order.
async fn first_store_message(
    app: &TestApp,
    store: Uuid,
    staff: &crate::helpers::Who,
) -> (String, Uuid) {
    let mut feed = app
        .client
        .get(format!("{}/v1/stores/{store}/live", app.address))
        .bearer_auth(&staff.token)
        .header("accept", "text/event-stream")
        .send()
        .await
        .expect("feed");
    let order = app.draft_with_tea(&app.customer("alice"), store).await;
    let mut text = String::new();
    loop {
        let chunk = tokio::time::timeout(WAIT, feed.chunk())
            .await
            .expect("an event")
            .expect("bytes")
            .expect("open");
        text.push_str(&String::from_utf8_lossy(&chunk));
        if let Some(id) = text
            .lines()
            .find_map(|l| l.strip_prefix("id: ").or_else(|| l.strip_prefix("id:")))
        {
            return (id.trim().to_owned(), order);
        }
    }
}

#[tokio::test]
async fn a_body_that_does_not_arrive_in_time_gets_408() {
    let app = spawn_app_with(|s| s.limits.body_timeout_ms = 500).await;
    let port = app.address.rsplit(':').next().expect("port").to_owned();
    let mut slow = tokio::net::TcpStream::connect(format!("127.0.0.1:{port}"))
        .await
        .expect("connect");
    let token = app.customer("alice").token;
    let head = format!(
        "POST /v1/orders HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n\
         Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{{\"store_id\""
    );
    slow.write_all(head.as_bytes()).await.expect("head");
    // ...and the rest of the body never comes
    let mut answer = Vec::new();
    tokio::time::timeout(WAIT, async {
        let mut buf = [0u8; 4096];
        loop {
            match slow.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    answer.extend_from_slice(&buf[..n]);
                    if answer.windows(4).any(|w| w == b"\r\n\r\n") {
                        break;
                    }
                }
            }
        }
    })
    .await
    .expect("an answer before the client gave up");
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("application/problem+json"), "{answer}");
}

#[tokio::test]
async fn a_connection_that_says_nothing_is_closed() {
    let app = spawn_app_with(|s| s.http.idle_timeout_ms = 1_000).await;
    let port = app.address.rsplit(':').next().expect("port").to_owned();
    // Silent, and stalled inside the HTTP/2 preface: neither ever reaches a request head.
    for opening in [&b""[..], &b"PRI * HTTP/2.0"[..]] {
        let mut silent = tokio::net::TcpStream::connect(format!("127.0.0.1:{port}"))
            .await
            .expect("connect");
        silent.write_all(opening).await.expect("write");
        let mut buf = [0u8; 16];
        let closed = tokio::time::timeout(WAIT, silent.read(&mut buf)).await;
        assert!(
            matches!(closed, Ok(Ok(0) | Err(_))),
            "a connection that said {:?} stayed open",
            String::from_utf8_lossy(opening)
        );
    }
    // counter-test: a client that speaks is served
    app.get("/health/live", &app.admin())
        .await
        .assert_status(200);
}

#[tokio::test]
async fn a_store_feed_resumes_only_from_a_recent_message() {
    let app = spawn_app().await;
    let store = app.store_with_products().await;
    let staff = app.staff(store);
    let feed = |after: &str| {
        app.client
            .get(format!(
                "{}/v1/stores/{store}/live?after={after}",
                app.address
            ))
            .bearer_auth(&staff.token)
            .header("accept", "text/event-stream")
            .send()
    };
    // From the beginning of the log: refused, nothing read.
    let from_zero = feed("0.0").await.expect("answer");
    assert_eq!(from_zero.status(), 410);
    let problem: serde_json::Value = from_zero.json().await.expect("problem");
    assert_eq!(problem["type"], "/problems/resume-too-old");

    // From a message it just sent: served.
    let (id, order) = first_store_message(&app, store, &staff).await;
    let resumed = feed(&id).await.expect("answer");
    assert_eq!(resumed.status(), 200, "order {order}");
}

#[tokio::test]
async fn a_body_over_the_limit_sent_whole_by_httpx_gets_its_413() {
    let app = spawn_app().await;
    let python = std::env::var("ORDER_TEST_PYTHON").unwrap_or_else(|_| "python3".to_owned());
    let script = r#"
import json, sys, httpx
url, token = sys.argv[1], sys.argv[2]
body = json.dumps({"store_id": "00000000-0000-0000-0000-000000000001", "padding": "x" * (3 * 1024 * 1024)})
r = httpx.post(url, content=body, headers={"authorization": "Bearer " + token, "content-type": "application/json"}, timeout=30)
print(json.dumps({"status": r.status_code, "content_type": r.headers.get("content-type"), "body": r.json()}))
"#;
    let output = tokio::process::Command::new(&python)
        .args(["-c", script])
        .arg(format!("{}/v1/orders", app.address))
        .arg(&app.customer("alice").token)
        .output()
        .await
        .unwrap_or_else(|e| panic!("{python}: {e} (set ORDER_TEST_PYTHON to a python with httpx)"));
    assert!(
        output.status.success(),
        "httpx failed (a reset connection?): {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let answer: serde_json::Value =
        serde_json::from_slice(&output.stdout).expect("the script's JSON");
    assert_eq!(answer["status"], 413, "{answer}");
    assert_eq!(answer["content_type"], "application/problem+json");
    assert_eq!(answer["body"]["type"], "/problems/body-too-large");
    // and the service goes on
    app.get("/health/live", &app.admin())
        .await
        .assert_status(200);
}

#[tokio::test]
async fn only_a_short_plain_request_id_is_kept() {
    let app = spawn_app().await;
    let store = app.store_with_products().await;
    let alice = app.customer("alice");
    let create = |request_id: String| {
        app.raw(
            app.client
                .post(format!("{}/v1/orders", app.address))
                .bearer_auth(&alice.token)
                .header("x-request-id", request_id)
                .json(&serde_json::json!({ "store_id": store })),
        )
    };
    let kept = create("checkout-42.retry:1".into()).await;
    kept.assert_status(201);
    assert_eq!(kept.header("x-request-id"), Some("checkout-42.retry:1"));

    for hostile in ["x".repeat(300), "a b".into(), "<script>".into()] {
        let answer = create(hostile.clone()).await;
        answer.assert_status(201);
        let given = answer.header("x-request-id").expect("a request id");
        assert_ne!(given, hostile);
        assert!(given.len() <= 64, "{given}");
        // what the event keeps is the replacement, not the client's
        let order = answer.body["id"].as_str().expect("id");
        let events = app.get(&format!("/v1/orders/{order}/events"), &alice).await;
        assert_eq!(
            events.body["items"][0]["metadata"]["causation_id"], given,
            "{}",
            events.text
        );
    }
}
