//! Same-run baselines: what the bare parts underneath reach on this machine right now.
//! `pgbench` inserting one events-shaped row per transaction (or reading one row by key), and
//! JetStream publish-with-ack on the same NATS server.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use serde_json::{json, Value};

use crate::service::Service;

/// One baseline figure.
pub struct Baseline {
    pub name: String,
    pub concurrency: usize,
    pub per_second: f64,
    pub command: String,
}

impl Baseline {
    pub fn to_json(&self) -> Value {
        json!({"name": self.name, "concurrency": self.concurrency, "per_second": self.per_second,
               "command": self.command})
    }
}

/// An `ItemAdded` as the service stores it, with metadata of the same size.
const PAYLOAD: &str = r#"{"type": "ItemAdded", "line_id": 3, "sku": "TEA", "name": "tea", "quantity": 1, "unit_price_minor": 250, "line_total_minor": 250, "order_total_minor": 1150}"#;
const METADATA: &str = r#"{"principal": "bench", "correlation_id": "0b7e6d35-4c2e-4f43-9f61-3c2d0b6e9a11", "causation_id": "0b7e6d35-4c2e-4f43-9f61-3c2d0b6e9a11", "traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"}"#;

fn pgbench_binary() -> String {
    let versioned = "/usr/lib/postgresql/15/bin/pgbench";
    if std::path::Path::new(versioned).exists() {
        versioned.to_owned()
    } else {
        "pgbench".to_owned()
    }
}

/// pgbench, one `insert` of an events-shaped row (same columns, defaults, keys and indexes as
/// `events`) per transaction, `concurrency` clients.
pub async fn pgbench_insert(
    service: &Service,
    concurrency: usize,
    duration: Duration,
) -> anyhow::Result<Baseline> {
    sqlx::query("create table if not exists bench_baseline_events (like events including all)")
        .execute(&service.pool)
        .await?;
    // every run from an empty table: a bigger one is a slower baseline (its random keys touch
    // more index pages, each written in full to the WAL once after a checkpoint)
    sqlx::query("truncate bench_baseline_events")
        .execute(&service.pool)
        .await?;
    sqlx::query("checkpoint").execute(&service.pool).await?;
    let script = format!(
        "insert into bench_baseline_events (aggregate_type, aggregate_id, sequence, event_type, \
         event_version, payload, metadata) values ('Order', gen_random_uuid()::text, 1, \
         'ItemAdded', '1.0', '{PAYLOAD}', '{METADATA}');\n"
    );
    pgbench("pgbench insert", service, &script, concurrency, duration).await
}

/// pgbench, one `select` of an order summary by primary key per transaction.
pub async fn pgbench_select(
    service: &Service,
    concurrency: usize,
    duration: Duration,
) -> anyhow::Result<Baseline> {
    let script = "\\set i random(1, 100000)\n\
                  select * from read.order_summaries where order_id = md5('order' || :i)::uuid;\n";
    pgbench("pgbench select", service, script, concurrency, duration).await
}

async fn pgbench(
    name: &str,
    service: &Service,
    script: &str,
    concurrency: usize,
    duration: Duration,
) -> anyhow::Result<Baseline> {
    let path = std::env::temp_dir().join(format!(
        "{}-{}.sql",
        service.db_name,
        name.replace(' ', "-")
    ));
    std::fs::write(&path, script)?;
    let args = vec![
        "-n".to_owned(),
        "-c".to_owned(),
        concurrency.to_string(),
        "-j".to_owned(),
        "2".to_owned(),
        "-T".to_owned(),
        duration.as_secs().max(1).to_string(),
        "-f".to_owned(),
        path.display().to_string(),
        service.db_url.clone(),
    ];
    eprintln!(
        "  {name:<22} {} s at C={concurrency}...",
        duration.as_secs()
    );
    let output = tokio::process::Command::new(pgbench_binary())
        .args(&args)
        .output()
        .await
        .context("running pgbench")?;
    let _ = std::fs::remove_file(&path);
    let stdout = String::from_utf8_lossy(&output.stdout);
    anyhow::ensure!(
        output.status.success(),
        "pgbench failed: {stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    // "tps = 4321.123456 (without initial connection time)"
    let tps = stdout
        .lines()
        .find(|l| l.starts_with("tps = "))
        .and_then(|l| l.split_whitespace().nth(2))
        .context("no tps line in pgbench output")?
        .parse()?;
    Ok(Baseline {
        name: name.to_owned(),
        concurrency,
        per_second: tps,
        command: format!(
            "pgbench -n -c {concurrency} -j 2 -T {} -f <script>",
            duration.as_secs()
        ),
    })
}

/// JetStream publish with ack (file storage, one replica, as the service's streams), from
/// `concurrency` concurrent publishers, messages the size of an order event.
pub async fn jetstream_publish(
    service: &Service,
    concurrency: usize,
    duration: Duration,
) -> anyhow::Result<Baseline> {
    let client = async_nats::connect(&service.nats_url).await?;
    let js = async_nats::jetstream::new(client);
    let stream = format!("BENCH_BASELINE_{}", uuid::Uuid::new_v4().simple());
    let subject = format!("{}baseline", service.prefix);
    js.create_stream(async_nats::jetstream::stream::Config {
        name: stream.clone(),
        subjects: vec![format!("{subject}.>")],
        storage: async_nats::jetstream::stream::StorageType::File,
        ..Default::default()
    })
    .await?;
    eprintln!(
        "  {:<22} {} s at C={concurrency}...",
        "jetstream publish",
        duration.as_secs()
    );
    let acked = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let deadline = started + duration;
    let mut publishers = tokio::task::JoinSet::new();
    let body = bytes::Bytes::from(format!(
        "{{\"event\": {PAYLOAD}, \"metadata\": {METADATA}}}"
    ));
    for p in 0..concurrency {
        let (js, acked, body, subject) = (
            js.clone(),
            Arc::clone(&acked),
            body.clone(),
            subject.clone(),
        );
        publishers.spawn(async move {
            let mut n = 0u64;
            while Instant::now() < deadline {
                let mut headers = async_nats::HeaderMap::new();
                headers.insert("Nats-Msg-Id", format!("{p}-{n}").as_str());
                js.publish_with_headers(format!("{subject}.{p}"), headers, body.clone())
                    .await?
                    .await?;
                acked.fetch_add(1, Ordering::Relaxed);
                n += 1;
            }
            anyhow::Ok(())
        });
    }
    while let Some(publisher) = publishers.join_next().await {
        publisher??;
    }
    let elapsed = started.elapsed();
    js.delete_stream(&stream).await?;
    #[expect(clippy::cast_precision_loss, reason = "a rate for people to read")]
    let per_second = acked.load(Ordering::Relaxed) as f64 / elapsed.as_secs_f64();
    Ok(Baseline {
        name: "jetstream publish+ack".to_owned(),
        concurrency,
        per_second,
        command: "async-nats publish_with_headers(Nats-Msg-Id) + await ack, file stream".to_owned(),
    })
}
