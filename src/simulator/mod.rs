//! The participant simulator (DESIGN §8): stand-ins for the inventory and payment services that
//! answer the saga's commands over JetStream, for the dev stack, the tests and the benchmarks.
//!
//! Each participant connects as its own NATS user when credentials are configured
//! ([`Connections`]: `inventory`, `payment`, as `deploy/nats/users.conf` allows), reads
//! `SAGA_COMMANDS` through its own durable pull consumer (`<PREFIX>inventory` /
//! `<PREFIX>payment`, one `filter_subject` each: nats-server 2.9 ignores `filter_subjects`),
//! decides the command against its [`Books`], publishes the reply with a JetStream ack and only
//! then acks the command. The streams are the service's: a participant waits for them. Commands are idempotent by `message_id`:
//! a repeat gets the reply decided the first time (same reply message id, so JetStream
//! de-duplicates it as well) and changes nothing.
//!
//! Misbehaviour is configurable ([`SimulatorConfig`]): latency, declines, stock-outs, silence
//! (the command takes effect but its reply is lost; a later delivery of the same command gets
//! it) and duplicate replies. Every such decision is drawn from the seed, the command's message
//! id and the delivery number, so a run is reproducible whatever the interleaving.
//!
//! The books live in memory: run one simulator per prefix (two would split the commands between
//! them), and a restarted simulator has forgotten what it decided.
//!
//! ```no_run
//! # async fn demo(nats: order_service::nats::Nats) -> anyhow::Result<()> {
//! use order_service::simulator::{Simulator, SimulatorConfig};
//! let simulator = Simulator::start(nats, SimulatorConfig::default()).await?;
//! // ... drive orders ...
//! let held = simulator.read_books(|b| b.authorized_minor());
//! let books = simulator.stop().await?;
//! # Ok(()) }
//! ```

mod books;
mod dice;
#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use anyhow::{anyhow, ensure, Context as _};
use async_nats::jetstream::consumer::{pull, AckPolicy, DeliverPolicy};
use async_nats::jetstream::{self, AckKind};
use chrono::Utc;
use futures::stream::FuturesUnordered;
use futures::StreamExt as _;
use order_sagas::messages::{MessageId, ParseError, ParticipantCommand, Reply};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::Instrument as _;
use uuid::Uuid;

pub use books::{
    reply_id, Anomaly, Books, PaymentRecord, PaymentState, Reservation, ReservationState,
    StockLedger, StockLevel,
};

use self::books::Luck;
use self::dice::{Dice, Roll};
use crate::config::{NatsSettings, SimulatorSettings};
use crate::nats::headers::{self, Envelope};
use crate::nats::{is_stream_not_found, Nats, SAGA_COMMANDS};
use crate::telemetry::trace_context;

/// `ce-source` of every reply the simulator publishes.
pub const SOURCE: &str = "order-service-simulator";

/// How long JetStream waits for a command's ack before delivering it again.
const ACK_WAIT: Duration = Duration::from_secs(30);
/// Deliveries of one command before JetStream gives up on it (the saga re-sends by timeout).
const MAX_DELIVER: i64 = 20;
/// Pause before re-creating a consumer after a failure (or while the streams are missing).
const RETRY_PAUSE: Duration = Duration::from_secs(1);
/// Redelivery delay asked for a command whose reply could not be published.
const PUBLISH_RETRY: Duration = Duration::from_secs(1);

/// How the simulated participants behave. Rates are probabilities in `[0, 1]`.
#[derive(Debug, Clone)]
pub struct SimulatorConfig {
    /// Shortest time taken before replying.
    pub min_latency: Duration,
    /// Longest time taken before replying (uniform between the two; below `min_latency`
    /// means exactly `min_latency`).
    pub max_latency: Duration,
    /// Share of `authorize` commands declined.
    pub decline_rate: f64,
    /// Share of `reserve` commands rejected as out of stock whatever the stock.
    pub out_of_stock_rate: f64,
    /// Share of deliveries whose reply is lost: the command takes effect and is acked, but
    /// nothing is published. Drawn per delivery, so the saga's re-send (same `message_id`) is
    /// answered unless it is unlucky too.
    pub silence_rate: f64,
    /// Share of replies published twice. The copy keeps the reply's message id (JetStream drops
    /// it within its dedupe window) or, half the time, gets a fresh one (it reaches the service,
    /// which must dedupe by `in_reply_to`).
    pub duplicate_reply_rate: f64,
    /// Units available per SKU at start.
    pub stock: HashMap<String, u64>,
    /// Units available at start of any SKU not in `stock`.
    pub default_stock: u64,
    /// Seed of every random decision.
    pub seed: u64,
    /// Commands each participant works on at once (latency overlaps).
    pub max_in_flight: usize,
    /// Where [`run`] keeps the inventory's books ([`StockLedger`] as JSON) for `verify`.
    pub books_file: Option<PathBuf>,
}

impl Default for SimulatorConfig {
    /// A well-behaved pair of participants: instant, never declining, plenty of stock.
    fn default() -> Self {
        Self {
            min_latency: Duration::ZERO,
            max_latency: Duration::ZERO,
            decline_rate: 0.0,
            out_of_stock_rate: 0.0,
            silence_rate: 0.0,
            duplicate_reply_rate: 0.0,
            stock: HashMap::new(),
            default_stock: 1_000_000,
            seed: 0,
            max_in_flight: 64,
            books_file: None,
        }
    }
}

impl From<&SimulatorSettings> for SimulatorConfig {
    /// The behaviour configured for `order-service simulate` and the in-process simulator.
    fn from(s: &SimulatorSettings) -> Self {
        Self {
            min_latency: Duration::from_millis(s.min_latency_ms),
            max_latency: Duration::from_millis(s.max_latency_ms),
            decline_rate: s.decline_rate,
            out_of_stock_rate: s.out_of_stock_rate,
            silence_rate: s.silence_rate,
            duplicate_reply_rate: s.duplicate_reply_rate,
            default_stock: s.default_stock,
            seed: s.seed,
            books_file: s.books_file.clone(),
            ..Self::default()
        }
    }
}

impl SimulatorConfig {
    /// Checks the rates and limits.
    pub fn validate(&self) -> anyhow::Result<()> {
        for (name, rate) in [
            ("decline_rate", self.decline_rate),
            ("out_of_stock_rate", self.out_of_stock_rate),
            ("silence_rate", self.silence_rate),
            ("duplicate_reply_rate", self.duplicate_reply_rate),
        ] {
            ensure!(
                (0.0..=1.0).contains(&rate),
                "simulator {name} must be between 0 and 1, got {rate}"
            );
        }
        ensure!(
            self.max_in_flight > 0,
            "simulator max_in_flight must be at least 1"
        );
        Ok(())
    }
}

/// The two simulated participants.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Participant {
    Inventory,
    Payment,
}

impl Participant {
    /// Both, in a stable order.
    pub const ALL: [Participant; 2] = [Self::Inventory, Self::Payment];

    /// Lower-case name (logs, consumer names, its NATS identity).
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Inventory => "inventory",
            Self::Payment => "payment",
        }
    }

    /// The commands it reads (subject suffix; one filter subject per consumer).
    const fn filter(self) -> &'static str {
        match self {
            Self::Inventory => "inventory.commands.*",
            Self::Payment => "payment.commands.*",
        }
    }

    /// Name of its durable consumer on `SAGA_COMMANDS`: the prefix, upper-cased with dots made
    /// underscores as for stream names (consumer names cannot contain dots), then the
    /// participant's name; e.g. `T1_inventory`. The simulator stands in for the participant,
    /// so it uses the participant's own consumer (the one its NATS user may read).
    pub fn durable_name(self, nats: &Nats) -> String {
        nats.stream_name(self.as_str())
    }
}

/// The connection each simulated participant uses.
#[derive(Debug, Clone)]
pub struct Connections {
    pub inventory: Nats,
    pub payment: Nats,
}

impl From<Nats> for Connections {
    /// Both participants on one connection (a server without users: dev, tests).
    fn from(nats: Nats) -> Self {
        Self {
            inventory: nats.clone(),
            payment: nats,
        }
    }
}

impl Connections {
    /// Each participant as its own user when its credentials are configured
    /// (`APP__SIMULATOR__INVENTORY__*`, `APP__SIMULATOR__PAYMENT__*`), else on `shared` when
    /// given (the service's own connection), else anonymously under its own name.
    pub async fn connect(
        url: &str,
        nats: &NatsSettings,
        simulator: &SimulatorSettings,
        shared: Option<&Nats>,
    ) -> anyhow::Result<Self> {
        let one = |participant: Participant| async move {
            let credentials = match participant {
                Participant::Inventory => &simulator.inventory,
                Participant::Payment => &simulator.payment,
            };
            match shared {
                Some(shared) if !credentials.is_set() => Ok(shared.clone()),
                _ => Nats::connect_as(url, nats, participant.as_str(), credentials).await,
            }
        };
        Ok(Self {
            inventory: one(Participant::Inventory).await?,
            payment: one(Participant::Payment).await?,
        })
    }

    fn of(&self, participant: Participant) -> &Nats {
        match participant {
            Participant::Inventory => &self.inventory,
            Participant::Payment => &self.payment,
        }
    }
}

/// A running simulator: both participants' tasks and their books.
///
/// Dropping it stops the participants abruptly (commands in flight are redelivered later);
/// [`Simulator::stop`] lets them finish what they hold.
#[derive(Debug)]
pub struct Simulator {
    books: Arc<Mutex<Books>>,
    stop: watch::Sender<bool>,
    tasks: JoinSet<anyhow::Result<()>>,
}

impl Simulator {
    /// Creates (or updates) both durable consumers and starts consuming; commands already
    /// waiting in the stream are answered too. Streams the service has not created yet are
    /// waited for in the background.
    pub async fn start(
        connections: impl Into<Connections>,
        config: SimulatorConfig,
    ) -> anyhow::Result<Self> {
        config.validate()?;
        let connections = connections.into();
        let books = Arc::new(Mutex::new(Books::new(&config.stock, config.default_stock)));
        let shared = Arc::new(Shared {
            dice: Dice::new(config.seed),
            config,
            books: Arc::clone(&books),
        });
        let (stop, stopped) = watch::channel(false);
        let mut tasks = JoinSet::new();
        for participant in Participant::ALL {
            let worker = Worker {
                participant,
                nats: connections.of(participant).clone(),
                shared: Arc::clone(&shared),
            };
            // Fails start-up on a misconfiguration (a permission, a bad filter) instead of
            // retrying it in the background; only a missing stream is worth waiting for.
            if worker.consumer().await?.is_none() {
                tracing::warn!(
                    participant = participant.as_str(),
                    stream = worker.nats.stream_name(SAGA_COMMANDS),
                    "the commands stream does not exist yet (the service creates it); waiting"
                );
            }
            tasks.spawn(worker.run(stopped.clone()));
        }
        tracing::info!(
            prefix = connections.inventory.subject(""),
            "participant simulator started"
        );
        Ok(Self { books, stop, tasks })
    }

    /// A snapshot of the books (a copy: cheap in tests, linear in the commands seen).
    pub fn books(&self) -> Books {
        lock(&self.books).clone()
    }

    /// Reads the live books without copying them.
    pub fn read_books<R>(&self, read: impl FnOnce(&Books) -> R) -> R {
        read(&lock(&self.books))
    }

    /// Stops taking commands, lets those in flight finish (a latency wait is cut short and its
    /// command handed back for redelivery) and returns the final books.
    pub async fn stop(mut self) -> anyhow::Result<Books> {
        self.stop.send_replace(true);
        let mut result = Ok(());
        while let Some(joined) = self.tasks.join_next().await {
            match joined {
                Ok(Ok(())) => {}
                Ok(Err(e)) => result = Err(e),
                Err(e) => result = Err(anyhow!(e).context("a simulator participant panicked")),
            }
        }
        tracing::info!("participant simulator stopped");
        result.map(|()| lock(&self.books).clone())
    }

    /// Resolves when a participant task ends on its own, which only a bug does (they retry
    /// failures until stopped).
    async fn failure(&mut self) -> anyhow::Error {
        match self.tasks.join_next().await {
            Some(Ok(Ok(()))) => anyhow!("a simulator participant stopped by itself"),
            Some(Ok(Err(e))) => e,
            Some(Err(e)) => anyhow!(e).context("a simulator participant panicked"),
            None => anyhow!("the simulator has no participants"),
        }
    }
}

/// Runs the simulator until `shutdown` is cancelled, or until a participant task fails (which
/// only a bug does: they retry a lost consumer themselves, keeping the books); for
/// `order-service simulate` and the service's in-process simulator. Logs the final totals, and
/// keeps the inventory's books in `config.books_file` when set.
pub async fn run(
    connections: Connections,
    config: SimulatorConfig,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let books_file = config.books_file.clone();
    let mut simulator = Simulator::start(connections, config).await?;
    let keeper = CancellationToken::new();
    let kept = books_file.clone().map(|path| {
        tokio::spawn(keep_books(
            Arc::clone(&simulator.books),
            path,
            keeper.clone(),
        ))
    });
    let failure = tokio::select! {
        () = shutdown.cancelled() => None,
        e = simulator.failure() => Some(e),
    };
    keeper.cancel();
    if let Some(kept) = kept {
        let _ = kept.await;
    }
    let books = simulator.stop().await?;
    if let Some(path) = &books_file {
        write_ledger(path, &books.stock_ledger()).await?;
    }
    tracing::info!(
        commands = books.commands_decided(),
        reserved_units = books.reserved_units(),
        committed_units = books.committed_units(),
        authorized_minor = books.authorized_minor(),
        captured_minor = books.captured_minor(),
        voided_minor = books.voided_minor(),
        refunded_minor = books.refunded_minor(),
        anomalies = books.anomalies().len(),
        "simulator books at shutdown"
    );
    failure.map_or(Ok(()), Err)
}

/// How often [`keep_books`] looks for new decisions.
const BOOKS_EVERY: Duration = Duration::from_millis(200);

/// Rewrites the books file whenever a command was decided since the last write.
async fn keep_books(books: Arc<Mutex<Books>>, path: PathBuf, stop: CancellationToken) {
    let mut written = None;
    loop {
        tokio::select! {
            () = tokio::time::sleep(BOOKS_EVERY) => {}
            () = stop.cancelled() => return,
        }
        // only the stock ledger is copied, and only when something was decided
        let (decided, ledger) = {
            let books = lock(&books);
            let decided = books.commands_decided();
            if written == Some(decided) {
                continue;
            }
            (decided, books.stock_ledger())
        };
        match write_ledger(&path, &ledger).await {
            Ok(()) => written = Some(decided),
            Err(e) => tracing::warn!(error = format!("{e:#}"), "could not keep the books"),
        }
    }
}

/// Writes the inventory's books to `path` whole (a new file renamed over the old one).
async fn write_ledger(path: &Path, ledger: &StockLedger) -> anyhow::Result<()> {
    let json = serde_json::to_vec(ledger)?;
    let mut partial = path.as_os_str().to_owned();
    partial.push(".partial");
    tokio::fs::write(&partial, json)
        .await
        .with_context(|| format!("writing {}", path.display()))?;
    tokio::fs::rename(&partial, path)
        .await
        .with_context(|| format!("replacing {}", path.display()))?;
    Ok(())
}

/// Resolves once `stop` is true or its sender is gone (nobody can stop us any more).
async fn stopped(stop: &mut watch::Receiver<bool>) {
    // An error only means the sender was dropped: that is a stop as well.
    let _ = stop.wait_for(|stop| *stop).await;
}

fn is_stopping(stop: &watch::Receiver<bool>) -> bool {
    *stop.borrow() || stop.has_changed().is_err()
}

/// The books stay consistent even if a holder panicked: every mutation completes before the
/// guard is released and none of them can panic halfway, so a poisoned lock is safe to reuse.
fn lock(books: &Mutex<Books>) -> MutexGuard<'_, Books> {
    books.lock().unwrap_or_else(PoisonError::into_inner)
}

/// What both participants share.
#[derive(Debug)]
struct Shared {
    config: SimulatorConfig,
    dice: Dice,
    books: Arc<Mutex<Books>>,
}

/// One participant's consuming task.
#[derive(Debug, Clone)]
struct Worker {
    participant: Participant,
    /// Its own connection (its own NATS user, when configured).
    nats: Nats,
    shared: Arc<Shared>,
}

impl Worker {
    /// Consumes until stopped; a failed consumer is re-created after a pause.
    async fn run(self, mut stop: watch::Receiver<bool>) -> anyhow::Result<()> {
        let name = self.participant.as_str();
        while !is_stopping(&stop) {
            if let Err(e) = self.consume(&mut stop).await {
                tracing::warn!(
                    participant = name,
                    error = format!("{e:#}"),
                    "simulated participant lost its consumer; retrying"
                );
                tokio::select! {
                    () = tokio::time::sleep(RETRY_PAUSE) => {}
                    () = stopped(&mut stop) => {}
                }
            }
        }
        tracing::info!(participant = name, "simulated participant stopped");
        Ok(())
    }

    /// The durable pull consumer, created or updated to this configuration; `None` while the
    /// commands stream does not exist.
    async fn consumer(
        &self,
    ) -> anyhow::Result<Option<jetstream::consumer::Consumer<pull::Config>>> {
        let nats = &self.nats;
        let stream_name = nats.stream_name(SAGA_COMMANDS);
        let durable = self.participant.durable_name(nats);
        let stream = match nats.js.get_stream(&stream_name).await {
            Ok(stream) => stream,
            Err(e) if is_stream_not_found(&e) => return Ok(None),
            Err(e) => {
                return Err(anyhow!(e).context(format!("looking up stream {stream_name}")));
            }
        };
        stream
            .create_consumer(pull::Config {
                durable_name: Some(durable.clone()),
                description: Some(format!(
                    "order-service simulator: {} participant",
                    self.participant.as_str()
                )),
                deliver_policy: DeliverPolicy::All,
                ack_policy: AckPolicy::Explicit,
                ack_wait: ACK_WAIT,
                max_deliver: MAX_DELIVER,
                filter_subject: nats.subject(self.participant.filter()),
                ..Default::default()
            })
            .await
            .map(Some)
            .with_context(|| format!("creating consumer {durable} on {stream_name}"))
    }

    /// Reads commands until stopped (then finishes those in flight) or until the consumer fails.
    async fn consume(&self, stop: &mut watch::Receiver<bool>) -> anyhow::Result<()> {
        let consumer = self.consumer().await?.ok_or_else(|| {
            anyhow!(
                "stream {} does not exist yet",
                self.nats.stream_name(SAGA_COMMANDS)
            )
        })?;
        let mut messages = consumer
            .messages()
            .await
            .context("pulling from the commands consumer")?;
        let handler_stop = stop.clone();
        let max_in_flight = self.shared.config.max_in_flight;
        let mut in_flight = FuturesUnordered::new();
        let outcome = loop {
            tokio::select! {
                () = stopped(stop) => break Ok(()),
                Some(()) = in_flight.next(), if !in_flight.is_empty() => {}
                next = messages.next(), if in_flight.len() < max_in_flight => match next {
                    Some(Ok(message)) => in_flight.push(self.handle(message, handler_stop.clone())),
                    Some(Err(e)) => break Err(anyhow!(e).context("reading commands")),
                    None => break Err(anyhow!("the commands consumer ended")),
                },
            }
        };
        while in_flight.next().await.is_some() {}
        outcome
    }

    /// One delivery of one command, in a consumer span continuing the command's trace (as a
    /// participant service would): decide, reply (unless silent), ack.
    async fn handle(&self, message: jetstream::Message, stop: watch::Receiver<bool>) {
        let span = tracing::info_span!(
            "nats.process",
            otel.name = format!("process {}", self.participant.as_str()),
            otel.kind = "consumer",
            participant = self.participant.as_str(),
            subject = message.subject.as_str(),
            message_id = tracing::field::Empty,
            messaging.system = "nats",
            messaging.operation = "process",
            messaging.operation.type = "process",
            messaging.destination.name = message.subject.as_str(),
            messaging.message.id = tracing::field::Empty,
        );
        let traceparent = headers::get(message.headers.as_ref(), "traceparent");
        trace_context::continue_trace(&span, traceparent);
        self.handle_in_span(message, stop).instrument(span).await;
    }

    async fn handle_in_span(&self, message: jetstream::Message, mut stop: watch::Receiver<bool>) {
        let shared = &*self.shared;
        let span = tracing::Span::current();
        let command = match parse(&self.nats, &message) {
            Ok(command) => command,
            Err(e) => {
                // Redelivering cannot make it readable: stop JetStream from trying.
                tracing::warn!(error = %e, "unreadable command; terminated");
                settle(&message, AckKind::Term).await;
                return;
            }
        };
        let id = command.message_id();
        span.record("message_id", tracing::field::display(id));
        span.record("messaging.message.id", tracing::field::display(id));
        trace_context::rename(
            &span,
            format!(
                "process {}",
                self.nats.unprefixed(&message.subject).unwrap_or("command")
            ),
        );

        let delivery = lock(&shared.books).record_delivery(id);
        let latency = self.latency(id, delivery);
        if !latency.is_zero() {
            tokio::select! {
                () = tokio::time::sleep(latency) => {}
                () = stopped(&mut stop) => {
                    settle(&message, AckKind::Nak(None)).await;
                    return;
                }
            }
        }

        let config = &shared.config;
        let luck = Luck {
            declined: shared.dice.hits(config.decline_rate, Roll::Decline, id, 0),
            out_of_stock: shared
                .dice
                .hits(config.out_of_stock_rate, Roll::OutOfStock, id, 0),
        };
        let answer = lock(&shared.books).answer(&command, luck);
        let Some(reply) = answer.reply else {
            tracing::debug!("command contradicts the books; no reply (see anomalies)");
            settle(&message, AckKind::Ack).await;
            return;
        };
        if shared
            .dice
            .hits(config.silence_rate, Roll::Silence, id, delivery)
        {
            tracing::info!(delivery, reply = %reply.kind(), "silent: reply withheld");
            settle(&message, AckKind::Ack).await;
            return;
        }

        // the reply continues this span's trace
        let traceparent =
            trace_context::pass_on(&span, headers::get(message.headers.as_ref(), "traceparent"));
        let traceparent = traceparent.as_deref();
        if let Err(e) = self.send(&reply, traceparent).await {
            tracing::warn!(
                error = format!("{e:#}"),
                "reply not published; command handed back"
            );
            settle(&message, AckKind::Nak(Some(PUBLISH_RETRY))).await;
            return;
        }
        tracing::debug!(reply = %reply.kind(), repeated = answer.repeated, delivery, "replied");

        if shared
            .dice
            .hits(config.duplicate_reply_rate, Roll::Duplicate, id, delivery)
        {
            let copy = if shared.dice.hits(0.5, Roll::FreshDuplicate, id, delivery) {
                let fresh = Uuid::new_v5(
                    &reply.message_id().as_uuid(),
                    format!("duplicate/{delivery}").as_bytes(),
                );
                with_message_id(reply, MessageId::from_uuid(fresh))
            } else {
                reply
            };
            tracing::info!(copy_id = %copy.message_id(), "duplicate reply");
            if let Err(e) = self.send(&copy, traceparent).await {
                // The original went out; a lost copy is just a duplicate that did not happen.
                tracing::warn!(error = format!("{e:#}"), "duplicate reply not published");
            }
        }
        settle(&message, AckKind::Ack).await;
    }

    fn latency(&self, id: MessageId, delivery: u32) -> Duration {
        let config = &self.shared.config;
        let spread = config.max_latency.saturating_sub(config.min_latency);
        if spread.is_zero() {
            return config.min_latency;
        }
        let share = self.shared.dice.roll(Roll::Latency, id, delivery);
        config.min_latency + spread.mul_f64(share)
    }

    /// Publishes `reply` and waits for its JetStream ack.
    async fn send(&self, reply: &Reply, traceparent: Option<&str>) -> anyhow::Result<()> {
        let nats = &self.nats;
        let id = reply.message_id().to_string();
        let headers = headers::build(&Envelope {
            id: &id,
            kind: reply.subject(),
            source: SOURCE,
            time: Utc::now(),
            traceparent,
        });
        let body = reply.to_json().context("serializing the reply")?;
        nats.publish(nats.subject(reply.subject()), headers, body.into())
            .await?;
        Ok(())
    }
}

/// The command in `message`, its subject stripped of the prefix.
fn parse(nats: &Nats, message: &jetstream::Message) -> Result<ParticipantCommand, ParseError> {
    let subject = message.subject.as_str();
    let suffix = nats
        .unprefixed(subject)
        .ok_or_else(|| ParseError::UnknownSubject {
            subject: subject.chars().take(200).collect(),
        })?;
    ParticipantCommand::parse(suffix, &message.payload)
}

/// Acks (or naks, or terminates) a command; a failure only means JetStream redelivers it, which
/// the books answer idempotently.
async fn settle(message: &jetstream::Message, kind: AckKind) {
    if let Err(e) = message.ack_with(kind).await {
        tracing::warn!(error = %e, ?kind, "could not settle the command; it will be redelivered");
    }
}

/// `reply` with another message id (a duplicate that JetStream does not recognise).
fn with_message_id(reply: Reply, id: MessageId) -> Reply {
    let mut reply = reply;
    match &mut reply {
        Reply::StockReserved(m) => m.message_id = id,
        Reply::StockRejected(m) => m.message_id = id,
        Reply::StockReleased(m) => m.message_id = id,
        Reply::StockCommitted(m) => m.message_id = id,
        Reply::PaymentAuthorized(m) => m.message_id = id,
        Reply::PaymentDeclined(m) => m.message_id = id,
        Reply::PaymentVoided(m) => m.message_id = id,
        Reply::PaymentCaptured(m) => m.message_id = id,
        Reply::PaymentCaptureFailed(m) => m.message_id = id,
        Reply::PaymentRefunded(m) => m.message_id = id,
    }
    reply
}
