//! `order-bench`: the load generator of docs/BENCHMARKS.md.
//!
//! Starts the release `order-service` as a child process on a fresh database (seeded with 100k
//! orders when a scenario reads them) and a fresh NATS prefix, measures the same-run baselines
//! (pgbench on the same Postgres, JetStream publish on the same NATS), runs the scenarios, and
//! prints a table of rates, latencies, ratios to the baselines and targets (and JSON with
//! `--json`). Loopback only; every phase is bounded by `--duration`.
//!
//! ```sh
//! cargo build --release --bin order-service --bin order-bench
//! ./target/release/order-bench suite --json bench.json
//! ```

mod baseline;
mod load;
mod metrics;
mod scenarios;
mod service;

use std::fmt::Write as _;
use std::sync::Arc;
use std::time::Duration;

use clap::{Parser, ValueEnum};
use serde_json::json;

use crate::scenarios::{Knobs, Row, Scenario};
use crate::service::Service;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Which {
    /// Baselines, then every scenario below, in one run.
    Suite,
    /// pgbench insert/select and JetStream publish only.
    Baselines,
    /// One AddItem (one event) per request on pre-created drafts.
    AddItem,
    /// Create + 3 × add item + place, on distinct orders.
    Commands,
    /// Placed → confirmed with the simulator at zero latency: max rate, then half of it.
    Saga,
    /// GET order, list page and product-sales report over 100k seeded orders.
    Reads,
    /// Reads, orders and sagas at once; the service's resident memory.
    Mixed,
    /// Rebuild every read model from the log (100k seeded orders).
    Rebuild,
}

#[derive(Debug, Parser)]
#[command(
    name = "order-bench",
    about = "Load scenarios and same-run baselines for order-service"
)]
struct Args {
    #[arg(value_enum, default_value = "suite")]
    scenario: Which,
    /// Seconds each measured phase runs.
    #[arg(long, default_value_t = 15)]
    duration: u64,
    /// Concurrent clients of the closed-loop phases (and of the baselines).
    #[arg(long, default_value_t = 32)]
    concurrency: usize,
    /// Concurrent clients placing orders while the saga's maximum rate is measured.
    #[arg(long, default_value_t = 16)]
    saga_concurrency: usize,
    /// Places orders at this many per second for the saga latency instead of at half the
    /// measured maximum, and skips measuring the maximum: builds compared at the same rate.
    #[arg(long)]
    saga_rate: Option<f64>,
    /// Requests per second of the open-loop GET phase.
    #[arg(long, default_value_t = 1000.0)]
    read_rate: f64,
    /// Also write the whole report as JSON to this file.
    #[arg(long)]
    json: Option<std::path::PathBuf>,
    /// Also write the results table as Markdown (as in docs/BENCHMARKS.md) to this file.
    #[arg(long)]
    markdown: Option<std::path::PathBuf>,
    /// The `order-service` binary to measure (default: the one built next to this binary),
    /// e.g. a build of an earlier commit, for before/after comparisons with the same load.
    #[arg(long)]
    service: Option<std::path::PathBuf>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let knobs = Knobs {
        duration: Duration::from_secs(args.duration),
        concurrency: args.concurrency,
        saga_concurrency: args.saga_concurrency,
        saga_rate: args.saga_rate,
        read_rate: args.read_rate,
    };
    let wants = |w: Which| args.scenario == Which::Suite || args.scenario == w;
    let seed = wants(Which::Reads) || wants(Which::Mixed) || wants(Which::Rebuild);
    eprintln!("order-bench {:?}: starting the service", args.scenario);
    let svc = Arc::new(Service::start(seed, args.service.clone()).await?);
    let result = run(&svc, &args, knobs, &wants).await;
    match Arc::try_unwrap(svc) {
        Ok(svc) => svc.stop().await?,
        Err(_) => eprintln!("the service is still referenced; its database is left behind"),
    }
    let (rows, report) = result?;
    print_table(&rows);
    if let Some(path) = &args.markdown {
        std::fs::write(path, markdown_table(&rows))?;
        eprintln!("Markdown table written to {}", path.display());
    }
    if let Some(path) = &args.json {
        std::fs::write(path, serde_json::to_string_pretty(&report)?)?;
        eprintln!("JSON report written to {}", path.display());
    }
    Ok(())
}

async fn run(
    svc: &Arc<Service>,
    args: &Args,
    k: Knobs,
    wants: &dyn Fn(Which) -> bool,
) -> anyhow::Result<(Vec<Row>, serde_json::Value)> {
    let mut baselines = Vec::new();
    let only_baselines = args.scenario == Which::Baselines;
    // the seed's writes flushed before anything is measured
    scenarios::settle(svc).await?;
    // (add-item measures its own, interleaved with its rounds)
    let needs_insert = only_baselines || wants(Which::Commands);
    let pg_insert = if needs_insert {
        Some(baseline::pgbench_insert(svc, k.concurrency, k.duration).await?)
    } else {
        None
    };
    let pg_select = if only_baselines || wants(Which::Reads) {
        if svc.seed_position > 0 {
            Some(baseline::pgbench_select(svc, k.concurrency, k.duration).await?)
        } else {
            None
        }
    } else {
        None
    };
    // (the saga maximum's baseline: not needed when the saga runs at a rate given by hand)
    let js = if only_baselines || (wants(Which::Saga) && k.saga_rate.is_none()) {
        Some(baseline::jetstream_publish(svc, k.saga_concurrency, k.duration).await?)
    } else {
        None
    };
    let mut rows: Vec<Row> = Vec::new();
    for b in [&pg_insert, &pg_select, &js].into_iter().flatten() {
        rows.push(Row::figure(
            format!("baseline: {}", b.name),
            format!("C={}", b.concurrency),
            b.per_second,
        ));
        baselines.push(b.to_json());
    }
    let mut scenarios = Vec::new();
    let mut add = |s: Scenario, rows: &mut Vec<Row>| {
        rows.extend(s.rows);
        scenarios.push(s.json);
    };
    // every scenario starts on an idle pipeline with the previous one's writes flushed
    let settle = || scenarios::settle(svc);
    if args.scenario != Which::Baselines {
        if wants(Which::AddItem) {
            settle().await?;
            add(scenarios::add_item(svc, k).await?, &mut rows);
        }
        if wants(Which::Commands) {
            settle().await?;
            add(
                scenarios::commands(svc, k, pg_insert.as_ref()).await?,
                &mut rows,
            );
        }
        if wants(Which::Saga) {
            settle().await?;
            add(scenarios::saga(svc, k, js.as_ref()).await?, &mut rows);
        }
        if wants(Which::Reads) {
            settle().await?;
            add(
                scenarios::reads(svc, k, pg_select.as_ref()).await?,
                &mut rows,
            );
        }
        if wants(Which::Mixed) {
            settle().await?;
            add(scenarios::mixed(svc, k).await?, &mut rows);
        }
        if wants(Which::Rebuild) {
            settle().await?;
            add(scenarios::rebuild(svc).await?, &mut rows);
        }
    }
    let report = json!({
        "machine": machine(),
        "knobs": {"duration_s": args.duration, "concurrency": args.concurrency,
                  "saga_concurrency": args.saga_concurrency, "saga_rate": args.saga_rate, "read_rate": args.read_rate},
        "baselines": baselines,
        "scenarios": scenarios,
    });
    Ok((rows, report))
}

fn machine() -> serde_json::Value {
    let cpus = std::thread::available_parallelism().map_or(0, std::num::NonZero::get);
    let model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|m| m.trim().to_owned())
        })
        .unwrap_or_default();
    json!({"cpus": cpus, "cpu": model})
}

/// The table of docs/BENCHMARKS.md: rates with thousands separators, ratios and targets.
fn markdown_table(rows: &[Row]) -> String {
    let rate = |v: f64| {
        if v.is_nan() {
            String::new()
        } else if v >= 100.0 {
            #[expect(
                clippy::cast_possible_truncation,
                clippy::cast_sign_loss,
                reason = "a positive rate, far below u64::MAX"
            )]
            let whole = v.round() as u64;
            thousands(whole)
        } else {
            format!("{v:.1}")
        }
    };
    let ms = |v: f64| {
        if v.is_nan() {
            String::new()
        } else {
            format!("{v:.1}")
        }
    };
    let mut out = String::from(
        "| scenario | load | per s | p50 ms | p99 ms | ratio to same-run baseline | target |\n\
         |---|---|---|---|---|---|---|\n",
    );
    for r in rows {
        let baseline = r
            .baseline
            .as_ref()
            .map_or_else(String::new, |(name, _, ratio)| {
                // two significant digits for small ratios (a saga is many publishes)
                let places = if *ratio >= 0.1 { 2 } else { 3 };
                format!("{ratio:.places$} × {name}")
            });
        let target = r.target.as_ref().map_or_else(String::new, |(what, met)| {
            format!("{} {what}", if *met { "met" } else { "**missed**" })
        });
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} | {} |",
            r.scenario,
            r.load,
            rate(r.per_second),
            ms(r.p50_ms),
            ms(r.p99_ms),
            baseline,
            target
        );
    }
    out
}

fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn print_table(rows: &[Row]) {
    let num = |v: f64, width: usize, precision: usize| {
        if v.is_nan() {
            format!("{:>width$}", "-")
        } else {
            format!("{v:>width$.precision$}")
        }
    };
    println!();
    println!(
        "{:<36} {:<12} {:>10} {:>8} {:>8}  {:<34} {:<24}",
        "scenario", "load", "per s", "p50 ms", "p99 ms", "ratio to baseline", "target"
    );
    for r in rows {
        let baseline = r
            .baseline
            .as_ref()
            .map_or_else(String::new, |(name, rate, ratio)| {
                format!("{ratio:.2} × {name} ({rate:.0}/s)")
            });
        let target = r.target.as_ref().map_or_else(String::new, |(what, met)| {
            format!("{} {what}", if *met { "met" } else { "MISSED" })
        });
        println!(
            "{:<36} {:<12} {} {} {}  {:<34} {:<24}",
            r.scenario,
            r.load,
            num(r.per_second, 10, 1),
            num(r.p50_ms, 8, 1),
            num(r.p99_ms, 8, 1),
            baseline,
            target
        );
    }
}
