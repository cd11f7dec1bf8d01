//! One command executor for every aggregate in the event store (orders, sagas): lock, cache,
//! decide, append, conflict backoff. cqrs-es's `CqrsFramework` is the same algorithm without
//! the lock, the cache and the backoff; each aggregate adds only its [`Decide`] hook (what a
//! command comes to on one state: the order's authorization, catalog prices and replays; the
//! saga's policy).
//!
//! Guarantees:
//! * **One command at a time per aggregate in this process.** Commands on one id queue behind a
//!   lock ([`KeyedLocks`]), so a burst on one order does not become a retry storm.
//! * **Optimistic across processes.** The append's `(aggregate, sequence)` key fails when
//!   anyone else appended since the state was read; the command is then decided again on the
//!   stored state, after a jittered backoff, at most [`MAX_ATTEMPTS`] times.
//! * **A cached state is never trusted alone** (see [`super::cache`]): a command decided on one
//!   either appends (and the key catches a stale entry) or is decided again on the stored
//!   state, so a refusal, a replay or "nothing to do" is always an answer about the log.
//! * **Unknown stays unknown.** An append that failed for any reason but a conflict may have
//!   committed: the cache entry is dropped and the caller gets the failure, never a retry that
//!   could apply the command twice.

use std::collections::HashMap;
use std::future::Future;
use std::hash::Hash;
use std::time::Instant;

use cqrs_es::persist::{EventStoreAggregateContext, PersistedEventStore};
use cqrs_es::{Aggregate, AggregateError, DomainEvent as _, EventEnvelope, EventStore as _};
use prometheus::{HistogramVec, IntCounterVec};

use super::cache::AggregateCache;
use super::event_log::EventLog;
use super::locks::KeyedLocks;
use crate::backoff::Backoff;

/// Attempts of one command before a conflict is reported to the caller.
pub const MAX_ATTEMPTS: u32 = 8;

/// An aggregate as read from the store: its state, version (events so far) and the events.
pub struct Loaded<A: Aggregate> {
    pub state: A,
    pub version: usize,
    pub events: Vec<EventEnvelope<A>>,
}

impl<A: Aggregate> Loaded<A> {
    /// The aggregate as its first `version` events left it.
    pub fn state_at(&self, version: usize) -> A {
        fold(self.events.iter().take(version))
    }
}

/// Folds `events` into a fresh aggregate.
fn fold<'a, A: Aggregate + 'a>(events: impl Iterator<Item = &'a EventEnvelope<A>>) -> A {
    let mut state = A::default();
    for e in events {
        state.apply(e.payload.clone());
    }
    state
}

/// What a command comes to on one state of its aggregate.
pub enum Decided<A: Aggregate, T> {
    /// Append these events.
    Append(Vec<A::Event>),
    /// Append nothing; answer `T` (e.g. a replayed request, nothing to do).
    Answer(T),
}

/// Why a command was not executed.
#[derive(Debug, thiserror::Error)]
pub enum Failure<R> {
    /// The aggregate (or the hook's rules) refused the command; nothing was stored.
    #[error("{0}")]
    Refused(R),
    /// Other writers kept appending first, [`MAX_ATTEMPTS`] times.
    #[error("too many concurrent writers")]
    Conflict,
    /// The database is out of reach (the command may be retried).
    #[error("event store unavailable")]
    Unavailable(#[source] anyhow::Error),
    #[error("event store failure")]
    Store(#[source] anyhow::Error),
}

impl<R> Failure<R> {
    /// Adds `what` to the cause of an unavailable or failed store.
    #[must_use]
    pub fn context(self, what: impl FnOnce() -> String) -> Self {
        match self {
            Self::Unavailable(e) => Self::Unavailable(e.context(what())),
            Self::Store(e) => Self::Store(e.context(what())),
            other => other,
        }
    }
}

/// The per-aggregate part of executing one command.
pub trait Decide<A: Aggregate>: Sync {
    /// The answer of a command that appends nothing.
    type Answer: Send;
    /// The hook's refusals.
    type Refusal: Send;

    /// What the command comes to on `state` at `version`. `Unavailable` and `Store` failures
    /// are answered at once (they do not depend on the state); any other outcome without an
    /// append, decided on a cached state, is decided again on the stored one.
    fn decide(
        &self,
        state: &A,
        version: usize,
    ) -> impl Future<Output = Result<Decided<A, Self::Answer>, Failure<Self::Refusal>>> + Send;
}

/// What an executed command left behind.
pub enum Outcome<A: Aggregate, T> {
    /// Events were appended; `state` is the aggregate right after them.
    Appended { state: A, events: Vec<A::Event> },
    /// Nothing was appended; the answer and the aggregate as stored it was decided on.
    Answered { answer: T, loaded: Loaded<A> },
}

/// The metric families an executor moves (the aggregate's own names).
#[derive(Clone)]
pub struct ExecutorMetrics {
    /// Cache lookups by outcome (`hit`, `miss`, `stale`).
    pub cache: IntCounterVec,
    /// Events appended by type.
    pub appended: IntCounterVec,
    /// Conflicts decided again, by command.
    pub retries: Option<IntCounterVec>,
    /// Time per stage of a command (`lock`, `load`, `decide`, `append`, `backoff`).
    pub stages: Option<HistogramVec>,
}

/// Executes commands on aggregates of type `A` keyed by `K`.
pub struct Executor<K, A: Aggregate> {
    store: PersistedEventStore<EventLog, A>,
    locks: KeyedLocks<K>,
    cache: AggregateCache<K, (A, usize)>,
    metrics: ExecutorMetrics,
}

impl<K, A: Aggregate> std::fmt::Debug for Executor<K, A> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Executor")
            .field("aggregate", &A::TYPE)
            .finish_non_exhaustive()
    }
}

impl<K, A> Executor<K, A>
where
    K: Copy + Eq + Hash + std::fmt::Display + Send + Sync,
    A: Aggregate + Clone,
{
    pub fn new(log: EventLog, cache_entries: usize, metrics: ExecutorMetrics) -> Self {
        Self {
            // Pure event-store mode: postgres-es 0.5's snapshot and aggregate-store modes
            // apply events twice.
            store: PersistedEventStore::new_event_store(log),
            locks: KeyedLocks::default(),
            cache: AggregateCache::new(cache_entries),
            metrics,
        }
    }

    /// The aggregate `id` as stored (never created: `A::default()` at version 0).
    pub async fn load(&self, id: K) -> Result<Loaded<A>, Failure<std::convert::Infallible>> {
        self.stored(id).await
    }

    /// Decides a command on aggregate `id` through `hook` and appends what it produced, with
    /// `metadata` on every event. `command` names the command in metrics.
    pub async fn execute<D: Decide<A>>(
        &self,
        id: K,
        command: &str,
        hook: &D,
        metadata: HashMap<String, String>,
    ) -> Result<Outcome<A, D::Answer>, Failure<D::Refusal>> {
        let stages = Stages(self.metrics.stages.as_ref());
        let mut since = Instant::now();
        let _guard = self.locks.lock(id).await;
        since = stages.done("lock", since);
        let mut cached = self.cache.get(id);
        if self.cache.enabled() {
            let outcome = if cached.is_some() { "hit" } else { "miss" };
            self.metrics.cache.with_label_values(&[outcome]).inc();
        }
        // jittered, so writers that collided do not collide again in step
        let mut backoff = Backoff::conflicts().schedule();
        let mut attempt = 0;
        while attempt < MAX_ATTEMPTS {
            // `loaded` is `None` for a state from the cache
            let (state, version, loaded) = if let Some((state, version)) = cached.take() {
                (state, version, None)
            } else {
                attempt += 1;
                let loaded = self.stored(id).await?;
                (loaded.state.clone(), loaded.version, Some(loaded))
            };
            let from_cache = loaded.is_none();
            since = stages.done("load", since);
            let decided = hook.decide(&state, version).await;
            since = stages.done("decide", since);
            let events = match (decided, loaded) {
                (Ok(Decided::Append(events)), _) => events,
                // an outage does not depend on the state; an answer from the log stands
                (Err(e @ (Failure::Unavailable(_) | Failure::Store(_))), _) | (Err(e), Some(_)) => {
                    return Err(e)
                }
                (_, None) => {
                    // Decided on a cached state without appending: decide again on the
                    // state as stored.
                    self.metrics.cache.with_label_values(&["stale"]).inc();
                    continue;
                }
                (Ok(Decided::Answer(answer)), Some(loaded)) => {
                    return Ok(Outcome::Answered { answer, loaded })
                }
            };
            let context = EventStoreAggregateContext {
                aggregate_id: id.to_string(),
                current_sequence: version,
                // Only snapshot modes read the context's aggregate; ours is event-store mode.
                aggregate: A::default(),
                current_snapshot: None,
            };
            let committed = self
                .store
                .commit(events.clone(), context, metadata.clone())
                .await;
            since = stages.done("append", since);
            match committed {
                Ok(_) => {
                    let mut state = state;
                    for e in &events {
                        self.metrics
                            .appended
                            .with_label_values(&[&e.event_type()])
                            .inc();
                        state.apply(e.clone());
                    }
                    self.cache.put(id, (state.clone(), version + events.len()));
                    return Ok(Outcome::Appended { state, events });
                }
                Err(AggregateError::AggregateConflict) => {
                    self.cache.forget(id);
                    if let (Some(retries), true) = (&self.metrics.retries, attempt < MAX_ATTEMPTS) {
                        retries.with_label_values(&[command]).inc();
                    }
                    if from_cache {
                        // another writer appended since this process last did: no backoff,
                        // the state is simply loaded
                        self.metrics.cache.with_label_values(&["stale"]).inc();
                        continue;
                    }
                    if attempt < MAX_ATTEMPTS {
                        tokio::time::sleep(backoff.next_delay()).await;
                        since = stages.done("backoff", since);
                    }
                }
                Err(e) => {
                    // whether it was written is unknown: the next command loads
                    self.cache.forget(id);
                    return Err(store_failure(e));
                }
            }
        }
        Err(Failure::Conflict)
    }

    /// The aggregate `id` as stored.
    async fn stored<R>(&self, id: K) -> Result<Loaded<A>, Failure<R>> {
        let events = self
            .store
            .load_events(&id.to_string())
            .await
            .map_err(store_failure)?;
        Ok(Loaded {
            state: fold(events.iter()),
            version: events.len(),
            events,
        })
    }
}

/// Observes how long each stage of a command took (when the aggregate measures stages).
struct Stages<'a>(Option<&'a HistogramVec>);

impl Stages<'_> {
    /// Records `stage` as having run since `since`; returns now, the start of the next stage.
    fn done(&self, stage: &str, since: Instant) -> Instant {
        let now = Instant::now();
        if let Some(histogram) = self.0 {
            histogram
                .with_label_values(&[stage])
                .observe(now.duration_since(since).as_secs_f64());
        }
        now
    }
}

/// An event store error as a failure: an outage (the database out of reach) apart from a bug.
fn store_failure<E: std::error::Error, R>(e: AggregateError<E>) -> Failure<R> {
    match e {
        AggregateError::DatabaseConnectionError(e) => {
            Failure::Unavailable(anyhow::anyhow!(e).context("database connection"))
        }
        AggregateError::UnexpectedError(e) => {
            // Keep the concrete sqlx error in the chain (anyhow hides a boxed one from
            // downcasts), so callers can tell an outage from a bug.
            let (e, unavailable) = match e.downcast::<sqlx::Error>() {
                Ok(sqlx) => {
                    let unavailable = super::sqlx_unavailable(&sqlx);
                    (anyhow::Error::new(*sqlx), unavailable)
                }
                Err(other) => (anyhow::anyhow!(other), false),
            };
            let e = e.context("event store");
            if unavailable {
                Failure::Unavailable(e)
            } else {
                Failure::Store(e)
            }
        }
        other => Failure::Store(anyhow::anyhow!(other.to_string())),
    }
}
