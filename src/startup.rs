//! `Application::build` wires everything once; `run_until_stopped` serves until a shutdown
//! signal. Tests build it with port 0 and read `port()`.
//!
//! `serve` (the production command) starts differently, so that a dependency that is not up
//! yet delays readiness instead of stopping the process: it binds the listener first and
//! answers at once (`http::starting`: live 200, ready 503 naming what it waits for), waits for
//! PostgreSQL and NATS side by side ([`wait`]: bounded backoff, a clear log line), then builds
//! the service and opens the gate to it.
//!
//! **Stopping.** On the shutdown signal readiness turns 503 (`shutdown` check) while the
//! listener still accepts, for `APP__HTTP__SHUTDOWN_DELAY_MS`, so load balancers stop sending;
//! then nothing more is accepted, live feeds end, requests in flight drain (up to
//! [`SHUTDOWN_GRACE`]), and the workers stop. A service told to stop before it was built
//! (never ready, so in no rotation) stops at once.

mod wait;

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use sqlx::PgPool;
use sqlx::{ConnectOptions as _, Connection as _};
use tokio_util::sync::CancellationToken;

use crate::backoff::Backoff;
use crate::config::{NatsUrl, Settings, WorkerSettings};
use crate::http::auth::JwtVerifier;
use crate::http::server::ServerLimits;
use crate::http::starting::Gate;
use crate::http::throttle::{Throttle, ThrottleMetrics};
use crate::lifecycle::Lifecycle;
use crate::live::LiveFeeds;
use crate::log::{AppendSignal, LogReader};
use crate::nats::Nats;
use crate::state::AppState;
use crate::store::catalog::CatalogRepository;
use crate::store::members::MemberMetrics;
use crate::store::orders::OrderRepository;
use crate::store::sagas::SagaRepository;
use crate::supervisor::{Supervisor, SupervisorMetrics};
use crate::telemetry::Metrics;
use crate::workers::deadlines::DeadlineWorker;
use crate::workers::projector::Projector;
use crate::workers::relay::Relay;
use crate::workers::replies::ReplyConsumer;
use crate::workers::saga_reactor::SagaReactor;
use order_sagas::SagaPolicy;
use wait::Dependency;

/// How long requests in flight may take to finish once the service stops.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// A built, bound, not yet serving application.
pub struct Application {
    port: u16,
    listener: tokio::net::TcpListener,
    server: ServerLimits,
    /// How long readiness answers 503 before the listener closes, once told to stop.
    shutdown_delay: Duration,
    built: Built,
}

/// The service once its dependencies answer: the shared state and what the workers need.
struct Built {
    state: AppState,
    workers: WorkerSettings,
    reply_retry: Backoff,
    nats: Option<Nats>,
    /// The in-process simulator's configuration, with what its participants connect with.
    simulator: Option<InProcessSimulator>,
    /// Whether order events on NATS carry personal data.
    publish_personal_data: bool,
    /// Email notifications, when `APP__NOTIFY__SMTP_URL` is set.
    notify: Option<crate::notify::Notifications>,
}

/// What the in-process participant simulator needs: its behaviour, and how each participant
/// connects (its own NATS user when configured, else the service's connection).
#[derive(Debug, Clone)]
struct InProcessSimulator {
    config: crate::simulator::SimulatorConfig,
    nats_url: NatsUrl,
    nats: crate::config::NatsSettings,
    participants: crate::config::SimulatorSettings,
}

impl InProcessSimulator {
    /// The simulator to run in this process, if it is enabled and the saga machinery runs.
    fn configured(settings: &Settings, with_nats: bool) -> Option<Self> {
        (settings.simulator.enabled.unwrap_or(false) && with_nats).then(|| Self {
            config: crate::simulator::SimulatorConfig::from(&settings.simulator),
            nats_url: settings.nats_url.clone().unwrap_or_default(),
            nats: settings.nats.clone(),
            participants: settings.simulator.clone(),
        })
    }
}

impl std::fmt::Debug for Application {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Application")
            .field("port", &self.port)
            .finish_non_exhaustive()
    }
}

impl Application {
    /// Connects to the database (migrating when configured), builds the state and binds the
    /// listener; fails at once when a dependency does not answer (tests, `dev`; `serve` waits
    /// for them instead, see [`serve`]).
    pub async fn build(settings: &Settings) -> anyhow::Result<Self> {
        let pool = crate::store::connect(database_url(settings)?, &settings.database).await?;
        if settings.database.migrate_on_start {
            crate::store::migrate(&pool).await?;
        }
        Self::build_with_pool(settings, pool).await
    }

    /// Like [`Application::build`] with an existing pool: connects to NATS when the saga
    /// machinery runs, builds the state and binds the listener.
    pub async fn build_with_pool(settings: &Settings, pool: PgPool) -> anyhow::Result<Self> {
        let nats = if settings.workers.sagas {
            let nats = Nats::connect(nats_url(settings)?, &settings.nats).await?;
            nats.ensure_streams(&settings.nats.streams).await?;
            Some(nats)
        } else {
            None
        };
        let built = Box::pin(Built::assemble(settings, pool, nats, Lifecycle::default())).await?;
        let listener = crate::http::server::bind(settings.http.addr).await?;
        let port = listener
            .local_addr()
            .context("the listener's address")?
            .port();
        Ok(Self {
            port,
            listener,
            server: server_limits(settings),
            shutdown_delay: shutdown_delay(settings),
            built,
        })
    }

    /// The bound port (useful with port 0).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The shared state, e.g. for tests that inspect the pool.
    pub fn state(&self) -> &AppState {
        &self.built.state
    }

    /// Starts the workers and serves until `shutdown` resolves, then stops as the module says.
    pub async fn run_until_stopped(
        self,
        shutdown: impl std::future::Future<Output = ()> + Send,
    ) -> anyhow::Result<()> {
        let lifecycle = self.built.state.lifecycle.clone();
        let stopping = Stopping {
            signal: shutdown,
            delay: self.shutdown_delay,
            lifecycle,
        };
        let built = self.built;
        // boxed: the server's and the workers' futures together are large
        Box::pin(run(self.listener, self.server, stopping, async {
            Ok(built)
        }))
        .await
    }
}

/// `order-service serve`: binds `APP__HTTP__ADDR` and answers at once, waits for PostgreSQL
/// (migrating when configured) and NATS until they answer, then builds and serves the service
/// until `shutdown` resolves (see the module). Fails at once on what no wait can mend: a
/// missing or malformed URL, an address taken, a migration that fails for another reason than
/// the database's absence, a bad JWKS setting.
pub async fn serve(
    settings: &Settings,
    shutdown: impl std::future::Future<Output = ()> + Send,
) -> anyhow::Result<()> {
    let listener = crate::http::server::bind(settings.http.addr).await?;
    let lifecycle = Lifecycle::default();
    let building = Box::pin(Built::when_dependencies_answer(settings, lifecycle.clone()));
    let stopping = Stopping {
        signal: shutdown,
        delay: shutdown_delay(settings),
        lifecycle,
    };
    Box::pin(run(listener, server_limits(settings), stopping, building)).await
}

/// How the service stops: on `signal`, readiness turns 503 (`lifecycle`), and the listener
/// closes `delay` later.
struct Stopping<F> {
    signal: F,
    delay: Duration,
    lifecycle: Lifecycle,
}

/// Serves on `listener` (what [`Gate`] answers until `building` resolves, then the service)
/// until `stopping` says to stop, then drains and stops the workers. An error of `building`
/// stops the server at once and is returned.
async fn run(
    listener: tokio::net::TcpListener,
    limits: ServerLimits,
    stopping: Stopping<impl std::future::Future<Output = ()> + Send>,
    building: impl std::future::Future<Output = anyhow::Result<Built>> + Send,
) -> anyhow::Result<()> {
    let Stopping {
        signal,
        delay,
        lifecycle,
    } = stopping;
    let gate = Gate::new(lifecycle.clone());
    // cancelled when the listener is to close: after the delay, or when the build failed
    let close = CancellationToken::new();
    let port = listener.local_addr().map(|a| a.port()).unwrap_or_default();
    tracing::info!(port, "serving HTTP");
    let signalled = async {
        tokio::select! {
            () = signal => {
                lifecycle.begin_stopping();
                // never ready, so in no load balancer's rotation: nothing to wait for
                let delay = if gate.is_open() { delay } else { Duration::ZERO };
                tracing::info!(
                    delay_ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX),
                    "stopping: readiness answers 503; still serving for the shutdown delay"
                );
                tokio::select! {
                    () = tokio::time::sleep(delay) => {}
                    () = close.cancelled() => {}
                }
                close.cancel();
            }
            () = close.cancelled() => {}
        }
    };
    let served = async {
        let served =
            crate::http::server::serve(listener, gate.clone(), limits, close.cancelled()).await;
        close.cancel();
        served
    };
    let started = async {
        let built = tokio::select! {
            built = building => built,
            () = close.cancelled() => return Ok(None),
        };
        let built = match built {
            Ok(built) => built,
            Err(e) => {
                close.cancel();
                return Err(e);
            }
        };
        gate.open(crate::http::app(built.state.clone()));
        built.supervise_workers();
        tracing::info!("service built: serving the API");
        close.cancelled().await;
        // Live feeds never finish on their own: end them as the server starts draining, so
        // their clients reconnect (to another replica) at once.
        built.state.live.close();
        Ok(Some(built))
    };
    let ((), served, started) = tokio::join!(signalled, served, started);
    tracing::info!("HTTP server stopped");
    if let Some(built) = started? {
        built.state.supervisor.shutdown().await;
        built.state.pool.close().await;
    }
    served.context("HTTP server failed")
}

fn nats_url(settings: &Settings) -> anyhow::Result<&str> {
    settings.nats_url.as_ref().map(NatsUrl::expose).context(
        "NATS_URL is not set (the saga needs NATS; set APP__WORKERS__SAGAS=false to run without it)",
    )
}

fn database_url(settings: &Settings) -> anyhow::Result<&secrecy::SecretString> {
    settings
        .database_url
        .as_ref()
        .context("DATABASE_URL is not set (use `order-service dev` for an embedded database)")
}

fn server_limits(settings: &Settings) -> ServerLimits {
    ServerLimits {
        header_timeout: Duration::from_millis(settings.http.header_timeout_ms.max(100)),
        idle_timeout: Duration::from_millis(settings.http.idle_timeout_ms.max(1_000)),
        max_connections: settings.http.max_connections,
        grace: SHUTDOWN_GRACE,
    }
}

fn shutdown_delay(settings: &Settings) -> Duration {
    Duration::from_millis(settings.http.shutdown_delay_ms)
}

impl Built {
    /// Waits for PostgreSQL (then migrates, when configured) and, when the saga machinery
    /// runs, NATS (then its streams), side by side, each until it answers (see [`wait`]); then
    /// builds the service.
    async fn when_dependencies_answer(
        settings: &Settings,
        lifecycle: Lifecycle,
    ) -> anyhow::Result<Self> {
        let options = crate::store::connect_options(database_url(settings)?)?;
        let address = match options.get_socket() {
            Some(socket) => socket.display().to_string(),
            None => format!("{}:{}", options.get_host(), options.get_port()),
        };
        let database = Dependency {
            name: "database",
            label: "PostgreSQL",
            address,
            lifecycle: &lifecycle,
        };
        let nats = if settings.workers.sagas {
            let url = nats_url(settings)?;
            let servers = crate::nats::connect::Servers::parse(url)?;
            Some((
                url,
                Dependency {
                    name: "nats",
                    label: "NATS",
                    address: servers.to_string(),
                    lifecycle: &lifecycle,
                },
            ))
        } else {
            None
        };
        for dependency in std::iter::once(&database).chain(nats.as_ref().map(|(_, d)| d)) {
            let connecting = format!("connecting to {}", dependency.address);
            lifecycle.report(dependency.name, false, Some(connecting));
        }
        let (pool, nats) =
            tokio::try_join!(wait_for_database(&database, options, settings), async {
                match &nats {
                    Some((url, dependency)) => {
                        Ok(Some(wait_for_nats(dependency, url, settings).await))
                    }
                    None => Ok(None),
                }
            })?;
        Box::pin(Self::assemble(settings, pool, nats, lifecycle.clone())).await
    }

    /// The service on a connected `pool` and `nats` (when the saga machinery runs).
    async fn assemble(
        settings: &Settings,
        pool: PgPool,
        nats: Option<Nats>,
        lifecycle: Lifecycle,
    ) -> anyhow::Result<Self> {
        let metrics = Metrics::new()?;
        // boxed: the JWKS fetch's future would otherwise weigh on every caller's future
        let verifier = Box::pin(JwtVerifier::from_settings(
            &settings.auth,
            &metrics.registry,
        ))
        .await?;
        let catalog =
            CatalogRepository::new(pool.clone(), MemberMetrics::register(&metrics.registry)?);
        let appended = AppendSignal::default();
        let orders = OrderRepository::new(
            pool.clone(),
            appended.clone(),
            catalog.clone(),
            metrics.clone(),
            settings.database.order_cache_entries,
        );
        let policy = SagaPolicy {
            step_timeout: chrono::Duration::milliseconds(
                i64::try_from(settings.saga.step_timeout_ms).unwrap_or(i64::MAX),
            ),
            max_attempts: settings.saga.max_attempts,
            max_wait: chrono::Duration::milliseconds(
                i64::try_from(settings.saga.max_wait_ms).unwrap_or(i64::MAX),
            ),
        };
        let sagas = Arc::new(SagaRepository::new(
            pool.clone(),
            appended.clone(),
            policy,
            metrics.clone(),
            settings.database.order_cache_entries,
        ));
        let live = LiveFeeds::new(
            pool.clone(),
            metrics.clone(),
            appended.clone(),
            &settings.live,
        );
        let supervisor = Supervisor::new(
            Backoff::new(
                Duration::from_millis(settings.workers.restart_backoff_first_ms),
                Duration::from_millis(settings.workers.restart_backoff_max_ms),
            ),
            SupervisorMetrics::register(&metrics.registry)?,
        );
        let throttle = Throttle::new(
            &settings.limits,
            ThrottleMetrics::register(&metrics.registry)?,
        );
        let notify = crate::notify::Notifications::configured(&settings.notify, &metrics.registry)?;
        let state = AppState {
            pool,
            orders: Arc::new(orders),
            catalog,
            sagas,
            verifier: Arc::new(verifier),
            metrics,
            limits: settings.limits.clone(),
            live,
            appended,
            supervisor,
            throttle,
            nats: nats.clone(),
            lifecycle,
            cors: crate::http::cors::Origins::new(&settings.http.cors_origins)?,
        };
        Ok(Self {
            state,
            workers: settings.workers.clone(),
            reply_retry: Backoff::new(
                Duration::from_millis(settings.saga.reply_retry_first_ms),
                Duration::from_millis(settings.saga.reply_retry_max_ms),
            ),
            simulator: InProcessSimulator::configured(settings, nats.is_some()),
            nats,
            publish_personal_data: settings.nats.publish_personal_data,
            notify,
        })
    }

    /// Starts every background worker under the supervisor, each with a fresh copy of what it
    /// needs per attempt (a restarted worker starts from its configuration, not from the state
    /// a failed attempt left).
    fn supervise_workers(&self) {
        let supervisor = &self.state.supervisor;
        let pool = &self.state.pool;
        let metrics = &self.state.metrics;
        let appended = &self.state.appended;
        if let Some(jwks) = self.state.verifier.jwks().cloned() {
            supervisor.supervise("jwks-refresher", move |token| {
                jwks.clone().run_refresher(token)
            });
        }
        let catalog = self.state.catalog.clone();
        supervisor.supervise("catalog-watcher", move |token| {
            catalog.clone().watch_changes(token)
        });
        let (p, signal) = (pool.clone(), appended.clone());
        supervisor.supervise("wake-forwarder", move |token| {
            crate::log::wake::forward_to_other_processes(p.clone(), signal.clone(), token)
        });
        let (p, signal) = (pool.clone(), appended.clone());
        supervisor.supervise("wake-listener", move |token| {
            crate::log::wake::listen_to_other_processes(p.clone(), signal.clone(), token)
        });
        if self.workers.projector {
            let reader = Projector::reader(
                pool.clone(),
                metrics.clone(),
                Duration::from_millis(self.workers.projector_batch_interval_ms),
            )
            .woken_by(appended.clone());
            supervisor.supervise(crate::read_models::PROJECTOR, move |token| {
                reader.clone().run(Projector::live(), token)
            });
        }
        if let Some(notify) = &self.notify {
            notify.supervise(supervisor, pool, metrics, appended);
        }
        let Some(nats) = &self.nats else {
            return;
        };
        let reactor = SagaReactor {
            sagas: self.state.sagas.clone(),
            orders: self.state.orders.clone(),
        };
        let reader = LogReader::new(pool.clone(), SagaReactor::config(), metrics.clone())
            .woken_by(appended.clone());
        supervisor.supervise(crate::workers::saga_reactor::READER, move |token| {
            reader.clone().run(reactor.clone(), token)
        });
        let relay = Relay {
            nats: nats.clone(),
            metrics: metrics.clone(),
            personal_data: self.publish_personal_data,
        };
        let reader = LogReader::new(pool.clone(), Relay::config(), metrics.clone())
            .woken_by(appended.clone());
        supervisor.supervise(crate::workers::relay::READER, move |token| {
            reader.clone().run(relay.clone(), token)
        });
        let replies = ReplyConsumer {
            nats: nats.clone(),
            sagas: self.state.sagas.clone(),
            metrics: metrics.clone(),
            retry: self.reply_retry,
        };
        supervisor.supervise("reply-consumer", move |token| replies.clone().run(token));
        let deadlines = DeadlineWorker {
            pool: pool.clone(),
            sagas: self.state.sagas.clone(),
        };
        supervisor.supervise("deadlines", move |token| deadlines.clone().run(token));
        if let Some(sim) = self.simulator.clone() {
            let nats = nats.clone();
            supervisor.supervise("simulator", move |token| {
                let (sim, nats) = (sim.clone(), nats.clone());
                async move {
                    let connections = crate::simulator::Connections::connect(
                        sim.nats_url.expose(),
                        &sim.nats,
                        &sim.participants,
                        Some(&nats),
                    )
                    .await?;
                    crate::simulator::run(connections, sim.config, token).await
                }
            });
            tracing::info!("participant simulator running in-process");
        }
    }
}

/// Waits for PostgreSQL and opens the pool; migrates when configured (waiting again if the
/// database goes away meanwhile).
async fn wait_for_database(
    database: &Dependency<'_>,
    options: sqlx::postgres::PgConnectOptions,
    settings: &Settings,
) -> anyhow::Result<PgPool> {
    loop {
        let pool = database
            .wait("not reachable yet", "connecting to", || async {
                // One connection first: its error says why (the pool's only that it timed out).
                options
                    .connect()
                    .await
                    .context("connecting to PostgreSQL")?
                    .close()
                    .await
                    .ok();
                crate::store::pool(options.clone(), &settings.database)
                    .await
                    .context("opening the pool")
            })
            .await;
        if !settings.database.migrate_on_start {
            return Ok(pool);
        }
        match crate::store::migrate(&pool).await {
            Ok(()) => return Ok(pool),
            Err(e) if crate::store::is_unavailable(&e) => {
                tracing::warn!(
                    error = format!("{e:#}"),
                    "migrating: the database went away; waiting for it again"
                );
                pool.close().await;
            }
            Err(e) => return Err(e),
        }
    }
}

/// Waits for NATS, then for JetStream to hold the streams.
async fn wait_for_nats(nats: &Dependency<'_>, url: &str, settings: &Settings) -> Nats {
    let connected = nats
        .wait("not reachable yet", "connecting to", || {
            Nats::connect(url, &settings.nats)
        })
        .await;
    nats.wait("not ready yet", "creating the JetStream streams on", || {
        connected.ensure_streams(&settings.nats.streams)
    })
    .await;
    connected
}

/// Resolves on Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => tracing::info!("Ctrl-C received, shutting down"),
        () = term => tracing::info!("SIGTERM received, shutting down"),
    }
}
