//! order-projections: the read models of DESIGN §6.
//!
//! * [`apply`]: folds one recorded order event into the read-model tables, inside the caller's
//!   transaction. Idempotent and order-checked through `order_summaries.version`: an event at or
//!   below the stored version is a duplicate (skipped), one beyond `version + 1` is a gap (an
//!   error: the batch is retried, never half-applied).
//! * [`queries`]: what the API reads: order lists, details, lines, history, audit log, reports.
//!
//! Writes use unqualified table names; the caller sets `search_path` to the live schema `read`
//! or to `read_rebuild` during a rebuild. Queries always read the live schema.

pub mod apply;
pub mod queries;

pub use apply::{
    apply, apply_saga, Applied, ProjectionError, Recorded, SagaRecorded, SCHEMA, SHADOW_SCHEMA,
};
