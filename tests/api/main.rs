//! Black-box tests of the service through HTTP, against real PostgreSQL: one binary, one
//! database per test.

mod helpers;
#[path = "../support/poll.rs"]
mod poll;

mod append;
mod asyncapi;
mod auth_matrix;
mod catalog_cache;
mod catalog_pages;
mod concurrency;
mod contract;
mod cors;
mod forged_replies;
mod hostile;
mod jwks;
mod least_privilege;
mod lifecycle;
mod limits;
mod live;
mod local_cluster;
mod log_reader;
mod nats_trust;
mod notifications;
mod openapi;
mod ops_artifacts;
mod pages;
mod process_metrics;
mod processes;
mod projections;
mod queries;
mod rebuild;
mod reply_failures;
mod saga_metrics;
mod sagas;
mod shops;
mod startup;
mod supervision;
mod traces;
mod verify;
