//! Typed refusals of the saga: [`SagaError`] (nothing was stored) and [`IgnoredReason`], why a
//! reply was refused. Each has a stable `code` for metrics and problem types. Refusals only:
//! infrastructure failures are the callers' (`anyhow`), never a variant here.

use order_domain::{Currency, OrderId};
use thiserror::Error;

use super::status::SagaStatus;
use crate::messages::{MessageId, ReplyKind, SagaId, Step};

/// Why a reply was refused. The reply consumer acknowledges it (it will never become valid)
/// and counts it by [`IgnoredReason::code`].
#[derive(Debug, Clone, Error, PartialEq, Eq)]
pub enum IgnoredReason {
    #[error("no saga was started for this reply")]
    UnknownSaga,
    #[error("reply names saga {got}, this is saga {expected}")]
    WrongSaga { expected: SagaId, got: SagaId },
    #[error("reply names order {got}, this saga is for order {expected}")]
    WrongOrder { expected: OrderId, got: OrderId },
    #[error("this saga never sent message {in_reply_to}")]
    UnknownRequest { in_reply_to: MessageId },
    #[error("{reply} does not answer a {step} command")]
    UnexpectedReply { step: Step, reply: ReplyKind },
    #[error("amount {got} differs from the order total {expected}")]
    WrongAmount { expected: i64, got: i64 },
    #[error("currency {got} differs from the order currency {expected}")]
    WrongCurrency { expected: Currency, got: Currency },
    #[error("the {step} command was already answered with {answer}")]
    AlreadySettled { step: Step, answer: ReplyKind },
}

impl IgnoredReason {
    /// Stable snake_case name (metric label).
    pub fn code(&self) -> &'static str {
        match self {
            Self::UnknownSaga => "unknown_saga",
            Self::WrongSaga { .. } => "wrong_saga",
            Self::WrongOrder { .. } => "wrong_order",
            Self::UnknownRequest { .. } => "unknown_request",
            Self::UnexpectedReply { .. } => "unexpected_reply",
            Self::WrongAmount { .. } => "wrong_amount",
            Self::WrongCurrency { .. } => "wrong_currency",
            Self::AlreadySettled { .. } => "already_settled",
        }
    }
}

/// Why the saga refused a command. Nothing was stored.
#[derive(Debug, Clone, Error, PartialEq, Eq)]
pub enum SagaError {
    #[error("the saga has not been started")]
    NotStarted,
    #[error("reply ignored: {reason}")]
    ReplyIgnored { reason: IgnoredReason },
    #[error("{command} does not apply to a saga that is {status}")]
    NotApplicable {
        command: &'static str,
        status: SagaStatus,
    },
    #[error("nothing to retry: the saga is {status}")]
    NothingToRetry { status: SagaStatus },
}

impl SagaError {
    /// Stable kebab-case name of the refusal (problem `type` slug, metric label).
    pub fn code(&self) -> &'static str {
        match self {
            Self::NotStarted => "saga-not-started",
            Self::ReplyIgnored { .. } => "reply-ignored",
            Self::NotApplicable { .. } => "saga-command-not-applicable",
            Self::NothingToRetry { .. } => "saga-nothing-to-retry",
        }
    }
}

/// Shorthand: a reply refused for `reason`.
pub(super) fn ignored(reason: IgnoredReason) -> SagaError {
    SagaError::ReplyIgnored { reason }
}
