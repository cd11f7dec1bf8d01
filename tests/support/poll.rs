//! Waiting for a positive signal, shared by the test targets (`#[path]`-included): a test asks
//! a question until the answer is there, never sleeps a fixed time and hopes.

#![allow(dead_code)] // each target uses what it needs

use std::future::Future;
use std::time::Duration;

/// How often a question is asked again.
pub const POLL: Duration = Duration::from_millis(20);

/// Asks `check` until it answers `Some`, at most `patience`; `None` when it never did.
pub async fn within<T, F, Fut>(patience: Duration, mut check: F) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + patience;
    loop {
        if let Some(answer) = check().await {
            return Some(answer);
        }
        if tokio::time::Instant::now() >= deadline {
            return None;
        }
        tokio::time::sleep(POLL).await;
    }
}

/// [`within`], panicking with `what` when the answer never came.
pub async fn eventually<T, F, Fut>(what: &str, patience: Duration, check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    within(patience, check)
        .await
        .unwrap_or_else(|| panic!("{what} (waited {patience:?})"))
}
