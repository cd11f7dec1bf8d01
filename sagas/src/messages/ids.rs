//! Identifiers of the contract: [`MessageId`] (the participants' dedupe key, derived
//! deterministically for the saga's commands), [`SagaId`] (one per order, equal to the order's
//! id) and the participants' own opaque ids, [`ReservationId`] and [`PaymentId`].

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

    /// The id of a saga's command: UUIDv5 in the saga's own namespace of `"<step>/<generation>"`.
    ///
    /// Re-sending a command after a timeout keeps its generation, hence its id, so participants
    /// recognise it. A new generation (a fresh capture after `capture_failed`) is a new request.
    /// Stored sagas re-send ids derived here: changing this function breaks in-flight sagas.
    pub fn derive(saga_id: SagaId, step: Step, generation: u32) -> Self {
        let name = format!("{}/{generation}", step.as_str());
        Self(Uuid::new_v5(&saga_id.as_uuid(), name.as_bytes()))
    }
}

impl fmt::Display for MessageId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
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

    #[test]
    fn message_ids_are_derived_deterministically_per_saga_step_and_generation() {
        let a = MessageId::derive(saga(), Step::Reserve, 1);
        assert_eq!(a, MessageId::derive(saga(), Step::Reserve, 1));
        assert_ne!(a, MessageId::derive(saga(), Step::Reserve, 2));
        assert_ne!(a, MessageId::derive(saga(), Step::Release, 1));
        assert_ne!(
            a,
            MessageId::derive(SagaId::from_uuid(Uuid::from_u128(2)), Step::Reserve, 1)
        );
        assert_eq!(a.as_uuid().get_version_num(), 5);
        // Pinned: stored sagas re-send ids derived this way, so the derivation must not drift.
        assert_eq!(a.to_string(), PINNED_RESERVE_ID);
    }

    // = python3 -c "import uuid; print(uuid.uuid5(uuid.UUID(int=1), 'reserve/1'))"
    const PINNED_RESERVE_ID: &str = "0feaa562-b112-52c6-b750-68628b9f1c21";
}
