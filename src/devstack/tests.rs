//! Tests of the whole stack: real servers started, used, stopped, restarted and leaked on
//! purpose, with the process table read back to prove nothing outlives a [`DevStack`].

use std::{
    fs,
    os::unix::fs::PermissionsExt,
    path::{Path, PathBuf},
    process::Stdio,
    time::Duration,
};

use nix::{
    sys::signal::{kill, Signal},
    unistd::{geteuid, Pid},
};
use tokio::time::{sleep, timeout, Instant};

use super::nats::nats_info;
use super::ports::tcp_connect;
use super::postgres::{client_command, pg_url};
use super::process::POLL_INTERVAL;
use super::run_as::{fallback_data_dir, first_untraversable, postgres_run_as};
use super::DevStack;

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
