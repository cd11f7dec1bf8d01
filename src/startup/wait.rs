//! Waiting for a dependency at start-up (`serve`): PostgreSQL and NATS, each until it answers,
//! so that a dependency started after the service (or restarting with it) delays readiness
//! instead of stopping the process.
//!
//! **Guarantees.**
//! * One attempt at a time, each cut after [`ATTEMPT_TIMEOUT`]; between two, a wait from
//!   [`RETRY_FIRST`] doubling to [`RETRY_MAX`], equal-jittered (so replicas started together
//!   spread out), so a dependency that starts is seen within about [`RETRY_MAX`].
//! * The first failure is logged at once at WARN, naming the dependency, its address (host and
//!   port: never a password) and the cause in plain words ("connection refused"); then again
//!   only when the cause changes, or every [`LOG_EVERY`] while it lasts, never per attempt.
//!   Success is logged at INFO, with how long it took when it was not the first attempt.
//! * Meanwhile the dependency's start-up check (readiness) says what is awaited, with the
//!   address but without the error's text; it is ok once the attempt succeeded.
//! * It never gives up: dropping the future (the process was told to stop) ends it.

use std::future::Future;
use std::time::{Duration, Instant};

use anyhow::anyhow;

use crate::backoff::{Backoff, Jitter};
use crate::lifecycle::Lifecycle;

/// Longest one attempt may take (a connection to a host that drops packets, a JetStream request
/// without answer): under 5 s, so that even then the first failure is logged within 5 s of the
/// start.
pub const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(4);
/// The first wait after a failed attempt.
pub const RETRY_FIRST: Duration = Duration::from_millis(100);
/// The longest wait between two attempts.
pub const RETRY_MAX: Duration = Duration::from_secs(1);
/// How often a failure that lasts, with the same cause, is logged again.
pub const LOG_EVERY: Duration = Duration::from_secs(30);

/// A dependency being waited for.
#[derive(Debug)]
pub struct Dependency<'a> {
    /// Its readiness check's name, and the `dependency` field of the log lines.
    pub name: &'static str,
    /// What log lines call it (`PostgreSQL`, `NATS`).
    pub label: &'static str,
    /// Where it is: `host:port` (or the NATS servers), never with credentials.
    pub address: String,
    /// Where readiness reads the start-up checks.
    pub lifecycle: &'a Lifecycle,
}

impl Dependency<'_> {
    /// Runs `attempt` until it succeeds, as the module says. While it fails, the check says
    /// "`state`: `doing` `address`" ("not reachable yet: connecting to 127.0.0.1:5432") and the
    /// log "`label` at `address` is `state`: cause".
    pub async fn wait<T, F, Fut>(&self, state: &str, doing: &str, mut attempt: F) -> T
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = anyhow::Result<T>>,
    {
        let (name, label) = (self.name, self.label);
        let address = &self.address;
        let started = Instant::now();
        let mut schedule = Backoff::new(RETRY_FIRST, RETRY_MAX)
            .with_jitter(Jitter::Equal)
            .schedule();
        let mut logged: Option<(String, Instant)> = None;
        loop {
            let outcome = match tokio::time::timeout(ATTEMPT_TIMEOUT, attempt()).await {
                Ok(outcome) => outcome,
                Err(_) => Err(anyhow!("no answer within {} s", ATTEMPT_TIMEOUT.as_secs())),
            };
            let e = match outcome {
                Ok(value) => {
                    self.lifecycle.report(name, true, None);
                    if logged.is_some() {
                        tracing::info!(
                            dependency = name,
                            address = %address,
                            waited_s = started.elapsed().as_secs_f64(),
                            "{label} at {address} answers, after {:.1} s",
                            started.elapsed().as_secs_f64()
                        );
                    }
                    return value;
                }
                Err(e) => e,
            };
            self.lifecycle
                .report(name, false, Some(format!("{state}: {doing} {address}")));
            let cause = cause(&e);
            let due = logged
                .as_ref()
                .is_none_or(|(last, at)| *last != cause || at.elapsed() >= LOG_EVERY);
            if due {
                tracing::warn!(
                    dependency = name,
                    address = %address,
                    cause = %cause,
                    waited_s = started.elapsed().as_secs_f64(),
                    error = format!("{e:#}"),
                    "{label} at {address} is {state}: {cause}; retrying every {} s at most",
                    RETRY_MAX.as_secs(),
                );
                logged = Some((cause, Instant::now()));
            }
            tokio::time::sleep(schedule.next_delay()).await;
        }
    }
}

/// The cause of a failed attempt in plain words: the I/O error under it when there is one
/// ("connection refused", "timed out"), else its innermost error's text.
pub fn cause(e: &anyhow::Error) -> String {
    let io = e
        .chain()
        .find_map(|cause| cause.downcast_ref::<std::io::Error>());
    let Some(io) = io else {
        return e.root_cause().to_string();
    };
    match io.kind() {
        std::io::ErrorKind::ConnectionRefused => "connection refused".to_owned(),
        std::io::ErrorKind::ConnectionReset => "connection reset".to_owned(),
        std::io::ErrorKind::ConnectionAborted => "connection aborted".to_owned(),
        std::io::ErrorKind::TimedOut => "timed out".to_owned(),
        std::io::ErrorKind::AddrNotAvailable => "address not available".to_owned(),
        std::io::ErrorKind::UnexpectedEof => "connection closed by the server".to_owned(),
        _ => io.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cause_is_the_io_error_under_the_context_in_plain_words() {
        let refused = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
        let e = anyhow::Error::new(refused).context("connecting to NATS at nats://h:4222");
        assert_eq!(cause(&e), "connection refused");
        let e = anyhow!("password authentication failed for user \"x\"").context("connecting");
        assert_eq!(cause(&e), "password authentication failed for user \"x\"");
    }

    #[tokio::test]
    async fn a_dependency_is_retried_until_it_answers_and_its_check_says_so() {
        let lifecycle = Lifecycle::default();
        let dependency = Dependency {
            name: "database",
            label: "PostgreSQL",
            address: "127.0.0.1:5999".into(),
            lifecycle: &lifecycle,
        };
        let mut attempts = 0;
        let seen = lifecycle.clone();
        let value = dependency
            .wait("not reachable yet", "connecting to", || {
                attempts += 1;
                let n = attempts;
                let checks = seen.startup_checks();
                async move {
                    if n < 3 {
                        return Err(anyhow::Error::new(std::io::Error::from(
                            std::io::ErrorKind::ConnectionRefused,
                        )));
                    }
                    // the failed attempts before were reported to readiness
                    assert_eq!(
                        checks[0].detail.as_deref(),
                        Some("not reachable yet: connecting to 127.0.0.1:5999")
                    );
                    assert!(!checks[0].ok);
                    Ok(n)
                }
            })
            .await;
        assert_eq!(value, 3);
        assert!(lifecycle.startup_checks()[0].ok);
    }
}
