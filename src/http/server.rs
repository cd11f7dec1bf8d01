//! The HTTP server loop: the poem endpoint served by hyper with the bounds a hostile client
//! needs (DESIGN §10), which poem's own `Server` does not expose.
//!
//! **Guarantees.**
//! * **Header timeout.** An HTTP/1 connection must deliver each request's head (request line
//!   and headers) within `header_timeout` from the moment the server waits for it, keep-alive
//!   time included; one that trickles its headers (slowloris) is closed. Request heads over
//!   [`MAX_HEADER_BYTES`] are answered 431.
//! * **Idle timeout.** A connection on which nothing is read or written for `idle_timeout` is
//!   closed, whatever its protocol: one that connects and says nothing, stalls inside the
//!   HTTP/2 preface, or holds an idle HTTP/2 session. Streams stay open: SSE comments and
//!   WebSocket pings every 15 s are traffic (the idle timeout must exceed that).
//! * **Bounded connections.** At most `max_connections` at once; beyond, new connections wait in
//!   the kernel's backlog until one closes.
//! * **Graceful stop.** When `shutdown` resolves, nothing more is accepted; every open
//!   connection finishes its request in flight and closes, for at most `grace`; then what is
//!   left is cut, before the caller closes the pool under it.
//!
//! The body's own timeout and size are the endpoint's (see `limits`): hyper hands the body over
//! as it streams.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use anyhow::Context as _;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use poem::web::{LocalAddr, RemoteAddr};
use poem::{Addr, Endpoint, EndpointExt as _};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

/// Largest request head (request line and headers) accepted; browsers send a few KiB.
pub const MAX_HEADER_BYTES: usize = 16 * 1024;

/// How the server treats slow, idle and numerous clients.
#[derive(Debug, Clone, Copy)]
pub struct ServerLimits {
    /// Longest wait for an HTTP/1 request's head, keep-alive time included.
    pub header_timeout: Duration,
    /// Longest time a connection may carry nothing at all.
    pub idle_timeout: Duration,
    /// Connections served at once.
    pub max_connections: usize,
    /// Longest wait for the requests in flight when stopping.
    pub grace: Duration,
}

/// The body type poem's responses convert into.
type ResponseBody = http_body_util::combinators::BoxBody<bytes::Bytes, std::io::Error>;

/// Serves `endpoint` on `listener` until `shutdown` resolves, then stops gracefully.
pub async fn serve<E>(
    listener: TcpListener,
    endpoint: E,
    limits: ServerLimits,
    shutdown: impl Future<Output = ()> + Send,
) -> anyhow::Result<()>
where
    E: Endpoint + 'static,
{
    let endpoint = Arc::new(endpoint.map_to_response());
    let local = listener.local_addr().context("the listener's address")?;
    let graceful = GracefulShutdown::new();
    let slots = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let mut connections = JoinSet::new();
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .max_buf_size(MAX_HEADER_BYTES.max(8 * 1024));
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_header_list_size(u32::try_from(MAX_HEADER_BYTES).unwrap_or(u32::MAX));
    tokio::pin!(shutdown);
    loop {
        let accepted = tokio::select! {
            slot = Arc::clone(&slots).acquire_owned() => match slot {
                Ok(slot) => tokio::select! {
                    accepted = listener.accept() => accepted.map(|a| (a, slot)),
                    () = &mut shutdown => break,
                },
                Err(_) => break, // the semaphore is never closed
            },
            () = &mut shutdown => break,
        };
        let ((stream, remote), slot) = match accepted {
            Ok(accepted) => accepted,
            Err(e) => {
                // Out of file descriptors and the like: pass, and accept again.
                tracing::warn!(error = %e, "accepting a connection failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        // finished connections' results, so the set holds only open ones
        while connections.try_join_next().is_some() {}
        // Responses are small and interactive: do not wait to fill packets.
        let _ = stream.set_nodelay(true);
        connections.spawn(serve_connection(
            &builder,
            &graceful,
            Arc::clone(&endpoint),
            (stream, local, remote),
            limits.idle_timeout,
            slot,
        ));
    }
    drop(listener);
    if tokio::time::timeout(limits.grace, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!(
            grace = ?limits.grace,
            open = connections.len(),
            "connections still open after the grace period; cut"
        );
    }
    connections.shutdown().await;
    Ok(())
}

/// One connection's task: `endpoint` over hyper, closed when idle for `idle_timeout`, holding
/// its `slot` among the connections until it ends.
fn serve_connection<E>(
    builder: &auto::Builder<TokioExecutor>,
    graceful: &GracefulShutdown,
    endpoint: Arc<E>,
    (stream, local, remote): (tokio::net::TcpStream, SocketAddr, SocketAddr),
    idle_timeout: Duration,
    slot: tokio::sync::OwnedSemaphorePermit,
) -> impl Future<Output = ()> + Send + 'static
where
    E: Endpoint<Output = poem::Response> + 'static,
{
    let activity = Arc::new(Activity::default());
    let io = Watched {
        inner: stream,
        activity: Arc::clone(&activity),
    };
    let service = hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
        let endpoint = Arc::clone(&endpoint);
        async move {
            let req = poem::Request::from((
                req,
                LocalAddr(Addr::SocketAddr(local)),
                RemoteAddr(Addr::SocketAddr(remote)),
                poem::http::uri::Scheme::HTTP,
            ));
            let response: hyper::Response<ResponseBody> = endpoint.get_response(req).await.into();
            Ok::<_, std::convert::Infallible>(response)
        }
    });
    let connection = graceful.watch(
        builder
            .serve_connection_with_upgrades(TokioIo::new(io), service)
            .into_owned(),
    );
    async move {
        tokio::select! {
            done = connection => if let Err(e) = done {
                tracing::debug!(remote = %remote, error = %e, "connection ended with an error");
            },
            () = activity.idle_for(idle_timeout) => {
                tracing::debug!(remote = %remote, "idle connection closed");
            }
        }
        drop(slot);
    }
}

/// Binds `addr` (port 0 picks a free port).
pub async fn bind(addr: SocketAddr) -> anyhow::Result<TcpListener> {
    TcpListener::bind(addr)
        .await
        .with_context(|| format!("binding {addr}"))
}

/// When a connection last carried bytes, in milliseconds since it opened.
#[derive(Debug)]
struct Activity {
    opened: tokio::time::Instant,
    last_ms: AtomicU64,
}

impl Default for Activity {
    fn default() -> Self {
        Self {
            opened: tokio::time::Instant::now(),
            last_ms: AtomicU64::new(0),
        }
    }
}

impl Activity {
    fn touch(&self) {
        let now = u64::try_from(self.opened.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last_ms.store(now, Ordering::Relaxed);
    }

    /// Resolves once the connection has carried nothing for `idle`.
    async fn idle_for(&self, idle: Duration) {
        loop {
            let last = self.opened + Duration::from_millis(self.last_ms.load(Ordering::Relaxed));
            if last.elapsed() >= idle {
                return;
            }
            tokio::time::sleep_until(last + idle).await;
        }
    }
}

/// A socket that notes every read and write in its [`Activity`].
struct Watched<T> {
    inner: T,
    activity: Arc<Activity>,
}

impl<T: AsyncRead + Unpin> AsyncRead for Watched<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.activity.touch();
        }
        polled
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Watched<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write(cx, buf);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
        polled
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
        polled
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}
