//! Waking log readers when events are appended, without slowing the appends down.
//!
//! A `NOTIFY` inside the appending transaction would serialize every append on PostgreSQL's
//! notification-queue lock, held until the commit is flushed (migration 0006). Instead the
//! event store calls [`AppendSignal::appended`] after each append commits:
//! * the readers of this process wake at once (a [`watch`] channel, no database involved);
//! * [`forward_to_other_processes`] sends one `NOTIFY events_appended` per burst of appends, in
//!   a transaction of its own that writes nothing, for the readers of other replicas (which
//!   `LISTEN` as before). Appends during an in-flight `NOTIFY` are covered by the next one.
//!
//! Anything else that inserts into `events` (a script, another tool) is seen at the readers'
//! next poll.

use std::sync::Arc;
use std::time::Duration;

use sqlx::PgPool;
use tokio::sync::{watch, Notify};

/// The channel other processes' readers `LISTEN` on.
pub const CHANNEL: &str = "events_appended";

/// "Events were appended": raised by the event store, heard by the log readers. Cheap to
/// clone; every clone is the same signal.
#[derive(Debug, Clone)]
pub struct AppendSignal {
    local: Arc<watch::Sender<u64>>,
    outbound: Arc<Notify>,
}

impl Default for AppendSignal {
    fn default() -> Self {
        Self {
            local: Arc::new(watch::Sender::new(0)),
            outbound: Arc::new(Notify::new()),
        }
    }
}

impl AppendSignal {
    /// Called after events were committed.
    pub fn appended(&self) {
        self.local.send_modify(|n| *n = n.wrapping_add(1));
        // stores one permit when the forwarder is busy: bursts coalesce into one NOTIFY
        self.outbound.notify_one();
    }

    /// A receiver that changes on every append of this process.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.local.subscribe()
    }
}

/// Sends `NOTIFY events_appended` after appends of this process, at most one at a time, until
/// `shutdown` turns true. A failure is logged and retried after a pause (other processes'
/// readers poll meanwhile).
pub async fn forward_to_other_processes(
    pool: PgPool,
    signal: AppendSignal,
    mut shutdown: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    loop {
        tokio::select! {
            () = signal.outbound.notified() => {}
            _ = shutdown.changed() => {}
        }
        if *shutdown.borrow() {
            return Ok(());
        }
        if let Err(e) = sqlx::query("select pg_notify($1, '')")
            .bind(CHANNEL)
            .execute(&pool)
            .await
        {
            tracing::warn!(error = %e, "could not notify other processes of appended events");
            tokio::time::sleep(Duration::from_millis(100)).await;
            // try again: the permit of this burst was used up
            signal.outbound.notify_one();
        }
    }
}
