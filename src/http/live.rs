//! Live feeds over HTTP (DESIGN §9): `GET /v1/orders/{id}/live` (one order, for whoever may
//! read it) and `GET /v1/stores/{id}/live` (a store's orders, for its staff, analysts,
//! services and admins), as Server-Sent Events or a WebSocket. What the messages are, and why
//! none is ever missed, is [`crate::live`].
//!
//! * **SSE** (any request that accepts `text/event-stream`): `event: snapshot` or
//!   `event: event`, `id:` what to resume with, `data:` JSON; a comment every 15 s keeps
//!   proxies from closing an idle stream.
//! * **WebSocket** (an upgrade request): text frames `{"type", "id", "data"}`; a ping every
//!   15 s. Whatever the client sends is ignored, except a close.
//! * **Resume** with the last id received: `Last-Event-ID` (what `EventSource` sends when it
//!   reconnects) or `?after=<id>`. An order feed's ids are versions: without one it starts
//!   with a snapshot of the order. A store feed's ids are log positions: without one it starts
//!   now.
//! * **Tokens** as everywhere (`Authorization: Bearer`), or as `?access_token=` for the
//!   browser's `EventSource` and `WebSocket`, which cannot send headers (the query string is
//!   never logged). A feed ends when the token that opened it expires: the client reconnects
//!   with a fresh one and resumes. A staff or merchant caller's feed also ends as soon as a
//!   change of memberships leaves it without access to what it follows (a member removed).
//! * A resume id past the order's version (another order's, or from before a restore) is not
//!   one of its messages: the feed starts with the snapshot instead. A store feed resumes only
//!   from a message of the last `APP__LIVE__STORE_RESUME_MAX_AGE_SECS` (default an hour): an
//!   older or unknown id gets 410 `resume-too-old` (read the order list, open from now).
//! * **Bounded.** A caller holds at most `APP__LIMITS__FEEDS_PER_SUBJECT` feeds open at once
//!   (429 `too-many-feeds` beyond); a WebSocket client's frames and messages are at most
//!   [`MAX_CLIENT_MESSAGE`] bytes (the feed sends, it does not listen): a larger one closes it.
//!
//! These two routes sit beside the OpenAPI service rather than in it (OpenAPI describes
//! neither WebSocket nor one path that answers both); errors are the same problem documents.

use std::time::Duration;

use futures::future::BoxFuture;
use futures::{FutureExt as _, SinkExt as _, StreamExt as _};
use order_projections::queries as read;
use poem::http::header;
use poem::web::sse::{Event, SSE};
use poem::web::websocket::{Message, WebSocket, WebSocketStream};
use poem::web::{Data, Path};
use poem::{handler, IntoResponse, Request, Response};
use poem_openapi::types::ToJSON as _;
use tokio::sync::mpsc;
use tokio::time::Instant;
use uuid::Uuid;

use super::auth::{AuthError, Principal};
use super::catalog::visible_store;
use super::consistency::fresh_order;
use super::problem::ApiError;
use super::queries::detail_view;
use super::security::{authenticate, can_see_order_of, sees_every_order, with_memberships};
use super::throttle::FeedPermit;
use crate::live::{parse_store_feed_id, LiveMessage, OrderStart, ResumeTooOld, KEEP_ALIVE};
use crate::state::AppState;

/// `GET /v1/orders/{id}/live`
#[handler]
pub async fn order_live(
    req: &Request,
    Path(id): Path<String>,
    ws: Option<WebSocket>,
    Data(state): Data<&AppState>,
) -> poem::Result<Response> {
    let open = async {
        let (p, order_id, transport, permit) = opening(req, state, &id, ws).await?;
        let after = resume_id(req)
            .map(|raw| {
                raw.trim().parse::<u64>().map_err(|_| {
                    invalid(
                        "the resume id (`Last-Event-ID` or `after`) of an order feed is a \
                         version: a non-negative integer",
                    )
                })
            })
            .transpose()?;
        let resumable = match after {
            Some(after) => {
                let logged = read::logged_order(&state.pool, order_id)
                    .await
                    .map_err(db)?
                    .filter(|o| can_see_order_of(&p, &o.customer_id, o.store_id))
                    .ok_or_else(ApiError::order_not_found)?;
                // an id past the order's version is not one of its messages (another order's,
                // or from before a restore): the client gets the order as it stands instead
                i64::try_from(after).ok().filter(|&a| a <= logged.version)
            }
            None => None,
        };
        // whose and where the order is, for a feed that ends when the caller loses access
        let held = if p.reads_memberships() {
            read::logged_order(&state.pool, order_id)
                .await
                .map_err(db)?
                .map(|o| (o.customer_id, o.store_id))
        } else {
            None
        };
        let start = if let Some(after) = resumable {
            OrderStart::After(after)
        } else {
            let order = fresh_order(state, &p, order_id, None).await?;
            let version = order.summary.version;
            let detail = detail_view(order)?
                .to_json()
                .ok_or_else(|| ApiError::Internal(anyhow::anyhow!("an order's detail as JSON")))?;
            OrderStart::Snapshot { version, detail }
        };
        let messages = state
            .live
            .order(order_id, start)
            .await
            .map_err(ApiError::Unavailable)?;
        let end = match held {
            Some((customer, store)) => {
                ending(state, &p, move |p| can_see_order_of(p, &customer, store))
            }
            None => ending(state, &p, |_| true),
        };
        Ok::<_, ApiError>(respond(transport, messages, end, permit))
    };
    Ok(open.await?)
}

/// `GET /v1/stores/{id}/live`
#[handler]
pub async fn store_live(
    req: &Request,
    Path(id): Path<String>,
    ws: Option<WebSocket>,
    Data(state): Data<&AppState>,
) -> poem::Result<Response> {
    let open = async {
        let (p, store_id, transport, permit) = opening(req, state, &id, ws).await?;
        // a store the caller may not see (another merchant's) is 404, as everywhere
        visible_store(state, &p, store_id).await?;
        let allowed = move |p: &Principal| sees_every_order(p) || p.can_access_store(store_id);
        if !allowed(&p) {
            return Err(ApiError::forbidden(
                "a store's live feed is for its staff, analysts, services and admins",
            ));
        }
        let after = resume_id(req)
            .map(|raw| {
                parse_store_feed_id(&raw).ok_or_else(|| {
                    invalid(
                        "the resume id (`Last-Event-ID` or `after`) of a store feed is the id \
                         of one of its messages (`<digits>.<digits>`)",
                    )
                })
            })
            .transpose()?;
        let messages = state.live.store(store_id, after).await.map_err(|e| {
            if let Some(too_old) = e.downcast_ref::<ResumeTooOld>() {
                ApiError::Gone {
                    slug: "resume-too-old",
                    detail: too_old.to_string(),
                }
            } else {
                ApiError::Unavailable(e)
            }
        })?;
        let end = ending(state, &p, allowed);
        Ok::<_, ApiError>(respond(transport, messages, end, permit))
    };
    Ok(open.await?)
}

/// When a feed ends: its token expires, or, for a caller whose memberships count (staff and
/// merchants), a change of memberships leaves it without access (`allowed` no longer holds).
fn ending(
    state: &AppState,
    p: &Principal,
    allowed: impl Fn(&Principal) -> bool + Send + 'static,
) -> BoxFuture<'static, ()> {
    let expires = tokio::time::sleep_until(expiry(p));
    if !p.reads_memberships() {
        return expires.boxed();
    }
    let (state, mut p) = (state.clone(), p.clone());
    // subscribed now, checked once at once: a removal since the caller was authenticated is
    // not missed
    let mut changes = state.catalog.members().changes();
    changes.mark_changed();
    let revoked = async move {
        while changes.changed().await.is_ok() {
            // a failed read keeps the feed: the next change, or the token's expiry, decides
            if with_memberships(&state, &mut p).await.is_ok() && !allowed(&p) {
                tracing::info!(subject = %p.subject, "a live feed ends: its caller lost access");
                return;
            }
        }
        std::future::pending::<()>().await;
    };
    async move {
        tokio::select! {
            () = expires => {},
            () = revoked => {},
        }
    }
    .boxed()
}

/// What every feed checks first: the caller, the id in the path, the transport asked for,
/// and a place among the caller's open feeds.
async fn opening(
    req: &Request,
    state: &AppState,
    id: &str,
    ws: Option<WebSocket>,
) -> Result<(Principal, Uuid, Transport, FeedPermit), ApiError> {
    let p = principal(req, state).await?;
    let (id, transport) = (uuid_of(id)?, transport(req, ws)?);
    let permit = state.throttle.open_feed(&p.subject)?;
    Ok((p, id, transport, permit))
}

/// The largest frame or message a feed's WebSocket client may send: it has nothing to say
/// beyond a close or a pong.
pub const MAX_CLIENT_MESSAGE: usize = 4 * 1024;

/// How the client wants the feed.
enum Transport {
    Sse,
    WebSocket(WebSocket),
}

/// A WebSocket for an upgrade request; SSE for a request that accepts event streams
/// (`text/event-stream`, `text/*`, `*/*`, or no `Accept` at all); 406 otherwise.
fn transport(req: &Request, ws: Option<WebSocket>) -> Result<Transport, ApiError> {
    if let Some(ws) = ws {
        let config = poem::web::websocket::WebSocketConfig::default()
            .max_message_size(Some(MAX_CLIENT_MESSAGE))
            .max_frame_size(Some(MAX_CLIENT_MESSAGE));
        return Ok(Transport::WebSocket(ws.config(config)));
    }
    let accepts = req.header(header::ACCEPT).is_none_or(|accept| {
        accept.split(',').any(|range| {
            let media = range.split(';').next().unwrap_or("").trim();
            matches!(media, "text/event-stream" | "text/*" | "*/*")
        })
    });
    if accepts {
        Ok(Transport::Sse)
    } else {
        Err(ApiError::NotAcceptable {
            detail: "a live feed is a stream of server-sent events (`Accept: text/event-stream`) \
                     or a WebSocket (an upgrade request)"
                .into(),
        })
    }
}

/// The feed as the client asked for it, until `end`; `permit` is held until the feed ends.
fn respond(
    transport: Transport,
    messages: mpsc::Receiver<LiveMessage>,
    end: BoxFuture<'static, ()>,
    permit: FeedPermit,
) -> Response {
    match transport {
        Transport::Sse => {
            let held = (messages, permit);
            let events = futures::stream::unfold(held, |(mut messages, permit)| async move {
                let m = messages.recv().await?;
                let event = Event::message(m.data.to_string())
                    .event_type(m.kind)
                    .id(m.id);
                Some((event, (messages, permit)))
            })
            // the feed ends with the token (the client reconnects with a fresh one) or the
            // caller's access
            .take_until(end);
            let mut response = SSE::new(events).keep_alive(KEEP_ALIVE).into_response();
            response.headers_mut().insert(
                header::CACHE_CONTROL,
                header::HeaderValue::from_static("no-store"),
            );
            response
        }
        Transport::WebSocket(ws) => {
            // a task of its own (what `on_upgrade` runs must be `Sync`, `end` is not), ended
            // with the socket
            let mut end = EndTask(tokio::spawn(end));
            ws.on_upgrade(move |socket| async move {
                pump(socket, messages, &mut end.0).await;
                drop(permit);
            })
            .into_response()
        }
    }
}

/// When the caller's token expires, as a deadline for its feed.
fn expiry(p: &Principal) -> Instant {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs();
    // far enough for "never" without overflowing the clock
    let left = p.expires_at.saturating_sub(now).min(10 * 365 * 24 * 3600);
    Instant::now() + Duration::from_secs(left)
}

/// How long a frame may wait for a client that stopped reading before the socket is given up.
const SEND_TIMEOUT: Duration = Duration::from_secs(30);

/// Sends the feed's messages as text frames until either side ends, the token expires, or the
/// client stops reading for [`SEND_TIMEOUT`]; pings while idle. A feed that ends from the
/// service's side (stopping, the token expired, the database failed) closes the socket, so the
/// client reconnects and resumes.
async fn pump(
    socket: WebSocketStream,
    mut messages: mpsc::Receiver<LiveMessage>,
    end: &mut tokio::task::JoinHandle<()>,
) {
    let (mut sink, mut incoming) = socket.split();
    let mut ping = tokio::time::interval(KEEP_ALIVE);
    ping.tick().await;
    loop {
        let frame = tokio::select! {
            message = messages.recv() => match message {
                Some(m) => {
                    let frame = serde_json::json!({"type": m.kind, "id": m.id, "data": m.data});
                    Message::Text(frame.to_string())
                }
                None => break,
            },
            frame = incoming.next() => match frame {
                None | Some(Err(_) | Ok(Message::Close(_))) => return,
                Some(Ok(_)) => continue,
            },
            _ = ping.tick() => Message::Ping(Vec::new()),
            _ = &mut *end => break,
        };
        if !matches!(
            tokio::time::timeout(SEND_TIMEOUT, sink.send(frame)).await,
            Ok(Ok(()))
        ) {
            return;
        }
    }
    let _ = tokio::time::timeout(SEND_TIMEOUT, sink.send(Message::Close(None))).await;
}

/// The task that says when a WebSocket feed ends; stopped with the feed (or when the upgrade
/// never happens).
struct EndTask(tokio::task::JoinHandle<()>);

impl Drop for EndTask {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// The caller, from `Authorization: Bearer` or, failing that, `?access_token=`.
async fn principal(req: &Request, state: &AppState) -> Result<Principal, ApiError> {
    let token = match req.header(header::AUTHORIZATION) {
        Some(value) => {
            let (scheme, token) = value
                .split_once(' ')
                .ok_or(ApiError::Unauthorized(AuthError::Malformed))?;
            if !scheme.eq_ignore_ascii_case("bearer") {
                return Err(ApiError::Unauthorized(AuthError::Malformed));
            }
            token.trim().to_owned()
        }
        None => {
            query_param(req, "access_token").ok_or(ApiError::Unauthorized(AuthError::Missing))?
        }
    };
    authenticate(state, &token).await
}

/// The id to resume after: `Last-Event-ID`, else `?after=`.
fn resume_id(req: &Request) -> Option<String> {
    req.header("last-event-id")
        .map(str::to_owned)
        .or_else(|| query_param(req, "after"))
}

fn query_param(req: &Request, name: &str) -> Option<String> {
    url::form_urlencoded::parse(req.uri().query()?.as_bytes())
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

fn uuid_of(raw: &str) -> Result<Uuid, ApiError> {
    raw.parse()
        .map_err(|_| invalid(&format!("path `id`: `{raw}` is not a UUID")))
}

fn invalid(detail: &str) -> ApiError {
    ApiError::BadRequest {
        slug: "invalid-parameter",
        detail: detail.to_owned(),
    }
}

fn db(e: sqlx::Error) -> ApiError {
    ApiError::infra(anyhow::Error::new(e).context("reading the event store"))
}
