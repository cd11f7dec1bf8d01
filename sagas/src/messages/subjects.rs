//! The names of the contract: [`Step`] (one per participant command, also the saga's steps) and
//! [`ReplyKind`], with the subject suffix each is published on and which replies answer which
//! step. Subjects are fixed here once; everything else asks these enums.

use std::fmt;

use serde::{Deserialize, Serialize};

/// The participant commands, which are also the saga's steps. JSON: snake_case.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Step {
    Reserve,
    Release,
    Commit,
    Authorize,
    Void,
    Capture,
    Refund,
}

impl Step {
    /// Every step, in a stable order.
    pub const ALL: [Step; 7] = [
        Self::Reserve,
        Self::Release,
        Self::Commit,
        Self::Authorize,
        Self::Void,
        Self::Capture,
        Self::Refund,
    ];

    /// snake_case name (also the last token of the subject).
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Reserve => "reserve",
            Self::Release => "release",
            Self::Commit => "commit",
            Self::Authorize => "authorize",
            Self::Void => "void",
            Self::Capture => "capture",
            Self::Refund => "refund",
        }
    }

    /// Subject suffix the command is published on.
    pub const fn subject(self) -> &'static str {
        match self {
            Self::Reserve => "inventory.commands.reserve",
            Self::Release => "inventory.commands.release",
            Self::Commit => "inventory.commands.commit",
            Self::Authorize => "payment.commands.authorize",
            Self::Void => "payment.commands.void",
            Self::Capture => "payment.commands.capture",
            Self::Refund => "payment.commands.refund",
        }
    }

    /// Whether the step undoes an earlier one (release, void, refund). Compensations have no
    /// failure reply: they are re-sent until they succeed or the saga needs attention.
    pub fn is_compensation(self) -> bool {
        matches!(self, Self::Release | Self::Void | Self::Refund)
    }

    /// Whether `reply` is a possible answer to this step.
    pub fn is_answered_by(self, reply: ReplyKind) -> bool {
        use ReplyKind as R;
        matches!(
            (self, reply),
            (Self::Reserve, R::StockReserved | R::StockRejected)
                | (Self::Release, R::StockReleased)
                | (Self::Commit, R::StockCommitted)
                | (Self::Authorize, R::PaymentAuthorized | R::PaymentDeclined)
                | (Self::Void, R::PaymentVoided)
                | (Self::Capture, R::PaymentCaptured | R::PaymentCaptureFailed)
                | (Self::Refund, R::PaymentRefunded)
        )
    }
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The kinds of participant reply. JSON: snake_case.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReplyKind {
    StockReserved,
    StockRejected,
    StockReleased,
    StockCommitted,
    PaymentAuthorized,
    PaymentDeclined,
    PaymentVoided,
    PaymentCaptured,
    PaymentCaptureFailed,
    PaymentRefunded,
}

impl ReplyKind {
    /// Every reply kind, in a stable order.
    pub const ALL: [ReplyKind; 10] = [
        Self::StockReserved,
        Self::StockRejected,
        Self::StockReleased,
        Self::StockCommitted,
        Self::PaymentAuthorized,
        Self::PaymentDeclined,
        Self::PaymentVoided,
        Self::PaymentCaptured,
        Self::PaymentCaptureFailed,
        Self::PaymentRefunded,
    ];

    /// Subject suffix the reply arrives on.
    pub const fn subject(self) -> &'static str {
        match self {
            Self::StockReserved => "inventory.replies.reserved",
            Self::StockRejected => "inventory.replies.rejected",
            Self::StockReleased => "inventory.replies.released",
            Self::StockCommitted => "inventory.replies.committed",
            Self::PaymentAuthorized => "payment.replies.authorized",
            Self::PaymentDeclined => "payment.replies.declined",
            Self::PaymentVoided => "payment.replies.voided",
            Self::PaymentCaptured => "payment.replies.captured",
            Self::PaymentCaptureFailed => "payment.replies.capture_failed",
            Self::PaymentRefunded => "payment.replies.refunded",
        }
    }

    /// The kind whose subject suffix is `subject`.
    pub fn from_subject(subject: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.subject() == subject)
    }
}

impl fmt::Display for ReplyKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.subject())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps_are_answered_only_by_their_own_replies() {
        let answered: usize = Step::ALL
            .iter()
            .map(|s| {
                ReplyKind::ALL
                    .iter()
                    .filter(|k| s.is_answered_by(**k))
                    .count()
            })
            .sum();
        assert_eq!(answered, ReplyKind::ALL.len());
        assert!(Step::Reserve.is_answered_by(ReplyKind::StockRejected));
        assert!(!Step::Reserve.is_answered_by(ReplyKind::StockReleased));
        assert!(!Step::Void.is_answered_by(ReplyKind::PaymentRefunded));
    }
}
