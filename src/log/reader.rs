//! The reader loop: leadership, batches, checkpoints, wake-ups, metrics.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use sqlx::{Connection as _, PgConnection, PgPool};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::cursor::{self, Cursor, LogEvent};
use super::wake::AppendSignal;
use crate::telemetry::Metrics;

/// The advisory-lock key text of a reader (hashed with `hashtextextended`).
pub(crate) fn lock_key(name: &str) -> String {
    format!("log-reader:{name}")
}

/// Consumes batches of the log.
pub trait LogHandler: Send {
    /// Applies `batch` (in log order; only the wanted types, see [`ReaderConfig::wanted`]).
    ///
    /// Never appends to the log on `tx`: other readers do not wait for a reader's transaction
    /// (see [`super::read_tail`]), so an event it appended could be passed over. Effects in
    /// aggregates go through their repositories, on other connections.
    ///
    /// With [`Checkpoints::WithEachBatch`], `tx` is the batch's transaction: the reader writes
    /// its checkpoint in it and commits after this returns `Ok`; on `Err` everything is rolled
    /// back and the batch is offered again later. With [`Checkpoints::Every`] and
    /// [`Checkpoints::Never`], `tx` is the reader's connection outside any transaction (each statement commits on its own, nothing
    /// is rolled back): such a handler's effects belong elsewhere, and must be idempotent.
    fn handle(
        &mut self,
        tx: &mut PgConnection,
        batch: &[LogEvent],
    ) -> impl Future<Output = anyhow::Result<()>> + Send;
}

/// First and longest pause before looking again while committed events wait behind an older
/// open transaction.
const HELD_BACK_FIRST: Duration = Duration::from_millis(2);
const HELD_BACK_MAX: Duration = Duration::from_millis(50);

/// How long a reader's holder may make no progress, with events waiting, before a standby
/// ends its session ([`ReaderConfig::hung_after`]): well above a batch's time, a pause of the
/// whole machine or a database failover.
const HUNG_AFTER: Duration = Duration::from_secs(10);

/// Where a handler's effects land, which decides how its reader keeps its checkpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Checkpoints {
    /// In the batch's transaction (read models): the checkpoint is written in that transaction,
    /// so every event takes effect exactly once.
    WithEachBatch,
    /// Outside the database or in other aggregates' own transactions, idempotently (NATS
    /// publishes with a message id, commands a saga or order absorbs when repeated). The
    /// handler runs on the reader's connection without a transaction, and the checkpoint is
    /// written at most this often and when the reader goes idle: a crash repeats at most that
    /// much of the log, instead of every batch costing a transaction and a WAL flush.
    Every(Duration),
    /// In this process's memory only (the live feeds): no checkpoint and no lock. Every
    /// process runs its own such reader, which starts at the end of the log each time it
    /// starts (the events of transactions still open then, and everything after).
    Never,
}

impl Checkpoints {
    /// The relay's and the saga reactor's: at most 100 ms of the log repeated after a crash.
    pub const IDEMPOTENT: Self = Self::Every(Duration::from_millis(100));
}

/// How one reader behaves.
#[derive(Debug, Clone)]
pub struct ReaderConfig {
    /// Reader name: checkpoint row, advisory lock key, metric label.
    pub name: String,
    /// Most events read per batch, wanted or not.
    pub batch_size: i64,
    /// Longest sleep between polls when no notification arrives.
    pub poll_interval: Duration,
    /// How often a standby tries to take the lock.
    pub lock_retry: Duration,
    /// The only event types the handler sees (`None`: all). The others are passed over
    /// without reading their payloads, and this process's appends of only them wake no read
    /// (the next read, woken or at the poll, passes them over).
    pub wanted: Option<Vec<String>>,
    /// Where the handler's effects land, and so how the checkpoint is kept.
    pub checkpoints: Checkpoints,
    /// After a batch that was not full, the next read starts no sooner than this after the
    /// previous one: events appended meanwhile wait and share a batch. Zero (the default)
    /// reads as soon as anything is appended. A reader that is behind (full batches) never
    /// waits.
    pub batch_interval: Duration,
    /// A standby ends the session of a lock holder whose checkpoint has not moved for this
    /// long while an event at least as old waits (a hung process); `None`: never.
    pub hung_after: Option<Duration>,
}

impl ReaderConfig {
    pub fn new(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            batch_size: 500,
            poll_interval: Duration::from_millis(250),
            lock_retry: Duration::from_secs(1),
            wanted: None,
            checkpoints: Checkpoints::WithEachBatch,
            batch_interval: Duration::ZERO,
            hung_after: Some(HUNG_AFTER),
        }
    }

    /// Only events of these types reach the handler.
    #[must_use]
    pub fn wanting(mut self, types: &[&str]) -> Self {
        self.wanted = Some(types.iter().map(|&t| t.to_owned()).collect());
        self
    }

    #[must_use]
    pub fn checkpointing(mut self, checkpoints: Checkpoints) -> Self {
        self.checkpoints = checkpoints;
        self
    }
}

/// One named reader of the log; run it with [`LogReader::run`].
#[derive(Debug, Clone)]
pub struct LogReader {
    pool: PgPool,
    config: ReaderConfig,
    metrics: Arc<Metrics>,
    appended: Option<AppendSignal>,
    /// Where a reader without checkpoint starts (default: the end of the log).
    start: Option<Cursor>,
}

impl LogReader {
    pub fn new(pool: PgPool, config: ReaderConfig, metrics: Arc<Metrics>) -> Self {
        Self {
            pool,
            config,
            metrics,
            appended: None,
            start: None,
        }
    }

    /// With [`Checkpoints::Never`]: starts after `at` rather than at the end of the log.
    #[must_use]
    pub fn starting_at(mut self, at: Cursor) -> Self {
        self.start = Some(at);
        self
    }

    /// Wakes on appends of this process, and on other processes' that this process hears of
    /// (see [`super::wake`]); without it, the reader polls.
    #[must_use]
    pub fn woken_by(mut self, appended: AppendSignal) -> Self {
        self.appended = Some(appended);
        self
    }

    /// Runs until `shutdown` is cancelled: stands by until it holds the reader's lock, then
    /// applies the log batch by batch. Connection failures send it back to standby after a
    /// pause (standing by is this reader's own loop, not a restart); only a shutdown ends it.
    pub async fn run<H: LogHandler>(
        self,
        mut handler: H,
        shutdown: CancellationToken,
    ) -> anyhow::Result<()> {
        let name = self.config.name.clone();
        let leader = self.metrics.readers.leader.with_label_values(&[&name]);
        // Where a reader without checkpoint (`Checkpoints::Never`) stood when its last term
        // ended: the next term goes on from there, so a lost connection skips nothing.
        let mut resume = self.start;
        loop {
            if shutdown.is_cancelled() {
                break;
            }
            match self.lead(&mut handler, &shutdown, &mut resume).await {
                Ok(()) => {}
                Err(e) => {
                    leader.set(0);
                    self.metrics
                        .readers
                        .errors
                        .with_label_values(&[&name])
                        .inc();
                    tracing::warn!(reader = %name, error = format!("{e:#}"), "log reader lost its footing; retrying");
                }
            }
            leader.set(0);
            tokio::select! {
                () = tokio::time::sleep(self.config.lock_retry) => {}
                () = shutdown.cancelled() => {}
            }
        }
        tracing::info!(reader = %name, "log reader stopped");
        Ok(())
    }

    /// One term: take the lock (or return to wait), then read until shutdown or failure.
    /// Readers without checkpoint start at `resume` (the end of the log the first time) and
    /// keep it up to date.
    async fn lead<H: LogHandler>(
        &self,
        handler: &mut H,
        shutdown: &CancellationToken,
        resume: &mut Option<Cursor>,
    ) -> anyhow::Result<()> {
        let name = self.config.name.as_str();
        // A connection of its own: the advisory lock lives and dies with it, and every batch
        // runs on it, so a reader that lost its connection cannot write anything.
        let mut conn = self
            .pool
            .acquire()
            .await
            .context("connecting the log reader")?
            .detach();
        let per_process = self.config.checkpoints == Checkpoints::Never;
        if !self.take_the_lead(&mut conn, per_process).await? {
            return Ok(());
        }
        // without a local signal: a receiver that never changes
        let (never, idle) = watch::channel(0_u64);
        let mut local = self.appended.as_ref().map_or(idle, |signal| {
            signal.subscribe(self.config.wanted.as_deref())
        });
        let mut held_back_pause = HELD_BACK_FIRST;

        let mut at = if per_process {
            match *resume {
                Some(at) => at,
                None => cursor::end_of_log(&mut conn).await?,
            }
        } else {
            cursor::load_checkpoint(&mut conn, name).await?
        };
        // What the checkpoint row says, and when it was written (`Checkpoints::Every`).
        let mut saved = (at, Instant::now());
        // The lag gauges, measured beside the loop (never in its way) for as long as this term
        // lasts: dropping the set stops it.
        let (position, watched) = watch::channel(at);
        let mut lag_gauges = tokio::task::JoinSet::new();
        lag_gauges.spawn(measure_lag(
            self.pool.clone(),
            name.to_owned(),
            watched,
            Arc::clone(&self.metrics),
        ));
        loop {
            if shutdown.is_cancelled() {
                self.save_if_due(&mut conn, at, &mut saved, true).await?;
                conn.close().await.ok();
                return Ok(());
            }
            let read_at = Instant::now();
            let (read, held_back) = self.step(&mut conn, handler, &mut at).await?;
            self.save_if_due(&mut conn, at, &mut saved, false).await?;
            position.send_if_modified(|p| std::mem::replace(p, at) != at);
            if per_process {
                *resume = Some(at);
            }
            let full = i64::try_from(read).unwrap_or(i64::MAX) >= self.config.batch_size;
            if read > 0 {
                held_back_pause = HELD_BACK_FIRST;
            }
            if full {
                continue;
            }
            let pause = self.pause(held_back, &mut held_back_pause, at, saved);
            tokio::select! {
                changed = local.changed() => {
                    if changed.is_err() {
                        // the signal is gone (shutting down): poll from now on
                        local = never.subscribe();
                    }
                }
                () = tokio::time::sleep(pause) => {}
                () = shutdown.cancelled() => {}
            }
            let gather = self.config.batch_interval.saturating_sub(read_at.elapsed());
            if !gather.is_zero() {
                tokio::select! {
                    () = tokio::time::sleep(gather) => {}
                    () = shutdown.cancelled() => {}
                }
            }
        }
    }

    /// Takes the reader's advisory lock on `conn` (a per-process reader needs none); false
    /// when another process holds it. Then marks the connection as one that never appends to
    /// the log, so its batch transactions do not hold other readers' horizon back (see
    /// `cursor::read_tail`).
    async fn take_the_lead(
        &self,
        conn: &mut PgConnection,
        per_process: bool,
    ) -> anyhow::Result<bool> {
        let name = self.config.name.as_str();
        if !per_process {
            let locked: bool =
                sqlx::query_scalar("select pg_try_advisory_lock(hashtextextended($1, 0))")
                    .bind(lock_key(name))
                    .fetch_one(&mut *conn)
                    .await?;
            if !locked {
                self.unseat_if_hung(conn).await?;
                return Ok(false);
            }
            // a new holder's time without progress starts now, not at its predecessor's last
            // checkpoint (else a standby would unseat it before its first batch)
            sqlx::query("update reader_checkpoints set updated_at = now() where name = $1")
                .bind(name)
                .execute(&mut *conn)
                .await?;
        }
        sqlx::query("select set_config('application_name', $1, false)")
            .bind(cursor::READER_APPLICATION_NAME)
            .execute(&mut *conn)
            .await?;
        tracing::info!(reader = name, "log reader is active");
        self.metrics
            .readers
            .leader
            .with_label_values(&[name])
            .set(1);
        Ok(true)
    }

    /// Ends the session of the lock's holder when it looks hung (see
    /// [`ReaderConfig::hung_after`]): a process that stopped (SIGSTOP, a frozen VM) keeps its
    /// connection, and with it the lock, for as long as the kernel keeps its socket; nobody
    /// would read the log meanwhile. Ending its session frees the lock for the next try;
    /// what it had not committed rolls back, and its effects outside the database are
    /// idempotent (see [`Checkpoints`]), so a holder that was only slow loses nothing.
    async fn unseat_if_hung(&self, conn: &mut PgConnection) -> anyhow::Result<()> {
        let Some(after) = self.config.hung_after else {
            return Ok(());
        };
        // Hung: its checkpoint is older than `after`, and an event older than `after` waits
        // after it. (Not "below the horizon": a holder hung inside its batch transaction
        // holds the horizon itself.)
        let holder: Option<i32> = sqlx::query_scalar(
            "select l.pid from pg_locks l, reader_checkpoints c
              where l.locktype = 'advisory' and l.granted and l.objsubid = 1
                and l.database = (select oid from pg_database where datname = current_database())
                and ((l.classid::bigint << 32) | l.objid::bigint) = hashtextextended($1, 0)
                and c.name = $2
                and c.updated_at < now() - make_interval(secs => $3)
                and exists (select from events e
                             where (e.tx_id, e.position) > (c.tx_id, c.position)
                               and e.recorded_at < now() - make_interval(secs => $3))
              limit 1",
        )
        .bind(lock_key(&self.config.name))
        .bind(&self.config.name)
        .bind(after.as_secs_f64())
        .fetch_optional(&mut *conn)
        .await?;
        if let Some(pid) = holder {
            let ended: bool = sqlx::query_scalar("select pg_terminate_backend($1)")
                .bind(pid)
                .fetch_one(&mut *conn)
                .await?;
            if ended {
                self.metrics
                    .readers
                    .holders_ended
                    .with_label_values(&[&self.config.name])
                    .inc();
            }
            tracing::warn!(
                reader = %self.config.name,
                backend = pid,
                ended,
                "the reader's lock holder made no progress for {} s with events waiting: its session is ended",
                after.as_secs()
            );
        }
        Ok(())
    }

    /// How long to wait for a wake-up after a batch that was not full. Committed events behind
    /// an older, still open transaction become readable when it ends, which nothing announces:
    /// look again soon (`held_back`, doubling from [`HELD_BACK_FIRST`]) rather than at the next
    /// poll. Progress not yet written (`saved` behind `at`) wakes up in time to write it.
    fn pause(
        &self,
        held_back: bool,
        held_back_pause: &mut Duration,
        at: Cursor,
        saved: (Cursor, Instant),
    ) -> Duration {
        let mut pause = if held_back {
            let pause = *held_back_pause;
            *held_back_pause = (*held_back_pause * 2).min(HELD_BACK_MAX);
            pause
        } else {
            *held_back_pause = HELD_BACK_FIRST;
            self.config.poll_interval
        };
        if let (Checkpoints::Every(interval), true) = (self.config.checkpoints, at != saved.0) {
            pause = pause.min(interval.saturating_sub(saved.1.elapsed()));
        }
        pause
    }

    /// With [`Checkpoints::Every`]: writes the checkpoint when `at` moved and the last write is
    /// older than the interval (or `now`).
    async fn save_if_due(
        &self,
        conn: &mut PgConnection,
        at: Cursor,
        saved: &mut (Cursor, Instant),
        now: bool,
    ) -> anyhow::Result<()> {
        let Checkpoints::Every(interval) = self.config.checkpoints else {
            return Ok(());
        };
        if at == saved.0 || !(now || saved.1.elapsed() >= interval) {
            return Ok(());
        }
        if !cursor::save_checkpoint(conn, &self.config.name, at).await? {
            tracing::warn!(reader = %self.config.name, ?at, "the checkpoint stood further on already; left as it was");
        }
        *saved = (at, Instant::now());
        Ok(())
    }

    /// Reads and applies one batch; returns how many events it read (a full batch: more is
    /// probably waiting) and whether events were held back behind an open transaction.
    async fn step<H: LogHandler>(
        &self,
        conn: &mut PgConnection,
        handler: &mut H,
        at: &mut Cursor,
    ) -> anyhow::Result<(usize, bool)> {
        let name = self.config.name.as_str();
        let tail = cursor::read_tail(
            conn,
            *at,
            self.config.batch_size,
            self.config.wanted.as_deref(),
        )
        .await?;
        let Some(last) = tail.last else {
            return Ok((0, tail.held_back));
        };
        let batch = tail.events;
        let started = Instant::now();
        let failed = || format!("reader {name} failed to apply a batch after {at:?}");
        match self.config.checkpoints {
            Checkpoints::Every(_) | Checkpoints::Never => {
                if !batch.is_empty() {
                    handler.handle(conn, &batch).await.with_context(failed)?;
                }
            }
            Checkpoints::WithEachBatch => {
                let mut tx = conn.begin().await?;
                if !batch.is_empty() {
                    handler.handle(&mut tx, &batch).await.with_context(failed)?;
                }
                if !cursor::save_checkpoint(&mut tx, name, last).await? {
                    // The checkpoint already covers this batch: it was advanced meanwhile (a
                    // rebuild swapped in read models that include it). Undo the batch and go
                    // on from there.
                    tx.rollback().await?;
                    let advanced = cursor::load_checkpoint(conn, name).await?;
                    tracing::info!(reader = name, from = ?*at, to = ?advanced, "checkpoint was advanced by someone else; continuing from it");
                    *at = advanced;
                    return Ok((tail.scanned, tail.held_back));
                }
                tx.commit().await?;
            }
        }
        *at = last;
        let n = batch.len();
        let delay = self
            .metrics
            .readers
            .event_delay_seconds
            .with_label_values(&[name]);
        let now = chrono::Utc::now();
        for event in &batch {
            delay.observe((now - event.recorded_at).as_seconds_f64().max(0.0));
        }
        self.metrics
            .readers
            .apply_seconds
            .with_label_values(&[name])
            .observe(started.elapsed().as_secs_f64());
        self.metrics
            .readers
            .batch_size
            .with_label_values(&[name])
            .observe(f64::from(u32::try_from(n).unwrap_or(u32::MAX)));
        self.metrics
            .readers
            .events
            .with_label_values(&[name])
            .inc_by(tail.scanned as u64);
        self.metrics
            .readers
            .position
            .with_label_values(&[name])
            .set(last.position);
        Ok((tail.scanned, tail.held_back))
    }
}

/// How often the lag gauges are measured.
const LAG_EVERY: Duration = Duration::from_secs(1);

/// Sets `log_reader_lag_events` and `log_reader_lag_seconds` of reader `name` every
/// [`LAG_EVERY`] from where the reader stands (`at`), on a pooled connection: the reader's own
/// connection and loop never wait for a measurement. Runs until aborted; a failed measurement
/// leaves the gauges as they were and is tried again at the next tick.
async fn measure_lag(
    pool: PgPool,
    name: String,
    at: watch::Receiver<Cursor>,
    metrics: Arc<Metrics>,
) {
    let events = metrics.readers.lag_events.with_label_values(&[&name]);
    let seconds = metrics.readers.lag_seconds.with_label_values(&[&name]);
    let mut tick = tokio::time::interval(LAG_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let cursor = *at.borrow();
        let measured = match pool.acquire().await {
            Ok(mut conn) => cursor::lag(&mut conn, cursor).await,
            Err(e) => Err(e),
        };
        match measured {
            Ok((n, s)) => {
                events.set(n);
                seconds.set(s);
            }
            Err(e) => tracing::debug!(reader = %name, error = %e, "could not measure the lag"),
        }
    }
}
