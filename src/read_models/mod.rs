//! The read models kept from the log (`order-projections`, DESIGN §6): how a batch of log
//! events is applied to them, and the rebuild that replays the whole log into shadow tables
//! and swaps them in. The projector worker (`workers::projector`) applies the live log; the
//! admin API and the CLI start rebuilds. Both come here; neither knows the other.

mod apply;
mod rebuild;

pub use apply::{apply_batch, PROJECTOR};
pub use rebuild::{rebuild, RebuildError, RebuildReport};
