//! The PostgreSQL half of the stack: the cluster (`initdb`, kept across runs), the `postgres`
//! server on a fresh loopback port, its readiness check, and `createdb`.
//!
//! We start `postgres` itself (not `pg_ctl start`, which daemonizes) so we hold its pid, and stop
//! it with SIGINT, the "fast" shutdown `pg_ctl stop -m fast` would send. `initdb` works in a
//! staging directory renamed into place only on success, so an interrupted one never leaves a
//! half-made cluster behind. Authentication is `trust`: any local user can reach the dev
//! database over TCP.

use std::{fs, path::Path, process::Stdio, time::Duration};

use anyhow::{anyhow, bail, Context, Result};
use nix::sys::signal::Signal;
use tokio::process::Command;
use tracing::{debug, info, warn};

use super::install::PgBin;
use super::ports::{free_port, tcp_connect, PORT_ATTEMPTS};
use super::process::{
    startup_failure, wait_until_ready, Log, ManagedChild, Readiness, ShutdownPlan,
};
use super::run_as::{create_private_dir, RunAs};

/// Superuser created by `initdb -U`; the URLs we hand out connect as this role.
const PG_SUPERUSER: &str = "postgres";
/// How long `postgres` may take from spawn to accepting connections (crash recovery included).
const PG_READY_TIMEOUT: Duration = Duration::from_secs(30);
/// `sun_path` is 108 bytes on Linux and 104 on macOS; stay below both.
const MAX_SOCKET_PATH: usize = 100;

// PostgreSQL: SIGINT is a "fast" shutdown (disconnect clients, checkpoint, exit). SIGTERM would be
// "smart", which waits for every client to disconnect, so a test's open pool would stall it.
// SIGQUIT is "immediate" and still takes the backends down with the postmaster, unlike SIGKILL.
pub(super) const PG_STOP_PLAN: ShutdownPlan = &[
    (Signal::SIGINT, Duration::from_secs(30)),
    (Signal::SIGQUIT, Duration::from_secs(5)),
];
// `Drop` blocks a thread, so it waits less.
pub(super) const PG_DROP_PLAN: ShutdownPlan = &[
    (Signal::SIGINT, Duration::from_secs(5)),
    (Signal::SIGQUIT, Duration::from_secs(2)),
];

/// What `createdb` did: a name that is already taken is an answer, not a failure.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum CreateDb {
    Created,
    AlreadyExists,
}

/// The URL of `database` on our server, as the superuser, over loopback TCP.
pub(super) fn pg_url(port: u16, database: &str) -> String {
    format!("postgres://{PG_SUPERUSER}@127.0.0.1:{port}/{database}?sslmode=disable")
}

/// Accepts only names that need no quoting in SQL nor escaping in a URL (see
/// `DevStack::create_database`).
pub(super) fn validate_database_name(name: &str) -> Result<()> {
    let mut chars = name.chars();
    let valid_start = chars
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c == '_');
    let valid_rest = chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if !(valid_start && valid_rest && name.len() <= 63) {
        bail!(
            "invalid database name {name:?}: use 1-63 characters of [a-z0-9_], starting with a \
             letter or _"
        );
    }
    Ok(())
}

/// A command for a PostgreSQL client tool (`createdb`, `pg_isready`, `psql`) aimed at our server.
/// Explicit flags override `PGHOST`/`PGPORT`/`PGUSER`, but a few environment settings would still
/// leak in from the developer's shell and break the connection, so they are pinned here.
pub(super) fn client_command(program: &Path) -> Command {
    let mut cmd = Command::new(program);
    cmd.env("PGSSLMODE", "disable")
        .env("PGCONNECT_TIMEOUT", "10")
        .env_remove("PGSERVICE")
        .env_remove("PGOPTIONS")
        .stdin(Stdio::null())
        .kill_on_drop(true);
    cmd
}

/// The major version of the cluster in `pgdata` (its `PG_VERSION`), `None` when there is none yet.
pub(super) fn read_cluster_version(pgdata: &Path) -> Result<Option<String>> {
    match fs::read_to_string(pgdata.join("PG_VERSION")) {
        Ok(text) => Ok(Some(text.trim().to_owned())),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(err) => Err(err).with_context(|| format!("reading {}/PG_VERSION", pgdata.display())),
    }
}

/// A command that runs a PostgreSQL server binary, as `run_as` when given.
fn server_command(program: &Path, cwd: &Path, run_as: Option<&RunAs>) -> Command {
    let mut cmd = Command::new(program);
    // The inherited working directory may be unreadable for the unprivileged user.
    cmd.current_dir(cwd).stdin(Stdio::null());
    if let Some(user) = run_as {
        cmd.uid(user.uid).gid(user.gid).env("USER", user.name);
    }
    cmd
}

/// Runs `createdb` against our server (`bin`'s installation, listening on `port`).
pub(super) async fn createdb(bin: &PgBin, port: u16, name: &str) -> Result<CreateDb> {
    let program = bin.client_tool("createdb").ok_or_else(|| {
        anyhow!(
            "createdb not found next to {} nor on PATH",
            bin.dir.display()
        )
    })?;
    let port = port.to_string();
    let output = client_command(&program)
        .args([
            "--no-password",
            "-h",
            "127.0.0.1",
            "-p",
            &port,
            "-U",
            PG_SUPERUSER,
            name,
        ])
        .output()
        .await
        .with_context(|| format!("running {}", program.display()))?;
    if output.status.success() {
        return Ok(CreateDb::Created);
    }
    let stderr = String::from_utf8_lossy(&output.stderr);
    if stderr.contains("already exists") {
        return Ok(CreateDb::AlreadyExists);
    }
    bail!(
        "createdb {name} failed ({}): {}",
        output.status,
        stderr.trim()
    )
}

/// Runs `initdb` unless the cluster exists. It initializes a staging directory that is renamed
/// into place only on success, so an interrupted `initdb` never leaves a half-made cluster that a
/// later start would mistake for a real one.
pub(super) async fn ensure_cluster(
    bin: &PgBin,
    data_dir: &Path,
    pgdata: &Path,
    run_as: Option<&RunAs>,
    log_path: &Path,
) -> Result<()> {
    if pgdata.join("PG_VERSION").is_file() {
        debug!(pgdata = %pgdata.display(), "re-using existing cluster");
        return Ok(());
    }
    if pgdata.exists() {
        bail!(
            "{} exists but holds no PostgreSQL cluster (no PG_VERSION); move it away or delete it",
            pgdata.display()
        );
    }
    let staging = data_dir.join("postgres.initdb-partial");
    if staging.exists() {
        // Left by an interrupted initdb; it never held a usable cluster.
        fs::remove_dir_all(&staging).with_context(|| format!("removing {}", staging.display()))?;
    }
    // We create it (the unprivileged user may not write to `data_dir`); initdb accepts an empty
    // existing directory.
    create_private_dir(&staging, run_as)?;

    info!(pgdata = %pgdata.display(), "initializing PostgreSQL cluster");
    let (log, stdout, stderr) = Log::open(log_path)?;
    let status = server_command(&bin.tool("initdb"), data_dir, run_as)
        .arg("-D")
        .arg(&staging)
        // `--no-locale`: the C locale exists everywhere, so initdb cannot fail on a developer's
        // LANG naming a locale that is not generated; UTF8 keeps any text storable.
        .args([
            "-A",
            "trust",
            "-U",
            PG_SUPERUSER,
            "--no-sync",
            "-E",
            "UTF8",
            "--no-locale",
        ])
        .stdout(stdout)
        .stderr(stderr)
        .kill_on_drop(true)
        .status()
        .await
        .context("running initdb")?;
    if !status.success() {
        return Err(log.failure(&format!("initdb failed ({status})")));
    }
    fs::rename(&staging, pgdata)
        .with_context(|| format!("moving {} to {}", staging.display(), pgdata.display()))
}

/// Starts `postgres` on a free port, retrying with another port if it was taken meanwhile.
pub(super) async fn start_postgres(
    bin: &PgBin,
    data_dir: &Path,
    pgdata: &Path,
    socket_dir: &Path,
    run_as: Option<&RunAs>,
    log_path: &Path,
) -> Result<(ManagedChild, u16)> {
    let pg_isready = bin.client_tool("pg_isready");
    let mut attempt = 1;
    loop {
        let port = free_port()?;
        let (log, stdout, stderr) = Log::open(log_path)?;
        let mut cmd = server_command(&bin.tool("postgres"), data_dir, run_as);
        cmd.arg("-D")
            .arg(pgdata)
            // Everything else stays at the cluster's defaults (fsync included: dev data should
            // survive a crash too).
            .args(["-c", "listen_addresses=127.0.0.1", "-c"])
            .arg(format!("port={port}"))
            .arg("-c")
            .arg(unix_socket_setting(socket_dir, port))
            .stdout(stdout)
            .stderr(stderr);
        let mut child = ManagedChild::spawn("postgres", &mut cmd, PG_DROP_PLAN)?;
        let pid = child.pid();
        let outcome = wait_until_ready(&mut child, PG_READY_TIMEOUT, || {
            postgres_accepts(port, pgdata, pid, pg_isready.as_deref())
        })
        .await?;
        if let Readiness::Ready(()) = outcome {
            info!(port, pid, "postgres ready");
            return Ok((child, port));
        }
        let (port_taken, err) = startup_failure("postgres", &outcome, PG_READY_TIMEOUT, port, &log);
        if !(port_taken && attempt < PORT_ATTEMPTS) {
            return Err(err);
        }
        warn!(
            port,
            "port taken before postgres could bind it, retrying with another"
        );
        drop(child);
        attempt += 1;
    }
}

/// `unix_socket_directories=...`. PostgreSQL refuses to start when it cannot create any socket, and
/// socket paths are limited to ~100 bytes, so a deep data dir gets no socket (we use TCP anyway).
fn unix_socket_setting(socket_dir: &Path, port: u16) -> String {
    let dir = socket_dir.to_string_lossy();
    let socket_len = dir.len() + format!("/.s.PGSQL.{port}").len();
    // The value is a comma-separated list; quoting keeps commas and spaces in the path intact,
    // and a path with a quote in it cannot be expressed at all.
    if socket_len > MAX_SOCKET_PATH || dir.contains('"') {
        debug!(dir = %dir, "no unix socket for postgres: path too long or unquotable");
        "unix_socket_directories=".to_owned()
    } else {
        format!("unix_socket_directories=\"{dir}\"")
    }
}

/// Ready = the port accepts TCP, `postmaster.pid` is ours and says "ready" (what `pg_ctl -w`
/// checks; a TCP accept alone also happens while the server still refuses with "starting up"),
/// and `pg_isready` agrees when it is installed.
async fn postgres_accepts(
    port: u16,
    pgdata: &Path,
    pid: Option<u32>,
    pg_isready: Option<&Path>,
) -> Option<()> {
    tcp_connect(port).await?;
    let pid_file = fs::read_to_string(pgdata.join("postmaster.pid")).ok()?;
    let lines: Vec<&str> = pid_file.lines().collect();
    // Comparing the pid rules out a stale file left by a killed earlier run.
    let ours = pid.is_some_and(|pid| lines.first().map(|l| l.trim()) == Some(&pid.to_string()));
    if !(ours && lines.get(7).map(|l| l.trim()) == Some("ready")) {
        return None;
    }
    if let Some(pg_isready) = pg_isready {
        let port = port.to_string();
        let status = client_command(pg_isready)
            .args([
                "-q",
                "-t",
                "2",
                "-h",
                "127.0.0.1",
                "-p",
                &port,
                "-U",
                PG_SUPERUSER,
            ])
            .args(["-d", "postgres"])
            .status()
            .await
            .ok()?;
        if !status.success() {
            return None;
        }
    }
    Some(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn database_names_are_limited_to_plain_identifiers() {
        assert!(validate_database_name("orders_test_1").is_ok());
        assert!(validate_database_name("_x").is_ok());
        for bad in ["", "1abc", "Orders", "a-b", "a b", "a;b", &"x".repeat(64)] {
            assert!(validate_database_name(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn long_socket_paths_disable_the_unix_socket() {
        let short = unix_socket_setting(Path::new("/tmp/x/postgres-socket"), 5432);
        assert_eq!(short, "unix_socket_directories=\"/tmp/x/postgres-socket\"");
        let long = unix_socket_setting(&Path::new("/tmp").join("d".repeat(100)), 5432);
        assert_eq!(long, "unix_socket_directories=");
    }
}
