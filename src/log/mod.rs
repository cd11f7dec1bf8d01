//! The log reader: one implementation of "tail the events table" for every reader (projector,
//! saga reactor, relay). DESIGN §5.
//!
//! * **Cursor** `(tx_id, position)`, read only below the oldest running transaction (as
//!   `pg_snapshot_xmin(pg_current_snapshot())`, but not counting log readers' own
//!   transactions, which never append): an event is read only once every transaction that could
//!   still commit before it has ended, so a late commit with a smaller `position` is never
//!   skipped (tailing by `position` alone would skip it forever).
//! * **Exactly-once in effect** for handlers whose effects are database writes (the projector):
//!   a batch is handed to the handler inside a transaction on the leader connection, and the
//!   checkpoint is written in that same transaction. A checkpoint only moves forward; a batch
//!   behind it (the checkpoint was advanced meanwhile, e.g. by a rebuild) is rolled back and the
//!   reader goes on from the checkpoint.
//! * **At-least-once, idempotent** for handlers whose effects land elsewhere (the relay
//!   publishes with a message id JetStream deduplicates; the saga reactor sends commands that
//!   sagas and orders absorb when repeated): no transaction per batch, and the checkpoint is
//!   written at most every 100 ms, and when idle or stopping ([`Checkpoints::Every`]). A reader
//!   that only wants some event types passes the others over without transferring their
//!   payloads.
//! * **Single active reader** per name: the leader holds `pg_try_advisory_lock` on a dedicated
//!   connection, and runs every batch on that connection; if the process or connection dies,
//!   the lock goes with it and a standby takes over within `lock_retry`.
//! * **Wake-up** at once on appends of this process ([`AppendSignal`]), on `NOTIFY
//!   events_appended` from other processes (sent outside their transactions, heard on one
//!   connection per process, see [`wake`]), soon again while committed events wait behind an
//!   older open transaction, and by polling as a fallback.

mod cursor;
mod event;
pub mod metrics;
mod reader;
mod status;
pub mod wake;

pub use cursor::{
    end_of_log, lag, load_checkpoint, read_batch, read_tail, reset_checkpoint, save_checkpoint,
    Cursor, LogEvent, Tail, READER_APPLICATION_NAME,
};
pub use event::{Aggregate, Decoded};
pub use reader::{Checkpoints, LogHandler, LogReader, ReaderConfig};
pub use status::{statuses, ReaderStatus};
pub use wake::AppendSignal;
