//! Request body size limit. poem's `SizeLimit` refuses every request without `Content-Length`
//! (411), GETs included; this one refuses only bodies that are too large, whether announced by
//! `Content-Length` or streamed without one (chunked, HTTP/2): those are read up to the limit,
//! then refused.

use poem::error::SizedLimitError;
use poem::http::header;
use poem::{Body, Endpoint, Request};
use tokio::io::AsyncReadExt as _;

/// Refuses bodies over `max` bytes with 413 (rendered as a problem by the outer layer).
#[derive(Debug)]
pub struct BodyLimit<E> {
    inner: E,
    max: usize,
}

impl<E> BodyLimit<E> {
    pub fn new(inner: E, max: usize) -> Self {
        Self { inner, max }
    }
}

impl<E: Endpoint> Endpoint for BodyLimit<E> {
    type Output = E::Output;

    async fn call(&self, mut req: Request) -> poem::Result<Self::Output> {
        let declared = req
            .header(header::CONTENT_LENGTH)
            .and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|len| len > self.max as u64) {
            return Err(SizedLimitError::PayloadTooLarge.into());
        }
        if declared.is_none() {
            let mut buf = Vec::new();
            let limit = self.max as u64 + 1;
            req.take_body()
                .into_async_read()
                .take(limit)
                .read_to_end(&mut buf)
                .await
                .map_err(|e| {
                    poem::Error::from_string(e.to_string(), poem::http::StatusCode::BAD_REQUEST)
                })?;
            if buf.len() > self.max {
                return Err(SizedLimitError::PayloadTooLarge.into());
            }
            req.set_body(Body::from_vec(buf));
        }
        self.inner.call(req).await
    }
}
