//! The state every handler shares: one wiring point, built in [`crate::startup`].

use std::sync::Arc;

use sqlx::PgPool;

use crate::config::LimitSettings;
use crate::http::auth::JwtVerifier;
use crate::http::throttle::Throttle;
use crate::lifecycle::Lifecycle;
use crate::live::LiveFeeds;
use crate::log::AppendSignal;
use crate::nats::Nats;
use crate::store::catalog::CatalogRepository;
use crate::store::orders::OrderRepository;
use crate::store::sagas::SagaRepository;
use crate::supervisor::Supervisor;
use crate::telemetry::Metrics;

/// Cheap to clone: everything inside is shared.
#[derive(Debug, Clone)]
pub struct AppState {
    /// The pool every repository uses (one per process).
    pub pool: PgPool,
    /// Order commands and loads against the event store.
    pub orders: Arc<OrderRepository>,
    /// Stores, products, prices, and the stores' members (`catalog.members()`).
    pub catalog: CatalogRepository,
    /// Order sagas (status, admin retry).
    pub sagas: Arc<SagaRepository>,
    /// Verifies bearer tokens.
    pub verifier: Arc<JwtVerifier>,
    pub metrics: Arc<Metrics>,
    pub limits: LimitSettings,
    /// Raised by the event store after each append; wakes this process's log readers.
    pub appended: AppendSignal,
    /// The live feeds of orders and stores this process serves.
    pub live: LiveFeeds,
    /// Runs the background workers; readiness asks it which are up.
    pub supervisor: Supervisor,
    /// Per-caller limits: command rate, open live feeds.
    pub throttle: Throttle,
    /// The NATS connection, when this process runs the saga machinery (readiness checks it).
    pub nats: Option<Nats>,
    /// Whether the process is shutting down (readiness then answers 503).
    pub lifecycle: Lifecycle,
    /// Other origins whose browser pages may call the API (CORS).
    pub cors: crate::http::cors::Origins,
}
