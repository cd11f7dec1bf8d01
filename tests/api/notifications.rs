//! Email notifications (DESIGN §13) delivered to a real SMTP server on loopback (aiosmtpd, a
//! Python child process: `ORDER_TEST_PYTHON`), by `order-service serve` child processes that
//! are SIGKILLed along the way, while the server refuses the first attempts with 451.

use std::collections::{HashMap, HashSet};
use std::process::Stdio;
use std::time::{Duration, SystemTime};

use order_domain::{
    Carrier, CreateOrder, Currency, CustomerId, Email, NewItem, OrderCommand, OrderId, OrderStatus,
    Quantity, Reason, Sku, StoreId, TrackingNumber,
};
use rand::{Rng as _, SeedableRng as _};
use secrecy::ExposeSecret as _;
use serde_json::{json, Value};
use tokio::io::AsyncBufReadExt as _;
use uuid::Uuid;

use crate::helpers::{sample, spawn_app_with, ServeChild, TestApp};
use crate::poll::eventually;

/// An SMTP server (aiosmtpd) that refuses the first `refuse` messages with 451, refuses
/// recipients named `bounce...` with 550, takes 5 s over messages to `slow...` (saying so when
/// it starts), and prints every message it accepts as a JSON line.
const SMTP_SINK: &str = r#"
import asyncio, email, json, sys, time
from email import policy
from aiosmtpd.smtp import SMTP

refuse = int(sys.argv[1])
refused = [0]

def out(record, at=None):
    record["time"] = at or time.time()
    print(json.dumps(record), flush=True)

class Handler:
    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if address.startswith("bounce"):
            return "550 5.1.1 no such mailbox"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        if any(r.startswith("slow") for r in envelope.rcpt_tos):
            out({"slow": envelope.rcpt_tos})
            await asyncio.sleep(5)
        if refused[0] < refuse:
            refused[0] += 1
            out({"refused": refused[0]})
            return "451 4.3.0 try again later"
        # Accept at once and parse afterwards, as a spooling MTA does (RFC 1047): the time
        # between the end of the data and the reply is the window in which a sender killed
        # after sending it cannot know it was accepted.
        accepted = time.time()
        content, rcpt_tos = envelope.content, list(envelope.rcpt_tos)
        asyncio.get_running_loop().call_soon(record, content, rcpt_tos, accepted)
        return "250 OK"

def record(content, rcpt_tos, accepted):
    msg = email.message_from_bytes(content, policy=policy.default)
    text, html = msg.get_body(("plain",)), msg.get_body(("html",))
    out({
        "message_id": msg["Message-ID"],
        "subject": msg["Subject"],
        "from": msg["From"],
        "to": rcpt_tos,
        "text": text.get_content() if text else None,
        "html": html.get_content() if html else None,
    }, accepted)

async def main():
    # the kernel picks the port as it binds it: no other process can take it in between
    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: SMTP(Handler(), hostname="sink.test"), "127.0.0.1", 0)
    out({"ready": server.sockets[0].getsockname()[1]})
    await loop.run_in_executor(None, sys.stdin.read)
    server.close()

asyncio.run(main())
"#;

/// A received email, as the sink printed it.
#[derive(Debug, Clone)]
struct Received {
    message_id: String,
    subject: String,
    from: String,
    to: Vec<String>,
    text: String,
    html: String,
    /// When the server accepted it (seconds since the epoch).
    time: f64,
}

/// The SMTP server as a child process; what it printed, read as it comes.
struct SmtpSink {
    _child: tokio::process::Child,
    port: u16,
    lines: tokio::sync::mpsc::UnboundedReceiver<Value>,
    received: Vec<Received>,
    refused: usize,
    /// Slow deliveries started.
    slow: usize,
}

impl SmtpSink {
    async fn start(refuse: usize) -> Self {
        let python = std::env::var("ORDER_TEST_PYTHON").unwrap_or_else(|_| "python3".to_owned());
        let mut child = tokio::process::Command::new(&python)
            .args(["-c", SMTP_SINK, &refuse.to_string()])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| {
                panic!("{python}: {e} (set ORDER_TEST_PYTHON to a python with aiosmtpd)")
            });
        let stdout = child.stdout.take().expect("stdout");
        let (tx, lines) = tokio::sync::mpsc::unbounded_channel();
        tokio::spawn(async move {
            let mut reader = tokio::io::BufReader::new(stdout).lines();
            while let Ok(Some(line)) = reader.next_line().await {
                let json = serde_json::from_str(&line).unwrap_or(Value::String(line));
                if tx.send(json).is_err() {
                    break;
                }
            }
        });
        let mut lines = lines;
        let ready = tokio::time::timeout(Duration::from_secs(20), lines.recv())
            .await
            .expect("aiosmtpd started in time (is it installed? see .ci/run)")
            .expect("aiosmtpd printed its ready line");
        let port = ready["ready"]
            .as_u64()
            .and_then(|p| u16::try_from(p).ok())
            .unwrap_or_else(|| panic!("a ready line with the port: {ready}"));
        Self {
            _child: child,
            port,
            lines,
            received: Vec::new(),
            refused: 0,
            slow: 0,
        }
    }

    fn url(&self) -> String {
        format!("smtp://127.0.0.1:{}", self.port)
    }

    fn note(&mut self, line: &Value) {
        if line.get("refused").is_some() {
            self.refused += 1;
        } else if line.get("slow").is_some() {
            self.slow += 1;
        } else if let Some(id) = line["message_id"].as_str() {
            let text = |k: &str| line[k].as_str().unwrap_or_default().to_owned();
            self.received.push(Received {
                message_id: id.to_owned(),
                subject: text("subject"),
                from: text("from"),
                to: line["to"]
                    .as_array()
                    .map(|a| {
                        a.iter()
                            .filter_map(|v| v.as_str().map(str::to_owned))
                            .collect()
                    })
                    .unwrap_or_default(),
                text: text("text"),
                html: text("html"),
                time: line["time"].as_f64().unwrap_or_default(),
            });
        } else {
            panic!("unexpected line from the SMTP sink: {line}");
        }
    }

    /// Reads what the server printed until `done` holds (true) or `timeout` passes (false).
    async fn wait_until(&mut self, timeout: Duration, done: impl Fn(&Self) -> bool) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            while let Ok(line) = self.lines.try_recv() {
                self.note(&line);
            }
            if done(self) {
                return true;
            }
            match tokio::time::timeout_at(deadline, self.lines.recv()).await {
                Ok(Some(line)) => self.note(&line),
                Ok(None) => panic!("the SMTP sink exited"),
                Err(_) => return false,
            }
        }
    }

    /// Distinct Message-IDs received.
    fn distinct(&self) -> HashSet<&str> {
        self.received
            .iter()
            .map(|r| r.message_id.as_str())
            .collect()
    }
}

/// The environment of a notifying service: fast retries and polls.
fn notify_env(sink: &SmtpSink) -> Vec<(&'static str, String)> {
    vec![
        ("APP__NOTIFY__SMTP_URL", sink.url()),
        ("APP__NOTIFY__FROM", "orders@shop.example".to_owned()),
        ("APP__NOTIFY__RETRY_FIRST_MS", "20".to_owned()),
        ("APP__NOTIFY__RETRY_MAX_MS", "200".to_owned()),
        ("APP__NOTIFY__POLL_INTERVAL_MS", "20".to_owned()),
        ("APP__NOTIFY__SEND_TIMEOUT_MS", "10000".to_owned()),
    ]
}

/// `order-service serve` running only the email notifications, on the test's database, on a
/// port of its choosing.
struct Notifying {
    serve: ServeChild,
    port: u16,
}

impl Notifying {
    async fn spawn(app: &TestApp, sink: &SmtpSink) -> Self {
        let url = app
            .settings
            .database_url
            .as_ref()
            .expect("url")
            .expose_secret()
            .to_owned();
        let mut env = vec![
            ("DATABASE_URL", url),
            (
                "APP__AUTH__JWT_SECRET",
                "notify-test-secret-long-enough-for-hs256-xxxxxxxx".to_owned(),
            ),
            ("APP__WORKERS__SAGAS", "false".to_owned()),
            ("APP__WORKERS__PROJECTOR", "false".to_owned()),
            // the reader's, a claim, the gauge and the lag: the shared server's connections
            // are for every test
            ("APP__DATABASE__MAX_CONNECTIONS", "6".to_owned()),
        ];
        env.extend(notify_env(sink));
        let mut serve = ServeChild::spawn(env);
        let port = serve.port().await;
        let this = Self { serve, port };
        eventually(
            "order-service did not start",
            Duration::from_secs(20),
            || async {
                this.metrics()
                    .await
                    .filter(|m| m.contains("notifications_pending"))
            },
        )
        .await;
        this
    }

    async fn metrics(&self) -> Option<String> {
        let resp = reqwest::get(format!("http://127.0.0.1:{}/metrics", self.port))
            .await
            .ok()?;
        resp.text().await.ok()
    }

    /// SIGKILL: no shutdown, no cleanup.
    async fn kill(self) {
        self.serve.kill().await;
    }
}

/// Waits until the notifier has its checkpoint (it starts at the end of the log the first
/// time): events appended from then on are notified.
async fn wait_for_notifier(app: &TestApp) {
    eventually(
        "the notifier did not start",
        Duration::from_secs(20),
        || async {
            let exists: bool = sqlx::query_scalar(
                "select exists (select from reader_checkpoints where name = 'notifier')",
            )
            .fetch_one(&app.pool)
            .await
            .expect("checkpoint");
            exists.then_some(())
        },
    )
    .await;
}

/// One order of the run: its email address (every sixth has none) and where it ends.
async fn run_order(app: &TestApp, store: Uuid, i: usize, id: Uuid) {
    let email =
        (i % 6 != 5).then(|| Email::parse(format!("customer{i}@example.com")).expect("email"));
    app.command(
        id,
        OrderCommand::CreateOrder(Box::new(CreateOrder {
            order_id: OrderId::from_uuid(id),
            customer_id: CustomerId::parse(format!("customer-{i}")).expect("customer"),
            store_id: StoreId::from_uuid(store),
            currency: Currency::parse("EUR").expect("eur"),
            customer_email: email,
            shipping_address: None,
            items: vec![NewItem {
                sku: Sku::parse("TEA").expect("sku"),
                quantity: Quantity::parse(1).expect("qty"),
            }],
        })),
    )
    .await;
    app.command(id, OrderCommand::PlaceOrder).await;
    if i % 5 == 0 {
        app.reject_internally(id, "out of stock").await;
        return;
    }
    app.command(id, OrderCommand::ConfirmOrder).await;
    let status = |status| OrderCommand::ChangeStatus { status, note: None };
    if i % 5 == 3 {
        let reason = Reason::parse("changed mind").expect("reason");
        app.command(id, OrderCommand::CancelOrder { reason }).await;
        return;
    }
    app.command(id, status(OrderStatus::Preparing)).await;
    if i % 5 == 2 {
        app.command(
            id,
            OrderCommand::ShipOrder {
                carrier: Carrier::parse("DHL").expect("carrier"),
                tracking_number: TrackingNumber::parse(format!("TRK{i}")).expect("tracking"),
                note: None,
            },
        )
        .await;
        app.command(id, status(OrderStatus::Delivered)).await;
    } else {
        app.command(id, status(OrderStatus::ReadyForPickup)).await;
        app.command(id, status(OrderStatus::PickedUp)).await;
    }
}

/// The notifiable events of orders with an address: event id → (order id, event type).
async fn notifiable_events(app: &TestApp) -> HashMap<Uuid, (Uuid, String)> {
    let rows: Vec<(Uuid, String, String)> = sqlx::query_as(
        "select e.event_id, e.aggregate_id, e.event_type
           from events e
           join events c on c.aggregate_type = 'Order' and c.aggregate_id = e.aggregate_id
                        and c.sequence = 1 and c.payload ? 'customer_email'
          where e.aggregate_type = 'Order'
            and e.event_type in ('OrderConfirmed', 'OrderRejected', 'OrderReadyForPickup',
                                 'OrderPickedUp', 'OrderShipped', 'OrderDelivered',
                                 'OrderCancelled')",
    )
    .fetch_all(&app.pool)
    .await
    .expect("events");
    rows.into_iter()
        .map(|(event, order, kind)| (event, (order.parse().expect("uuid"), kind)))
        .collect()
}

/// The status words an email of `event_type` says.
fn words(event_type: &str) -> &'static str {
    match event_type {
        "OrderConfirmed" => "confirmed",
        "OrderRejected" => "rejected",
        "OrderReadyForPickup" => "ready for pickup",
        "OrderPickedUp" => "picked up",
        "OrderShipped" => "shipped",
        "OrderDelivered" => "delivered",
        "OrderCancelled" => "cancelled",
        other => panic!("not notifiable: {other}"),
    }
}

/// The event id in a Message-ID `<event_id@domain>`.
fn event_of(message_id: &str) -> Uuid {
    message_id
        .trim_start_matches('<')
        .split('@')
        .next()
        .and_then(|id| id.parse().ok())
        .unwrap_or_else(|| panic!("Message-ID {message_id:?} is not <event id@domain>"))
}

/// Whether `received` holds exactly one email per event of `want` (by Message-ID), but for
/// second copies accepted around a kill (at `kills`) and again after it: their number, or what
/// is wrong.
fn once_each(received: &[Received], want: &HashSet<Uuid>, kills: &[f64]) -> Result<usize, String> {
    let got: HashSet<Uuid> = received.iter().map(|r| event_of(&r.message_id)).collect();
    if &got != want {
        return Err(format!(
            "{} emails for other events, {} events without one",
            got.difference(want).count(),
            want.difference(&got).count()
        ));
    }
    let mut copies: HashMap<&str, Vec<f64>> = HashMap::new();
    for r in received {
        copies.entry(&r.message_id).or_default().push(r.time);
    }
    let mut duplicates = 0;
    for (id, times) in copies.iter().filter(|(_, t)| t.len() > 1) {
        // The server may finish accepting a message whose sender was killed mid-conversation
        // (it stamps the time of its reply): up to KILL_SLACK after the kill.
        let straddles = |k: &f64| times[0] < *k + KILL_SLACK && *k < times[1];
        if times.len() > 2 || !kills.iter().any(straddles) {
            return Err(format!(
                "{id} arrived {} times: {times:?} (kills {kills:?})",
                times.len()
            ));
        }
        duplicates += 1;
    }
    if duplicates > kills.len() {
        return Err(format!(
            "{duplicates} second copies for {} kills",
            kills.len()
        ));
    }
    Ok(duplicates)
}

#[test]
fn counter_test_the_count_catches_a_lost_email_and_a_second_copy_without_a_kill() {
    let email = |event: u128, time: f64| Received {
        message_id: format!("<{}@shop.example>", Uuid::from_u128(event)),
        subject: String::new(),
        from: String::new(),
        to: Vec::new(),
        text: String::new(),
        html: String::new(),
        time,
    };
    let want: HashSet<Uuid> = [1, 2].into_iter().map(Uuid::from_u128).collect();
    let both = [email(1, 10.0), email(2, 11.0)];
    assert_eq!(once_each(&both, &want, &[]), Ok(0));
    // lost
    assert!(once_each(&both[..1], &want, &[]).is_err());
    // a second copy: fine across a kill, not without one
    let twice = [email(1, 10.0), email(2, 11.0), email(1, 12.0)];
    assert_eq!(once_each(&twice, &want, &[10.2]), Ok(1));
    assert!(once_each(&twice, &want, &[]).is_err());
    assert!(once_each(&twice, &want, &[12.5]).is_err());
}

const ORDERS: usize = 200;
const ROUNDS: usize = 5;
const REFUSALS: usize = 10;
/// Seconds after a kill in which the server may still accept what the killed sender sent.
const KILL_SLACK: f64 = 0.5;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_notifiable_event_is_emailed_once_through_kills_and_refusals() {
    // Arrange: an SMTP server that refuses the first attempts; the notifier in a process.
    let app = spawn_app_with(|s| s.workers.projector = false).await;
    let store = app.store_with_products().await;
    let mut sink = SmtpSink::start(REFUSALS).await;
    let mut process = Notifying::spawn(&app, &sink).await;
    wait_for_notifier(&app).await;

    // Act: 200 orders in rounds; after each but the last, once the process has delivered
    // some of the round's emails, SIGKILL it at a random moment and start another.
    let mut rng = rand::rngs::StdRng::seed_from_u64(20);
    let mut ids = Vec::new();
    let mut kills = Vec::new();
    let mut pending_at_kills = Vec::new();
    let mut first_retried = None;
    for round in 0..ROUNDS {
        for i in round * ORDERS / ROUNDS..(round + 1) * ORDERS / ROUNDS {
            let id = Uuid::from_u128(rng.random());
            run_order(&app, store, i, id).await;
            ids.push(id);
        }
        if round + 1 == ROUNDS {
            break;
        }
        let before = sink.received.len();
        sink.wait_until(Duration::from_secs(30), |s| s.received.len() >= before + 10)
            .await;
        tokio::time::sleep(Duration::from_millis(rng.random_range(0..20))).await;
        if first_retried.is_none() {
            first_retried = process
                .metrics()
                .await
                .map(|m| sample(&m, "notifications_retried_total"));
        }
        process.kill().await;
        kills.push(
            SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .expect("clock")
                .as_secs_f64(),
        );
        let pending: i64 =
            sqlx::query_scalar("select count(*) from notifications where status = 'pending'")
                .fetch_one(&app.pool)
                .await
                .expect("pending");
        pending_at_kills.push(pending);
        process = Notifying::spawn(&app, &sink).await;
    }
    let expected = notifiable_events(&app).await;
    let all_in = sink
        .wait_until(Duration::from_secs(120), |s| {
            s.distinct().len() >= expected.len()
        })
        .await;
    let metrics = eventually(
        "notifications_pending stays above 0",
        Duration::from_secs(10),
        || async {
            process
                .metrics()
                .await
                .filter(|m| sample(m, "notifications_pending") == 0)
        },
    )
    .await;
    process.kill().await;

    // Assert: the kills landed while emails waited, and the refusals were retried.
    assert!(
        all_in,
        "only {} of {} emails arrived",
        sink.distinct().len(),
        expected.len()
    );
    assert_eq!(kills.len(), ROUNDS - 1);
    assert!(
        pending_at_kills.iter().filter(|p| **p > 0).count() >= 2,
        "the kills came when nothing was pending: {pending_at_kills:?}"
    );
    assert_eq!(sink.refused, REFUSALS);
    assert!(
        first_retried.is_some_and(|r| r >= i64::try_from(REFUSALS).expect("small")),
        "the first process counted {first_retried:?} retries"
    );
    assert!(
        sample(&metrics, "notifications_sent_total") > 0,
        "{metrics}"
    );

    // Exactly the notifiable events of orders with an address, each once; a second copy only
    // where a kill fell between the server's acceptance and the sender's record of it.
    let want: HashSet<Uuid> = expected.keys().copied().collect();
    let duplicates = once_each(&sink.received, &want, &kills).unwrap_or_else(|e| panic!("{e}"));
    eprintln!(
        "notifications: {} emails received for {} notifiable events of {ORDERS} orders, \
         {duplicates} second copies, {} kills (pending then: {pending_at_kills:?}), {} refusals",
        sink.received.len(),
        want.len(),
        kills.len(),
        sink.refused,
    );
    let sent: i64 = sqlx::query_scalar("select count(*) from notifications where status = 'sent'")
        .fetch_one(&app.pool)
        .await
        .expect("count");
    assert_eq!(usize::try_from(sent).expect("count"), want.len());

    // Each email names its order, its status and, when shipped, carrier and tracking number;
    // it comes from the store's name, as text and HTML.
    let mut by_order: HashMap<Uuid, usize> = HashMap::new();
    for r in &sink.received {
        let (order, kind) = &expected[&event_of(&r.message_id)];
        *by_order.entry(*order).or_default() += 1;
        let i = ids
            .iter()
            .position(|id| id == order)
            .expect("an order of the run");
        assert_eq!(r.to, [format!("customer{i}@example.com")]);
        assert!(
            r.from.contains("Corner Café") && r.from.contains("orders@shop.example"),
            "{}",
            r.from
        );
        let short = &order.to_string()[..8];
        assert!(
            r.subject.contains(short) && r.subject.contains(words(kind)),
            "{}",
            r.subject
        );
        for body in [&r.text, &r.html] {
            assert!(
                body.contains(&order.to_string()) && body.contains(words(kind)),
                "{body}"
            );
            if kind == "OrderShipped" {
                assert!(
                    body.contains("DHL") && body.contains(&format!("TRK{i}")),
                    "{body}"
                );
            }
        }
    }
    // orders without an address got nothing
    for (i, id) in ids.iter().enumerate() {
        let got = by_order.get(id).copied().unwrap_or_default();
        if i % 6 == 5 {
            assert_eq!(got, 0, "order {i} has no address but got email");
        } else {
            assert!(got >= 2 || i % 5 == 0, "order {i} got {got} emails");
        }
    }
}

/// An order of `customer` with `email`, placed and confirmed.
async fn confirmed_order(app: &TestApp, store: Uuid, customer: &str, email: Option<&str>) -> Uuid {
    let id = Uuid::new_v4();
    app.command(
        id,
        OrderCommand::CreateOrder(Box::new(CreateOrder {
            order_id: OrderId::from_uuid(id),
            customer_id: CustomerId::parse(customer).expect("customer"),
            store_id: StoreId::from_uuid(store),
            currency: Currency::parse("EUR").expect("eur"),
            customer_email: email.map(|e| Email::parse(e).expect("email")),
            shipping_address: None,
            items: vec![NewItem {
                sku: Sku::parse("TEA").expect("sku"),
                quantity: Quantity::parse(1).expect("qty"),
            }],
        })),
    )
    .await;
    app.command(id, OrderCommand::PlaceOrder).await;
    app.command(id, OrderCommand::ConfirmOrder).await;
    id
}

/// The service with notifications to `sink`, its notifier started.
async fn notifying_app(sink: &SmtpSink) -> TestApp {
    notifying_app_with(sink, |_| {}).await
}

async fn notifying_app_with(
    sink: &SmtpSink,
    configure: impl FnOnce(&mut order_service::config::NotifySettings),
) -> TestApp {
    let env = notify_env(sink);
    let app = spawn_app_with(|s| {
        s.notify.smtp_url = Some(env[0].1.clone().into());
        s.notify.from.clone_from(&env[1].1);
        s.notify.poll_interval_ms = 20;
        configure(&mut s.notify);
    })
    .await;
    wait_for_notifier(&app).await;
    app
}

#[tokio::test]
async fn a_slow_smtp_server_holds_no_log_reader_back() {
    // Arrange: a delivery under way that the server takes 5 s over.
    let mut sink = SmtpSink::start(0).await;
    let app = notifying_app(&sink).await;
    let store = app.store_with_products().await;
    let slow = confirmed_order(&app, store, "slowpoke", Some("slow@example.com")).await;
    assert!(
        sink.wait_until(Duration::from_secs(20), |s| s.slow == 1)
            .await,
        "the slow delivery did not start"
    );

    // Act: another order while the sender's transaction is open.
    confirmed_order(&app, store, "other", None).await;

    // Assert: the projector applies it meanwhile; the slow email is still on its way.
    app.wait_for_projector(Duration::from_secs(3)).await;
    let status: String = sqlx::query_scalar("select status from notifications where order_id = $1")
        .bind(slow)
        .fetch_one(&app.pool)
        .await
        .expect("row");
    assert_eq!(
        status, "pending",
        "the delivery ended before the projector caught up"
    );
    assert!(
        sink.wait_until(Duration::from_secs(20), |s| s.received.len() == 1)
            .await
    );
}

#[tokio::test]
async fn a_refused_recipient_is_failed_and_listed_for_admins_only() {
    let sink = SmtpSink::start(0).await;
    let app = notifying_app(&sink).await;
    let store = app.store_with_products().await;
    let id = confirmed_order(&app, store, "bouncer", Some("bounce@example.com")).await;

    let admin = app.admin();
    let failed = eventually(
        "the refused email was not marked failed",
        Duration::from_secs(20),
        || async {
            let answer = app
                .get("/v1/admin/notifications?status=failed", &admin)
                .await;
            answer.assert_status(200);
            let items = &answer.body["items"];
            items
                .as_array()
                .is_some_and(|a| !a.is_empty())
                .then(|| items.clone())
        },
    )
    .await;
    let row = &failed[0];
    assert_eq!(row["order_id"], id.to_string());
    assert_eq!(row["kind"], "confirmed");
    assert_eq!(row["recipient"], "bounce@example.com");
    assert_eq!(
        row["attempts"], 1,
        "a permanent refusal is not retried: {row}"
    );
    assert!(
        row["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("550")),
        "{row}"
    );
    let metrics = app.metrics_page().await;
    assert_eq!(sample(&metrics, "notifications_failed_total"), 1);
    assert_eq!(sample(&metrics, "notifications_retried_total"), 0);

    // counter-test: the listing by another status does not show it; staff may not list
    let sent = app.get("/v1/admin/notifications?status=sent", &admin).await;
    assert_eq!(sent.body, serde_json::json!({"items": []}));
    app.get("/v1/admin/notifications", &app.staff(store))
        .await
        .assert_status(403);
    app.get("/v1/admin/notifications?status=lost", &admin)
        .await
        .assert_problem(400, "invalid-parameter");
}

/// The admin listing's notification of `order` once it has `status`.
async fn notification_of(app: &TestApp, order: Uuid, status: &str) -> Value {
    let admin = app.admin();
    let what = format!("no {status} notification of {order}");
    eventually(&what, Duration::from_secs(20), || async {
        let answer = app.get("/v1/admin/notifications", &admin).await;
        answer.assert_status(200);
        answer.body["items"].as_array().and_then(|items| {
            items
                .iter()
                .find(|n| n["order_id"] == order.to_string() && n["status"] == status)
                .cloned()
        })
    })
    .await
}

#[tokio::test]
async fn an_admin_sends_a_failed_notification_back_to_the_queue_and_it_is_delivered() {
    // Arrange: a server that refuses the first two attempts (451), and no retrying of a
    // transient failure (its window is 0 s): each refusal fails the email.
    let mut sink = SmtpSink::start(2).await;
    let app = notifying_app_with(&sink, |n| n.retry_for_secs = 0).await;
    let store = app.store_with_products().await;
    let order = confirmed_order(&app, store, "patient", Some("patient@example.com")).await;
    let failed = notification_of(&app, order, "failed").await;
    assert_eq!(failed["attempts"], 1, "{failed}");
    assert!(failed.get("requeued_at").is_none(), "{failed}");
    let id = failed["id"].as_i64().expect("id");
    let admin = app.admin();
    let retry = format!("/v1/admin/notifications/{id}/retry");

    // Act + assert: retried, refused again, failed again; retried again, delivered.
    let answer = app.post(&retry, &admin, json!({})).await;
    answer.assert_status(200);
    assert_eq!(answer.body["id"], id);
    assert_eq!(answer.body["status"], "pending");
    assert!(answer.body["requeued_at"].is_string(), "{}", answer.body);
    assert!(
        answer.body["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("451")),
        "the last error stays: {}",
        answer.body
    );
    let again = notification_of(&app, order, "failed").await;
    assert_eq!(again["attempts"], 2, "{again}");
    app.post(&retry, &admin, json!({})).await.assert_status(200);
    let sent = notification_of(&app, order, "sent").await;
    assert_eq!(sent["attempts"], 3, "{sent}");
    assert!(
        sink.wait_until(Duration::from_secs(20), |s| s.received.len() == 1)
            .await
    );
    assert_eq!(sink.refused, 2);
    assert_eq!(sink.received[0].to, ["patient@example.com"]);

    // A sent one is not sent again, an unknown one is not found, staff may not retry.
    app.post(&retry, &admin, json!({}))
        .await
        .assert_problem(409, "notification-not-failed");
    app.post("/v1/admin/notifications/999999999/retry", &admin, json!({}))
        .await
        .assert_problem(404, "notification-not-found");
    app.post("/v1/admin/notifications/0/retry", &admin, json!({}))
        .await
        .assert_problem(400, "invalid-parameter");
    app.post(&retry, &app.staff(store), json!({}))
        .await
        .assert_status(403);
    let metrics = app.metrics_page().await;
    assert!(
        metrics.contains(
            "http_requests_total{method=\"POST\",route=\"retryNotification\",status=\"200\"} 2"
        ),
        "{}",
        metrics
            .lines()
            .filter(|l| l.contains("retryNotification"))
            .collect::<Vec<_>>()
            .join("\n")
    );
}
