//! Operations for admins under `/v1/admin`: where each log reader stands, and rebuilding the
//! read models from the log while the API keeps serving.

use chrono::{DateTime, Utc};
use poem::web::Data;
use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, Object, OpenApi};

use super::problem::ApiError;
use super::security::{Admins, Allowed};
use super::spec::ApiTags;
use crate::read_models;
use crate::state::AppState;

/// A log reader's position and lag.
#[derive(Debug, Clone, Object)]
pub struct ReaderView {
    pub name: String,
    /// Some process runs this reader right now.
    pub active: bool,
    /// Transaction id and position of the last processed event.
    pub tx_id: String,
    pub position: i64,
    pub lag_events: i64,
    pub lag_seconds: f64,
    #[oai(skip_serializing_if_is_none)]
    pub updated_at: Option<DateTime<Utc>>,
}

/// What a rebuild did.
#[derive(Debug, Clone, Object)]
pub struct RebuildView {
    pub events: i64,
    pub seconds: f64,
}

#[derive(ApiResponse)]
pub enum ReadersResponse {
    #[oai(status = 200)]
    Ok(Json<Vec<ReaderView>>),
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
        Ok(ReadersResponse::Ok(Json(
            statuses
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
        )))
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
}
