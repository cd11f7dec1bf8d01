//! `order-bench`: load scenarios against a real service. Today: `saga` (DESIGN §7 throughput
//! sanity): N orders placed through the HTTP API at concurrency C, confirmed by the saga with
//! the participant simulator at zero latency; reports sagas/s and the placed → confirmed
//! latency from the event store's own timestamps.
//!
//! Runs everything in-process against `DATABASE_URL` (a server where it may create a
//! database; default the local one) and `NATS_URL` (default `nats://127.0.0.1:4222`), on a fresh
//! database and NATS prefix. Loopback only; bounded by N.

use std::time::{Duration, Instant};

use anyhow::Context as _;
use clap::Parser;
use futures::StreamExt as _;
use order_service::config::Settings;
use order_service::http::auth::{Role, TokenMinter};
use order_service::startup::Application;
use secrecy::SecretString;
use serde_json::{json, Value};
use sqlx::Connection as _;

#[derive(Debug, Parser)]
#[command(name = "order-bench", about = "Load scenarios for order-service")]
struct Args {
    /// Scenario (only `saga` for now).
    #[arg(default_value = "saga")]
    scenario: String,
    /// Orders to place.
    #[arg(long, default_value_t = 500)]
    orders: usize,
    /// Concurrent clients.
    #[arg(long, default_value_t = 16)]
    concurrency: usize,
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
}

const SECRET: &str = "order-bench-secret-that-is-long-enough-for-hs256";

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    anyhow::ensure!(
        args.scenario == "saga",
        "unknown scenario {:?}; known: saga",
        args.scenario
    );
    let admin_url = std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable".into());
    let nats_url = std::env::var("NATS_URL").unwrap_or_else(|_| "nats://127.0.0.1:4222".into());
    let db = format!("bench_{}", uuid::Uuid::new_v4().simple());
    let mut admin = sqlx::PgConnection::connect(&admin_url)
        .await
        .context("DATABASE_URL")?;
    sqlx::query(&format!("create database \"{db}\""))
        .execute(&mut admin)
        .await?;
    let mut url = url::Url::parse(&admin_url)?;
    url.set_path(&format!("/{db}"));

    let mut settings = Settings {
        database_url: Some(SecretString::from(url.to_string())),
        nats_url: Some(nats_url),
        ..Settings::default()
    };
    settings.nats.prefix = format!("bench{}.", uuid::Uuid::new_v4().simple());
    settings.http.addr = "127.0.0.1:0".parse()?;
    settings.auth.jwt_secret = Some(SecretString::from(SECRET.to_owned()));
    settings.database.migrate_on_start = true;
    settings.simulator.enabled = Some(true);
    let app = Application::build(&settings).await?;
    let base = format!("http://127.0.0.1:{}", app.port());
    let pool = app.state().pool.clone();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(app.run_until_stopped(async {
        let _ = stopped.await;
    }));

    let minter = TokenMinter::new(
        &SecretString::from(SECRET.to_owned()),
        "order-service",
        "order-service",
    )?;
    let token = minter.mint("bench", &[Role::Admin], &[], Duration::from_secs(3600))?;
    let client = reqwest::Client::new();
    let post = |path: String, body: Value| {
        client
            .post(format!("{base}{path}"))
            .bearer_auth(&token)
            .json(&body)
            .send()
    };
    let store: Value = post(
        "/v1/stores".into(),
        json!({"name": "Bench", "currency": "EUR"}),
    )
    .await?
    .json()
    .await?;
    let store = store["id"].as_str().context("store id")?.to_owned();
    post(
        format!("/v1/stores/{store}/products"),
        json!({"sku": "TEA", "name": "Tea", "unit_price_minor": 450}),
    )
    .await?;

    let started = Instant::now();
    let work = futures::stream::iter(0..args.orders)
        .map(|i| {
            let store = store.clone();
            let post = &post;
            async move {
                let order: Value = post(
                    "/v1/orders".into(),
                    json!({"store_id": store, "customer_id": format!("c{i}"), "items": [{"sku": "TEA", "quantity": 1}]}),
                )
                .await?
                .json()
                .await?;
                let id = order["id"].as_str().context("order id")?.to_owned();
                let placed = post(format!("/v1/orders/{id}/place"), json!({})).await?;
                anyhow::ensure!(placed.status().is_success(), "place answered {}", placed.status());
                anyhow::Ok(())
            }
        })
        .buffer_unordered(args.concurrency);
    let results: Vec<anyhow::Result<()>> = work.collect().await;
    for r in results {
        r?;
    }
    let placing = started.elapsed();
    // Wait until every saga confirmed its order.
    loop {
        let confirmed: i64 =
            sqlx::query_scalar("select count(*) from events where event_type = 'OrderConfirmed'")
                .fetch_one(&pool)
                .await?;
        if confirmed >= i64::try_from(args.orders)? {
            break;
        }
        anyhow::ensure!(
            started.elapsed() < Duration::from_secs(300),
            "sagas did not finish in 5 minutes"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (latencies, span): (Vec<f64>, f64) = {
        let rows: Vec<(f64,)> = sqlx::query_as(
            "select extract(epoch from c.recorded_at - p.recorded_at)::float8
               from events p join events c on c.aggregate_id = p.aggregate_id
              where p.event_type = 'OrderPlaced' and c.event_type = 'OrderConfirmed'",
        )
        .fetch_all(&pool)
        .await?;
        let span: f64 = sqlx::query_scalar(
            "select extract(epoch from max(c.recorded_at) - min(p.recorded_at))::float8
               from events p, events c where p.event_type = 'OrderPlaced' and c.event_type = 'OrderConfirmed'",
        )
        .fetch_one(&pool)
        .await?;
        (rows.into_iter().map(|r| r.0 * 1000.0).collect(), span)
    };
    let mut sorted = latencies.clone();
    sorted.sort_by(f64::total_cmp);
    let pct = |p: f64| percentile(&sorted, p);
    let rate = f64::from(u32::try_from(args.orders)?) / span;
    if args.json {
        println!(
            "{}",
            json!({"scenario": "saga", "orders": args.orders, "concurrency": args.concurrency,
                   "sagas_per_second": rate, "placed_to_confirmed_ms": {"p50": pct(0.5), "p90": pct(0.9), "p99": pct(0.99), "max": pct(1.0)},
                   "placing_seconds": placing.as_secs_f64()})
        );
    } else {
        println!(
            "scenario saga: {} orders, concurrency {}",
            args.orders, args.concurrency
        );
        println!("  sagas/s (first placed → last confirmed): {rate:.1}");
        println!(
            "  placed → confirmed ms: p50 {:.1}  p90 {:.1}  p99 {:.1}  max {:.1}",
            pct(0.5),
            pct(0.9),
            pct(0.99),
            pct(1.0)
        );
    }
    let _ = stop.send(());
    server.await??;
    let mut admin = sqlx::PgConnection::connect(&admin_url).await?;
    sqlx::query(&format!("drop database \"{db}\" with (force)"))
        .execute(&mut admin)
        .await?;
    Ok(())
}

/// The `p` quantile (0-1) of sorted samples, nearest rank.
#[expect(
    clippy::cast_possible_truncation,
    clippy::cast_sign_loss,
    clippy::cast_precision_loss,
    reason = "sample counts are small"
)]
fn percentile(sorted: &[f64], p: f64) -> f64 {
    let rank = ((sorted.len().saturating_sub(1)) as f64 * p).round() as usize;
    sorted.get(rank).copied().unwrap_or(f64::NAN)
}
