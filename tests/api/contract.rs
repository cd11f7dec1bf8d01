//! The OpenAPI document is a contract a generated client can trust: schemathesis (pinned, from
//! PyPI, installed by `.ci/run` next to `ORDER_TEST_PYTHON`) runs every one of its checks
//! against the running service, once per phase (examples: the document's own request
//! examples, `src/http/examples.rs`; coverage; fuzzing) with a fixed seed,
//! as an admin and as a customer, on a seeded store with products and orders. Its settings
//! and why: `tests/contract/schemathesis.toml`. And a client generated from
//! `docs/openapi.json` by openapi-python-client (pinned, same place) drives the service through
//! its generated types: `tests/contract/generated_client.py`.

use std::path::PathBuf;
use std::time::Instant;

use order_service::http::cursor;

use crate::helpers::{spawn_app, Who};

/// Fixed, so a failure is reproduced by the same command (printed).
const SEED: &str = "19";
/// Cases per operation and phase: enough for the coverage phase's boundary values, within
/// about a minute per token.
const MAX_EXAMPLES: &str = "25";

fn schemathesis() -> PathBuf {
    std::env::var_os("ORDER_TEST_SCHEMATHESIS")
        .map_or_else(|| venv_tool("schemathesis"), PathBuf::from)
}

/// The `Test cases:` line of a run's summary.
fn cases_line(output: &str) -> String {
    let mut lines = output.lines();
    lines
        .by_ref()
        .find(|l| l.trim_start().starts_with("Test cases:"))
        .and_then(|_| lines.next())
        .map_or_else(|| "(no summary)".to_owned(), |l| l.trim().to_owned())
}

#[tokio::test]
async fn schemathesis_finds_every_answer_as_documented_for_an_admin_and_a_customer() {
    // Arrange: a store with products, orders of alice's (one page of one gives a real cursor).
    let app = spawn_app().await;
    let store = app.store_with_products().await;
    let admin = app.admin();
    let alice = app.customer("alice");
    for _ in 0..2 {
        let order = app.create_order_for(&admin, store, "alice").await;
        app.add_item(&admin, order, "TEA", 1)
            .await
            .assert_status(200);
    }
    app.wait_for_projector(std::time::Duration::from_secs(10))
        .await;
    let page = app.get("/v1/orders?limit=1", &admin).await;
    let order = page.body["items"][0]["id"]
        .as_str()
        .expect("an order")
        .to_owned();
    let events = app
        .get(&format!("/v1/orders/{order}/events?limit=1"), &admin)
        .await;
    // Real cursors of each list: the orders' and the audit log's from a first page; this app
    // runs neither sagas nor emails, so theirs are made by the code the service makes them with,
    // as are the catalog lists' (the store's first product and member, its first change).
    let cursors = [
        (
            "ORDER_TEST_CURSOR",
            page.body["next"].as_str().expect("a next page").to_owned(),
        ),
        (
            "ORDER_TEST_EVENTS_CURSOR",
            events.body["next"]
                .as_str()
                .expect("more events")
                .to_owned(),
        ),
        (
            "ORDER_TEST_SAGAS_CURSOR",
            cursor::encode_saga_cursor(chrono::Utc::now(), uuid::Uuid::nil()),
        ),
        (
            "ORDER_TEST_NOTIFICATIONS_CURSOR",
            cursor::encode_notification_cursor(1),
        ),
        (
            "ORDER_TEST_STORES_CURSOR",
            cursor::encode_store_cursor(store),
        ),
        (
            "ORDER_TEST_PRODUCTS_CURSOR",
            cursor::encode_product_cursor("CAKE"),
        ),
        (
            "ORDER_TEST_MEMBERS_CURSOR",
            cursor::encode_member_cursor("a"),
        ),
        ("ORDER_TEST_CHANGES_CURSOR", cursor::encode_change_cursor(1)),
    ];
    let spec = app
        .raw(app.client.get(format!("{}/openapi.json", app.address)))
        .await;
    let dir = tempfile_dir();
    let spec_path = dir.join("openapi.json");
    std::fs::write(&spec_path, spec.text).expect("write the spec");
    let config = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/contract/schemathesis.toml"
    );

    // Act + assert: each token, each phase, every check.
    let mut failures = Vec::new();
    for (name, who) in [("admin", &admin), ("customer", &alice)] {
        for phase in ["examples", "coverage", "fuzzing"] {
            let started = Instant::now();
            let output = run(config, &spec_path, &app.address, who, phase, &cursors).await;
            let text = format!(
                "{}{}",
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            );
            println!(
                "schemathesis {name} {phase}: seed {SEED}, {} ({:.0?}), exit {}",
                cases_line(&text),
                started.elapsed(),
                output.status
            );
            if !output.status.success() {
                failures.push(format!("== {name} {phase}\n{text}"));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

async fn run(
    config: &str,
    spec: &std::path::Path,
    address: &str,
    who: &Who,
    phase: &str,
    cursors: &[(&str, String)],
) -> std::process::Output {
    let exe = schemathesis();
    tokio::process::Command::new(&exe)
        .args(["--no-color", "--config-file", config, "run"])
        .arg(spec)
        .args(["--url", address])
        .args(["--header", &format!("Authorization: Bearer {}", who.token)])
        .args(["--checks", "all", "--phases", phase])
        .args(["--max-examples", MAX_EXAMPLES, "--seed", SEED])
        .args(["--workers", "1"])
        .envs(cursors.iter().map(|(k, v)| (*k, v.as_str())))
        // its hypothesis database and reports go beside the spec, not into the checkout
        .current_dir(spec.parent().unwrap_or(spec))
        .kill_on_drop(true)
        .output()
        .await
        .unwrap_or_else(|e| {
            panic!(
                "{}: {e} (bash .ci/run installs schemathesis; or set ORDER_TEST_SCHEMATHESIS)",
                exe.display()
            )
        })
}

/// A fresh directory for the spec file (removed with the process's temp files).
fn tempfile_dir() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("order-contract-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

/// A tool installed next to `ORDER_TEST_PYTHON` (`.ci/run` installs it there).
fn venv_tool(name: &str) -> PathBuf {
    let python = std::env::var("ORDER_TEST_PYTHON").unwrap_or_else(|_| "python3".to_owned());
    PathBuf::from(&python)
        .parent()
        .map_or_else(|| name.into(), |dir| dir.join(name))
}

#[tokio::test]
async fn a_client_generated_from_the_document_drives_the_service_and_parses_every_answer() {
    // Arrange: the client openapi-python-client generates from the committed document.
    let dir = tempfile_dir();
    let package = dir.join("order_service_client");
    let generator = venv_tool("openapi-python-client");
    let generated = tokio::process::Command::new(&generator)
        .args(["generate", "--meta", "none", "--path"])
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/openapi.json"))
        .arg("--output-path")
        .arg(&package)
        .current_dir(&dir)
        .output()
        .await
        .unwrap_or_else(|e| panic!("{}: {e} (bash .ci/run installs it)", generator.display()));
    assert!(
        generated.status.success() && package.join("client.py").exists(),
        "generation failed: {}{}",
        String::from_utf8_lossy(&generated.stdout),
        String::from_utf8_lossy(&generated.stderr)
    );
    let app = spawn_app().await;
    let store = app.store_with_products().await;

    // Act: a storefront's script through the generated types.
    let python = std::env::var("ORDER_TEST_PYTHON").unwrap_or_else(|_| "python3".to_owned());
    let output = tokio::process::Command::new(&python)
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/contract/generated_client.py"
        ))
        .arg(&app.address)
        .arg(&app.customer("alice").token)
        .arg(&app.analyst().token)
        .arg(store.to_string())
        .env("PYTHONPATH", &dir)
        .output()
        .await
        .expect("python");

    // Assert: every step parsed, errors included.
    let stdout = String::from_utf8_lossy(&output.stdout);
    println!("{stdout}");
    assert!(
        output.status.success(),
        "the generated client failed:\n{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
}
