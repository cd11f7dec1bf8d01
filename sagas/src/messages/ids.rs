//! Identifiers of the contract: [`MessageId`] (the participants' dedupe key, derived for the
//! saga's commands from the saga's secret [`CommandIdKey`]), [`SagaId`] (one per order, equal to
//! the order's id) and the participants' own opaque ids, [`ReservationId`] and [`PaymentId`].

use std::fmt;

use order_domain::OrderId;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::subjects::Step;

/// Identifier of one message (command or reply); the participants' dedupe key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct MessageId(Uuid);

impl MessageId {
    /// Wraps a UUID received or stored elsewhere.
    pub fn from_uuid(id: Uuid) -> Self {
        Self(id)
    }

    /// The UUID (for headers such as `Nats-Msg-Id`).
    pub fn as_uuid(&self) -> Uuid {
        self.0
    }

    /// The id of a saga's command: UUIDv5 of `"<step>/<generation>"` in the namespace of the
    /// saga's secret `key`.
    ///
    /// A reply is believed only when its `in_reply_to` names a command the saga sent, so these
    /// ids must not be guessable: the key is random per saga (drawn by the caller of
    /// `SagaCommand::Start`), kept only in the saga's own events and shown only to admins and
    /// services. Without the key, knowing the order id, the step and the generation tells nothing.
    ///
    /// Re-sending a command after a timeout keeps its generation, hence its id, so participants
    /// recognise it. A new generation (a fresh capture after `capture_failed`) is a new request.
    /// Stored sagas re-send ids derived here: changing this function breaks in-flight sagas.
    pub fn derive(key: CommandIdKey, step: Step, generation: u32) -> Self {
        let name = format!("{}/{generation}", step.as_str());
        Self(Uuid::new_v5(&key.0, name.as_bytes()))
    }
}

impl fmt::Display for MessageId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// The secret a saga derives its command ids from ([`MessageId::derive`]): a random UUID drawn
/// when the saga starts and stored in its `SagaStarted` event.
///
/// Sagas started before keys existed derive from their saga id ([`CommandIdKey::legacy`]), so
/// their in-flight commands keep their ids; such ids are guessable, new ones are not.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct CommandIdKey(Uuid);

impl CommandIdKey {
    /// Wraps a random UUID (v4) drawn by the caller: this crate draws no random numbers.
    pub fn from_uuid(key: Uuid) -> Self {
        Self(key)
    }

    /// The key of a saga that started without one: its own id, as ids were derived before.
    pub fn legacy(saga_id: SagaId) -> Self {
        Self(saga_id.as_uuid())
    }
}

impl fmt::Debug for CommandIdKey {
    /// Never printed: whoever knows the key can name the saga's commands.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("CommandIdKey(..)")
    }
}

/// Identifier of one saga. There is one saga per order and its id is the order's id, so a reply
/// is routed to its saga aggregate by `saga_id` alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct SagaId(Uuid);

impl SagaId {
    /// The saga of `order_id`.
    pub fn for_order(order_id: OrderId) -> Self {
        Self(order_id.as_uuid())
    }

    /// Wraps a UUID received on the wire.
    pub fn from_uuid(id: Uuid) -> Self {
        Self(id)
    }

    /// The UUID; also the saga aggregate's id.
    pub fn as_uuid(&self) -> Uuid {
        self.0
    }
}

impl fmt::Display for SagaId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

macro_rules! participant_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            /// Wraps the participant's id as it sent it.
            pub fn new(id: impl Into<String>) -> Self {
                Self(id.into())
            }

            /// The id as the participant sent it.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

participant_id!(
    /// The inventory service's id for a stock reservation (opaque to the saga).
    ReservationId
);
participant_id!(
    /// The payment service's id for an authorization (opaque to the saga).
    PaymentId
);

#[cfg(test)]
mod tests {
    use super::*;

    fn saga() -> SagaId {
        SagaId::from_uuid(Uuid::from_u128(1))
    }

    fn key() -> CommandIdKey {
        CommandIdKey::from_uuid(Uuid::from_u128(0x005e_c2e7))
    }

    #[test]
    fn message_ids_are_derived_deterministically_per_key_step_and_generation() {
        let a = MessageId::derive(key(), Step::Reserve, 1);
        assert_eq!(a, MessageId::derive(key(), Step::Reserve, 1));
        assert_ne!(a, MessageId::derive(key(), Step::Reserve, 2));
        assert_ne!(a, MessageId::derive(key(), Step::Release, 1));
        assert_ne!(
            a,
            MessageId::derive(
                CommandIdKey::from_uuid(Uuid::from_u128(2)),
                Step::Reserve,
                1
            )
        );
        assert_eq!(a.as_uuid().get_version_num(), 5);
    }

    #[test]
    fn a_keyed_id_is_not_the_one_guessable_from_the_saga_id() {
        let guessable = MessageId::derive(CommandIdKey::legacy(saga()), Step::Authorize, 1);
        assert_ne!(MessageId::derive(key(), Step::Authorize, 1), guessable);
    }

    #[test]
    fn sagas_without_a_key_keep_the_ids_they_were_sent_with() {
        // Pinned: sagas started before keys existed re-send ids derived from their saga id.
        let a = MessageId::derive(CommandIdKey::legacy(saga()), Step::Reserve, 1);
        assert_eq!(a.to_string(), PINNED_RESERVE_ID);
    }

    #[test]
    fn the_key_is_never_printed() {
        assert_eq!(format!("{:?}", key()), "CommandIdKey(..)");
    }

    // = python3 -c "import uuid; print(uuid.uuid5(uuid.UUID(int=1), 'reserve/1'))"
    const PINNED_RESERVE_ID: &str = "0feaa562-b112-52c6-b750-68628b9f1c21";
}
