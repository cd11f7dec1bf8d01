//! Background workers, each a log reader plugged into [`crate::log`] or a NATS consumer:
//! * [`projector`]: keeps the read models;
//! * [`saga_reactor`]: order events → saga commands, saga verdicts → order commands;
//! * [`relay`]: order events and participant commands → JetStream;
//! * [`replies`]: participant replies → saga commands;
//! * [`deadlines`]: timed-out saga steps → `Timeout`;
//! * [`live`]: the follower behind the live feeds (every process runs its own).

pub mod deadlines;
pub mod live;
pub mod projector;
pub mod relay;
pub mod replies;
pub mod saga_reactor;
