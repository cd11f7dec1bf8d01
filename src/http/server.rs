//! The HTTP server loop: the poem endpoint served by hyper with the timeouts a hostile client
//! needs (DESIGN §10), which poem's own `Server` does not expose.
//!
//! **Guarantees.**
//! * **Header timeout.** A connection must deliver each request's head (request line and
//!   headers) within `header_timeout` from the moment the server waits for it, idle keep-alive
//!   time included; one that trickles its headers (slowloris) or idles is closed. Streams (SSE,
//!   WebSocket) are not affected: no head is awaited while a response streams.
//! * **Bounded heads.** Request heads over [`MAX_HEADER_BYTES`] are answered 431 and closed.
//! * **Graceful stop.** When `shutdown` resolves, no connection is accepted any more, every open
//!   one finishes its request in flight and closes, for at most `grace`; then the rest are cut.
//!
//! The body's own timeout and size are the endpoint's (see `limits`): hyper hands the body over
//! as it streams.

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context as _;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use poem::web::{LocalAddr, RemoteAddr};
use poem::{Addr, Endpoint, EndpointExt as _};
use tokio::net::TcpListener;

/// Largest request head (request line and headers) accepted; browsers send a few KiB.
pub const MAX_HEADER_BYTES: usize = 16 * 1024;

/// How the server treats slow and idle clients.
#[derive(Debug, Clone, Copy)]
pub struct ServerTimeouts {
    /// Longest wait for a request's head, including a keep-alive connection's idle time.
    pub header_timeout: Duration,
    /// Longest wait for the requests in flight when stopping.
    pub grace: Duration,
}

/// The body type poem's responses convert into.
type ResponseBody = http_body_util::combinators::BoxBody<bytes::Bytes, std::io::Error>;

/// Serves `endpoint` on `listener` until `shutdown` resolves, then stops gracefully.
pub async fn serve<E>(
    listener: TcpListener,
    endpoint: E,
    timeouts: ServerTimeouts,
    shutdown: impl Future<Output = ()> + Send,
) -> anyhow::Result<()>
where
    E: Endpoint + 'static,
{
    let endpoint = std::sync::Arc::new(endpoint.map_to_response());
    let local = listener.local_addr().context("the listener's address")?;
    let graceful = GracefulShutdown::new();
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(timeouts.header_timeout)
        .max_buf_size(MAX_HEADER_BYTES.max(8 * 1024));
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_header_list_size(u32::try_from(MAX_HEADER_BYTES).unwrap_or(u32::MAX))
        .keep_alive_interval(Some(timeouts.header_timeout))
        .keep_alive_timeout(timeouts.header_timeout);
    tokio::pin!(shutdown);
    loop {
        let (stream, remote) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of file descriptors and the like: pass, and accept again.
                    tracing::warn!(error = %e, "accepting a connection failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        // Responses are small and interactive: do not wait to fill packets.
        let _ = stream.set_nodelay(true);
        let service = hyper::service::service_fn({
            let endpoint = std::sync::Arc::clone(&endpoint);
            move |req: hyper::Request<hyper::body::Incoming>| {
                let endpoint = std::sync::Arc::clone(&endpoint);
                async move {
                    let req = poem::Request::from((
                        req,
                        LocalAddr(Addr::SocketAddr(local)),
                        RemoteAddr(Addr::SocketAddr(remote)),
                        poem::http::uri::Scheme::HTTP,
                    ));
                    let response: hyper::Response<ResponseBody> =
                        endpoint.get_response(req).await.into();
                    Ok::<_, std::convert::Infallible>(response)
                }
            }
        });
        let connection = builder
            .serve_connection_with_upgrades(TokioIo::new(stream), service)
            .into_owned();
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(remote = %remote, error = %e, "connection ended with an error");
            }
        });
    }
    drop(listener);
    if tokio::time::timeout(timeouts.grace, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!(grace = ?timeouts.grace, "connections still open after the grace period; cut");
    }
    Ok(())
}

/// Binds `addr` (port 0 picks a free port).
pub async fn bind(addr: SocketAddr) -> anyhow::Result<TcpListener> {
    TcpListener::bind(addr)
        .await
        .with_context(|| format!("binding {addr}"))
}
