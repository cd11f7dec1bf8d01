//! What an SRE reads about the process itself at `/metrics` (DESIGN §11): `process_*` from the
//! prometheus crate's process collector, and `build_info{version,git_sha}`.

use crate::helpers::{sample, spawn_app};

#[tokio::test]
async fn metrics_show_the_process_and_the_build() {
    let app = spawn_app().await;
    let page = app.metrics_page().await;
    // the test binary is the process: it holds memory, files and CPU time
    for family in [
        "process_resident_memory_bytes",
        "process_open_fds",
        "process_max_fds",
        "process_start_time_seconds",
    ] {
        assert!(
            sample(&page, family) > 0,
            "{family} missing or zero:\n{page}"
        );
    }
    assert!(page.contains("\nprocess_cpu_seconds_total "), "{page}");
    let build = page
        .lines()
        .find(|l| l.starts_with("build_info{"))
        .expect("build_info");
    assert!(
        build.contains(&format!("version=\"{}\"", env!("CARGO_PKG_VERSION"))),
        "{build}"
    );
    assert!(build.contains("git_sha=\""), "{build}");
    assert!(build.ends_with(" 1"), "{build}");
}

/// Every label value of a scrape, as `name{labels}` lines show them.
fn label_values(page: &str) -> Vec<String> {
    page.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| Some(l.split_once('{')?.1.split_once('}')?.0.to_owned()))
        .flat_map(|labels| {
            labels
                .split("\",")
                .filter_map(|kv| Some(kv.split_once("=\"")?.1.trim_end_matches('"').to_owned()))
                .collect::<Vec<_>>()
        })
        .collect()
}

#[tokio::test]
async fn no_label_takes_an_unbounded_value_after_a_thousand_orders() {
    let app = spawn_app().await;
    let store = app.store_with_products().await;
    let alice = app.customer("alice");
    let mut orders = Vec::new();
    let mut series_after_ten = 0;
    for n in 0..1_000 {
        let order = app.create_order(&alice, store).await;
        // reads of each order, and of paths nobody routes, by id
        app.get(&format!("/v1/orders/{order}"), &alice).await;
        app.get(&format!("/v1/orders/{order}/nowhere"), &alice)
            .await;
        orders.push(order);
        if n == 9 {
            series_after_ten = app
                .metrics_page()
                .await
                .lines()
                .filter(|l| !l.starts_with('#'))
                .count();
        }
    }
    let page = app.metrics_page().await;
    let series = page.lines().filter(|l| !l.starts_with('#')).count();
    // the series the first ten orders opened are all there are (a few scrape and histogram
    // series of the scrapes themselves aside)
    assert!(
        series <= series_after_ten + 20,
        "{series_after_ten} series after 10 orders, {series} after 1,000"
    );
    let values = label_values(&page);
    for order in &orders[..10] {
        let id = order.to_string();
        assert!(
            values.iter().all(|v| !v.contains(&id)),
            "an order id is a label value"
        );
    }
    assert!(
        values.iter().all(|v| !v.contains('/')),
        "a raw path is a label value: {:?}",
        values
            .iter()
            .filter(|v| v.contains('/'))
            .collect::<Vec<_>>()
    );
}
