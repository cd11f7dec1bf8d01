//! Any message of the contract: [`ParticipantCommand`] over the commands, [`Reply`] over the
//! replies, read from a subject suffix and a JSON body ([`ParseError`] when they do not match)
//! and written back as the body alone (the subject says which message it is).

use order_domain::{Currency, OrderId};
use serde::{Deserialize, Serialize};
use thiserror::Error;

use super::envelope::Message;
use super::ids::{MessageId, SagaId};
use super::inventory::{
    CommitStock, ReleaseStock, ReserveStock, StockCommitted, StockRejected, StockReleased,
    StockReserved,
};
use super::payment::{
    AuthorizePayment, CapturePayment, PaymentAuthorized, PaymentCaptureFailed, PaymentCaptured,
    PaymentDeclined, PaymentRefunded, PaymentVoided, RefundPayment, VoidPayment,
};
use super::subjects::{ReplyKind, Step};

/// Why a message body could not be read.
#[derive(Debug, Clone, Error, PartialEq, Eq)]
pub enum ParseError {
    #[error("no message of the contract is published on {subject:?}")]
    UnknownSubject { subject: String },
    #[error("body on {subject} does not match the contract: {detail}")]
    InvalidBody {
        subject: &'static str,
        detail: String,
    },
}

fn parse_body<T: Message>(body: &[u8]) -> Result<T, ParseError> {
    serde_json::from_slice(body).map_err(|e| ParseError::InvalidBody {
        subject: T::SUBJECT,
        detail: e.to_string(),
    })
}

fn unknown_subject(subject: &str) -> ParseError {
    ParseError::UnknownSubject {
        // The subject comes from the network: keep the error (and logs) bounded.
        subject: subject.chars().take(200).collect(),
    }
}

macro_rules! each {
    ($enum:ident, $value:expr, $m:ident => $body:expr, [$($variant:ident),* $(,)?]) => {
        match $value {
            $($enum::$variant($m) => $body,)*
        }
    };
}

macro_rules! each_command {
    ($value:expr, $m:ident => $body:expr) => {
        each!(ParticipantCommand, $value, $m => $body, [
            ReserveStock, ReleaseStock, CommitStock, AuthorizePayment, VoidPayment,
            CapturePayment, RefundPayment,
        ])
    };
}

macro_rules! each_reply {
    ($value:expr, $m:ident => $body:expr) => {
        each!(Reply, $value, $m => $body, [
            StockReserved, StockRejected, StockReleased, StockCommitted, PaymentAuthorized,
            PaymentDeclined, PaymentVoided, PaymentCaptured, PaymentCaptureFailed,
            PaymentRefunded,
        ])
    };
}

/// Any command the saga sends to a participant.
///
/// Its own serde form (externally tagged) is for storing it inside saga state; on the wire only
/// the body is sent ([`ParticipantCommand::to_json`]) and the subject says which command it is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ParticipantCommand {
    ReserveStock(ReserveStock),
    ReleaseStock(ReleaseStock),
    CommitStock(CommitStock),
    AuthorizePayment(AuthorizePayment),
    VoidPayment(VoidPayment),
    CapturePayment(CapturePayment),
    RefundPayment(RefundPayment),
}

impl ParticipantCommand {
    /// Every command subject suffix, in [`Step::ALL`] order.
    pub const SUBJECTS: [&'static str; 7] = [
        Step::Reserve.subject(),
        Step::Release.subject(),
        Step::Commit.subject(),
        Step::Authorize.subject(),
        Step::Void.subject(),
        Step::Capture.subject(),
        Step::Refund.subject(),
    ];

    /// The saga step this command performs.
    pub fn step(&self) -> Step {
        match self {
            Self::ReserveStock(_) => Step::Reserve,
            Self::ReleaseStock(_) => Step::Release,
            Self::CommitStock(_) => Step::Commit,
            Self::AuthorizePayment(_) => Step::Authorize,
            Self::VoidPayment(_) => Step::Void,
            Self::CapturePayment(_) => Step::Capture,
            Self::RefundPayment(_) => Step::Refund,
        }
    }

    /// Subject suffix to publish on.
    pub fn subject(&self) -> &'static str {
        self.step().subject()
    }

    /// The dedupe key (`Nats-Msg-Id` for participants, `in_reply_to` of the answer).
    pub fn message_id(&self) -> MessageId {
        each_command!(self, m => m.message_id)
    }

    /// The saga that sends the command.
    pub fn saga_id(&self) -> SagaId {
        each_command!(self, m => m.saga_id)
    }

    /// The order the command is about.
    pub fn order_id(&self) -> OrderId {
        each_command!(self, m => m.order_id)
    }

    /// The JSON body as published (the command's fields only, no tag).
    pub fn to_json(&self) -> serde_json::Result<Vec<u8>> {
        each_command!(self, m => serde_json::to_vec(m))
    }

    /// Reads a command from its subject suffix and body (what a participant does).
    pub fn parse(subject: &str, body: &[u8]) -> Result<Self, ParseError> {
        let step = Step::ALL
            .into_iter()
            .find(|s| s.subject() == subject)
            .ok_or_else(|| unknown_subject(subject))?;
        Ok(match step {
            Step::Reserve => Self::ReserveStock(parse_body(body)?),
            Step::Release => Self::ReleaseStock(parse_body(body)?),
            Step::Commit => Self::CommitStock(parse_body(body)?),
            Step::Authorize => Self::AuthorizePayment(parse_body(body)?),
            Step::Void => Self::VoidPayment(parse_body(body)?),
            Step::Capture => Self::CapturePayment(parse_body(body)?),
            Step::Refund => Self::RefundPayment(parse_body(body)?),
        })
    }
}

macro_rules! from_message {
    ($enum:ident: $($variant:ident),* $(,)?) => {
        $(
            impl From<$variant> for $enum {
                fn from(m: $variant) -> Self {
                    Self::$variant(m)
                }
            }
        )*
    };
}

from_message!(ParticipantCommand: ReserveStock, ReleaseStock, CommitStock, AuthorizePayment,
    VoidPayment, CapturePayment, RefundPayment);

/// Any reply from a participant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Reply {
    StockReserved(StockReserved),
    StockRejected(StockRejected),
    StockReleased(StockReleased),
    StockCommitted(StockCommitted),
    PaymentAuthorized(PaymentAuthorized),
    PaymentDeclined(PaymentDeclined),
    PaymentVoided(PaymentVoided),
    PaymentCaptured(PaymentCaptured),
    PaymentCaptureFailed(PaymentCaptureFailed),
    PaymentRefunded(PaymentRefunded),
}

from_message!(Reply: StockReserved, StockRejected, StockReleased, StockCommitted,
    PaymentAuthorized, PaymentDeclined, PaymentVoided, PaymentCaptured, PaymentCaptureFailed,
    PaymentRefunded);

impl Reply {
    /// Every reply subject suffix, in [`ReplyKind::ALL`] order.
    pub const SUBJECTS: [&'static str; 10] = [
        ReplyKind::StockReserved.subject(),
        ReplyKind::StockRejected.subject(),
        ReplyKind::StockReleased.subject(),
        ReplyKind::StockCommitted.subject(),
        ReplyKind::PaymentAuthorized.subject(),
        ReplyKind::PaymentDeclined.subject(),
        ReplyKind::PaymentVoided.subject(),
        ReplyKind::PaymentCaptured.subject(),
        ReplyKind::PaymentCaptureFailed.subject(),
        ReplyKind::PaymentRefunded.subject(),
    ];

    /// Reads a reply from the subject suffix it arrived on and its JSON body. Unknown fields are
    /// accepted (the contract grows by adding fields); missing or mistyped ones are not.
    pub fn parse(subject: &str, body: &[u8]) -> Result<Self, ParseError> {
        let kind = ReplyKind::from_subject(subject).ok_or_else(|| unknown_subject(subject))?;
        Ok(match kind {
            ReplyKind::StockReserved => Self::StockReserved(parse_body(body)?),
            ReplyKind::StockRejected => Self::StockRejected(parse_body(body)?),
            ReplyKind::StockReleased => Self::StockReleased(parse_body(body)?),
            ReplyKind::StockCommitted => Self::StockCommitted(parse_body(body)?),
            ReplyKind::PaymentAuthorized => Self::PaymentAuthorized(parse_body(body)?),
            ReplyKind::PaymentDeclined => Self::PaymentDeclined(parse_body(body)?),
            ReplyKind::PaymentVoided => Self::PaymentVoided(parse_body(body)?),
            ReplyKind::PaymentCaptured => Self::PaymentCaptured(parse_body(body)?),
            ReplyKind::PaymentCaptureFailed => Self::PaymentCaptureFailed(parse_body(body)?),
            ReplyKind::PaymentRefunded => Self::PaymentRefunded(parse_body(body)?),
        })
    }

    /// Which reply this is.
    pub fn kind(&self) -> ReplyKind {
        match self {
            Self::StockReserved(_) => ReplyKind::StockReserved,
            Self::StockRejected(_) => ReplyKind::StockRejected,
            Self::StockReleased(_) => ReplyKind::StockReleased,
            Self::StockCommitted(_) => ReplyKind::StockCommitted,
            Self::PaymentAuthorized(_) => ReplyKind::PaymentAuthorized,
            Self::PaymentDeclined(_) => ReplyKind::PaymentDeclined,
            Self::PaymentVoided(_) => ReplyKind::PaymentVoided,
            Self::PaymentCaptured(_) => ReplyKind::PaymentCaptured,
            Self::PaymentCaptureFailed(_) => ReplyKind::PaymentCaptureFailed,
            Self::PaymentRefunded(_) => ReplyKind::PaymentRefunded,
        }
    }

    /// Subject suffix the reply is published on.
    pub fn subject(&self) -> &'static str {
        self.kind().subject()
    }

    /// The reply's own id (dedupe key).
    pub fn message_id(&self) -> MessageId {
        each_reply!(self, m => m.message_id)
    }

    /// The saga the reply is addressed to.
    pub fn saga_id(&self) -> SagaId {
        each_reply!(self, m => m.saga_id)
    }

    /// The order the reply is about.
    pub fn order_id(&self) -> OrderId {
        each_reply!(self, m => m.order_id)
    }

    /// `message_id` of the command this answers.
    pub fn in_reply_to(&self) -> MessageId {
        each_reply!(self, m => m.in_reply_to)
    }

    /// The amount the participant echoed, if it did (`authorized` and `captured` always do).
    pub fn amount_minor(&self) -> Option<i64> {
        match self {
            Self::PaymentAuthorized(m) => Some(m.amount_minor),
            Self::PaymentVoided(m) => m.amount_minor,
            Self::PaymentCaptured(m) => Some(m.amount_minor),
            Self::PaymentRefunded(m) => m.amount_minor,
            _ => None,
        }
    }

    /// The currency the participant echoed (`authorized` and `captured` must).
    pub fn currency(&self) -> Option<Currency> {
        match self {
            Self::PaymentAuthorized(m) => Some(m.currency),
            Self::PaymentCaptured(m) => Some(m.currency),
            _ => None,
        }
    }

    /// The JSON body as published.
    pub fn to_json(&self) -> serde_json::Result<Vec<u8>> {
        each_reply!(self, m => serde_json::to_vec(m))
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use order_domain::{CustomerId, Quantity, Sku, StoreId};
    use serde_json::Value;
    use uuid::Uuid;

    use super::*;
    use crate::messages::ids::{PaymentId, ReservationId};
    use crate::messages::inventory::{StockItem, UnavailableItem};

    fn saga() -> SagaId {
        SagaId::from_uuid(Uuid::from_u128(1))
    }
    fn order() -> OrderId {
        OrderId::from_uuid(Uuid::from_u128(1))
    }
    fn mid(n: u128) -> MessageId {
        MessageId::from_uuid(Uuid::from_u128(n))
    }

    fn keys<T: Serialize>(message: &T) -> BTreeSet<String> {
        match serde_json::to_value(message).unwrap() {
            Value::Object(map) => map.keys().cloned().collect(),
            other => panic!("not an object: {other}"),
        }
    }

    fn set(names: &[&str]) -> BTreeSet<String> {
        names.iter().map(|s| (*s).to_owned()).collect()
    }

    const COMMAND_HEADER: [&str; 3] = ["message_id", "saga_id", "order_id"];
    const REPLY_HEADER: [&str; 4] = ["message_id", "saga_id", "order_id", "in_reply_to"];

    fn with(header: &[&str], fields: &[&str]) -> BTreeSet<String> {
        set(&[header, fields].concat())
    }

    fn commands() -> Vec<ParticipantCommand> {
        let reservation = ReservationId::new("res-1");
        let payment = PaymentId::new("pay-1");
        vec![
            ReserveStock {
                message_id: mid(10),
                saga_id: saga(),
                order_id: order(),
                store_id: StoreId::from_uuid(Uuid::from_u128(2)),
                items: vec![StockItem {
                    sku: Sku::parse("TEA").unwrap(),
                    quantity: Quantity::parse(2).unwrap(),
                }],
            }
            .into(),
            ReleaseStock {
                message_id: mid(11),
                saga_id: saga(),
                order_id: order(),
                reservation_id: reservation.clone(),
            }
            .into(),
            CommitStock {
                message_id: mid(12),
                saga_id: saga(),
                order_id: order(),
                reservation_id: reservation,
            }
            .into(),
            AuthorizePayment {
                message_id: mid(13),
                saga_id: saga(),
                order_id: order(),
                customer_id: CustomerId::parse("cust-1").unwrap(),
                amount_minor: 900,
                currency: Currency::parse("EUR").unwrap(),
            }
            .into(),
            VoidPayment {
                message_id: mid(14),
                saga_id: saga(),
                order_id: order(),
                payment_id: payment.clone(),
                amount_minor: 900,
            }
            .into(),
            CapturePayment {
                message_id: mid(15),
                saga_id: saga(),
                order_id: order(),
                payment_id: payment.clone(),
                amount_minor: 900,
            }
            .into(),
            RefundPayment {
                message_id: mid(16),
                saga_id: saga(),
                order_id: order(),
                payment_id: payment,
                amount_minor: 900,
            }
            .into(),
        ]
    }

    fn replies() -> Vec<Reply> {
        let (m, s, o, r) = (mid(20), saga(), order(), mid(10));
        vec![
            StockReserved {
                message_id: m,
                saga_id: s,
                order_id: o,
                in_reply_to: r,
                reservation_id: ReservationId::new("res-1"),
            }
            .into(),
            StockRejected {
                message_id: m,
                saga_id: s,
                order_id: o,
                in_reply_to: r,
                reason: "out of stock".into(),
                unavailable: vec![UnavailableItem {
                    sku: "TEA".into(),
                    requested: 2,
                    available: 1,
                }],
            }
            .into(),
            StockReleased {
                message_id: m,
                saga_id: s,
                order_id: o,
                in_reply_to: r,
            }
            .into(),
            StockCommitted {
                message_id: m,
                saga_id: s,
                order_id: o,
                in_reply_to: r,
            }
            .into(),
            PaymentAuthorized {
                message_id: m,
                saga_id: s,
                order_id: o,
                in_reply_to: r,
                payment_id: PaymentId::new("pay-1"),
                amount_minor: 900,
                currency: Currency::parse("EUR").unwrap(),
            }
            .into(),
            PaymentDeclined {
                message_id: m,
                saga_id: s,
                order_id: o,
                in_reply_to: r,
                reason: "insufficient funds".into(),
            }
            .into(),
            PaymentVoided {
                message_id: m,
                saga_id: s,
                order_id: o,
                in_reply_to: r,
                amount_minor: None,
            }
            .into(),
            PaymentCaptured {
                message_id: m,
                saga_id: s,
                order_id: o,
                in_reply_to: r,
                amount_minor: 900,
                currency: Currency::parse("EUR").unwrap(),
            }
            .into(),
            PaymentCaptureFailed {
                message_id: m,
                saga_id: s,
                order_id: o,
                in_reply_to: r,
                reason: "card expired".into(),
            }
            .into(),
            PaymentRefunded {
                message_id: m,
                saga_id: s,
                order_id: o,
                in_reply_to: r,
                amount_minor: None,
            }
            .into(),
        ]
    }

    fn command_json(c: &ParticipantCommand) -> Value {
        serde_json::from_slice(&c.to_json().unwrap()).unwrap()
    }

    fn reply_json(r: &Reply) -> Value {
        serde_json::from_slice(&r.to_json().unwrap()).unwrap()
    }

    fn object_keys(v: &Value) -> BTreeSet<String> {
        v.as_object().unwrap().keys().cloned().collect()
    }

    #[test]
    fn command_bodies_carry_exactly_the_documented_fields() {
        let expected = [
            with(&COMMAND_HEADER, &["store_id", "items"]),
            with(&COMMAND_HEADER, &["reservation_id"]),
            with(&COMMAND_HEADER, &["reservation_id"]),
            with(
                &COMMAND_HEADER,
                &["customer_id", "amount_minor", "currency"],
            ),
            with(&COMMAND_HEADER, &["payment_id", "amount_minor"]),
            with(&COMMAND_HEADER, &["payment_id", "amount_minor"]),
            with(&COMMAND_HEADER, &["payment_id", "amount_minor"]),
        ];
        let commands = commands();
        assert_eq!(commands.len(), expected.len());
        for (command, expected) in commands.iter().zip(expected) {
            assert_eq!(
                object_keys(&command_json(command)),
                expected,
                "{}",
                command.subject()
            );
        }
        let reserve = command_json(&commands[0]);
        assert_eq!(keys(&reserve["items"][0]), set(&["sku", "quantity"]));
        assert_eq!(reserve["items"][0]["quantity"], Value::from(2));
        assert_eq!(reserve["items"][0]["sku"], Value::from("TEA"));
        let authorize = command_json(&commands[3]);
        assert_eq!(authorize["amount_minor"], Value::from(900));
        assert_eq!(authorize["currency"], Value::from("EUR"));
        assert_eq!(
            authorize["message_id"],
            Value::from("00000000-0000-0000-0000-00000000000d")
        );
    }

    #[test]
    fn reply_bodies_carry_exactly_the_documented_fields() {
        let expected = [
            with(&REPLY_HEADER, &["reservation_id"]),
            with(&REPLY_HEADER, &["reason", "unavailable"]),
            with(&REPLY_HEADER, &[]),
            with(&REPLY_HEADER, &[]),
            with(&REPLY_HEADER, &["payment_id", "amount_minor", "currency"]),
            with(&REPLY_HEADER, &["reason"]),
            // the optional amount echo, absent because it was not set
            with(&REPLY_HEADER, &[]),
            with(&REPLY_HEADER, &["amount_minor", "currency"]),
            with(&REPLY_HEADER, &["reason"]),
            with(&REPLY_HEADER, &[]),
        ];
        let replies = replies();
        assert_eq!(replies.len(), expected.len());
        for (reply, expected) in replies.iter().zip(expected) {
            assert_eq!(
                object_keys(&reply_json(reply)),
                expected,
                "{}",
                reply.subject()
            );
        }
        let rejected = reply_json(&replies[1]);
        assert_eq!(
            keys(&rejected["unavailable"][0]),
            set(&["sku", "requested", "available"])
        );
    }

    #[test]
    fn subjects_are_the_documented_ones() {
        assert_eq!(
            ParticipantCommand::SUBJECTS,
            [
                "inventory.commands.reserve",
                "inventory.commands.release",
                "inventory.commands.commit",
                "payment.commands.authorize",
                "payment.commands.void",
                "payment.commands.capture",
                "payment.commands.refund",
            ]
        );
        assert_eq!(
            Reply::SUBJECTS,
            [
                "inventory.replies.reserved",
                "inventory.replies.rejected",
                "inventory.replies.released",
                "inventory.replies.committed",
                "payment.replies.authorized",
                "payment.replies.declined",
                "payment.replies.voided",
                "payment.replies.captured",
                "payment.replies.capture_failed",
                "payment.replies.refunded",
            ]
        );
        let command_subjects: Vec<_> = commands().iter().map(ParticipantCommand::subject).collect();
        assert_eq!(command_subjects, ParticipantCommand::SUBJECTS);
        let reply_subjects: Vec<_> = replies().iter().map(Reply::subject).collect();
        assert_eq!(reply_subjects, Reply::SUBJECTS);
        // the per-type constant and the enum agree
        assert_eq!(ReserveStock::SUBJECT, "inventory.commands.reserve");
        assert_eq!(
            PaymentCaptureFailed::SUBJECT,
            "payment.replies.capture_failed"
        );
    }

    #[test]
    fn commands_and_replies_round_trip_through_subject_and_body() {
        for command in commands() {
            let body = command.to_json().unwrap();
            assert_eq!(
                ParticipantCommand::parse(command.subject(), &body),
                Ok(command)
            );
        }
        for reply in replies() {
            let body = reply.to_json().unwrap();
            assert_eq!(Reply::parse(reply.subject(), &body), Ok(reply));
        }
    }

    #[test]
    fn replies_accept_added_fields_and_an_omitted_unavailable_list() {
        let body = br#"{"message_id":"00000000-0000-0000-0000-000000000014",
            "saga_id":"00000000-0000-0000-0000-000000000001",
            "order_id":"00000000-0000-0000-0000-000000000001",
            "in_reply_to":"00000000-0000-0000-0000-00000000000a",
            "reason":"sold out","warehouse":"north"}"#;
        let Ok(Reply::StockRejected(rejected)) = Reply::parse("inventory.replies.rejected", body)
        else {
            panic!("not parsed");
        };
        assert_eq!(rejected.reason, "sold out");
        assert!(rejected.unavailable.is_empty());
    }

    #[test]
    fn a_reply_on_an_unknown_subject_or_with_a_wrong_body_is_a_typed_error() {
        assert_eq!(
            Reply::parse("inventory.replies.lost", b"{}"),
            Err(ParseError::UnknownSubject {
                subject: "inventory.replies.lost".into()
            })
        );
        // a prefix must be stripped by the caller
        assert!(matches!(
            Reply::parse("test1.inventory.replies.reserved", b"{}"),
            Err(ParseError::UnknownSubject { .. })
        ));
        // a released body on the reserved subject lacks reservation_id
        let released = replies()[2].to_json().unwrap();
        assert!(matches!(
            Reply::parse("inventory.replies.reserved", &released),
            Err(ParseError::InvalidBody {
                subject: "inventory.replies.reserved",
                ..
            })
        ));
        assert!(matches!(
            Reply::parse("payment.replies.authorized", b"not json"),
            Err(ParseError::InvalidBody { .. })
        ));
        // an authorization or capture that does not say how much, and in what, is not one
        for (subject, reply) in [
            ("payment.replies.authorized", &replies()[4]),
            ("payment.replies.captured", &replies()[7]),
        ] {
            for field in ["amount_minor", "currency"] {
                let mut body = reply_json(reply);
                body.as_object_mut().unwrap().remove(field);
                assert!(
                    matches!(
                        Reply::parse(subject, body.to_string().as_bytes()),
                        Err(ParseError::InvalidBody { .. })
                    ),
                    "{subject} without {field}"
                );
            }
        }
        assert!(matches!(
            ParticipantCommand::parse("payment.commands.steal", b"{}"),
            Err(ParseError::UnknownSubject { .. })
        ));
    }
}
