//! Waking log readers when events are appended, without slowing the appends down.
//!
//! A `NOTIFY` inside the appending transaction would serialize every append on PostgreSQL's
//! notification-queue lock, held until the commit is flushed (migration 0006). Instead the
//! event store calls [`AppendSignal::appended`] after each append commits:
//! * the readers of this process wake at once (a [`watch`] channel, no database involved),
//!   those that act on some event types only (see [`AppendSignal::subscribe`]) only when the
//!   append has one of them (the saga reactor wants one event of about five per saga);
//! * [`forward_to_other_processes`] sends one `NOTIFY events_appended` per burst of appends, in
//!   a transaction of its own that writes nothing, for the readers of other replicas, while
//!   another replica listens (none: no `NOTIFY`). Appends during an in-flight `NOTIFY` are
//!   covered by the next one.
//!
//! Each process hears other processes' notifications on **one** connection,
//! [`listen_to_other_processes`], which wakes its readers through the same signal. The payload
//! names the sending process, so a process skips its own, which its readers woke for already.
//! (With a `LISTEN` per reader, every `NOTIFY` was delivered to each reader's connection and
//! woke each reader a second time. At 60 sagas/s on the 2-core machine, the notifications
//! took about 145% of a core's worth of the machine's 200% down to 120% with one listener,
//! and to 95–100% with none sent when no one else listens.)
//!
//! Anything else that inserts into `events` (a script, another tool) is seen at the readers'
//! next poll.

use std::convert::Infallible;
use std::sync::{Arc, PoisonError, RwLock};
use std::time::{Duration, Instant};

use sqlx::PgPool;
use tokio::sync::{watch, Notify};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

/// The channel other processes' readers `LISTEN` on.
pub const CHANNEL: &str = "events_appended";

/// "Events were appended": raised by the event store, heard by the log readers. Cheap to
/// clone; every clone is the same signal.
#[derive(Debug, Clone)]
pub struct AppendSignal {
    /// The readers of this process: what each acts on, and the signal that wakes it.
    readers: Arc<RwLock<Vec<Interest>>>,
    outbound: Arc<Notify>,
    /// This process, as the payload of its notifications.
    process: Arc<str>,
    /// What the forwarder and the listener of this process have done so far.
    activity: Arc<watch::Sender<WakeActivity>>,
}

/// What this process's [`forward_to_other_processes`] and [`listen_to_other_processes`] have
/// done so far: counts that only grow, for tests and diagnostics to wait on (a positive signal
/// that a burst was dealt with or a notification heard, rather than a pause).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WakeActivity {
    /// Bursts of this process's appends the forwarder has dealt with (notified or not).
    pub bursts: u64,
    /// `NOTIFY`s it sent (bursts while another process listened).
    pub notified: u64,
    /// What its latest look at `pg_stat_activity` found: whether another process listens
    /// (`None` before the first look).
    pub others_listening: Option<bool>,
    /// Notifications the listener heard from this process itself (and skipped).
    pub heard_own: u64,
    /// Notifications the listener heard from other processes (and woke the readers for).
    pub heard_others: u64,
}

/// The event types a reader acts on (`None`: all), and the signal that wakes it.
#[derive(Debug)]
struct Interest {
    event_types: Option<Vec<String>>,
    wake: watch::Sender<u64>,
}

impl Interest {
    fn raise(&self) {
        self.wake.send_modify(|n| *n = n.wrapping_add(1));
    }
}

impl Default for AppendSignal {
    fn default() -> Self {
        Self {
            readers: Arc::default(),
            outbound: Arc::new(Notify::new()),
            process: Uuid::new_v4().simple().to_string().into(),
            activity: Arc::new(watch::Sender::new(WakeActivity::default())),
        }
    }
}

impl AppendSignal {
    /// Called after events of `event_types` (repeats allowed) were committed.
    pub fn appended(&self, event_types: &[impl AsRef<str>]) {
        for reader in self.readers().iter() {
            let wanted = reader.event_types.as_ref().is_none_or(|wanted| {
                event_types
                    .iter()
                    .any(|t| wanted.iter().any(|w| w == t.as_ref()))
            });
            if wanted {
                reader.raise();
            }
        }
        // stores one permit when the forwarder is busy: bursts coalesce into one NOTIFY
        self.outbound.notify_one();
    }

    /// Another process appended (events of any type): wakes every reader of this process (and
    /// tells no one else).
    fn heard(&self) {
        self.readers().iter().for_each(Interest::raise);
    }

    /// What this process's forwarder and listener have done so far; changes with each burst
    /// dealt with, look taken and notification heard.
    pub fn activity(&self) -> watch::Receiver<WakeActivity> {
        self.activity.subscribe()
    }

    fn note(&self, update: impl FnOnce(&mut WakeActivity)) {
        self.activity.send_modify(update);
    }

    fn readers(&self) -> std::sync::RwLockReadGuard<'_, Vec<Interest>> {
        // a panic while holding the lock leaves the list whole: take it as it is
        self.readers.read().unwrap_or_else(PoisonError::into_inner)
    }

    /// A receiver that changes on appends of this process with an event of `event_types`
    /// (`None`: on every append), and on every notification of another process's appends
    /// that [`listen_to_other_processes`] hears (which does not say what they were).
    pub fn subscribe(&self, event_types: Option<&[String]>) -> watch::Receiver<u64> {
        let (wake, woken) = watch::channel(0);
        let mut readers = self.readers.write().unwrap_or_else(PoisonError::into_inner);
        // readers whose term ended
        readers.retain(|r| r.wake.receiver_count() > 0);
        readers.push(Interest {
            event_types: event_types.map(<[String]>::to_vec),
            wake,
        });
        woken
    }
}

/// The start of the `application_name` of each process's listening connection; the rest is
/// the process (at most 63 bytes in all).
const LISTENER_APPLICATION_NAME: &str = "order-service append listener ";

/// How long the forwarder trusts its last look at who else listens.
const LISTENERS_CHECKED_EVERY: Duration = Duration::from_secs(1);

/// Sends `NOTIFY events_appended` after appends of this process, at most one at a time, until
/// `shutdown` is cancelled, while another process listens: with no other replica (a look at
/// `pg_stat_activity` at most every [`LISTENERS_CHECKED_EVERY`]) no one would hear it, and
/// each `NOTIFY` is a transaction. A replica that starts listening is told from the next look
/// on, and polls until then. A failure ends it with the error, the burst kept for the next
/// attempt (its supervisor restarts it; other processes' readers poll meanwhile).
pub async fn forward_to_other_processes(
    pool: PgPool,
    signal: AppendSignal,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let own = format!("{LISTENER_APPLICATION_NAME}{}", signal.process);
    // (whether another process listened, and when that was looked at)
    let mut others: Option<(bool, Instant)> = None;
    loop {
        tokio::select! {
            () = signal.outbound.notified() => {}
            () = shutdown.cancelled() => return Ok(()),
        }
        let listening = match others {
            Some((listening, at)) if at.elapsed() < LISTENERS_CHECKED_EVERY => Ok(listening),
            _ => sqlx::query_scalar(
                "select exists (select from pg_stat_activity
                                 where datname = current_database()
                                   and starts_with(application_name, $1)
                                   and application_name <> $2)",
            )
            .bind(LISTENER_APPLICATION_NAME)
            .bind(&own)
            .fetch_one(&pool)
            .await
            .inspect(|&listening| {
                others = Some((listening, Instant::now()));
                signal.note(|a| a.others_listening = Some(listening));
            }),
        };
        let sent = match listening {
            Ok(false) => Ok(false),
            Ok(true) => sqlx::query("select pg_notify($1, $2)")
                .bind(CHANNEL)
                .bind(&*signal.process)
                .execute(&pool)
                .await
                .map(|_| true),
            Err(e) => Err(e),
        };
        match sent {
            Ok(notified) => signal.note(|a| {
                a.bursts += 1;
                a.notified += u64::from(notified);
            }),
            Err(e) => {
                // the permit of this burst was used up: keep it for the next attempt
                signal.outbound.notify_one();
                return Err(
                    anyhow::Error::new(e).context("notifying other processes of appended events")
                );
            }
        }
    }
}

/// Wakes this process's readers when another process notifies of its appends, on one `LISTEN`
/// connection, until `shutdown` is cancelled. A lost connection ends it with the error (its
/// supervisor opens it again after a pause); readers poll meanwhile, so nothing is missed,
/// only heard later.
pub async fn listen_to_other_processes(
    pool: PgPool,
    signal: AppendSignal,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    tokio::select! {
        heard = hear(&pool, &signal) => match heard {
            Err(e) => Err(anyhow::Error::new(e)
                .context("lost the connection that hears other processes' appends")),
            Ok(never) => match never {},
        },
        () = shutdown.cancelled() => Ok(()),
    }
}

/// Wakes this process's readers on every notification of another process's appends; returns
/// only when the connection fails.
async fn hear(pool: &PgPool, signal: &AppendSignal) -> Result<Infallible, sqlx::Error> {
    // named for the other processes' forwarders
    let name = format!("{LISTENER_APPLICATION_NAME}{}", signal.process);
    let mut listener = crate::store::named_listener(pool, &name).await?;
    listener.listen(CHANNEL).await?;
    loop {
        let notification = listener.recv().await?;
        if notification.payload() == &*signal.process {
            signal.note(|a| a.heard_own += 1);
        } else {
            signal.heard();
            signal.note(|a| a.heard_others += 1);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readers_of_some_types_wake_only_for_them_and_for_every_other_process() {
        let signal = AppendSignal::default();
        let mut every = signal.subscribe(None);
        let mut placed = signal.subscribe(Some(&["OrderPlaced".to_owned()]));

        signal.appended(&["SagaStarted", "ReservationRequested"]);
        assert!(every.has_changed().expect("open"));
        assert!(
            !placed.has_changed().expect("open"),
            "woken by types it passes over"
        );
        every.mark_unchanged();

        signal.appended(&["ItemAdded", "OrderPlaced"]);
        assert!(every.has_changed().expect("open"));
        assert!(placed.has_changed().expect("open"));
        every.mark_unchanged();
        placed.mark_unchanged();

        // another process's notification names no types: everyone reads
        signal.heard();
        assert!(every.has_changed().expect("open"));
        assert!(placed.has_changed().expect("open"));
    }

    #[test]
    fn a_reader_whose_term_ended_is_forgotten_at_the_next_subscription() {
        let signal = AppendSignal::default();
        drop(signal.subscribe(Some(&["OrderPlaced".to_owned()])));
        let _kept = signal.subscribe(Some(&["OrderPlaced".to_owned()]));
        assert_eq!(signal.readers().len(), 1);
    }
}
