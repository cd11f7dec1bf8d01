//! The projector as a real process: killed mid-batch, run by two replicas at once, rebuilt
//! while live. Read models are compared row for row with a rebuild from the log.

use std::process::Stdio;
use std::time::{Duration, Instant};

use order_domain::{
    Carrier, CreateOrder, Currency, CustomerId, NewItem, OrderCommand, OrderId, OrderStatus,
    Quantity, Reason, Sku, StoreId, TrackingNumber,
};
use rand::{Rng as _, SeedableRng as _};
use secrecy::ExposeSecret as _;
use uuid::Uuid;

use crate::helpers::{read_models, spawn_app_with, TestApp};

/// `order-service serve` as a child process on the test's database.
struct ServiceProcess {
    child: tokio::process::Child,
    port: u16,
}

impl ServiceProcess {
    async fn spawn(app: &TestApp) -> Self {
        Self::spawn_with(app, &[]).await
    }

    /// With extra environment (e.g. the saga machinery on a NATS prefix).
    async fn spawn_with(app: &TestApp, env: &[(&str, String)]) -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .expect("bind")
            .local_addr()
            .expect("addr")
            .port();
        let url = app
            .settings
            .database_url
            .as_ref()
            .expect("url")
            .expose_secret()
            .to_owned();
        let child = tokio::process::Command::new(env!("CARGO_BIN_EXE_order-service"))
            .arg("serve")
            .env("DATABASE_URL", url)
            .env("APP__HTTP__ADDR", format!("127.0.0.1:{port}"))
            .env(
                "APP__AUTH__JWT_SECRET",
                "process-test-secret-long-enough-for-hs256-xxxxxxxx",
            )
            .env("RUST_LOG", "warn")
            .env("APP__WORKERS__SAGAS", "false")
            .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("spawn order-service");
        let this = Self { child, port };
        let deadline = Instant::now() + Duration::from_secs(20);
        while this.metrics().await.is_none() {
            assert!(Instant::now() < deadline, "order-service did not start");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        this
    }

    async fn metrics(&self) -> Option<String> {
        let resp = reqwest::get(format!("http://127.0.0.1:{}/metrics", self.port))
            .await
            .ok()?;
        resp.text().await.ok()
    }

    /// Whether this process runs the projector right now.
    async fn runs_projector(&self) -> bool {
        self.metrics()
            .await
            .is_some_and(|m| m.contains("log_reader_active{reader=\"projector\"} 1"))
    }

    /// SIGKILL: no shutdown, no cleanup, like a crash or an OOM kill.
    async fn kill(mut self) {
        self.child.kill().await.expect("kill");
    }
}

/// A randomized but seeded workload of `n` orders, through the real command executor.
async fn workload(app: &TestApp, store: Uuid, n: usize, seed: u64) -> Vec<Uuid> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let skus = ["TEA", "CAKE"];
    let mut ids = Vec::new();
    for i in 0..n {
        let id = Uuid::from_u128(rng.random());
        ids.push(id);
        let items = (0..rng.random_range(1..=2))
            .map(|_| NewItem {
                sku: Sku::parse(skus[rng.random_range(0..2)]).expect("sku"),
                quantity: Quantity::parse(rng.random_range(1..=3)).expect("qty"),
            })
            .collect();
        app.command(
            id,
            OrderCommand::CreateOrder(Box::new(CreateOrder {
                order_id: OrderId::from_uuid(id),
                customer_id: CustomerId::parse(format!("customer-{}", i % 17)).expect("customer"),
                store_id: StoreId::from_uuid(store),
                currency: Currency::parse("EUR").expect("eur"),
                customer_email: None,
                shipping_address: None,
                items,
            })),
        )
        .await;
        if rng.random_bool(0.3) {
            app.command(
                id,
                OrderCommand::AddItem {
                    sku: Sku::parse("CAKE").expect("sku"),
                    quantity: Quantity::parse(1).expect("q"),
                },
            )
            .await;
        }
        if rng.random_bool(0.15) {
            continue; // stays a draft
        }
        app.command(id, OrderCommand::PlaceOrder).await;
        let roll: f64 = rng.random();
        if roll < 0.15 {
            app.command(
                id,
                OrderCommand::RejectOrder {
                    reason: Reason::parse("out of stock").expect("r"),
                },
            )
            .await;
            continue;
        }
        if roll < 0.25 {
            continue; // placed, saga pending
        }
        app.command(id, OrderCommand::ConfirmOrder).await;
        let roll: f64 = rng.random();
        if roll < 0.2 {
            app.command(
                id,
                OrderCommand::CancelOrder {
                    reason: Reason::parse("changed mind").expect("r"),
                },
            )
            .await;
        } else if roll < 0.6 {
            app.command(
                id,
                OrderCommand::ChangeStatus {
                    status: OrderStatus::Preparing,
                    note: None,
                },
            )
            .await;
            if rng.random_bool(0.5) {
                app.command(
                    id,
                    OrderCommand::ShipOrder {
                        carrier: Carrier::parse("DHL").expect("c"),
                        tracking_number: TrackingNumber::parse(format!("T{i}")).expect("t"),
                        note: None,
                    },
                )
                .await;
                app.command(
                    id,
                    OrderCommand::ChangeStatus {
                        status: OrderStatus::Delivered,
                        note: None,
                    },
                )
                .await;
            } else {
                app.command(
                    id,
                    OrderCommand::ChangeStatus {
                        status: OrderStatus::ReadyForPickup,
                        note: None,
                    },
                )
                .await;
                app.command(
                    id,
                    OrderCommand::ChangeStatus {
                        status: OrderStatus::PickedUp,
                        note: None,
                    },
                )
                .await;
            }
        }
    }
    ids
}

/// Live read models, then a rebuild from the log, compared row for row.
async fn assert_live_equals_rebuild(app: &TestApp) {
    let live = read_models(&app.pool).await;
    assert!(
        live.iter().any(|(_, rows)| !rows.is_empty()),
        "empty read models prove nothing"
    );
    let report = order_service::read_models::rebuild(&app.pool)
        .await
        .expect("rebuild");
    assert!(report.events > 0);
    let rebuilt = read_models(&app.pool).await;
    for ((table, a), (_, b)) in live.iter().zip(&rebuilt) {
        assert_eq!(a.len(), b.len(), "{table}: row count differs after rebuild");
        for (x, y) in a.iter().zip(b) {
            assert_eq!(x, y, "{table}: a row differs after rebuild");
        }
    }
    assert_eq!(live.len(), rebuilt.len());
}

async fn checkpoint(app: &TestApp) -> i64 {
    sqlx::query_scalar(
        "select coalesce((select position from reader_checkpoints where name = 'projector'), 0)",
    )
    .fetch_one(&app.pool)
    .await
    .expect("checkpoint")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rebuild_after_a_thousand_orders_equals_the_live_read_models() {
    let app = spawn_app_with(|_| {}).await;
    let store = app.store_with_products().await;
    workload(&app, store, 1_000, 7).await;
    app.wait_for_projector(Duration::from_secs(120)).await;
    assert_live_equals_rebuild(&app).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_projector_killed_mid_batch_resumes_without_duplicates_or_losses() {
    // Arrange: a backlog of several of the projector's batches (2,000 events each: with
    // fewer, the last one can finish before a kill lands), no projector yet.
    let app = spawn_app_with(|s| s.workers.projector = false).await;
    let store = app.store_with_products().await;
    workload(&app, store, 1_200, 11).await;
    let last: i64 = sqlx::query_scalar("select max(position) from events")
        .fetch_one(&app.pool)
        .await
        .expect("max");

    // Act: start the projector in a process and SIGKILL it soon after it committed a batch
    // (at a random point of the next one), several times. Waiting for a commit rather than a
    // fixed time keeps the kills inside the work however fast the projector runs.
    let mut rng = rand::rngs::StdRng::seed_from_u64(3);
    let mut progress = Vec::new();
    for _ in 0..4 {
        let before = checkpoint(&app).await;
        if before >= last {
            break;
        }
        let process = ServiceProcess::spawn(&app).await;
        let deadline = Instant::now() + Duration::from_secs(30);
        while checkpoint(&app).await == before && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        tokio::time::sleep(Duration::from_millis(rng.random_range(0..20))).await;
        process.kill().await;
        progress.push(checkpoint(&app).await);
    }
    let process = ServiceProcess::spawn(&app).await;
    app.wait_for_projector(Duration::from_secs(120)).await;
    process.kill().await;

    // Assert: the kills landed while work remained, and the result equals a rebuild.
    assert!(
        progress.iter().any(|p| *p < last),
        "every kill came after the projector had finished: {progress:?} of {last}"
    );
    assert_live_equals_rebuild(&app).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_two_processes_one_projects_and_the_other_takes_over_within_five_seconds() {
    let app = spawn_app_with(|s| s.workers.projector = false).await;
    let store = app.store_with_products().await;
    let a = ServiceProcess::spawn(&app).await;
    let b = ServiceProcess::spawn(&app).await;

    // Exactly one of them holds the projector.
    let deadline = Instant::now() + Duration::from_secs(10);
    let (active, standby) = loop {
        match (a.runs_projector().await, b.runs_projector().await) {
            (true, false) => break (a, b),
            (false, true) => break (b, a),
            (true, true) => panic!("both processes run the projector"),
            (false, false) => {
                assert!(Instant::now() < deadline, "no process took the projector");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    };
    workload(&app, store, 60, 5).await;

    // Kill the active one: the standby takes over within five seconds.
    active.kill().await;
    let killed_at = Instant::now();
    while !standby.runs_projector().await {
        assert!(
            killed_at.elapsed() < Duration::from_secs(5),
            "the standby did not take over within 5 s"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    workload(&app, store, 60, 6).await;
    app.wait_for_projector(Duration::from_secs(60)).await;
    standby.kill().await;

    // Nothing was applied twice or skipped.
    assert_live_equals_rebuild(&app).await;
}

#[tokio::test]
async fn the_comparison_catches_a_read_model_that_differs_from_the_log() {
    let app = spawn_app_with(|_| {}).await;
    let store = app.store_with_products().await;
    workload(&app, store, 20, 1).await;
    app.wait_for_projector(Duration::from_secs(30)).await;
    let live = read_models(&app.pool).await;
    sqlx::query("update read.order_summaries set total_minor = total_minor + 1 where order_id = (select order_id from read.order_summaries order by order_id limit 1)")
        .execute(&app.pool)
        .await
        .expect("tamper");
    order_service::read_models::rebuild(&app.pool)
        .await
        .expect("rebuild");
    // The rebuild restores the truth of the log, so it differs from the tampered copy...
    let rebuilt = read_models(&app.pool).await;
    assert_eq!(rebuilt, live, "rebuild restores what the log says");
    let tampered = {
        sqlx::query("update read.order_summaries set total_minor = total_minor + 1 where order_id = (select order_id from read.order_summaries order by order_id limit 1)")
            .execute(&app.pool)
            .await
            .expect("tamper");
        read_models(&app.pool).await
    };
    // ...and the comparison used by the tests above does see such a difference.
    assert_ne!(tampered, rebuilt);
}

// ---- sagas under crashes ---------------------------------------------------------------------

/// `n` placed orders whose sagas run in service processes that are SIGKILLed `kills` times at
/// random moments; some orders are cancelled along the way. Afterwards every order is settled
/// and the participants' books balance with the orders' outcomes.
async fn sagas_survive_crashes(n: usize, kills: usize, seed: u64) {
    use order_service::simulator::{PaymentState, ReservationState, Simulator, SimulatorConfig};

    let app = spawn_app_with(|s| s.workers.projector = false).await;
    let store = app.store_with_products().await;
    let nats_url = std::env::var("NATS_URL").unwrap_or_else(|_| "nats://127.0.0.1:4222".to_owned());
    let prefix = format!("crash{}.", Uuid::new_v4().simple());
    let nats =
        order_service::nats::Nats::connect(&nats_url, &crate::helpers::test_nats_settings(&prefix))
            .await
            .expect("nats");
    let simulator = Simulator::start(
        nats.clone(),
        SimulatorConfig {
            decline_rate: 0.15,
            out_of_stock_rate: 0.1,
            max_latency: Duration::from_millis(20),
            seed,
            ..SimulatorConfig::default()
        },
    )
    .await
    .expect("simulator");
    let env = [
        ("APP__WORKERS__SAGAS", "true".to_owned()),
        ("NATS_URL", nats_url.clone()),
        ("APP__NATS__PREFIX", prefix.clone()),
        ("APP__SAGA__STEP_TIMEOUT_MS", "1000".to_owned()),
    ];

    // Orders are placed while the service processes come and go.
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut process = Some(ServiceProcess::spawn_with(&app, &env).await);
    let mut ids = Vec::new();
    let kill_every = (n / (kills + 1)).max(1);
    for i in 0..n {
        let id = Uuid::from_u128(rng.random());
        app.command(
            id,
            OrderCommand::CreateOrder(Box::new(CreateOrder {
                order_id: OrderId::from_uuid(id),
                customer_id: CustomerId::parse(format!("c{i}")).expect("customer"),
                store_id: StoreId::from_uuid(store),
                currency: Currency::parse("EUR").expect("eur"),
                customer_email: None,
                shipping_address: None,
                items: vec![NewItem {
                    sku: Sku::parse("TEA").expect("sku"),
                    quantity: Quantity::parse(rng.random_range(1..=3)).expect("qty"),
                }],
            })),
        )
        .await;
        app.command(id, OrderCommand::PlaceOrder).await;
        ids.push(id);
        if rng.random_bool(0.2) {
            // Cancel a random earlier order (its saga may be anywhere).
            let victim = ids[rng.random_range(0..ids.len())];
            app.try_command(
                victim,
                OrderCommand::CancelOrder {
                    reason: Reason::parse("changed mind").expect("r"),
                },
            )
            .await;
        }
        if i % kill_every == kill_every - 1 && ids.len() < n {
            tokio::time::sleep(Duration::from_millis(rng.random_range(0..300))).await;
            if let Some(p) = process.take() {
                p.kill().await;
            }
            process = Some(ServiceProcess::spawn_with(&app, &env).await);
        }
    }

    // Every order settles: confirmed, rejected or cancelled, with its saga at rest.
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let unsettled: i64 = sqlx::query_scalar(
            "select count(*) from unnest($1::uuid[]) as o(id)
              where not exists (
                  select 1 from events e where e.aggregate_type = 'Order' and e.aggregate_id = o.id::text
                     and e.event_type in ('OrderConfirmed', 'OrderRejected', 'OrderCancelled'))
                 or not exists (
                  select 1 from events e where e.aggregate_type = 'OrderSaga' and e.aggregate_id = o.id::text
                     and e.event_type in ('OrderConfirmationDue', 'SagaFailed', 'SagaCancelled'))",
        )
        .bind(&ids)
        .fetch_one(&app.pool)
        .await
        .expect("unsettled");
        if unsettled == 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{unsettled} of {n} orders did not settle"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Late compensations (releases, voids) still travel once the orders settled: wait until
    // every command is answered and every reply applied, with nothing new coming.
    app.wait_for_sagas_quiet(&nats, Duration::from_secs(60))
        .await;
    if let Some(p) = process.take() {
        p.kill().await;
    }

    // The books balance with the orders' outcomes.
    let books = simulator.stop().await.expect("simulator");
    let (mut expected_units, mut expected_money) = (0_u64, 0_i64);
    for id in &ids {
        let types = app.event_types(*id).await;
        let cancelled = types.iter().any(|t| t == "OrderCancelled");
        let confirmed = types.iter().any(|t| t == "OrderConfirmed") && !cancelled;
        let order = OrderId::from_uuid(*id);
        let reservation = books.reservation_of(order);
        let payment = books.payment_of(order);
        if confirmed {
            let r = reservation.expect("a confirmed order holds a reservation");
            assert_eq!(r.state, ReservationState::Reserved, "{id}");
            let p = payment.expect("a confirmed order holds a payment");
            assert_eq!(p.state, PaymentState::Authorized, "{id}");
            expected_units += r.units();
            expected_money += p.amount_minor;
        } else {
            assert!(
                reservation.is_none_or(|r| r.state == ReservationState::Released),
                "{id}: stock left reserved"
            );
            assert!(
                payment.is_none_or(|p| p.state == PaymentState::Voided),
                "{id}: money left authorized"
            );
        }
    }
    assert_eq!(books.reserved_units(), expected_units);
    assert_eq!(books.authorized_minor(), expected_money);
    assert_eq!(books.captured_minor(), 0);
    let js = async_nats::jetstream::new(nats.client.clone());
    for base in order_service::nats::STREAMS {
        let _ = js.delete_stream(nats.stream_name(base)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sagas_survive_a_service_killed_at_random_moments() {
    // boxed: the settings it holds (auth grew by its JWKS knobs) pass clippy's large_futures bound
    Box::pin(sagas_survive_crashes(60, 3, 21)).await;
}

/// The long variant: `cargo test --test api -- --ignored sagas_survive_many`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "long: 200 sagas, 8 kills (about a minute)"]
async fn sagas_survive_many_kills() {
    // boxed: the settings it holds (auth grew by its JWKS knobs) pass clippy's large_futures bound
    Box::pin(sagas_survive_crashes(200, 8, 42)).await;
}
