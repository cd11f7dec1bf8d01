//! The NATS contract of DESIGN §8 as Rust types: the commands the saga sends to the inventory and
//! payment participants, and the replies they send back.
//!
//! Field names are the contract (snake_case, exactly as documented); fields may be added, never
//! renamed or dropped. Subjects here are *suffixes*: the service puts its configured prefix
//! (`APP__NATS__PREFIX`, e.g. `test123.`) in front when publishing and strips it when consuming.
//!
//! Commands are idempotent by `message_id`: the saga derives it from its secret key
//! ([`MessageId::derive`]), so a re-sent command carries the same id and participants dedupe it,
//! while nobody without the key can name it.
//! Every reply names the command it answers in `in_reply_to`.
//!
//! One file per participant, the common parts apart (edges point one way, leaves first):
//!
//! * `subjects`: [`Step`] and [`ReplyKind`], the names and subjects of the contract.
//! * `ids`: [`MessageId`] (derived from the saga's [`CommandIdKey`]), [`SagaId`], the participants' opaque
//!   [`ReservationId`] and [`PaymentId`].
//! * `envelope`: the header every message carries ([`Message`], [`ReplyMessage`]).
//! * `inventory`: `inventory.commands.*` and `inventory.replies.*` bodies.
//! * `payment`: `payment.commands.*` and `payment.replies.*` bodies.
//! * `any`: [`ParticipantCommand`] and [`Reply`], any message of the contract, read from its
//!   subject and body ([`ParseError`] when it cannot be).

mod any;
mod envelope;
mod ids;
mod inventory;
mod payment;
mod subjects;

pub use any::{ParseError, ParticipantCommand, Reply};
pub use envelope::{Message, ReplyMessage};
pub use ids::{CommandIdKey, MessageId, PaymentId, ReservationId, SagaId};
pub use inventory::{
    CommitStock, ReleaseStock, ReserveStock, StockCommitted, StockItem, StockRejected,
    StockReleased, StockReserved, UnavailableItem,
};
pub use payment::{
    AuthorizePayment, CapturePayment, PaymentAuthorized, PaymentCaptureFailed, PaymentCaptured,
    PaymentDeclined, PaymentRefunded, PaymentVoided, RefundPayment, VoidPayment,
};
pub use subjects::{ReplyKind, Step};
