//! Dates and instants as the API writes and reads them, in standard OpenAPI formats only
//! (DESIGN §9): poem-openapi documents chrono's `NaiveDate` as `naive-date`, which no client
//! generator knows.
//!
//! * [`Day`]: a calendar day, `string` with `format: date` (`2026-12-03`).
//! * [`Bound`]: what `from` and `to` of reports and lists accept: an RFC 3339 timestamp
//!   (`2026-12-03T10:00:00Z`, any offset) or a date (`2026-12-03`, meaning that day 00:00 UTC),
//!   documented as `anyOf: [date-time, date]`. A list filters on the instant; a report, whose
//!   rows are days, on the UTC day the instant falls in, so `2026-12-03T00:00:00Z` and
//!   `2026-12-03` give the same report.

use std::borrow::Cow;
use std::fmt;

use chrono::{DateTime, NaiveDate, NaiveTime, Utc};
use poem_openapi::registry::{MetaSchema, MetaSchemaRef};
use poem_openapi::types::{
    ParseError, ParseFromJSON, ParseFromParameter, ParseResult, ToJSON, Type,
};
use serde_json::Value;

/// A calendar day, written `YYYY-MM-DD` (`format: date`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Day(pub NaiveDate);

impl Type for Day {
    const IS_REQUIRED: bool = true;
    type RawValueType = Self;
    type RawElementValueType = Self;

    fn name() -> Cow<'static, str> {
        "string_date".into()
    }

    fn schema_ref() -> MetaSchemaRef {
        MetaSchemaRef::Inline(Box::new(MetaSchema::new_with_format("string", "date")))
    }

    fn as_raw_value(&self) -> Option<&Self::RawValueType> {
        Some(self)
    }

    fn raw_element_iter<'a>(
        &'a self,
    ) -> Box<dyn Iterator<Item = &'a Self::RawElementValueType> + 'a> {
        Box::new(self.as_raw_value().into_iter())
    }
}

impl ToJSON for Day {
    fn to_json(&self) -> Option<Value> {
        Some(Value::String(self.to_string()))
    }
}

impl ParseFromJSON for Day {
    fn parse_from_json(value: Option<Value>) -> ParseResult<Self> {
        match value.unwrap_or_default() {
            Value::String(s) => parse_day(&s).map(Self).map_err(ParseError::custom),
            other => Err(ParseError::expected_type(other)),
        }
    }
}

impl fmt::Display for Day {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0.format("%Y-%m-%d"))
    }
}

/// A `from` or `to` bound: an RFC 3339 timestamp or a date (that day 00:00 UTC).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Bound(DateTime<Utc>);

impl Bound {
    /// The instant, for lists.
    pub fn instant(self) -> DateTime<Utc> {
        self.0
    }

    /// The UTC day the instant falls in, for reports.
    pub fn day(self) -> NaiveDate {
        self.0.date_naive()
    }

    /// Parses a timestamp with an offset, or a bare date.
    pub fn parse(raw: &str) -> Result<Self, String> {
        if let Ok(t) = DateTime::parse_from_rfc3339(raw) {
            return Ok(Self(t.with_timezone(&Utc)));
        }
        parse_day(raw)
            .map(|d| Self(d.and_time(NaiveTime::MIN).and_utc()))
            .map_err(|_| {
                format!("`{raw}` is neither an RFC 3339 timestamp nor a date (YYYY-MM-DD)")
            })
    }
}

impl Type for Bound {
    const IS_REQUIRED: bool = true;
    type RawValueType = Self;
    type RawElementValueType = Self;

    fn name() -> Cow<'static, str> {
        "string_date-time_or_date".into()
    }

    fn schema_ref() -> MetaSchemaRef {
        MetaSchemaRef::Inline(Box::new(MetaSchema {
            any_of: vec![
                MetaSchemaRef::Inline(Box::new(MetaSchema::new_with_format("string", "date-time"))),
                MetaSchemaRef::Inline(Box::new(MetaSchema::new_with_format("string", "date"))),
            ],
            ..MetaSchema::ANY
        }))
    }

    fn as_raw_value(&self) -> Option<&Self::RawValueType> {
        Some(self)
    }

    fn raw_element_iter<'a>(
        &'a self,
    ) -> Box<dyn Iterator<Item = &'a Self::RawElementValueType> + 'a> {
        Box::new(self.as_raw_value().into_iter())
    }
}

impl ParseFromParameter for Bound {
    fn parse_from_parameter(value: &str) -> ParseResult<Self> {
        Self::parse(value).map_err(ParseError::custom)
    }
}

impl fmt::Display for Bound {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0.to_rfc3339())
    }
}

/// `YYYY-MM-DD`, four-digit year.
fn parse_day(raw: &str) -> Result<NaiveDate, chrono::ParseError> {
    NaiveDate::parse_from_str(raw, "%Y-%m-%d")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_date_is_that_day_at_midnight_utc() {
        let date = Bound::parse("2026-12-03").expect("date");
        let stamp = Bound::parse("2026-12-03T00:00:00Z").expect("timestamp");
        assert_eq!(date, stamp);
        assert_eq!(
            date.day(),
            NaiveDate::from_ymd_opt(2026, 12, 3).expect("day")
        );
    }

    #[test]
    fn a_timestamp_counts_on_its_utc_day() {
        let late = Bound::parse("2026-12-03T23:30:00-02:00").expect("timestamp");
        assert_eq!(
            late.day(),
            NaiveDate::from_ymd_opt(2026, 12, 4).expect("day")
        );
    }

    #[test]
    fn anything_else_is_refused_with_both_forms_named() {
        for raw in ["", "2026-13-01", "yesterday", "2026-12-03T00:00:00"] {
            let err = Bound::parse(raw).expect_err(raw);
            assert!(
                err.contains("RFC 3339") && err.contains("YYYY-MM-DD"),
                "{err}"
            );
        }
    }
}
