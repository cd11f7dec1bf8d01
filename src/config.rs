//! Configuration: defaults < `order-service.toml` (or `--config FILE`) < environment.
//!
//! Environment names follow DESIGN §12: `DATABASE_URL`, `NATS_URL`, and `APP__SECTION__KEY` for
//! everything else (`APP__HTTP__ADDR`, `APP__AUTH__JWT_SECRET`, ...). Secrets are wrapped in
//! [`SecretString`] so they never reach logs or `Debug` output.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use figment::providers::{Env, Format as _, Serialized, Toml};
use figment::Figment;
use secrecy::SecretString;
use serde::{Deserialize, Serialize};

/// The default of `workers.projector_batch_interval_ms`: at most 40 live batches a second
/// while the projector keeps up. Under the saga load at 60 sagas/s it ran 170 batches a second
/// of 4 events each, a third of a core for the projector's connection alone.
pub const PROJECTOR_BATCH_INTERVAL_MS: u64 = 25;

/// Every knob of the service, read once in `main` and passed down.
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct Settings {
    /// Postgres connection string; `None` in `dev` means "start an embedded cluster".
    #[serde(default, skip_serializing)]
    pub database_url: Option<SecretString>,
    /// NATS server URL(s), comma separated; `None` in `dev` means "start an embedded server".
    #[serde(default)]
    pub nats_url: Option<String>,
    pub http: HttpSettings,
    pub database: DatabaseSettings,
    pub nats: NatsSettings,
    pub auth: AuthSettings,
    pub simulator: SimulatorSettings,
    pub saga: SagaSettings,
    pub otel: OtelSettings,
    pub log: LogSettings,
    pub limits: LimitSettings,
    pub workers: WorkerSettings,
    pub live: LiveSettings,
}

/// Which background workers this process runs. Each log reader is single-active across
/// replicas anyway (advisory lock); turning one off here keeps a replica out of the election.
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct WorkerSettings {
    /// Keep the read models (the projector log reader).
    pub projector: bool,
    /// Run the saga machinery: reactor, relay, reply consumer, deadline worker (needs NATS).
    pub sagas: bool,
    /// The projector starts a batch at most this often (ms) while it keeps up, so events
    /// appended close together share one batch: its statements cost about the same for 4
    /// events as for 40. Read models trail by up to this much more; 0 applies every append
    /// at once.
    pub projector_batch_interval_ms: u64,
    /// The first wait (ms) before a failed worker is restarted; it doubles with each failure
    /// in a row (jittered to between half and all of it); see the supervisor module.
    pub restart_backoff_first_ms: u64,
    /// The longest wait (ms) before a failed worker is restarted.
    pub restart_backoff_max_ms: u64,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct HttpSettings {
    /// Listen address; port 0 picks a free port (tests).
    pub addr: SocketAddr,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct DatabaseSettings {
    /// Connections in the pool.
    pub max_connections: u32,
    /// How long a request waits for a free connection before it fails (ms).
    pub acquire_timeout_ms: u64,
    /// Run pending migrations at start-up (`serve`); `dev` always migrates.
    pub migrate_on_start: bool,
    /// Orders, and as many sagas, kept in memory as this process's last command left them, so
    /// the next command on one needs no load (0: none). Checked by the append's version,
    /// never trusted alone.
    pub order_cache_entries: usize,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct NatsSettings {
    /// Prefix for every subject and stream name (e.g. `tenant1.`), so tenants and tests can share
    /// one server.
    pub prefix: String,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct AuthSettings {
    /// HS256 secret. In `dev`, a random one is generated and printed when unset.
    #[serde(default, skip_serializing)]
    pub jwt_secret: Option<SecretString>,
    /// JWKS URL for RS256/ES256 (not implemented yet: start-up refuses it rather than ignore it).
    #[serde(default)]
    pub jwks_url: Option<String>,
    /// Required `iss` claim.
    pub issuer: String,
    /// Required `aud` claim.
    pub audience: String,
    /// Lifetime of tokens minted by `order-service token` (seconds).
    pub token_ttl_secs: u64,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct SimulatorSettings {
    /// Run the participant simulator in-process (`dev` defaults to true, `serve` to false).
    pub enabled: Option<bool>,
    /// Reply latency range (ms).
    pub min_latency_ms: u64,
    pub max_latency_ms: u64,
    /// Shares (0-1) of declined payments, out-of-stock reservations, lost replies and
    /// duplicated replies.
    pub decline_rate: f64,
    pub out_of_stock_rate: f64,
    pub silence_rate: f64,
    pub duplicate_reply_rate: f64,
    /// Units in stock of every SKU at start.
    pub default_stock: u64,
    pub seed: u64,
}

impl SimulatorSettings {
    /// The simulator's own configuration.
    pub fn to_config(&self) -> crate::simulator::SimulatorConfig {
        crate::simulator::SimulatorConfig {
            min_latency: std::time::Duration::from_millis(self.min_latency_ms),
            max_latency: std::time::Duration::from_millis(self.max_latency_ms),
            decline_rate: self.decline_rate,
            out_of_stock_rate: self.out_of_stock_rate,
            silence_rate: self.silence_rate,
            duplicate_reply_rate: self.duplicate_reply_rate,
            default_stock: self.default_stock,
            seed: self.seed,
            ..crate::simulator::SimulatorConfig::default()
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct SagaSettings {
    /// How long a saga step waits for its reply before re-sending (ms).
    pub step_timeout_ms: u64,
    /// Sends of one step before it is compensated.
    pub max_attempts: u32,
    /// Longest wait of any one attempt (waits double per attempt up to this) (ms).
    pub max_wait_ms: u64,
    /// A reply that cannot be applied for now (database out of reach) is delivered again
    /// after this, doubling per delivery up to `reply_retry_max_ms`, for as long as it takes
    /// (ms).
    pub reply_retry_first_ms: u64,
    /// Longest wait between two deliveries of such a reply (ms).
    pub reply_retry_max_ms: u64,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct OtelSettings {
    /// OTLP/HTTP endpoint; trace export is off when unset.
    #[serde(default)]
    pub endpoint: Option<String>,
    /// `service.name` resource attribute.
    pub service_name: String,
}

#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Json,
    Pretty,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct LogSettings {
    /// `json` (production) or `pretty`; unset means pretty in `dev`, json otherwise.
    pub format: Option<LogFormat>,
}

/// Batches a live feed may fall behind the follower before it catches up from the database,
/// by default (`APP__LIVE__BROADCAST_BATCHES`). Here, not in `live`, so the defaults need
/// nothing but this file.
pub const BROADCAST_BATCHES: usize = 256;

/// Live feeds (`/v1/orders/{id}/live`, `/v1/stores/{id}/live`).
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct LiveSettings {
    /// Batches of new events a feed may fall behind (its client reading slowly) before it
    /// reads what it missed from the database instead; memory is this many batches at most.
    pub broadcast_batches: usize,
}

/// Bounds on what one request may ask for (DESIGN §10: bodies size-limited, lists bounded).
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct LimitSettings {
    /// Largest accepted request body in bytes.
    pub max_body_bytes: usize,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            database_url: None,
            nats_url: None,
            http: HttpSettings {
                addr: SocketAddr::from(([127, 0, 0, 1], 8080)),
            },
            database: DatabaseSettings {
                max_connections: 32,
                acquire_timeout_ms: 5_000,
                migrate_on_start: false,
                order_cache_entries: 10_000,
            },
            nats: NatsSettings {
                prefix: String::new(),
            },
            auth: AuthSettings {
                jwt_secret: None,
                jwks_url: None,
                issuer: "order-service".into(),
                audience: "order-service".into(),
                token_ttl_secs: 8 * 3600,
            },
            simulator: SimulatorSettings {
                enabled: None,
                min_latency_ms: 0,
                max_latency_ms: 0,
                decline_rate: 0.0,
                out_of_stock_rate: 0.0,
                silence_rate: 0.0,
                duplicate_reply_rate: 0.0,
                default_stock: 1_000_000,
                seed: 0,
            },
            saga: SagaSettings {
                step_timeout_ms: 10_000,
                max_attempts: 5,
                max_wait_ms: 300_000,
                reply_retry_first_ms: 200,
                reply_retry_max_ms: 30_000,
            },
            otel: OtelSettings {
                endpoint: None,
                service_name: "order-service".into(),
            },
            log: LogSettings { format: None },
            limits: LimitSettings {
                max_body_bytes: 64 * 1024,
            },
            workers: WorkerSettings {
                projector: true,
                sagas: true,
                projector_batch_interval_ms: PROJECTOR_BATCH_INTERVAL_MS,
                restart_backoff_first_ms: 1_000,
                restart_backoff_max_ms: 30_000,
            },
            live: LiveSettings {
                broadcast_batches: BROADCAST_BATCHES,
            },
        }
    }
}

impl Settings {
    /// Loads defaults, then the TOML file (the given one, else `order-service.toml` if present),
    /// then the environment.
    pub fn load(file: Option<&Path>) -> anyhow::Result<Self> {
        let mut figment = Figment::from(Serialized::defaults(Settings::default()));
        let file: Option<PathBuf> = match file {
            Some(path) => {
                anyhow::ensure!(
                    path.exists(),
                    "config file {} does not exist",
                    path.display()
                );
                Some(path.to_path_buf())
            }
            None => Some(PathBuf::from("order-service.toml")).filter(|p| p.exists()),
        };
        if let Some(path) = file {
            figment = figment.merge(Toml::file(path));
        }
        figment = figment.merge(Env::prefixed("APP__").split("__")).merge(
            Env::raw()
                .only(&["DATABASE_URL", "NATS_URL"])
                .map(|k| k.as_str().to_ascii_lowercase().into()),
        );
        figment.extract().context("invalid configuration")
    }
}

#[cfg(test)]
#[expect(clippy::result_large_err, reason = "figment::Jail's closure signature")]
mod tests {
    use super::*;

    #[test]
    fn environment_overrides_defaults_with_double_underscore_sections() {
        figment::Jail::expect_with(|jail| {
            jail.set_env("APP__HTTP__ADDR", "0.0.0.0:9090");
            jail.set_env("APP__NATS__PREFIX", "t1.");
            jail.set_env("APP__SAGA__MAX_ATTEMPTS", "7");
            jail.set_env("DATABASE_URL", "postgres://x@localhost/db");
            let s = Settings::load(None).expect("loads");
            assert_eq!(s.http.addr.port(), 9090);
            assert_eq!(s.nats.prefix, "t1.");
            assert_eq!(s.saga.max_attempts, 7);
            assert!(s.database_url.is_some());
            assert_eq!(s.auth.issuer, "order-service");
            Ok(())
        });
    }

    #[test]
    fn file_sits_between_defaults_and_environment() {
        figment::Jail::expect_with(|jail| {
            jail.create_file(
                "order-service.toml",
                "[http]\naddr = \"127.0.0.1:7000\"\n[nats]\nprefix = \"file.\"\n",
            )?;
            jail.set_env("APP__NATS__PREFIX", "env.");
            let s = Settings::load(None).expect("loads");
            assert_eq!(s.http.addr.port(), 7000);
            assert_eq!(s.nats.prefix, "env.");
            Ok(())
        });
    }
}
