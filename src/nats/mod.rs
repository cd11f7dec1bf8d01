//! NATS JetStream I/O (DESIGN §8): the connection, stream set-up, subject naming with the
//! optional prefix, message headers, and publish-with-ack. Everything durable awaits its
//! JetStream ack; core NATS publishes are at-most-once and are never used for contract traffic.

pub mod headers;
pub mod metrics;

use std::time::Duration;

use anyhow::Context as _;
use async_nats::jetstream::{self, stream};
use bytes::Bytes;

/// Stream of every order event (`orders.events.<order_id>.<EventType>`).
pub const ORDER_EVENTS: &str = "ORDER_EVENTS";
/// Stream of participant commands (`inventory.commands.*`, `payment.commands.*`).
pub const SAGA_COMMANDS: &str = "SAGA_COMMANDS";
/// Stream of participant replies (`inventory.replies.*`, `payment.replies.*`).
pub const SAGA_REPLIES: &str = "SAGA_REPLIES";
/// Replies that could never be processed (`dead.replies.>`), kept for inspection.
pub const DEAD_LETTERS: &str = "DEAD_LETTERS";
/// Every stream of a deployment (each named with its prefix, see [`Nats::stream_name`]).
pub const STREAMS: [&str; 4] = [ORDER_EVENTS, SAGA_COMMANDS, SAGA_REPLIES, DEAD_LETTERS];

/// JetStream de-duplicates by `Nats-Msg-Id` within this window. It must exceed the longest time
/// a relay can take to re-publish after a crash (restart + catch-up); 10 minutes, deliberately
/// above the 2-minute default.
pub const DUPLICATE_WINDOW: Duration = Duration::from_secs(600);

/// A connection plus the subject prefix every name is built with.
#[derive(Clone, Debug)]
pub struct Nats {
    pub client: async_nats::Client,
    pub js: jetstream::Context,
    prefix: String,
}

impl Nats {
    /// Connects (retrying in the background on later disconnects).
    pub async fn connect(url: &str, prefix: &str) -> anyhow::Result<Self> {
        let client = async_nats::ConnectOptions::new()
            .name("order-service")
            .retry_on_initial_connect()
            .connection_timeout(Duration::from_secs(5))
            .connect(url)
            .await
            .with_context(|| format!("connecting to NATS at {url}"))?;
        // Waits for the first connection, so start-up fails clearly when NATS is unreachable.
        client
            .flush()
            .await
            .with_context(|| format!("NATS at {url} did not answer"))?;
        Ok(Self::new(client, prefix))
    }

    pub fn new(client: async_nats::Client, prefix: &str) -> Self {
        let js = jetstream::new(client.clone());
        Self {
            client,
            js,
            prefix: prefix.to_owned(),
        }
    }

    /// `prefix + subject`.
    pub fn subject(&self, subject: &str) -> String {
        format!("{}{subject}", self.prefix)
    }

    /// The subject without the prefix, if it has it.
    pub fn unprefixed<'a>(&self, subject: &'a str) -> Option<&'a str> {
        subject.strip_prefix(self.prefix.as_str())
    }

    /// Stream names cannot contain dots: `t1.` + `ORDER_EVENTS` → `T1_ORDER_EVENTS`.
    pub fn stream_name(&self, base: &str) -> String {
        Self::stream_name_for(&self.prefix, base)
    }

    /// [`Nats::stream_name`] for a given prefix.
    pub fn stream_name_for(prefix: &str, base: &str) -> String {
        let p: String = prefix
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() {
                    c.to_ascii_uppercase()
                } else {
                    '_'
                }
            })
            .collect();
        format!("{p}{base}")
    }

    /// Creates the streams, or updates them to this configuration; safe to run on every start.
    pub async fn ensure_streams(&self) -> anyhow::Result<()> {
        for (base, subjects) in [
            (ORDER_EVENTS, vec!["orders.events.>"]),
            (
                SAGA_COMMANDS,
                vec!["inventory.commands.*", "payment.commands.*"],
            ),
            (
                SAGA_REPLIES,
                vec!["inventory.replies.*", "payment.replies.*"],
            ),
            (DEAD_LETTERS, vec!["dead.>"]),
        ] {
            let config = stream::Config {
                name: self.stream_name(base),
                subjects: subjects.iter().map(|s| self.subject(s)).collect(),
                duplicate_window: DUPLICATE_WINDOW,
                storage: stream::StorageType::File,
                ..Default::default()
            };
            self.js
                .create_or_update_stream(config)
                .await
                .with_context(|| {
                    format!("creating or updating stream {}", self.stream_name(base))
                })?;
        }
        Ok(())
    }

    /// Publishes to JetStream and waits for the ack (the message is stored, or was a
    /// duplicate of one that is).
    pub async fn publish(
        &self,
        subject: String,
        headers: async_nats::HeaderMap,
        payload: Bytes,
    ) -> anyhow::Result<jetstream::publish::PublishAck> {
        let ack = self
            .js
            .publish_with_headers(subject.clone(), headers, payload)
            .await
            .with_context(|| format!("publishing to {subject}"))?
            .await
            .with_context(|| format!("JetStream did not ack {subject}"))?;
        Ok(ack)
    }
}
