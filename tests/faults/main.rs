//! The fault suite (issue 22): `deploy/local-cluster` with 3 replicas and 3 NATS nodes, a
//! steady load of storefront clients (create, add an item, place; each command retried under
//! its `Idempotency-Key` after a 503 or a lost connection), one fault, and then the judges:
//! `order-service verify` as a process against the cluster's database, and the test's own
//! counts: commands answered 2xx, 5xx answers (503 allowed while a dependency is down, never
//! 500), lost commands (answered 2xx, not in the log: 0), duplicated effects (one event an order
//! or saga may hold once, twice: 0), takeover time of the log readers.
//!
//! CI runs the short versions; the long ones are `#[ignore]`d (README, docs/RELIABILITY.md):
//! `cargo test --test faults -- --ignored --nocapture --test-threads 1`.
//! Each scenario prints one `FAULT-RESULT` line (JSON) with its numbers, and appends it to the
//! file `ORDER_FAULTS_REPORT` names when set. Scenarios run one at a time (a lock), each on its
//! own cluster. Needs what `deploy/local-cluster` needs (`ORDER_TEST_NATS_SERVER`,
//! `ORDER_TEST_PYTHON`, PostgreSQL's binaries).

mod checks;
mod cluster;
mod load;
#[path = "../support/poll.rs"]
mod poll;
mod scenarios;

use std::future::Future;
use std::sync::{Mutex, PoisonError};

/// One scenario at a time: each runs a whole cluster on a machine of few cores.
static SERIAL: Mutex<()> = Mutex::new(());

fn run(test: impl Future<Output = ()>) {
    let _one_at_a_time = SERIAL.lock().unwrap_or_else(PoisonError::into_inner);
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
        .block_on(test);
}

#[test]
fn a_killed_replica_holding_the_reader_locks_is_taken_over_within_5_s() {
    run(scenarios::replica_killed());
}

#[test]
fn with_every_nats_node_down_commands_are_accepted_and_every_saga_finishes_after() {
    run(scenarios::nats_down(
        std::time::Duration::from_secs(10),
        "nats-all-down-10s",
    ));
}

#[test]
fn a_postgres_crash_mid_load_loses_no_answered_command_and_answers_503_never_500() {
    run(scenarios::postgres_crash());
}

#[test]
#[ignore = "long: 30 s without NATS"]
fn long_every_nats_node_down_for_30_s() {
    run(scenarios::nats_down(
        std::time::Duration::from_secs(30),
        "nats-all-down-30s",
    ));
}

#[test]
#[ignore = "long"]
fn long_one_nats_node_of_three_killed_then_back() {
    run(scenarios::one_nats_node_killed());
}

#[test]
#[ignore = "long: a 20 s hang"]
fn long_a_replica_holding_the_reader_locks_stopped_for_20_s() {
    run(scenarios::replica_hung());
}

#[test]
#[ignore = "long: 200 crashes"]
fn long_two_hundred_sigkills_of_random_replicas() {
    let kills = std::env::var("ORDER_FAULTS_KILLS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(200);
    run(scenarios::many_kills(kills));
}
