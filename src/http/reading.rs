//! What every read endpoint shares: its query parameters parsed and bounded (each refusal a
//! 400 `invalid-parameter` that names the parameter), and read-model failures mapped (503 when
//! the database is out of reach, 500 otherwise).

use super::problem::{ApiError, FieldProblem};

/// Bounds of the free-text search: trigrams need three characters to narrow anything.
const MIN_TEXT: usize = 3;
const MAX_TEXT: usize = 100;

/// A database failure: 503 when it is out of reach, 500 otherwise.
pub(crate) fn db(e: sqlx::Error) -> ApiError {
    ApiError::infra(anyhow::Error::new(e).context("reading the read models"))
}

/// A 400 `invalid-parameter` saying what is wrong with which parameter.
pub(crate) fn invalid(detail: impl Into<String>) -> ApiError {
    ApiError::BadRequest {
        slug: "invalid-parameter",
        detail: detail.into(),
    }
}

/// `raw` within `1..=max`, `default` when absent.
pub(crate) fn bounded(
    name: &str,
    raw: Option<i64>,
    default: u32,
    max: u32,
) -> Result<u32, ApiError> {
    match raw {
        None => Ok(default),
        Some(n) => u32::try_from(n)
            .ok()
            .filter(|n| (1..=max).contains(n))
            .ok_or_else(|| invalid(format!("{name} must be between 1 and {max}, not {n}"))),
    }
}

/// Free text to search for, trimmed: absent stays absent; present must be 3 to 100
/// characters.
pub(crate) fn search_text(raw: Option<String>) -> Result<Option<String>, ApiError> {
    let Some(text) = raw.map(|t| t.trim().to_owned()) else {
        return Ok(None);
    };
    printable("q", &text)?;
    let n = text.chars().count();
    if (MIN_TEXT..=MAX_TEXT).contains(&n) {
        Ok(Some(text))
    } else {
        Err(invalid(format!(
            "q must be {MIN_TEXT} to {MAX_TEXT} characters, not {n}"
        )))
    }
}

/// A text parameter without control characters (PostgreSQL text cannot hold NUL, and none
/// belongs in a name or a search).
pub(crate) fn printable(name: &str, value: &str) -> Result<(), ApiError> {
    if value.chars().any(char::is_control) {
        Err(invalid(format!(
            "{name} must not contain control characters"
        )))
    } else {
        Ok(())
    }
}

/// `from` must not come after `to`: each is well-formed, together they name no range (422
/// `invalid-range`, not a parameter a schema could refuse on its own).
pub(crate) fn ordered<T: PartialOrd + std::fmt::Display>(
    from: Option<T>,
    to: Option<T>,
) -> Result<(), ApiError> {
    match (from, to) {
        (Some(f), Some(t)) if f > t => Err(ApiError::Invalid {
            slug: "invalid-range",
            detail: format!("from ({f}) is after to ({t})"),
            errors: vec![FieldProblem {
                field: "from".into(),
                message: "must not come after to".into(),
            }],
        }),
        _ => Ok(()),
    }
}
