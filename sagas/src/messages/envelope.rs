//! What every message of the contract carries: the [`Message`] header (`message_id`, `saga_id`,
//! `order_id`, its subject) and, for replies, [`ReplyMessage::in_reply_to`]. The `message!` and
//! `reply!` macros implement them for the participants' bodies, which keep these as plain fields
//! so the JSON stays exactly the documented one.

use order_domain::OrderId;
use serde::de::DeserializeOwned;
use serde::Serialize;

use super::ids::{MessageId, SagaId};

/// What every message of the contract carries, and where it is published.
pub trait Message: Serialize + DeserializeOwned {
    /// Subject suffix (without the deployment prefix).
    const SUBJECT: &'static str;

    /// The message's own id (dedupe key).
    fn message_id(&self) -> MessageId;
    /// The saga the message belongs to.
    fn saga_id(&self) -> SagaId;
    /// The order the message is about.
    fn order_id(&self) -> OrderId;

    /// Subject suffix of this message; the same as [`Message::SUBJECT`].
    fn subject(&self) -> &'static str {
        Self::SUBJECT
    }
}

/// A reply: a message that answers one command.
pub trait ReplyMessage: Message {
    /// `message_id` of the command this answers.
    fn in_reply_to(&self) -> MessageId;
}

macro_rules! message {
    ($ty:ident, $subject:expr) => {
        impl Message for $ty {
            const SUBJECT: &'static str = $subject;
            fn message_id(&self) -> MessageId {
                self.message_id
            }
            fn saga_id(&self) -> SagaId {
                self.saga_id
            }
            fn order_id(&self) -> OrderId {
                self.order_id
            }
        }
    };
}

macro_rules! reply {
    ($ty:ident, $kind:expr) => {
        message!($ty, $kind.subject());
        impl ReplyMessage for $ty {
            fn in_reply_to(&self) -> MessageId {
                self.in_reply_to
            }
        }
    };
}

// The participant modules implement the header through these; they name `Message`,
// `ReplyMessage`, `MessageId`, `SagaId` and `OrderId`, so a caller has them in scope.
pub(super) use message;
pub(super) use reply;
