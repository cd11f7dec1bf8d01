//! **I8**: every event the relay has passed on is on NATS exactly once per `Nats-Msg-Id`, none
//! missing, within each stream's retention.
//!
//! The relay publishes each event with `Nats-Msg-Id = event_id` ([`crate::workers::relay`]), in
//! log order, and moves its checkpoint only after JetStream acked. So once the checkpoint is past
//! an event, its message must be in the stream, once: a second copy means a re-publish outlived
//! the duplicate window, a gap means a message was lost or deleted. Streams drop their oldest
//! messages past their limits (`max_age`, `max_bytes`); the oldest message still held marks
//! where retention begins, and only events from there on are expected.
//!
//! The streams are read before the log is folded (and the relay's checkpoint before both), so
//! every message read belongs to an event the fold sees, and every event the checkpoint covers
//! was stored before the streams were read. A message whose id is no event of the log is a
//! violation too: only the relay publishes on these subjects.

use std::collections::HashMap;
use std::time::Duration;

use anyhow::Context as _;
use async_nats::jetstream::consumer::{pull, AckPolicy, DeliverPolicy};
use futures::StreamExt as _;
use uuid::Uuid;

use super::report::Report;
use crate::nats::{headers, is_stream_not_found, Nats, ORDER_EVENTS, SAGA_COMMANDS};

/// The streams the relay writes.
pub const STREAMS: [&str; 2] = [ORDER_EVENTS, SAGA_COMMANDS];

/// Name of the consumer `verify` reads a stream with (an ephemeral one, headers only, deleted
/// after reading; `deploy/nats/users.conf` lets the service create it and only it).
pub const CONSUMER: &str = "verify";

/// How long one message may take to arrive while a stream is read.
const PATIENCE: Duration = Duration::from_secs(10);

/// What one stream holds, by `Nats-Msg-Id`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StreamCopy {
    /// The stream's base name (`ORDER_EVENTS`, ...).
    pub stream: &'static str,
    /// Messages per `Nats-Msg-Id` (a message without one counts under `""`).
    pub copies: HashMap<String, u32>,
    /// `Nats-Msg-Id` of the oldest message held.
    pub oldest: Option<String>,
    /// Older messages are gone (the first sequence held is past 1): by the stream's limits,
    /// or deleted from its front.
    pub trimmed: bool,
}

/// An event the relay publishes, as the fold saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Relayed {
    pub event_id: Uuid,
    pub stream: &'static str,
    /// The order it concerns (the report's subject).
    pub order_id: Uuid,
    /// `"OrderPlaced v3"`, for the report.
    pub what: String,
    /// The relay's checkpoint covers it: JetStream acked its message.
    pub acked: bool,
}

/// Reads every message of the relay's streams (headers only); a stream that does not exist
/// holds nothing.
pub async fn read_streams(nats: &Nats) -> anyhow::Result<Vec<StreamCopy>> {
    let mut copies = Vec::new();
    for base in STREAMS {
        copies.push(read_stream(nats, base).await?);
    }
    Ok(copies)
}

async fn read_stream(nats: &Nats, base: &'static str) -> anyhow::Result<StreamCopy> {
    let name = nats.stream_name(base);
    let mut copy = StreamCopy {
        stream: base,
        ..StreamCopy::default()
    };
    let mut stream = match nats.js.get_stream(&name).await {
        Ok(stream) => stream,
        // nothing relayed to it yet: every relayed event will be missing
        Err(e) if is_stream_not_found(&e) => return Ok(copy),
        Err(e) => return Err(e).with_context(|| format!("looking up stream {name}")),
    };
    let state = stream
        .info()
        .await
        .with_context(|| format!("stream {name}"))?
        .state
        .clone();
    copy.trimmed = state.first_sequence > 1;
    if state.messages == 0 {
        return Ok(copy);
    }
    let consumer_name = nats.stream_name(CONSUMER);
    // A consumer of that name left by a verify that died would go on from where it stopped.
    // (One verify at a time per deployment: two would share it and split the messages.)
    if let Err(e) = stream.delete_consumer(&consumer_name).await {
        tracing::debug!(error = %e, "no reading consumer left from an earlier run");
    }
    let consumer = stream
        .create_consumer(pull::Config {
            name: Some(consumer_name.clone()),
            ack_policy: AckPolicy::None,
            deliver_policy: DeliverPolicy::All,
            headers_only: true,
            inactive_threshold: Duration::from_secs(60),
            ..Default::default()
        })
        .await
        .with_context(|| format!("a consumer to read stream {name}"))?;
    let read = async {
        let mut read: Vec<(u64, String)> = Vec::new();
        let mut messages = consumer
            .messages()
            .await
            .with_context(|| format!("reading stream {name}"))?;
        loop {
            let next = tokio::time::timeout(PATIENCE, messages.next())
                .await
                .with_context(|| format!("stream {name}: no message for {PATIENCE:?}"))?;
            let Some(message) = next else {
                anyhow::bail!("stream {name} ended before its last message");
            };
            let message = message.map_err(|e| anyhow::anyhow!("reading stream {name}: {e}"))?;
            let info = message
                .info()
                .map_err(|e| anyhow::anyhow!("stream {name}: a message without info: {e}"))?;
            let id = headers::get(message.headers.as_ref(), "Nats-Msg-Id")
                .unwrap_or_default()
                .to_owned();
            read.push((info.stream_sequence, id));
            // the last message there was when we began, or none left (it went meanwhile)
            if info.stream_sequence >= state.last_sequence || info.pending == 0 {
                return Ok(read);
            }
        }
    };
    let read = read.await;
    if let Err(e) = stream.delete_consumer(&consumer_name).await {
        tracing::debug!(error = %e, "the reading consumer goes by its inactivity threshold");
    }
    // Where retention begins now: the stream may have dropped more of its front while it was
    // read, and what it dropped is not missing.
    let first = stream
        .info()
        .await
        .with_context(|| format!("stream {name}"))?
        .state
        .first_sequence;
    copy.trimmed = first > 1;
    for (sequence, id) in read? {
        if sequence >= first && copy.oldest.is_none() {
            copy.oldest = Some(id.clone());
        }
        *copy.copies.entry(id).or_default() += 1;
    }
    Ok(copy)
}

/// Judges the streams against the relayed events of the log (in log order).
pub fn judge(relayed: &[Relayed], mut streams: Vec<StreamCopy>, report: &mut Report) {
    for copy in &mut streams {
        // Events before the oldest message held are past retention: not expected.
        let mut retained = !copy.trimmed;
        for event in relayed.iter().filter(|e| e.stream == copy.stream) {
            let id = event.event_id.to_string();
            if !retained && copy.oldest.as_deref() == Some(id.as_str()) {
                retained = true;
            }
            let found = copy.copies.remove(&id).unwrap_or(0);
            if found > 1 {
                report.broken(
                    "I8",
                    &event.order_id,
                    format!(
                        "{} (event {id}) is on {} {found} times",
                        event.what, copy.stream
                    ),
                );
            } else if found == 0 && retained && event.acked {
                report.broken(
                    "I8",
                    &event.order_id,
                    format!(
                        "{} (event {id}) was relayed but is not on {}",
                        event.what, copy.stream
                    ),
                );
            }
        }
        let mut strays: Vec<_> = copy.copies.drain().collect();
        strays.sort();
        for (id, found) in strays {
            report.broken(
                "I8",
                &copy.stream,
                format!("{found} message(s) with Nats-Msg-Id {id:?}, which is no event of the log"),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(n: u128, acked: bool) -> Relayed {
        Relayed {
            event_id: Uuid::from_u128(n),
            stream: ORDER_EVENTS,
            order_id: Uuid::from_u128(1000 + n),
            what: format!("E{n}"),
            acked,
        }
    }

    fn held(ids: &[u128], trimmed: bool) -> StreamCopy {
        let mut copy = StreamCopy {
            stream: ORDER_EVENTS,
            trimmed,
            oldest: ids.first().map(|n| Uuid::from_u128(*n).to_string()),
            ..StreamCopy::default()
        };
        for n in ids {
            *copy
                .copies
                .entry(Uuid::from_u128(*n).to_string())
                .or_default() += 1;
        }
        copy
    }

    fn judged(relayed: &[Relayed], copy: StreamCopy) -> Vec<(String, String)> {
        let mut report = Report::default();
        judge(relayed, vec![copy], &mut report);
        report
            .violations
            .into_iter()
            .map(|v| (v.subject, v.detail))
            .collect()
    }

    #[test]
    fn every_acked_event_once_holds() {
        let log = [event(1, true), event(2, true), event(3, false)];
        assert_eq!(judged(&log, held(&[1, 2, 3], false)), []);
        // not yet acked: may be missing
        assert_eq!(judged(&log, held(&[1, 2], false)), []);
    }

    #[test]
    fn a_missing_a_doubled_and_a_stray_message_are_each_named() {
        let log = [event(1, true), event(2, true), event(3, true)];
        let missing = judged(&log, held(&[1, 3], false));
        assert_eq!(missing.len(), 1);
        assert_eq!(missing[0].0, Uuid::from_u128(1002).to_string());
        assert!(missing[0].1.contains("not on ORDER_EVENTS"), "{missing:?}");

        let doubled = judged(&log, held(&[1, 2, 2, 3], false));
        assert_eq!(doubled.len(), 1);
        assert!(doubled[0].1.contains("2 times"), "{doubled:?}");

        let stray = judged(&log, held(&[1, 2, 3, 9], false));
        assert_eq!(stray.len(), 1);
        assert_eq!(stray[0].0, "ORDER_EVENTS");
        assert!(stray[0].1.contains("no event of the log"), "{stray:?}");
    }

    #[test]
    fn events_older_than_the_streams_retention_are_not_expected() {
        let log = [
            event(1, true),
            event(2, true),
            event(3, true),
            event(4, true),
        ];
        // 1 and 2 aged out: fine; 4 missing after the oldest held: not
        assert_eq!(judged(&log, held(&[3, 4], true)), []);
        let gap = judged(&log, held(&[3], true));
        assert_eq!(gap.len(), 1);
        assert_eq!(gap[0].0, Uuid::from_u128(1004).to_string());
        // nothing trimmed: the first ones are expected too
        assert_eq!(judged(&log, held(&[3, 4], false)).len(), 2);
    }
}
