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

const DAY_SECS: u64 = 24 * 3600;

/// `NATS_URL` as configured. It may carry a user and password (`nats://user:pass@host`), so its
/// `Debug` shows the servers only; the connection takes the credentials out before anything
/// else sees it (`nats::connect`).
#[derive(Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct NatsUrl(String);

impl NatsUrl {
    /// The URL(s) as written, credentials included: for connecting only.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::ops::Deref for NatsUrl {
    type Target = str;

    fn deref(&self) -> &str {
        &self.0
    }
}

impl From<String> for NatsUrl {
    fn from(url: String) -> Self {
        Self(url)
    }
}

impl From<&str> for NatsUrl {
    fn from(url: &str) -> Self {
        Self(url.to_owned())
    }
}

impl std::fmt::Debug for NatsUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let shown: Vec<String> = self
            .0
            .split(',')
            .map(|raw| match url::Url::parse(raw.trim()) {
                Ok(mut url) => {
                    // cannot fail for URLs with a host, which NATS URLs are
                    let _ = url.set_username("");
                    let _ = url.set_password(None);
                    url.to_string()
                }
                Err(_) => "..".to_owned(),
            })
            .collect();
        write!(f, "NatsUrl({})", shown.join(", "))
    }
}

/// Every knob of the service, read once in `main` and passed down.
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct Settings {
    /// Postgres connection string; `None` in `dev` means "start an embedded cluster".
    #[serde(default, skip_serializing)]
    pub database_url: Option<SecretString>,
    /// NATS server URL(s), comma separated; `None` in `dev` means "start an embedded server".
    /// May carry `user:password@`: never printed (see [`NatsUrl`]).
    #[serde(default, skip_serializing)]
    pub nats_url: Option<NatsUrl>,
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
    pub notify: NotifySettings,
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
    /// Longest wait for an HTTP/1 request's headers, keep-alive time included: a client that
    /// trickles them (slowloris) is disconnected (ms).
    pub header_timeout_ms: u64,
    /// A connection that carries nothing at all for this long is closed, whatever its
    /// protocol (ms). Above the live feeds' 15 s keep-alives.
    pub idle_timeout_ms: u64,
    /// Connections served at once; more wait in the kernel's backlog. Mind the process's file
    /// descriptor limit (`ulimit -n`), which the database pool and NATS share.
    pub max_connections: usize,
    /// After SIGTERM or Ctrl-C, how long the service keeps serving with `/health/ready`
    /// answering 503 before it stops accepting connections (ms), so load balancers take it out
    /// of rotation first; then requests in flight drain.
    pub shutdown_delay_ms: u64,
    /// Origins whose browser pages may call the API (`APP__HTTP__CORS_ORIGINS`: a
    /// comma-separated list such as `https://shop.example,https://admin.example`, or `*`);
    /// none when empty, the default. See `http::cors`.
    #[serde(default)]
    pub cors_origins: CorsOrigins,
}

impl Default for HttpSettings {
    fn default() -> Self {
        Self {
            addr: SocketAddr::from(([127, 0, 0, 1], 8080)),
            header_timeout_ms: 10_000,
            idle_timeout_ms: 60_000,
            max_connections: 1_024,
            shutdown_delay_ms: 5_000,
            cors_origins: CorsOrigins::default(),
        }
    }
}

/// A list of origins, written as one comma-separated string (an environment variable) or as a
/// list (a configuration file).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(into = "String")]
pub struct CorsOrigins(pub Vec<String>);

impl From<CorsOrigins> for String {
    fn from(origins: CorsOrigins) -> Self {
        origins.0.join(",")
    }
}

impl<'de> Deserialize<'de> for CorsOrigins {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Written {
            One(String),
            Many(Vec<String>),
        }
        let listed = match Written::deserialize(deserializer)? {
            Written::One(one) => one.split(',').map(str::to_owned).collect(),
            Written::Many(many) => many,
        };
        Ok(Self(
            listed
                .into_iter()
                .map(|o| o.trim().trim_end_matches('/').to_owned())
                .filter(|o| !o.is_empty())
                .collect(),
        ))
    }
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
    /// How the service authenticates (`APP__NATS__CREDS_FILE`, `APP__NATS__USER` /
    /// `APP__NATS__PASSWORD`, `APP__NATS__NKEY_SEED`); none: anonymous. A user and password in
    /// `NATS_URL` are used too, but never printed.
    #[serde(flatten)]
    pub credentials: NatsCredentials,
    /// PEM file of the certificate authority that signed the servers' certificates; set, the
    /// connection requires TLS (`APP__NATS__TLS_CA_FILE`).
    #[serde(default)]
    pub tls_ca_file: Option<PathBuf>,
    /// Whether order events on `ORDER_EVENTS` carry the customer's personal data (email,
    /// shipping address). Off by default: every subscriber of the stream would get it.
    pub publish_personal_data: bool,
    /// Bounds of each stream (`APP__NATS__STREAMS__ORDER_EVENTS__MAX_BYTES`, ...).
    pub streams: StreamsSettings,
}

/// How one NATS identity authenticates: a `.creds` file (JWT + nkey), an nkey seed, or a user
/// and password. Secrets never reach logs or `Debug` output.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
pub struct NatsCredentials {
    /// A `.creds` file (decentralized JWT auth).
    #[serde(default)]
    pub creds_file: Option<PathBuf>,
    /// User name (with `password`).
    #[serde(default)]
    pub user: Option<String>,
    #[serde(default, skip_serializing)]
    pub password: Option<SecretString>,
    /// An nkey seed (`SU...`).
    #[serde(default, skip_serializing)]
    pub nkey_seed: Option<SecretString>,
}

impl NatsCredentials {
    /// Whether any credential is configured.
    pub fn is_set(&self) -> bool {
        self.creds_file.is_some()
            || self.user.is_some()
            || self.password.is_some()
            || self.nkey_seed.is_some()
    }
}

/// Retention of one JetStream stream. When a limit is reached the oldest messages are dropped
/// (discard policy `old`): a stream never refuses the service's writes.
#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq)]
pub struct StreamLimits {
    /// Longest a message is kept (seconds). At least the 10-minute duplicate window.
    pub max_age_secs: u64,
    /// Most bytes the stream keeps.
    pub max_bytes: i64,
}

/// The bounds of each stream (DESIGN §8). The saga does not depend on old messages: an
/// unanswered command is re-sent and a lost reply is asked for again, so these only bound how
/// far back a late subscriber or an operator can look.
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct StreamsSettings {
    /// `ORDER_EVENTS`: what subscribers (notifications, analytics) can replay. 7 days, 1 GiB.
    pub order_events: StreamLimits,
    /// `SAGA_COMMANDS`. 7 days, 256 MiB.
    pub saga_commands: StreamLimits,
    /// `SAGA_REPLIES`. 7 days, 256 MiB.
    pub saga_replies: StreamLimits,
    /// `DEAD_LETTERS`: replies that could never be processed, kept for an operator. Anyone
    /// allowed to publish a reply subject can fill it, hence small: 14 days, 64 MiB.
    pub dead_letters: StreamLimits,
    /// Copies JetStream keeps of every stream (and so of the consumers on it), each on its own
    /// server of the cluster (`APP__NATS__STREAMS__REPLICAS`): 3 on a 3-node cluster (DESIGN
    /// §13), so a message acknowledged to the relay survives the loss of any one server; 1 on
    /// a single server, which refuses more. Changed later, the streams are updated in place.
    pub replicas: usize,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct AuthSettings {
    /// HS256 secret. In `dev`, a random one is generated and printed when unset.
    #[serde(default, skip_serializing)]
    pub jwt_secret: Option<SecretString>,
    /// The identity provider's JWKS URL (`https://`, or `http://` to loopback). Set, tokens
    /// must be RS256, ES256 or EdDSA signed by one of its keys, and HS256 is refused.
    #[serde(default)]
    pub jwks_url: Option<String>,
    /// Longest accepted token lifetime, in seconds (`exp - iat`, and `exp - now`).
    pub max_token_lifetime_secs: u64,
    /// Where the role names are in a token: a claim name, or a dotted path
    /// (`realm_access.roles` for Keycloak realm roles).
    pub roles_claim: String,
    /// Where the store ids of staff and store-scoped services are (same syntax).
    pub store_ids_claim: String,
    /// How often the JWKS is fetched again (ms).
    pub jwks_refresh_interval_ms: u64,
    /// Shortest time between two JWKS fetches caused by tokens naming an unknown `kid` (ms).
    pub jwks_min_refresh_interval_ms: u64,
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
    /// How the simulated inventory participant authenticates to NATS
    /// (`APP__SIMULATOR__INVENTORY__USER`, ...); unset: the service's own connection.
    #[serde(default)]
    pub inventory: NatsCredentials,
    /// How the simulated payment participant authenticates (`APP__SIMULATOR__PAYMENT__...`).
    #[serde(default)]
    pub payment: NatsCredentials,
    /// Where to keep the inventory's books as JSON (rewritten after every change and at
    /// shutdown), for `order-service verify --books` (I4). Unset: nowhere.
    #[serde(default)]
    pub books_file: Option<PathBuf>,
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

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
pub struct OtelSettings {
    /// Where traces go: the collector's base URL (`http://collector:4318` over HTTP, to which
    /// `/v1/traces` is added; `http://collector:4317` over gRPC). Unset: the standard
    /// `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` or `OTEL_EXPORTER_OTLP_ENDPOINT`; export is off
    /// when none is set (trace ids still reach logs and NATS headers).
    #[serde(default)]
    pub endpoint: Option<String>,
    /// `grpc` or `http/protobuf`. Unset: `OTEL_EXPORTER_OTLP_TRACES_PROTOCOL`,
    /// `OTEL_EXPORTER_OTLP_PROTOCOL`, else `http/protobuf`.
    #[serde(default)]
    pub protocol: Option<String>,
    /// `service.name`. Unset: `OTEL_SERVICE_NAME`, else `order-service`.
    #[serde(default)]
    pub service_name: Option<String>,
    /// `service.instance.id`. Unset: a fresh UUID per process (the OTel convention).
    #[serde(default)]
    pub instance_id: Option<String>,
    /// Share of the traces this service starts that are kept, 0.0 to 1.0; a caller's decision
    /// (its `traceparent`'s sampled flag) is always followed. Unset: `OTEL_TRACES_SAMPLER` /
    /// `OTEL_TRACES_SAMPLER_ARG`, else every trace.
    #[serde(default)]
    pub sample_ratio: Option<f64>,
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
    /// How far back a store feed resumes (seconds): an older resume id gets 410
    /// `resume-too-old` (the client reads the order list, then opens the feed from now).
    pub store_resume_max_age_secs: u64,
}

/// Email notifications (DESIGN §13, `notify`): off unless `smtp_url` is set.
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct NotifySettings {
    /// `smtp://host:port` (STARTTLS when offered), `smtps://host:465`, with `user:password@`
    /// when the relay wants it; `log:` prints each email to the log instead (the dev stack).
    #[serde(default, skip_serializing)]
    pub smtp_url: Option<SecretString>,
    /// The sender's address; the store's name is its display name.
    pub from: String,
    /// First wait before a transient failure (4xx, connection) is retried (ms); it doubles
    /// per attempt up to `retry_max_ms`.
    pub retry_first_ms: u64,
    pub retry_max_ms: u64,
    /// How long transient failures are retried before the email is marked failed (seconds).
    pub retry_for_secs: u64,
    /// Longest one delivery may take before it counts as a transient failure (ms).
    pub send_timeout_ms: u64,
    /// How often the sender looks for due emails when it finds none (ms).
    pub poll_interval_ms: u64,
}

impl Default for NotifySettings {
    fn default() -> Self {
        Self {
            smtp_url: None,
            from: "orders@localhost".into(),
            retry_first_ms: 1_000,
            retry_max_ms: 600_000,
            retry_for_secs: 5 * DAY_SECS,
            send_timeout_ms: 30_000,
            poll_interval_ms: 1_000,
        }
    }
}

/// Bounds on what one request may ask for (DESIGN §10: bodies size-limited, lists bounded).
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct LimitSettings {
    /// Largest accepted request body in bytes.
    pub max_body_bytes: usize,
    /// Longest wait for a request's whole body: 408 after it (ms).
    pub body_timeout_ms: u64,
    /// Commands per second one caller (token subject) may send, sustained; 429 with
    /// `Retry-After` beyond it. A storefront backend that sends every customer's commands
    /// with one service token is one caller: size this for it.
    pub commands_per_second: u32,
    /// Commands one caller may send at once above the sustained rate.
    pub command_burst: u32,
    /// Live feeds one caller may hold open at once in this process; 429 beyond.
    pub feeds_per_subject: usize,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            database_url: None,
            nats_url: None,
            http: HttpSettings::default(),
            database: DatabaseSettings {
                max_connections: 32,
                acquire_timeout_ms: 5_000,
                migrate_on_start: false,
                order_cache_entries: 10_000,
            },
            nats: NatsSettings {
                prefix: String::new(),
                credentials: NatsCredentials::default(),
                tls_ca_file: None,
                publish_personal_data: false,
                streams: StreamsSettings {
                    order_events: StreamLimits {
                        max_age_secs: 7 * DAY_SECS,
                        max_bytes: 1 << 30,
                    },
                    saga_commands: StreamLimits {
                        max_age_secs: 7 * DAY_SECS,
                        max_bytes: 256 << 20,
                    },
                    saga_replies: StreamLimits {
                        max_age_secs: 7 * DAY_SECS,
                        max_bytes: 256 << 20,
                    },
                    dead_letters: StreamLimits {
                        max_age_secs: 14 * DAY_SECS,
                        max_bytes: 64 << 20,
                    },
                    replicas: 1,
                },
            },
            auth: AuthSettings {
                jwt_secret: None,
                jwks_url: None,
                issuer: "order-service".into(),
                audience: "order-service".into(),
                token_ttl_secs: 8 * 3600,
                max_token_lifetime_secs: DAY_SECS,
                roles_claim: "roles".into(),
                store_ids_claim: "store_ids".into(),
                jwks_refresh_interval_ms: 300_000,
                jwks_min_refresh_interval_ms: 10_000,
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
                inventory: NatsCredentials::default(),
                payment: NatsCredentials::default(),
                books_file: None,
            },
            saga: SagaSettings {
                step_timeout_ms: 10_000,
                max_attempts: 5,
                max_wait_ms: 300_000,
                reply_retry_first_ms: 200,
                reply_retry_max_ms: 30_000,
            },
            otel: OtelSettings::default(),
            log: LogSettings { format: None },
            limits: LimitSettings {
                max_body_bytes: 64 * 1024,
                body_timeout_ms: 10_000,
                commands_per_second: 200,
                command_burst: 400,
                feeds_per_subject: 16,
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
                store_resume_max_age_secs: 3_600,
            },
            notify: NotifySettings::default(),
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
        let known = known_keys();
        if let Some(path) = file {
            let in_file = figment::Provider::data(&Toml::file(&path))
                .with_context(|| format!("reading {}", path.display()))?;
            for dict in in_file.values() {
                if let Some(unknown) = dotted_keys(dict).find(|k| !known.contains(k)) {
                    anyhow::bail!(
                        "{}: unknown setting `{unknown}`{}",
                        path.display(),
                        suggestion(&known, &unknown)
                    );
                }
            }
            figment = figment.merge(Toml::file(path));
        }
        for (name, _) in std::env::vars_os() {
            let Some(name) = name.to_str() else { continue };
            let Some(rest) = name.strip_prefix("APP__") else {
                continue;
            };
            let key = rest.to_ascii_lowercase().replace("__", ".");
            if !known.contains(&key) {
                anyhow::bail!(
                    "unknown setting {name} (`{key}`){}",
                    suggestion(&known, &key)
                );
            }
        }
        let app_env = || Env::prefixed("APP__").split("__");
        figment = figment
            .merge(app_env().filter(|key| !is_text_key(key.as_str())))
            .merge(TextEnv(app_env().filter(|key| is_text_key(key.as_str()))))
            .merge(TextEnv(
                Env::raw()
                    .only(&["DATABASE_URL", "NATS_URL"])
                    .map(|k| k.as_str().to_ascii_lowercase().into()),
            ));
        figment.extract().context("invalid configuration")
    }
}

/// Settings kept out of serialization (secrets, and the URLs that may carry them): known keys
/// all the same.
const UNSERIALIZED_KEYS: [&str; 10] = [
    "database_url",
    "notify.smtp_url",
    "nats_url",
    "auth.jwt_secret",
    "nats.password",
    "nats.nkey_seed",
    "simulator.inventory.password",
    "simulator.inventory.nkey_seed",
    "simulator.payment.password",
    "simulator.payment.nkey_seed",
];

/// Every setting's dotted key (`http.addr`, `nats.streams.dead_letters.max_bytes`), sections
/// included: what a file or an `APP__` variable may name. A misspelt one (`APP__HTTP__ADRR`)
/// stops the start with its name instead of being ignored.
fn known_keys() -> std::collections::BTreeSet<String> {
    fn walk(prefix: &str, value: &serde_json::Value, out: &mut std::collections::BTreeSet<String>) {
        if let serde_json::Value::Object(map) = value {
            for (k, v) in map {
                let key = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                walk(&key, v, out);
                out.insert(key);
            }
        }
    }
    let mut known = std::collections::BTreeSet::new();
    // Serializing the defaults of plain data cannot fail.
    if let Ok(defaults) = serde_json::to_value(Settings::default()) {
        walk("", &defaults, &mut known);
    }
    known.extend(UNSERIALIZED_KEYS.iter().map(|k| (*k).to_owned()));
    known
}

/// The dotted keys of a figment dictionary, leaves and sections.
fn dotted_keys(dict: &figment::value::Dict) -> impl Iterator<Item = String> {
    fn walk(prefix: &str, dict: &figment::value::Dict, out: &mut Vec<String>) {
        for (k, v) in dict {
            let key = if prefix.is_empty() {
                k.clone()
            } else {
                format!("{prefix}.{k}")
            };
            if let figment::value::Value::Dict(_, inner) = v {
                walk(&key, inner, out);
            }
            out.push(key);
        }
    }
    let mut out = Vec::new();
    walk("", dict, &mut out);
    out.into_iter()
}

/// "; known in that section: a, b, c" for an unknown key, when its section exists.
fn suggestion(known: &std::collections::BTreeSet<String>, unknown: &str) -> String {
    let section = unknown.rsplit_once('.').map_or("", |(s, _)| s);
    let siblings: Vec<&str> = known
        .iter()
        .filter_map(|k| {
            let (parent, name) = k.rsplit_once('.').unwrap_or(("", k));
            (parent == section).then_some(name)
        })
        .collect();
    if siblings.is_empty() {
        String::new()
    } else {
        format!("; known there: {}", siblings.join(", "))
    }
}

/// Keys (their last part) whose values are text whatever they look like: figment's `Env` reads
/// `007` as the number 7 and `4711` as a number a string field refuses.
const TEXT_KEYS: [&str; 13] = [
    "smtp_url",
    "from",
    "password",
    "nkey_seed",
    "jwt_secret",
    "user",
    "prefix",
    "issuer",
    "audience",
    "key_encryption_key",
    "jwks_url",
    "roles_claim",
    "store_ids_claim",
];

fn is_text_key(key: &str) -> bool {
    let last = key.rsplit('.').next().unwrap_or(key);
    TEXT_KEYS.iter().any(|k| last.eq_ignore_ascii_case(k))
}

/// An environment provider whose values are kept as the strings they are.
struct TextEnv(Env);

impl figment::Provider for TextEnv {
    fn metadata(&self) -> figment::Metadata {
        self.0.metadata()
    }

    fn data(
        &self,
    ) -> Result<figment::value::Map<figment::Profile, figment::value::Dict>, figment::Error> {
        let mut dict = figment::value::Dict::new();
        for (key, value) in self.0.iter() {
            let key = key.as_str().to_ascii_lowercase();
            if let Some(nested) = figment::util::nest(&key, value.into()).into_dict() {
                for (k, v) in nested {
                    merge_into(&mut dict, k, v);
                }
            }
        }
        Ok(figment::Profile::Default.collect(dict))
    }
}

/// Inserts `key: value` into `dict`, merging nested dictionaries.
fn merge_into(dict: &mut figment::value::Dict, key: String, value: figment::value::Value) {
    use figment::value::Value;
    match (dict.get_mut(&key), value) {
        (Some(Value::Dict(_, existing)), Value::Dict(_, new)) => {
            for (k, v) in new {
                merge_into(existing, k, v);
            }
        }
        (_, value) => {
            dict.insert(key, value);
        }
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
            jail.set_env(
                "APP__HTTP__CORS_ORIGINS",
                "https://shop.example, http://localhost:5173/",
            );
            let s = Settings::load(None).expect("loads");
            assert_eq!(s.http.addr.port(), 9090);
            assert_eq!(
                s.http.cors_origins.0,
                ["https://shop.example", "http://localhost:5173"]
            );
            assert_eq!(s.nats.prefix, "t1.");
            assert_eq!(s.saga.max_attempts, 7);
            assert!(s.database_url.is_some());
            assert_eq!(s.auth.issuer, "order-service");
            Ok(())
        });
    }

    #[test]
    fn nats_credentials_come_from_the_documented_variables_and_stay_secret() {
        figment::Jail::expect_with(|jail| {
            jail.set_env("APP__NATS__USER", "order-service");
            // a password that looks like a number is still a password, leading zero and all
            jail.set_env("APP__NATS__PASSWORD", "012345");
            jail.set_env("APP__NATS__TLS_CA_FILE", "/etc/nats/ca.pem");
            jail.set_env("APP__SIMULATOR__PAYMENT__USER", "payment");
            jail.set_env("APP__SIMULATOR__PAYMENT__PASSWORD", "4711");
            jail.set_env("APP__NATS__STREAMS__DEAD_LETTERS__MAX_BYTES", "4096");
            let s = Settings::load(None).expect("loads");
            let c = &s.nats.credentials;
            assert_eq!(c.user.as_deref(), Some("order-service"));
            assert_eq!(
                c.password
                    .as_ref()
                    .map(secrecy::ExposeSecret::expose_secret),
                Some("012345")
            );
            assert_eq!(s.nats.tls_ca_file, Some(PathBuf::from("/etc/nats/ca.pem")));
            assert_eq!(s.simulator.payment.user.as_deref(), Some("payment"));
            assert!(!s.simulator.inventory.is_set());
            assert_eq!(s.nats.streams.dead_letters.max_bytes, 4096);
            assert_eq!(s.nats.streams.order_events.max_bytes, 1 << 30);
            let printed = format!("{s:?}");
            assert!(!printed.contains("012345") && !printed.contains("4711"));
            jail.set_env("NATS_URL", "nats://svc:in-the-url-42@nats-1:4222");
            let s = Settings::load(None).expect("loads");
            let printed = format!("{s:?}");
            assert!(!printed.contains("in-the-url-42"), "{printed}");
            assert!(printed.contains("nats://nats-1:4222"), "{printed}");
            Ok(())
        });
    }

    #[test]
    fn an_unknown_setting_stops_the_start_with_its_name() {
        figment::Jail::expect_with(|jail| {
            jail.set_env("APP__HTTP__ADRR", "0.0.0.0:9090");
            let e = Settings::load(None).expect_err("a misspelt key is refused");
            let text = format!("{e:#}");
            assert!(text.contains("APP__HTTP__ADRR"), "{text}");
            assert!(
                text.contains("addr"),
                "the known keys are suggested: {text}"
            );
            Ok(())
        });
        figment::Jail::expect_with(|jail| {
            jail.create_file("order-service.toml", "[nats]\npreffix = \"t1.\"\n")?;
            let e = Settings::load(None).expect_err("a misspelt key is refused");
            assert!(format!("{e:#}").contains("nats.preffix"), "{e:#}");
            Ok(())
        });
        // counter-test: every documented kind of key is known, secrets and sections included
        figment::Jail::expect_with(|jail| {
            for (k, v) in [
                ("APP__HTTP__ADDR", "127.0.0.1:1"),
                ("APP__NATS__PASSWORD", "p"),
                ("APP__NATS__USER", "u"),
                ("APP__SIMULATOR__PAYMENT__NKEY_SEED", "SU"),
                ("APP__NATS__STREAMS__DEAD_LETTERS__MAX_BYTES", "4096"),
                ("APP__AUTH__JWT_SECRET", "s"),
                ("APP__NOTIFY__SMTP_URL", "smtps://u:p4ss@mail:465"),
                ("APP__NOTIFY__FROM", "orders@shop.example"),
            ] {
                jail.set_env(k, v);
            }
            jail.create_file("order-service.toml", "[limits]\nfeeds_per_subject = 3\n")?;
            let s = Settings::load(None).expect("known keys load");
            assert_eq!(s.limits.feeds_per_subject, 3);
            assert_eq!(s.notify.from, "orders@shop.example");
            assert!(
                !format!("{s:?}").contains("p4ss"),
                "the SMTP password stays secret"
            );
            Ok(())
        });
    }

    #[test]
    fn file_sits_between_defaults_and_environment() {
        figment::Jail::expect_with(|jail| {
            jail.create_file(
                "order-service.toml",
                "[http]\naddr = \"127.0.0.1:7000\"\ncors_origins = [\"https://a.example\"]\n\
                 [nats]\nprefix = \"file.\"\n",
            )?;
            jail.set_env("APP__NATS__PREFIX", "env.");
            let s = Settings::load(None).expect("loads");
            assert_eq!(s.http.addr.port(), 7000);
            assert_eq!(s.http.cors_origins.0, ["https://a.example"]);
            assert_eq!(s.nats.prefix, "env.");
            Ok(())
        });
    }

    /// The deployment files that set the service's environment (DESIGN §13), by path.
    const DEPLOY_FILES: [(&str, &str); 8] = [
        (
            "deploy/compose.yaml",
            include_str!("../deploy/compose.yaml"),
        ),
        ("deploy/Dockerfile", include_str!("../deploy/Dockerfile")),
        (
            "deploy/local-cluster",
            include_str!("../deploy/local-cluster"),
        ),
        (
            "deploy/k8s/base/configmap.yaml",
            include_str!("../deploy/k8s/base/configmap.yaml"),
        ),
        (
            "deploy/k8s/base/deployment.yaml",
            include_str!("../deploy/k8s/base/deployment.yaml"),
        ),
        (
            "deploy/k8s/base/migrate-job.yaml",
            include_str!("../deploy/k8s/base/migrate-job.yaml"),
        ),
        (
            "deploy/k8s/overlays/dev/simulator.yaml",
            include_str!("../deploy/k8s/overlays/dev/simulator.yaml"),
        ),
        ("docs/deploy.md", include_str!("../docs/deploy.md")),
    ];

    /// Every `APP__...` variable a text names, with the key it stands for (`APP__HTTP__ADDR`
    /// → `http.addr`). A generic `APP__<SECTION>__<KEY>` names none.
    fn app_variables(text: &str) -> Vec<(String, String)> {
        text.match_indices("APP__")
            .map(|(at, _)| {
                text[at..]
                    .chars()
                    .take_while(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || *c == '_')
                    .collect::<String>()
            })
            .filter_map(|name| {
                let rest = name.strip_prefix("APP__")?.trim_end_matches('_');
                (!rest.is_empty()).then(|| {
                    let key = rest.to_ascii_lowercase().replace("__", ".");
                    (name.trim_end_matches('_').to_owned(), key)
                })
            })
            .collect()
    }

    #[test]
    fn every_app_variable_the_deployment_files_set_is_a_setting() {
        // A misspelt one would stop the service at start (or, in a doc, mislead an operator).
        let known = known_keys();
        let mut named = 0;
        for (path, text) in DEPLOY_FILES {
            for (name, key) in app_variables(text) {
                assert!(
                    known.contains(&key),
                    "{path}: {name} is no setting (`{key}`)"
                );
                named += 1;
            }
        }
        assert!(
            named > 40,
            "only {named} variables found: is the scan broken?"
        );
        // counter-test: the scan finds a misspelt name, which is not a setting
        let typo = app_variables("env:\n  APP__HTTP__ADRR: 0.0.0.0:8080\n");
        assert_eq!(
            typo,
            [("APP__HTTP__ADRR".to_owned(), "http.adrr".to_owned())]
        );
        assert!(!known.contains(&typo[0].1));
        assert!(app_variables("`APP__<SECTION>__<KEY>`").is_empty());
    }
}
