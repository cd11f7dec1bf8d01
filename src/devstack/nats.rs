//! The NATS half of the stack: `nats-server -js` on a fresh loopback port, its JetStream store
//! under the data dir, and the readiness check (the server's `INFO` greeting, which it only sends
//! once JetStream is up, so it also tells whether `-js` took effect).

use std::{path::Path, time::Duration};

use anyhow::Result;
use nix::sys::signal::Signal;
use tokio::{
    io::{AsyncBufReadExt, BufReader},
    process::Command,
    time::timeout,
};
use tracing::{info, warn};

use super::ports::{free_port, tcp_connect, PORT_ATTEMPTS, PROBE_TIMEOUT};
use super::process::{
    startup_failure, wait_until_ready, Log, ManagedChild, Readiness, ShutdownPlan,
};

/// How long nats-server may take from spawn to its first `INFO` greeting.
const NATS_READY_TIMEOUT: Duration = Duration::from_secs(15);
// SIGTERM makes nats-server close its JetStream store cleanly and exit; `Drop` waits less.
pub(super) const NATS_STOP_PLAN: ShutdownPlan = &[(Signal::SIGTERM, Duration::from_secs(10))];
pub(super) const NATS_DROP_PLAN: ShutdownPlan = &[(Signal::SIGTERM, Duration::from_secs(3))];

/// Starts `nats-server -js` on a free port, retrying with another port if it was taken meanwhile.
pub(super) async fn start_nats(
    program: &Path,
    cwd: &Path,
    store_dir: &Path,
    log_path: &Path,
) -> Result<(ManagedChild, u16)> {
    let mut attempt = 1;
    loop {
        let port = free_port()?;
        let (log, stdout, stderr) = Log::open(log_path)?;
        let mut cmd = Command::new(program);
        cmd.current_dir(cwd)
            .args(["-a", "127.0.0.1", "-p", &port.to_string(), "-js", "-sd"])
            .arg(store_dir)
            .stdout(stdout)
            .stderr(stderr);
        let mut child = ManagedChild::spawn("nats-server", &mut cmd, NATS_DROP_PLAN)?;
        let outcome = wait_until_ready(&mut child, NATS_READY_TIMEOUT, || nats_info(port)).await?;
        if let Readiness::Ready(info) = outcome {
            // The server only greets clients after JetStream is up, so the greeting tells us
            // whether `-js` took effect.
            if !info.contains("\"jetstream\":true") {
                return Err(log.failure(&format!(
                    "nats-server on port {port} started without JetStream (INFO: {})",
                    info.trim()
                )));
            }
            info!(port, pid = child.pid(), "nats-server ready");
            return Ok((child, port));
        }
        let (port_taken, err) =
            startup_failure("nats-server", &outcome, NATS_READY_TIMEOUT, port, &log);
        if !(port_taken && attempt < PORT_ATTEMPTS) {
            return Err(err);
        }
        warn!(
            port,
            "port taken before nats-server could bind it, retrying with another"
        );
        drop(child);
        attempt += 1;
    }
}

/// The `INFO {...}` line a NATS server sends every new connection, if it sends one.
pub(super) async fn nats_info(port: u16) -> Option<String> {
    let stream = tcp_connect(port).await?;
    let mut line = String::new();
    timeout(PROBE_TIMEOUT, BufReader::new(stream).read_line(&mut line))
        .await
        .ok()?
        .ok()?;
    line.starts_with("INFO {").then_some(line)
}
