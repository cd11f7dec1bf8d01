//! Read-your-writes for one order (DESIGN §6): the read model is eventually consistent, so a
//! read of one order waits, up to [`READ_WAIT`], until the read model holds the version the
//! client asked for (`min_version`), or without it the order's latest version in the event
//! store when the request arrived.
//!
//! * An explicit `min_version` not reached in time answers 503 `projection-behind`; one beyond
//!   the order's version in the event store, which no wait could reach, answers 400 at once.
//! * The implicit one serves the row as it stands (its version says which that is).
//! * An order the caller may not see is a 404, decided before any wait, from the read model or,
//!   when it is not projected yet, from the event store.

use std::time::{Duration, Instant};

use order_projections::queries::{self as read, OrderDetail};
use uuid::Uuid;

use super::auth::Principal;
use super::problem::ApiError;
use super::reading::db;
use super::security::can_see_order_of;
use crate::state::AppState;

/// Longest a read waits for the read model to reach the wanted version.
pub const READ_WAIT: Duration = Duration::from_secs(1);
/// Pause between two looks at the read model while waiting.
const READ_POLL: Duration = Duration::from_millis(15);

/// The order as the read model holds it once it has reached `min_version` (or, without it,
/// the order's latest version in the event store when the request arrived), waiting up to
/// [`READ_WAIT`]. 404 when the order does not exist or `p` may not see it.
#[tracing::instrument(skip_all, fields(order_id = %id))]
pub(crate) async fn fresh_order(
    state: &AppState,
    p: &Principal,
    id: Uuid,
    min_version: Option<u64>,
) -> Result<OrderDetail, ApiError> {
    let deadline = Instant::now() + READ_WAIT;
    let mut wanted = min_version.map(|v| i64::try_from(v).unwrap_or(i64::MAX));
    let mut owner_checked = false;
    loop {
        let at = if let Some(order) = read::order_detail(&state.pool, id).await.map_err(db)? {
            if !can_see_order_of(p, &order.summary.customer_id, order.summary.store_id) {
                return Err(ApiError::order_not_found());
            }
            beyond_the_log(id, min_version, order.log_version)?;
            let target = *wanted.get_or_insert(order.log_version);
            if order.summary.version >= target {
                return Ok(order);
            }
            if min_version.is_none() && Instant::now() >= deadline {
                tracing::warn!(
                    at = order.summary.version,
                    wanted = target,
                    "read model behind; serving the version it has"
                );
                return Ok(order);
            }
            order.summary.version
        } else {
            // Not projected yet: does it exist at all, and may the caller see it? The event
            // store knows, without waiting.
            if !owner_checked {
                let logged = read::logged_order(&state.pool, id)
                    .await
                    .map_err(db)?
                    .ok_or_else(ApiError::order_not_found)?;
                if !can_see_order_of(p, &logged.customer_id, logged.store_id) {
                    return Err(ApiError::order_not_found());
                }
                beyond_the_log(id, min_version, logged.version)?;
                wanted.get_or_insert(logged.version);
                owner_checked = true;
            }
            0
        };
        if Instant::now() >= deadline {
            return Err(ApiError::ProjectionBehind {
                order_id: id,
                at: at.unsigned_abs(),
                wanted: wanted.unwrap_or(0).unsigned_abs(),
            });
        }
        tokio::time::sleep(READ_POLL).await;
    }
}

/// 400 when `min_version` asks for a version the order does not have in the event store: the
/// read model can never reach it, so waiting would only hold the request (and poll the
/// database) for nothing.
fn beyond_the_log(id: Uuid, min_version: Option<u64>, logged: i64) -> Result<(), ApiError> {
    match min_version {
        Some(asked) if i64::try_from(asked).map_or(true, |asked| asked > logged) => {
            Err(ApiError::Invalid {
                slug: "min-version-beyond-order",
                detail: format!(
                    "min_version {asked} is beyond order {id}'s version {logged}: no read can \
                     reach it"
                ),
                errors: Vec::new(),
            })
        }
        _ => Ok(()),
    }
}
