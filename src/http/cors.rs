//! Cross-origin requests from browser clients: which other origins' pages may call the API
//! (`APP__HTTP__CORS_ORIGINS`).
//!
//! The service only *grants*: a request from an origin not listed is served as any other,
//! without `Access-Control-Allow-Origin`, and the browser keeps the answer from the page. So
//! the service's own pages (`/board`, `/track`, same origin) and non-browser clients are never
//! affected, whatever the list. A preflight (`OPTIONS` with `Access-Control-Request-Method`)
//! from a listed origin is answered here: the API's methods, the request headers it reads
//! (`Authorization`, `Content-Type`, `Idempotency-Key`, `If-Match`, `x-request-id`,
//! `Last-Event-ID`), cached for 10 minutes. Answers to a listed origin expose `ETag`,
//! `Location`, `Retry-After` and `x-request-id` to the page. No cookies are involved (the
//! API takes bearer tokens), so credentials are never allowed.

use std::sync::Arc;

use anyhow::bail;
use poem::http::{header, HeaderValue, Method, StatusCode};
use poem::{Endpoint, IntoResponse, Request, Response};

use crate::config::CorsOrigins;

const ALLOW_METHODS: &str = "GET, POST, PUT, PATCH, DELETE";
const ALLOW_HEADERS: &str =
    "authorization, content-type, accept, idempotency-key, if-match, x-request-id, last-event-id";
const EXPOSE_HEADERS: &str = "etag, location, retry-after, x-request-id";
/// How long a browser may reuse a preflight's answer (s).
const MAX_AGE: &str = "600";

/// The origins allowed, checked once at start-up.
#[derive(Debug, Clone, Default)]
pub struct Origins {
    any: bool,
    listed: Arc<[HeaderValue]>,
}

impl Origins {
    /// `configured`, each `*` or `scheme://host[:port]` (http or https, nothing after).
    pub fn new(configured: &CorsOrigins) -> anyhow::Result<Self> {
        let mut listed = Vec::new();
        let mut any = false;
        for origin in &configured.0 {
            if origin == "*" {
                any = true;
                continue;
            }
            let parsed = url::Url::parse(origin).ok();
            let Some(url) = parsed.filter(|u| {
                matches!(u.scheme(), "http" | "https")
                    && u.host_str().is_some()
                    && u.path() == "/"
                    && u.query().is_none()
                    && u.username().is_empty()
            }) else {
                bail!(
                    "APP__HTTP__CORS_ORIGINS: {origin:?} is not an origin \
                     (`https://host` or `https://host:port`, or `*`)"
                );
            };
            // as browsers send it: lower-case scheme and host, no default port
            listed.push(HeaderValue::from_str(
                url.origin().ascii_serialization().as_str(),
            )?);
        }
        Ok(Self {
            any,
            listed: listed.into(),
        })
    }

    fn allows(&self, origin: &HeaderValue) -> bool {
        self.any || self.listed.contains(origin)
    }
}

/// The CORS layer around the whole application.
#[derive(Debug)]
pub struct Cors<E> {
    origins: Origins,
    inner: E,
}

impl<E: Endpoint> Cors<E> {
    pub fn new(origins: Origins, inner: E) -> Self {
        Self { origins, inner }
    }
}

impl<E: Endpoint> Endpoint for Cors<E> {
    type Output = Response;

    async fn call(&self, req: Request) -> poem::Result<Response> {
        let origin = req
            .header(header::ORIGIN)
            .and_then(|o| HeaderValue::from_str(o).ok())
            .filter(|o| self.origins.allows(o));
        let Some(origin) = origin else {
            return self.inner.call(req).await.map(IntoResponse::into_response);
        };
        let allowed = if self.origins.any {
            HeaderValue::from_static("*")
        } else {
            origin
        };
        if req.method() == Method::OPTIONS
            && req
                .headers()
                .contains_key(header::ACCESS_CONTROL_REQUEST_METHOD)
        {
            return Ok(Response::builder()
                .status(StatusCode::NO_CONTENT)
                .header(header::ACCESS_CONTROL_ALLOW_ORIGIN, allowed)
                .header(header::ACCESS_CONTROL_ALLOW_METHODS, ALLOW_METHODS)
                .header(header::ACCESS_CONTROL_ALLOW_HEADERS, ALLOW_HEADERS)
                .header(header::ACCESS_CONTROL_MAX_AGE, MAX_AGE)
                .header(header::VARY, "Origin")
                .finish());
        }
        let mut response = self.inner.get_response(req).await;
        let headers = response.headers_mut();
        headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, allowed);
        headers.insert(
            header::ACCESS_CONTROL_EXPOSE_HEADERS,
            HeaderValue::from_static(EXPOSE_HEADERS),
        );
        headers.append(header::VARY, HeaderValue::from_static("Origin"));
        Ok(response)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn origins(list: &[&str]) -> anyhow::Result<Origins> {
        Origins::new(&CorsOrigins(list.iter().map(|s| (*s).to_owned()).collect()))
    }

    #[test]
    fn origins_are_checked_and_written_as_browsers_send_them() {
        let o = origins(&[
            "https://Shop.Example",
            "http://localhost:5173",
            "https://a.example:443",
        ])
        .expect("valid");
        for sent in [
            "https://shop.example",
            "http://localhost:5173",
            "https://a.example",
        ] {
            assert!(o.allows(&HeaderValue::from_static(sent)), "{sent}");
        }
        assert!(!o.allows(&HeaderValue::from_static("https://evil.example")));
        assert!(!o.allows(&HeaderValue::from_static("http://localhost:5174")));
        let none = origins(&[]).expect("empty");
        assert!(!none.allows(&HeaderValue::from_static("https://shop.example")));
        assert!(origins(&["*"])
            .expect("any")
            .allows(&HeaderValue::from_static("https://x.y")));
    }

    #[test]
    fn what_is_not_an_origin_is_refused_at_start_up() {
        for bad in [
            "shop.example",
            "https://shop.example/app",
            "ftp://x.example",
            "https://u@x.example",
            "https://x.example?q",
        ] {
            assert!(origins(&[bad]).is_err(), "{bad}");
        }
    }
}
