//! Saga endpoints: an order's saga (`GET /v1/orders/{id}/saga`), and for admins the sagas by
//! status and the retry of a parked one (DESIGN §7, §9).

use chrono::{DateTime, Utc};
use order_domain::OrderId;
use order_sagas::{SagaCommand, SagaError};
use poem::web::Data;
use poem_openapi::param::{Path, Query};
use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, Object, OpenApi};
use uuid::Uuid;

use super::auth::{Principal, Role};
use super::cursor::{decode_saga_cursor, encode_saga_cursor, page};
use super::problem::ApiError;
use super::security::{authorize_order, Admins, Allowed, BearerAuth, OrderAction};
use super::spec::ApiTags;
use crate::state::AppState;
use crate::store::sagas::SagaExecuteError;

/// One request the saga sent to a participant.
#[derive(Debug, Clone, Object)]
#[oai(example)]
pub struct SagaStepView {
    /// `reserve`, `authorize`, `release`, `void`, `capture`, `commit`, `refund`.
    pub step: String,
    /// The command's `message_id`, what a participant's reply must name in `in_reply_to`.
    /// Shown to admins and services only: whoever knows it could answer in the participant's
    /// place.
    #[oai(skip_serializing_if_is_none)]
    pub message_id: Option<Uuid>,
    /// Sends so far (re-sends keep the message id).
    pub attempt: i64,
    /// When the current attempt times out, while waiting.
    #[oai(skip_serializing_if_is_none)]
    pub deadline_at: Option<DateTime<Utc>>,
    /// The reply kind that answered it (`reserved`, `authorized`, ...).
    #[oai(skip_serializing_if_is_none)]
    pub answer: Option<String>,
    /// The saga stopped waiting (a late answer is still compensated).
    pub abandoned: bool,
    /// Why it is parked for a human.
    #[oai(skip_serializing_if_is_none)]
    pub parked: Option<String>,
}

/// An order's saga.
#[derive(Debug, Clone, Object)]
#[oai(example)]
pub struct SagaView {
    /// The order the saga runs for.
    pub order_id: Uuid,
    /// `reserving_stock`, `authorizing_payment`, `confirmed`, `capturing`, `completed`,
    /// `compensating`, `cancelled`, `failed`, `needs_attention`.
    pub status: String,
    /// When the order was placed and the saga began (RFC 3339, UTC).
    #[oai(skip_serializing_if_is_none)]
    pub started_at: Option<DateTime<Utc>>,
    /// When the saga gives up waiting on its current step; absent when it waits for nothing.
    #[oai(skip_serializing_if_is_none)]
    pub deadline_at: Option<DateTime<Utc>>,
    /// The inventory's id for the stock reserved; absent until stock is reserved.
    #[oai(skip_serializing_if_is_none)]
    pub reservation_id: Option<String>,
    /// The payment provider's id for the authorization; absent until payment is authorized.
    #[oai(skip_serializing_if_is_none)]
    pub payment_id: Option<String>,
    /// Every request sent to a participant, oldest first.
    pub steps: Vec<SagaStepView>,
}

/// A saga in a listing.
#[derive(Debug, Clone, Object, sqlx::FromRow)]
#[oai(example)]
pub struct SagaSummary {
    /// The order the saga runs for.
    pub order_id: Uuid,
    /// Where the saga stands, as `SagaView.status`.
    pub status: String,
    /// When the saga gives up waiting on its current step; absent when it waits for nothing.
    #[oai(skip_serializing_if_is_none)]
    pub deadline_at: Option<DateTime<Utc>>,
    /// The type of the saga's latest event, e.g. `StockReserved`.
    pub last_event: String,
    /// Why it needs a human (status `needs_attention`); absent otherwise.
    #[oai(skip_serializing_if_is_none)]
    pub attention: Option<String>,
    /// When the saga began (RFC 3339, UTC).
    pub started_at: DateTime<Utc>,
    /// When its latest event was recorded (RFC 3339, UTC).
    pub updated_at: DateTime<Utc>,
}

#[derive(ApiResponse)]
pub enum SagaResponse {
    #[oai(status = 200)]
    Ok(Json<SagaView>),
}

/// A page of the sagas listing.
#[derive(Debug, Clone, Object)]
pub struct SagaPage {
    /// The sagas of this page, most recently updated first.
    pub items: Vec<SagaSummary>,
    /// The cursor of the next page, to pass as `cursor`; absent on the last page.
    #[oai(skip_serializing_if_is_none)]
    pub next: Option<String>,
}

#[derive(ApiResponse)]
pub enum SagasResponse {
    #[oai(status = 200)]
    Ok(Json<SagaPage>),
}

/// Whether `principal` may see the saga's command ids (DESIGN §8: admins and services only).
fn sees_message_ids(principal: &Principal) -> bool {
    principal.is_admin() || principal.has(Role::Service)
}

fn view(order: Uuid, saga: &order_sagas::OrderSaga, show_message_ids: bool) -> Option<SagaView> {
    Some(SagaView {
        order_id: order,
        status: saga.status()?.as_str().to_owned(),
        started_at: saga.started_at(),
        deadline_at: saga.deadline(),
        reservation_id: saga.reservation_id().map(|r| r.as_str().to_owned()),
        payment_id: saga.payment_id().map(|p| p.as_str().to_owned()),
        steps: saga
            .requests()
            .iter()
            .map(|r| SagaStepView {
                step: r.step().to_string(),
                message_id: show_message_ids.then(|| r.message_id().as_uuid()),
                attempt: r.attempt.into(),
                deadline_at: r.deadline_at,
                answer: r.answer.as_ref().map(|a| a.kind.to_string()),
                abandoned: r.abandoned,
                parked: r.parked.clone(),
            })
            .collect(),
    })
}

fn saga_not_found(order: Uuid) -> ApiError {
    ApiError::NotFound {
        slug: "saga-not-found",
        detail: format!("order {order} has no saga (it was never placed)"),
    }
}

/// The operations of this module.
#[derive(Debug)]
pub struct SagasApi;

#[OpenApi(prefix_path = "/v1", tag = "ApiTags::Orders")]
impl SagasApi {
    /// Read an order's saga: its steps, attempts, deadlines and answers
    #[oai(
        path = "/orders/:id/saga",
        method = "get",
        operation_id = "getOrderSaga"
    )]
    async fn get(
        &self,
        state: Data<&AppState>,
        auth: BearerAuth,
        /// The order's id (UUID).
        id: Path<Uuid>,
    ) -> Result<SagaResponse, ApiError> {
        let order = state
            .orders
            .load(OrderId::from_uuid(id.0))
            .await
            .map_err(ApiError::infra)?
            .ok_or_else(ApiError::order_not_found)?;
        authorize_order(&auth.0, &order, OrderAction::Read)?;
        let saga = state
            .sagas
            .load(OrderId::from_uuid(id.0))
            .await
            .map_err(ApiError::infra)?;
        Ok(SagaResponse::Ok(Json(
            view(id.0, &saga, sees_message_ids(&auth.0)).ok_or_else(|| saga_not_found(id.0))?,
        )))
    }

    /// List sagas by status (admin)
    #[oai(path = "/admin/sagas", method = "get", operation_id = "listSagas")]
    async fn list(
        &self,
        state: Data<&AppState>,
        _auth: Allowed<Admins>,
        /// Only sagas in this status, e.g. `needs_attention`.
        #[oai(
            name = "state",
            validator(
                pattern = "^(reserving_stock|authorizing_payment|confirmed|capturing|completed|compensating|cancelled|failed|needs_attention)$"
            )
        )]
        status: Query<Option<String>>,
        /// Sagas per page, most recently updated first (1-500, default 100).
        #[oai(validator(minimum(value = "1"), maximum(value = "500")))]
        limit: Query<Option<i64>>,
        /// The `next` of the previous page; absent: the first page.
        #[oai(validator(max_length = 64))]
        cursor: Query<Option<String>>,
    ) -> Result<SagasResponse, ApiError> {
        if let Some(s) = status.0.as_deref() {
            if order_sagas::SagaStatus::parse(s).is_none() {
                return Err(ApiError::BadRequest {
                    slug: "invalid-parameter",
                    detail: format!("state {s:?} is not a saga status"),
                });
            }
        }
        let after = cursor.0.as_deref().map(decode_saga_cursor).transpose()?;
        // bounded by its validator before this runs
        let limit = limit.0.unwrap_or(100);
        let rows: Vec<SagaSummary> = sqlx::query_as(
            "select order_id, status, deadline_at, last_event, attention, started_at, updated_at
               from read.saga_progress
              where ($1::text is null or status = $1)
                and ($3::timestamptz is null or (updated_at, order_id) < ($3, $4))
              order by updated_at desc, order_id desc limit $2 + 1",
        )
        .bind(status.0)
        .bind(limit)
        .bind(after.map(|(at, _)| at))
        .bind(after.map(|(_, id)| id))
        .fetch_all(&state.pool)
        .await
        .map_err(|e| ApiError::infra(e.into()))?;
        let (items, next) = page(rows, limit, |r| {
            encode_saga_cursor(r.updated_at, r.order_id)
        });
        Ok(SagasResponse::Ok(Json(SagaPage { items, next })))
    }

    /// Retry a saga that needs attention (admin)
    ///
    /// Re-sends its parked requests with their attempts reset.
    #[oai(
        path = "/admin/sagas/:id/retry",
        method = "post",
        operation_id = "retrySaga"
    )]
    async fn retry(
        &self,
        state: Data<&AppState>,
        auth: Allowed<Admins>,
        /// The order's id (UUID).
        id: Path<Uuid>,
    ) -> Result<SagaResponse, ApiError> {
        let order = OrderId::from_uuid(id.0);
        let metadata = [("principal".to_owned(), auth.0.subject.clone())]
            .into_iter()
            .collect();
        match state
            .sagas
            .execute(order, &SagaCommand::Retry { now: Utc::now() }, metadata)
            .await
        {
            Ok(_) => {}
            Err(SagaExecuteError::Refused(SagaError::NotStarted)) => {
                return Err(saga_not_found(id.0))
            }
            Err(SagaExecuteError::Refused(e)) => {
                return Err(ApiError::AlreadyExists {
                    slug: "nothing-to-retry",
                    detail: e.to_string(),
                })
            }
            Err(SagaExecuteError::Conflict) => {
                return Err(ApiError::Conflict {
                    retry_after_secs: 1,
                })
            }
            Err(SagaExecuteError::Store(e) | SagaExecuteError::Unavailable(e)) => {
                return Err(ApiError::infra(e))
            }
        }
        let saga = state.sagas.load(order).await.map_err(ApiError::infra)?;
        Ok(SagaResponse::Ok(Json(
            view(id.0, &saga, sees_message_ids(&auth.0)).ok_or_else(|| saga_not_found(id.0))?,
        )))
    }
}
