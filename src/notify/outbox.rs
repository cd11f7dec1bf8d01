//! The `notifications` table (migration 0012): queueing, claiming, recording and listing.
//! Every statement is here, so the row's life is readable in one place:
//! `pending` → (`attempts` + 1, `next_attempt_at` later, `last_error`)* → `sent` | `failed`,
//! and `failed` → `pending` again when an admin retries it ([`requeue`], migration 0014).

use chrono::{DateTime, Utc};
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

/// One email to queue.
#[derive(Debug, Clone)]
pub struct Queued {
    pub order_id: Uuid,
    pub event_id: Uuid,
    pub kind: &'static str,
    pub recipient: String,
    pub sender_name: String,
    pub subject: String,
    pub body_text: String,
    pub body_html: String,
}

/// Queues `rows` on `conn` (the notifier's batch transaction). An event queued before (a
/// checkpoint that was moved back) is not queued again.
pub async fn queue(conn: &mut PgConnection, rows: &[Queued]) -> Result<u64, sqlx::Error> {
    if rows.is_empty() {
        return Ok(0);
    }
    let column = |f: fn(&Queued) -> String| rows.iter().map(f).collect::<Vec<String>>();
    let ids = |f: fn(&Queued) -> Uuid| rows.iter().map(f).collect::<Vec<Uuid>>();
    let done = sqlx::query(
        "insert into notifications
             (order_id, event_id, kind, recipient, sender_name, subject, body_text, body_html)
         select * from unnest($1::uuid[], $2::uuid[], $3::text[], $4::text[], $5::text[],
                              $6::text[], $7::text[], $8::text[])
         on conflict (event_id) do nothing",
    )
    .bind(ids(|r| r.order_id))
    .bind(ids(|r| r.event_id))
    .bind(column(|r| r.kind.to_owned()))
    .bind(column(|r| r.recipient.clone()))
    .bind(column(|r| r.sender_name.clone()))
    .bind(column(|r| r.subject.clone()))
    .bind(column(|r| r.body_text.clone()))
    .bind(column(|r| r.body_html.clone()))
    .execute(conn)
    .await?;
    Ok(done.rows_affected())
}

/// A claimed row: what the sender needs to deliver it.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Due {
    pub id: i64,
    pub order_id: Uuid,
    pub event_id: Uuid,
    pub kind: String,
    pub recipient: String,
    pub sender_name: String,
    pub subject: String,
    pub body_text: String,
    pub body_html: String,
    pub attempts: i32,
    /// When it was queued, or last sent back to the queue by an admin: its retry window
    /// starts there.
    pub queued_at: DateTime<Utc>,
}

/// Locks up to `limit` due pending rows in the caller's transaction, oldest due first; rows
/// another sender holds are skipped, so replicas share the queue.
pub async fn claim(conn: &mut PgConnection, limit: i64) -> Result<Vec<Due>, sqlx::Error> {
    sqlx::query_as(
        "select id, order_id, event_id, kind, recipient, sender_name, subject, body_text,
                body_html, attempts, coalesce(requeued_at, created_at) as queued_at
           from notifications
          where status = 'pending' and next_attempt_at <= now()
          order by next_attempt_at
          limit $1
            for update skip locked",
    )
    .bind(limit)
    .fetch_all(conn)
    .await
}

/// Records, ahead of the delivery, that the SMTP server accepted row `id` (claimed in the
/// caller's transaction): the sender commits it the moment the server accepts, so that only
/// the commit's own message lies between the acceptance and its record, and overwrites it
/// with [`retry_later`] or [`mark_failed`] when the server does not accept.
pub async fn stage_sent(conn: &mut PgConnection, id: i64) -> Result<(), sqlx::Error> {
    sqlx::query(
        "update notifications
            set status = 'sent', attempts = attempts + 1, sent_at = now(), last_error = null
          where id = $1",
    )
    .bind(id)
    .execute(conn)
    .await?;
    Ok(())
}

/// Records a transient failure of row `id`, staged by [`stage_sent`]: tried again after `delay`.
pub async fn retry_later(
    conn: &mut PgConnection,
    id: i64,
    delay: std::time::Duration,
    error: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "update notifications
            set status = 'pending', sent_at = null, last_error = $2,
                next_attempt_at = now() + make_interval(secs => $3)
          where id = $1",
    )
    .bind(id)
    .bind(error)
    .bind(delay.as_secs_f64())
    .execute(conn)
    .await?;
    Ok(())
}

/// Records that row `id`, staged by [`stage_sent`], will not be delivered (a permanent refusal,
/// or transient ones for too long): it stays, `failed`, for the admin listing.
pub async fn mark_failed(conn: &mut PgConnection, id: i64, error: &str) -> Result<(), sqlx::Error> {
    sqlx::query(
        "update notifications
            set status = 'failed', sent_at = null, last_error = $2
          where id = $1",
    )
    .bind(id)
    .bind(error)
    .execute(conn)
    .await?;
    Ok(())
}

/// Rows waiting to be sent (due or not).
pub async fn pending(pool: &PgPool) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar("select count(*) from notifications where status = 'pending'")
        .fetch_one(pool)
        .await
}

/// A row as the admin listing shows it.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Listed {
    pub id: i64,
    pub order_id: Uuid,
    pub event_id: Uuid,
    pub kind: String,
    pub recipient: String,
    pub subject: String,
    pub status: String,
    pub attempts: i32,
    pub next_attempt_at: DateTime<Utc>,
    pub last_error: Option<String>,
    pub created_at: DateTime<Utc>,
    pub sent_at: Option<DateTime<Utc>>,
    pub requeued_at: Option<DateTime<Utc>>,
}

/// The columns of [`Listed`].
const LISTED: &str = "id, order_id, event_id, kind, recipient, subject, status, attempts,
                      next_attempt_at, last_error, created_at, sent_at, requeued_at";

/// Up to `limit` rows, newest first (by id), of `status` (all when `None`), older than
/// row `before` when given.
pub async fn list(
    pool: &PgPool,
    status: Option<&str>,
    before: Option<i64>,
    limit: i64,
) -> Result<Vec<Listed>, sqlx::Error> {
    sqlx::query_as(&format!(
        "select {LISTED}
           from notifications
          where ($1::text is null or status = $1) and ($3::bigint is null or id < $3)
          order by id desc
          limit $2"
    ))
    .bind(status)
    .bind(limit)
    .bind(before)
    .fetch_all(pool)
    .await
}

/// Why row `id` could not be sent back to the queue.
#[derive(Debug, thiserror::Error)]
pub enum RequeueError {
    #[error("no notification {0}")]
    NotFound(i64),
    #[error("notification {id} is {status}: only a failed one is retried")]
    NotFailed { id: i64, status: String },
    #[error(transparent)]
    Database(#[from] sqlx::Error),
}

/// Sends failed row `id` back to the queue, due now, its retry window starting again; its
/// attempts and last error stay (history). Only a `failed` row: a pending one is queued
/// already, and a sent one was accepted (sending it again is a second email).
pub async fn requeue(pool: &PgPool, id: i64) -> Result<Listed, RequeueError> {
    // Twice at most: a sender may record the row's failure between the update and the look at
    // why it did not apply.
    for _ in 0..2 {
        let requeued: Option<Listed> = sqlx::query_as(&format!(
            "update notifications
                set status = 'pending', next_attempt_at = now(), requeued_at = now()
              where id = $1 and status = 'failed'
          returning {LISTED}"
        ))
        .bind(id)
        .fetch_optional(pool)
        .await?;
        if let Some(row) = requeued {
            return Ok(row);
        }
        let status: Option<String> =
            sqlx::query_scalar("select status from notifications where id = $1")
                .bind(id)
                .fetch_optional(pool)
                .await?;
        match status {
            None => return Err(RequeueError::NotFound(id)),
            Some(status) if status != "failed" => {
                return Err(RequeueError::NotFailed { id, status })
            }
            Some(_) => {}
        }
    }
    Err(RequeueError::NotFailed {
        id,
        status: "failed again while it was being retried".into(),
    })
}
