//! The sender: delivers queued emails over SMTP, one row at a time.
//!
//! Guarantees:
//! * **Never lost.** A row is claimed with `for update skip locked` in a transaction of its
//!   own, delivered while that transaction holds it, and recorded (`sent`, `failed`, or
//!   rescheduled) in it before the commit. A crash anywhere before the commit releases the
//!   row as it was, `pending`: it is delivered again.
//! * **A second copy only after a crash** (or a lost database connection) between the SMTP
//!   server's acceptance and the commit that records it: that is the only way an accepted row
//!   can still be `pending`. The record is written before the delivery and committed as soon as
//!   the server accepts, so that window is one message to the database wide. The email's `Message-ID` is derived from the event id, so a
//!   receiving system can tell the copies apart. One delivery is bounded by
//!   `APP__NOTIFY__SEND_TIMEOUT_MS`, and the transaction's idle timeout is raised above it, so
//!   a slow server cannot have the database end the transaction under an accepted email.
//! * **Replicas share the queue**: each claims rows the others do not hold.
//! * **No log reader waits for it**: the claim's transaction holds a transaction id during the
//!   delivery, which would hold back every log reader's horizon (DESIGN §5); the sender's own
//!   connection is marked as one that never appends to the log, as the readers' are, so they
//!   pass over it.
//! * **Transient failures** (4xx replies, connection failures, timeouts) are retried with
//!   exponential backoff (`retry_first_ms` doubling to `retry_max_ms`) for `retry_for_secs`
//!   after the row was queued, then the row is `failed`. **Permanent refusals** (5xx, an
//!   address that does not parse) mark it `failed` at once. Failed rows stay, with their last
//!   error, for `GET /v1/admin/notifications?status=failed`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use lettre::message::{Mailbox, MultiPart};
use lettre::{Address, Message};
use sqlx::{Connection as _, PgConnection, PgPool};
use tokio_util::sync::CancellationToken;

use super::metrics::NotifyMetrics;
use super::outbox::{self, Due};
use super::smtp::Smtp;
use crate::backoff::Backoff;

/// The pending gauge is measured at most this often.
const GAUGE_EVERY: Duration = Duration::from_secs(1);

/// Where emails go.
pub enum Mailer {
    /// An SMTP server (`smtp://`, `smtps://`).
    Smtp(Box<Smtp>),
    /// The log (`log:`): each email is printed instead of sent (the dev stack).
    Log,
}

impl std::fmt::Debug for Mailer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // the transport's Debug could show credentials
        f.write_str(match self {
            Self::Smtp(_) => "Mailer::Smtp",
            Self::Log => "Mailer::Log",
        })
    }
}

impl Mailer {
    /// The mailer `url` names (see `APP__NOTIFY__SMTP_URL`).
    pub fn from_url(url: &str, timeout: Duration) -> anyhow::Result<Self> {
        if url == "log:" {
            return Ok(Self::Log);
        }
        Ok(Self::Smtp(Box::new(Smtp::from_url(url, timeout)?)))
    }
}

/// How a delivery failed.
#[derive(Debug)]
enum Failure {
    /// Worth trying again later.
    Transient(String),
    /// Will never succeed as it is.
    Permanent(String),
}

/// The sender worker.
#[derive(Debug, Clone)]
pub struct Sender {
    pub pool: PgPool,
    pub mailer: Arc<Mailer>,
    pub metrics: NotifyMetrics,
    /// The address every email is from (`APP__NOTIFY__FROM`).
    pub from: Address,
    pub retry: Backoff,
    pub retry_for: Duration,
    pub send_timeout: Duration,
    pub poll_interval: Duration,
}

impl Sender {
    /// Delivers due rows until `shutdown` (a delivery under way is finished first); a database
    /// failure ends it with an error, for the supervisor to restart it.
    pub async fn run(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        // A connection of its own, marked as one that never appends to the log (as log
        // readers' are): its transaction stays open during a delivery, and would otherwise
        // hold every log reader's horizon back for as long as the SMTP server takes (see
        // `log::read_tail`).
        let mut conn = self
            .pool
            .acquire()
            .await
            .context("connecting the email sender")?
            .detach();
        sqlx::query("select set_config('application_name', $1, false)")
            .bind(crate::log::READER_APPLICATION_NAME)
            .execute(&mut conn)
            .await?;
        let mut measured: Option<Instant> = None;
        while !shutdown.is_cancelled() {
            let delivered = self.deliver_one(&mut conn).await?;
            if measured.is_none_or(|at| at.elapsed() >= GAUGE_EVERY) {
                self.metrics.pending.set(outbox::pending(&self.pool).await?);
                measured = Some(Instant::now());
            }
            if !delivered {
                tokio::select! {
                    () = tokio::time::sleep(self.poll_interval) => {}
                    () = shutdown.cancelled() => {}
                }
            }
        }
        conn.close().await.ok();
        if let Mailer::Smtp(smtp) = &*self.mailer {
            smtp.close().await;
        }
        Ok(())
    }

    /// Claims one due row on `conn`, delivers it and records the outcome; false when none
    /// was due.
    async fn deliver_one(&self, conn: &mut PgConnection) -> anyhow::Result<bool> {
        let mut tx = conn.begin().await.context("starting a claim")?;
        // above the longest delivery: the row must stay claimed until its outcome is recorded
        let idle = self.send_timeout + Duration::from_secs(30);
        sqlx::query("select set_config('idle_in_transaction_session_timeout', $1, true)")
            .bind(format!("{}ms", idle.as_millis()))
            .execute(&mut *tx)
            .await?;
        let Some(row) = outbox::claim(&mut tx, 1).await?.pop() else {
            tx.rollback().await?;
            return Ok(false);
        };
        let span = tracing::info_span!(
            "notification.send",
            order_id = %row.order_id,
            event_id = %row.event_id,
            kind = %row.kind,
            attempt = row.attempts + 1,
        );
        // The acceptance is recorded before it happens, so that the moment the server accepts,
        // one message (the commit) records it: a crash in between is the only way to a second
        // copy, and this keeps that window as short as the commit's write.
        outbox::stage_sent(&mut tx, row.id).await?;
        let started = Instant::now();
        let outcome = tracing::Instrument::instrument(self.deliver(&row), span.clone()).await;
        self.metrics
            .send_seconds
            .observe(started.elapsed().as_secs_f64());
        let _entered = span.enter();
        match outcome {
            Ok(()) => {
                tx.commit().await.context("recording a sent email")?;
                self.metrics.sent.with_label_values(&[&row.kind]).inc();
                tracing::info!("email sent");
            }
            Err(Failure::Permanent(error)) => {
                outbox::mark_failed(&mut tx, row.id, &error).await?;
                tx.commit().await?;
                self.metrics.failed.with_label_values(&[&row.kind]).inc();
                tracing::warn!(error, "email refused for good; marked failed");
            }
            Err(Failure::Transient(error)) => {
                let queued_for = (chrono::Utc::now() - row.queued_at)
                    .to_std()
                    .unwrap_or_default();
                if queued_for >= self.retry_for {
                    let error = format!("retried for {queued_for:?}; last: {error}");
                    outbox::mark_failed(&mut tx, row.id, &error).await?;
                    tx.commit().await?;
                    self.metrics.failed.with_label_values(&[&row.kind]).inc();
                    tracing::warn!(error, "email could not be delivered in time; marked failed");
                } else {
                    let attempt = u32::try_from(row.attempts).unwrap_or(u32::MAX);
                    let delay = self.retry.delay(attempt);
                    outbox::retry_later(&mut tx, row.id, delay, &error).await?;
                    tx.commit().await?;
                    self.metrics.retried.inc();
                    tracing::info!(
                        error,
                        retry_in_ms = delay.as_millis(),
                        "email not delivered yet; will retry"
                    );
                }
            }
        }
        Ok(true)
    }

    /// One delivery attempt of `row`.
    async fn deliver(&self, row: &Due) -> Result<(), Failure> {
        let message = self.message(row)?;
        match &*self.mailer {
            Mailer::Log => {
                tracing::info!(
                    to = %row.recipient,
                    subject = %row.subject,
                    body = %row.body_text,
                    "email (APP__NOTIFY__SMTP_URL=log: printed, not sent)"
                );
                Ok(())
            }
            Mailer::Smtp(smtp) => {
                match tokio::time::timeout(self.send_timeout, smtp.send(&message)).await {
                    Err(_) => Err(Failure::Transient(format!(
                        "no answer within {:?}",
                        self.send_timeout
                    ))),
                    Ok(Ok(())) => Ok(()),
                    Ok(Err(e)) if e.is_permanent() => Err(Failure::Permanent(e.to_string())),
                    Ok(Err(e)) => Err(Failure::Transient(e.to_string())),
                }
            }
        }
    }

    /// The email of `row`: from the store's name at `from`, plain text and HTML alternatives,
    /// `Message-ID` `<event id@from's domain>`.
    fn message(&self, row: &Due) -> Result<Message, Failure> {
        let to: Address = row
            .recipient
            .parse()
            .map_err(|e| Failure::Permanent(format!("recipient {:?}: {e}", row.recipient)))?;
        Message::builder()
            .from(Mailbox::new(
                Some(row.sender_name.clone()),
                self.from.clone(),
            ))
            .to(Mailbox::new(None, to))
            .subject(row.subject.clone())
            .message_id(Some(format!("<{}@{}>", row.event_id, self.from.domain())))
            .multipart(MultiPart::alternative_plain_html(
                row.body_text.clone(),
                row.body_html.clone(),
            ))
            .map_err(|e| Failure::Permanent(format!("building the email: {e}")))
    }
}
