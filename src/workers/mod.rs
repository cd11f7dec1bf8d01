//! Background workers, each a log reader plugged into [`crate::log`] (or, later, a NATS
//! consumer): the projector keeps the read models.

pub mod projector;
