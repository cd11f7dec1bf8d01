//! The operations artifacts of `deploy/` against the real service (DESIGN §11): every metric
//! the Grafana dashboard (`deploy/grafana/order-service.json`) and the alert rules
//! (`deploy/prometheus/alerts.yaml`) query is on a real `/metrics` page once a saga has run;
//! every alert has a severity, a summary, a description and a runbook entry in
//! `docs/operations.md`; and the NATS signals the alerts read follow the server: `nats_connected`
//! falls to 0 while it is away, and the reply consumer's backlog gauges come back with it.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use order_service::simulator::SimulatorConfig;
use serde_json::{json, Value};

use crate::helpers::{spawn_app_with, spawn_saga_app, TestApp};
use crate::nats_trust::PrivateNats;

const DASHBOARD: &str = include_str!("../../deploy/grafana/order-service.json");
const ALERTS: &str = include_str!("../../deploy/prometheus/alerts.yaml");
const RUNBOOK: &str = include_str!("../../docs/operations.md");
const WAIT: Duration = Duration::from_secs(20);

/// Names that look like metrics in PromQL but are not: set operators and modifiers.
const KEYWORDS: [&str; 7] = ["and", "or", "unless", "bool", "offset", "inf", "nan"];
/// Aggregation operators: functions, though a `by (..)` may stand before their `(`.
const AGGREGATIONS: [&str; 14] = [
    "sum",
    "min",
    "max",
    "avg",
    "group",
    "stddev",
    "stdvar",
    "count",
    "count_values",
    "bottomk",
    "topk",
    "quantile",
    "limitk",
    "limit_ratio",
];
/// Modifiers followed by a list of label names in parentheses.
const LABEL_LISTS: [&str; 6] = [
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
];
/// Series Prometheus makes itself, not the service.
const PROMETHEUS_OWN: [&str; 1] = ["up"];

/// The metric names a PromQL expression selects: every identifier outside strings, label
/// matchers (`{..}`), ranges (`[..]`) and label lists (`by (..)`), that is not a function (an
/// identifier before `(`), a keyword, a number or a Grafana variable.
fn metric_names(expr: &str) -> BTreeSet<String> {
    let chars: Vec<char> = expr.chars().collect();
    let skip_to = |from: usize, close: char| {
        chars[from + 1..]
            .iter()
            .position(|c| *c == close)
            .map_or(chars.len(), |n| from + 1 + n + 1)
    };
    let word = |from: usize| {
        chars[from..]
            .iter()
            .position(|c| !(c.is_ascii_alphanumeric() || *c == '_' || *c == ':' || *c == '.'))
            .map_or(chars.len(), |n| from + n)
    };
    let mut names = BTreeSet::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        match c {
            '"' | '\'' | '`' => i = skip_to(i, c),
            '{' => i = skip_to(i, '}'),
            '[' => i = skip_to(i, ']'),
            '$' => i = word(i + 1),
            c if c.is_ascii_digit() || c == '.' => i = word(i),
            c if c.is_ascii_alphabetic() || c == '_' || c == ':' => {
                let end = word(i);
                let ident: String = chars[i..end].iter().collect();
                let next = chars[end..].iter().position(|c| !c.is_whitespace());
                let before_paren = next.is_some_and(|n| chars[end + n] == '(');
                i = end;
                if LABEL_LISTS.contains(&ident.as_str()) {
                    if let Some(n) = next.filter(|_| before_paren) {
                        i = skip_to(end + n, ')');
                    }
                } else if !before_paren
                    && !KEYWORDS.contains(&ident.to_lowercase().as_str())
                    && !AGGREGATIONS.contains(&ident.as_str())
                {
                    names.insert(ident);
                }
            }
            _ => i += 1,
        }
    }
    names
}

/// Every family on a metrics page, with its type (`# TYPE name type`).
fn families(page: &str) -> BTreeMap<String, String> {
    page.lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split_once(' '))
        .map(|(name, kind)| (name.to_owned(), kind.trim().to_owned()))
        .collect()
}

/// The names in `used` (name → where it is used) that `page` does not expose: neither as a
/// family, nor as a histogram's `_bucket`/`_sum`/`_count` series.
fn missing(used: &BTreeMap<String, Vec<String>>, page: &str) -> Vec<String> {
    let exposed = families(page);
    let is_exposed = |name: &str| {
        exposed.contains_key(name)
            || ["_bucket", "_sum", "_count"].iter().any(|suffix| {
                name.strip_suffix(suffix).is_some_and(|family| {
                    exposed
                        .get(family)
                        .is_some_and(|kind| kind == "histogram" || kind == "summary")
                })
            })
    };
    used.iter()
        .filter(|(name, _)| !PROMETHEUS_OWN.contains(&name.as_str()) && !is_exposed(name))
        .map(|(name, whence)| format!("{name} (in {})", whence.join(", ")))
        .collect()
}

/// Every panel's query of a dashboard, rows' nested panels included, with the panel's title.
fn dashboard_exprs(panels: &Value, out: &mut Vec<(String, String)>) {
    for panel in panels.as_array().into_iter().flatten() {
        let title = panel["title"].as_str().unwrap_or("?");
        for target in panel["targets"].as_array().into_iter().flatten() {
            if let Some(expr) = target["expr"].as_str() {
                out.push((format!("panel {title:?}"), expr.to_owned()));
            }
        }
        dashboard_exprs(&panel["panels"], out);
    }
}

/// Every alert rule of the rules file.
fn alert_rules() -> Vec<serde_yaml::Value> {
    let rules: serde_yaml::Value = serde_yaml::from_str(ALERTS).expect("alerts.yaml is YAML");
    rules["groups"]
        .as_sequence()
        .expect("groups")
        .iter()
        .flat_map(|g| g["rules"].as_sequence().cloned().unwrap_or_default())
        .filter(|r| r.get("alert").is_some())
        .collect()
}

/// Metric name → where the dashboard and the alerts use it.
fn used_metrics() -> BTreeMap<String, Vec<String>> {
    let dashboard: Value = serde_json::from_str(DASHBOARD).expect("the dashboard is JSON");
    let mut exprs = Vec::new();
    dashboard_exprs(&dashboard["panels"], &mut exprs);
    for rule in alert_rules() {
        let alert = rule["alert"].as_str().unwrap_or("?");
        let expr = rule["expr"].as_str().expect("every alert has an expr");
        exprs.push((format!("alert {alert}"), expr.to_owned()));
    }
    let mut used: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (whence, expr) in exprs {
        for name in metric_names(&expr) {
            used.entry(name).or_default().push(whence.clone());
        }
    }
    used
}

/// Scrapes until `pending` finds nothing left to wait for on the page; after [`WAIT`], panics
/// with what it still waited for and the last page.
async fn wait_for_page(app: &TestApp, pending: impl Fn(&str) -> Option<String>) -> String {
    let deadline = Instant::now() + WAIT;
    loop {
        let page = app.metrics_page().await;
        let Some(waiting) = pending(&page) else {
            return page;
        };
        assert!(
            Instant::now() < deadline,
            "after {WAIT:?}: {waiting}\n{page}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[test]
fn metric_names_are_read_from_promql_without_functions_labels_or_keywords() {
    let expr = r#"histogram_quantile(0.99, sum by (job, le) (rate(saga_step_duration_seconds_bucket{outcome="ok", step=~"a|b"}[$__rate_interval])))
        > 5 and on (instance) group_left () (log_reader_active == 1) or vector(0)
        unless max without (reader) (nats_connected offset 5m) / ignoring (x) up"#;
    assert_eq!(
        metric_names(expr),
        [
            "log_reader_active",
            "nats_connected",
            "saga_step_duration_seconds_bucket",
            "up",
        ]
        .map(str::to_owned)
        .into(),
    );
}

#[test]
fn a_misspelled_metric_or_a_suffix_of_no_histogram_is_reported_missing() {
    let page = "# TYPE http_request_duration_seconds histogram\n\
                http_request_duration_seconds_count{route=\"/\"} 1\n\
                # TYPE worker_up gauge\nworker_up{worker=\"relay\"} 1\n";
    let used: BTreeMap<String, Vec<String>> = [
        "http_request_duration_seconds_bucket",
        "worker_up",
        "wroker_up",
        "worker_up_count",
        "up",
    ]
    .into_iter()
    .map(|n| (n.to_owned(), vec!["test".to_owned()]))
    .collect();
    assert_eq!(
        missing(&used, page),
        ["worker_up_count (in test)", "wroker_up (in test)"]
    );
}

#[test]
fn every_alert_has_a_severity_a_summary_a_description_and_a_runbook_entry() {
    let anchors: BTreeSet<String> = RUNBOOK
        .lines()
        .filter_map(|l| l.strip_prefix("## ").or_else(|| l.strip_prefix("### ")))
        .map(|heading| {
            heading
                .trim()
                .to_lowercase()
                .chars()
                .filter(|c| c.is_alphanumeric() || *c == '-' || *c == '_' || *c == ' ')
                .map(|c| if c == ' ' { '-' } else { c })
                .collect()
        })
        .collect();
    let rules = alert_rules();
    assert!(rules.len() >= 8, "{rules:?}");
    for rule in rules {
        let alert = rule["alert"].as_str().expect("alert name");
        assert!(
            ["critical", "warning"].contains(&rule["labels"]["severity"].as_str().unwrap_or("")),
            "{alert}: severity"
        );
        for key in ["summary", "description"] {
            assert!(
                rule["annotations"][key]
                    .as_str()
                    .is_some_and(|s| !s.is_empty()),
                "{alert}: {key}"
            );
        }
        let url = rule["annotations"]["runbook_url"]
            .as_str()
            .unwrap_or_else(|| panic!("{alert}: runbook_url"));
        let anchor = url
            .strip_prefix("docs/operations.md#")
            .unwrap_or_else(|| panic!("{alert}: {url} is not in docs/operations.md"));
        assert!(
            anchors.contains(anchor),
            "{alert}: docs/operations.md has no heading for #{anchor}"
        );
    }
}

/// Every `datasource.uid` in `v`, nested ones included.
fn uids(v: &Value, out: &mut Vec<Value>) {
    match v {
        Value::Object(map) => {
            if let Some(ds) = map.get("datasource") {
                out.push(ds["uid"].clone());
            }
            map.values().for_each(|v| uids(v, out));
        }
        Value::Array(items) => items.iter().for_each(|v| uids(v, out)),
        _ => {}
    }
}

#[test]
fn the_dashboard_asks_for_its_prometheus_data_source_and_names_none() {
    let dashboard: Value = serde_json::from_str(DASHBOARD).expect("the dashboard is JSON");
    assert!(dashboard["schemaVersion"].as_i64().is_some_and(|v| v >= 39));
    let variables = dashboard["templating"]["list"]
        .as_array()
        .expect("variables");
    assert!(variables.iter().any(|v| v["name"] == "datasource"
        && v["type"] == "datasource"
        && v["query"] == "prometheus"));
    // every data source reference in the file is the variable
    let mut found = Vec::new();
    uids(&dashboard, &mut found);
    assert!(!found.is_empty());
    assert!(found.iter().all(|uid| *uid == "${datasource}"), "{found:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_metric_the_dashboard_and_the_alerts_query_is_exposed() {
    // Arrange: a service with its saga machinery and simulated participants, and email
    // notifications (printed to the log).
    let app = spawn_saga_app(SimulatorConfig::default(), |s| {
        s.notify.smtp_url = Some("log:".to_owned().into());
    })
    .await;
    let used = used_metrics();
    for name in [
        "nats_consumer_pending_messages",
        "nats_connected",
        "saga_step_duration_seconds_bucket",
        "http_requests_total",
        "process_resident_memory_bytes",
    ] {
        assert!(used.contains_key(name), "{name} is not used: {used:?}");
    }

    // Act: one order confirmed, then cancelled (its saga compensates), so that the labelled
    // series of commands, events, saga steps, compensations and NATS traffic exist.
    let store = app.store_with_products().await;
    let alice = app.customer("alice");
    let order = app.draft_with_tea(&alice, store).await;
    app.place(&alice, order).await.assert_status(200);
    app.wait_for_order(order, WAIT, |o| o["status"] == "confirmed")
        .await;
    app.post(
        &format!("/v1/orders/{order}/cancel"),
        &alice,
        json!({"reason": "changed my mind"}),
    )
    .await
    .assert_status(200);
    app.wait_for_saga(order, "cancelled", WAIT).await;

    // Assert: every name the dashboard and the alerts query is on the page.
    let page = wait_for_page(&app, |page| {
        let missing = missing(&used, page);
        (!missing.is_empty()).then(|| format!("not exposed: {}", missing.join("; ")))
    })
    .await;
    assert!(page.contains("\nnats_connected 1\n"), "{page}");
    assert!(
        page.contains("nats_consumer_pending_messages{consumer=\"saga-replies\"} "),
        "{page}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_connected_and_the_reply_backlog_follow_the_server() {
    // Arrange: the service on a nats-server of its own, run with deploy/nats/'s permissions.
    let mut server = PrivateNats::start().await;
    let app = spawn_app_with(|s| {
        server.configure(s);
        s.simulator.enabled = Some(false);
    })
    .await;
    let backlog = "nats_consumer_pending_messages{consumer=\"saga-replies\"} ";
    let up = |page: &str| {
        (!(page.contains("\nnats_connected 1\n") && page.contains(backlog)))
            .then(|| "NATS connected, with the reply consumer's backlog".to_owned())
    };
    wait_for_page(&app, up).await;

    // Act and assert: the server goes away, then comes back.
    server.stop().await;
    wait_for_page(&app, |page| {
        (!page.contains("\nnats_connected 0\n") || page.contains(backlog))
            .then(|| "NATS disconnected, and no stale backlog".to_owned())
    })
    .await;
    server.run().await;
    wait_for_page(&app, up).await;
}
