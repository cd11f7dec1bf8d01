//! The opaque cursor of keyset pagination: the boundary ([`Keyset`]) of a page, encoded as
//! base64url so clients pass it back verbatim. A cursor this API did not hand out (forged,
//! truncated, of an unknown layout) is a 400 `invalid-parameter`, never a wrong page.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use chrono::DateTime;
use order_projections::queries::Keyset;
use uuid::Uuid;

use super::problem::ApiError;
use super::reading::invalid;

/// First byte of every cursor, so that its layout can change without misreading old ones.
const CURSOR_V1: u8 = 1;

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

#[cfg(test)]
mod tests {
    use chrono::Utc;

    use super::*;

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
