//! The scenarios: a cluster, the load, one fault, the judges.

use std::time::{Duration, Instant};

use futures::future::join_all;
use rand::Rng as _;
use serde_json::json;
use sqlx::PgPool;

use crate::checks;
use crate::cluster::{checkpoint_moves, checkpoints, LocalCluster, READERS, REPLICAS};
use crate::load::{self, Load, Outcome, CLIENTS};
use crate::poll::eventually;

/// Longest takeover accepted of a log reader whose replica crashed.
const TAKEOVER: Duration = Duration::from_secs(5);
/// Answers the load gets before and after each fault (proof it runs).
const WARM: u64 = 30;
/// The load runs at least this long in all (so each fault happens under a steady load).
const MIN_LOAD: Duration = Duration::from_secs(20);
/// How long the sagas may take to reach their verdicts once every part is back.
const SAGAS_PATIENCE: Duration = Duration::from_secs(180);
/// How long PostgreSQL stays down in its crash scenario.
const POSTGRES_DOWN: Duration = Duration::from_secs(5);
/// How long one NATS node of three stays down.
const NODE_DOWN: Duration = Duration::from_secs(20);

struct Run {
    cluster: LocalCluster,
    pool: PgPool,
    load: Load,
    http: reqwest::Client,
}

async fn start() -> Run {
    let cluster = LocalCluster::up().await;
    let urls = cluster.service_urls();
    assert_eq!(urls.len(), REPLICAS);
    let minter = order_service::http::auth::TokenMinter::new(
        &secrecy::SecretString::from(cluster.jwt_secret()),
        "order-service",
        "order-service",
    )
    .expect("minter");
    let store = load::set_up_store(&urls, &minter).await;
    let load = Load::start(&urls, &cluster.jwt_secret(), store);
    load.wait_for_answers(WARM, Duration::from_secs(60)).await;
    Run {
        pool: cluster.pool(),
        cluster,
        load,
        http: reqwest::Client::new(),
    }
}

/// Stops the load, brings every part back, waits for the sagas, runs `verify` and judges the
/// log; asserts 0 lost, 0 duplicated, verify passing, no 500; prints and records the numbers.
async fn finish(run: Run, scenario: &str, mut extra: serde_json::Value) -> Outcome {
    run.load
        .wait_for_answers(WARM, Duration::from_secs(120))
        .await;
    tokio::time::sleep(MIN_LOAD.saturating_sub(run.load.running_for())).await;
    let outcome = run.load.finish().await;
    run.cluster.bring_back().await;
    let sagas = checks::sagas_finish(&run.pool, i64::MAX, SAGAS_PATIENCE).await;
    let (verified, said) = run.cluster.verify().await;
    let judged = checks::judge(&run.pool, &outcome.orders).await;
    let in_log = checks::orders_in_log(&run.pool).await;
    let c = &outcome.counts;
    let record = json!({
        "scenario": scenario,
        "clients": CLIENTS,
        "seconds": (outcome.seconds * 10.0).round() / 10.0,
        "commands_2xx": c.answered_2xx,
        "commands_per_second": (outcome.commands_per_second() * 10.0).round() / 10.0,
        "answers_by_status": c.by_status,
        "five_xx": c.five_xx(),
        "status_500": c.status(500),
        "no_answer_sends": c.no_answer,
        "answered_during_fault": c.answered_during_fault,
        "given_up": c.given_up,
        "refused": c.refused.len(),
        "orders_seen": outcome.orders.len(),
        "orders_in_log": in_log,
        "lost": judged.lost.len(),
        "duplicated": judged.duplicated.len(),
        "sagas_finished_after_s": (sagas.as_secs_f64() * 10.0).round() / 10.0,
        "verify": if verified { "pass" } else { "FAIL" },
        "verify_checked": said.lines().find(|l| l.starts_with("checked ")).unwrap_or_default(),
        "verify_output": said.lines().rfind(|l| !l.trim().is_empty()).unwrap_or_default(),
    });
    if let (Some(r), Some(e)) = (record.as_object().cloned(), extra.as_object_mut()) {
        e.extend(r);
    }
    let line = format!("FAULT-RESULT {extra}");
    println!("{line}");
    if let Some(path) = std::env::var_os("ORDER_FAULTS_REPORT") {
        use std::io::Write as _;
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .expect("report file");
        writeln!(f, "{extra}").expect("report written");
    }
    assert!(verified, "order-service verify failed:\n{said}");
    assert!(
        !said.contains("not checked"),
        "verify left an invariant unchecked:\n{said}"
    );
    assert_eq!(judged.lost, Vec::<String>::new(), "lost commands");
    assert_eq!(
        judged.duplicated,
        Vec::<String>::new(),
        "duplicated effects"
    );
    assert_eq!(c.status(500), 0, "500 answers: {c:?}");
    assert_eq!(c.refused, Vec::<String>::new(), "refused commands");
    assert_eq!(c.given_up, 0, "commands given up: {c:?}");
    assert!(
        usize::try_from(in_log).expect("count") <= outcome.orders.len() + CLIENTS,
        "{in_log} orders in the log, {} answered: a key made two orders",
        outcome.orders.len()
    );
    outcome
}

/// Which replica runs each reader now (every reader held somewhere), at most `patience`.
async fn holders(run: &Run, patience: Duration) -> Vec<(&'static str, usize)> {
    eventually("readers not all active", patience, || async {
        let mut found = Vec::new();
        for reader in READERS {
            found.push((reader, run.cluster.reader_holder(reader, &run.http).await?));
        }
        Some(found)
    })
    .await
}

/// How long after `since` the reader works again on another replica than `gone`: another
/// replica reports it active, then its checkpoint moves past where it stood then.
async fn taken_over(run: &Run, reader: &str, gone: usize, since: Instant) -> Duration {
    let patience = (since + Duration::from_secs(60)).saturating_duration_since(Instant::now());
    eventually(&format!("{reader} never taken over"), patience, || async {
        run.cluster
            .reader_holder(reader, &run.http)
            .await
            .filter(|r| *r != gone)
    })
    .await;
    let at = checkpoints(&run.pool).await.remove(reader);
    let moved = checkpoint_moves(&run.pool, reader, at.as_ref(), Duration::from_secs(60))
        .await
        .unwrap_or_else(|| panic!("{reader}'s checkpoint never moved after takeover"));
    moved - since
}

pub async fn replica_killed() {
    let run = start().await;
    let held = holders(&run, Duration::from_secs(30)).await;
    let victim = held
        .iter()
        .find(|(r, _)| *r == "projector")
        .map(|(_, at)| *at)
        .expect("projector held");
    let readers: Vec<&str> = held
        .iter()
        .filter(|(_, at)| *at == victim)
        .map(|(r, _)| *r)
        .collect();
    let killed_at = Instant::now();
    run.cluster
        .fault("kill", &format!("service-{victim}"))
        .await;
    let times = join_all(
        readers
            .iter()
            .map(|r| taken_over(&run, r, victim, killed_at)),
    )
    .await;
    let takeover: serde_json::Map<String, serde_json::Value> = readers
        .iter()
        .zip(&times)
        .map(|(r, t)| {
            (
                (*r).to_owned(),
                json!((t.as_secs_f64() * 1000.0).round() / 1000.0),
            )
        })
        .collect();
    finish(
        run,
        "replica-sigkill",
        json!({"killed": format!("service-{victim}"), "readers_it_held": readers, "takeover_s": takeover}),
    )
    .await;
    for (r, t) in readers.iter().zip(&times) {
        assert!(*t < TAKEOVER, "{r} taken over after {t:?}");
    }
}

pub async fn nats_down(outage: Duration, name: &str) {
    let run = start().await;
    for i in 1..=3 {
        run.cluster.fault("kill", &format!("nats-{i}")).await;
    }
    run.load.fault_window(true);
    let down_at = Instant::now();
    // commands go on: the log is the outbox
    run.load
        .wait_for_answers(WARM, outage.max(Duration::from_secs(30)))
        .await;
    tokio::time::sleep(outage.saturating_sub(down_at.elapsed())).await;
    run.load.fault_window(false);
    let back_at = Instant::now();
    run.cluster.bring_back().await;
    let nats_back = back_at.elapsed();
    let upto = checks::log_end(&run.pool).await;
    let sagas = checks::sagas_finish(&run.pool, upto, SAGAS_PATIENCE).await;
    let during = run.load.counts().answered_during_fault;
    let outcome = finish(
        run,
        name,
        json!({"outage_s": outage.as_secs(), "nats_healthy_after_s": nats_back.as_secs_f64(),
               "sagas_done_after_nats_back_s": (sagas + nats_back).as_secs_f64()}),
    )
    .await;
    assert!(
        during >= WARM,
        "only {during} commands answered while NATS was down"
    );
    assert_eq!(outcome.counts.five_xx(), 0, "5xx without a database outage");
}

pub async fn postgres_crash() {
    let run = start().await;
    run.cluster.fault("kill", "postgres").await;
    run.load.fault_window(true);
    let crashed_at = Instant::now();
    // the fault's own length
    tokio::time::sleep(POSTGRES_DOWN).await;
    run.load.fault_window(false);
    run.cluster.bring_back().await;
    let pg_back = crashed_at.elapsed();
    let back_at = Instant::now();
    // the readers resume: each checkpoint moves again
    let at = checkpoints(&run.pool).await;
    let resumed = join_all(
        READERS
            .iter()
            .map(|r| checkpoint_moves(&run.pool, r, at.get(*r), Duration::from_secs(60))),
    )
    .await;
    let resume: serde_json::Map<String, serde_json::Value> = READERS
        .iter()
        .zip(&resumed)
        .map(|(r, t)| {
            let t = t.unwrap_or_else(|| panic!("{r} did not resume"));
            (
                (*r).to_owned(),
                json!(((t - back_at).as_secs_f64() * 1000.0).round() / 1000.0),
            )
        })
        .collect();
    finish(
        run,
        "postgres-sigkill",
        json!({"postgres_down_s": pg_back.as_secs_f64(), "readers_resumed_after_restart_s": resume}),
    )
    .await;
}

pub async fn one_nats_node_killed() {
    let run = start().await;
    run.cluster.fault("kill", "nats-2").await;
    run.load.fault_window(true);
    // sagas go on with two nodes of three: placed orders reach their verdicts meanwhile
    run.load
        .wait_for_answers(3 * WARM, Duration::from_secs(60))
        .await;
    let upto = checks::log_end(&run.pool).await;
    let sagas = checks::sagas_finish(&run.pool, upto, SAGAS_PATIENCE).await;
    // the fault's own length
    tokio::time::sleep(NODE_DOWN).await;
    run.load.fault_window(false);
    run.cluster.bring_back().await;
    let outcome = finish(
        run,
        "nats-one-node-sigkill",
        json!({"sagas_settled_with_a_node_down_s": sagas.as_secs_f64()}),
    )
    .await;
    assert_eq!(outcome.counts.five_xx(), 0);
}

pub async fn replica_hung() {
    let run = start().await;
    let held = holders(&run, Duration::from_secs(30)).await;
    let victim = held
        .iter()
        .find(|(r, _)| *r == "projector")
        .map(|(_, at)| *at)
        .expect("projector held");
    let part = format!("service-{victim}");
    run.cluster.fault("stop", &part).await;
    run.load.fault_window(true);
    let stopped_at = Instant::now();
    // does another replica take over while it hangs? (its connections stay open)
    let mut taken: Option<f64> = None;
    while stopped_at.elapsed() < Duration::from_secs(20) {
        if taken.is_none() {
            if let Some(r) = run.cluster.reader_holder("projector", &run.http).await {
                if r != victim {
                    taken = Some(stopped_at.elapsed().as_secs_f64());
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    run.cluster.fault("cont", &part).await;
    run.load.fault_window(false);
    let cont_at = Instant::now();
    let at = checkpoints(&run.pool).await;
    let resumed = join_all(
        READERS
            .iter()
            .map(|r| checkpoint_moves(&run.pool, r, at.get(*r), Duration::from_secs(30))),
    )
    .await;
    let resume: serde_json::Map<String, serde_json::Value> = READERS
        .iter()
        .zip(&resumed)
        .map(|(r, t)| {
            let t = t.unwrap_or_else(|| panic!("{r} did not resume after SIGCONT"));
            ((*r).to_owned(), json!((t - cont_at).as_secs_f64()))
        })
        .collect();
    let hang = Duration::from_secs(20);
    finish(
        run,
        "replica-sigstop-20s",
        json!({"stopped": part, "projector_taken_over_during_hang_after_s": taken,
               "readers_moving_after_cont_s": resume}),
    )
    .await;
    // a standby ends the hung holder's session after 10 s without progress (HUNG_AFTER in
    // src/log/reader.rs), then takes the lock at its next try
    let taken = taken.expect("the projector was not taken over while its holder hung");
    assert!(taken < hang.as_secs_f64(), "taken over after {taken} s");
}

pub async fn many_kills(kills: usize) {
    let run = start().await;
    let mut worst = Duration::ZERO;
    for n in 0..kills {
        let (victim, pause) = {
            let mut rng = rand::rng();
            (
                rng.random_range(1..=REPLICAS),
                rng.random_range(0..2_000_u64),
            )
        };
        tokio::time::sleep(Duration::from_millis(pause)).await;
        let at = checkpoints(&run.pool).await;
        let killed_at = Instant::now();
        run.cluster
            .fault("kill", &format!("service-{victim}"))
            .await;
        // the projector works again (wherever it runs now)
        let moved = checkpoint_moves(
            &run.pool,
            "projector",
            at.get("projector"),
            Duration::from_secs(60),
        )
        .await
        .unwrap_or_else(|| panic!("kill {n}: the projector stalled"));
        worst = worst.max(moved.saturating_duration_since(killed_at));
        run.cluster.bring_back().await;
    }
    finish(
        run,
        "replica-sigkill-x200",
        json!({"kills": kills, "worst_projector_resume_s": worst.as_secs_f64()}),
    )
    .await;
}
