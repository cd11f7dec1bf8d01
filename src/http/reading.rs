//! What every read endpoint shares: its query parameters parsed and bounded (each refusal a
//! 400 `invalid-parameter` that names the parameter), and read-model failures mapped (503 when
//! the database is out of reach, 500 otherwise).

use super::problem::ApiError;

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
    let n = text.chars().count();
    if (MIN_TEXT..=MAX_TEXT).contains(&n) {
        Ok(Some(text))
    } else {
        Err(invalid(format!(
            "q must be {MIN_TEXT} to {MAX_TEXT} characters, not {n}"
        )))
    }
}

/// `from` must not come after `to`.
pub(crate) fn ordered<T: PartialOrd + std::fmt::Display>(
    from: Option<T>,
    to: Option<T>,
) -> Result<(), ApiError> {
    match (from, to) {
        (Some(f), Some(t)) if f > t => Err(invalid(format!("from ({f}) is after to ({t})"))),
        _ => Ok(()),
    }
}
