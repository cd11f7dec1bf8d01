//! What `serve` answers before the service is built: it binds its listener first and answers
//! at once, while it waits for PostgreSQL and NATS (see `startup`).
//!
//! **Guarantees.**
//! * Until [`Gate::open`], `/health/live` answers 200 (the process serves), `/health/ready`
//!   503 naming the dependency awaited (`ops::while_starting`), and every other request 503
//!   problem+json `starting` with `Retry-After: 1`, at once: nothing waits for a dependency.
//! * After [`Gate::open`], every request (connections already open included) goes to the built
//!   service; the gate opens once and never closes.

use std::sync::{Arc, OnceLock};

use poem::endpoint::BoxEndpoint;
use poem::{Endpoint, EndpointExt as _, IntoResponse as _, Request, Response};
use poem_openapi::payload::PlainText;

use super::ops;
use super::problem::ApiError;
use crate::lifecycle::Lifecycle;

/// Routes to the built service once there is one, and answers as [`Gate`]'s module says until
/// then. Cheap to clone.
#[derive(Clone)]
pub struct Gate {
    built: Arc<OnceLock<BoxEndpoint<'static, Response>>>,
    lifecycle: Lifecycle,
}

impl std::fmt::Debug for Gate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gate")
            .field("open", &self.is_open())
            .finish_non_exhaustive()
    }
}

impl Gate {
    /// A closed gate, answering from what `lifecycle` says.
    pub fn new(lifecycle: Lifecycle) -> Self {
        Self {
            built: Arc::default(),
            lifecycle,
        }
    }

    /// From now on, requests go to `app`. A second call changes nothing.
    pub fn open(&self, app: impl Endpoint + 'static) {
        let _ = self.built.set(app.map_to_response().boxed());
    }

    /// Whether requests go to the built service.
    pub fn is_open(&self) -> bool {
        self.built.get().is_some()
    }

    /// The answer while the service is not built yet.
    fn starting(&self, req: &Request) -> Response {
        match req.uri().path() {
            "/health/live" => PlainText("ok").into_response(),
            "/health/ready" => ops::while_starting(&self.lifecycle).into_response(),
            _ => {
                let waiting: Vec<&str> = self
                    .lifecycle
                    .startup_checks()
                    .into_iter()
                    .filter(|c| !c.ok)
                    .map(|c| c.name)
                    .collect();
                let detail = if waiting.is_empty() {
                    "the service is starting; retry shortly".to_owned()
                } else {
                    format!(
                        "the service is starting: waiting for {}; retry shortly",
                        waiting.join(" and ")
                    )
                };
                ApiError::Starting { detail }.to_response(None)
            }
        }
    }
}

impl Endpoint for Gate {
    type Output = Response;

    async fn call(&self, req: Request) -> poem::Result<Self::Output> {
        match self.built.get() {
            Some(app) => app.call(req).await,
            None => Ok(self.starting(&req)),
        }
    }
}
