//! The ids the books derive from a command's `message_id` (UUIDv5 in its namespace), so that
//! deciding a command again, or re-sending its reply, always yields the same ids.

use order_domain::OrderId;
use order_sagas::messages::{Message, MessageId, ReplyKind, SagaId};
use uuid::Uuid;

/// `(message_id, saga_id, order_id, in_reply_to)` of the reply of `kind` to `command`. The
/// reply's id is derived from the command's id and the kind (UUIDv5), so every re-send of the
/// reply carries the same `Nats-Msg-Id` and JetStream de-duplicates it too.
pub(super) fn head(
    command: &impl Message,
    kind: ReplyKind,
) -> (MessageId, SagaId, OrderId, MessageId) {
    (
        reply_id(command.message_id(), kind),
        command.saga_id(),
        command.order_id(),
        command.message_id(),
    )
}

/// The message id of the reply of `kind` to the command `command`.
pub fn reply_id(command: MessageId, kind: ReplyKind) -> MessageId {
    MessageId::from_uuid(derive(command, kind.subject()))
}

/// UUIDv5 in the command's namespace.
pub(super) fn derive(command: MessageId, name: &str) -> Uuid {
    Uuid::new_v5(&command.as_uuid(), name.as_bytes())
}
