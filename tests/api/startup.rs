//! `serve` as a process, at its start and its stop (DESIGN §11, issue 18): a dependency that is
//! not up yet delays readiness, never the listener, and says so in one clear log line; once
//! it starts, the service is ready within seconds. On SIGTERM readiness turns 503 while the
//! listener still accepts, then the process exits 0. A misspelt setting stops the start.
//!
//! The nats-server: `ORDER_TEST_NATS_SERVER`, else `nats-server` on `PATH`.

use std::process::Stdio;
use std::time::{Duration, Instant};

use secrecy::ExposeSecret as _;
use serde_json::Value;
use uuid::Uuid;

use crate::helpers::{check, spawn_app, ServeChild, TestApp};

/// What the service promises: the log line, and readiness after the dependency started.
const PROMISED: Duration = Duration::from_secs(5);
/// Room for a loaded test machine on top of [`PROMISED`] where the test measures it.
const MARGIN: Duration = Duration::from_secs(3);
/// Longest wait for what the test itself starts.
const WAIT: Duration = Duration::from_secs(20);

/// A port bound but not listening: nothing answers there (connections are refused), and no
/// other process gets it, until the test listens on it or lets it go.
fn reserved_port() -> (tokio::net::TcpSocket, u16) {
    let socket = tokio::net::TcpSocket::new_v4().expect("a socket");
    socket
        .bind(std::net::SocketAddr::from(([127, 0, 0, 1], 0)))
        .expect("bind");
    let port = socket.local_addr().expect("its address").port();
    (socket, port)
}

/// The test database's URL (the runtime role), as `app` runs on it.
fn database_url(app: &TestApp) -> String {
    app.settings
        .database_url
        .as_ref()
        .expect("database url")
        .expose_secret()
        .to_owned()
}

/// Whether `line` is a WARN or ERROR log line that names `dependency` and `address`.
fn names(line: &str, dependency: &str, address: &str) -> bool {
    let Ok(json) = serde_json::from_str::<Value>(line) else {
        return false;
    };
    matches!(json["level"].as_str(), Some("WARN" | "ERROR"))
        && line.to_lowercase().contains(dependency)
        && line.contains(address)
}

/// Asserts: within [`PROMISED`] of the start, a clear line names `dependency` at `address`
/// with the cause; live is 200; ready is 503 with a failed `check`; a v1 route answers 503
/// problem+json. Returns how long the line took.
async fn assert_waiting(
    serve: &mut ServeChild,
    dependency: &str,
    address: &str,
    check_name: &str,
) -> Duration {
    let line = serve
        .wait_for_line(PROMISED, |l| names(l, dependency, address))
        .await
        .unwrap_or_else(|| {
            panic!(
                "no clear line naming {dependency} at {address} within {PROMISED:?}: {}",
                serve.output()
            )
        });
    let to_line = serve.started.elapsed();
    assert!(line.contains("connection refused"), "no cause: {line}");

    let (status, body) = serve.get("/health/live").await.expect("live answers");
    assert_eq!(status, 200, "{body}");
    let (status, body) = serve.get("/health/ready").await.expect("ready answers");
    assert_eq!(status, 503, "{body}");
    let failed = check(&body, check_name).unwrap_or_else(|| panic!("no {check_name}: {body}"));
    assert_eq!(failed["ok"], false, "{body}");
    let detail = failed["detail"].as_str().unwrap_or_default();
    assert!(
        detail.contains("not reachable yet") && detail.contains(address),
        "{body}"
    );
    assert!(!detail.contains("os error"), "internal error text: {body}");

    let (status, problem) = serve.get("/v1/stores").await.expect("the API answers");
    assert_eq!(status, 503, "{problem}");
    assert_eq!(problem["type"], "/problems/starting", "{problem}");
    assert!(problem["detail"]
        .as_str()
        .is_some_and(|d| d.contains(check_name)));
    to_line
}

/// Waits until `/health/ready` answers 200, within [`PROMISED`] (+ [`MARGIN`]) of `up`;
/// returns how long that took.
async fn assert_ready_soon_after(serve: &mut ServeChild, up: Instant) -> Duration {
    let ready = serve
        .wait_for_ready(PROMISED + MARGIN, |status, _| status == 200)
        .await;
    let took = up.elapsed();
    assert!(
        ready.is_some(),
        "not ready {took:?} after the dependency started: {:?}\n{}",
        serve.get("/health/ready").await,
        serve.output()
    );
    took
}

/// A nats-server with JetStream on `port`, its store in a fresh temporary directory; killed
/// on drop.
struct LateNats {
    _child: tokio::process::Child,
    dir: std::path::PathBuf,
}

impl Drop for LateNats {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl LateNats {
    /// Starts it on the `reserved` port and returns once it accepts connections, with that
    /// instant.
    async fn start((reserved, port): (tokio::net::TcpSocket, u16)) -> (Self, Instant) {
        let binary =
            std::env::var_os("ORDER_TEST_NATS_SERVER").unwrap_or_else(|| "nats-server".into());
        let dir = std::env::temp_dir().join(format!("order-late-nats-{}", Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).expect("store dir");
        drop(reserved); // for the server to take, at once
        let child = tokio::process::Command::new(binary)
            .args(["-js", "-a", "127.0.0.1", "-p", &port.to_string()])
            .arg("-sd")
            .arg(&dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("nats-server starts (ORDER_TEST_NATS_SERVER)");
        let deadline = Instant::now() + WAIT;
        while async_nats::connect(format!("nats://127.0.0.1:{port}"))
            .await
            .is_err()
        {
            assert!(Instant::now() < deadline, "nats-server did not come up");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        (Self { _child: child, dir }, Instant::now())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_waits_for_a_nats_that_starts_late_and_is_ready_soon_after() {
    // Arrange: a database; NATS on a port where nothing listens yet.
    let app = spawn_app().await;
    let reserved = reserved_port();
    let address = format!("127.0.0.1:{}", reserved.1);
    let small = (8 << 20).to_string();
    let mut env = vec![
        ("DATABASE_URL".to_owned(), database_url(&app)),
        ("NATS_URL".to_owned(), format!("nats://{address}")),
        ("APP__WORKERS__SAGAS".to_owned(), "true".to_owned()),
        (
            "APP__NATS__PREFIX".to_owned(),
            format!("late{}.", Uuid::new_v4().simple()),
        ),
    ];
    // JetStream reserves each stream's bounds on the server's store: keep them small.
    for stream in [
        "ORDER_EVENTS",
        "SAGA_COMMANDS",
        "SAGA_REPLIES",
        "DEAD_LETTERS",
    ] {
        env.push((
            format!("APP__NATS__STREAMS__{stream}__MAX_BYTES"),
            small.clone(),
        ));
    }

    // Act: serve without NATS.
    let mut serve = ServeChild::spawn(env);

    // Assert: it says so at once, answers, and is not ready.
    let to_line = assert_waiting(&mut serve, "nats", &address, "nats").await;

    // Act: NATS starts.
    let (_nats, up) = LateNats::start(reserved).await;

    // Assert: ready within seconds, and it stops cleanly.
    let to_ready = assert_ready_soon_after(&mut serve, up).await;
    eprintln!("nats: log line after {to_line:?}, ready {to_ready:?} after nats-server accepted");
    serve.terminate();
    assert!(serve.exit(WAIT).await.success(), "{}", serve.output());
}

/// Forwards every connection to the `reserved` port to `upstream`, from when it listens.
fn start_proxy(
    reserved: tokio::net::TcpSocket,
    upstream: String,
) -> (tokio::task::JoinHandle<()>, Instant) {
    let listener = reserved.listen(128).expect("the proxy listens");
    let up = Instant::now();
    let task = tokio::spawn(async move {
        while let Ok((mut inbound, _)) = listener.accept().await {
            let upstream = upstream.clone();
            tokio::spawn(async move {
                if let Ok(mut outbound) = tokio::net::TcpStream::connect(upstream).await {
                    let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                }
            });
        }
    });
    (task, up)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_waits_for_a_database_that_starts_late_and_is_ready_soon_after() {
    // Arrange: the test database, reached through a proxy that is not started yet.
    let app = spawn_app().await;
    let mut url = url::Url::parse(&database_url(&app)).expect("database url");
    let upstream = format!(
        "{}:{}",
        url.host_str().expect("a host"),
        url.port().unwrap_or(5432)
    );
    let (reserved, port) = reserved_port();
    url.set_host(Some("127.0.0.1")).expect("host");
    url.set_port(Some(port)).expect("port");
    let address = format!("127.0.0.1:{port}");

    // Act: serve without its database.
    let mut serve = ServeChild::spawn([
        ("DATABASE_URL", url.to_string()),
        ("APP__WORKERS__SAGAS", "false".to_owned()),
    ]);

    // Assert: it says so at once, answers, and is not ready.
    let to_line = assert_waiting(&mut serve, "postgresql", &address, "database").await;
    if let Some(password) = url.password() {
        assert!(!serve.output().contains(password), "{}", serve.output());
    }

    // Act: the database "starts".
    let (proxy, up) = start_proxy(reserved, upstream);

    // Assert: ready within seconds, and it stops cleanly.
    let to_ready = assert_ready_soon_after(&mut serve, up).await;
    eprintln!("database: log line after {to_line:?}, ready {to_ready:?} after the proxy listened");
    serve.terminate();
    assert!(serve.exit(WAIT).await.success(), "{}", serve.output());
    proxy.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_sigterm_readiness_turns_503_while_the_listener_still_accepts_then_serve_exits_0() {
    // Arrange: a ready service with a drain delay the test can see.
    let app = spawn_app().await;
    let mut serve = ServeChild::spawn([
        ("DATABASE_URL", database_url(&app)),
        ("APP__WORKERS__SAGAS", "false".to_owned()),
        ("APP__HTTP__SHUTDOWN_DELAY_MS", "3000".to_owned()),
    ]);
    let ready = serve.wait_for_ready(WAIT, |status, _| status == 200).await;
    assert!(ready.is_some(), "never ready: {}", serve.output());

    // Act
    serve.terminate();
    let signalled = Instant::now();

    // Assert: still accepting, and saying it is shutting down.
    let (status, body) = serve
        .wait_for_ready(WAIT, |status, _| status != 200)
        .await
        .expect("the listener still accepts after SIGTERM");
    assert_eq!(status, 503, "{body}");
    let shutdown = check(&body, "shutdown").unwrap_or_else(|| panic!("no shutdown check: {body}"));
    assert_eq!(shutdown["ok"], false);
    assert_eq!(shutdown["detail"], "shutting down");
    let (status, _) = serve.get("/health/live").await.expect("live still answers");
    assert_eq!(status, 200);

    // Assert: then it stops, after the delay, with status 0.
    let exit = serve.exit(WAIT).await;
    assert!(exit.success(), "{exit:?}: {}", serve.output());
    assert!(
        signalled.elapsed() >= Duration::from_secs(3),
        "no drain delay"
    );
}

#[tokio::test]
async fn an_unknown_setting_stops_serve_naming_it() {
    let mut serve = ServeChild::spawn([
        ("DATABASE_URL", "postgres://127.0.0.1:1/none".to_owned()),
        ("APP__HTTP__ADRR", "0.0.0.0:9090".to_owned()),
    ]);
    let exit = serve.exit(WAIT).await;
    assert!(!exit.success());
    assert!(
        serve.output().contains("APP__HTTP__ADRR"),
        "{}",
        serve.output()
    );
}
