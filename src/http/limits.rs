//! Request bodies: a size limit and a read timeout, for every request.
//!
//! * **Size.** poem's `SizeLimit` refuses every request without `Content-Length` (411), GETs
//!   included; this one refuses only bodies that are too large, whether announced by
//!   `Content-Length` or streamed without one (chunked, HTTP/2): those are read up to the
//!   limit, then refused with 413.
//! * **Refused, yet heard out.** Many clients (Python's httpx and requests, curl without
//!   `Expect`) send the whole body before they read the answer; closing the connection on them
//!   mid-body resets it, and they report a connection error instead of the 413. So the rest of
//!   a refused body is read and dropped, up to [`DRAIN_MAX`] bytes and within the read timeout;
//!   only a body larger still is cut off unheard.
//! * **Time.** The whole body must arrive within the read timeout (408 otherwise): a client
//!   that trickles its body holds no handler, and at most one read buffer, for longer.

use std::time::Duration;

use poem::error::SizedLimitError;
use poem::http::{header, StatusCode};
use poem::{Body, Endpoint, Request};
use tokio::io::AsyncReadExt as _;

/// The most of a refused body that is read and dropped so its client hears the 413.
pub const DRAIN_MAX: u64 = 16 * 1024 * 1024;

/// Refuses bodies over `max` bytes with 413 and bodies slower than `timeout` with 408
/// (rendered as problems by the outer layer); hands the rest to `inner` in memory.
#[derive(Debug)]
pub struct BodyLimit<E> {
    inner: E,
    max: usize,
    timeout: Duration,
}

impl<E> BodyLimit<E> {
    pub fn new(inner: E, max: usize, timeout: Duration) -> Self {
        Self {
            inner,
            max,
            timeout,
        }
    }
}

impl<E: Endpoint> Endpoint for BodyLimit<E> {
    type Output = E::Output;

    async fn call(&self, mut req: Request) -> poem::Result<Self::Output> {
        let declared = req
            .header(header::CONTENT_LENGTH)
            .and_then(|v| v.parse::<u64>().ok());
        let max = self.max as u64;
        let expects_continue = req
            .header(header::EXPECT)
            .is_some_and(|v| v.eq_ignore_ascii_case("100-continue"));
        if declared.is_some_and(|len| len > DRAIN_MAX || (len > max && expects_continue)) {
            // too much to hear out, or a client that waits for our word before sending: refuse
            // at once (reading would have asked it to send what is thrown away)
            return Err(SizedLimitError::PayloadTooLarge.into());
        }
        // HTTP/1 without Content-Length or Transfer-Encoding has no body (RFC 9112 §6.3): most
        // GETs. Nothing to read, nothing to copy.
        let bodiless = declared == Some(0)
            || (declared.is_none()
                && req.version() < poem::http::Version::HTTP_2
                && req.header(header::TRANSFER_ENCODING).is_none());
        if bodiless {
            return self.inner.call(req).await;
        }
        let deadline = tokio::time::Instant::now() + self.timeout;
        let mut body = req.take_body().into_async_read();
        let expected = declared.unwrap_or(0).min(max);
        let mut buf = Vec::with_capacity(usize::try_from(expected).unwrap_or(0));
        let mut head = (&mut body).take(max + 1);
        within(deadline, head.read_to_end(&mut buf)).await?;
        if buf.len() as u64 > max || declared.is_some_and(|len| len > max) {
            let mut rest = (&mut body).take(DRAIN_MAX);
            let mut sink = tokio::io::sink();
            within(deadline, tokio::io::copy(&mut rest, &mut sink)).await?;
            return Err(SizedLimitError::PayloadTooLarge.into());
        }
        req.set_body(Body::from_vec(buf));
        self.inner.call(req).await
    }
}

/// Runs a body read to its end by `deadline`: 408 when it is late, 400 when the client broke
/// the stream.
async fn within<T>(
    deadline: tokio::time::Instant,
    read: impl std::future::Future<Output = std::io::Result<T>>,
) -> poem::Result<T> {
    match tokio::time::timeout_at(deadline, read).await {
        Ok(Ok(done)) => Ok(done),
        Ok(Err(e)) => Err(poem::Error::from_string(
            format!("reading the request body: {e}"),
            StatusCode::BAD_REQUEST,
        )),
        Err(_) => Err(poem::Error::from_status(StatusCode::REQUEST_TIMEOUT)),
    }
}
