//! order-sagas: the order saga as a pure, event-sourced aggregate, and the participant messages
//! it exchanges (DESIGN §7, §8).
//!
//! * [`messages`]: the NATS contract as Rust types: participant commands (`inventory.commands.*`,
//!   `payment.commands.*`), their replies (`*.replies.*`), subjects and deterministic message ids;
//!   one file per participant, the envelope and ids apart.
//! * [`saga`]: the [`OrderSaga`] aggregate: reserve stock → authorize payment → confirm; capture
//!   and commit on fulfilment; compensations, deadlines, re-sends, `needs_attention`, admin retry.
//!   Split by concept like `order-domain` (policy, command, error, status, event, state, decide).
//!
//! `saga` depends on `messages`, never the other way round.
//!
//! Nothing here performs I/O, reads a clock or draws random numbers: time arrives in commands as
//! `now`, ids are derived (UUIDv5) from a key the caller draws when the saga starts, so the same history and command always decide the same events.
//! The saga's `...Requested` events carry the participant command the relay publishes; replies
//! come back as [`SagaCommand::HandleReply`].

pub mod messages;
pub mod saga;

pub use messages::{
    AuthorizePayment, CapturePayment, CommandIdKey, CommitStock, Message, MessageId, ParseError,
    ParticipantCommand, PaymentAuthorized, PaymentCaptureFailed, PaymentCaptured, PaymentDeclined,
    PaymentId, PaymentRefunded, PaymentVoided, RefundPayment, ReleaseStock, Reply, ReplyKind,
    ReplyMessage, ReservationId, ReserveStock, SagaId, Step, StockCommitted, StockItem,
    StockRejected, StockReleased, StockReserved, UnavailableItem, VoidPayment,
};
pub use saga::{
    Answer, IgnoredReason, OrderSaga, OrderSnapshot, OrderVerdict, Payment, SagaChange,
    SagaCommand, SagaError, SagaEvent, SagaPolicy, SagaStatus, SentRequest, SnapshotError, Stock,
    REMEMBERED_REPLIES,
};
