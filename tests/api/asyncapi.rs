//! The NATS contract document, `docs/asyncapi.yaml`, held against the code three ways:
//!
//! * every participant command and reply the Rust types (`order_sagas::messages`) emit is
//!   documented field for field, on the documented subject, and nothing documented is missing
//!   from the Rust types; the order events (`order_domain::OrderChange`) likewise;
//! * a participant written from the document alone (async-nats and JSON literals, no
//!   `order_sagas` types) takes a real order through a whole saga;
//! * `order-service asyncapi` prints the document.
//!
//! Schemas are checked by a deliberately small JSON Schema reader ([`Contract::violations`]):
//! `$ref`, `type`, `const`, `enum`, `format` (uuid, date-time), lengths, bounds, `items`,
//! `properties`, `required`, `additionalProperties` and `oneOf` with a `discriminator`. What
//! the service itself emits is checked in [`Mode::Exact`]: every key must be documented.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use async_nats::jetstream::{self, consumer::pull, consumer::AckPolicy};
use chrono::{SecondsFormat, Utc};
use futures::StreamExt as _;
use order_domain::{
    AddressLine, Carrier, CommandMark, CountryCode, Currency, CustomerId, Email, LineId,
    LineSnapshot, Note, OrderChange, OrderEvent, OrderId, OrderStatus, PostalCode, ProductName,
    Quantity, Reason, ShippingAddress, Sku, StoreId, TrackingNumber,
};
use order_sagas::{
    AuthorizePayment, CapturePayment, CommitStock, MessageId, ParticipantCommand,
    PaymentAuthorized, PaymentCaptureFailed, PaymentCaptured, PaymentDeclined, PaymentId,
    PaymentRefunded, PaymentVoided, RefundPayment, ReleaseStock, Reply, ReplyKind, ReservationId,
    ReserveStock, SagaId, Step, StockCommitted, StockItem, StockRejected, StockReleased,
    StockReserved, UnavailableItem, VoidPayment,
};
use serde_json::{json, Map, Value};
use uuid::Uuid;

use crate::helpers::spawn_saga_app_without_simulator;

const DOCUMENT: &str = include_str!("../../docs/asyncapi.yaml");
const WAIT: Duration = Duration::from_secs(20);

// ---- the document ------------------------------------------------------------------------------

/// How strictly objects are read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Every key must be a documented property (for what the service and the Rust types emit:
    /// an undocumented field is a contract change nobody wrote down).
    Exact,
    /// Undocumented keys are allowed unless the schema says `additionalProperties: false`
    /// (for headers, which NATS and tracing may add to).
    Open,
}

/// `docs/asyncapi.yaml`, parsed, with the lookups the tests need.
#[derive(Debug)]
struct Contract {
    doc: Value,
}

impl Contract {
    fn load() -> Self {
        Self {
            doc: serde_yaml::from_str(DOCUMENT).expect("docs/asyncapi.yaml parses as YAML"),
        }
    }

    /// What a local reference (`#/components/schemas/X`) points at.
    fn at(&self, reference: &str) -> &Value {
        let pointer = reference
            .strip_prefix('#')
            .unwrap_or_else(|| panic!("only local references are used: {reference}"));
        self.doc
            .pointer(pointer)
            .unwrap_or_else(|| panic!("dangling reference {reference}"))
    }

    /// `value`, with `$ref`s followed.
    fn resolve<'a>(&'a self, mut value: &'a Value) -> &'a Value {
        while let Some(reference) = value.get("$ref").and_then(Value::as_str) {
            value = self.at(reference);
        }
        value
    }

    fn channels(&self) -> impl Iterator<Item = (&str, &Value)> {
        self.doc["channels"]
            .as_object()
            .expect("channels")
            .iter()
            .map(|(id, channel)| (id.as_str(), channel))
    }

    fn channel(&self, id: &str) -> &Value {
        self.doc["channels"]
            .get(id)
            .unwrap_or_else(|| panic!("no channel {id} in docs/asyncapi.yaml"))
    }

    fn address(&self, channel: &str) -> &str {
        self.channel(channel)["address"]
            .as_str()
            .unwrap_or_else(|| panic!("channel {channel} has no address"))
    }

    /// The channel whose address is `address` (a subject without prefix).
    fn channel_at(&self, address: &str) -> Option<&str> {
        self.channels()
            .find(|(_, c)| c["address"] == address)
            .map(|(id, _)| id)
    }

    /// The one message a channel carries.
    fn message(&self, channel: &str) -> &Value {
        let messages = self.channel(channel)["messages"]
            .as_object()
            .unwrap_or_else(|| panic!("channel {channel} lists no messages"));
        assert_eq!(messages.len(), 1, "channel {channel} carries one message");
        self.resolve(messages.values().next().expect("one message"))
    }

    fn payload(&self, channel: &str) -> &Value {
        self.resolve(&self.message(channel)["payload"])
    }

    fn headers(&self, channel: &str) -> &Value {
        self.resolve(&self.message(channel)["headers"])
    }

    fn examples(&self, channel: &str) -> &[Value] {
        self.message(channel)["examples"]
            .as_array()
            .map_or(&[], Vec::as_slice)
    }

    /// The top-level properties an object schema documents.
    fn properties(&self, schema: &Value) -> BTreeSet<String> {
        self.resolve(schema)["properties"]
            .as_object()
            .map(|p| p.keys().cloned().collect())
            .unwrap_or_default()
    }

    /// Everything wrong with `value` as an instance of `schema`, one line each, located by a
    /// JSON path.
    fn violations(&self, schema: &Value, value: &Value, mode: Mode) -> Vec<String> {
        let mut errors = Vec::new();
        self.check(schema, value, "$", mode, &mut errors);
        errors
    }

    fn check(
        &self,
        schema: &Value,
        value: &Value,
        path: &str,
        mode: Mode,
        errors: &mut Vec<String>,
    ) {
        let schema = self.resolve(schema);
        if let Some(kind) = schema.get("type").and_then(Value::as_str) {
            let fits = match kind {
                "object" => value.is_object(),
                "array" => value.is_array(),
                "string" => value.is_string(),
                "integer" => value.is_i64() || value.is_u64(),
                "number" => value.is_number(),
                "boolean" => value.is_boolean(),
                "null" => value.is_null(),
                other => {
                    errors.push(format!("{path}: unknown schema type {other:?}"));
                    return;
                }
            };
            if !fits {
                errors.push(format!(
                    "{path}: {value} is not of the documented type {kind}"
                ));
                return;
            }
        }
        if let Some(constant) = schema.get("const") {
            if constant != value {
                errors.push(format!("{path}: {value} is not the documented {constant}"));
            }
        }
        if let Some(allowed) = schema.get("enum").and_then(Value::as_array) {
            if !allowed.contains(value) {
                errors.push(format!(
                    "{path}: {value} is not one of the documented {allowed:?}"
                ));
            }
        }
        if let Some(text) = value.as_str() {
            Self::check_string(schema, text, path, errors);
        }
        if let Some(n) = integer(value) {
            if let Some(min) = schema.get("minimum").and_then(integer) {
                if n < min {
                    errors.push(format!("{path}: {n} is below the documented minimum {min}"));
                }
            }
            if let Some(max) = schema.get("maximum").and_then(integer) {
                if n > max {
                    errors.push(format!("{path}: {n} is above the documented maximum {max}"));
                }
            }
        }
        if let Some(items) = value.as_array() {
            if let Some(min) = schema.get("minItems").and_then(Value::as_u64) {
                if (items.len() as u64) < min {
                    errors.push(format!("{path}: fewer than {min} items"));
                }
            }
            if let Some(item_schema) = schema.get("items") {
                for (i, item) in items.iter().enumerate() {
                    self.check(item_schema, item, &format!("{path}[{i}]"), mode, errors);
                }
            }
        }
        if let Some(object) = value.as_object() {
            self.check_object(schema, object, path, mode, errors);
        }
    }

    fn check_string(schema: &Value, text: &str, path: &str, errors: &mut Vec<String>) {
        match schema.get("format").and_then(Value::as_str) {
            Some("uuid") if Uuid::parse_str(text).is_err() => {
                errors.push(format!("{path}: {text:?} is not a UUID"));
            }
            Some("date-time") if chrono::DateTime::parse_from_rfc3339(text).is_err() => {
                errors.push(format!("{path}: {text:?} is not an RFC 3339 date-time"));
            }
            _ => {}
        }
        let length = text.chars().count() as u64;
        if let Some(min) = schema.get("minLength").and_then(Value::as_u64) {
            if length < min {
                errors.push(format!("{path}: {text:?} is shorter than {min}"));
            }
        }
        if let Some(max) = schema.get("maxLength").and_then(Value::as_u64) {
            if length > max {
                errors.push(format!("{path}: {text:?} is longer than {max}"));
            }
        }
    }

    fn check_object(
        &self,
        schema: &Value,
        object: &Map<String, Value>,
        path: &str,
        mode: Mode,
        errors: &mut Vec<String>,
    ) {
        // The schema's own properties, plus those of the `oneOf` variant the discriminator picks.
        let mut parts = vec![schema];
        if let Some(variants) = schema.get("oneOf").and_then(Value::as_array) {
            let Some(tag) = schema.get("discriminator").and_then(Value::as_str) else {
                errors.push(format!(
                    "{path}: oneOf without a discriminator is not checked here"
                ));
                return;
            };
            let wanted = object.get(tag).unwrap_or(&Value::Null);
            let chosen: Vec<&Value> = variants
                .iter()
                .map(|v| self.resolve(v))
                .filter(|v| &v["properties"][tag]["const"] == wanted)
                .collect();
            match chosen.as_slice() {
                [variant] => parts.push(variant),
                [] => {
                    errors.push(format!(
                        "{path}: no documented variant has {tag} = {wanted}"
                    ));
                    return;
                }
                _ => {
                    errors.push(format!(
                        "{path}: several documented variants have {tag} = {wanted}"
                    ));
                    return;
                }
            }
        }
        let mut properties: BTreeMap<&str, Vec<&Value>> = BTreeMap::new();
        let mut required: BTreeSet<&str> = BTreeSet::new();
        let mut closed = false;
        for part in parts {
            for (name, property) in part["properties"].as_object().into_iter().flatten() {
                properties.entry(name.as_str()).or_default().push(property);
            }
            for name in part["required"].as_array().into_iter().flatten() {
                required.insert(name.as_str().expect("required lists names"));
            }
            closed |= part["additionalProperties"] == Value::Bool(false);
        }
        for name in &required {
            if !object.contains_key(*name) {
                errors.push(format!(
                    "{path}: the documented required property {name:?} is missing"
                ));
            }
        }
        for (name, value) in object {
            match properties.get(name.as_str()) {
                Some(schemas) => {
                    for property in schemas {
                        self.check(property, value, &format!("{path}.{name}"), mode, errors);
                    }
                }
                None if mode == Mode::Exact || closed => {
                    errors.push(format!("{path}: {name:?} is not a documented property"));
                }
                None => {}
            }
        }
    }
}

fn integer(value: &Value) -> Option<i128> {
    value
        .as_i64()
        .map(i128::from)
        .or_else(|| value.as_u64().map(i128::from))
}

/// Headers as a JSON object (first value of each), to check against a header schema.
fn headers_json(headers: Option<&async_nats::HeaderMap>) -> Value {
    let mut map = Map::new();
    for (name, values) in headers.into_iter().flat_map(async_nats::HeaderMap::iter) {
        if let Some(value) = values.first() {
            map.insert(name.to_string(), Value::from(value.as_str()));
        }
    }
    Value::Object(map)
}

/// A command or reply channel: `<participant>.commands.<x>` or `<participant>.replies.<x>`.
fn is_participant_channel(address: &str) -> bool {
    matches!(
        address.split('.').collect::<Vec<_>>().as_slice(),
        [first, "commands" | "replies", _] if *first != "dead"
    )
}

// ---- samples of the Rust types -----------------------------------------------------------------

fn mid(n: u128) -> MessageId {
    MessageId::from_uuid(Uuid::from_u128(n))
}

fn saga() -> SagaId {
    SagaId::from_uuid(Uuid::from_u128(0x0192_f3a4_5b6c_7d8e_9f01_2345_6789_abcd))
}

fn order() -> OrderId {
    OrderId::from_uuid(saga().as_uuid())
}

/// Every participant command, with the channel documenting it, in `Step::ALL` order.
fn commands() -> Vec<(&'static str, ParticipantCommand)> {
    let (m, s, o) = (mid(1), saga(), order());
    let reservation = ReservationId::new("res-1");
    let payment = PaymentId::new("pay-1");
    vec![
        (
            "inventoryCommandsReserve",
            ReserveStock {
                message_id: m,
                saga_id: s,
                order_id: o,
                store_id: StoreId::from_uuid(Uuid::from_u128(7)),
                items: vec![StockItem {
                    sku: Sku::parse("TEA").unwrap(),
                    quantity: Quantity::parse(2).unwrap(),
                }],
            }
            .into(),
        ),
        (
            "inventoryCommandsRelease",
            ReleaseStock {
                message_id: m,
                saga_id: s,
                order_id: o,
                reservation_id: reservation.clone(),
            }
            .into(),
        ),
        (
            "inventoryCommandsCommit",
            CommitStock {
                message_id: m,
                saga_id: s,
                order_id: o,
                reservation_id: reservation,
            }
            .into(),
        ),
        (
            "paymentCommandsAuthorize",
            AuthorizePayment {
                message_id: m,
                saga_id: s,
                order_id: o,
                customer_id: CustomerId::parse("alice").unwrap(),
                amount_minor: 900,
                currency: Currency::parse("EUR").unwrap(),
            }
            .into(),
        ),
        (
            "paymentCommandsVoid",
            VoidPayment {
                message_id: m,
                saga_id: s,
                order_id: o,
                payment_id: payment.clone(),
                amount_minor: 900,
            }
            .into(),
        ),
        (
            "paymentCommandsCapture",
            CapturePayment {
                message_id: m,
                saga_id: s,
                order_id: o,
                payment_id: payment.clone(),
                amount_minor: 900,
            }
            .into(),
        ),
        (
            "paymentCommandsRefund",
            RefundPayment {
                message_id: m,
                saga_id: s,
                order_id: o,
                payment_id: payment,
                amount_minor: 900,
            }
            .into(),
        ),
    ]
}

/// Every reply, with the channel documenting it, in `ReplyKind::ALL` order: with every optional
/// field set (`full`) or none.
fn replies(full: bool) -> Vec<(&'static str, Reply)> {
    let (m, s, o, r) = (mid(2), saga(), order(), mid(1));
    let echo = full.then_some(900);
    vec![
        (
            "inventoryRepliesReserved",
            StockReserved {
                message_id: m,
                saga_id: s,
                order_id: o,
                in_reply_to: r,
                reservation_id: ReservationId::new("res-1"),
            }
            .into(),
        ),
        (
            "inventoryRepliesRejected",
            StockRejected {
                message_id: m,
                saga_id: s,
                order_id: o,
                in_reply_to: r,
                reason: "out of stock".into(),
                unavailable: if full {
                    vec![UnavailableItem {
                        sku: "TEA".into(),
                        requested: 2,
                        available: 1,
                    }]
                } else {
                    Vec::new()
                },
            }
            .into(),
        ),
        (
            "inventoryRepliesReleased",
            StockReleased {
                message_id: m,
                saga_id: s,
                order_id: o,
                in_reply_to: r,
            }
            .into(),
        ),
        (
            "inventoryRepliesCommitted",
            StockCommitted {
                message_id: m,
                saga_id: s,
                order_id: o,
                in_reply_to: r,
            }
            .into(),
        ),
        (
            "paymentRepliesAuthorized",
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
        ),
        (
            "paymentRepliesDeclined",
            PaymentDeclined {
                message_id: m,
                saga_id: s,
                order_id: o,
                in_reply_to: r,
                reason: "insufficient funds".into(),
            }
            .into(),
        ),
        (
            "paymentRepliesVoided",
            PaymentVoided {
                message_id: m,
                saga_id: s,
                order_id: o,
                in_reply_to: r,
                amount_minor: echo,
            }
            .into(),
        ),
        (
            "paymentRepliesCaptured",
            PaymentCaptured {
                message_id: m,
                saga_id: s,
                order_id: o,
                in_reply_to: r,
                amount_minor: 900,
                currency: Currency::parse("EUR").unwrap(),
            }
            .into(),
        ),
        (
            "paymentRepliesCaptureFailed",
            PaymentCaptureFailed {
                message_id: m,
                saga_id: s,
                order_id: o,
                in_reply_to: r,
                reason: "card expired".into(),
            }
            .into(),
        ),
        (
            "paymentRepliesRefunded",
            PaymentRefunded {
                message_id: m,
                saga_id: s,
                order_id: o,
                in_reply_to: r,
                amount_minor: echo,
            }
            .into(),
        ),
    ]
}

fn json_of(bytes: &[u8]) -> Value {
    serde_json::from_slice(bytes).expect("the Rust types emit JSON")
}

/// Checks one Rust-emitted body against its channel: (c) address = subject, (a) every emitted
/// key is a documented property and (b) every documented required property is emitted (both
/// recursively, with types, formats and bounds).
fn check_body(contract: &Contract, channel: &str, subject: &str, body: &Value) -> Vec<String> {
    let mut problems = Vec::new();
    let address = contract.address(channel);
    if address != subject {
        problems.push(format!(
            "channel {channel}: documented address {address:?}, the Rust type publishes on {subject:?}"
        ));
    }
    let schema = contract.payload(channel);
    problems.extend(
        contract
            .violations(schema, body, Mode::Exact)
            .into_iter()
            .map(|v| format!("{subject} (channel {channel}): {v}")),
    );
    if schema["additionalProperties"] != Value::Bool(true) {
        problems.push(format!(
            "channel {channel}: the payload must say additionalProperties: true (fields are added)"
        ));
    }
    problems
}

#[test]
fn the_contract_document_matches_the_rust_types() {
    let contract = Contract::load();
    let mut problems = Vec::new();

    let commands = commands();
    let subjects: Vec<&str> = commands.iter().map(|(_, c)| c.subject()).collect();
    assert_eq!(
        subjects,
        ParticipantCommand::SUBJECTS,
        "one sample per command type"
    );
    let full = replies(true);
    let minimal = replies(false);
    let subjects: Vec<&str> = full.iter().map(|(_, r)| r.subject()).collect();
    assert_eq!(subjects, Reply::SUBJECTS, "one sample per reply type");

    // Rust → document: every emitted body fits its documented schema exactly.
    for (channel, command) in &commands {
        let body = json_of(&command.to_json().unwrap());
        problems.extend(check_body(&contract, channel, command.subject(), &body));
    }
    for (channel, reply) in full.iter().chain(&minimal) {
        let body = json_of(&reply.to_json().unwrap());
        problems.extend(check_body(&contract, channel, reply.subject(), &body));
    }

    // Document → Rust: every documented property is one the Rust type emits (when its optional
    // fields are set), so the document names no field the code does not know.
    let emitted = commands
        .iter()
        .map(|(channel, c)| (*channel, json_of(&c.to_json().unwrap())))
        .chain(
            full.iter()
                .map(|(channel, r)| (*channel, json_of(&r.to_json().unwrap()))),
        );
    for (channel, body) in emitted {
        let keys: BTreeSet<String> = body
            .as_object()
            .expect("an object")
            .keys()
            .cloned()
            .collect();
        for name in contract
            .properties(contract.payload(channel))
            .difference(&keys)
        {
            problems.push(format!(
                "channel {channel}: documents {name:?}, which the Rust type never emits"
            ));
        }
    }

    // Every documented command or reply channel is a Rust type, and the other way round.
    let documented: BTreeMap<&str, &str> = contract
        .channels()
        .filter_map(|(id, c)| c["address"].as_str().map(|a| (a, id)))
        .filter(|(address, _)| is_participant_channel(address))
        .collect();
    let rust: BTreeSet<&str> = ParticipantCommand::SUBJECTS
        .into_iter()
        .chain(Reply::SUBJECTS)
        .collect();
    for address in documented.keys().filter(|a| !rust.contains(*a)) {
        problems.push(format!(
            "channel {} ({address}) corresponds to no Rust command or reply type",
            documented[address]
        ));
    }
    for address in rust.iter().filter(|a| !documented.contains_key(*a)) {
        problems.push(format!("{address} is not documented as a channel"));
    }
    let sampled: BTreeSet<&str> = commands
        .iter()
        .map(|(channel, _)| *channel)
        .chain(full.iter().map(|(channel, _)| *channel))
        .collect();
    let documented_ids: BTreeSet<&str> = documented.values().copied().collect();
    if documented_ids != sampled {
        problems.push(format!(
            "command and reply channel ids: documented {documented_ids:?}, sampled here {sampled:?}"
        ));
    }

    // Operations: the service sends every command and receives every reply, and each command's
    // `x-replies` are exactly the replies that answer it.
    let operations = contract.doc["operations"].as_object().expect("operations");
    for (address, channel) in &documented {
        let ops: Vec<(&String, &Value)> = operations
            .iter()
            .filter(|(_, op)| contract.resolve(&op["channel"]) == contract.channel(channel))
            .collect();
        let expected_action = if address.contains(".commands.") {
            "send"
        } else {
            "receive"
        };
        match ops.as_slice() {
            [(id, op)] if op["action"] == expected_action => {
                if let Some(step) = Step::ALL.into_iter().find(|s| s.subject() == *address) {
                    let answers: BTreeSet<&str> = ReplyKind::ALL
                        .into_iter()
                        .filter(|k| step.is_answered_by(*k))
                        .map(ReplyKind::subject)
                        .collect();
                    let listed: BTreeSet<&str> = op["x-replies"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .filter_map(Value::as_str)
                        .collect();
                    if listed != answers {
                        problems.push(format!(
                            "operation {id}: x-replies {listed:?}, but {step} is answered by {answers:?}"
                        ));
                    }
                }
            }
            _ => problems.push(format!(
                "channel {channel} needs exactly one `{expected_action}` operation"
            )),
        }
    }

    // The examples are real messages: they fit the schemas and the Rust types read them.
    for (address, channel) in &documented {
        let examples = contract.examples(channel);
        if examples.is_empty() {
            problems.push(format!("channel {channel} has no example"));
        }
        for example in examples {
            let name = example["name"].as_str().unwrap_or("?");
            let payload = &example["payload"];
            for v in contract.violations(contract.payload(channel), payload, Mode::Exact) {
                problems.push(format!("example {name:?} of {channel}: {v}"));
            }
            if let Some(headers) = example.get("headers") {
                for v in contract.violations(contract.headers(channel), headers, Mode::Open) {
                    problems.push(format!("example {name:?} of {channel}, headers: {v}"));
                }
            }
            let bytes = serde_json::to_vec(payload).unwrap();
            let parsed = if address.contains(".commands.") {
                ParticipantCommand::parse(address, &bytes).map(|_| ())
            } else {
                Reply::parse(address, &bytes).map(|_| ())
            };
            if let Err(e) = parsed {
                problems.push(format!("example {name:?} of {channel}: {e}"));
            }
        }
    }

    // Full and minimal samples share a channel: report each disagreement once.
    let mut reported = BTreeSet::new();
    problems.retain(|p| reported.insert(p.clone()));
    assert!(
        problems.is_empty(),
        "docs/asyncapi.yaml disagrees with sagas/src/messages/:\n  {}",
        problems.join("\n  ")
    );
}

// ---- order events --------------------------------------------------------------------------------

/// Position of the variant in `OrderChange`; no wildcard, so a new variant fails to compile here
/// until it is sampled (and documented).
fn variant(change: &OrderChange) -> usize {
    match change {
        OrderChange::OrderCreated { .. } => 0,
        OrderChange::ItemAdded { .. } => 1,
        OrderChange::ItemQuantityChanged { .. } => 2,
        OrderChange::ItemRemoved { .. } => 3,
        OrderChange::OrderPlaced { .. } => 4,
        OrderChange::OrderConfirmed => 5,
        OrderChange::OrderRejected { .. } => 6,
        OrderChange::PreparationStarted { .. } => 7,
        OrderChange::OrderReadyForPickup { .. } => 8,
        OrderChange::OrderPickedUp { .. } => 9,
        OrderChange::OrderShipped { .. } => 10,
        OrderChange::OrderDelivered { .. } => 11,
        OrderChange::OrderCancelled { .. } => 12,
        OrderChange::DraftDiscarded => 13,
    }
}
const VARIANTS: usize = 14;

/// Every kind of order change, with every optional field set (`full`) or none.
fn order_changes(full: bool) -> Vec<OrderChange> {
    let note = || full.then(|| Note::parse("at the back door").unwrap());
    let sku = || Sku::parse("TEA").unwrap();
    let line = LineId::new(1);
    let store = StoreId::from_uuid(Uuid::from_u128(7));
    let customer = CustomerId::parse("alice").unwrap();
    let currency = Currency::parse("EUR").unwrap();
    vec![
        OrderChange::OrderCreated {
            order_id: order(),
            customer_id: customer.clone(),
            store_id: store,
            currency,
            customer_email: full.then(|| Email::parse("alice@example.com").unwrap()),
            shipping_address: full.then(|| ShippingAddress {
                name: AddressLine::parse("Alice Doe").unwrap(),
                line1: AddressLine::parse("Main Street 1").unwrap(),
                line2: Some(AddressLine::parse("2nd floor").unwrap()),
                city: AddressLine::parse("Berlin").unwrap(),
                postal_code: PostalCode::parse("10115").unwrap(),
                country: CountryCode::parse("DE").unwrap(),
            }),
        },
        OrderChange::ItemAdded {
            line_id: line,
            sku: sku(),
            name: ProductName::parse("Green tea").unwrap(),
            quantity: 2,
            unit_price_minor: 450,
            line_total_minor: 900,
            order_total_minor: 900,
        },
        OrderChange::ItemQuantityChanged {
            line_id: line,
            sku: sku(),
            previous_quantity: 2,
            quantity: 3,
            line_total_minor: 1350,
            order_total_minor: 1350,
        },
        OrderChange::ItemRemoved {
            line_id: line,
            sku: sku(),
            order_total_minor: 0,
        },
        OrderChange::OrderPlaced {
            customer_id: customer,
            store_id: store,
            currency,
            total_minor: 900,
            lines: vec![LineSnapshot {
                line_id: line,
                sku: sku(),
                name: ProductName::parse("Green tea").unwrap(),
                quantity: 2,
                unit_price_minor: 450,
                line_total_minor: 900,
            }],
        },
        OrderChange::OrderConfirmed,
        OrderChange::OrderRejected {
            reason: Reason::parse("payment declined").unwrap(),
        },
        OrderChange::PreparationStarted { note: note() },
        OrderChange::OrderReadyForPickup { note: note() },
        OrderChange::OrderPickedUp { note: note() },
        OrderChange::OrderShipped {
            carrier: Carrier::parse("DHL").unwrap(),
            tracking_number: TrackingNumber::parse("00340434161234567890").unwrap(),
            note: note(),
        },
        OrderChange::OrderDelivered { note: note() },
        OrderChange::OrderCancelled {
            reason: Reason::parse("changed my mind").unwrap(),
            previous_status: OrderStatus::Confirmed,
        },
        OrderChange::DraftDiscarded,
    ]
}

/// The body the relay publishes for `change` (`src/workers/relay.rs`): the stored event plus
/// `order_id`, `version`, `event_id`, `recorded_at`.
fn relayed(change: OrderChange, version: i64, marked: bool) -> Value {
    let event = OrderEvent {
        change,
        command: marked.then(|| CommandMark {
            id: Uuid::new_v4(),
            fingerprint: Uuid::new_v4(),
        }),
    };
    let mut body = serde_json::to_value(event).unwrap();
    let map = body.as_object_mut().expect("an object");
    map.insert("order_id".into(), order().to_string().into());
    map.insert("version".into(), version.into());
    map.insert("event_id".into(), Uuid::new_v4().to_string().into());
    map.insert("recorded_at".into(), Utc::now().to_rfc3339().into());
    body
}

#[test]
fn the_documented_order_events_match_the_domain_events() {
    let contract = Contract::load();
    let schema = contract.payload("orderEvents");
    let mut problems = Vec::new();
    let mut covered = BTreeSet::new();
    let mut emitted_types = BTreeSet::new();
    for full in [true, false] {
        for (i, change) in order_changes(full).into_iter().enumerate() {
            covered.insert(variant(&change));
            let event_type = change.event_type();
            emitted_types.insert(event_type.to_owned());
            let body = relayed(change, i64::try_from(i).unwrap() + 1, full);
            assert_eq!(body["type"], event_type, "the body names its type");
            for v in contract.violations(schema, &body, Mode::Exact) {
                problems.push(format!("{event_type}: {v}"));
            }
        }
    }
    assert_eq!(
        covered.len(),
        VARIANTS,
        "a sample of every OrderChange variant"
    );

    let enumerated: BTreeSet<String> = contract.channel("orderEvents")["parameters"]["event_type"]
        ["enum"]
        .as_array()
        .expect("event_type enum")
        .iter()
        .map(|t| t.as_str().expect("a name").to_owned())
        .collect();
    assert_eq!(
        enumerated, emitted_types,
        "the event_type parameter lists every event type"
    );
    let variants: BTreeSet<String> = schema["oneOf"]
        .as_array()
        .expect("oneOf")
        .iter()
        .map(|v| {
            contract.resolve(v)["properties"]["type"]["const"]
                .as_str()
                .expect("a const type")
                .to_owned()
        })
        .collect();
    assert_eq!(
        variants, emitted_types,
        "one payload variant per event type"
    );

    for example in contract.examples("orderEvents") {
        let name = example["name"].as_str().unwrap_or("?");
        for v in contract.violations(schema, &example["payload"], Mode::Exact) {
            problems.push(format!("example {name:?}: {v}"));
        }
        if let Err(e) = serde_json::from_value::<OrderEvent>(example["payload"].clone()) {
            problems.push(format!("example {name:?} is not an order event: {e}"));
        }
    }
    assert!(
        problems.is_empty(),
        "docs/asyncapi.yaml disagrees with domain/src/event.rs:\n  {}",
        problems.join("\n  ")
    );
}

// ---- a participant written from the document -------------------------------------------------------

/// What the participant saw.
#[derive(Debug, Default)]
struct Seen {
    /// (subject without prefix, body) of every command delivery.
    commands: Vec<(String, Value)>,
    /// Where a message disagreed with the document.
    problems: Vec<String>,
}

/// The reply to a command, from the document: its subject and body. `currencies` is the
/// payment service's memory: the currency it authorized each payment in, which a capture
/// reply must state.
fn decide(
    subject: &str,
    command: &Value,
    currencies: &mut HashMap<String, Value>,
) -> (&'static str, Value) {
    let order = command["order_id"].as_str().unwrap_or("?");
    let (reply_subject, fields) = match subject {
        "inventory.commands.reserve" => (
            "inventory.replies.reserved",
            json!({"reservation_id": format!("res-{order}")}),
        ),
        "inventory.commands.release" => ("inventory.replies.released", json!({})),
        "inventory.commands.commit" => ("inventory.replies.committed", json!({})),
        "payment.commands.authorize" => {
            let payment_id = format!("pay-{order}");
            currencies.insert(payment_id.clone(), command["currency"].clone());
            (
                "payment.replies.authorized",
                json!({
                    "payment_id": payment_id,
                    "amount_minor": command["amount_minor"],
                    "currency": command["currency"],
                }),
            )
        }
        "payment.commands.void" => (
            "payment.replies.voided",
            json!({"amount_minor": command["amount_minor"]}),
        ),
        "payment.commands.capture" => (
            "payment.replies.captured",
            json!({
                "amount_minor": command["amount_minor"],
                "currency": command["payment_id"]
                    .as_str()
                    .and_then(|id| currencies.get(id))
                    .cloned()
                    .unwrap_or(Value::Null),
            }),
        ),
        "payment.commands.refund" => (
            "payment.replies.refunded",
            json!({"amount_minor": command["amount_minor"]}),
        ),
        other => panic!("a command the document does not list: {other}"),
    };
    let mut reply = json!({
        "message_id": Uuid::new_v4().to_string(),
        "saga_id": command["saga_id"],
        "order_id": command["order_id"],
        "in_reply_to": command["message_id"],
    });
    let map = reply.as_object_mut().expect("an object");
    map.extend(fields.as_object().expect("an object").clone());
    (reply_subject, reply)
}

/// Inventory and payment in one loop: a durable pull consumer per participant on the commands
/// stream, dedupe by `message_id`, reply through JetStream (awaiting the ack), then ack.
async fn participant(
    client: async_nats::Client,
    prefix: String,
    contract: Arc<Contract>,
    seen: Arc<Mutex<Seen>>,
) {
    let js = jetstream::new(client);
    let mut feeds = Vec::new();
    for (name, filter, example) in [
        (
            "inventory",
            "inventory.commands.*",
            "inventory.commands.reserve",
        ),
        (
            "payment",
            "payment.commands.*",
            "payment.commands.authorize",
        ),
    ] {
        let stream_name = js
            .stream_by_subject(format!("{prefix}{example}"))
            .await
            .expect("a stream holds the commands");
        let stream = js.get_stream(&stream_name).await.expect("commands stream");
        let durable = format!("{name}-from-the-document");
        let consumer = stream
            .get_or_create_consumer(
                &durable,
                pull::Config {
                    durable_name: Some(durable.clone()),
                    filter_subject: format!("{prefix}{filter}"),
                    ack_policy: AckPolicy::Explicit,
                    ack_wait: Duration::from_secs(10),
                    max_deliver: 20,
                    ..Default::default()
                },
            )
            .await
            .expect("a durable consumer");
        feeds.push(consumer.messages().await.expect("command feed"));
    }
    let mut feed = futures::stream::select_all(feeds);
    let mut answered: HashMap<String, (&'static str, Value)> = HashMap::new();
    let mut currencies: HashMap<String, Value> = HashMap::new();
    while let Some(message) = feed.next().await {
        let message = message.expect("a command delivery");
        let subject = message
            .subject
            .as_str()
            .strip_prefix(prefix.as_str())
            .expect("the deployment's prefix")
            .to_owned();
        let command: Value = serde_json::from_slice(&message.payload).expect("a JSON body");
        let mut problems = Vec::new();
        match contract.channel_at(&subject) {
            Some(channel) => {
                let headers = headers_json(message.headers.as_ref());
                for v in contract.violations(contract.headers(channel), &headers, Mode::Open) {
                    problems.push(format!("{subject} headers: {v}"));
                }
                for v in contract.violations(contract.payload(channel), &command, Mode::Exact) {
                    problems.push(format!("{subject}: {v}"));
                }
            }
            None => problems.push(format!("{subject} is not a documented channel")),
        }
        let message_id = command["message_id"]
            .as_str()
            .expect("message_id")
            .to_owned();
        let (reply_subject, reply) = answered
            .entry(message_id)
            .or_insert_with(|| decide(&subject, &command, &mut currencies))
            .clone();
        if let Some(channel) = contract.channel_at(reply_subject) {
            for v in contract.violations(contract.payload(channel), &reply, Mode::Exact) {
                problems.push(format!("our own {reply_subject}: {v}"));
            }
        }
        {
            let mut seen = seen.lock().unwrap_or_else(PoisonError::into_inner);
            seen.commands.push((subject, command));
            seen.problems.extend(problems);
        }

        let id = reply["message_id"].as_str().expect("message_id").to_owned();
        let mut headers = async_nats::HeaderMap::new();
        headers.insert("Nats-Msg-Id", id.as_str());
        headers.insert("Content-Type", "application/json");
        headers.insert("ce-specversion", "1.0");
        headers.insert("ce-id", id.as_str());
        headers.insert("ce-type", reply_subject);
        headers.insert("ce-source", "participant-from-the-document");
        headers.insert(
            "ce-time",
            Utc::now()
                .to_rfc3339_opts(SecondsFormat::Millis, true)
                .as_str(),
        );
        if let Some(traceparent) = message.headers.as_ref().and_then(|h| h.get("traceparent")) {
            headers.insert("traceparent", traceparent.as_str());
        }
        js.publish_with_headers(
            format!("{prefix}{reply_subject}"),
            headers,
            serde_json::to_vec(&reply).expect("JSON").into(),
        )
        .await
        .expect("publish the reply")
        .await
        .expect("JetStream stores the reply");
        message.ack().await.expect("ack the command");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_participant_written_from_the_document_completes_a_saga() {
    let app = spawn_saga_app_without_simulator(|_| {}).await;
    let contract = Arc::new(Contract::load());
    let prefix = app.settings.nats.prefix.clone();
    let url = app.settings.nats_url.clone().expect("a NATS url");
    let client = async_nats::connect(&*url).await.expect("NATS");

    // The order events, as any subscriber sees them.
    let mut events = client
        .subscribe(format!("{prefix}orders.events.>"))
        .await
        .expect("subscribe to order events");
    client.flush().await.expect("flush");

    let seen = Arc::new(Mutex::new(Seen::default()));
    let participant = tokio::spawn(participant(
        client.clone(),
        prefix.clone(),
        Arc::clone(&contract),
        Arc::clone(&seen),
    ));

    let store = app.store_with_products().await;
    let alice = app.customer("alice");
    let staff = app.staff(store);
    let order = app.create_order(&alice, store).await;
    app.add_item(&alice, order, "TEA", 2)
        .await
        .assert_status(200);
    app.place(&alice, order).await.assert_status(200);
    app.wait_for_order(order, WAIT, |o| o["status"] == "confirmed")
        .await;
    app.set_status(&staff, order, "preparing")
        .await
        .assert_status(200);
    app.post(
        &format!("/v1/orders/{order}/ship"),
        &staff,
        json!({"carrier": "DHL", "tracking_number": "T1"}),
    )
    .await
    .assert_status(200);
    let saga = app.wait_for_saga(order, "completed", WAIT).await;
    assert!(
        saga["steps"].as_array().is_some_and(|s| s.len() == 4),
        "{saga}"
    );
    participant.abort();

    let seen = std::mem::take(&mut *seen.lock().unwrap_or_else(PoisonError::into_inner));
    let first = |subject: &str| -> Value {
        seen.commands
            .iter()
            .find(|(s, _)| s == subject)
            .map_or_else(
                || panic!("no {subject} command reached the participant"),
                |(_, body)| body.clone(),
            )
    };
    let reserve = first("inventory.commands.reserve");
    assert_eq!(reserve["items"], json!([{"sku": "TEA", "quantity": 2}]));
    assert_eq!(reserve["store_id"], store.to_string());
    assert_eq!(reserve["order_id"], order.to_string());
    assert_eq!(reserve["saga_id"], order.to_string());
    let authorize = first("payment.commands.authorize");
    assert_eq!(authorize["amount_minor"], 900);
    assert_eq!(authorize["currency"], "EUR");
    assert_eq!(authorize["customer_id"], "alice");
    let capture = first("payment.commands.capture");
    assert_eq!(capture["amount_minor"], 900);
    assert_eq!(capture["payment_id"], format!("pay-{order}"));
    let commit = first("inventory.commands.commit");
    assert_eq!(commit["reservation_id"], format!("res-{order}"));
    assert!(
        seen.commands.iter().all(|(s, _)| !s.ends_with("release")
            && !s.ends_with("void")
            && !s.ends_with("refund")),
        "nothing was compensated: {:?}",
        seen.commands
    );
    assert!(
        seen.problems.is_empty(),
        "commands disagree with docs/asyncapi.yaml:\n  {}",
        seen.problems.join("\n  ")
    );

    // Every order event fits the document, on the documented subject, in version order.
    let expected = [
        "OrderCreated",
        "ItemAdded",
        "OrderPlaced",
        "OrderConfirmed",
        "PreparationStarted",
        "OrderShipped",
    ];
    let mut received: Vec<(i64, String)> = Vec::new();
    let mut problems = Vec::new();
    while received.len() < expected.len() {
        let message = tokio::time::timeout(WAIT, events.next())
            .await
            .unwrap_or_else(|_| panic!("order events stopped after {received:?}"))
            .expect("the subscription is open");
        let body: Value = serde_json::from_slice(&message.payload).expect("a JSON body");
        let event_type = body["type"].as_str().unwrap_or("?").to_owned();
        for v in contract.violations(contract.payload("orderEvents"), &body, Mode::Exact) {
            problems.push(format!("{event_type}: {v}"));
        }
        let headers = headers_json(message.headers.as_ref());
        for v in contract.violations(contract.headers("orderEvents"), &headers, Mode::Open) {
            problems.push(format!("{event_type} headers: {v}"));
        }
        assert_eq!(
            message.subject.as_str(),
            format!("{prefix}orders.events.{order}.{event_type}")
        );
        assert_eq!(headers["Nats-Msg-Id"], body["event_id"]);
        assert_eq!(headers["ce-type"], format!("orders.{event_type}"));
        received.push((body["version"].as_i64().expect("version"), event_type));
    }
    assert!(
        problems.is_empty(),
        "order events disagree with docs/asyncapi.yaml:\n  {}",
        problems.join("\n  ")
    );
    received.sort();
    let versions: Vec<i64> = received.iter().map(|(v, _)| *v).collect();
    assert_eq!(versions, (1..=6).collect::<Vec<i64>>());
    let types: Vec<&str> = received.iter().map(|(_, t)| t.as_str()).collect();
    assert_eq!(types, expected);
}

// ---- the CLI ---------------------------------------------------------------------------------------

#[test]
fn order_service_asyncapi_prints_the_document() {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_order-service"))
        .arg("asyncapi")
        .output()
        .expect("order-service runs");
    assert!(
        output.status.success(),
        "order-service asyncapi failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let on_disk =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/asyncapi.yaml"))
            .expect("docs/asyncapi.yaml");
    assert_eq!(String::from_utf8(output.stdout).expect("UTF-8"), on_disk);
}
