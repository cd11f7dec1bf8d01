//! The `OrderSaga` aggregate (DESIGN §7): one per order, id = order id, started by `OrderPlaced`.
//!
//! ```text
//! reserve stock ──reserved──► authorize payment ──authorized──► confirmed ──fulfilled──► capturing
//!   │ rejected → failed          │ declined → release → failed      │ cancelled            │
//!   │                            │                                  ▼                      ▼
//!   └── cancelled: compensate whatever is held (release / void / refund) ──► cancelled   completed
//! ```
//!
//! `decide` is pure: the saga's history, the command (which carries `now`) and the
//! [`SagaPolicy`] give the events. `apply` only mutates. The saga's status is *derived* from what
//! it holds and what it is waiting for (see [`OrderSaga::status`]), and after every decision one
//! reconciling pass asks for exactly what is missing: the next forward step, or, once the order
//! is cancelled or failed, the compensation of everything held. That one rule covers late replies
//! too: a reservation or authorization that arrives after the saga gave up is released or voided.
//!
//! Every request has a deadline. `Timeout` re-sends an unanswered request with the same
//! `message_id` and a doubled (capped) deadline until [`SagaPolicy::max_attempts`]; then a silent
//! reserve or authorize fails the order (compensating what is held), while a silent compensation,
//! capture or commit parks the saga in `needs_attention` until an admin `Retry`.
//!
//! Replies are checked against the saga: a reply for another saga or order, to a command this
//! saga never sent, of the wrong kind, with the wrong amount, or contradicting an earlier answer
//! is refused with [`SagaError::ReplyIgnored`]. A re-delivered reply is not an error: it yields no
//! events and `Ok`.
//!
//! One concept per file, edges pointing one way (leaves first):
//!
//! * `policy`: [`SagaPolicy`], timeouts and retry limits, the aggregate's `Services`.
//! * `status`: [`SagaStatus`], the names of where a saga can stand.
//! * `holdings`: what a saga holds and remembers ([`Stock`], [`Payment`], [`SentRequest`], ...).
//! * `command`: [`SagaCommand`] and the [`OrderSnapshot`] a saga starts from.
//! * `error`: typed refusals, [`SagaError`] and [`IgnoredReason`].
//! * `event`: [`SagaChange`], the only source of truth, stored as [`SagaEvent`].
//! * `state`: the [`OrderSaga`] aggregate's state, its queries and `apply` (mutation only).
//! * `decide`: [`OrderSaga::decide`], a single match over the commands, and its rules.
//! * `aggregate`: the cqrs-es `Aggregate` binding (`handle` = decide, `apply` = state).

mod aggregate;
mod command;
mod decide;
mod error;
mod event;
mod holdings;
mod policy;
mod state;
mod status;

pub use command::{OrderSnapshot, SagaCommand, SnapshotError};
pub use error::{IgnoredReason, SagaError};
pub use event::{SagaChange, SagaEvent};
pub use holdings::{Answer, OrderVerdict, Payment, SentRequest, Stock};
pub use policy::SagaPolicy;
pub use state::{OrderSaga, REMEMBERED_REPLIES};
pub use status::SagaStatus;
