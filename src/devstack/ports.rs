//! Loopback ports for the servers: a fresh one per start, and the TCP probe readiness checks use.
//!
//! Both servers listen on `127.0.0.1` only, on a port picked at every start (never the system
//! 5432 / 4222). Picking is racy by nature: the port is released before the server binds it, so
//! callers retry with a new one, at most [`PORT_ATTEMPTS`] times, when the server reports
//! "address already in use".

use std::time::Duration;

use anyhow::{Context, Result};
use tokio::{net::TcpStream, time::timeout};

/// How long one readiness probe may wait for a connection (or a greeting) before it counts as
/// "not yet".
pub(super) const PROBE_TIMEOUT: Duration = Duration::from_secs(1);
/// A freshly released port can be taken by someone else before the server binds it; retry with a
/// new one a couple of times before giving up.
pub(super) const PORT_ATTEMPTS: u32 = 3;

/// A port that was free a moment ago. The listener is released before the server binds it, so
/// another process may win the race; callers retry on "address already in use".
pub(super) fn free_port() -> Result<u16> {
    let listener = std::net::TcpListener::bind(("127.0.0.1", 0))
        .context("binding 127.0.0.1:0 to find a free port")?;
    Ok(listener.local_addr()?.port())
}

/// A TCP connection to `127.0.0.1:port`, if one is accepted within [`PROBE_TIMEOUT`].
pub(super) async fn tcp_connect(port: u16) -> Option<TcpStream> {
    timeout(PROBE_TIMEOUT, TcpStream::connect(("127.0.0.1", port)))
        .await
        .ok()?
        .ok()
}
