//! The `order-service` command line: `serve`, `dev`, `migrate`, `token`, `openapi`.
//!
//! `dev` and what only it needs exist with the `devstack` cargo feature (on by default); a
//! production build without it has no `dev` subcommand (clap then reports it as unrecognized).

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
#[cfg(feature = "devstack")]
use secrecy::{ExposeSecret as _, SecretString};
use uuid::Uuid;

use crate::config::{LogFormat, NatsUrl, Settings};
#[cfg(feature = "devstack")]
use crate::devstack::DevStack;
#[cfg(feature = "devstack")]
use crate::http::auth::random_secret;
use crate::http::auth::{Role, TokenMinter};
use crate::simulator::Connections;
use crate::startup::{shutdown_signal, Application};

#[derive(Debug, Parser)]
#[command(name = "order-service", version, about = "Event-sourced order service")]
pub struct Cli {
    /// Configuration file (default: ./order-service.toml when present).
    #[arg(long, global = true)]
    pub config: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Production: serve the API (migrating first when APP__DATABASE__MIGRATE_ON_START=true).
    Serve,
    /// Development: embedded PostgreSQL and nats-server when DATABASE_URL / NATS_URL are unset,
    /// migrations, the API; prints the Swagger URL and an admin token.
    #[cfg(feature = "devstack")]
    Dev {
        /// Where the embedded services keep their data.
        #[arg(long, default_value = ".data")]
        data_dir: PathBuf,
    },
    /// Apply database migrations and exit.
    Migrate,
    /// Mint a token signed with the configured secret.
    Token {
        /// Role(s) of the token: customer, merchant, service, staff, analyst, admin.
        #[arg(long = "role", required = true)]
        roles: Vec<Role>,
        /// Subject (`sub`): for customers, their customer id.
        #[arg(long, default_value = "dev")]
        sub: String,
        /// Store ids a staff token may act on.
        #[arg(long = "store")]
        stores: Vec<Uuid>,
        /// Lifetime in seconds (default: APP__AUTH__TOKEN_TTL_SECS).
        #[arg(long)]
        ttl: Option<u64>,
    },
    /// Check a running system's invariants (I1-I3, I5, I7; I8 with NATS_URL; I4 with --books;
    /// see `src/verify/mod.rs`); exits non-zero naming each one broken.
    Verify {
        /// Seconds a saga's deadline may be past before the saga counts as stuck.
        #[arg(long, default_value_t = 60)]
        stuck_after_secs: u64,
        /// Seconds to wait for the projector and the relay to reach the end of the log.
        #[arg(long, default_value_t = 30)]
        settle_secs: u64,
        /// The inventory's books (JSON, as `simulate` writes to APP__SIMULATOR__BOOKS_FILE):
        /// checks I4, stock conserved. Those of a stopped simulator: a saga that moves on
        /// between the reading of the books and of the log would look at odds with them.
        #[arg(long)]
        books: Option<std::path::PathBuf>,
        /// Print the report as one JSON object (events, orders, sagas, in_flight, messages,
        /// unchecked, violations) instead of lines; the exit code is the same.
        #[arg(long)]
        json: bool,
    },
    /// Print the OpenAPI document.
    Openapi,
    /// Print the NATS contract (AsyncAPI 3).
    Asyncapi,
    /// Run the participant simulator (inventory + payment) alone, against NATS_URL.
    Simulate,
    /// Read models: where each log reader stands, or rebuild them from the log.
    Projections {
        #[command(subcommand)]
        action: ProjectionsAction,
    },
}

#[derive(Debug, Subcommand)]
pub enum ProjectionsAction {
    /// Position, lag and activity of every log reader.
    Status,
    /// Replay the whole log into shadow tables and swap them in; the API keeps serving.
    Rebuild {
        /// The projection to rebuild (today there is one: `projector`, all read models).
        name: Option<String>,
    },
}

/// Runs the parsed command.
pub async fn run(cli: Cli) -> anyhow::Result<()> {
    let mut settings = Settings::load(cli.config.as_deref())?;
    match cli.command {
        Command::Serve => {
            let traces = init_logs(&settings, LogFormat::Json)?;
            let result = crate::startup::serve(&settings, shutdown_signal()).await;
            // the last spans (the shutdown's own included) reach the collector
            traces.shutdown().await;
            result
        }
        #[cfg(feature = "devstack")]
        Command::Dev { data_dir } => dev(settings, &data_dir).await,
        Command::Migrate => {
            let _tracing = init_logs(&settings, LogFormat::Pretty)?;
            let url = settings
                .database_url
                .as_ref()
                .context("DATABASE_URL is not set")?;
            let pool = crate::store::connect(url, &settings.database).await?;
            crate::store::migrate(&pool).await?;
            println!("migrations applied");
            Ok(())
        }
        Command::Token {
            roles,
            sub,
            stores,
            ttl,
        } => {
            anyhow::ensure!(
                settings.auth.jwks_url.is_none(),
                "APP__AUTH__JWKS_URL is set: the service accepts only its identity provider's tokens, so an HS256 token minted here would be refused; get a token from the provider (see docs/auth.md)"
            );
            let secret = settings.auth.jwt_secret.take().context(
                "APP__AUTH__JWT_SECRET is not set: tokens are signed with the service's secret",
            )?;
            let minter = TokenMinter::new(&secret, &settings.auth.issuer, &settings.auth.audience)?;
            let ttl = ttl.unwrap_or(settings.auth.token_ttl_secs);
            anyhow::ensure!(
                ttl <= settings.auth.max_token_lifetime_secs,
                "a token living {ttl} s would be refused: the service accepts at most {} s (APP__AUTH__MAX_TOKEN_LIFETIME_SECS)",
                settings.auth.max_token_lifetime_secs
            );
            let ttl = Duration::from_secs(ttl);
            println!("{}", minter.mint(&sub, &roles, &stores, ttl)?);
            Ok(())
        }
        Command::Projections { action } => {
            let _tracing = init_logs(&settings, LogFormat::Pretty)?;
            let url = settings
                .database_url
                .as_ref()
                .context("DATABASE_URL is not set")?;
            let pool = crate::store::connect(url, &settings.database).await?;
            projections(&pool, action).await
        }
        Command::Simulate => {
            let traces = init_logs(&settings, LogFormat::Pretty)?;
            let url = settings
                .nats_url
                .as_ref()
                .map(NatsUrl::expose)
                .context("NATS_URL is not set")?;
            // Each participant as its own NATS user (APP__SIMULATOR__INVENTORY__*, ..PAYMENT..).
            let connections =
                Connections::connect(url, &settings.nats, &settings.simulator, None).await?;
            let stop = tokio_util::sync::CancellationToken::new();
            let sim = tokio::spawn(crate::simulator::run(
                connections,
                crate::simulator::SimulatorConfig::from(&settings.simulator),
                stop.clone(),
            ));
            shutdown_signal().await;
            stop.cancel();
            let result = sim.await.context("simulator task");
            traces.shutdown().await;
            result?
        }
        Command::Verify {
            stuck_after_secs,
            settle_secs,
            books,
            json,
        } => {
            let options = crate::verify::Options {
                stuck_after: Duration::from_secs(stuck_after_secs),
                settle: Duration::from_secs(settle_secs),
            };
            verify(&settings, books.as_deref(), &options, json).await
        }
        Command::Openapi => {
            println!("{}", crate::http::openapi_json());
            Ok(())
        }
        Command::Asyncapi => {
            print!("{}", include_str!("../docs/asyncapi.yaml"));
            Ok(())
        }
    }
}

/// `verify`: the invariants of the system `settings` point at; I8 when NATS_URL is set, I4
/// with the inventory's `books`.
async fn verify(
    settings: &Settings,
    books: Option<&std::path::Path>,
    options: &crate::verify::Options,
    json: bool,
) -> anyhow::Result<()> {
    // the logs on stderr: stdout is the report
    let _traces = crate::telemetry::init_on_stderr(
        settings.log.format.unwrap_or(LogFormat::Pretty),
        &settings.otel,
    )?;
    let url = settings
        .database_url
        .as_ref()
        .context("DATABASE_URL is not set")?;
    let pool = crate::store::connect(url, &settings.database).await?;
    let nats = match &settings.nats_url {
        Some(url) => Some(crate::nats::Nats::connect(url.expose(), &settings.nats).await?),
        None => None,
    };
    let books = match books {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading the books {}", path.display()))?;
            Some(
                serde_json::from_str(&text)
                    .with_context(|| format!("the books {}", path.display()))?,
            )
        }
        None => None,
    };
    let witnesses = crate::verify::Witnesses { nats, books };
    let report = crate::verify::verify(&pool, &witnesses, options).await?;
    if json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        println!(
            "checked {} events, {} orders, {} sagas ({} in flight), {} relayed messages",
            report.events, report.orders, report.sagas, report.in_flight, report.messages
        );
        for unchecked in &report.unchecked {
            println!("not checked: {unchecked}");
        }
        for v in &report.violations {
            println!("VIOLATED {v}");
        }
    }
    anyhow::ensure!(
        report.violations.is_empty(),
        "{} invariant violation(s)",
        report.violations.len()
    );
    if !json {
        println!("every invariant holds");
    }
    Ok(())
}

async fn projections(pool: &sqlx::PgPool, action: ProjectionsAction) -> anyhow::Result<()> {
    use crate::read_models;
    match action {
        ProjectionsAction::Status => {
            println!(
                "{:<14} {:>8} {:>10} {:>11} {:>9}  updated",
                "reader", "active", "position", "lag_events", "lag_s"
            );
            for s in crate::log::statuses(pool, &[read_models::PROJECTOR]).await? {
                println!(
                    "{:<14} {:>8} {:>10} {:>11} {:>9.3}  {}",
                    s.name,
                    if s.active { "yes" } else { "no" },
                    s.at.position,
                    s.lag_events,
                    s.lag_seconds,
                    s.updated_at
                        .map_or_else(|| "never".to_owned(), |t| t.to_rfc3339())
                );
            }
            Ok(())
        }
        ProjectionsAction::Rebuild { name } => {
            if let Some(name) = name.filter(|n| n != read_models::PROJECTOR) {
                anyhow::bail!(
                    "unknown projection {name:?}; known: {}",
                    read_models::PROJECTOR
                );
            }
            let report = read_models::rebuild(pool).await?;
            println!(
                "rebuilt read models from {} events in {:.2} s ({:.0} events/s)",
                report.events,
                report.seconds,
                report.rate()
            );
            Ok(())
        }
    }
}

/// The dev signing secret, kept in the data dir so tokens survive a restart of `dev`.
#[cfg(feature = "devstack")]
fn dev_secret(data_dir: &std::path::Path) -> anyhow::Result<SecretString> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;

    let path = data_dir.join("dev-jwt-secret");
    if let Ok(existing) = std::fs::read_to_string(&path) {
        let existing = existing.trim();
        if existing.len() >= crate::http::auth::MIN_SECRET_BYTES {
            return Ok(SecretString::from(existing.to_owned()));
        }
    }
    std::fs::create_dir_all(data_dir)
        .with_context(|| format!("creating {}", data_dir.display()))?;
    let secret = random_secret();
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&path)
        .with_context(|| format!("writing {}", path.display()))?;
    file.write_all(secret.expose_secret().as_bytes())?;
    Ok(secret)
}

fn init_logs(settings: &Settings, default: LogFormat) -> anyhow::Result<crate::telemetry::Tracing> {
    crate::telemetry::init(settings.log.format.unwrap_or(default), &settings.otel)
}

/// `dev`: fills in whatever is not configured with embedded services and a fresh secret.
#[cfg(feature = "devstack")]
async fn dev(mut settings: Settings, data_dir: &std::path::Path) -> anyhow::Result<()> {
    let traces = init_logs(&settings, LogFormat::Pretty)?;
    let needs_stack = settings.database_url.is_none() || settings.nats_url.is_none();
    let stack = if needs_stack {
        println!(
            "starting embedded services under {} ...",
            data_dir.display()
        );
        Some(DevStack::start(data_dir).await?)
    } else {
        None
    };
    if let Some(stack) = &stack {
        if settings.database_url.is_none() {
            settings.database_url = Some(SecretString::from(stack.database_url().to_owned()));
        }
        if settings.nats_url.is_none() {
            settings.nats_url = Some(stack.nats_url().into());
        }
    }
    if settings.auth.jwt_secret.is_none() {
        let secret = dev_secret(stack.as_ref().map_or(data_dir, DevStack::data_dir))?;
        settings.auth.jwt_secret = Some(secret);
    }
    let secret = settings
        .auth
        .jwt_secret
        .clone()
        .context("a secret was just set")?;
    settings.database.migrate_on_start = true;
    // no load balancer in front of a dev instance: Ctrl-C stops it at once
    settings.http.shutdown_delay_ms = 0;
    if settings.simulator.enabled.is_none() {
        settings.simulator.enabled = Some(true);
    }

    let result = async {
        let app = Application::build(&settings).await?;
        // With an identity provider, tokens come from it: an HS256 one would be refused.
        let token = if settings.auth.jwks_url.is_some() {
            None
        } else {
            let minter = TokenMinter::new(&secret, &settings.auth.issuer, &settings.auth.audience)?;
            Some(minter.mint("dev-admin", &[Role::Admin], &[], Duration::from_secs(settings.auth.token_ttl_secs))?)
        };
        let host = match settings.http.addr.ip() {
            ip if ip.is_unspecified() => "127.0.0.1".to_owned(),
            ip => ip.to_string(),
        };
        let base = format!("http://{host}:{}", app.port());
        println!();
        println!("order-service is running");
        println!("  Swagger UI:  {base}/docs");
        println!("  OpenAPI:     {base}/openapi.json");
        println!("  Metrics:     {base}/metrics");
        if let Some(token) = token {
            println!("  Admin token (valid {} h):", settings.auth.token_ttl_secs / 3600);
            println!("    export TOKEN={token}");
            println!(
                "  Mint more:   APP__AUTH__JWT_SECRET=$(cat {}/dev-jwt-secret) cargo run -- token --role customer --sub alice",
                stack.as_ref().map_or(data_dir, DevStack::data_dir).display()
            );
        } else {
            println!("  Tokens:      from your identity provider (APP__AUTH__JWKS_URL; see docs/auth.md)");
        }
        println!("  Try:         curl -H \"Authorization: Bearer $TOKEN\" {base}/v1/stores");
        println!("Press Ctrl-C to stop.");
        app.run_until_stopped(shutdown_signal()).await
    }
    .await;
    if let Some(stack) = stack {
        if let Err(e) = stack.stop().await {
            tracing::warn!(error = %e, "stopping embedded services");
        }
    }
    traces.shutdown().await;
    result
}
