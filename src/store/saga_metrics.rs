//! The saga funnel's metrics (DESIGN §11): sagas started, finished by outcome, compensations by
//! step, each step's latency by outcome, and the sagas parked for a person. Counted from the
//! events each saga command appends, so they say what the log says; the parked count is read
//! from the store at every scrape, so it is right from the first scrape after a restart.

use chrono::{DateTime, Utc};
use order_sagas::{OrderSaga, SagaChange, SagaEvent, Step};
use prometheus::{HistogramVec, IntCounter, IntCounterVec, IntGauge, Registry};

use crate::metric;

/// The saga funnel.
#[derive(Debug, Clone)]
pub struct SagaMetrics {
    /// Sagas started (`OrderPlaced` seen once).
    pub started: IntCounter,
    /// Sagas that reached an end, by outcome: `completed`, `cancelled`, `failed`.
    pub finished: IntCounterVec,
    /// Compensations asked for, by step: `release`, `void`, `refund` (first sends only).
    pub compensations: IntCounterVec,
    /// From a request's first send to its answer, by step and outcome (`ok`, `refused`: the
    /// participant said no, `timed_out`: the saga stopped waiting), in seconds.
    pub step_duration: HistogramVec,
    /// Sagas parked in `needs_attention` now (set at each scrape).
    pub needs_attention: IntGauge,
}

impl SagaMetrics {
    pub fn register(r: &Registry) -> prometheus::Result<Self> {
        Ok(Self {
            started: metric::counter(r, "saga_started_total", "Sagas started")?,
            finished: metric::counters(
                r,
                "saga_finished_total",
                "Sagas that reached an end, by outcome (completed, cancelled, failed)",
                &["outcome"],
            )?,
            compensations: metric::counters(
                r,
                "saga_compensations_total",
                "Compensations the saga asked for, by step (release, void, refund)",
                &["step"],
            )?,
            step_duration: metric::histograms(
                r,
                "saga_step_duration_seconds",
                "Time from a saga request's first send to its answer, by step and outcome (ok, refused, timed_out)",
                &["step", "outcome"],
                &[
                    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
                    300.0,
                ],
            )?,
            needs_attention: metric::gauge(
                r,
                "sagas_needs_attention",
                "Sagas parked in needs_attention, waiting for an operator (read from the store at each scrape)",
            )?,
        })
    }

    /// What one saga command appended, with the saga as it stands after them, at `now`.
    pub fn observe(&self, events: &[SagaEvent], saga: &OrderSaga, now: DateTime<Utc>) {
        for event in events {
            let change = &event.change;
            match change {
                SagaChange::SagaStarted { .. } => self.started.inc(),
                SagaChange::SagaCompleted => self.finished.with_label_values(&["completed"]).inc(),
                SagaChange::SagaCancelled => self.finished.with_label_values(&["cancelled"]).inc(),
                SagaChange::SagaFailed { .. } => self.finished.with_label_values(&["failed"]).inc(),
                SagaChange::RequestAbandoned { message_id, .. } => {
                    self.step_took(saga, *message_id, "timed_out", now);
                }
                _ => {}
            }
            if let Some(command) = change.participant_command() {
                let first_send = matches!(
                    change,
                    SagaChange::StockReleaseRequested { attempt: 1, .. }
                        | SagaChange::PaymentVoidRequested { attempt: 1, .. }
                        | SagaChange::PaymentRefundRequested { attempt: 1, .. }
                );
                if first_send {
                    self.compensations
                        .with_label_values(&[command.step().as_str()])
                        .inc();
                }
            }
            if let Some((_, in_reply_to)) = change.reply_ids() {
                let refused = matches!(
                    change,
                    SagaChange::StockRejected { .. }
                        | SagaChange::PaymentDeclined { .. }
                        | SagaChange::PaymentCaptureFailed { .. }
                );
                let outcome = if refused { "refused" } else { "ok" };
                self.step_took(saga, in_reply_to, outcome, now);
            }
        }
    }

    /// Observes how long the request `message_id` of `saga` took, when it knows its first send.
    fn step_took(
        &self,
        saga: &OrderSaga,
        message_id: order_sagas::MessageId,
        outcome: &str,
        now: DateTime<Utc>,
    ) {
        let Some(request) = saga
            .requests()
            .iter()
            .find(|r| r.message_id() == message_id)
        else {
            return;
        };
        let Some(sent) = request.first_sent_at else {
            return;
        };
        let step: Step = request.step();
        let took = (now - sent).to_std().unwrap_or_default();
        self.step_duration
            .with_label_values(&[step.as_str(), outcome])
            .observe(took.as_secs_f64());
    }
}
