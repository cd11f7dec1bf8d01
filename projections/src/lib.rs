//! order-projections: the read models of DESIGN §6.
//!
//! * [`apply`]: folds recorded order and saga events into the read-model tables, a batch at a
//!   time ([`apply_batch`]), inside the caller's transaction. Idempotent and order-checked
//!   through the stored `version`: an event at or below it is a duplicate (skipped), one beyond
//!   `version + 1` is a gap (an error: the batch is retried, never half-applied).
//! * [`record`]: what a batch holds ([`Record`]s of order and saga events) and what applying
//!   answers ([`Applied`], [`ProjectionError`]).
//! * [`rows`]: the read-model rows a batch loads, changes and adds, as plain data.
//! * [`fold`]: the in-memory half of a batch apply, without a database; `sales` counts the
//!   daily sales rows for it.
//! * [`queries`]: what the API reads: order lists, details, lines, history, audit log, reports.
//!
//! Writes use unqualified table names; the caller sets `search_path` to the live schema `read`
//! or to `read_rebuild` during a rebuild. Queries always read the live schema.

pub mod apply;
pub mod fold;
pub mod queries;
pub mod record;
pub mod rows;
mod sales;

pub use apply::{apply, apply_batch, apply_saga, SCHEMA, SHADOW_SCHEMA};
pub use record::{Applied, ProjectionError, Record, Recorded, SagaRecorded};
