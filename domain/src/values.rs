//! Value types. Each has private fields and one constructor that enforces its rule, so a value
//! that exists is valid (parse, don't validate). Serde goes through the same constructors.

use std::fmt;

use serde::{Deserialize, Serialize};
use thiserror::Error;
use uuid::Uuid;

/// Why a raw value was not accepted. Each variant names the rule.
#[derive(Debug, Clone, Error, PartialEq, Eq)]
pub enum ValueError {
    #[error("sku must be 1-64 characters of A-Z, a-z, 0-9, '-', '_' or '.'")]
    InvalidSku,
    #[error("quantity must be between 1 and {max}, got {got}")]
    InvalidQuantity { got: i64, max: u32 },
    #[error("currency must be an ISO 4217 code such as EUR or USD, got {0:?}")]
    InvalidCurrency(String),
    #[error("amount must be between 0 and {max} minor units, got {got}")]
    InvalidAmount { got: i64, max: i64 },
    #[error("email address is not valid")]
    InvalidEmail,
    #[error("{field} must be 1-{max} printable characters")]
    InvalidText { field: &'static str, max: usize },
    #[error("country must be an ISO 3166-1 alpha-2 code such as DE or US")]
    InvalidCountry,
}

/// Order identifier (UUID). Deterministic (v5) under an idempotency key, random (v7) otherwise.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct OrderId(Uuid);

impl OrderId {
    /// A fresh, time-ordered id.
    pub fn new() -> Self {
        Self(Uuid::now_v7())
    }
    pub fn from_uuid(id: Uuid) -> Self {
        Self(id)
    }
    pub fn as_uuid(&self) -> Uuid {
        self.0
    }
}

impl Default for OrderId {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Display for OrderId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// Store (shop) identifier.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct StoreId(Uuid);

impl StoreId {
    pub fn from_uuid(id: Uuid) -> Self {
        Self(id)
    }
    pub fn as_uuid(&self) -> Uuid {
        self.0
    }
}

impl fmt::Display for StoreId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// Line number inside one order, assigned by the aggregate (1, 2, 3, ...), never reused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct LineId(u32);

impl LineId {
    pub fn new(n: u32) -> Self {
        Self(n)
    }
    pub fn get(self) -> u32 {
        self.0
    }
}

impl fmt::Display for LineId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

fn printable(s: &str) -> bool {
    !s.chars().any(char::is_control)
}

macro_rules! bounded_text {
    ($(#[$doc:meta])* $name:ident, $field:literal, $max:expr) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(String);

        impl $name {
            /// Longest accepted value, in characters.
            pub const MAX: usize = $max;

            pub fn parse(raw: impl Into<String>) -> Result<Self, ValueError> {
                let raw: String = raw.into();
                let trimmed = raw.trim();
                let len = trimmed.chars().count();
                if len == 0 || len > Self::MAX || !printable(trimmed) {
                    return Err(ValueError::InvalidText { field: $field, max: Self::MAX });
                }
                Ok(Self(trimmed.to_owned()))
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl TryFrom<String> for $name {
            type Error = ValueError;
            fn try_from(raw: String) -> Result<Self, Self::Error> {
                Self::parse(raw)
            }
        }

        impl From<$name> for String {
            fn from(v: $name) -> String {
                v.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

bounded_text!(
    /// Customer identifier: the JWT `sub` of the customer (any printable string, ≤ 128 chars).
    CustomerId, "customer_id", 128
);
bounded_text!(
    /// Product name as shown to the customer; snapshotted into the order when an item is added.
    ProductName, "name", 200
);
bounded_text!(
    /// Name of a store.
    StoreName, "name", 200
);
bounded_text!(
    /// Free-text reason (cancellation, rejection).
    Reason, "reason", 500
);
bounded_text!(
    /// Free-text note attached to a status change.
    Note, "note", 500
);
bounded_text!(
    /// Shipping carrier name (e.g. "DHL").
    Carrier, "carrier", 64
);
bounded_text!(
    /// Carrier's tracking number.
    TrackingNumber, "tracking_number", 64
);
bounded_text!(
    /// One line of a postal address, a city or a recipient name.
    AddressLine, "address", 200
);
bounded_text!(
    /// Postal code, as written in its country.
    PostalCode, "postal_code", 20
);

/// Stock keeping unit: 1-64 characters of `[A-Za-z0-9._-]`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Sku(String);

impl Sku {
    pub fn parse(raw: impl Into<String>) -> Result<Self, ValueError> {
        let raw: String = raw.into();
        let ok = (1..=64).contains(&raw.len())
            && raw
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
        if ok {
            Ok(Self(raw))
        } else {
            Err(ValueError::InvalidSku)
        }
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for Sku {
    type Error = ValueError;
    fn try_from(raw: String) -> Result<Self, Self::Error> {
        Self::parse(raw)
    }
}

impl From<Sku> for String {
    fn from(v: Sku) -> String {
        v.0
    }
}

impl fmt::Display for Sku {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Units of one product on one line: 1 ..= [`Quantity::MAX`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "i64", into = "u32")]
pub struct Quantity(u32);

impl Quantity {
    pub const MAX: u32 = 10_000;

    pub fn parse(raw: i64) -> Result<Self, ValueError> {
        match u32::try_from(raw) {
            Ok(n) if (1..=Self::MAX).contains(&n) => Ok(Self(n)),
            _ => Err(ValueError::InvalidQuantity {
                got: raw,
                max: Self::MAX,
            }),
        }
    }
    pub fn get(self) -> u32 {
        self.0
    }
}

impl TryFrom<i64> for Quantity {
    type Error = ValueError;
    fn try_from(raw: i64) -> Result<Self, Self::Error> {
        Self::parse(raw)
    }
}

impl From<Quantity> for u32 {
    fn from(q: Quantity) -> u32 {
        q.0
    }
}

/// ISO 4217 codes in circulation (2026). A code outside this list is refused.
const ISO_4217: &[&str] = &[
    "AED", "AFN", "ALL", "AMD", "ANG", "AOA", "ARS", "AUD", "AWG", "AZN", "BAM", "BBD", "BDT",
    "BGN", "BHD", "BIF", "BMD", "BND", "BOB", "BRL", "BSD", "BTN", "BWP", "BYN", "BZD", "CAD",
    "CDF", "CHF", "CLP", "CNY", "COP", "CRC", "CUP", "CVE", "CZK", "DJF", "DKK", "DOP", "DZD",
    "EGP", "ERN", "ETB", "EUR", "FJD", "FKP", "GBP", "GEL", "GHS", "GIP", "GMD", "GNF", "GTQ",
    "GYD", "HKD", "HNL", "HTG", "HUF", "IDR", "ILS", "INR", "IQD", "IRR", "ISK", "JMD", "JOD",
    "JPY", "KES", "KGS", "KHR", "KMF", "KPW", "KRW", "KWD", "KYD", "KZT", "LAK", "LBP", "LKR",
    "LRD", "LSL", "LYD", "MAD", "MDL", "MGA", "MKD", "MMK", "MNT", "MOP", "MRU", "MUR", "MVR",
    "MWK", "MXN", "MYR", "MZN", "NAD", "NGN", "NIO", "NOK", "NPR", "NZD", "OMR", "PAB", "PEN",
    "PGK", "PHP", "PKR", "PLN", "PYG", "QAR", "RON", "RSD", "RUB", "RWF", "SAR", "SBD", "SCR",
    "SDG", "SEK", "SGD", "SHP", "SLE", "SOS", "SRD", "SSP", "STN", "SVC", "SYP", "SZL", "THB",
    "TJS", "TMT", "TND", "TOP", "TRY", "TTD", "TWD", "TZS", "UAH", "UGX", "USD", "UYU", "UZS",
    "VES", "VND", "VUV", "WST", "XAF", "XCD", "XCG", "XOF", "XPF", "YER", "ZAR", "ZMW", "ZWG",
];

/// ISO 4217 currency code, upper case.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Currency([u8; 3]);

impl Currency {
    pub fn parse(raw: &str) -> Result<Self, ValueError> {
        if ISO_4217.binary_search(&raw).is_ok() {
            let b = raw.as_bytes();
            Ok(Self([b[0], b[1], b[2]]))
        } else {
            Err(ValueError::InvalidCurrency(raw.chars().take(8).collect()))
        }
    }
    pub fn as_str(&self) -> &str {
        // Only ISO_4217 entries (ASCII) are ever stored.
        std::str::from_utf8(&self.0).unwrap_or("XXX")
    }
}

impl TryFrom<String> for Currency {
    type Error = ValueError;
    fn try_from(raw: String) -> Result<Self, Self::Error> {
        Self::parse(&raw)
    }
}

impl From<Currency> for String {
    fn from(c: Currency) -> String {
        c.as_str().to_owned()
    }
}

impl fmt::Display for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A non-negative amount in minor units (cents) of one currency. Never a float.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "RawMoney")]
pub struct Money {
    amount_minor: i64,
    currency: Currency,
}

/// The wire shape of [`Money`], checked by [`Money::new`] on the way in.
#[derive(Deserialize)]
struct RawMoney {
    amount_minor: i64,
    currency: Currency,
}

impl TryFrom<RawMoney> for Money {
    type Error = ValueError;
    fn try_from(raw: RawMoney) -> Result<Self, Self::Error> {
        Money::new(raw.amount_minor, raw.currency)
    }
}

impl Money {
    /// Largest amount accepted anywhere: 10^13 minor units (100 billion in a 2-decimal currency),
    /// far enough below `i64::MAX` that line totals of bounded quantities cannot overflow.
    pub const MAX_MINOR: i64 = 10_000_000_000_000;

    pub fn new(amount_minor: i64, currency: Currency) -> Result<Self, ValueError> {
        if (0..=Self::MAX_MINOR).contains(&amount_minor) {
            Ok(Self {
                amount_minor,
                currency,
            })
        } else {
            Err(ValueError::InvalidAmount {
                got: amount_minor,
                max: Self::MAX_MINOR,
            })
        }
    }
    pub fn amount_minor(&self) -> i64 {
        self.amount_minor
    }
    pub fn currency(&self) -> Currency {
        self.currency
    }
    /// `self × quantity`, or `None` past [`Money::MAX_MINOR`].
    pub fn times(&self, quantity: Quantity) -> Option<Money> {
        let amount = self.amount_minor.checked_mul(i64::from(quantity.get()))?;
        Money::new(amount, self.currency).ok()
    }
    /// Sum of two amounts of the same currency, or `None` on mismatch or past the maximum.
    pub fn plus(&self, other: Money) -> Option<Money> {
        if self.currency != other.currency {
            return None;
        }
        Money::new(
            self.amount_minor.checked_add(other.amount_minor)?,
            self.currency,
        )
        .ok()
    }
}

/// An email address: one `@`, a non-empty local part, a dotted domain, ≤ 254 characters.
/// Deliberately not the full RFC 5322 grammar: the address is confirmed by sending mail to it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Email(String);

impl Email {
    pub fn parse(raw: impl Into<String>) -> Result<Self, ValueError> {
        let raw: String = raw.into();
        let raw = raw.trim();
        let valid = raw.len() <= 254
            && raw.split_once('@').is_some_and(|(local, domain)| {
                !local.is_empty()
                    && local.len() <= 64
                    && !domain.contains('@')
                    && domain.contains('.')
                    && !domain.starts_with('.')
                    && !domain.ends_with('.')
                    && domain.split('.').all(|label| !label.is_empty())
            })
            && !raw.chars().any(|c| c.is_whitespace() || c.is_control());
        if valid {
            Ok(Self(raw.to_owned()))
        } else {
            Err(ValueError::InvalidEmail)
        }
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for Email {
    type Error = ValueError;
    fn try_from(raw: String) -> Result<Self, Self::Error> {
        Self::parse(raw)
    }
}

impl From<Email> for String {
    fn from(v: Email) -> String {
        v.0
    }
}

/// ISO 3166-1 alpha-2 country code, upper case.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct CountryCode([u8; 2]);

impl CountryCode {
    pub fn parse(raw: &str) -> Result<Self, ValueError> {
        match raw.as_bytes() {
            [a, b] if a.is_ascii_uppercase() && b.is_ascii_uppercase() => Ok(Self([*a, *b])),
            _ => Err(ValueError::InvalidCountry),
        }
    }
    pub fn as_str(&self) -> &str {
        std::str::from_utf8(&self.0).unwrap_or("ZZ")
    }
}

impl TryFrom<String> for CountryCode {
    type Error = ValueError;
    fn try_from(raw: String) -> Result<Self, Self::Error> {
        Self::parse(&raw)
    }
}

impl From<CountryCode> for String {
    fn from(c: CountryCode) -> String {
        c.as_str().to_owned()
    }
}

/// Where a shipped order goes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShippingAddress {
    pub name: AddressLine,
    pub line1: AddressLine,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub line2: Option<AddressLine>,
    pub city: AddressLine,
    pub postal_code: PostalCode,
    pub country: CountryCode,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn skus_accept_the_documented_alphabet_only() {
        assert!(Sku::parse("ABC-123_x.9").is_ok());
        for bad in ["", "has space", "ü", "a/b", &"x".repeat(65)] {
            assert_eq!(Sku::parse(bad), Err(ValueError::InvalidSku), "{bad:?}");
        }
    }

    #[test]
    fn quantities_are_between_one_and_the_maximum() {
        assert_eq!(Quantity::parse(1).map(Quantity::get), Ok(1));
        assert_eq!(Quantity::parse(10_000).map(Quantity::get), Ok(10_000));
        for bad in [0, -1, 10_001, i64::MAX, i64::MIN] {
            assert!(Quantity::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn currencies_must_be_known_iso_4217_codes() {
        assert_eq!(
            Currency::parse("EUR").map(|c| c.to_string()),
            Ok("EUR".into())
        );
        for bad in ["eur", "EU", "EURO", "XYZ", ""] {
            assert!(Currency::parse(bad).is_err(), "{bad}");
        }
        // binary_search needs the table sorted
        assert!(ISO_4217.windows(2).all(|w| w[0] < w[1]));
    }

    #[test]
    fn money_refuses_negative_and_huge_amounts_and_checks_arithmetic() {
        let eur = Currency::parse("EUR").unwrap();
        let usd = Currency::parse("USD").unwrap();
        assert!(Money::new(-1, eur).is_err());
        assert!(Money::new(Money::MAX_MINOR + 1, eur).is_err());
        let price = Money::new(250, eur).unwrap();
        assert_eq!(
            price
                .times(Quantity::parse(4).unwrap())
                .map(|m| m.amount_minor()),
            Some(1000)
        );
        let big = Money::new(Money::MAX_MINOR, eur).unwrap();
        assert_eq!(big.times(Quantity::parse(2).unwrap()), None);
        assert_eq!(price.plus(Money::new(1, usd).unwrap()), None);
        assert_eq!(price.plus(price).map(|m| m.amount_minor()), Some(500));
    }

    #[test]
    fn emails_need_a_local_part_and_a_dotted_domain() {
        assert!(Email::parse("ada@example.com").is_ok());
        for bad in [
            "",
            "ada",
            "ada@",
            "@example.com",
            "ada@example",
            "a b@example.com",
            "a@b@c.de",
            "ada@.com",
        ] {
            assert!(Email::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn texts_are_trimmed_bounded_and_printable() {
        assert_eq!(Reason::parse("  too late ").unwrap().as_str(), "too late");
        assert!(Reason::parse("   ").is_err());
        assert!(Reason::parse("x".repeat(501)).is_err());
        assert!(Note::parse("bell\u{7}").is_err());
    }

    #[test]
    fn values_deserialize_through_their_constructors() {
        assert!(serde_json::from_str::<Quantity>("0").is_err());
        assert!(serde_json::from_str::<Sku>("\"a b\"").is_err());
        assert!(serde_json::from_str::<Currency>("\"eur\"").is_err());
        assert!(serde_json::from_str::<Money>(r#"{"amount_minor":-1,"currency":"EUR"}"#).is_err());
        assert_eq!(
            serde_json::to_string(&Currency::parse("JPY").unwrap()).unwrap(),
            "\"JPY\""
        );
    }
}
