//! Content negotiation: which representation an `Accept` header prefers. JSON is every
//! endpoint's default, so a wildcard (`*/*`) or no `Accept` at all means JSON, and an
//! alternative is chosen only when asked for with a strictly higher quality.

use std::collections::HashMap;

use poem::Request;

/// Whether the client prefers CSV: `text/csv` acceptable with a higher quality than JSON.
pub(crate) fn wants_csv(req: &Request) -> bool {
    let Some(accept) = req.header("accept") else {
        return false;
    };
    let mut quality: HashMap<&str, f32> = HashMap::new();
    for range in accept.split(',') {
        let mut parts = range.split(';').map(str::trim);
        let media = parts.next().unwrap_or_default();
        let q = parts
            .find_map(|p| p.strip_prefix("q="))
            .and_then(|q| q.parse::<f32>().ok())
            .unwrap_or(1.0);
        quality.insert(media, q);
    }
    let of = |media: &str| quality.get(media).copied();
    let csv = of("text/csv").or_else(|| of("text/*")).unwrap_or(0.0);
    let json = of("application/json")
        .or_else(|| of("application/*"))
        .or_else(|| of("*/*"))
        .unwrap_or(0.0);
    csv > 0.0 && csv > json
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_is_chosen_only_when_preferred() {
        let with = |accept: &str| wants_csv(&Request::builder().header("accept", accept).finish());
        assert!(with("text/csv"));
        assert!(with("text/csv, application/json;q=0.5"));
        assert!(!with("application/json"));
        assert!(!with("*/*"));
        assert!(!with("application/json, text/csv;q=0.9"));
        assert!(!with("text/csv;q=0"));
        assert!(!wants_csv(&Request::builder().finish()));
    }
}
