//! The server processes we spawn: a [`ManagedChild`] that is never leaked, its shutdown by
//! escalating signals, the server [`Log`] it writes to, and the wait for it to come up.
//!
//! **Guarantees.** A child is only ever signalled through [`ManagedChild::pid`], which is `None`
//! once it has been reaped, so a recycled pid is never hit. Every child is stopped when its
//! `ManagedChild` drops: the drop plan's signals in turn, each with its grace period, then
//! `SIGKILL`. A start that fails reports the tail of this run's part of the server log.

use std::{
    fs::{File, OpenOptions},
    future::Future,
    io::{Read, Seek, SeekFrom},
    path::{Path, PathBuf},
    process::{ExitStatus, Stdio},
    time::Duration,
};

use anyhow::{anyhow, Context, Result};
use nix::{
    errno::Errno,
    sys::signal::{kill, Signal},
    unistd::Pid,
};
use tokio::{
    process::{Child, Command},
    time::{sleep, timeout, Instant},
};
use tracing::{debug, warn};

/// How often a starting server is probed (and a test polls the process table).
pub(super) const POLL_INTERVAL: Duration = Duration::from_millis(100);

/// Shutdown escalation: send each signal in turn and wait up to its grace period for the process
/// to exit; `SIGKILL` follows the last step.
pub(super) type ShutdownPlan = &'static [(Signal, Duration)];

/// A server process we spawned and must not leak.
#[derive(Debug)]
pub(super) struct ManagedChild {
    name: &'static str,
    child: Child,
    /// How `Drop` stops it.
    drop_plan: ShutdownPlan,
}

impl ManagedChild {
    pub(super) fn spawn(
        name: &'static str,
        cmd: &mut Command,
        drop_plan: ShutdownPlan,
    ) -> Result<Self> {
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
    pub(super) fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    fn try_wait(&mut self) -> std::io::Result<Option<ExitStatus>> {
        self.child.try_wait()
    }

    /// Sends `signal` unless the child is already gone.
    pub(super) fn signal_if_running(&mut self, signal: Signal) {
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
    pub(super) async fn shutdown(&mut self, plan: ShutdownPlan) -> Result<ExitStatus> {
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
    pub(super) fn shutdown_blocking(&mut self) {
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
pub(super) struct Log {
    path: PathBuf,
    start: u64,
}

impl Log {
    /// Opens (appending) and returns the log with stdout/stderr handles for a child.
    pub(super) fn open(path: &Path) -> Result<(Self, Stdio, Stdio)> {
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

    pub(super) fn failure(&self, what: &str) -> anyhow::Error {
        anyhow!(
            "{what}; last lines of {}:\n{}",
            self.path.display(),
            self.tail(30)
        )
    }
}

/// How a wait for a starting server ended.
pub(super) enum Readiness<T> {
    Ready(T),
    Exited(ExitStatus),
    TimedOut,
}

/// Polls `probe` until it yields a value, the child exits, or `limit` passes.
pub(super) async fn wait_until_ready<T, F, Fut>(
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
pub(super) fn startup_failure<T>(
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
