//! The two ways to offer load: closed loop (C clients, each sending its next request when the
//! last one answers) and open loop (requests at a fixed rate whatever the answers do, latency
//! measured from when each request was due, so a stall is not hidden by clients that wait).

use std::future::Future;
use std::io::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use serde_json::{json, Value};

/// What one run of one operation produced.
pub struct Outcome {
    pub name: String,
    pub ok: u64,
    pub errors: u64,
    pub first_error: Option<String>,
    pub elapsed: Duration,
    /// Latency of successful operations, in microseconds.
    pub latency: Histogram<u64>,
}

impl Outcome {
    /// Successful operations per second.
    #[expect(clippy::cast_precision_loss, reason = "a rate for people to read")]
    pub fn rate(&self) -> f64 {
        self.ok as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    /// The `q` quantile (0-1) of latency, in milliseconds.
    #[expect(
        clippy::cast_precision_loss,
        reason = "milliseconds for people to read"
    )]
    pub fn ms(&self, q: f64) -> f64 {
        self.latency.value_at_quantile(q) as f64 / 1000.0
    }

    /// This run and `other` as one: counts and time added, latencies pooled.
    pub fn absorb(&mut self, other: &Self) {
        self.ok += other.ok;
        self.errors += other.errors;
        if self.first_error.is_none() {
            self.first_error.clone_from(&other.first_error);
        }
        self.elapsed += other.elapsed;
        self.latency
            .add(&other.latency)
            .expect("histograms of the same bounds");
    }

    pub fn to_json(&self) -> Value {
        json!({
            "name": self.name,
            "ok": self.ok,
            "errors": self.errors,
            "first_error": self.first_error,
            "seconds": self.elapsed.as_secs_f64(),
            "per_second": self.rate(),
            "latency_ms": {"p50": self.ms(0.5), "p90": self.ms(0.9), "p99": self.ms(0.99),
                           "p999": self.ms(0.999), "max": self.ms(1.0)},
        })
    }
}

fn histogram() -> Histogram<u64> {
    // 1 µs .. 10 min, 3 significant digits
    Histogram::new_with_bounds(1, 600_000_000, 3).expect("valid histogram bounds")
}

#[expect(clippy::cast_possible_truncation, reason = "latencies fit in u64 µs")]
fn micros(d: Duration) -> u64 {
    (d.as_micros() as u64).max(1)
}

/// Shared counters behind the progress line.
#[derive(Default)]
struct Progress {
    ok: AtomicU64,
    errors: AtomicU64,
    first_error: Mutex<Option<String>>,
}

impl Progress {
    fn record(&self, result: &anyhow::Result<()>) {
        match result {
            Ok(()) => {
                self.ok.fetch_add(1, Ordering::Relaxed);
            }
            Err(e) => {
                self.errors.fetch_add(1, Ordering::Relaxed);
                let mut first = self.first_error.lock().expect("not poisoned");
                if first.is_none() {
                    *first = Some(format!("{e:#}"));
                }
            }
        }
    }

    /// Prints `\r<name> 3/10 s  ok 1234 (410/s)  errors 0` on stderr every second until dropped.
    fn spawn_printer(
        self: &Arc<Self>,
        name: String,
        duration: Duration,
    ) -> tokio::task::JoinHandle<()> {
        let progress = Arc::clone(self);
        tokio::spawn(async move {
            let started = Instant::now();
            let mut last = 0;
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            tick.tick().await;
            loop {
                tick.tick().await;
                let ok = progress.ok.load(Ordering::Relaxed);
                let errors = progress.errors.load(Ordering::Relaxed);
                eprint!(
                    "\r  {name:<22} {:>3.0}/{:.0} s  ok {ok:>8} ({:>6}/s)  errors {errors:<6}",
                    started.elapsed().as_secs_f64(),
                    duration.as_secs_f64(),
                    ok - last,
                );
                let _ = std::io::stderr().flush();
                last = ok;
            }
        })
    }
}

/// `concurrency` clients, each running `op(i)` back to back until `duration` is up or
/// `max_ops` operations have started.
pub async fn closed<F, Fut>(
    name: &str,
    concurrency: usize,
    duration: Duration,
    max_ops: Option<u64>,
    op: F,
) -> Outcome
where
    F: Fn(u64) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = anyhow::Result<()>> + Send + 'static,
{
    let op = Arc::new(op);
    let next = Arc::new(AtomicU64::new(0));
    let progress = Arc::new(Progress::default());
    let printer = progress.spawn_printer(name.to_owned(), duration);
    let started = Instant::now();
    let deadline = started + duration;
    let mut clients = tokio::task::JoinSet::new();
    for _ in 0..concurrency {
        let (op, next, progress) = (Arc::clone(&op), Arc::clone(&next), Arc::clone(&progress));
        clients.spawn(async move {
            let mut latency = histogram();
            while Instant::now() < deadline {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if max_ops.is_some_and(|max| i >= max) {
                    break;
                }
                let t = Instant::now();
                let result = op(i).await;
                if result.is_ok() {
                    latency.saturating_record(micros(t.elapsed()));
                }
                progress.record(&result);
            }
            latency
        });
    }
    let mut latency = histogram();
    while let Some(client) = clients.join_next().await {
        latency
            .add(client.expect("a load client panicked"))
            .expect("same bounds");
    }
    let elapsed = started.elapsed();
    printer.abort();
    eprintln!();
    finish(name, &progress, elapsed, latency)
}

/// `op(i)` started at `rate` per second for `duration`, each on its own task; latency runs
/// from the moment a request was due.
pub async fn open<F, Fut>(name: &str, rate: f64, duration: Duration, op: F) -> Outcome
where
    F: Fn(u64) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = anyhow::Result<()>> + Send + 'static,
{
    let op = Arc::new(op);
    let progress = Arc::new(Progress::default());
    let printer = progress.spawn_printer(name.to_owned(), duration);
    let latency = Arc::new(Mutex::new(histogram()));
    let started = tokio::time::Instant::now();
    #[expect(
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        reason = "a bounded count of requests"
    )]
    let total = (rate * duration.as_secs_f64()).round() as u64;
    let mut inflight = tokio::task::JoinSet::new();
    for i in 0..total {
        #[expect(clippy::cast_precision_loss, reason = "i stays far below 2^52")]
        let due = started + Duration::from_secs_f64(i as f64 / rate);
        tokio::time::sleep_until(due).await;
        let (op, progress, latency) =
            (Arc::clone(&op), Arc::clone(&progress), Arc::clone(&latency));
        inflight.spawn(async move {
            let result = op(i).await;
            if result.is_ok() {
                latency
                    .lock()
                    .expect("not poisoned")
                    .saturating_record(micros(due.elapsed()));
            }
            progress.record(&result);
        });
        // reap finished tasks as we go so the set stays small
        while inflight.try_join_next().is_some() {}
    }
    while inflight.join_next().await.is_some() {}
    let elapsed = started.elapsed();
    printer.abort();
    eprintln!();
    let latency = std::mem::replace(&mut *latency.lock().expect("not poisoned"), histogram());
    finish(name, &progress, elapsed, latency)
}

fn finish(name: &str, progress: &Progress, elapsed: Duration, latency: Histogram<u64>) -> Outcome {
    Outcome {
        name: name.to_owned(),
        ok: progress.ok.load(Ordering::Relaxed),
        errors: progress.errors.load(Ordering::Relaxed),
        first_error: progress.first_error.lock().expect("not poisoned").clone(),
        elapsed,
        latency,
    }
}
