//! The HTTP server's metrics (moved by `observe`).

use prometheus::{HistogramVec, IntCounterVec, Registry};

use crate::metric::{self, LATENCY_BUCKETS};

#[derive(Debug, Clone)]
pub struct HttpMetrics {
    /// HTTP requests by route template, method and status.
    pub requests: IntCounterVec,
    /// HTTP latency by route template and method (seconds).
    pub duration: HistogramVec,
}

impl HttpMetrics {
    pub fn register(registry: &Registry) -> prometheus::Result<Self> {
        Ok(Self {
            requests: metric::counters(
                registry,
                "http_requests_total",
                "HTTP requests by route, method and status",
                &["route", "method", "status"],
            )?,
            duration: metric::histograms(
                registry,
                "http_request_duration_seconds",
                "HTTP request latency",
                &["route", "method"],
                LATENCY_BUCKETS,
            )?,
        })
    }
}
