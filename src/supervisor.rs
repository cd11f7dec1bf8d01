//! The one way a background worker runs: [`Supervisor::supervise`] starts it, restarts it when
//! it fails, reports whether it is up, and stops it at shutdown. A worker is written as "do the
//! work until an error or until the token is cancelled"; retrying is the supervisor's.
//!
//! Guarantees:
//! * **Every exit is logged**: a failure with its cause chain, a panic with its message, a
//!   worker that ended by itself, a clean stop at shutdown.
//! * **A failed worker is restarted**, after a wait from one [`Backoff`] policy (configured by
//!   `APP__WORKERS__RESTART_BACKOFF_FIRST_MS` / `_MAX_MS`, equal jitter): a worker failing
//!   again and again waits longer each time, up to the maximum; one that ran
//!   [`HEALTHY_AFTER`] before failing starts again from the first wait. A failure is an `Err`,
//!   a panic (each attempt runs as a task of its own, so a panic ends only that attempt), or,
//!   for a worker started with [`Supervisor::supervise`] (must run until shutdown), an
//!   `Ok(())` before its token was cancelled. A worker started with
//!   [`Supervisor::supervise_until_done`] may finish: its `Ok(())` is a clean end, not
//!   restarted, and counts as healthy.
//! * **Up or down is observable**: `worker_up{worker}` is 1 while an attempt runs and 0 from
//!   its failure until the next attempt starts; `worker_restarts_total{worker}` counts the
//!   attempts started after a failure. [`Supervisor::statuses`] says the same per worker, for
//!   `/health/ready` (not ready while any worker is down).
//! * **Shutdown waits**: [`Supervisor::shutdown`] cancels every worker's token (each worker has
//!   a child of the supervisor's) and returns once every worker has returned; a worker waiting
//!   to be restarted is not restarted any more. Nothing is aborted: a worker finishes what it
//!   holds (acks, checkpoints) on its own.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use prometheus::{IntCounterVec, IntGaugeVec, Registry};
use tokio::task::JoinError;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::backoff::{Backoff, Jitter};
use crate::metric;

/// A worker that ran this long before it failed is taken to have been healthy: its next wait
/// is the first one again, not the doubled one of a worker that keeps failing at once.
pub const HEALTHY_AFTER: Duration = Duration::from_secs(60);

/// The metrics the supervisor moves, registered into the process registry.
#[derive(Debug, Clone)]
pub struct SupervisorMetrics {
    /// Attempts started after a failure, per worker.
    pub restarts: IntCounterVec,
    /// 1 while the worker runs, 0 while it is down (waiting to be restarted) or finished.
    pub up: IntGaugeVec,
}

impl SupervisorMetrics {
    /// Creates the families and registers them in `registry`.
    pub fn register(registry: &Registry) -> prometheus::Result<Self> {
        let restarts = metric::counters(
            registry,
            "worker_restarts_total",
            "Background worker restarts after a failure or panic",
            &["worker"],
        )?;
        let up = metric::gauges(
            registry,
            "worker_up",
            "1 while the background worker runs, 0 while it is down",
            &["worker"],
        )?;
        Ok(Self { restarts, up })
    }
}

/// One worker as the supervisor last saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkerStatus {
    /// The name it was supervised under (the metrics' `worker` label).
    pub name: String,
    /// An attempt is running.
    pub up: bool,
    /// It finished cleanly (only [`Supervisor::supervise_until_done`] workers): not down.
    pub finished: bool,
    /// Attempts started after a failure.
    pub restarts: u64,
    /// Why the last attempt failed, if one did.
    pub last_failure: Option<String>,
}

impl WorkerStatus {
    /// Running, or done with its work.
    pub fn healthy(&self) -> bool {
        self.up || self.finished
    }
}

/// Starts, restarts and stops the process's workers. Cheap to clone; every clone is the same
/// supervisor.
#[derive(Debug, Clone)]
pub struct Supervisor {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    token: CancellationToken,
    tracker: TaskTracker,
    backoff: Backoff,
    metrics: SupervisorMetrics,
    workers: Mutex<BTreeMap<String, WorkerStatus>>,
}

/// What an `Ok(())` before cancellation means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Lifetime {
    /// Runs until shutdown: ending earlier is a failure.
    UntilShutdown,
    /// May finish its work: ending is a clean end.
    UntilDone,
}

/// How one attempt ended.
enum Exit {
    Stopped,
    Finished,
    Failed(String),
}

impl Supervisor {
    /// A supervisor restarting failed workers after waits of `restart` (jittered equally: see
    /// [`Jitter::Equal`]), reporting into `metrics`.
    pub fn new(restart: Backoff, metrics: SupervisorMetrics) -> Self {
        Self {
            inner: Arc::new(Inner {
                token: CancellationToken::new(),
                tracker: TaskTracker::new(),
                backoff: restart.with_jitter(Jitter::Equal),
                metrics,
                workers: Mutex::default(),
            }),
        }
    }

    /// Runs `work` until shutdown, restarting it after every failure (an `Err`, a panic, or an
    /// `Ok(())` before its token was cancelled). `work` is called once per attempt with the
    /// worker's token; it returns `Ok(())` soon after the token is cancelled. `name` labels
    /// the metrics and log lines and must be unique in the process.
    pub fn supervise<F, Fut>(&self, name: &str, work: F)
    where
        F: FnMut(CancellationToken) -> Fut + Send + 'static,
        Fut: Future<Output = anyhow::Result<()>> + Send + 'static,
    {
        self.start(name, Lifetime::UntilShutdown, work);
    }

    /// Like [`Supervisor::supervise`], for work that may end: an `Ok(())` before shutdown is a
    /// clean end, logged and not restarted, and the worker counts as healthy from then on.
    pub fn supervise_until_done<F, Fut>(&self, name: &str, work: F)
    where
        F: FnMut(CancellationToken) -> Fut + Send + 'static,
        Fut: Future<Output = anyhow::Result<()>> + Send + 'static,
    {
        self.start(name, Lifetime::UntilDone, work);
    }

    /// Every supervised worker, by name.
    pub fn statuses(&self) -> Vec<WorkerStatus> {
        self.workers().values().cloned().collect()
    }

    /// Cancels every worker and waits until each has returned.
    pub async fn shutdown(&self) {
        self.inner.token.cancel();
        self.inner.tracker.close();
        self.inner.tracker.wait().await;
    }

    fn workers(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, WorkerStatus>> {
        // every update is a single assignment: a panic cannot leave one half-done
        self.inner
            .workers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn start<F, Fut>(&self, name: &str, lifetime: Lifetime, mut work: F)
    where
        F: FnMut(CancellationToken) -> Fut + Send + 'static,
        Fut: Future<Output = anyhow::Result<()>> + Send + 'static,
    {
        let previous = self.workers().insert(
            name.to_owned(),
            // up from now on: its first attempt is about to start (a readiness probe in
            // between must not see a worker that never failed as down)
            WorkerStatus {
                name: name.to_owned(),
                up: true,
                finished: false,
                restarts: 0,
                last_failure: None,
            },
        );
        if previous.is_some() {
            tracing::warn!(
                worker = name,
                "a worker of this name was supervised already; its status is replaced"
            );
        }
        self.inner.metrics.up.with_label_values(&[name]).set(1);
        // at 0 from the start, so that a first restart is an increase a rule can see
        self.inner
            .metrics
            .restarts
            .with_label_values(&[name])
            .inc_by(0);
        let supervisor = self.clone();
        let name = name.to_owned();
        let token = self.inner.token.child_token();
        self.inner.tracker.spawn(async move {
            let mut schedule = supervisor.inner.backoff.schedule();
            loop {
                let started = Instant::now();
                let attempt = tokio::spawn(work(token.clone()));
                let exit = Self::exit(attempt.await, lifetime, &token);
                let failure = match exit {
                    Exit::Stopped => {
                        tracing::info!(worker = %name, "worker stopped");
                        supervisor.set(&name, |w| w.up = false);
                        return;
                    }
                    Exit::Finished => {
                        tracing::info!(worker = %name, "worker finished its work");
                        supervisor.set(&name, |w| {
                            w.up = false;
                            w.finished = true;
                        });
                        return;
                    }
                    Exit::Failed(failure) => failure,
                };
                if started.elapsed() >= HEALTHY_AFTER {
                    schedule.reset();
                }
                let wait = schedule.next_delay();
                tracing::error!(worker = %name, failure, restart_in = ?wait, "worker failed; restarting it");
                supervisor.set(&name, |w| {
                    w.up = false;
                    w.last_failure = Some(failure);
                });
                tokio::select! {
                    () = tokio::time::sleep(wait) => {}
                    () = token.cancelled() => {
                        tracing::info!(worker = %name, "worker stopped while waiting to be restarted");
                        return;
                    }
                }
                supervisor.inner.metrics.restarts.with_label_values(&[&name]).inc();
                supervisor.set(&name, |w| {
                    w.up = true;
                    w.restarts += 1;
                });
            }
        });
    }

    /// Updates `name`'s status and its `worker_up` gauge.
    fn set(&self, name: &str, update: impl FnOnce(&mut WorkerStatus)) {
        let up = {
            let mut workers = self.workers();
            let Some(status) = workers.get_mut(name) else {
                return;
            };
            update(status);
            status.up
        };
        self.inner
            .metrics
            .up
            .with_label_values(&[name])
            .set(i64::from(up));
    }

    /// What an attempt's end means, given how long the worker is meant to live.
    fn exit(
        joined: Result<anyhow::Result<()>, JoinError>,
        lifetime: Lifetime,
        token: &CancellationToken,
    ) -> Exit {
        match joined {
            Ok(Ok(())) if token.is_cancelled() => Exit::Stopped,
            Ok(Ok(())) if lifetime == Lifetime::UntilDone => Exit::Finished,
            Ok(Ok(())) => Exit::Failed("it ended by itself before shutdown".to_owned()),
            Ok(Err(e)) => Exit::Failed(format!("{e:#}")),
            Err(e) => Exit::Failed(match e.try_into_panic() {
                Ok(panic) => format!("panicked: {}", panic_message(panic.as_ref())),
                // only a panic or an abort ends a task early, and nothing aborts these
                Err(e) => format!("its task ended: {e}"),
            }),
        }
    }
}

/// The message a panic was raised with (`panic!("...")` carries a `&str` or a `String`).
fn panic_message(panic: &(dyn std::any::Any + Send)) -> &str {
    panic
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| panic.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("(not a string)")
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};

    use super::*;

    fn supervisor() -> (Supervisor, SupervisorMetrics) {
        let metrics = SupervisorMetrics::register(&Registry::new()).expect("metrics");
        let backoff = Backoff::new(Duration::from_millis(1), Duration::from_millis(4));
        (Supervisor::new(backoff, metrics.clone()), metrics)
    }

    #[tokio::test]
    async fn a_worker_that_fails_and_panics_is_restarted_until_it_runs_then_stops_at_shutdown() {
        let (supervisor, metrics) = supervisor();
        let attempts = Arc::new(AtomicU32::new(0));
        let counted = Arc::clone(&attempts);
        supervisor.supervise("flaky", move |token| {
            let attempt = counted.fetch_add(1, Ordering::SeqCst);
            async move {
                match attempt {
                    0 => anyhow::bail!("injected failure"),
                    1 => panic!("injected panic"),
                    2 => Ok(()),
                    _ => {
                        token.cancelled().await;
                        Ok(())
                    }
                }
            }
        });
        while attempts.load(Ordering::SeqCst) < 4 {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        let status = supervisor.statuses().remove(0);
        assert_eq!(status.restarts, 3, "an error, a panic and an early end");
        assert!(status.up);
        assert_eq!(metrics.restarts.with_label_values(&["flaky"]).get(), 3);
        assert_eq!(metrics.up.with_label_values(&["flaky"]).get(), 1);

        supervisor.shutdown().await;
        assert_eq!(
            attempts.load(Ordering::SeqCst),
            4,
            "not restarted at shutdown"
        );
        assert!(!supervisor.statuses()[0].up);
        assert_eq!(
            metrics.up.with_label_values(&["flaky"]).get(),
            0,
            "down after shutdown"
        );
    }

    #[tokio::test]
    async fn work_that_may_finish_ends_cleanly_and_stays_healthy() {
        let (supervisor, metrics) = supervisor();
        supervisor.supervise_until_done("once", |_token| async { Ok(()) });
        while !supervisor.statuses()[0].finished {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        let status = supervisor.statuses().remove(0);
        assert!(status.healthy());
        assert_eq!(status.restarts, 0);
        assert_eq!(metrics.restarts.with_label_values(&["once"]).get(), 0);
        assert_eq!(metrics.up.with_label_values(&["once"]).get(), 0);
        supervisor.shutdown().await;
    }

    #[test]
    fn a_panic_message_is_read_from_either_string_type() {
        assert_eq!(panic_message(&"static"), "static");
        assert_eq!(panic_message(&"owned".to_owned()), "owned");
        assert_eq!(panic_message(&7_u8), "(not a string)");
    }
}
