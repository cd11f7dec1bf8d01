//! The pages a person opens, in a real browser: headless Chromium (Debian's `chromium`,
//! installed by `.ci/run`; `ORDER_TEST_CHROMIUM` names another) driven over the DevTools
//! protocol. The store board shows an order the saga confirmed, moves it when its button is
//! pressed (from the keyboard), and the tracking page follows the order without a reload.
//! Screenshots land in `target/test-artifacts/`.

use std::process::Stdio;
use std::time::{Duration, Instant};

use base64::Engine as _;
use futures::{SinkExt as _, StreamExt as _};
use serde_json::{json, Value};
use tokio::io::AsyncBufReadExt as _;
use tokio_tungstenite::tungstenite::Message;
use uuid::Uuid;

use crate::helpers::spawn_saga_app;

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// A headless Chromium and its one page, spoken to over the DevTools protocol.
struct Browser {
    _child: tokio::process::Child,
    page: Socket,
    next_id: u64,
    profile: std::path::PathBuf,
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.profile);
    }
}

impl Browser {
    async fn launch() -> Self {
        let chromium = std::env::var("ORDER_TEST_CHROMIUM").unwrap_or_else(|_| "chromium".into());
        let profile = std::env::temp_dir().join(format!("ostest-chromium-{}", Uuid::new_v4()));
        let mut child = tokio::process::Command::new(&chromium)
            .args([
                "--headless=new",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-dev-shm-usage",
                "--no-first-run",
                "--no-default-browser-check",
                "--remote-debugging-port=0",
                "--window-size=1280,800",
            ])
            .arg(format!("--user-data-dir={}", profile.display()))
            .arg("about:blank")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| panic!("starting {chromium} (install Debian's chromium): {e}"));
        let mut lines = tokio::io::BufReader::new(child.stderr.take().expect("stderr")).lines();
        let browser_url = tokio::time::timeout(Duration::from_secs(30), async {
            while let Some(line) = lines.next_line().await.expect("stderr") {
                if let Some(url) = line.strip_prefix("DevTools listening on ") {
                    return url.to_owned();
                }
            }
            panic!("chromium exited before listening");
        })
        .await
        .expect("chromium listening in time");
        // drain the rest of stderr so chromium never blocks on it
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        let port = browser_url
            .trim_start_matches("ws://127.0.0.1:")
            .split('/')
            .next()
            .expect("port")
            .to_owned();
        let targets: Value = reqwest::get(format!("http://127.0.0.1:{port}/json/list"))
            .await
            .expect("targets")
            .json()
            .await
            .expect("targets JSON");
        let page_url = targets
            .as_array()
            .expect("targets")
            .iter()
            .find(|t| t["type"] == "page")
            .and_then(|t| t["webSocketDebuggerUrl"].as_str())
            .expect("a page")
            .to_owned();
        let (page, _) = tokio_tungstenite::connect_async(page_url)
            .await
            .expect("page socket");
        Self {
            _child: child,
            page,
            next_id: 0,
            profile,
        }
    }

    /// Calls a DevTools method and returns its result (events in between are skipped).
    async fn call(&mut self, method: &str, params: Value) -> Value {
        self.next_id += 1;
        let id = self.next_id;
        let request = json!({"id": id, "method": method, "params": params});
        self.page
            .send(Message::Text(request.to_string().into()))
            .await
            .expect("send");
        tokio::time::timeout(Duration::from_secs(30), async {
            loop {
                let frame = self.page.next().await.expect("page open").expect("frame");
                let Message::Text(text) = frame else { continue };
                let answer: Value = serde_json::from_str(&text).expect("JSON");
                if answer["id"] == id {
                    assert!(answer["error"].is_null(), "{method}: {answer}");
                    return answer["result"].clone();
                }
            }
        })
        .await
        .unwrap_or_else(|_| panic!("{method} answered in time"))
    }

    async fn goto(&mut self, url: &str) {
        self.call("Page.navigate", json!({"url": url})).await;
    }

    /// The value of a JavaScript expression in the page.
    async fn eval(&mut self, expression: &str) -> Value {
        let result = self
            .call(
                "Runtime.evaluate",
                json!({"expression": expression, "returnByValue": true, "awaitPromise": true}),
            )
            .await;
        assert!(
            result["exceptionDetails"].is_null(),
            "{expression}: {result}"
        );
        result["result"]["value"].clone()
    }

    /// Waits until `expression` is true in the page, at most `patience`; how long it took.
    async fn wait_for(&mut self, expression: &str, patience: Duration) -> Duration {
        let started = Instant::now();
        loop {
            // false, not an exception, while the page is still loading
            let guarded = format!("(() => {{ try {{ return Boolean({expression}); }} catch (e) {{ return false; }} }})()");
            if self.eval(&guarded).await == json!(true) {
                return started.elapsed();
            }
            assert!(
                started.elapsed() < patience,
                "not true within {patience:?}: {expression}; page: {}",
                self.eval("document.body.innerText").await
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// Presses a key on the focused element, as a person at the keyboard does.
    async fn press_enter(&mut self) {
        for kind in ["keyDown", "keyUp"] {
            self.call(
                "Input.dispatchKeyEvent",
                json!({"type": kind, "key": "Enter", "code": "Enter",
                       "windowsVirtualKeyCode": 13, "text": "\r"}),
            )
            .await;
        }
    }

    async fn screenshot(&mut self, name: &str) {
        let shot = self
            .call("Page.captureScreenshot", json!({"format": "png"}))
            .await;
        let png = base64::engine::general_purpose::STANDARD
            .decode(shot["data"].as_str().expect("data"))
            .expect("base64");
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/target/test-artifacts");
        std::fs::create_dir_all(dir).expect("artifacts dir");
        std::fs::write(format!("{dir}/{name}"), png).expect("screenshot written");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_board_and_the_tracking_page_follow_an_order_live_in_a_browser() {
    let app = spawn_saga_app(order_service::simulator::SimulatorConfig::default(), |_| {}).await;
    let store = app.store_with_products().await;
    let staff = app.staff(store);
    let alice = app.customer("alice");
    let mut browser = Browser::launch().await;

    // The board, with the staff's token passed once in the fragment.
    browser
        .goto(&format!(
            "{}/board/{store}#token={}",
            app.address, staff.token
        ))
        .await;
    let ready = "document.body.dataset.loaded === 'true' \
                 && document.getElementById('feed').dataset.state === 'open'";
    browser.wait_for(ready, Duration::from_secs(20)).await;
    assert_eq!(
        browser.eval("location.href").await,
        format!("{}/board/{store}", app.address)
    );
    assert_eq!(
        browser
            .eval("sessionStorage.getItem('order-service-token')")
            .await,
        json!(staff.token)
    );

    // An order placed through the API appears as confirmed once the saga confirmed it.
    let order = app.draft_with_tea(&alice, store).await;
    app.place(&alice, order).await.assert_status(200);
    app.wait_for_order(order, Duration::from_secs(10), |o| {
        o["status"] == "confirmed"
    })
    .await;
    let card = |status: &str| {
        format!(
            "document.querySelector('.column[data-status=\"{status}\"] [data-order=\"{order}\"]')"
        )
    };
    let took = browser
        .wait_for(
            &format!("{} !== null", card("confirmed")),
            Duration::from_secs(2),
        )
        .await;
    println!("the board showed the confirmed order {took:?} after the API did");
    browser.screenshot("board.png").await;

    // Start preparing from the keyboard: focus the card's button, press Enter.
    browser
        .eval(&format!(
            "{}.querySelector('button').focus()",
            card("confirmed")
        ))
        .await;
    browser.press_enter().await;
    app.wait_for_order(order, Duration::from_secs(10), |o| {
        o["status"] == "preparing"
    })
    .await;
    browser
        .wait_for(
            &format!("{} !== null", card("preparing")),
            Duration::from_secs(10),
        )
        .await;
    assert!(browser
        .eval("document.getElementById('announcements').textContent")
        .await
        .as_str()
        .is_some_and(|t| t.contains("Preparing")));

    // The tracking page, as the customer: the new status arrives without a reload.
    browser
        .goto(&format!(
            "{}/track/{order}#token={}",
            app.address, alice.token
        ))
        .await;
    browser.wait_for(ready, Duration::from_secs(20)).await;
    browser
        .wait_for(
            "document.getElementById('status').dataset.status === 'preparing'",
            Duration::from_secs(10),
        )
        .await;
    browser.eval("window.stillTheSamePage = true").await;
    app.set_status(&staff, order, "ready_for_pickup")
        .await
        .assert_status(200);
    browser
        .wait_for(
            "document.getElementById('status').dataset.status === 'ready_for_pickup' \
             && document.querySelector('#timeline li[data-status=\"ready_for_pickup\"]') !== null",
            Duration::from_secs(10),
        )
        .await;
    assert_eq!(browser.eval("window.stillTheSamePage").await, json!(true));
    browser.screenshot("track.png").await;
}
