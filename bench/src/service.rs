//! The system under test: a fresh database (optionally seeded with 100k orders), a fresh NATS
//! prefix, and the release `order-service` binary started as a child process, so its memory is
//! its own and the load generator's CPU is not counted as the service's.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use order_service::http::auth::{Role, TokenMinter};
use secrecy::SecretString;
use serde_json::{json, Value};
use sqlx::Connection as _;
use uuid::Uuid;

const SECRET: &str = "order-bench-secret-that-is-long-enough-for-hs256";

/// SKUs of the bench store, each priced in EUR.
pub const SKUS: [&str; 4] = ["TEA", "COFFEE", "SCONE", "CAKE"];

pub struct Service {
    pub base: String,
    pub client: reqwest::Client,
    pub token: String,
    /// The bench store (created through the API) every new order goes to.
    pub store: String,
    pub db_url: String,
    pub db_name: String,
    pub admin_url: String,
    pub nats_url: String,
    pub prefix: String,
    pub pool: sqlx::PgPool,
    /// The last position of the seeded events (0 when not seeded).
    pub seed_position: i64,
    binary: PathBuf,
    child: tokio::process::Child,
    pub log: PathBuf,
}

/// The `order-service` binary built next to this one.
fn service_binary() -> anyhow::Result<PathBuf> {
    let path = std::env::current_exe()?.with_file_name("order-service");
    anyhow::ensure!(
        path.exists(),
        "{} is missing; build both binaries: cargo build --release --bins",
        path.display()
    );
    Ok(path)
}

impl Service {
    /// Creates the database, migrates it, seeds it when asked, and starts the service on it.
    pub async fn start(seed: bool, binary: Option<PathBuf>) -> anyhow::Result<Self> {
        let admin_url = std::env::var("DATABASE_URL").unwrap_or_else(|_| {
            "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable".into()
        });
        let nats_url = std::env::var("NATS_URL").unwrap_or_else(|_| "nats://127.0.0.1:4222".into());
        let binary = match binary {
            Some(path) => path,
            None => service_binary()?,
        };
        let db_name = format!("bench_{}", Uuid::new_v4().simple());
        let mut admin = sqlx::PgConnection::connect(&admin_url)
            .await
            .context("connecting to DATABASE_URL")?;
        sqlx::query(&format!("create database \"{db_name}\""))
            .execute(&mut admin)
            .await?;
        let mut url = url::Url::parse(&admin_url)?;
        url.set_path(&format!("/{db_name}"));
        let db_url = url.to_string();

        let status = tokio::process::Command::new(&binary)
            .arg("migrate")
            .env("DATABASE_URL", &db_url)
            .stdout(Stdio::null())
            .status()
            .await?;
        anyhow::ensure!(status.success(), "order-service migrate failed");
        let pool = sqlx::postgres::PgPoolOptions::new()
            .max_connections(4)
            .connect(&db_url)
            .await?;
        if seed {
            seed_orders(&url, &pool).await?;
        }
        let seed_position: i64 =
            sqlx::query_scalar("select coalesce(max(position), 0) from events")
                .fetch_one(&pool)
                .await?;

        let prefix = format!("bench{}.", Uuid::new_v4().simple());
        let port = free_port()?;
        let log = std::env::temp_dir().join(format!("order-bench-{db_name}.log"));
        let log_file = std::fs::File::create(&log)?;
        let child = tokio::process::Command::new(&binary)
            .arg("serve")
            .env("DATABASE_URL", &db_url)
            .env("NATS_URL", &nats_url)
            .env("APP__NATS__PREFIX", &prefix)
            .env("APP__HTTP__ADDR", format!("127.0.0.1:{port}"))
            .env("APP__AUTH__JWT_SECRET", SECRET)
            .env("APP__SIMULATOR__ENABLED", "true")
            .env("APP__SIMULATOR__MIN_LATENCY_MS", "0")
            .env("APP__SIMULATOR__MAX_LATENCY_MS", "0")
            .env("APP__SIMULATOR__DECLINE_RATE", "0")
            .env("APP__SIMULATOR__OUT_OF_STOCK_RATE", "0")
            .env("APP__SIMULATOR__SILENCE_RATE", "0")
            .env("APP__SIMULATOR__DUPLICATE_REPLY_RATE", "0")
            .env("APP__SIMULATOR__DEFAULT_STOCK", "1000000000000")
            // one token drives the whole load: the per-caller command rate must not cap it
            .env("APP__LIMITS__COMMANDS_PER_SECOND", "1000000")
            .env("APP__LIMITS__COMMAND_BURST", "1000000")
            .stdout(log_file.try_clone()?)
            .stderr(log_file)
            .kill_on_drop(true)
            .spawn()
            .context("starting order-service")?;
        let base = format!("http://127.0.0.1:{port}");
        let client = reqwest::Client::builder()
            .pool_max_idle_per_host(256)
            .build()?;
        let minter = TokenMinter::new(
            &SecretString::from(SECRET.to_owned()),
            "order-service",
            "order-service",
        )?;
        let token = minter.mint("bench", &[Role::Admin], &[], Duration::from_secs(24 * 3600))?;
        let mut service = Self {
            base,
            client,
            token,
            store: String::new(),
            db_url,
            db_name,
            admin_url,
            nats_url,
            prefix,
            pool,
            seed_position,
            binary,
            child,
            log,
        };
        service.wait_ready().await?;
        service.store = service.create_store().await?;
        Ok(service)
    }

    async fn wait_ready(&mut self) -> anyhow::Result<()> {
        let started = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait()? {
                anyhow::bail!(
                    "order-service exited ({status}) before it was ready; see {}",
                    self.log.display()
                );
            }
            if let Ok(r) = self
                .client
                .get(format!("{}/health/ready", self.base))
                .send()
                .await
            {
                if r.status().is_success() {
                    return Ok(());
                }
            }
            anyhow::ensure!(
                started.elapsed() < Duration::from_secs(60),
                "order-service not ready after 60 s; see {}",
                self.log.display()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn create_store(&self) -> anyhow::Result<String> {
        let store: Value = self
            .post("/v1/stores", &json!({"name": "Bench", "currency": "EUR"}))
            .await?;
        let store = store["id"].as_str().context("store id")?.to_owned();
        for (i, sku) in SKUS.iter().enumerate() {
            self.post(
                &format!("/v1/stores/{store}/products"),
                &json!({"sku": sku, "name": sku.to_lowercase(), "unit_price_minor": 250 + 100 * i}),
            )
            .await?;
        }
        Ok(store)
    }

    /// POSTs `body` and returns the JSON answer; anything but 2xx is an error.
    pub async fn post(&self, path: &str, body: &Value) -> anyhow::Result<Value> {
        let response = self
            .client
            .post(format!("{}{path}", self.base))
            .bearer_auth(&self.token)
            .json(body)
            .send()
            .await?;
        let status = response.status();
        let text = response.text().await?;
        anyhow::ensure!(status.is_success(), "POST {path}: {status} {text}");
        Ok(serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    /// GETs `path`; anything but 2xx is an error. The body is read and dropped.
    pub async fn get(&self, path: &str) -> anyhow::Result<()> {
        let response = self
            .client
            .get(format!("{}{path}", self.base))
            .bearer_auth(&self.token)
            .send()
            .await?;
        let status = response.status();
        let body = response.bytes().await?;
        anyhow::ensure!(
            status.is_success(),
            "GET {path}: {status} {}",
            String::from_utf8_lossy(&body)
        );
        Ok(())
    }

    /// Creates a draft order in the bench store with `lines` lines; returns its id.
    pub async fn create_order(&self, i: u64, lines: usize) -> anyhow::Result<String> {
        let items: Vec<Value> = (0..lines)
            .map(|l| json!({"sku": SKUS[l % SKUS.len()], "quantity": 1}))
            .collect();
        let order = self
            .post(
                "/v1/orders",
                &json!({"store_id": self.store, "customer_id": format!("customer-{}", i % 5000),
                        "items": items}),
            )
            .await?;
        Ok(order["id"].as_str().context("order id")?.to_owned())
    }

    /// Resident set size and its high-water mark of the service process, in bytes.
    pub fn memory(&self) -> anyhow::Result<(u64, u64)> {
        let pid = self.child.id().context("service exited")?;
        let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
        let field = |name: &str| -> anyhow::Result<u64> {
            let line = status
                .lines()
                .find(|l| l.starts_with(name))
                .with_context(|| format!("{name} in /proc/{pid}/status"))?;
            let kb: u64 = line
                .split_whitespace()
                .nth(1)
                .context("a number")?
                .parse()?;
            Ok(kb * 1024)
        };
        Ok((field("VmRSS:")?, field("VmHWM:")?))
    }

    /// Runs `order-service <args>` against the bench database; returns its standard output.
    pub async fn cli(&self, args: &[&str]) -> anyhow::Result<String> {
        let output = tokio::process::Command::new(&self.binary)
            .args(args)
            .env("DATABASE_URL", &self.db_url)
            .env("NATS_URL", &self.nats_url)
            .env("APP__NATS__PREFIX", &self.prefix)
            .output()
            .await?;
        anyhow::ensure!(
            output.status.success(),
            "order-service {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&output.stderr)
        );
        Ok(String::from_utf8(output.stdout)?)
    }

    /// Stops the service and drops the database.
    pub async fn stop(mut self) -> anyhow::Result<()> {
        if let Some(pid) = self.child.id() {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(i32::try_from(pid)?),
                nix::sys::signal::Signal::SIGTERM,
            );
        }
        let _ = tokio::time::timeout(Duration::from_secs(15), self.child.wait()).await;
        let _ = self.child.kill().await;
        self.pool.close().await;
        let mut admin = sqlx::PgConnection::connect(&self.admin_url).await?;
        sqlx::query(&format!("drop database \"{}\" with (force)", self.db_name))
            .execute(&mut admin)
            .await?;
        let _ = std::fs::remove_file(&self.log);
        // The run's streams too: left behind, every later run's nats-server carried them.
        let js = async_nats::jetstream::new(async_nats::connect(&self.nats_url).await?);
        for base in order_service::nats::STREAMS {
            let name = order_service::nats::Nats::stream_name_for(&self.prefix, base);
            if let Err(e) = js.delete_stream(&name).await {
                eprintln!("could not delete stream {name}: {e}");
            }
        }
        Ok(())
    }
}

fn free_port() -> anyhow::Result<u16> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(listener.local_addr()?.port())
}

/// Loads `benches/seed_orders.sql` (100k orders, their events and read models) and moves every
/// log reader past the seeded events, as if a long-running service had processed them.
async fn seed_orders(url: &url::Url, pool: &sqlx::PgPool) -> anyhow::Result<()> {
    // The script lives with the other benchmark inputs in the workspace root's `benches/`.
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../benches/seed_orders.sql");
    let started = Instant::now();
    eprintln!("  seeding 100k orders ({})...", script.display());
    let output = tokio::process::Command::new("psql")
        .arg(url.as_str())
        .args(["-q", "-v", "ON_ERROR_STOP=1", "-f"])
        .arg(&script)
        .output()
        .await
        .context("running psql")?;
    anyhow::ensure!(
        output.status.success(),
        "seeding failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    for reader in [
        order_service::read_models::PROJECTOR,
        order_service::workers::saga_reactor::READER,
        order_service::workers::relay::READER,
    ] {
        sqlx::query(
            "insert into reader_checkpoints (name, tx_id, position)
             select $1, max(tx_id), max(position) from events
             on conflict (name) do update set tx_id = excluded.tx_id, position = excluded.position",
        )
        .bind(reader)
        .execute(pool)
        .await?;
    }
    eprintln!("  seeded in {:.1} s", started.elapsed().as_secs_f64());
    Ok(())
}
