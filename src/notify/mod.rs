//! Email notifications (DESIGN §13): when an order is confirmed, rejected, ready for pickup,
//! picked up, shipped, delivered or cancelled, the customer's address on the order (if any)
//! gets an email, plain text and HTML, from the store's name at `APP__NOTIFY__FROM`.
//!
//! Two workers and an outbox table (`notifications`, migration 0012):
//! * [`notifier`]: a log reader (own checkpoint, single-active) that renders ([`message`],
//!   pure) and queues one row per notifiable event in the batch's transaction: each event is
//!   queued exactly once. It starts at the end of the log the first time it runs.
//! * [`sender`]: claims due rows (`for update skip locked`: every replica sends), delivers
//!   them over SMTP with `lettre`, records the outcome; retries transient failures with
//!   backoff, keeps permanent ones as `failed`. Its module states what it guarantees.
//!
//! Off unless `APP__NOTIFY__SMTP_URL` is set; `log:` prints emails instead of sending them.

pub mod message;
pub mod metrics;
pub mod notifier;
pub mod outbox;
pub mod sender;
pub mod smtp;

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use secrecy::ExposeSecret as _;

use crate::backoff::{Backoff, Jitter};
use crate::config::NotifySettings;
use crate::log::AppendSignal;
use crate::supervisor::Supervisor;
use crate::telemetry::Metrics;
use metrics::NotifyMetrics;
use notifier::Notifier;
use sender::{Mailer, Sender};

/// The sender's worker name.
pub const SENDER: &str = "notification-sender";

/// Email notifications as configured: what starts the notifier and the sender.
#[derive(Debug, Clone)]
pub struct Notifications {
    mailer: Arc<Mailer>,
    metrics: NotifyMetrics,
    from: lettre::Address,
    settings: NotifySettings,
}

impl Notifications {
    /// `None` when notifications are off (no `APP__NOTIFY__SMTP_URL`); an error for a URL or
    /// sender address that cannot work.
    pub fn configured(
        settings: &NotifySettings,
        registry: &prometheus::Registry,
    ) -> anyhow::Result<Option<Self>> {
        let Some(url) = &settings.smtp_url else {
            return Ok(None);
        };
        let mailer = Mailer::from_url(
            url.expose_secret(),
            Duration::from_millis(settings.send_timeout_ms),
        )?;
        let from = settings.from.parse().with_context(|| {
            format!("APP__NOTIFY__FROM {:?} is no email address", settings.from)
        })?;
        tracing::info!(mailer = ?mailer, from = %settings.from, "email notifications on");
        Ok(Some(Self {
            mailer: Arc::new(mailer),
            metrics: NotifyMetrics::register(registry)?,
            from,
            settings: settings.clone(),
        }))
    }

    /// Starts the notifier (log reader) and the sender under `supervisor`.
    pub fn supervise(
        &self,
        supervisor: &Supervisor,
        pool: &sqlx::PgPool,
        metrics: &Arc<Metrics>,
        appended: &AppendSignal,
    ) {
        let reader = Notifier::reader(pool.clone(), metrics.clone()).woken_by(appended.clone());
        let p = pool.clone();
        supervisor.supervise(notifier::READER, move |token| {
            let (reader, p) = (reader.clone(), p.clone());
            async move {
                Notifier::start_at_end_if_new(&p).await?;
                reader.run(Notifier, token).await
            }
        });
        let s = &self.settings;
        let sender = Sender {
            pool: pool.clone(),
            mailer: self.mailer.clone(),
            metrics: self.metrics.clone(),
            from: self.from.clone(),
            retry: Backoff::new(
                Duration::from_millis(s.retry_first_ms),
                Duration::from_millis(s.retry_max_ms),
            )
            .with_jitter(Jitter::Equal),
            retry_for: Duration::from_secs(s.retry_for_secs),
            send_timeout: Duration::from_millis(s.send_timeout_ms),
            poll_interval: Duration::from_millis(s.poll_interval_ms),
        };
        supervisor.supervise(SENDER, move |token| sender.clone().run(token));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_url(url: Option<&str>) -> NotifySettings {
        NotifySettings {
            smtp_url: url.map(|u| secrecy::SecretString::from(u.to_owned())),
            ..NotifySettings::default()
        }
    }

    #[test]
    fn notifications_are_off_unless_an_smtp_url_is_set() {
        let registry = prometheus::Registry::new();
        assert!(Notifications::configured(&with_url(None), &registry)
            .expect("off is fine")
            .is_none());
        let on = Notifications::configured(&with_url(Some("log:")), &registry)
            .expect("the dev stack's log mailer, with the default sender")
            .expect("on");
        assert!(matches!(*on.mailer, Mailer::Log));
    }

    // on a runtime: lettre's connection pool runs a task of its own
    #[tokio::test]
    async fn an_smtp_url_or_sender_that_cannot_work_stops_the_start() {
        let registry = prometheus::Registry::new();
        assert!(Notifications::configured(&with_url(Some("http://mail:25")), &registry).is_err());
        let smtp = Notifications::configured(&with_url(Some("smtp://127.0.0.1:2525")), &registry)
            .expect("an smtp URL")
            .expect("on");
        assert!(matches!(*smtp.mailer, Mailer::Smtp(_)));
        let bad_from = NotifySettings {
            from: "not an address".into(),
            ..with_url(Some("log:"))
        };
        assert!(Notifications::configured(&bad_from, &prometheus::Registry::new()).is_err());
    }
}
