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
//!
//! Where each part lives: `postgres.rs` (cluster, server, `createdb`), `nats.rs` (nats-server),
//! `process.rs` (children, shutdown signals, server logs, readiness), `ports.rs`, `install.rs`
//! (finding the binaries, install hints), `run_as.rs` (running as root); this file holds the
//! public entry point, [`DevStack`]. Compiled only with the `devstack` cargo feature (on by
//! default), so a `--no-default-features` production build carries none of it.

mod install;
mod nats;
mod ports;
mod postgres;
mod process;
mod run_as;
#[cfg(test)]
mod tests;

use std::{
    fs,
    path::{Path, PathBuf},
};

use anyhow::{anyhow, bail, Context, Result};
use tracing::{debug, info};

use self::install::{
    choose_postgres, find_nats_server, postgres_candidates, PgBin, NATS_INSTALL_HINT,
    PG_INSTALL_HINT,
};
use self::nats::{start_nats, NATS_DROP_PLAN, NATS_STOP_PLAN};
use self::postgres::{
    createdb, ensure_cluster, pg_url, read_cluster_version, start_postgres, validate_database_name,
    CreateDb, PG_DROP_PLAN, PG_STOP_PLAN,
};
use self::process::ManagedChild;
use self::run_as::{chown_tree_if_needed, create_private_dir, postgres_run_as, resolve_data_dir};

/// Database the application uses; created at every start if missing.
const APP_DATABASE: &str = "orders";

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
        match createdb(&stack.pg_bin, stack.pg_port, APP_DATABASE).await? {
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
        match createdb(&self.pg_bin, self.pg_port, name).await? {
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
}

impl Drop for DevStack {
    /// Best effort and synchronous: whatever is still running gets its graceful signal, then a
    /// harder one, then `SIGKILL` (see the plans in `postgres.rs` and `nats.rs`). Both are signalled before either is
    /// waited for, so the two shutdowns overlap.
    fn drop(&mut self) {
        self.nats.signal_if_running(NATS_DROP_PLAN[0].0);
        self.postgres.signal_if_running(PG_DROP_PLAN[0].0);
        self.nats.shutdown_blocking();
        self.postgres.shutdown_blocking();
    }
}
