//! Operations endpoints: liveness, readiness and Prometheus metrics. Unauthenticated, outside
//! `/v1`, for load balancers and scrapers.

use poem::web::Data;
use poem_openapi::payload::{Json, PlainText};
use poem_openapi::{ApiResponse, Object, OpenApi};

use super::spec::ApiTags;
use crate::lifecycle::Lifecycle;
use crate::state::AppState;
use crate::supervisor::WorkerStatus;

/// Health of one dependency.
#[derive(Debug, Clone, Object)]
#[oai(example)]
pub struct Check {
    /// What is checked: `database`, `migrations`, `nats`, a worker's name, `shutdown`.
    pub name: String,
    /// Whether it is healthy.
    pub ok: bool,
    /// Why it is not, for a human; absent when it is.
    #[oai(skip_serializing_if_is_none)]
    pub detail: Option<String>,
}

/// Readiness report.
#[derive(Debug, Clone, Object)]
#[oai(example)]
pub struct Readiness {
    /// Whether every check is ok and the instance takes traffic.
    pub ready: bool,
    /// One entry per dependency.
    pub checks: Vec<Check>,
}

#[derive(ApiResponse)]
pub enum ReadyResponse {
    /// Every dependency answers.
    #[oai(status = 200)]
    Ready(Json<Readiness>),
    /// Some dependency does not; the body says which.
    #[oai(status = 503)]
    NotReady(Json<Readiness>),
}

#[derive(ApiResponse)]
pub enum MetricsResponse {
    /// Prometheus text exposition format 0.0.4.
    #[oai(
        status = 200,
        content_type = "text/plain; version=0.0.4; charset=utf-8"
    )]
    Ok(PlainText<String>),
}

/// The operations of this module.
#[derive(Debug)]
pub struct OpsApi;

#[OpenApi(tag = "ApiTags::Ops")]
impl OpsApi {
    /// Liveness: the process is serving requests
    #[oai(path = "/health/live", method = "get", operation_id = "live")]
    async fn live(&self) -> PlainText<&'static str> {
        PlainText("ok")
    }

    /// Readiness: database, NATS with JetStream, background workers, not shutting down
    ///
    /// 200 when the database answers and is migrated, NATS answers with JetStream (when the
    /// saga machinery runs in this process), every background worker is up and the process was
    /// not told to stop; else 503. The body names each check; a failed one says what failed,
    /// never an internal error text. While the service is still starting it answers 503 naming
    /// the dependency it waits for (`database`, `nats`).
    #[oai(path = "/health/ready", method = "get", operation_id = "ready")]
    async fn ready(&self, state: Data<&AppState>) -> ReadyResponse {
        let database = match crate::store::migrations_applied(&state.pool).await {
            Ok(true) => Check {
                name: "database".into(),
                ok: true,
                detail: None,
            },
            Ok(false) => Check {
                name: "database".into(),
                ok: false,
                detail: Some("migrations pending: run `order-service migrate`".into()),
            },
            Err(e) => {
                // the cause is for the logs, not for whoever probes
                tracing::warn!(
                    error = format!("{e:#}"),
                    "readiness: the database does not answer"
                );
                Check {
                    name: "database".into(),
                    ok: false,
                    detail: Some("the database does not answer".into()),
                }
            }
        };
        let mut checks = vec![database];
        if let Some(nats) = &state.nats {
            checks.push(nats_check(nats).await);
        }
        checks.push(workers(&state.supervisor.statuses()));
        checks.extend(shutdown(&state.lifecycle));
        let ready = checks.iter().all(|c| c.ok);
        let report = Readiness { ready, checks };
        if ready {
            ReadyResponse::Ready(Json(report))
        } else {
            ReadyResponse::NotReady(Json(report))
        }
    }

    /// Prometheus metrics
    #[oai(path = "/metrics", method = "get", operation_id = "metrics")]
    async fn metrics(&self, state: Data<&AppState>) -> MetricsResponse {
        let pool_size = state.pool.size();
        state.metrics.store.pool_size.set(i64::from(pool_size));
        state
            .metrics
            .store
            .pool_idle
            .set(i64::try_from(state.pool.num_idle()).unwrap_or(0));
        // From the store, so it is right from the first scrape after a restart; a failed read
        // leaves the last value (the database's own alerts say why).
        match order_projections::queries::sagas_needing_attention(&state.pool).await {
            Ok(parked) => state.metrics.sagas.needs_attention.set(parked),
            Err(e) => tracing::warn!(error = %e, "could not count the sagas needing attention"),
        }
        if let Some(nats) = &state.nats {
            let replies = crate::workers::replies::consumer(nats);
            state.metrics.nats.sample(nats, &[replies]).await;
        }
        MetricsResponse::Ok(PlainText(state.metrics.render()))
    }
}

/// Readiness while `serve` is still starting: what start-up last reported per dependency,
/// then, once every dependency answered, a `startup` check for the rest of the build. Never
/// ready.
pub fn while_starting(lifecycle: &Lifecycle) -> ReadyResponse {
    let mut checks: Vec<Check> = lifecycle
        .startup_checks()
        .into_iter()
        .map(|c| Check {
            name: c.name.into(),
            ok: c.ok,
            detail: c.detail,
        })
        .collect();
    if checks.iter().all(|c| c.ok) {
        checks.push(Check {
            name: "startup".into(),
            ok: false,
            detail: Some("starting".into()),
        });
    }
    checks.extend(shutdown(lifecycle));
    ReadyResponse::NotReady(Json(Readiness {
        ready: false,
        checks,
    }))
}

/// The `shutdown` check, failed, once the process was told to stop (so load balancers take it
/// out of rotation while it still serves); absent before.
fn shutdown(lifecycle: &Lifecycle) -> Option<Check> {
    lifecycle.is_stopping().then(|| Check {
        name: "shutdown".into(),
        ok: false,
        detail: Some("shutting down".into()),
    })
}

/// How long the NATS check waits for JetStream's answer.
const NATS_CHECK_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);

/// The `nats` check: connected, and JetStream describes the replies stream (the one the reply
/// consumer reads; a request the service's NATS user may make) within [`NATS_CHECK_TIMEOUT`].
async fn nats_check(nats: &crate::nats::Nats) -> Check {
    let failed = |detail: &str| Check {
        name: "nats".into(),
        ok: false,
        detail: Some(detail.into()),
    };
    if nats.client.connection_state() != async_nats::connection::State::Connected {
        return failed("not connected to NATS");
    }
    let replies = nats.stream_name(crate::nats::SAGA_REPLIES);
    match tokio::time::timeout(NATS_CHECK_TIMEOUT, nats.js.get_stream(&replies)).await {
        Ok(Ok(_)) => Check {
            name: "nats".into(),
            ok: true,
            detail: None,
        },
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "readiness: JetStream did not describe the replies stream");
            failed("JetStream does not answer")
        }
        Err(_) => failed("JetStream does not answer"),
    }
}

/// The `workers` check: ok while every supervised worker runs (or finished its work); the
/// detail names each worker, and why a down one failed.
fn workers(statuses: &[WorkerStatus]) -> Check {
    let (healthy, down): (Vec<_>, Vec<_>) = statuses.iter().partition(|w| w.healthy());
    let mut parts = Vec::new();
    if !down.is_empty() {
        let down: Vec<String> = down
            .iter()
            .map(|w| match &w.last_failure {
                Some(failure) => format!("{} ({failure})", w.name),
                None => w.name.clone(),
            })
            .collect();
        parts.push(format!("down, restarting: {}", down.join(", ")));
    }
    if !healthy.is_empty() {
        let up: Vec<&str> = healthy.iter().map(|w| w.name.as_str()).collect();
        parts.push(format!("up: {}", up.join(", ")));
    }
    Check {
        name: "workers".into(),
        ok: down.is_empty(),
        detail: (!parts.is_empty()).then(|| parts.join("; ")),
    }
}
