//! The rig of the simulator tests: a [`Harness`] that starts the simulator on its own subject
//! prefix and streams of a real nats-server, publishes contract commands like the relay does, and
//! reads the replies back from the `SAGA_REPLIES` stream (what the service sees) and from a core
//! subscription (every publish, including those JetStream de-duplicated); and one builder per
//! contract command.

use std::collections::HashMap;
use std::time::Duration;

use async_nats::jetstream::consumer::{pull, AckPolicy};
use async_nats::HeaderMap;
use futures::StreamExt as _;
use order_domain::{Currency, CustomerId, OrderId, Quantity, Sku, StoreId};
use order_sagas::messages::{
    AuthorizePayment, CapturePayment, CommitStock, MessageId, ParticipantCommand, PaymentId,
    RefundPayment, ReleaseStock, Reply, ReservationId, ReserveStock, SagaId, StockItem,
    VoidPayment,
};
use uuid::Uuid;

use crate::nats::{SAGA_REPLIES, STREAMS};
use crate::simulator::*;

/// How long to wait for a reply that should come.
pub(super) const REPLY_WAIT: Duration = Duration::from_secs(10);
/// How long to wait to be reasonably sure a reply is not coming.
pub(super) const QUIET_WAIT: Duration = Duration::from_millis(1_500);

pub(super) struct Harness {
    pub(super) nats: Nats,
    pub(super) simulator: Option<Simulator>,
    /// Ephemeral consumer on `SAGA_REPLIES`: what the service would read.
    pub(super) stored: pull::Stream,
    /// Core subscription on every reply subject: every publish, duplicates included.
    pub(super) published: async_nats::Subscriber,
}

/// A reply as read back, with its headers.
pub(super) struct Received {
    pub(super) reply: Reply,
    pub(super) headers: HeaderMap,
    pub(super) body: Vec<u8>,
}

impl Received {
    pub(super) fn header(&self, name: &str) -> Option<&str> {
        headers::get(Some(&self.headers), name)
    }
}

pub(super) async fn harness(config: SimulatorConfig) -> Harness {
    let url = std::env::var("NATS_URL").unwrap_or_else(|_| "nats://127.0.0.1:4222".to_owned());
    let prefix = format!("simtest{}.", Uuid::new_v4().simple());
    // Small streams: JetStream reserves each stream's `max_bytes` on the shared server.
    let bounds = crate::config::StreamLimits {
        max_age_secs: 3_600,
        max_bytes: 8 << 20,
    };
    let settings = crate::config::NatsSettings {
        prefix,
        streams: crate::config::StreamsSettings {
            order_events: bounds,
            saga_commands: bounds,
            saga_replies: bounds,
            dead_letters: bounds,
            replicas: 1,
        },
        ..crate::config::Settings::default().nats
    };
    let nats = tokio::time::timeout(Duration::from_secs(10), Nats::connect(&url, &settings))
        .await
        .unwrap_or_else(|_| panic!("no NATS at {url} (set NATS_URL)"))
        .expect("connecting to NATS");
    nats.ensure_streams(&settings.streams)
        .await
        .expect("creating the streams");
    let published = nats
        .client
        .subscribe(nats.subject("*.replies.*"))
        .await
        .expect("subscribing to replies");
    let stored = nats
        .js
        .get_stream(nats.stream_name(SAGA_REPLIES))
        .await
        .expect("the replies stream")
        .create_consumer(pull::Config {
            ack_policy: AckPolicy::None,
            inactive_threshold: Duration::from_secs(60),
            ..Default::default()
        })
        .await
        .expect("an ephemeral replies consumer")
        .messages()
        .await
        .expect("pulling replies");
    let simulator = Simulator::start(nats.clone(), config)
        .await
        .expect("starting the simulator");
    Harness {
        nats,
        simulator: Some(simulator),
        stored,
        published,
    }
}

impl Harness {
    pub(super) fn simulator(&self) -> &Simulator {
        self.simulator.as_ref().expect("the simulator is running")
    }

    pub(super) fn books(&self) -> Books {
        self.simulator().books()
    }

    /// Publishes `command` as the relay does; every call is a new JetStream message (a fresh
    /// `Nats-Msg-Id`, as a re-send after a timeout would be), the body's `message_id` is the
    /// command's.
    pub(super) async fn send(&self, command: impl Into<ParticipantCommand>) -> MessageId {
        self.send_traced(command, None).await
    }

    pub(super) async fn send_traced(
        &self,
        command: impl Into<ParticipantCommand>,
        traceparent: Option<&str>,
    ) -> MessageId {
        let command = command.into();
        let id = Uuid::new_v4().to_string();
        let headers = headers::build(&Envelope {
            id: &id,
            kind: command.subject(),
            source: headers::SOURCE,
            time: Utc::now(),
            traceparent,
        });
        self.nats
            .publish(
                self.nats.subject(command.subject()),
                headers,
                command.to_json().unwrap().into(),
            )
            .await
            .expect("publishing a command");
        command.message_id()
    }

    /// Publishes raw bytes on a command subject (suffix).
    pub(super) async fn send_raw(&self, subject: &str, body: &'static [u8]) {
        let id = Uuid::new_v4().to_string();
        let headers = headers::build(&Envelope {
            id: &id,
            kind: subject,
            source: headers::SOURCE,
            time: Utc::now(),
            traceparent: None,
        });
        self.nats
            .publish(self.nats.subject(subject), headers, body.into())
            .await
            .expect("publishing raw bytes");
    }

    /// The next reply stored in `SAGA_REPLIES`.
    pub(super) async fn reply(&mut self) -> Received {
        self.try_reply(REPLY_WAIT)
            .await
            .expect("a reply within the wait")
    }

    pub(super) async fn try_reply(&mut self, wait: Duration) -> Option<Received> {
        let message = tokio::time::timeout(wait, self.stored.next())
            .await
            .ok()?
            .expect("the replies consumer ended")
            .expect("reading a reply");
        Some(self.received(&message.subject, message.headers.clone(), &message.payload))
    }

    /// The next reply published on any reply subject (core NATS).
    pub(super) async fn published(&mut self, wait: Duration) -> Option<Received> {
        let message = tokio::time::timeout(wait, self.published.next())
            .await
            .ok()?
            .expect("the reply subscription ended");
        Some(self.received(&message.subject, message.headers.clone(), &message.payload))
    }

    pub(super) fn received(
        &self,
        subject: &str,
        headers: Option<HeaderMap>,
        body: &[u8],
    ) -> Received {
        let suffix = self.nats.unprefixed(subject).expect("a prefixed subject");
        Received {
            reply: Reply::parse(suffix, body).expect("a contract reply"),
            headers: headers.expect("reply headers"),
            body: body.to_vec(),
        }
    }

    pub(super) async fn reserved(&mut self, command: ReserveStock) -> ReservationId {
        self.send(command).await;
        match self.reply().await.reply {
            Reply::StockReserved(r) => r.reservation_id,
            other => panic!("not reserved: {other:?}"),
        }
    }

    pub(super) async fn authorized(&mut self, command: AuthorizePayment) -> PaymentId {
        self.send(command).await;
        match self.reply().await.reply {
            Reply::PaymentAuthorized(r) => r.payment_id,
            other => panic!("not authorized: {other:?}"),
        }
    }

    pub(super) async fn consumer_info(
        &self,
        participant: Participant,
    ) -> async_nats::jetstream::consumer::Info {
        self.nats
            .js
            .get_stream(self.nats.stream_name(SAGA_COMMANDS))
            .await
            .unwrap()
            .consumer_info(participant.durable_name(&self.nats))
            .await
            .unwrap()
    }

    /// Stops the simulator, deletes the test's streams and returns the final books.
    pub(super) async fn finish(mut self) -> Books {
        let books = match self.simulator.take() {
            Some(simulator) => simulator.stop().await.expect("stopping the simulator"),
            None => Books::default(),
        };
        for base in STREAMS {
            self.nats
                .js
                .delete_stream(self.nats.stream_name(base))
                .await
                .expect("deleting a test stream");
        }
        books
    }
}

// ---- commands ------------------------------------------------------------------------------

pub(super) fn order() -> OrderId {
    OrderId::from_uuid(Uuid::new_v4())
}
pub(super) fn fresh() -> MessageId {
    MessageId::from_uuid(Uuid::new_v4())
}
pub(super) fn reserve(order_id: OrderId, lines: &[(&str, i64)]) -> ReserveStock {
    ReserveStock {
        message_id: fresh(),
        saga_id: SagaId::for_order(order_id),
        order_id,
        store_id: StoreId::from_uuid(Uuid::from_u128(7)),
        items: lines
            .iter()
            .map(|(sku, quantity)| StockItem {
                sku: Sku::parse(*sku).unwrap(),
                quantity: Quantity::parse(*quantity).unwrap(),
            })
            .collect(),
    }
}
pub(super) fn release(order_id: OrderId, reservation_id: &ReservationId) -> ReleaseStock {
    ReleaseStock {
        message_id: fresh(),
        saga_id: SagaId::for_order(order_id),
        order_id,
        reservation_id: reservation_id.clone(),
    }
}
pub(super) fn commit(order_id: OrderId, reservation_id: &ReservationId) -> CommitStock {
    CommitStock {
        message_id: fresh(),
        saga_id: SagaId::for_order(order_id),
        order_id,
        reservation_id: reservation_id.clone(),
    }
}
pub(super) fn authorize(order_id: OrderId, amount_minor: i64) -> AuthorizePayment {
    AuthorizePayment {
        message_id: fresh(),
        saga_id: SagaId::for_order(order_id),
        order_id,
        customer_id: CustomerId::parse("cust-1").unwrap(),
        amount_minor,
        currency: Currency::parse("EUR").unwrap(),
    }
}
pub(super) fn void(order_id: OrderId, payment_id: &PaymentId, amount_minor: i64) -> VoidPayment {
    VoidPayment {
        message_id: fresh(),
        saga_id: SagaId::for_order(order_id),
        order_id,
        payment_id: payment_id.clone(),
        amount_minor,
    }
}
pub(super) fn capture(
    order_id: OrderId,
    payment_id: &PaymentId,
    amount_minor: i64,
) -> CapturePayment {
    CapturePayment {
        message_id: fresh(),
        saga_id: SagaId::for_order(order_id),
        order_id,
        payment_id: payment_id.clone(),
        amount_minor,
    }
}
pub(super) fn refund(
    order_id: OrderId,
    payment_id: &PaymentId,
    amount_minor: i64,
) -> RefundPayment {
    RefundPayment {
        message_id: fresh(),
        saga_id: SagaId::for_order(order_id),
        order_id,
        payment_id: payment_id.clone(),
        amount_minor,
    }
}
pub(super) fn stock(levels: &[(&str, u64)]) -> HashMap<String, u64> {
    levels.iter().map(|(s, n)| ((*s).to_owned(), *n)).collect()
}
