//! Scrapes of the service's `/metrics`, and the difference between two of them: where the time
//! of one scenario went, from the service's own histograms.

use std::collections::BTreeMap;

use serde_json::{json, Map, Value};

/// One scrape: series (name and sorted labels) → value.
#[derive(Debug, Clone, Default)]
pub struct Scrape(BTreeMap<Series, f64>);

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Series {
    pub name: String,
    pub labels: Vec<(String, String)>,
}

impl Series {
    fn label(&self, key: &str) -> Option<&str> {
        self.labels
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

/// A histogram summed over the series that matched: cumulative buckets, sum and count.
#[derive(Debug, Clone, Default)]
pub struct Hist {
    pub buckets: Vec<(f64, f64)>,
    pub sum: f64,
    pub count: f64,
}

impl Hist {
    /// Mean in milliseconds.
    pub fn mean_ms(&self) -> f64 {
        if self.count > 0.0 {
            self.sum / self.count * 1000.0
        } else {
            f64::NAN
        }
    }

    /// The `q` quantile, interpolated inside its bucket as Prometheus' `histogram_quantile` does.
    pub fn quantile(&self, q: f64) -> f64 {
        if self.count <= 0.0 {
            return f64::NAN;
        }
        let rank = q * self.count;
        let mut previous = (0.0, 0.0);
        for &(le, cumulative) in &self.buckets {
            if cumulative >= rank {
                if le.is_infinite() {
                    return previous.0;
                }
                let width = le - previous.0;
                let inside = cumulative - previous.1;
                return if inside > 0.0 {
                    previous.0 + width * (rank - previous.1) / inside
                } else {
                    le
                };
            }
            previous = (le, cumulative);
        }
        previous.0
    }
}

impl Scrape {
    pub async fn fetch(client: &reqwest::Client, base: &str) -> anyhow::Result<Self> {
        let text = client
            .get(format!("{base}/metrics"))
            .send()
            .await?
            .error_for_status()?
            .text()
            .await?;
        Ok(Self::parse(&text))
    }

    pub fn parse(text: &str) -> Self {
        let mut series = BTreeMap::new();
        for line in text.lines() {
            if line.starts_with('#') || line.trim().is_empty() {
                continue;
            }
            let Some((key, value)) = line.rsplit_once(' ') else {
                continue;
            };
            let Ok(value) = value.parse::<f64>() else {
                continue;
            };
            let (name, labels) = match key.split_once('{') {
                Some((name, rest)) => (name, parse_labels(rest.trim_end_matches('}'))),
                None => (key, Vec::new()),
            };
            series.insert(
                Series {
                    name: name.to_owned(),
                    labels,
                },
                value,
            );
        }
        Self(series)
    }

    /// `self - earlier`, series by series (counters and histograms; gauges keep `self`).
    pub fn since(&self, earlier: &Self) -> Self {
        Self(
            self.0
                .iter()
                .map(|(s, v)| (s.clone(), v - earlier.0.get(s).copied().unwrap_or(0.0)))
                .collect(),
        )
    }

    /// The histogram `name`, summed over series whose `label` is `value` (all when `None`).
    pub fn hist(&self, name: &str, label: Option<(&str, &str)>) -> Hist {
        let matches = |s: &Series| label.is_none_or(|(k, v)| s.label(k) == Some(v));
        let mut buckets: BTreeMap<u64, (f64, f64)> = BTreeMap::new();
        let mut hist = Hist::default();
        for (s, v) in &self.0 {
            if !matches(s) {
                continue;
            }
            if s.name == format!("{name}_bucket") {
                let le: f64 = match s.label("le") {
                    Some("+Inf") => f64::INFINITY,
                    Some(le) => le.parse().unwrap_or(f64::INFINITY),
                    None => continue,
                };
                buckets.entry(le.to_bits()).or_insert((le, 0.0)).1 += v;
            } else if s.name == format!("{name}_sum") {
                hist.sum += v;
            } else if s.name == format!("{name}_count") {
                hist.count += v;
            }
        }
        hist.buckets = buckets.into_values().collect();
        hist.buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
        hist
    }

    /// The distinct values of `label` among the series of histogram `name`.
    pub fn label_values(&self, name: &str, label: &str) -> Vec<String> {
        let mut values: Vec<String> = self
            .0
            .keys()
            .filter(|s| s.name == format!("{name}_count"))
            .filter_map(|s| s.label(label).map(str::to_owned))
            .collect();
        values.sort();
        values.dedup();
        values
    }

    /// Mean, p50 and p99 (ms) and count per label value of each histogram: the "where time
    /// goes" table of one scenario.
    pub fn breakdown(&self) -> Value {
        let mut out = Map::new();
        for (name, label) in [
            ("http_request_duration_seconds", "route"),
            ("order_command_stage_seconds", "stage"),
            ("log_reader_apply_seconds", "reader"),
            ("log_reader_event_delay_seconds", "reader"),
            ("saga_step_duration_seconds", "step"),
        ] {
            let mut rows = Map::new();
            for value in self.label_values(name, label) {
                let h = self.hist(name, Some((label, &value)));
                if h.count < 1.0 {
                    continue;
                }
                rows.insert(
                    value,
                    json!({"count": h.count, "mean_ms": h.mean_ms(),
                           "p50_ms": h.quantile(0.5) * 1000.0, "p99_ms": h.quantile(0.99) * 1000.0}),
                );
            }
            if !rows.is_empty() {
                out.insert(name.to_owned(), Value::Object(rows));
            }
        }
        let batch = self.label_values("log_reader_batch_size", "reader");
        let mut sizes = Map::new();
        for reader in batch {
            let h = self.hist("log_reader_batch_size", Some(("reader", &reader)));
            if h.count >= 1.0 {
                sizes.insert(
                    reader,
                    json!({"batches": h.count, "mean_events": h.sum / h.count}),
                );
            }
        }
        if !sizes.is_empty() {
            out.insert("log_reader_batch_size".to_owned(), Value::Object(sizes));
        }
        Value::Object(out)
    }
}

fn parse_labels(text: &str) -> Vec<(String, String)> {
    let mut labels = Vec::new();
    let mut rest = text;
    while let Some((key, after)) = rest.split_once("=\"") {
        let mut value = String::new();
        let mut chars = after.char_indices();
        let mut end = after.len();
        while let Some((i, c)) = chars.next() {
            match c {
                '\\' => {
                    if let Some((_, escaped)) = chars.next() {
                        value.push(if escaped == 'n' { '\n' } else { escaped });
                    }
                }
                '"' => {
                    end = i + 1;
                    break;
                }
                c => value.push(c),
            }
        }
        labels.push((key.trim_start_matches(',').trim().to_owned(), value));
        rest = &after[end..];
    }
    labels.sort();
    labels
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_interpolates_a_histogram() {
        let text = r#"
# HELP x_seconds a histogram
x_seconds_bucket{route="/a",le="0.1"} 50
x_seconds_bucket{route="/a",le="0.2"} 100
x_seconds_bucket{route="/a",le="+Inf"} 100
x_seconds_sum{route="/a"} 10
x_seconds_count{route="/a"} 100
"#;
        let h = Scrape::parse(text).hist("x_seconds", Some(("route", "/a")));
        assert!((h.count - 100.0).abs() < 1e-9);
        assert!((h.quantile(0.5) - 0.1).abs() < 1e-9);
        assert!((h.quantile(0.75) - 0.15).abs() < 1e-9);
        assert!((h.mean_ms() - 100.0).abs() < 1e-9);
    }
}
