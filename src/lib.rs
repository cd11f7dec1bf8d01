//! order-service: an event-sourced order service.
//!
//! Module map (DESIGN §3, one room per role):
//! * [`config`]: settings, read once in `main`.
//! * [`telemetry`]: tracing subscriber, log format, the process's metrics registry.
//! * [`metric`]: the constructors every subsystem registers its own metric families with.
//! * [`supervisor`]: `supervise`, the one way a background worker runs, restarts and stops.
//! * [`backoff`]: the one backoff policy (restarts, redeliveries, conflicts).
//! * [`startup`]: `Application::build` / `run_until_stopped`, the one wiring point.
//! * [`lifecycle`]: where the process stands (still starting, shutting down), for readiness.
//! * [`state`]: the shared state handed to every HTTP handler.
//! * [`http`]: the REST API (poem-openapi), auth and problem+json errors.
//! * [`live`]: the live feeds of orders and stores (one follower of the log per process, run
//!   while anyone listens), served per request by `http::live`.
//! * [`log`]: the log reader every projection, reactor, relay and live feed tails the event
//!   store with; log events typed by aggregate.
//! * [`nats`]: JetStream streams, subjects, headers, publish-with-ack.
//! * [`notify`]: email notifications: the notifier log reader, the outbox, the SMTP sender.
//! * [`read_models`]: applying the log to the read models, and rebuilding them.
//! * [`simulator`]: the inventory and payment participant simulator (`order-service simulate`, tests).
//! * [`store`]: event store wiring (postgres-es), the one command executor of orders and sagas,
//!   the catalog with its stores' members and change record.
//! * [`workers`]: the background workers (projector, saga reactor, relay, reply consumer,
//!   deadlines), each run by the supervisor.
//! * `devstack`: the embedded PostgreSQL + nats-server launcher used by `dev` and tests (cargo
//!   feature `devstack`, on by default; production builds leave it out).
//! * [`cli`]: the `order-service` command line.

pub mod backoff;
pub mod cli;
pub mod config;
#[cfg(feature = "devstack")]
pub mod devstack;
pub mod http;
pub mod lifecycle;
pub mod live;
pub mod log;
pub mod metric;
pub mod nats;
pub mod notify;
pub mod read_models;
pub mod simulator;
pub mod startup;
pub mod state;
pub mod store;
pub mod supervisor;
pub mod telemetry;
pub mod verify;
pub mod workers;
