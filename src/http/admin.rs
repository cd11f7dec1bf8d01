//! Operations for admins under `/v1/admin`: where each log reader stands, rebuilding the
//! read models from the log while the API keeps serving, and the email notifications' outbox.

use chrono::{DateTime, Utc};
use poem::web::Data;
use poem_openapi::param::{Path, Query};
use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, Object, OpenApi};

use super::cursor::{decode_notification_cursor, encode_notification_cursor, page};
use super::problem::ApiError;
use super::security::{Admins, Allowed};
use super::spec::ApiTags;
use crate::notify::outbox;
use crate::read_models;
use crate::state::AppState;

/// A log reader's position and lag.
#[derive(Debug, Clone, Object)]
#[oai(example)]
pub struct ReaderView {
    /// The reader, e.g. `projector`.
    pub name: String,
    /// Some process runs this reader right now.
    pub active: bool,
    /// Transaction id and position of the last processed event.
    pub tx_id: String,
    /// The log position of the last processed event (see `tx_id`).
    pub position: i64,
    /// Events committed after its position, counted up to 100 000.
    pub lag_events: i64,
    /// How long ago the first event it has not processed was recorded, in seconds; 0 when it
    /// is caught up.
    pub lag_seconds: f64,
    /// When its checkpoint last moved (RFC 3339, UTC); absent before it first has.
    #[oai(skip_serializing_if_is_none)]
    pub updated_at: Option<DateTime<Utc>>,
}

/// What a rebuild did.
#[derive(Debug, Clone, Object)]
#[oai(example)]
pub struct RebuildView {
    /// Events replayed from the log.
    pub events: i64,
    /// How long the rebuild took, in seconds.
    pub seconds: f64,
}

/// An email notification: queued for one order event, and how its delivery went.
#[derive(Debug, Clone, Object)]
#[oai(example)]
pub struct NotificationView {
    /// The notification's number in the outbox.
    pub id: i64,
    /// The order it tells of.
    pub order_id: uuid::Uuid,
    /// The order event it tells of; also the email's `Message-ID` (`<event_id@domain>`).
    pub event_id: uuid::Uuid,
    /// `confirmed`, `rejected`, `ready_for_pickup`, `picked_up`, `shipped`, `delivered` or
    /// `cancelled`.
    pub kind: String,
    /// The email address it is sent to (the order's `customer_email`).
    pub recipient: String,
    /// The email's subject line.
    pub subject: String,
    /// `pending` (queued or to be retried), `sent` (the SMTP server accepted it) or `failed`
    /// (refused for good, or retried too long).
    pub status: String,
    /// Delivery attempts so far.
    pub attempts: i32,
    /// When a pending one is tried next.
    pub next_attempt_at: DateTime<Utc>,
    /// Why the last attempt failed.
    #[oai(skip_serializing_if_is_none)]
    pub last_error: Option<String>,
    /// When it was queued (RFC 3339, UTC).
    pub created_at: DateTime<Utc>,
    /// When the SMTP server accepted it; absent unless `sent`.
    #[oai(skip_serializing_if_is_none)]
    pub sent_at: Option<DateTime<Utc>>,
    /// When an admin last sent it back to the queue after it failed; absent if never.
    #[oai(skip_serializing_if_is_none)]
    pub requeued_at: Option<DateTime<Utc>>,
}

impl From<outbox::Listed> for NotificationView {
    fn from(n: outbox::Listed) -> Self {
        Self {
            id: n.id,
            order_id: n.order_id,
            event_id: n.event_id,
            kind: n.kind,
            recipient: n.recipient,
            subject: n.subject,
            status: n.status,
            attempts: n.attempts,
            next_attempt_at: n.next_attempt_at,
            last_error: n.last_error,
            created_at: n.created_at,
            sent_at: n.sent_at,
            requeued_at: n.requeued_at,
        }
    }
}

/// A page of the notifications listing.
#[derive(Debug, Clone, Object)]
pub struct NotificationPage {
    /// The notifications of this page, newest first.
    pub items: Vec<NotificationView>,
    /// The cursor of the next page, to pass as `cursor`; absent on the last page.
    #[oai(skip_serializing_if_is_none)]
    pub next: Option<String>,
}

#[derive(ApiResponse)]
pub enum NotificationResponse {
    /// The notification, pending again: the sender tries it now.
    #[oai(status = 200)]
    Ok(Json<NotificationView>),
}

#[derive(ApiResponse)]
pub enum NotificationsResponse {
    #[oai(status = 200)]
    Ok(Json<NotificationPage>),
}

/// The log readers: the whole list (a handful), shaped as every list is (`items`; no `next`).
#[derive(Debug, Clone, Object)]
pub struct ReaderList {
    /// Every log reader of the service.
    pub items: Vec<ReaderView>,
}

#[derive(ApiResponse)]
pub enum ReadersResponse {
    #[oai(status = 200)]
    Ok(Json<ReaderList>),
}

#[derive(ApiResponse)]
pub enum RebuildResponse {
    /// The read models were rebuilt from the log and swapped in.
    #[oai(status = 200)]
    Ok(Json<RebuildView>),
}

/// The operations of this module.
#[derive(Debug)]
pub struct AdminApi;

#[OpenApi(prefix_path = "/v1/admin", tag = "ApiTags::Ops")]
impl AdminApi {
    /// Log readers: position, lag, activity
    #[oai(path = "/readers", method = "get", operation_id = "listReaders")]
    async fn readers(
        &self,
        state: Data<&AppState>,
        _auth: Allowed<Admins>,
    ) -> Result<ReadersResponse, ApiError> {
        let statuses = crate::log::statuses(&state.pool, &[read_models::PROJECTOR])
            .await
            .map_err(ApiError::infra)?;
        Ok(ReadersResponse::Ok(Json(ReaderList {
            items: statuses
                .into_iter()
                .map(|s| ReaderView {
                    name: s.name,
                    active: s.active,
                    tx_id: s.at.tx_id.to_string(),
                    position: s.at.position,
                    lag_events: s.lag_events,
                    lag_seconds: s.lag_seconds,
                    updated_at: s.updated_at,
                })
                .collect(),
        })))
    }

    /// Rebuild the read models from the log
    ///
    /// Replays every event into shadow tables, then swaps them in atomically; queries keep
    /// being answered meanwhile (they pause for the swap itself). One rebuild runs at a time:
    /// another one meanwhile is refused with 409 `rebuild-in-progress`; 409 `read-models-busy`
    /// when other sessions kept the read models locked through every attempt at the swap.
    #[oai(
        path = "/projections/rebuild",
        method = "post",
        operation_id = "rebuildProjections"
    )]
    async fn rebuild(
        &self,
        state: Data<&AppState>,
        _auth: Allowed<Admins>,
    ) -> Result<RebuildResponse, ApiError> {
        let report = read_models::rebuild(&state.pool)
            .await
            .map_err(|e| match e {
                read_models::RebuildError::AlreadyRunning => ApiError::AlreadyExists {
                    slug: "rebuild-in-progress",
                    detail: e.to_string(),
                },
                read_models::RebuildError::LiveTablesBusy { .. } => ApiError::AlreadyExists {
                    slug: "read-models-busy",
                    detail: e.to_string(),
                },
                read_models::RebuildError::Failed(e) => ApiError::infra(e),
            })?;
        Ok(RebuildResponse::Ok(Json(RebuildView {
            events: i64::try_from(report.events).unwrap_or(i64::MAX),
            seconds: report.seconds,
        })))
    }

    /// Email notifications by status (admin)
    ///
    /// The outbox of email notifications, newest first: `status=failed` lists the ones that
    /// were refused for good or retried too long, with their last error.
    #[oai(
        path = "/notifications",
        method = "get",
        operation_id = "listNotifications"
    )]
    async fn notifications(
        &self,
        _auth: Allowed<Admins>,
        state: Data<&AppState>,
        /// Only notifications in this status: `pending`, `sent` or `failed`.
        #[oai(validator(pattern = "^(pending|sent|failed)$"))]
        status: Query<Option<String>>,
        /// Notifications per page, newest first (1-500, default 100).
        #[oai(validator(minimum(value = "1"), maximum(value = "500")))]
        limit: Query<Option<i64>>,
        /// The `next` of the previous page; absent: the first page.
        #[oai(validator(max_length = 64))]
        cursor: Query<Option<String>>,
    ) -> Result<NotificationsResponse, ApiError> {
        let before = cursor
            .0
            .as_deref()
            .map(decode_notification_cursor)
            .transpose()?;
        // status and limit are checked by their validators before this runs
        let limit = limit.0.unwrap_or(100);
        let rows = outbox::list(&state.pool, status.0.as_deref(), before, limit + 1)
            .await
            .map_err(|e| ApiError::infra(e.into()))?;
        let (rows, next) = page(rows, limit, |r| encode_notification_cursor(r.id));
        Ok(NotificationsResponse::Ok(Json(NotificationPage {
            items: rows.into_iter().map(NotificationView::from).collect(),
            next,
        })))
    }

    /// Retry a failed email notification (admin)
    ///
    /// Sends a `failed` notification back to the queue, due now, e.g. once the SMTP relay or
    /// the customer's mailbox is fixed: the sender tries it now, and on a transient failure
    /// again with backoff (continuing from its attempts so far) for
    /// `APP__NOTIFY__RETRY_FOR_SECS` from now. Its attempts and last error stay. Only a failed
    /// one (409 `notification-not-failed` otherwise): a pending one is queued already, and a
    /// sent one was accepted, so sending it again would be a second email.
    #[oai(
        path = "/notifications/:id/retry",
        method = "post",
        operation_id = "retryNotification"
    )]
    async fn retry_notification(
        &self,
        auth: Allowed<Admins>,
        state: Data<&AppState>,
        /// The notification's number (`id` in the listing).
        #[oai(validator(minimum(value = "1")))]
        id: Path<i64>,
    ) -> Result<NotificationResponse, ApiError> {
        let row = outbox::requeue(&state.pool, id.0)
            .await
            .map_err(|e| match e {
                outbox::RequeueError::NotFound(_) => ApiError::NotFound {
                    slug: "notification-not-found",
                    detail: e.to_string(),
                },
                outbox::RequeueError::NotFailed { .. } => ApiError::AlreadyExists {
                    slug: "notification-not-failed",
                    detail: e.to_string(),
                },
                outbox::RequeueError::Database(e) => ApiError::infra(e.into()),
            })?;
        tracing::info!(
            notification = row.id,
            order_id = %row.order_id,
            principal = %auth.0.subject,
            "failed notification sent back to the queue"
        );
        Ok(NotificationResponse::Ok(Json(NotificationView::from(row))))
    }
}
