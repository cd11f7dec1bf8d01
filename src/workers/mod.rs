//! Background workers, each run by [`crate::supervisor`] (restarted after a failure, stopped by
//! its cancellation token): log readers plugged into [`crate::log`], a NATS consumer, a
//! polling loop.
//! * [`projector`]: keeps the read models;
//! * [`saga_reactor`]: order events → saga commands, saga verdicts → order commands;
//! * [`relay`]: order events and participant commands → JetStream;
//! * [`replies`]: participant replies → saga commands;
//! * [`deadlines`]: timed-out saga steps → `Timeout` (polls the saga deadlines);
//! * [`metrics`]: the reply consumer's metrics.
//!
//! The live feeds' follower is no worker of these: it is served per request, in [`crate::live`].

pub mod deadlines;
pub mod metrics;
pub mod projector;
pub mod relay;
pub mod replies;
pub mod saga_reactor;
