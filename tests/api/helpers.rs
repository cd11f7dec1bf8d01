//! `spawn_app()`: the real service on a random port, against real PostgreSQL, one fresh
//! database per test. PostgreSQL comes from `DATABASE_URL` when set, else the local server on
//! 127.0.0.1:5432, else the embedded dev stack.
//!
//! Each database is set up as production's is (`deploy/postgres/`): the roles once per run,
//! the database's grants, the migrations as `order_migrator`, and the service on
//! `order_runtime`. `app.pool` is the service's (the runtime role); `app.owner_pool` the
//! migrator's, for what only the schema's owner may do (a trigger simulating an outage).

use std::time::Duration;

use order_service::config::Settings;
use order_service::http::auth::{Role, TokenMinter};
use order_service::startup::Application;
use reqwest::{Method, StatusCode};
use secrecy::SecretString;
use serde_json::{json, Value};
use sqlx::{Connection as _, PgPool};
use tokio::sync::OnceCell;
use uuid::Uuid;

pub const SECRET: &str = "test-secret-that-is-long-enough-for-hs256-0123456789";
const DB_PREFIX: &str = "ostest_";

/// Where test databases are created: an admin URL (to the `postgres` database) and a builder
/// for a database URL.
struct Server {
    admin_url: String,
    _stack: Option<order_service::devstack::DevStack>,
}

static SERVER: OnceCell<Server> = OnceCell::const_new();

async fn server() -> &'static Server {
    SERVER
        .get_or_init(|| async {
            order_service::telemetry::init_for_tests();
            let (admin_url, stack) = if let Ok(url) = std::env::var("DATABASE_URL") {
                (url, None)
            } else {
                let local =
                    "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable".to_owned();
                if sqlx::PgConnection::connect(&local).await.is_ok() {
                    (local, None)
                } else {
                    let dir = std::env::temp_dir().join("order-service-test-stack");
                    let stack = order_service::devstack::DevStack::start(&dir)
                        .await
                        .expect("no PostgreSQL reachable and the embedded one failed to start");
                    let url = stack.database_url().replace("/orders?", "/postgres?");
                    (url, Some(stack))
                }
            };
            drop_stale_databases(&admin_url).await;
            create_roles(&admin_url).await;
            Server {
                admin_url,
                _stack: stack,
            }
        })
        .await
}

/// Removes test databases left by earlier runs (older than an hour), so they do not pile up.
async fn drop_stale_databases(admin_url: &str) {
    let Ok(mut conn) = sqlx::PgConnection::connect(admin_url).await else {
        return;
    };
    let stale: Vec<String> = sqlx::query_scalar(
        "select datname from pg_database d
         where datname like 'ostest\\_%'
           and (pg_stat_file('base/' || d.oid || '/PG_VERSION')).modification < now() - interval '1 hour'",
    )
    .fetch_all(&mut conn)
    .await
    .unwrap_or_default();
    for name in stale {
        let _ = sqlx::query(&format!("drop database if exists \"{name}\" with (force)"))
            .execute(&mut conn)
            .await;
    }
}

/// The service's roles, cluster-wide (`deploy/postgres/roles.sql`), once per run. Runs of other
/// test binaries or worktrees may apply it at the same moment: an advisory lock (in the admin
/// database, which they share) puts them one after the other, as two `alter role` of the same
/// role at once fail with "tuple concurrently updated".
async fn create_roles(admin_url: &str) {
    let mut admin = sqlx::PgConnection::connect(admin_url)
        .await
        .expect("admin connection");
    sqlx::query("select pg_advisory_lock(hashtext('order-service deploy/postgres/roles.sql'))")
        .execute(&mut admin)
        .await
        .expect("roles lock");
    sqlx::raw_sql(include_str!("../../deploy/postgres/roles.sql"))
        .execute(&mut admin)
        .await
        .expect("deploy/postgres/roles.sql");
    // A server that asks for passwords: the roles get the one the run was given.
    if let Some(password) = role_password() {
        for role in [MIGRATOR, RUNTIME, ANALYST] {
            sqlx::query(&format!(
                "alter role {role} password '{}'",
                password.replace('\'', "''")
            ))
            .execute(&mut admin)
            .await
            .expect("role password");
        }
    }
    admin.close().await.expect("roles unlocked");
}

/// The schema's owner, which runs the migrations (`deploy/postgres/roles.sql`).
pub const MIGRATOR: &str = "order_migrator";
/// The service's role.
pub const RUNTIME: &str = "order_runtime";
/// The analysts' role: reads `read.*` only.
pub const ANALYST: &str = "order_analyst";

/// The password of the roles, for a server that asks for one (`ORDER_TEST_ROLE_PASSWORD`);
/// none on a server that trusts local connections, as 127.0.0.1:5432 here does.
fn role_password() -> Option<String> {
    std::env::var("ORDER_TEST_ROLE_PASSWORD").ok()
}

fn with_database(url: &str, db: &str) -> String {
    let mut parsed = url::Url::parse(url).expect("database url");
    parsed.set_path(&format!("/{db}"));
    parsed.to_string()
}

/// `url` with `role` (and its password, if the run has one) as the user.
pub fn as_role(url: &str, role: &str) -> String {
    let mut parsed = url::Url::parse(url).expect("database url");
    parsed.set_username(role).expect("a user in the url");
    parsed
        .set_password(role_password().as_deref())
        .expect("a password in the url");
    parsed.to_string()
}

/// A small pool on the test database `url` as `role`.
pub async fn pool_as(url: &str, role: &str) -> PgPool {
    sqlx::postgres::PgPoolOptions::new()
        .max_connections(4)
        .connect(&as_role(url, role))
        .await
        .unwrap_or_else(|e| panic!("connecting as {role}: {e}"))
}

/// A running service and typed helpers to drive it as a storefront would.
pub struct TestApp {
    pub address: String,
    pub client: reqwest::Client,
    /// The service's pool: the runtime role.
    pub pool: PgPool,
    /// The schema owner's (the migrator role): for what only it may do, as creating a trigger.
    pub owner_pool: PgPool,
    pub app_state: order_service::state::AppState,
    /// The settings this instance runs with (a replica reuses them).
    pub settings: Settings,
    /// The participant simulator, when the saga machinery runs (`spawn_saga_app`).
    pub simulator: Option<order_service::simulator::Simulator>,
    minter: TokenMinter,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    /// The serving task: done once the service stopped with every worker.
    running: Option<tokio::task::JoinHandle<()>>,
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        // Streams of a saga test's prefix are its own: remove them.
        let prefix = &self.settings.nats.prefix;
        if let (Some(url), true) = (self.settings.nats_url.clone(), self.settings.workers.sagas) {
            if !prefix.is_empty() {
                let names: Vec<String> = order_service::nats::STREAMS
                    .iter()
                    .map(|b| order_service::nats::Nats::stream_name_for(prefix, b))
                    .collect();
                delete_streams(url.to_string(), names);
            }
        }
    }
}

/// Deletes `names` on the server at `url` before returning. On a thread of its own: `Drop`
/// cannot await, and a task spawned on the test's runtime dies with it before it runs (the
/// streams then stayed on the shared server, each holding its `max_bytes` reservation).
fn delete_streams(url: String, names: Vec<String>) {
    let _ = std::thread::spawn(move || {
        let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        else {
            return;
        };
        runtime.block_on(async move {
            let wait = Duration::from_secs(3);
            let Ok(Ok(client)) = tokio::time::timeout(wait, async_nats::connect(url)).await else {
                return;
            };
            let js = async_nats::jetstream::new(client);
            for name in names {
                let _ = tokio::time::timeout(wait, js.delete_stream(name)).await;
            }
        });
    })
    .join();
}

/// Stream bounds for tests: JetStream reserves each stream's `max_bytes` on the server, so the
/// production defaults (1.6 GiB a deployment) times every concurrent test would exhaust the
/// shared server's storage. A test needs little.
pub fn test_streams() -> order_service::config::StreamsSettings {
    let bounds = order_service::config::StreamLimits {
        max_age_secs: 3_600,
        max_bytes: 8 << 20,
    };
    order_service::config::StreamsSettings {
        order_events: bounds,
        saga_commands: bounds,
        saga_replies: bounds,
        dead_letters: bounds,
        replicas: 1,
    }
}

/// The NATS settings of a test with its own `prefix`: default credentials, small streams.
pub fn test_nats_settings(prefix: &str) -> order_service::config::NatsSettings {
    order_service::config::NatsSettings {
        prefix: prefix.to_owned(),
        streams: test_streams(),
        ..Settings::default().nats
    }
}

static STALE_STREAMS_DROPPED: OnceCell<()> = OnceCell::const_new();

/// Removes test streams left on the shared server by runs that were killed (older than an hour),
/// once per test binary, as `drop_stale_databases` does for databases.
async fn drop_stale_streams(url: &str) {
    use futures::TryStreamExt as _;
    STALE_STREAMS_DROPPED
        .get_or_init(|| async {
            let Ok(client) = async_nats::connect(url).await else {
                return;
            };
            let js = async_nats::jetstream::new(client);
            let names: Vec<String> = js.stream_names().try_collect().await.unwrap_or_default();
            let cutoff = chrono::Utc::now().timestamp() - 3_600;
            for name in names.into_iter().filter(|n| is_test_stream(n)) {
                let Ok(mut stream) = js.get_stream(&name).await else {
                    continue;
                };
                if stream
                    .info()
                    .await
                    .is_ok_and(|i| i.created.unix_timestamp() < cutoff)
                {
                    let _ = js.delete_stream(&name).await;
                }
            }
        })
        .await;
}

/// A stream of a test prefix: `T`, `SIMTEST` or `CRASH`, 32 hex digits, `_`.
fn is_test_stream(name: &str) -> bool {
    ["T", "SIMTEST", "CRASH"].iter().any(|p| {
        name.strip_prefix(p).is_some_and(|rest| {
            rest.len() > 33
                && rest.as_bytes()[32] == b'_'
                && rest[..32].bytes().all(|b| b.is_ascii_hexdigit())
        })
    })
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(|_| {}).await
}

pub async fn spawn_app_with(configure: impl FnOnce(&mut Settings)) -> TestApp {
    // Boxed: its future is large, and every test awaits this one.
    let (url, owner_pool) = Box::pin(fresh_database()).await;
    let mut settings = Settings {
        database_url: Some(SecretString::from(as_role(&url, RUNTIME))),
        ..Settings::default()
    };
    settings.http.addr = "127.0.0.1:0".parse().expect("addr");
    settings.auth.jwt_secret = Some(SecretString::from(SECRET.to_owned()));
    // Migrated above, by the migrator: the runtime role could not.
    settings.database.migrate_on_start = false;
    settings.database.max_connections = 8;
    // No load balancer to wait for: a stopped test app closes its listener at once.
    settings.http.shutdown_delay_ms = 0;
    // Tests drive many commands and feeds as one caller; the tests of the limits set their own.
    settings.limits.commands_per_second = 100_000;
    settings.limits.command_burst = 100_000;
    settings.limits.feeds_per_subject = 1_000;
    // The saga machinery needs NATS; tests that exercise it turn it on (`spawn_saga_app`).
    settings.workers.sagas = false;
    configure(&mut settings);
    Box::pin(start(settings, owner_pool)).await
}

/// A new database set up as production's: the database's grants (`deploy/postgres/`), then the
/// migrations as the migrator. Returns its URL (as the admin) and the migrator's pool.
async fn fresh_database() -> (String, PgPool) {
    let server = server().await;
    let db = format!("{DB_PREFIX}{}", Uuid::new_v4().simple());
    let mut admin = sqlx::PgConnection::connect(&server.admin_url)
        .await
        .expect("admin connection");
    sqlx::query(&format!("create database \"{db}\""))
        .execute(&mut admin)
        .await
        .expect("create database");
    let url = with_database(&server.admin_url, &db);
    let mut on_db = sqlx::PgConnection::connect(&url)
        .await
        .expect("connection to the test database");
    sqlx::raw_sql(include_str!("../../deploy/postgres/database.sql"))
        .execute(&mut on_db)
        .await
        .expect("deploy/postgres/database.sql");
    on_db.close().await.ok();
    let owner_pool = pool_as(&url, MIGRATOR).await;
    order_service::store::migrate(&owner_pool)
        .await
        .expect("migrations as the migrator");
    (url, owner_pool)
}

/// Runs the service with `settings` on a random port.
async fn start(settings: Settings, owner_pool: PgPool) -> TestApp {
    // Boxed: the application's build is a large future, and every test awaits it.
    let app = Box::pin(Application::build(&settings))
        .await
        .expect("application builds");
    let port = app.port();
    let pool = app.state().pool.clone();
    let app_state = app.state().clone();
    let (tx, rx) = tokio::sync::oneshot::channel();
    let running = tokio::spawn(async move {
        let _ = app
            .run_until_stopped(async {
                let _ = rx.await;
            })
            .await;
    });
    let minter = TokenMinter::new(
        &SecretString::from(SECRET.to_owned()),
        &settings.auth.issuer,
        &settings.auth.audience,
    )
    .expect("minter");
    TestApp {
        address: format!("http://127.0.0.1:{port}"),
        client: reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .expect("client"),
        pool,
        owner_pool,
        app_state,
        settings,
        simulator: None,
        minter,
        shutdown: Some(tx),
        running: Some(running),
    }
}

/// The service with its saga machinery on the local NATS (`NATS_URL`, else 127.0.0.1:4222)
/// under a subject prefix of its own, and a participant simulator configured by `sim`.
pub async fn spawn_saga_app(
    sim: order_service::simulator::SimulatorConfig,
    configure: impl FnOnce(&mut Settings),
) -> TestApp {
    let mut app = spawn_saga_app_without_simulator(configure).await;
    let url = app
        .settings
        .nats_url
        .clone()
        .expect("a saga app has a NATS url");
    let nats = order_service::nats::Nats::connect(&url, &app.settings.nats)
        .await
        .expect("nats");
    app.simulator = Some(
        order_service::simulator::Simulator::start(nats, sim)
            .await
            .expect("simulator"),
    );
    app
}

/// The service with its saga machinery on the local NATS (`NATS_URL`, else 127.0.0.1:4222)
/// under a subject prefix of its own (`app.settings.nats.prefix`), and no participant: the
/// test answers the saga's commands itself.
pub async fn spawn_saga_app_without_simulator(configure: impl FnOnce(&mut Settings)) -> TestApp {
    let url = std::env::var("NATS_URL").unwrap_or_else(|_| "nats://127.0.0.1:4222".to_owned());
    drop_stale_streams(&url).await;
    let prefix = format!("t{}.", Uuid::new_v4().simple());
    spawn_app_with(|s| {
        s.nats_url = Some(url.into());
        s.nats = test_nats_settings(&prefix);
        s.workers.sagas = true;
        s.simulator.enabled = Some(false);
        s.saga.step_timeout_ms = 2_000;
        configure(s);
    })
    .await
}

impl TestApp {
    /// The WebSocket of `order`'s live feed, opened as `who` (the token in the query string,
    /// as a browser does).
    pub async fn order_socket(
        &self,
        who: &Who,
        order: Uuid,
    ) -> tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>
    {
        let url = format!(
            "{}/v1/orders/{order}/live?access_token={}",
            self.address.replace("http://", "ws://"),
            who.token
        );
        tokio_tungstenite::connect_async(url)
            .await
            .expect("WebSocket upgrade")
            .0
    }

    /// Stops the service and waits until it stopped, every worker with it (dropping it only
    /// asks it to stop).
    pub async fn stop(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(running) = self.running.take() {
            let _ = running.await;
        }
    }

    /// A second service process on the same database, as another replica behind the load
    /// balancer would be.
    pub async fn replica(&self) -> TestApp {
        Box::pin(start(self.settings.clone(), self.owner_pool.clone())).await
    }
}

/// A response, read whole.
#[derive(Debug)]
pub struct Answer {
    pub status: StatusCode,
    pub headers: reqwest::header::HeaderMap,
    pub body: Value,
    pub text: String,
}

impl Answer {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// Asserts a problem+json answer with this status and problem type slug.
    #[track_caller]
    pub fn assert_problem(&self, status: u16, slug: &str) {
        assert_eq!(self.status.as_u16(), status, "status; body: {}", self.text);
        assert_eq!(
            self.header("content-type"),
            Some("application/problem+json"),
            "content type; body: {}",
            self.text
        );
        assert_eq!(
            self.body["type"],
            format!("/problems/{slug}"),
            "problem type; body: {}",
            self.text
        );
        assert_eq!(self.body["status"], status, "status field");
        assert!(
            self.body["title"].as_str().is_some_and(|t| !t.is_empty()),
            "title"
        );
        assert!(
            self.body["detail"].as_str().is_some_and(|t| !t.is_empty()),
            "detail"
        );
        assert!(
            self.header("x-request-id").is_some(),
            "x-request-id on an error"
        );
    }

    #[track_caller]
    pub fn assert_status(&self, status: u16) {
        assert_eq!(self.status.as_u16(), status, "status; body: {}", self.text);
    }
}

/// A principal for tests.
#[derive(Debug, Clone)]
pub struct Who {
    pub token: String,
    pub sub: String,
}

impl TestApp {
    pub fn token(&self, sub: &str, roles: &[Role], stores: &[Uuid]) -> Who {
        self.token_valid_for(sub, roles, stores, Duration::from_secs(600))
    }
    pub fn token_valid_for(
        &self,
        sub: &str,
        roles: &[Role],
        stores: &[Uuid],
        ttl: Duration,
    ) -> Who {
        Who {
            token: self.minter.mint(sub, roles, stores, ttl).expect("mint"),
            sub: sub.to_owned(),
        }
    }
    pub fn admin(&self) -> Who {
        self.token("admin-1", &[Role::Admin], &[])
    }
    pub fn customer(&self, sub: &str) -> Who {
        self.token(sub, &[Role::Customer], &[])
    }
    pub fn staff(&self, store: Uuid) -> Who {
        self.token("staff-1", &[Role::Staff], &[store])
    }
    pub fn service(&self) -> Who {
        self.token("storefront", &[Role::Service], &[])
    }
    pub fn analyst(&self) -> Who {
        self.token("analyst-1", &[Role::Analyst], &[])
    }

    /// Sends a request; `body` JSON when given.
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        who: Option<&Who>,
        body: Option<Value>,
        headers: &[(&str, &str)],
    ) -> Answer {
        let mut req = self
            .client
            .request(method, format!("{}{path}", self.address));
        if let Some(who) = who {
            req = req.bearer_auth(&who.token);
        }
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        if let Some(body) = body {
            req = req.json(&body);
        }
        let resp = req.send().await.expect("request sent");
        read(resp).await
    }

    pub async fn raw(&self, req: reqwest::RequestBuilder) -> Answer {
        read(req.send().await.expect("request sent")).await
    }

    /// The service's `/metrics` page (asked without a token, as a scraper asks).
    pub async fn metrics_page(&self) -> String {
        let page = self
            .raw(self.client.get(format!("{}/metrics", self.address)))
            .await;
        page.assert_status(200);
        page.text
    }

    pub async fn get(&self, path: &str, who: &Who) -> Answer {
        self.send(Method::GET, path, Some(who), None, &[]).await
    }
    pub async fn post(&self, path: &str, who: &Who, body: Value) -> Answer {
        self.send(Method::POST, path, Some(who), Some(body), &[])
            .await
    }

    /// A store with products TEA (450), CAKE (300), OLD (inactive) and USD-IMPORT (priced in USD).
    pub async fn store_with_products(&self) -> Uuid {
        let admin = self.admin();
        let store = self
            .post(
                "/v1/stores",
                &admin,
                json!({"name": "Corner Café", "currency": "EUR"}),
            )
            .await;
        store.assert_status(201);
        let id: Uuid = store.body["id"]
            .as_str()
            .expect("store id")
            .parse()
            .expect("uuid");
        for (sku, name, price, extra) in [
            ("TEA", "Green tea", 450, json!({})),
            ("CAKE", "Cheesecake", 300, json!({})),
            ("OLD", "Retired", 100, json!({"active": false})),
            ("USD-IMPORT", "Import", 100, json!({"currency": "USD"})),
        ] {
            let mut body = json!({"sku": sku, "name": name, "unit_price_minor": price});
            body.as_object_mut()
                .expect("object")
                .extend(extra.as_object().expect("object").clone());
            self.post(&format!("/v1/stores/{id}/products"), &admin, body)
                .await
                .assert_status(201);
        }
        id
    }

    /// Adds `n` products P1..Pn priced 100 each.
    pub async fn add_products(&self, store: Uuid, n: usize) {
        let admin = self.admin();
        for i in 1..=n {
            self.post(&format!("/v1/stores/{store}/products"), &admin, json!({"sku": format!("P{i}"), "name": format!("Product {i}"), "unit_price_minor": 100}))
                .await
                .assert_status(201);
        }
    }

    /// Changes a product as an admin (`PATCH /v1/stores/{store}/products/{sku}`).
    pub async fn update_product(&self, store: Uuid, sku: &str, changes: Value) -> Answer {
        self.send(
            Method::PATCH,
            &format!("/v1/stores/{store}/products/{sku}"),
            Some(&self.admin()),
            Some(changes),
            &[],
        )
        .await
    }

    /// Creates a draft for customer `who` in `store`; returns its id.
    pub async fn create_order(&self, who: &Who, store: Uuid) -> Uuid {
        self.create_order_for(who, store, &who.sub).await
    }

    /// Creates a draft by `who` for `customer` in `store`; returns its id.
    pub async fn create_order_for(&self, who: &Who, store: Uuid, customer: &str) -> Uuid {
        let answer = self
            .post(
                "/v1/orders",
                who,
                json!({"store_id": store, "customer_id": customer}),
            )
            .await;
        answer.assert_status(201);
        answer.body["id"]
            .as_str()
            .expect("order id")
            .parse()
            .expect("uuid")
    }

    /// A draft of `who` in `store` with one `TEA` on it (version 2); returns its id.
    pub async fn draft_with_tea(&self, who: &Who, store: Uuid) -> Uuid {
        let order = self.create_order(who, store).await;
        self.add_item(who, order, "TEA", 1).await.assert_status(200);
        order
    }

    pub async fn add_item(&self, who: &Who, order: Uuid, sku: &str, quantity: i64) -> Answer {
        self.post(
            &format!("/v1/orders/{order}/items"),
            who,
            json!({"sku": sku, "quantity": quantity}),
        )
        .await
    }

    pub async fn place(&self, who: &Who, order: Uuid) -> Answer {
        self.post(&format!("/v1/orders/{order}/place"), who, json!({}))
            .await
    }

    pub async fn set_status(&self, who: &Who, order: Uuid, status: &str) -> Answer {
        self.post(
            &format!("/v1/orders/{order}/status"),
            who,
            json!({"status": status}),
        )
        .await
    }

    /// Confirms a placed order the way the saga does: through the internal command.
    pub async fn confirm_internally(&self, order: Uuid) {
        use order_domain::{OrderCommand, OrderId};
        use order_service::store::orders::{CommandRequest, EventMetadata};
        self.app_state
            .orders
            .execute::<()>(
                CommandRequest {
                    order_id: OrderId::from_uuid(order),
                    command: OrderCommand::ConfirmOrder,
                    mark: None,
                    expected_version: None,
                    metadata: EventMetadata::default(),
                },
                |_| Ok(()),
            )
            .await
            .expect("confirm");
    }

    /// Rows in the event store.
    pub async fn event_count(&self) -> i64 {
        sqlx::query_scalar("select count(*) from events")
            .fetch_one(&self.pool)
            .await
            .expect("count")
    }

    /// Event types of one order, in sequence order.
    pub async fn event_types(&self, order: Uuid) -> Vec<String> {
        sqlx::query_scalar(
            "select event_type from events where aggregate_id = $1 order by sequence",
        )
        .bind(order.to_string())
        .fetch_all(&self.pool)
        .await
        .expect("events")
    }
}

async fn read(resp: reqwest::Response) -> Answer {
    let status = resp.status();
    let headers = resp.headers().clone();
    let text = resp.text().await.unwrap_or_default();
    let body = serde_json::from_str(&text).unwrap_or(Value::Null);
    Answer {
        status,
        headers,
        body,
        text,
    }
}

/// The value of the sample `name` (with its labels) on a metrics page; 0 when absent.
pub fn sample(page: &str, name: &str) -> i64 {
    page.lines()
        .find(|l| l.starts_with(name))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// Read models as rows of JSON, table by table, in a stable order: for comparing a live
/// projection with a rebuilt one.
pub async fn read_models(pool: &PgPool) -> Vec<(String, Vec<Value>)> {
    let tables: Vec<String> = sqlx::query_scalar(
        "select tablename::text from pg_tables where schemaname = 'read' order by 1",
    )
    .fetch_all(pool)
    .await
    .expect("tables");
    let mut out = Vec::new();
    for t in tables {
        let rows: Vec<Value> = sqlx::query_scalar(&format!(
            "select to_jsonb(t) from read.{t} t order by to_jsonb(t)::text"
        ))
        .fetch_all(pool)
        .await
        .expect("rows");
        out.push((t, rows));
    }
    out
}

impl TestApp {
    /// Waits until the projector's checkpoint covers the whole log (at most `timeout`).
    pub async fn wait_for_projector(&self, timeout: Duration) {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            let behind: bool = sqlx::query_scalar(
                "select exists(select 1 from events e
                  where not exists (select 1 from reader_checkpoints c
                                     where c.name = 'projector'
                                       and (e.tx_id, e.position) <= (c.tx_id, c.position)))",
            )
            .fetch_one(&self.pool)
            .await
            .expect("checkpoint");
            if !behind {
                return;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "the projector did not catch up in {timeout:?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Like [`TestApp::command`], but a refusal (e.g. cancelling a settled order) is fine.
    pub async fn try_command(&self, order: Uuid, command: order_domain::OrderCommand) -> bool {
        use order_service::store::orders::{CommandRequest, EventMetadata};
        self.app_state
            .orders
            .execute::<()>(
                CommandRequest {
                    order_id: order_domain::OrderId::from_uuid(order),
                    command,
                    mark: None,
                    expected_version: None,
                    metadata: EventMetadata::default(),
                },
                |_| Ok(()),
            )
            .await
            .is_ok()
    }

    /// Runs one order command the way the service does, bypassing HTTP (for bulk workloads).
    pub async fn command(&self, order: Uuid, command: order_domain::OrderCommand) {
        use order_service::store::orders::{CommandRequest, EventMetadata};
        self.app_state
            .orders
            .execute::<()>(
                CommandRequest {
                    order_id: order_domain::OrderId::from_uuid(order),
                    command,
                    mark: None,
                    expected_version: None,
                    metadata: EventMetadata {
                        principal: Some("workload".into()),
                        ..EventMetadata::default()
                    },
                },
                |_| Ok(()),
            )
            .await
            .expect("command");
    }

    /// Rejects a placed order the way the saga does when a step fails for good.
    pub async fn reject_internally(&self, order: Uuid, reason: &str) {
        let reason = order_domain::Reason::parse(reason.to_owned()).expect("reason");
        self.command(order, order_domain::OrderCommand::RejectOrder { reason })
            .await;
    }
}

impl TestApp {
    /// Polls the order (through the API, as admin) until `done` holds; panics after `timeout`.
    pub async fn wait_for_order(
        &self,
        order: Uuid,
        timeout: Duration,
        done: impl Fn(&Value) -> bool,
    ) -> Value {
        let admin = self.admin();
        let deadline = std::time::Instant::now() + timeout;
        loop {
            let answer = self.get(&format!("/v1/orders/{order}"), &admin).await;
            if answer.status == StatusCode::OK && done(&answer.body) {
                return answer.body;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "order {order} did not get there: {}",
                answer.text
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Polls the saga until its status is `status`.
    pub async fn wait_for_saga(&self, order: Uuid, status: &str, timeout: Duration) -> Value {
        let admin = self.admin();
        let deadline = std::time::Instant::now() + timeout;
        loop {
            let answer = self.get(&format!("/v1/orders/{order}/saga"), &admin).await;
            if answer.status == StatusCode::OK && answer.body["status"] == status {
                return answer.body;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "saga of {order} is not {status}: {}",
                answer.text
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The simulator's books.
    pub fn books(&self) -> order_service::simulator::Books {
        self.simulator.as_ref().expect("a saga app").books()
    }

    /// How many saga events of `event_type` order `order` has.
    pub async fn saga_events(&self, order: Uuid, event_type: &str) -> i64 {
        sqlx::query_scalar("select count(*) from events where aggregate_type = 'OrderSaga' and aggregate_id = $1 and event_type = $2")
            .bind(order.to_string())
            .bind(event_type)
            .fetch_one(&self.pool)
            .await
            .expect("count")
    }
}

impl TestApp {
    /// A connection of its own to the app's NATS, as the service (a saga app).
    pub async fn nats(&self) -> order_service::nats::Nats {
        let url = self
            .settings
            .nats_url
            .clone()
            .expect("a saga app has a NATS url");
        order_service::nats::Nats::connect(&url, &self.settings.nats)
            .await
            .expect("nats")
    }

    /// Waits until the service's reply consumer has settled every message stored so far in this
    /// prefix's `SAGA_REPLIES` stream: acked (processed or ignored) or terminated
    /// (dead-lettered), so whatever those replies do is done and none comes back. The positive
    /// signal to wait for before asserting that a reply changed nothing; panics after `timeout`.
    pub async fn wait_for_replies_settled(&self, timeout: Duration) {
        let nats = self.nats().await;
        let name = nats.stream_name(order_service::nats::SAGA_REPLIES);
        let stream = nats.js.get_stream(&name).await.expect("replies stream");
        let last = stream
            .get_info()
            .await
            .expect("stream info")
            .state
            .last_sequence;
        // The durable consumer the service's reply consumer shares (src/workers/replies.rs).
        let durable = format!("{name}_order_service");
        // Acks and terminations move the floor only once the reply's handling finished. The
        // service creates its consumer once its workers run, which under load can be after the
        // test published: until then nothing is settled.
        let floor = std::cell::Cell::new(None);
        let settled = crate::poll::within(timeout, || async {
            let info = stream.consumer_info(&durable).await.ok()?;
            floor.set(Some(info.ack_floor.stream_sequence));
            (info.ack_floor.stream_sequence >= last).then_some(())
        })
        .await;
        assert!(
            settled.is_some(),
            "the reply consumer {durable} settled up to {:?} (None: it does not exist) of {last} in {timeout:?}",
            floor.get()
        );
    }
}

/// One look at the saga machinery of a NATS prefix, by [`TestApp::wait_for_sagas_quiet`]:
/// where the log readers that feed the sagas stand, and how far the two saga streams reach.
#[derive(Debug, PartialEq, Eq)]
struct SagaLook {
    relay: order_service::log::Cursor,
    reactor: order_service::log::Cursor,
    commands_last: u64,
    replies_last: u64,
}

impl TestApp {
    /// Waits until the saga machinery on `nats`' prefix (which may be another than
    /// `self.settings.nats.prefix`, e.g. service child processes with their own) is quiet, that
    /// is, twice in a row with nothing new in between (same checkpoints, same last stream
    /// sequences):
    /// * the relay and the saga reactor have checkpointed the whole log (no event after their
    ///   checkpoints; both write it when idle, and only once the batch's effects landed: the
    ///   relay's messages acked by JetStream, the reactor's commands applied),
    /// * both simulated participants have acked every command of `SAGA_COMMANDS` (nothing
    ///   pending or unacked: their consumers are filtered, so their ack floors need not reach
    ///   the stream's last sequence; they ack a command only after its reply was stored),
    /// * the service's reply consumer has settled every reply of `SAGA_REPLIES` (as in
    ///   [`Self::wait_for_replies_settled`]).
    ///
    /// Each step hands its work on before it acks or checkpoints, so then nothing is in flight:
    /// the positive signal to wait for before asserting that late effects (compensations) have
    /// all landed. Panics after `timeout`.
    pub async fn wait_for_sagas_quiet(&self, nats: &order_service::nats::Nats, timeout: Duration) {
        let deadline = std::time::Instant::now() + timeout;
        let mut previous = None;
        loop {
            let look = self.look_at_sagas(nats).await;
            if look.is_some() && look == previous {
                return;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "the sagas did not quiet down in {timeout:?}; last look: {look:?}"
            );
            previous = look;
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Where the saga machinery stands, or `None` while something is still in flight (see
    /// [`Self::wait_for_sagas_quiet`]).
    async fn look_at_sagas(&self, nats: &order_service::nats::Nats) -> Option<SagaLook> {
        let mut conn = self.pool.acquire().await.expect("connection");
        let relay = checkpoint_at_end(&mut conn, order_service::workers::relay::READER).await?;
        let reactor =
            checkpoint_at_end(&mut conn, order_service::workers::saga_reactor::READER).await?;

        let commands = nats
            .js
            .get_stream(nats.stream_name(order_service::nats::SAGA_COMMANDS))
            .await
            .expect("commands stream");
        let commands_last = commands
            .get_info()
            .await
            .expect("stream info")
            .state
            .last_sequence;
        for participant in order_service::simulator::Participant::ALL {
            let info = commands
                .consumer_info(participant.durable_name(nats))
                .await
                .expect("participant consumer info");
            if info.num_pending > 0 || info.num_ack_pending > 0 {
                return None;
            }
        }

        let replies_name = nats.stream_name(order_service::nats::SAGA_REPLIES);
        let replies = nats
            .js
            .get_stream(&replies_name)
            .await
            .expect("replies stream");
        let replies_last = replies
            .get_info()
            .await
            .expect("stream info")
            .state
            .last_sequence;
        // The durable consumer the service's reply consumer shares (src/workers/replies.rs).
        let info = replies
            .consumer_info(format!("{replies_name}_order_service"))
            .await
            .expect("reply consumer info");
        if info.ack_floor.stream_sequence < replies_last {
            return None;
        }
        Some(SagaLook {
            relay,
            reactor,
            commands_last,
            replies_last,
        })
    }
}

/// Reader `reader`'s checkpoint, if no event of the log lies after it.
async fn checkpoint_at_end(
    conn: &mut sqlx::PgConnection,
    reader: &str,
) -> Option<order_service::log::Cursor> {
    let at = order_service::log::load_checkpoint(conn, reader)
        .await
        .expect("checkpoint");
    let behind: bool = sqlx::query_scalar(
        "select exists (select 1 from events where (tx_id, position) > ($1::text::xid8, $2))",
    )
    .bind(at.tx_id.to_string())
    .bind(at.position)
    .fetch_one(conn)
    .await
    .expect("events after the checkpoint");
    (!behind).then_some(at)
}

/// `order-service serve` as a child process with only the environment given (and `PATH`),
/// logging JSON at `info` unless told otherwise; every line it prints (stdout and stderr) is
/// read as it comes. Killed on drop.
pub struct ServeChild {
    child: tokio::process::Child,
    lines: tokio::sync::mpsc::UnboundedReceiver<String>,
    /// Every line read so far.
    pub log: Vec<String>,
    /// When the process was started.
    pub started: std::time::Instant,
    /// The HTTP port, once read from its "serving HTTP" line.
    port: Option<u16>,
}

impl ServeChild {
    /// Starts `serve` on a port of its choosing with `env` (`APP__HTTP__ADDR` and
    /// `APP__AUTH__JWT_SECRET` are set unless `env` sets them).
    pub fn spawn<K, V>(env: impl IntoIterator<Item = (K, V)>) -> Self
    where
        K: AsRef<std::ffi::OsStr>,
        V: AsRef<std::ffi::OsStr>,
    {
        use std::process::Stdio;
        use tokio::io::AsyncBufReadExt as _;

        let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_order-service"));
        command
            .arg("serve")
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("APP__HTTP__ADDR", "127.0.0.1:0")
            .env("APP__AUTH__JWT_SECRET", SECRET)
            .env("APP__LOG__FORMAT", "json")
            .env("RUST_LOG", "info")
            .envs(env)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let started = std::time::Instant::now();
        let mut child = command.spawn().expect("order-service serve starts");
        let (tx, lines) = tokio::sync::mpsc::unbounded_channel();
        let stdout = child.stdout.take().expect("stdout");
        let stderr = child.stderr.take().expect("stderr");
        let out = tx.clone();
        tokio::spawn(async move {
            let mut reader = tokio::io::BufReader::new(stdout).lines();
            while let Ok(Some(line)) = reader.next_line().await {
                let _ = out.send(line);
            }
        });
        tokio::spawn(async move {
            let mut reader = tokio::io::BufReader::new(stderr).lines();
            while let Ok(Some(line)) = reader.next_line().await {
                let _ = tx.send(line);
            }
        });
        Self {
            child,
            lines,
            log: Vec::new(),
            started,
            port: None,
        }
    }

    /// Reads lines until one satisfies `wanted` (returned), the output ends, or `timeout`.
    pub async fn wait_for_line(
        &mut self,
        timeout: Duration,
        wanted: impl Fn(&str) -> bool,
    ) -> Option<String> {
        let deadline = tokio::time::Instant::now() + timeout;
        while let Ok(Some(line)) = tokio::time::timeout_at(deadline, self.lines.recv()).await {
            self.note(&line);
            if wanted(&line) {
                return Some(line);
            }
        }
        None
    }

    /// Keeps `line`, and the port when it is the "serving HTTP" line.
    fn note(&mut self, line: &str) {
        if line.contains("serving HTTP") {
            if let Ok(json) = serde_json::from_str::<Value>(line) {
                self.port = json["port"].as_u64().and_then(|p| u16::try_from(p).ok());
            }
        }
        self.log.push(line.to_owned());
    }

    /// The HTTP port, from the "serving HTTP" line (printed as soon as the listener is bound).
    pub async fn port(&mut self) -> u16 {
        if self.port.is_none() {
            self.wait_for_line(Duration::from_secs(20), |l| l.contains("serving HTTP"))
                .await;
        }
        self.port
            .unwrap_or_else(|| panic!("serve did not bind its listener: {:#?}", self.log))
    }

    /// `GET path`: its status and body (JSON when it parses, else a JSON string), or `None`
    /// when nothing answers.
    pub async fn get(&mut self, path: &str) -> Option<(u16, Value)> {
        let url = format!("http://127.0.0.1:{}{path}", self.port().await);
        let response = reqwest::Client::new()
            .get(url)
            .timeout(Duration::from_secs(10))
            .send()
            .await
            .ok()?;
        let status = response.status().as_u16();
        let text = response.text().await.ok()?;
        Some((
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        ))
    }

    /// Polls `/health/ready` until `accept` likes its answer; that answer, or `None` after
    /// `timeout`.
    pub async fn wait_for_ready(
        &mut self,
        timeout: Duration,
        accept: impl Fn(u16, &Value) -> bool,
    ) -> Option<(u16, Value)> {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            if let Some((status, body)) = self.get("/health/ready").await {
                if accept(status, &body) {
                    return Some((status, body));
                }
            }
            if std::time::Instant::now() >= deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// SIGTERM, as an orchestrator stops a container.
    pub fn terminate(&self) {
        let pid = self.child.id().expect("the process runs");
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(i32::try_from(pid).expect("a pid")),
            nix::sys::signal::Signal::SIGTERM,
        )
        .expect("SIGTERM sent");
    }

    /// Waits (at most `timeout`) for the process to exit and reads the rest of its output.
    pub async fn exit(&mut self, timeout: Duration) -> std::process::ExitStatus {
        let status = tokio::time::timeout(timeout, self.child.wait())
            .await
            .unwrap_or_else(|_| panic!("serve did not exit: {:#?}", self.log))
            .expect("waiting for serve");
        while let Some(line) = self.lines.recv().await {
            self.note(&line);
        }
        status
    }

    /// Everything read so far, one line after the other.
    pub fn output(&self) -> String {
        self.log.join("\n")
    }

    /// SIGKILL: no shutdown, no cleanup; returns once the process is gone.
    pub async fn kill(mut self) {
        self.child.kill().await.expect("kill");
    }
}

/// A check of a readiness answer by name, if present.
pub fn check<'a>(body: &'a Value, name: &str) -> Option<&'a Value> {
    body["checks"]
        .as_array()?
        .iter()
        .find(|c| c["name"] == name)
}
