//! A `deploy/local-cluster` of this test: 3 NATS nodes, 3 replicas, in a fresh directory, on a
//! free block of ports; `down` and the directory's removal on drop.

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use sqlx::PgPool;
use uuid::Uuid;

const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/local-cluster");
/// Ports the script uses above its base port.
const PORT_SPAN: u16 = 50;
pub const REPLICAS: usize = 3;
/// The log readers that run single-active (advisory lock, checkpoint row).
pub const READERS: [&str; 3] = ["projector", "saga-reactor", "relay"];

/// The `order-service` binary the cluster runs: `ORDER_FAULTS_BIN` when set (a copy, so that a
/// long run is not disturbed by a rebuild of `target/`: a restarted replica would start the
/// new binary, with its new migrations pending), else the one cargo built for this test.
fn service_bin() -> String {
    std::env::var("ORDER_FAULTS_BIN")
        .unwrap_or_else(|_| env!("CARGO_BIN_EXE_order-service").to_owned())
}

pub struct LocalCluster {
    pub dir: PathBuf,
    pub base_port: u16,
    env: HashMap<String, String>,
}

impl LocalCluster {
    /// A cluster brought up (every part healthy).
    pub async fn up() -> Self {
        let mut cluster = Self {
            dir: std::env::temp_dir().join(format!("order-faults-{}", Uuid::new_v4().simple())),
            base_port: free_port_block(),
            env: HashMap::new(),
        };
        let (ok, out) = cluster.run(&["up"]).await;
        assert!(ok, "local-cluster up failed:\n{out}");
        let (ok, out) = cluster.run(&["env"]).await;
        assert!(ok, "env: {out}");
        cluster.env = out
            .lines()
            .filter_map(|l| l.strip_prefix("export "))
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.to_owned(), v.trim_matches('\'').to_owned()))
            .collect();
        cluster
    }

    /// Runs `deploy/local-cluster ARGS`; success and its output (stderr included).
    pub async fn run(&self, args: &[&str]) -> (bool, String) {
        let python = std::env::var("ORDER_TEST_PYTHON").unwrap_or_else(|_| "python3".into());
        let mut cmd = tokio::process::Command::new(python);
        cmd.arg(SCRIPT)
            .arg("--dir")
            .arg(&self.dir)
            .args(["--base-port", &self.base_port.to_string()])
            .args(["--replicas", &REPLICAS.to_string()])
            .args(args)
            .env("ORDER_SERVICE_BIN", service_bin())
            .env("RUST_LOG", "info")
            .stdin(Stdio::null());
        if let Some(nats) = std::env::var_os("ORDER_TEST_NATS_SERVER") {
            cmd.env("NATS_SERVER_BIN", nats);
        }
        let out = cmd.output().await.expect("deploy/local-cluster runs");
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        (out.status.success(), text)
    }

    /// `ACTION PART` (kill, stop, cont, restart, term), which must succeed.
    pub async fn fault(&self, action: &str, part: &str) {
        let (ok, out) = self.run(&[action, part]).await;
        assert!(ok, "{action} {part}: {out}");
    }

    /// `up` again: brings back every part not running, waits until all are healthy.
    pub async fn bring_back(&self) {
        let (ok, out) = self.run(&["up"]).await;
        assert!(ok, "up (bringing parts back) failed:\n{out}");
    }

    pub fn var(&self, name: &str) -> &str {
        self.env
            .get(name)
            .unwrap_or_else(|| panic!("local-cluster env has no {name}"))
    }

    pub fn service_urls(&self) -> Vec<String> {
        self.var("ORDER_SERVICE_URLS")
            .split(',')
            .map(str::to_owned)
            .collect()
    }

    pub fn service_url(&self, replica: usize) -> String {
        format!(
            "http://127.0.0.1:{}",
            self.base_port + 40 + u16::try_from(replica).expect("small")
        )
    }

    pub fn jwt_secret(&self) -> String {
        self.var("APP__AUTH__JWT_SECRET").to_owned()
    }

    /// A pool as the migrator (reads everything, `pg_locks` included), reconnecting lazily.
    pub fn pool(&self) -> PgPool {
        sqlx::postgres::PgPoolOptions::new()
            .max_connections(4)
            .acquire_timeout(Duration::from_secs(3))
            .connect_lazy(self.var("MIGRATOR_DATABASE_URL"))
            .expect("a database URL")
    }

    /// `order-service verify` as a process against the cluster, every invariant: the database
    /// (`DATABASE_URL`), the relayed streams (NATS as the service) and the inventory's books,
    /// made final by stopping the simulator first (every saga has settled by then). Whether it
    /// passed, and what it printed.
    pub async fn verify(&self) -> (bool, String) {
        self.fault("term", "simulator").await;
        let out = tokio::process::Command::new(service_bin())
            .args(["verify", "--settle-secs", "60", "--books"])
            .arg(self.var("ORDER_SIMULATOR_BOOKS"))
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("DATABASE_URL", self.var("DATABASE_URL"))
            .env("NATS_URL", self.var("NATS_URL"))
            .env("APP__NATS__USER", self.var("APP__NATS__USER"))
            .env("APP__NATS__PASSWORD", self.var("APP__NATS__PASSWORD"))
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .output()
            .await
            .expect("order-service verify runs");
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        (out.status.success(), text)
    }

    /// The replica (1..) whose `/metrics` says it runs `reader` now, if any answers so.
    pub async fn reader_holder(&self, reader: &str, client: &reqwest::Client) -> Option<usize> {
        let needle = format!("log_reader_active{{reader=\"{reader}\"}} 1");
        for replica in 1..=REPLICAS {
            let page = client
                .get(format!("{}/metrics", self.service_url(replica)))
                .timeout(Duration::from_secs(2))
                .send()
                .await;
            let Ok(page) = page else { continue };
            let Ok(text) = page.text().await else {
                continue;
            };
            if text.lines().any(|l| l.trim() == needle) {
                return Some(replica);
            }
        }
        None
    }
}

impl Drop for LocalCluster {
    fn drop(&mut self) {
        let python = std::env::var("ORDER_TEST_PYTHON").unwrap_or_else(|_| "python3".into());
        let down = std::process::Command::new(python)
            .arg(SCRIPT)
            .arg("--dir")
            .arg(&self.dir)
            .arg("down")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        // a failed `down` keeps the directory: its pids are what a later `down` needs
        if down && std::env::var_os("ORDER_FAULTS_KEEP").is_none() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// The first base port (from 19100 up, away from `tests/api/local_cluster.rs`'s 17400..) whose
/// whole block is free.
fn free_port_block() -> u16 {
    (191..=300)
        .map(|hundreds: u16| hundreds * 100)
        .find(|base| {
            (*base..base + PORT_SPAN)
                .all(|port| std::net::TcpListener::bind(("127.0.0.1", port)).is_ok())
        })
        .expect("a free block of ports")
}

/// Each reader's checkpoint `(tx_id, position)` as text (compared for change only).
pub async fn checkpoints(pool: &PgPool) -> HashMap<String, String> {
    sqlx::query_as::<_, (String, String)>(
        "select name, tx_id::text || ':' || position::text from reader_checkpoints",
    )
    .fetch_all(pool)
    .await
    .unwrap_or_default()
    .into_iter()
    .collect()
}

/// Waits until `reader`'s checkpoint differs from `from`; when it did, or `None` after
/// `patience`.
pub async fn checkpoint_moves(
    pool: &PgPool,
    reader: &str,
    from: Option<&String>,
    patience: Duration,
) -> Option<Instant> {
    crate::poll::within(patience, || async {
        let now = checkpoints(pool).await;
        now.get(reader)
            .filter(|at| Some(*at) != from)
            .map(|_| Instant::now())
    })
    .await
}
