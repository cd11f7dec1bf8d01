//! The log reader against real concurrency: late commits, rollbacks, per-aggregate order, and
//! the counter-test showing that tailing by `position` alone loses events.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use order_service::log::{Checkpoints, Cursor, LogEvent, LogHandler, LogReader, ReaderConfig};
use order_service::telemetry::Metrics;

use crate::poll::eventually;
use rand::{Rng as _, SeedableRng as _};
use secrecy::ExposeSecret as _;
use sqlx::postgres::PgPoolOptions;
use sqlx::{PgConnection, PgPool};
use tokio_util::sync::CancellationToken;

use crate::helpers::spawn_app_with;

/// (aggregate, sequence, position) as delivered.
type Seen = Arc<Mutex<Vec<(String, i64, i64)>>>;

struct Collect(Seen);

impl LogHandler for Collect {
    async fn handle(&mut self, _tx: &mut PgConnection, batch: &[LogEvent]) -> anyhow::Result<()> {
        let mut seen = self.0.lock().expect("lock");
        seen.extend(
            batch
                .iter()
                .filter(|e| e.aggregate_type == "GapTest")
                .map(|e| (e.aggregate_id.clone(), e.sequence, e.position)),
        );
        Ok(())
    }
}

async fn insert_event(conn: &mut PgConnection, aggregate: &str, sequence: i64) {
    sqlx::query(
        "insert into events (aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata)
         values ('GapTest', $1, $2, 'Tick', '1', '{}', '{}')",
    )
    .bind(aggregate)
    .bind(sequence)
    .execute(conn)
    .await
    .expect("insert");
}

/// A test database (the app's) with its own, larger pool and no projector in the way.
async fn database() -> (crate::helpers::TestApp, PgPool) {
    let app = spawn_app_with(|s| s.workers.projector = false).await;
    let url = app
        .settings
        .database_url
        .as_ref()
        .expect("url")
        .expose_secret()
        .to_owned();
    let pool = PgPoolOptions::new()
        .max_connections(40)
        .connect(&url)
        .await
        .expect("pool");
    (app, pool)
}

fn reader(pool: &PgPool, name: &str) -> LogReader {
    let mut config = ReaderConfig::new(name);
    config.batch_size = 7;
    config.poll_interval = Duration::from_millis(5);
    LogReader::new(pool.clone(), config, Metrics::new().expect("metrics"))
}

/// Polls `position > last` and nothing else: the broken way to tail a log.
async fn naive_poll(conn: &mut PgConnection, last: &mut i64, seen: &mut Vec<(String, i64, i64)>) {
    let rows: Vec<(String, i64, i64)> = sqlx::query_as(
        "select aggregate_id, sequence, position from events
          where aggregate_type = 'GapTest' and position > $1 order by position limit 100",
    )
    .bind(*last)
    .fetch_all(conn)
    .await
    .expect("poll");
    if let Some(row) = rows.last() {
        *last = row.2;
    }
    seen.extend(rows);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_writers_with_late_commits_and_rollbacks_lose_nothing() {
    // Arrange
    let (_app, pool) = database().await;
    let seen: Seen = Arc::default();
    let stop = CancellationToken::new();
    let reader = tokio::spawn(reader(&pool, "gap-test").run(Collect(seen.clone()), stop.clone()));
    let naive = {
        let pool = pool.clone();
        let stopping = stop.clone();
        tokio::spawn(async move {
            let mut conn = pool.acquire().await.expect("conn");
            let (mut last, mut seen) = (0, Vec::new());
            while !stopping.is_cancelled() {
                naive_poll(&mut conn, &mut last, &mut seen).await;
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            naive_poll(&mut conn, &mut last, &mut seen).await;
            seen
        })
    };

    // Act: 32 writers, each owning one aggregate, committing after random delays; ~10% of
    // transactions roll back (and their sequences are written again by the next one).
    let writers: Vec<_> = (0..32)
        .map(|w| {
            let pool = pool.clone();
            tokio::spawn(async move {
                let mut rng = rand::rngs::StdRng::seed_from_u64(w);
                let aggregate = format!("agg-{w}");
                let mut next = 1;
                let mut committed = Vec::new();
                for _ in 0..25 {
                    let mut tx = pool.begin().await.expect("begin");
                    let n = rng.random_range(1..=3);
                    for s in next..next + n {
                        insert_event(&mut tx, &aggregate, s).await;
                    }
                    tokio::time::sleep(Duration::from_millis(rng.random_range(0..30))).await;
                    if rng.random_bool(0.1) {
                        tx.rollback().await.expect("rollback");
                    } else {
                        tx.commit().await.expect("commit");
                        committed.extend((next..next + n).map(|s| (aggregate.clone(), s)));
                        next += n;
                    }
                }
                committed
            })
        })
        .collect();
    let mut expected = BTreeSet::new();
    for w in writers {
        expected.extend(w.await.expect("writer"));
    }

    // The reader catches up with everything committed.
    for _ in 0..400 {
        if seen.lock().expect("lock").len() >= expected.len() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    stop.cancel();
    reader.await.expect("reader task").expect("reader");
    let naive_seen = naive.await.expect("naive");

    // Assert: exactly the committed events, each once, in per-aggregate order.
    let seen = seen.lock().expect("lock").clone();
    let delivered: Vec<(String, i64)> = seen.iter().map(|(a, s, _)| (a.clone(), *s)).collect();
    let unique: BTreeSet<(String, i64)> = delivered.iter().cloned().collect();
    assert_eq!(
        unique.len(),
        delivered.len(),
        "an event was delivered twice"
    );
    assert_eq!(
        unique, expected,
        "delivered set differs from the committed set"
    );
    let mut last: BTreeMap<String, i64> = BTreeMap::new();
    for (aggregate, sequence) in &delivered {
        let prev = last.insert(aggregate.clone(), *sequence).unwrap_or(0);
        assert_eq!(*sequence, prev + 1, "{aggregate}: {sequence} after {prev}");
    }

    // Commit order really differed from position order, or the test proves nothing.
    let inversions = seen.windows(2).filter(|w| w[1].2 < w[0].2).count();
    assert!(
        inversions > 0,
        "no transaction committed out of position order"
    );
    // Counter-test: the naive reader, same harness, misses late commits.
    let naive_unique: BTreeSet<(String, i64)> =
        naive_seen.iter().map(|(a, s, _)| (a.clone(), *s)).collect();
    assert!(
        naive_unique.len() < expected.len(),
        "the position-only reader saw all {} events: the harness did not produce a late commit",
        expected.len()
    );
}

#[tokio::test]
async fn a_commit_that_lands_after_a_higher_position_is_still_read() {
    // Arrange: A takes a position, B takes a higher one and commits first.
    let (_app, pool) = database().await;
    let mut a = pool.begin().await.expect("begin a");
    insert_event(&mut a, "late", 1).await;
    let mut b = pool.begin().await.expect("begin b");
    insert_event(&mut b, "early", 1).await;
    b.commit().await.expect("commit b");

    // The naive reader advances past A's position while A is still open...
    let mut conn = pool.acquire().await.expect("conn");
    let (mut last, mut naive) = (0, Vec::new());
    naive_poll(&mut conn, &mut last, &mut naive).await;
    // ...and the real reader reads nothing yet: A is older than every running transaction.
    let held =
        order_service::log::read_batch(&mut conn, order_service::log::Cursor::default(), 100)
            .await
            .expect("read");
    assert!(
        held.iter().all(|e| e.aggregate_type != "GapTest"),
        "read past a running transaction"
    );

    a.commit().await.expect("commit a");
    naive_poll(&mut conn, &mut last, &mut naive).await;
    // Transactions of other tests on this server can hold the horizon back for a moment: wait
    // until both are readable (a reader that skipped A would never get there).
    let mut read = Vec::new();
    for _ in 0..400 {
        read =
            order_service::log::read_batch(&mut conn, order_service::log::Cursor::default(), 100)
                .await
                .expect("read");
        if read
            .iter()
            .filter(|e| e.aggregate_type == "GapTest")
            .count()
            == 2
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }

    // Assert
    let naive_aggregates: Vec<&str> = naive.iter().map(|(a, _, _)| a.as_str()).collect();
    assert_eq!(
        naive_aggregates,
        ["early"],
        "position-only tailing skips the late commit for good"
    );
    let aggregates: Vec<&str> = read
        .iter()
        .filter(|e| e.aggregate_type == "GapTest")
        .map(|e| e.aggregate_id.as_str())
        .collect();
    assert_eq!(
        aggregates,
        ["late", "early"],
        "transaction order, late commit included"
    );
}

async fn checkpoint_of(pool: &PgPool, name: &str) -> Cursor {
    let mut conn = pool.acquire().await.expect("conn");
    order_service::log::load_checkpoint(&mut conn, name)
        .await
        .expect("checkpoint")
}

#[tokio::test]
async fn a_checkpoint_only_moves_forward_unless_a_rebuild_resets_it() {
    use order_service::log::{reset_checkpoint, save_checkpoint};

    let (_app, pool) = database().await;
    let mut conn = pool.acquire().await.expect("conn");
    let at = |tx_id, position| Cursor { tx_id, position };

    // Forward: written.
    assert!(save_checkpoint(&mut conn, "fwd", at(10, 5))
        .await
        .expect("save"));
    assert!(save_checkpoint(&mut conn, "fwd", at(10, 6))
        .await
        .expect("save"));
    assert!(save_checkpoint(&mut conn, "fwd", at(11, 1))
        .await
        .expect("save"));
    assert_eq!(checkpoint_of(&pool, "fwd").await, at(11, 1));

    // Backward or in place, by position or by transaction: refused, nothing written.
    for behind in [at(11, 1), at(11, 0), at(10, 99), at(0, 0)] {
        assert!(
            !save_checkpoint(&mut conn, "fwd", behind)
                .await
                .expect("save"),
            "{behind:?} was accepted after (11, 1)"
        );
        assert_eq!(checkpoint_of(&pool, "fwd").await, at(11, 1));
    }

    // A rebuild sets it where its output stands, backwards too.
    reset_checkpoint(&mut conn, "fwd", at(3, 2))
        .await
        .expect("reset");
    assert_eq!(checkpoint_of(&pool, "fwd").await, at(3, 2));
    assert!(save_checkpoint(&mut conn, "fwd", at(3, 3))
        .await
        .expect("save"));
    assert_eq!(checkpoint_of(&pool, "fwd").await, at(3, 3));
}

/// Hands each batch's `GapTest` cursors to the test, then waits for its go-ahead.
struct Gate {
    batches: tokio::sync::mpsc::UnboundedSender<Vec<Cursor>>,
    go: tokio::sync::mpsc::UnboundedReceiver<()>,
}

impl LogHandler for Gate {
    async fn handle(&mut self, _tx: &mut PgConnection, batch: &[LogEvent]) -> anyhow::Result<()> {
        let cursors = batch
            .iter()
            .filter(|e| e.aggregate_type == "GapTest")
            .map(LogEvent::cursor)
            .collect();
        self.batches.send(cursors)?;
        self.go
            .recv()
            .await
            .ok_or_else(|| anyhow::anyhow!("the test went away"))?;
        Ok(())
    }
}

async fn next_batch(
    batches: &mut tokio::sync::mpsc::UnboundedReceiver<Vec<Cursor>>,
) -> Vec<Cursor> {
    tokio::time::timeout(Duration::from_secs(30), batches.recv())
        .await
        .expect("a batch within 30 s")
        .expect("reader alive")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reader_whose_checkpoint_was_advanced_meanwhile_goes_on_from_there_not_back() {
    // Arrange: 30 events; a reader (5 per batch) held inside its first batch.
    let (_app, pool) = database().await;
    let mut tx = pool.begin().await.expect("begin");
    for s in 1..=30 {
        insert_event(&mut tx, "advanced", s).await;
    }
    tx.commit().await.expect("commit");
    let (batches_tx, mut batches) = tokio::sync::mpsc::unbounded_channel();
    let (go, go_rx) = tokio::sync::mpsc::unbounded_channel();
    let stop = CancellationToken::new();
    let mut config = ReaderConfig::new("advanced");
    config.batch_size = 5;
    config.poll_interval = Duration::from_millis(5);
    let reader = LogReader::new(pool.clone(), config, Metrics::new().expect("metrics"));
    let running = tokio::spawn(reader.run(
        Gate {
            batches: batches_tx,
            go: go_rx,
        },
        stop.clone(),
    ));
    let first = next_batch(&mut batches).await;
    assert_eq!(first.len(), 5);
    let all: Vec<Cursor> = order_service::log::read_batch(
        &mut pool.acquire().await.expect("conn"),
        Cursor::default(),
        100,
    )
    .await
    .expect("read")
    .iter()
    .filter(|e| e.aggregate_type == "GapTest")
    .map(LogEvent::cursor)
    .collect();
    assert_eq!(all.len(), 30);

    // Act: meanwhile a rebuild moves the checkpoint to the 20th event; the batch finishes.
    let mut conn = pool.acquire().await.expect("conn");
    order_service::log::reset_checkpoint(&mut conn, "advanced", all[19])
        .await
        .expect("reset");
    go.send(()).expect("go");
    let second = next_batch(&mut batches).await;

    // Assert: the checkpoint did not go back, and the reader went on after the 20th event.
    assert_eq!(
        checkpoint_of(&pool, "advanced").await,
        all[19],
        "the first batch moved the checkpoint back"
    );
    assert_eq!(second.first(), Some(&all[20]), "the reader went back");
    for _ in 0..100 {
        go.send(()).expect("go");
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while checkpoint_of(&pool, "advanced").await < all[29] {
        assert!(std::time::Instant::now() < deadline, "the reader stalled");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    stop.cancel();
    running.await.expect("reader task").expect("reader");
}

#[tokio::test]
async fn events_are_read_in_transaction_id_order_across_a_power_of_ten() {
    // Arrange: two commits as if by transactions 1000 and then 999 (explicit, old ids, so both
    // are below every running transaction). As text, "1000" sorts before "999".
    let (_app, pool) = database().await;
    let mut conn = pool.acquire().await.expect("conn");
    for (tx_id, aggregate) in [(1000, "late-id"), (999, "early-id")] {
        sqlx::query(
            "insert into events (aggregate_type, aggregate_id, sequence, event_type, event_version,
                                 payload, metadata, tx_id)
             values ('GapTest', $1, 1, 'Tick', '1', '{}', '{}', $2::text::xid8)",
        )
        .bind(aggregate)
        .bind(i64::from(tx_id).to_string())
        .execute(&mut *conn)
        .await
        .expect("insert");
    }

    // Act: read one event at a time, as a reader with a batch size of 1 would.
    let mut at = Cursor::default();
    let mut seen = Vec::new();
    loop {
        let batch = order_service::log::read_batch(&mut conn, at, 1)
            .await
            .expect("read");
        let Some(e) = batch.last() else { break };
        at = e.cursor();
        if e.aggregate_type == "GapTest" {
            seen.push((e.tx_id, e.aggregate_id.clone()));
        }
    }

    // Assert: transaction 999 first, and nothing skipped.
    assert_eq!(
        seen,
        vec![(999, "early-id".to_owned()), (1000, "late-id".to_owned())]
    );
}

/// Runs a reader with `handler` until the returned token is cancelled.
fn spawn_reader<H: LogHandler + 'static>(
    pool: &PgPool,
    config: ReaderConfig,
    handler: H,
) -> (
    CancellationToken,
    tokio::task::JoinHandle<anyhow::Result<()>>,
) {
    let stop = CancellationToken::new();
    let reader = LogReader::new(pool.clone(), config, Metrics::new().expect("metrics"));
    (stop.clone(), tokio::spawn(reader.run(handler, stop)))
}

/// Collects the `(event_type, payload)` of what it is handed.
struct Typed(Arc<Mutex<Vec<(String, serde_json::Value)>>>);

impl LogHandler for Typed {
    async fn handle(&mut self, _tx: &mut PgConnection, batch: &[LogEvent]) -> anyhow::Result<()> {
        self.0.lock().expect("lock").extend(
            batch
                .iter()
                .filter(|e| e.aggregate_type == "GapTest")
                .map(|e| (e.event_type.clone(), e.payload.clone())),
        );
        Ok(())
    }
}

#[tokio::test]
async fn a_reader_wanting_some_types_passes_the_others_over_and_checkpoints_when_idle() {
    // Arrange: ticks and tocks, ending with ticks; a reader that wants only tocks and writes
    // its checkpoint every 50 ms (no transaction per batch).
    let (_app, pool) = database().await;
    let mut tx = pool.begin().await.expect("begin");
    for s in 1..=13_i64 {
        let kind = if s % 4 == 0 { "Tock" } else { "Tick" };
        sqlx::query(
            "insert into events (aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata)
             values ('GapTest', 'typed', $1, $2, '1', jsonb_build_object('n', $1), '{}')",
        )
        .bind(s)
        .bind(kind)
        .execute(&mut *tx)
        .await
        .expect("insert");
    }
    tx.commit().await.expect("commit");
    // (readable once every older transaction has ended)
    let mut conn = pool.acquire().await.expect("conn");
    let last = loop {
        let batch = order_service::log::read_batch(&mut conn, Cursor::default(), 1_000)
            .await
            .expect("read");
        if batch.iter().filter(|e| e.aggregate_id == "typed").count() == 13 {
            break batch.last().map(LogEvent::cursor).expect("events");
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    let config = |name: &str| {
        let mut config = ReaderConfig::new(name)
            .wanting(&["Tock"])
            .checkpointing(Checkpoints::Every(Duration::from_millis(50)));
        config.batch_size = 5;
        config.poll_interval = Duration::from_secs(5);
        config
    };
    let seen = Arc::new(Mutex::new(Vec::new()));
    let (stop, running) = spawn_reader(&pool, config("typed"), Typed(seen.clone()));

    // Act: wait for the checkpoint to reach the last event (a tick, which it was not handed).
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while checkpoint_of(&pool, "typed").await < last {
        assert!(
            std::time::Instant::now() < deadline,
            "the idle reader did not write its checkpoint"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    stop.cancel();
    running.await.expect("reader task").expect("reader");

    // Assert: only the tocks, with their payloads, in order; exactly at the end of the log.
    let seen = seen.lock().expect("lock").clone();
    assert_eq!(
        seen,
        [4, 8, 12]
            .map(|n| ("Tock".to_owned(), serde_json::json!({ "n": n })))
            .to_vec()
    );
    assert_eq!(checkpoint_of(&pool, "typed").await, last);

    // A new leader resumes from the checkpoint: nothing is handed to it again, only a tock
    // appended since (handed over in log order, so anything handed again would come first).
    sqlx::query(
        "insert into events (aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata)
         values ('GapTest', 'typed', 14, 'Tock', '1', jsonb_build_object('n', 14), '{}')",
    )
    .execute(&pool)
    .await
    .expect("insert");
    let again = Arc::new(Mutex::new(Vec::new()));
    let (stop, running) = spawn_reader(&pool, config("typed"), Typed(again.clone()));
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while again.lock().expect("lock").is_empty() {
        assert!(
            std::time::Instant::now() < deadline,
            "the new leader read nothing"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    stop.cancel();
    running.await.expect("reader task").expect("reader");
    assert_eq!(
        *again.lock().expect("lock"),
        [("Tock".to_owned(), serde_json::json!({ "n": 14 }))],
        "the new leader was handed events behind the checkpoint"
    );
}

/// Whether a read from the start of the log returns the `GapTest` event of `aggregate`.
async fn readable(conn: &mut PgConnection, aggregate: &str) -> bool {
    order_service::log::read_batch(conn, Cursor::default(), 10_000)
        .await
        .expect("read")
        .iter()
        .any(|e| e.aggregate_id == aggregate)
}

#[tokio::test]
async fn a_log_readers_open_transaction_holds_no_event_back_any_other_does() {
    // Arrange: a log reader's connection (marked as one) in the middle of a batch transaction
    // that has written (so it has a transaction id), and an event committed after it began.
    let (_app, pool) = database().await;
    let mut marked = pool.acquire().await.expect("conn").detach();
    sqlx::query("select set_config('application_name', $1, false)")
        .bind(order_service::log::READER_APPLICATION_NAME)
        .execute(&mut marked)
        .await
        .expect("mark");
    let mut batch = sqlx::Connection::begin(&mut marked).await.expect("begin");
    sqlx::query("insert into reader_checkpoints (name, tx_id, position) values ('busy', '1', 0)")
        .execute(&mut *batch)
        .await
        .expect("write");
    let mut conn = pool.acquire().await.expect("conn");
    insert_event(&mut conn, "after-the-reader", 1).await;

    // Act + Assert: readable while the reader's transaction is still open.
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while !readable(&mut conn, "after-the-reader").await {
        assert!(
            std::time::Instant::now() < deadline,
            "a log reader's open transaction held an event back"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // Counter-test: any other open transaction with an id holds later events back until it
    // ends (it could still append an event below them).
    let mut other = pool.begin().await.expect("begin");
    sqlx::query("insert into reader_checkpoints (name, tx_id, position) values ('other', '1', 0)")
        .execute(&mut *other)
        .await
        .expect("write");
    insert_event(&mut conn, "after-the-writer", 1).await;
    // (committed before this read: the read says it holds committed events back, and which)
    let tail = order_service::log::read_tail(&mut conn, Cursor::default(), 10_000, None)
        .await
        .expect("read");
    assert!(tail.held_back, "the read did not see the open transaction");
    assert!(
        !tail
            .events
            .iter()
            .any(|e| e.aggregate_id == "after-the-writer"),
        "an event was read past an open transaction that could still append below it"
    );
    other.rollback().await.expect("rollback");
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while !readable(&mut conn, "after-the-writer").await {
        assert!(std::time::Instant::now() < deadline, "never readable");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    batch.rollback().await.expect("rollback");
}

/// Appends of one process wake the readers of another through one `NOTIFY` per burst, which
/// the sender's own listener skips; a process alone on its database sends none (each would
/// be a transaction no one hears).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn appends_wake_other_processes_and_a_process_alone_notifies_no_one() {
    use order_service::log::wake::{self, AppendSignal};
    let (app, pool) = database().await;
    // Stopped, not only dropped: a listener it was still connecting would show up later.
    app.stop().await;
    let listeners = |pool: PgPool| async move {
        sqlx::query_scalar::<_, i64>(
            "select count(*) from pg_stat_activity
              where datname = current_database()
                and application_name like 'order-service append listener %'",
        )
        .fetch_one(&pool)
        .await
        .expect("pg_stat_activity")
    };
    // the test app's own listener goes with it
    for _ in 0..200 {
        if listeners(pool.clone()).await == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert_eq!(listeners(pool.clone()).await, 0);
    let mut observer = sqlx::postgres::PgListener::connect_with(&pool)
        .await
        .expect("observer");
    observer.listen(wake::CHANNEL).await.expect("listen");
    let stop = CancellationToken::new();
    let (a, b) = (AppendSignal::default(), AppendSignal::default());
    tokio::spawn(wake::forward_to_other_processes(
        pool.clone(),
        a.clone(),
        stop.clone(),
    ));
    tokio::spawn(wake::listen_to_other_processes(
        pool.clone(),
        a.clone(),
        stop.clone(),
    ));
    let mut a_woken = a.subscribe(None);
    let mut b_woken = b.subscribe(None);
    let mut a_did = a.activity();
    for _ in 0..200 {
        if listeners(pool.clone()).await == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert_eq!(listeners(pool.clone()).await, 1, "A listens");

    // A alone: its readers wake; its forwarder deals with the burst and sends nothing
    a.appended(&["ItemAdded"]);
    assert!(a_woken.has_changed().expect("open"));
    a_woken.mark_unchanged();
    let dealt = *tokio::time::timeout(Duration::from_secs(5), a_did.wait_for(|d| d.bursts == 1))
        .await
        .expect("A's forwarder dealt with the burst")
        .expect("open");
    assert_eq!(dealt.others_listening, Some(false), "{dealt:?}");
    assert_eq!(dealt.notified, 0, "a process alone sent a NOTIFY");

    // B listens: from A's next look on, A's appends reach it, once per burst. (A trusts its
    // look for a while: append until a look finds B, each burst dealt with in turn.)
    tokio::spawn(wake::listen_to_other_processes(
        pool.clone(),
        b.clone(),
        stop.clone(),
    ));
    for _ in 0..200 {
        if listeners(pool.clone()).await == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert_eq!(listeners(pool.clone()).await, 2, "B listens");
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let found = loop {
        let before = a_did.borrow_and_update().bursts;
        a.appended(&["ItemAdded"]);
        let dealt = *tokio::time::timeout(
            Duration::from_secs(5),
            a_did.wait_for(|d| d.bursts > before),
        )
        .await
        .expect("A's forwarder dealt with the burst")
        .expect("open");
        if dealt.others_listening == Some(true) {
            break dealt;
        }
        assert_eq!(dealt.notified, 0, "A notified before it saw B listen");
        assert!(
            std::time::Instant::now() < deadline,
            "A's forwarder never looked again"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    };
    assert_eq!(found.notified, 1, "one NOTIFY for the burst that found B");
    a_woken.mark_unchanged();
    tokio::time::timeout(Duration::from_secs(5), observer.recv())
        .await
        .expect("A notified, B listening")
        .expect("notification");
    tokio::time::timeout(Duration::from_secs(5), b_woken.changed())
        .await
        .expect("B's readers woken by A's append")
        .expect("open");
    // A's own notification came back to A's listener too, and was skipped
    tokio::time::timeout(Duration::from_secs(5), a_did.wait_for(|d| d.heard_own == 1))
        .await
        .expect("A's listener heard A's own notification")
        .expect("open");
    assert!(
        !a_woken.has_changed().expect("open"),
        "A's readers were woken again by A's own notification"
    );
    assert_eq!(a_did.borrow().heard_others, 0, "only A appended");
    stop.cancel();
}

/// A hung holder (its session open, holding the reader's lock, doing nothing) is unseated by a
/// standby once the checkpoint has not moved for `hung_after` while an event that old waits;
/// until then the standby waits (counter-test).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_standby_unseats_a_holder_that_made_no_progress_with_events_waiting() {
    let (_app, pool) = database().await;
    let name = "hung-holder";
    let mut hung = pool.acquire().await.expect("conn").detach();
    sqlx::query("select pg_advisory_lock(hashtextextended($1, 0))")
        .bind(format!("log-reader:{name}"))
        .execute(&mut hung)
        .await
        .expect("lock");
    sqlx::query("insert into reader_checkpoints (name) values ($1)")
        .bind(name)
        .execute(&mut hung)
        .await
        .expect("checkpoint");
    let mut conn = pool.acquire().await.expect("conn");
    insert_event(&mut conn, "hung-1", 1).await;

    let seen: Seen = Arc::default();
    let mut config = ReaderConfig::new(name);
    config.poll_interval = Duration::from_millis(5);
    config.lock_retry = Duration::from_millis(100);
    config.hung_after = Some(Duration::from_secs(3));
    let metrics = Metrics::new().expect("metrics");
    let stop = CancellationToken::new();
    let reader = LogReader::new(pool.clone(), config, Arc::clone(&metrics));
    let task = tokio::spawn(reader.run(Collect(Arc::clone(&seen)), stop.clone()));
    // time itself: within `hung_after` the holder is left alone
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(
        seen.lock().expect("lock").is_empty(),
        "read while the holder still held the lock"
    );
    eventually(
        "the hung holder was never unseated",
        Duration::from_secs(15),
        || async { (!seen.lock().expect("lock").is_empty()).then_some(()) },
    )
    .await;
    assert_eq!(seen.lock().expect("lock")[0].0, "hung-1");
    // the hung session was ended, and counted
    assert!(sqlx::query("select 1").execute(&mut hung).await.is_err());
    assert_eq!(
        metrics
            .readers
            .holders_ended
            .with_label_values(&[name])
            .get(),
        1
    );
    stop.cancel();
    task.await.expect("join").expect("reader");
}
