//! Steady load as storefronts make it: each client creates an order, adds an item and places
//! it, each command under its own `Idempotency-Key`, retried with the same key (on the next
//! replica, as a load balancer would send it) after a 503, a 429, a timeout or a connection
//! error, until it gets an answer.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use order_service::http::auth::{Role, TokenMinter};
use secrecy::SecretString;
use serde_json::{json, Value};
use tokio::task::JoinSet;
use uuid::Uuid;

/// Clients sending at once.
pub const CLIENTS: usize = 4;
/// Pause between two orders of one client (keeps the load steady on 2 shared cores).
const THINK: Duration = Duration::from_millis(50);
/// Pause before a retry.
const RETRY_PAUSE: Duration = Duration::from_millis(200);
/// A request's own timeout (a stopped replica never answers).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// A command retried for longer than this is given up (and reported).
const GIVE_UP: Duration = Duration::from_secs(120);

/// What one command's sends ended with, by class.
#[derive(Debug, Default, Clone)]
pub struct Counts {
    /// Commands answered 2xx (after their retries).
    pub answered_2xx: u64,
    /// Answers by status, every send (retries included).
    pub by_status: BTreeMap<u16, u64>,
    /// Sends that got no HTTP answer (connection refused or reset, timeout).
    pub no_answer: u64,
    /// Commands refused (4xx other than 429): none is expected of this load.
    pub refused: Vec<String>,
    /// Commands given up after [`GIVE_UP`].
    pub given_up: u64,
    /// 2xx answers while a fault was on (see [`Load::fault_window`]).
    pub answered_during_fault: u64,
}

impl Counts {
    pub fn status(&self, code: u16) -> u64 {
        self.by_status.get(&code).copied().unwrap_or(0)
    }
    pub fn five_xx(&self) -> u64 {
        self.by_status
            .iter()
            .filter(|(s, _)| **s >= 500)
            .map(|(_, n)| n)
            .sum()
    }
}

/// One order as the clients saw it.
#[derive(Debug, Clone, Default)]
pub struct OrderSeen {
    pub id: Uuid,
    pub added: bool,
    pub placed: bool,
}

#[derive(Default)]
struct Shared {
    counts: Counts,
    orders: Vec<OrderSeen>,
}

pub struct Load {
    stop: Arc<AtomicBool>,
    faulty: Arc<AtomicBool>,
    shared: Arc<Mutex<Shared>>,
    tasks: JoinSet<()>,
    started: Instant,
}

/// What a run produced.
pub struct Outcome {
    pub counts: Counts,
    pub orders: Vec<OrderSeen>,
    pub seconds: f64,
}

impl Outcome {
    pub fn commands_per_second(&self) -> f64 {
        #[allow(clippy::cast_precision_loss)]
        let n = self.counts.answered_2xx as f64;
        n / self.seconds
    }
}

/// Creates the store and product the load orders from: (store id, admin token).
pub async fn set_up_store(urls: &[String], minter: &TokenMinter) -> Uuid {
    let admin = minter
        .mint(
            "fault-admin",
            &[Role::Admin],
            &[],
            Duration::from_secs(3600),
        )
        .expect("mint");
    let http = reqwest::Client::new();
    let store: Value = http
        .post(format!("{}/v1/stores", urls[0]))
        .bearer_auth(&admin)
        .json(&json!({"name": "Fault café", "currency": "EUR"}))
        .send()
        .await
        .expect("store")
        .json()
        .await
        .expect("store json");
    let id: Uuid = store["id"]
        .as_str()
        .expect("store id")
        .parse()
        .expect("uuid");
    let answer = http
        .post(format!("{}/v1/stores/{id}/products", urls[0]))
        .bearer_auth(&admin)
        .json(&json!({"sku": "TEA", "name": "Green tea", "unit_price_minor": 450}))
        .send()
        .await
        .expect("product");
    assert!(answer.status().is_success(), "{:?}", answer.text().await);
    id
}

impl Load {
    /// Starts [`CLIENTS`] clients against `urls`.
    pub fn start(urls: &[String], secret: &str, store: Uuid) -> Self {
        let minter = TokenMinter::new(
            &SecretString::from(secret.to_owned()),
            "order-service",
            "order-service",
        )
        .expect("minter");
        let stop = Arc::new(AtomicBool::new(false));
        let faulty = Arc::new(AtomicBool::new(false));
        let shared = Arc::new(Mutex::new(Shared::default()));
        let mut tasks = JoinSet::new();
        for i in 0..CLIENTS {
            let sub = format!("fault-client-{i}");
            let client = Client {
                http: reqwest::Client::builder()
                    .timeout(REQUEST_TIMEOUT)
                    .build()
                    .expect("client"),
                urls: urls.to_vec(),
                next: i,
                token: minter
                    .mint(&sub, &[Role::Customer], &[], Duration::from_secs(7200))
                    .expect("mint"),
                sub,
                store,
                faulty: Arc::clone(&faulty),
                shared: Arc::clone(&shared),
            };
            tasks.spawn(client.run(Arc::clone(&stop)));
        }
        Self {
            stop,
            faulty,
            shared,
            tasks,
            started: Instant::now(),
        }
    }

    /// Marks the time a fault is on: 2xx answers meanwhile are counted apart.
    pub fn fault_window(&self, on: bool) {
        self.faulty.store(on, Ordering::SeqCst);
    }

    pub fn counts(&self) -> Counts {
        self.shared.lock().expect("lock").counts.clone()
    }

    /// Waits until the clients have `n` more 2xx answers than now (at most `patience`).
    pub async fn wait_for_answers(&self, n: u64, patience: Duration) {
        let from = self.counts().answered_2xx;
        let progressed = crate::poll::within(patience, || async {
            (self.counts().answered_2xx >= from + n).then_some(())
        })
        .await;
        assert!(
            progressed.is_some(),
            "the load made no progress: {:?}",
            self.counts()
        );
    }

    pub fn running_for(&self) -> Duration {
        self.started.elapsed()
    }

    /// Stops the clients after their current order.
    pub async fn finish(mut self) -> Outcome {
        self.stop.store(true, Ordering::SeqCst);
        while let Some(r) = self.tasks.join_next().await {
            r.expect("client task");
        }
        let seconds = self.started.elapsed().as_secs_f64();
        let shared = self.shared.lock().expect("lock");
        Outcome {
            counts: shared.counts.clone(),
            orders: shared.orders.clone(),
            seconds,
        }
    }
}

struct Client {
    http: reqwest::Client,
    urls: Vec<String>,
    next: usize,
    token: String,
    sub: String,
    store: Uuid,
    faulty: Arc<AtomicBool>,
    shared: Arc<Mutex<Shared>>,
}

impl Client {
    async fn run(mut self, stop: Arc<AtomicBool>) {
        while !stop.load(Ordering::SeqCst) {
            let key = Uuid::new_v4();
            let mut seen = OrderSeen::default();
            let created = self
                .command(
                    "/v1/orders".into(),
                    &format!("{key}-create"),
                    json!({"store_id": self.store, "customer_id": self.sub}),
                )
                .await;
            if let Some(body) = created {
                seen.id = body["id"].as_str().expect("id").parse().expect("uuid");
                let id = seen.id;
                seen.added = self
                    .command(
                        format!("/v1/orders/{id}/items"),
                        &format!("{key}-add"),
                        json!({"sku": "TEA", "quantity": 1}),
                    )
                    .await
                    .is_some();
                if seen.added {
                    seen.placed = self
                        .command(
                            format!("/v1/orders/{id}/place"),
                            &format!("{key}-place"),
                            json!({}),
                        )
                        .await
                        .is_some();
                }
                self.shared.lock().expect("lock").orders.push(seen);
            }
            tokio::time::sleep(THINK).await;
        }
    }

    /// Sends one command until it is answered: its 2xx body, or `None` (refused, given up).
    async fn command(&mut self, path: String, key: &str, body: Value) -> Option<Value> {
        let began = Instant::now();
        loop {
            let url = format!("{}{path}", self.urls[self.next % self.urls.len()]);
            let sent = self
                .http
                .post(url)
                .bearer_auth(&self.token)
                .header("Idempotency-Key", key)
                .json(&body)
                .send()
                .await;
            let retry = match sent {
                Err(_) => {
                    self.shared.lock().expect("lock").counts.no_answer += 1;
                    true
                }
                Ok(answer) => {
                    let status = answer.status().as_u16();
                    let text = answer.text().await.unwrap_or_default();
                    let mut shared = self.shared.lock().expect("lock");
                    *shared.counts.by_status.entry(status).or_default() += 1;
                    if (200..300).contains(&status) {
                        shared.counts.answered_2xx += 1;
                        if self.faulty.load(Ordering::SeqCst) {
                            shared.counts.answered_during_fault += 1;
                        }
                        return Some(serde_json::from_str(&text).unwrap_or(Value::Null));
                    }
                    if status == 503 || status == 429 || status == 409 || status >= 500 {
                        true
                    } else {
                        shared
                            .counts
                            .refused
                            .push(format!("{path}: {status} {text}"));
                        return None;
                    }
                }
            };
            debug_assert!(retry);
            // the next replica, as a load balancer would choose after a failure
            self.next += 1;
            if began.elapsed() > GIVE_UP {
                self.shared.lock().expect("lock").counts.given_up += 1;
                return None;
            }
            tokio::time::sleep(RETRY_PAUSE).await;
        }
    }
}
