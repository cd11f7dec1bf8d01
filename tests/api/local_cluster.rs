//! `deploy/local-cluster` (DESIGN §13): the deployment topology as processes on one machine,
//! which the fault tests run against. `up` brings every part (PostgreSQL, three clustered
//! nats-servers, migrations, two replicas, the simulator) to healthy and `status` says so;
//! every stream is kept on all three NATS nodes, each fsyncing before it acks; `status` notices a
//! killed part; `down` leaves no process of the cluster behind.
//!
//! Needs what the script needs: python3, PostgreSQL's binaries, nats-server 2.10 or later
//! (`ORDER_TEST_NATS_SERVER`, as for `nats_trust.rs`). It runs on its own ports (a block below
//! the ephemeral range, away from 5432/4222) and in its own state directory.

use std::io::{Read as _, Write as _};
use std::path::PathBuf;
use std::process::{Command, Output};

use serde_json::Value;
use uuid::Uuid;

const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/local-cluster");
/// Ports the script uses above its base port (`deploy/local-cluster`: up to service-9).
const PORT_SPAN: u16 = 50;
/// The environment marker every part of a cluster carries (`MARKER` in the script).
const MARKER: &str = "ORDER_LOCAL_CLUSTER";

/// A local cluster in a fresh directory; `down` and the directory's removal on drop, so a
/// failed assertion leaves nothing running.
struct LocalCluster {
    dir: PathBuf,
    base_port: u16,
}

impl LocalCluster {
    fn new() -> Self {
        let dir = std::env::temp_dir().join(format!("order-lc-{}", Uuid::new_v4().simple()));
        Self {
            dir,
            base_port: free_port_block(),
        }
    }

    /// Runs `deploy/local-cluster ARGS` on this cluster; its output, stderr included.
    fn run(&self, args: &[&str]) -> (bool, String) {
        let python = std::env::var("ORDER_TEST_PYTHON").unwrap_or_else(|_| "python3".into());
        let mut cmd = Command::new(python);
        cmd.arg(SCRIPT)
            .arg("--dir")
            .arg(&self.dir)
            .args(["--base-port", &self.base_port.to_string()])
            .args(["--replicas", "2"])
            .args(args)
            .env("ORDER_SERVICE_BIN", env!("CARGO_BIN_EXE_order-service"));
        if let Some(nats) = std::env::var_os("ORDER_TEST_NATS_SERVER") {
            cmd.env("NATS_SERVER_BIN", nats);
        }
        let Output {
            status,
            stdout,
            stderr,
        } = cmd.output().expect("deploy/local-cluster runs");
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&stdout),
            String::from_utf8_lossy(&stderr)
        );
        (status.success(), text)
    }

    /// Live processes whose environment names this cluster (zombies have none).
    fn processes(&self) -> Vec<u32> {
        let needle = format!("{MARKER}={}", self.dir.display());
        std::fs::read_dir("/proc")
            .expect("/proc")
            .filter_map(Result::ok)
            .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
            .filter(|pid| {
                std::fs::read(format!("/proc/{pid}/environ"))
                    .is_ok_and(|env| env.split(|b| *b == 0).any(|var| var == needle.as_bytes()))
            })
            .collect()
    }
}

impl Drop for LocalCluster {
    fn drop(&mut self) {
        let _ = self.run(&["down"]);
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// `GET path` on 127.0.0.1:`port`, its JSON body (nats-server's monitoring endpoint).
fn get_json(port: u16, path: &str) -> Value {
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connects");
    write!(stream, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").expect("request");
    let mut answer = String::new();
    stream.read_to_string(&mut answer).expect("answer");
    let body = answer.split_once("\r\n\r\n").map_or("", |(_, body)| body);
    serde_json::from_str(body).unwrap_or_else(|e| panic!("{path}: {e}: {answer}"))
}

/// The first base port (from 17400 up, below the ephemeral range) whose whole block is free.
fn free_port_block() -> u16 {
    (174..=300)
        .map(|hundreds: u16| hundreds * 100)
        .find(|base| {
            (*base..base + PORT_SPAN)
                .all(|port| std::net::TcpListener::bind(("127.0.0.1", port)).is_ok())
        })
        .expect("a free block of ports")
}

#[test]
fn local_cluster_comes_up_healthy_notices_a_dead_part_and_leaves_no_process() {
    let cluster = LocalCluster::new();

    // up: every part healthy
    let (ok, out) = cluster.run(&["up"]);
    assert!(ok, "up failed:\n{out}");
    let (ok, status) = cluster.run(&["status"]);
    assert!(ok, "status is not healthy:\n{status}");
    for part in [
        "postgres",
        "nats-1",
        "nats-2",
        "nats-3",
        "service-1",
        "service-2",
        "simulator",
    ] {
        assert!(
            status
                .lines()
                .any(|l| l.starts_with(part) && l.contains(" healthy ")),
            "{part} is not reported healthy:\n{status}"
        );
    }
    // JetStream: the service's four streams at 3 replicas, on nodes that fsync every write
    let monitor = cluster.base_port + 31; // nats-1's monitoring port
    let jsz = get_json(monitor, "/jsz?streams=true&config=true");
    let streams: Vec<(String, u64)> = jsz["account_details"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|account| {
            account["stream_detail"]
                .as_array()
                .cloned()
                .unwrap_or_default()
        })
        .map(|s| {
            let name = s["name"].as_str().unwrap_or_default().to_owned();
            (name, s["config"]["num_replicas"].as_u64().unwrap_or(0))
        })
        .collect();
    assert_eq!(streams.len(), 4, "{streams:?}");
    assert!(streams.iter().all(|(_, r)| *r == 3), "{streams:?}");
    let varz = get_json(monitor, "/varz");
    assert_eq!(varz["jetstream"]["config"]["sync_always"], true, "{varz}");

    let running = cluster.processes();
    // counter-test of the leftover check below: it does see the cluster's processes
    assert!(running.len() >= 7, "the scan finds the parts: {running:?}");

    // a killed part: status names it and fails
    let (ok, out) = cluster.run(&["kill", "service-2"]);
    assert!(ok, "kill failed:\n{out}");
    let (ok, status) = cluster.run(&["status"]);
    assert!(!ok, "status passed with service-2 killed:\n{status}");
    assert!(
        status
            .lines()
            .any(|l| l.starts_with("service-2") && l.contains("UNHEALTHY")),
        "{status}"
    );

    // down: nothing left
    let (ok, out) = cluster.run(&["down"]);
    assert!(ok, "down failed:\n{out}");
    assert_eq!(cluster.processes(), Vec::<u32>::new(), "left running");
    let (ok, status) = cluster.run(&["status"]);
    assert!(!ok, "status passed on a cluster that is down:\n{status}");
}
