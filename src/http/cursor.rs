//! The opaque cursor of keyset pagination, the one scheme of every list: a page is
//! `{"items": [...], "next": "<cursor>"}`, `next` omitted on the last page, and the client
//! passes `next` back verbatim as `cursor`. The cursor is base64url of a first byte naming the
//! list it belongs to and the boundary of the page in that list's order. A cursor this API did
//! not hand out (forged, truncated, of another list) is a 400 `invalid-parameter`, never a
//! wrong page.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use chrono::{DateTime, Utc};
use order_projections::queries::Keyset;
use uuid::Uuid;

use super::problem::ApiError;
use super::reading::invalid;

/// First byte of every cursor: the list (and layout) it belongs to.
const CURSOR_V1: u8 = 1;
/// An order's audit log: the last version of the page.
const EVENTS: u8 = 2;
/// The sagas listing: the last saga's `updated_at` and order id.
const SAGAS: u8 = 3;
/// The notifications listing: the last row's id.
const NOTIFICATIONS: u8 = 4;
/// The stores listing: the last store's id.
const STORES: u8 = 5;
/// A store's products: the last product's SKU.
const PRODUCTS: u8 = 6;
/// A store's members: the last member's `sub`.
const MEMBERS: u8 = 7;
/// A store's changes: the last change's id.
const CHANGES: u8 = 8;

/// Longest cursor of the lists keyed by an id or a number (stores, changes, and the others).
pub const MAX_CURSOR: usize = 64;
/// Longest products cursor: base64url of the kind byte and a SKU of up to 64 bytes.
pub const MAX_PRODUCT_CURSOR: usize = 88;
/// Longest members cursor: base64url of the kind byte and a `sub` of up to 256 bytes.
pub const MAX_MEMBER_CURSOR: usize = 344;

/// The cursor of a page boundary: base64url of a version byte, `created_at` in microseconds
/// since the epoch (big-endian) and the order id.
pub(crate) fn encode_cursor(k: &Keyset) -> String {
    let mut bytes = Vec::with_capacity(25);
    bytes.push(CURSOR_V1);
    bytes.extend_from_slice(&k.created_at.timestamp_micros().to_be_bytes());
    bytes.extend_from_slice(k.order_id.as_bytes());
    URL_SAFE_NO_PAD.encode(bytes)
}

/// The boundary `raw` encodes; 400 when it is not a cursor [`encode_cursor`] made.
pub(crate) fn decode_cursor(raw: &str) -> Result<Keyset, ApiError> {
    let malformed = || invalid("cursor is not one this API handed out; pass `next` of a page");
    let bytes = URL_SAFE_NO_PAD.decode(raw).map_err(|_| malformed())?;
    let [CURSOR_V1, rest @ ..] = bytes.as_slice() else {
        return Err(malformed());
    };
    let (micros, id) = rest.split_first_chunk::<8>().ok_or_else(malformed)?;
    let created_at =
        DateTime::from_timestamp_micros(i64::from_be_bytes(*micros)).ok_or_else(malformed)?;
    let order_id = Uuid::from_slice(id).map_err(|_| malformed())?;
    Ok(Keyset {
        created_at,
        order_id,
    })
}

/// The first `limit` of `rows` (fetched `limit + 1`) and the cursor after the last of them when
/// there were more: every list's page.
pub(crate) fn page<T>(
    mut rows: Vec<T>,
    limit: i64,
    cursor: impl Fn(&T) -> String,
) -> (Vec<T>, Option<String>) {
    let limit = usize::try_from(limit).unwrap_or(usize::MAX);
    let more = rows.len() > limit;
    rows.truncate(limit);
    let next = more.then(|| rows.last().map(cursor)).flatten();
    (rows, next)
}

fn encode(kind: u8, parts: &[&[u8]]) -> String {
    let mut bytes = vec![kind];
    for part in parts {
        bytes.extend_from_slice(part);
    }
    URL_SAFE_NO_PAD.encode(bytes)
}

/// The `N` bytes after `kind` that `raw` encodes; 400 otherwise.
fn decode<const N: usize>(kind: u8, raw: &str) -> Result<[u8; N], ApiError> {
    let malformed = || invalid("cursor is not one this list handed out; pass `next` of a page");
    let bytes = URL_SAFE_NO_PAD.decode(raw).map_err(|_| malformed())?;
    match bytes.split_first() {
        Some((first, rest)) if *first == kind => rest.try_into().map_err(|_| malformed()),
        _ => Err(malformed()),
    }
}

/// The bytes after `kind` that `raw` encodes, at least one; 400 otherwise.
fn decode_tail(kind: u8, raw: &str) -> Result<Vec<u8>, ApiError> {
    let malformed = || invalid("cursor is not one this list handed out; pass `next` of a page");
    let bytes = URL_SAFE_NO_PAD.decode(raw).map_err(|_| malformed())?;
    match bytes.split_first() {
        Some((first, rest)) if *first == kind && !rest.is_empty() => Ok(rest.to_vec()),
        _ => Err(malformed()),
    }
}

/// The cursor after store `id` in the stores listing.
pub fn encode_store_cursor(id: Uuid) -> String {
    encode(STORES, &[id.as_bytes()])
}

/// The store id a stores cursor encodes.
pub(crate) fn decode_store_cursor(raw: &str) -> Result<Uuid, ApiError> {
    decode::<16>(STORES, raw).map(Uuid::from_bytes)
}

/// The cursor after the product `sku` in a store's products.
pub fn encode_product_cursor(sku: &str) -> String {
    encode(PRODUCTS, &[sku.as_bytes()])
}

/// The SKU a products cursor encodes (a valid SKU, or 400).
pub(crate) fn decode_product_cursor(raw: &str) -> Result<String, ApiError> {
    String::from_utf8(decode_tail(PRODUCTS, raw)?)
        .ok()
        .and_then(|s| order_domain::Sku::parse(s).ok())
        .map(|s| s.as_str().to_owned())
        .ok_or_else(|| invalid("cursor is not one this list handed out; pass `next` of a page"))
}

/// The cursor after the member `sub` in a store's members.
pub fn encode_member_cursor(sub: &str) -> String {
    encode(MEMBERS, &[sub.as_bytes()])
}

/// The `sub` a members cursor encodes.
pub(crate) fn decode_member_cursor(raw: &str) -> Result<String, ApiError> {
    String::from_utf8(decode_tail(MEMBERS, raw)?)
        .map_err(|_| invalid("cursor is not one this list handed out; pass `next` of a page"))
}

/// The cursor after change `id` in a store's changes.
pub fn encode_change_cursor(id: i64) -> String {
    encode(CHANGES, &[&id.to_be_bytes()])
}

/// The change id a changes cursor encodes.
pub(crate) fn decode_change_cursor(raw: &str) -> Result<i64, ApiError> {
    decode::<8>(CHANGES, raw).map(i64::from_be_bytes)
}

/// The cursor after version `version` of an order's audit log.
pub fn encode_event_cursor(version: i64) -> String {
    encode(EVENTS, &[&version.to_be_bytes()])
}

/// The version an audit-log cursor encodes.
pub(crate) fn decode_event_cursor(raw: &str) -> Result<i64, ApiError> {
    decode::<8>(EVENTS, raw).map(i64::from_be_bytes)
}

/// The cursor after the saga of `order_id` last updated at `updated_at`.
pub fn encode_saga_cursor(updated_at: DateTime<Utc>, order_id: Uuid) -> String {
    encode(
        SAGAS,
        &[
            &updated_at.timestamp_micros().to_be_bytes(),
            order_id.as_bytes(),
        ],
    )
}

/// The boundary a sagas cursor encodes.
pub(crate) fn decode_saga_cursor(raw: &str) -> Result<(DateTime<Utc>, Uuid), ApiError> {
    let bytes = decode::<24>(SAGAS, raw)?;
    let (micros, id) = bytes.split_at(8);
    let micros = i64::from_be_bytes(micros.try_into().unwrap_or_default());
    let at = DateTime::from_timestamp_micros(micros)
        .ok_or_else(|| invalid("cursor is not one this list handed out; pass `next` of a page"))?;
    Ok((at, Uuid::from_slice(id).unwrap_or_default()))
}

/// The cursor after notification `id`.
pub fn encode_notification_cursor(id: i64) -> String {
    encode(NOTIFICATIONS, &[&id.to_be_bytes()])
}

/// The id a notifications cursor encodes.
pub(crate) fn decode_notification_cursor(raw: &str) -> Result<i64, ApiError> {
    decode::<8>(NOTIFICATIONS, raw).map(i64::from_be_bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_list_reads_back_its_own_cursors_only() {
        assert_eq!(
            decode_event_cursor(&encode_event_cursor(42)).expect("events"),
            42
        );
        assert_eq!(
            decode_notification_cursor(&encode_notification_cursor(7)).expect("notifications"),
            7
        );
        let at = DateTime::from_timestamp_micros(1_795_000_000_123_456).expect("time");
        let id = Uuid::new_v4();
        assert_eq!(
            decode_saga_cursor(&encode_saga_cursor(at, id)).expect("sagas"),
            (at, id)
        );
        // another list's cursor is refused, not misread
        assert!(decode_event_cursor(&encode_notification_cursor(7)).is_err());
        assert!(decode_saga_cursor(&encode_event_cursor(1)).is_err());
        assert!(decode_cursor(&encode_event_cursor(1)).is_err());
    }

    #[test]
    fn the_catalog_lists_read_back_their_own_cursors_only() {
        let id = Uuid::new_v4();
        assert_eq!(
            decode_store_cursor(&encode_store_cursor(id)).expect("stores"),
            id
        );
        assert_eq!(
            decode_product_cursor(&encode_product_cursor("TEA")).expect("products"),
            "TEA"
        );
        assert_eq!(
            decode_member_cursor(&encode_member_cursor("waiter-7")).expect("members"),
            "waiter-7"
        );
        assert_eq!(
            decode_change_cursor(&encode_change_cursor(9)).expect("changes"),
            9
        );
        assert!(decode_store_cursor(&encode_saga_cursor(Utc::now(), id)).is_err());
        assert!(decode_product_cursor(&encode_member_cursor("a b")).is_err());
        assert!(decode_product_cursor(&encode_product_cursor("not a sku")).is_err());
        assert!(decode_member_cursor(&encode_product_cursor("TEA")).is_err());
        assert!(decode_change_cursor(&encode_notification_cursor(9)).is_err());
        assert!(decode_member_cursor("Bw").is_err());
        // the longest keys fit their lists' cursor bounds
        assert!(encode_product_cursor(&"A".repeat(64)).len() <= MAX_PRODUCT_CURSOR);
        assert!(encode_member_cursor(&"a".repeat(256)).len() <= MAX_MEMBER_CURSOR);
        assert!(encode_store_cursor(id).len() <= MAX_CURSOR);
    }

    #[test]
    fn a_cursor_round_trips_to_the_microsecond() {
        let k = Keyset {
            created_at: DateTime::from_timestamp_micros(1_795_000_000_123_456).expect("time"),
            order_id: Uuid::new_v4(),
        };
        assert_eq!(decode_cursor(&encode_cursor(&k)).expect("decodes"), k);
    }

    #[test]
    fn a_forged_or_truncated_cursor_is_a_bad_parameter() {
        let good = encode_cursor(&Keyset {
            created_at: Utc::now(),
            order_id: Uuid::new_v4(),
        });
        for bad in [
            "",
            "!!!",
            &good[..good.len() - 2],
            "AAAA",
            &format!("{good}AA"),
        ] {
            assert!(
                matches!(
                    decode_cursor(bad),
                    Err(ApiError::BadRequest {
                        slug: "invalid-parameter",
                        ..
                    })
                ),
                "{bad:?}"
            );
        }
    }
}
