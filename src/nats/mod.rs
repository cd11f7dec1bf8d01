//! NATS JetStream I/O (DESIGN §8): the connection (`connect`: as which identity, never
//! printing its credentials), stream set-up with bounds, subject naming with the optional
//! prefix, message headers, and publish-with-ack. Everything durable awaits its JetStream ack;
//! core NATS publishes are at-most-once and are never used for contract traffic.

pub mod connect;
pub mod headers;
pub mod metrics;

use std::time::Duration;

use anyhow::Context as _;
use async_nats::jetstream::{self, stream};
use bytes::Bytes;

use crate::config::{NatsCredentials, NatsSettings, StreamLimits, StreamsSettings};

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

/// The identity the service connects as (`deploy/nats/users.conf`).
pub const SERVICE_IDENTITY: &str = "order-service";

/// A connection plus the subject prefix every name is built with.
#[derive(Clone, Debug)]
pub struct Nats {
    pub client: async_nats::Client,
    pub js: jetstream::Context,
    prefix: String,
}

impl Nats {
    /// Connects as the service (`APP__NATS__*` credentials), retrying in the background on
    /// later disconnects. Fails within [`connect::CONNECT_TIMEOUT`] when no server answers.
    pub async fn connect(url: &str, settings: &NatsSettings) -> anyhow::Result<Self> {
        Self::connect_as(url, settings, SERVICE_IDENTITY, &settings.credentials).await
    }

    /// Connects as another identity (a simulated participant) with its own credentials, on the
    /// deployment's prefix and TLS settings.
    pub async fn connect_as(
        url: &str,
        settings: &NatsSettings,
        identity: &str,
        credentials: &NatsCredentials,
    ) -> anyhow::Result<Self> {
        let client =
            connect::connect(url, identity, credentials, settings.tls_ca_file.as_deref()).await?;
        Ok(Self::new(client, &settings.prefix))
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

    /// Creates the streams, or updates them to this configuration (subjects, bounds, replicas);
    /// safe to run on every start.
    pub async fn ensure_streams(&self, limits: &StreamsSettings) -> anyhow::Result<()> {
        for (base, subjects, bounds) in [
            (ORDER_EVENTS, vec!["orders.events.>"], limits.order_events),
            (
                SAGA_COMMANDS,
                vec!["inventory.commands.*", "payment.commands.*"],
                limits.saga_commands,
            ),
            (
                SAGA_REPLIES,
                vec!["inventory.replies.*", "payment.replies.*"],
                limits.saga_replies,
            ),
            (DEAD_LETTERS, vec!["dead.>"], limits.dead_letters),
        ] {
            let name = self.stream_name(base);
            let config = stream_config(
                name.clone(),
                subjects.iter().map(|s| self.subject(s)).collect(),
                bounds,
            )
            .with_context(|| format!("the bounds of stream {base}"))?;
            let config = stream::Config {
                num_replicas: limits.replicas,
                ..config
            };
            self.js
                .create_or_update_stream(config)
                .await
                .with_context(|| format!("creating or updating stream {name}"))?;
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

/// Whether a stream lookup failed because the stream does not exist (yet).
pub fn is_stream_not_found(e: &jetstream::context::GetStreamError) -> bool {
    matches!(
        e.kind(),
        jetstream::context::GetStreamErrorKind::JetStream(js)
            if js.error_code() == jetstream::ErrorCode::STREAM_NOT_FOUND
    )
}

/// One stream's configuration: file storage, the duplicate window, and its bounds, past which
/// the oldest messages go (a full stream never refuses a write).
fn stream_config(
    name: String,
    subjects: Vec<String>,
    bounds: StreamLimits,
) -> anyhow::Result<stream::Config> {
    let max_age = Duration::from_secs(bounds.max_age_secs);
    anyhow::ensure!(
        max_age >= DUPLICATE_WINDOW,
        "max_age_secs {} is below the {}-second duplicate window",
        bounds.max_age_secs,
        DUPLICATE_WINDOW.as_secs()
    );
    anyhow::ensure!(
        bounds.max_bytes > 0,
        "max_bytes must be positive, got {}",
        bounds.max_bytes
    );
    Ok(stream::Config {
        name,
        subjects,
        duplicate_window: DUPLICATE_WINDOW,
        storage: stream::StorageType::File,
        max_age,
        max_bytes: bounds.max_bytes,
        discard: stream::DiscardPolicy::Old,
        ..Default::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn streams_are_bounded_and_drop_their_oldest_messages() {
        let bounds = StreamLimits {
            max_age_secs: 3_600,
            max_bytes: 4_096,
        };
        let config = stream_config("S".into(), vec!["s.>".into()], bounds).unwrap();
        assert_eq!(config.max_bytes, 4_096);
        assert_eq!(config.max_age, Duration::from_secs(3_600));
        assert_eq!(config.discard, stream::DiscardPolicy::Old);
        let too_young = StreamLimits {
            max_age_secs: 60,
            ..bounds
        };
        assert!(stream_config("S".into(), vec![], too_young).is_err());
        let unbounded = StreamLimits {
            max_bytes: -1,
            ..bounds
        };
        assert!(stream_config("S".into(), vec![], unbounded).is_err());
    }
}
