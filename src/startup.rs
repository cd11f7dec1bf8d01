//! `Application::build` wires everything once; `run_until_stopped` serves until a shutdown
//! signal. Tests build it with port 0 and read `port()`.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use sqlx::PgPool;

use crate::backoff::Backoff;
use crate::config::{NatsUrl, Settings, WorkerSettings};
use crate::http::auth::JwtVerifier;
use crate::http::server::ServerLimits;
use crate::http::throttle::{Throttle, ThrottleMetrics};
use crate::live::LiveFeeds;
use crate::log::{AppendSignal, LogReader};
use crate::nats::Nats;
use crate::state::AppState;
use crate::store::catalog::CatalogRepository;
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

/// How long requests in flight may take to finish once the service stops.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// A built, bound, not yet serving application.
pub struct Application {
    port: u16,
    listener: tokio::net::TcpListener,
    server: ServerLimits,
    state: AppState,
    workers: WorkerSettings,
    reply_retry: Backoff,
    nats: Option<Nats>,
    /// The in-process simulator's configuration, with what its participants connect with.
    simulator: Option<InProcessSimulator>,
    /// Whether order events on NATS carry personal data.
    publish_personal_data: bool,
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
    /// listener.
    pub async fn build(settings: &Settings) -> anyhow::Result<Self> {
        let url = settings.database_url.as_ref().context(
            "DATABASE_URL is not set (use `order-service dev` for an embedded database)",
        )?;
        let pool = crate::store::connect(url, &settings.database).await?;
        if settings.database.migrate_on_start {
            crate::store::migrate(&pool).await?;
        }
        Self::build_with_pool(settings, pool).await
    }

    /// Like [`Application::build`] with an existing pool.
    pub async fn build_with_pool(settings: &Settings, pool: PgPool) -> anyhow::Result<Self> {
        let metrics = Metrics::new()?;
        // boxed: the JWKS fetch's future would otherwise weigh on every caller's future
        let verifier = Box::pin(JwtVerifier::from_settings(
            &settings.auth,
            &metrics.registry,
        ))
        .await?;
        let catalog = CatalogRepository::new(pool.clone());
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
        let nats = if settings.workers.sagas {
            let url = settings.nats_url.as_ref().map(NatsUrl::expose).context(
                "NATS_URL is not set (the saga needs NATS; set APP__WORKERS__SAGAS=false to run without it)",
            )?;
            let nats = Nats::connect(url, &settings.nats).await?;
            nats.ensure_streams(&settings.nats.streams).await?;
            Some(nats)
        } else {
            None
        };
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
        };
        let listener = crate::http::server::bind(settings.http.addr).await?;
        let port = listener
            .local_addr()
            .context("the listener's address")?
            .port();
        Ok(Self {
            port,
            listener,
            server: ServerLimits {
                header_timeout: Duration::from_millis(settings.http.header_timeout_ms.max(100)),
                idle_timeout: Duration::from_millis(settings.http.idle_timeout_ms.max(1_000)),
                max_connections: settings.http.max_connections,
                grace: SHUTDOWN_GRACE,
            },
            state,
            workers: settings.workers.clone(),
            reply_retry: Backoff::new(
                Duration::from_millis(settings.saga.reply_retry_first_ms),
                Duration::from_millis(settings.saga.reply_retry_max_ms),
            ),
            simulator: InProcessSimulator::configured(settings, nats.is_some()),
            nats,
            publish_personal_data: settings.nats.publish_personal_data,
        })
    }

    /// The bound port (useful with port 0).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The shared state, e.g. for tests that inspect the pool.
    pub fn state(&self) -> &AppState {
        &self.state
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

    /// Starts the workers and serves until `shutdown` resolves, then drains in-flight requests
    /// (up to 10 s), then stops the workers and waits for them (see [`Supervisor::shutdown`]).
    pub async fn run_until_stopped(
        self,
        shutdown: impl std::future::Future<Output = ()> + Send,
    ) -> anyhow::Result<()> {
        let app = crate::http::app(self.state.clone());
        self.supervise_workers();
        tracing::info!(port = self.port, "serving HTTP");
        // Live feeds never finish on their own: end them as the server starts draining, so
        // their clients reconnect (to another replica) at once.
        let live = self.state.live.clone();
        let shutdown = async move {
            shutdown.await;
            live.close();
        };
        let result = crate::http::server::serve(self.listener, app, self.server, shutdown)
            .await
            .context("HTTP server failed");
        tracing::info!("HTTP server stopped");
        self.state.supervisor.shutdown().await;
        self.state.pool.close().await;
        result
    }
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
