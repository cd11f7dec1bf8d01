//! A position in the log, and one event as a reader sees it.

use chrono::{DateTime, Utc};
use sqlx::postgres::PgRow;
use sqlx::{PgConnection, Row as _};
use uuid::Uuid;

use super::event::{self, Aggregate, Decoded};

/// Where a reader stands: the last `(tx_id, position)` it has durably processed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct Cursor {
    /// `xid8` of the writing transaction.
    pub tx_id: u64,
    pub position: i64,
}

/// One event of the log.
#[derive(Debug, Clone)]
pub struct LogEvent {
    pub tx_id: u64,
    pub position: i64,
    pub event_id: Uuid,
    pub aggregate_type: String,
    pub aggregate_id: String,
    /// The aggregate, typed from `aggregate_type` and `aggregate_id` once, as it was read.
    pub aggregate: Aggregate,
    pub sequence: i64,
    pub event_type: String,
    pub payload: serde_json::Value,
    pub metadata: serde_json::Value,
    pub recorded_at: DateTime<Utc>,
}

impl LogEvent {
    pub fn cursor(&self) -> Cursor {
        Cursor {
            tx_id: self.tx_id,
            position: self.position,
        }
    }

    /// The payload as its aggregate's event (an error names the event).
    pub fn decode(&self) -> anyhow::Result<Decoded> {
        event::decode(self.aggregate, &self.payload).map_err(|e| {
            anyhow::anyhow!(
                "event {} ({} of {}) does not decode: {e}",
                self.event_id,
                self.event_type,
                self.aggregate_type
            )
        })
    }

    fn from_row(row: &PgRow) -> Result<Self, sqlx::Error> {
        let tx_id: String = row.try_get("tx_id")?;
        let aggregate_type: String = row.try_get("aggregate_type")?;
        let aggregate_id: String = row.try_get("aggregate_id")?;
        Ok(Self {
            aggregate: Aggregate::of(&aggregate_type, &aggregate_id),
            aggregate_type,
            aggregate_id,
            tx_id: tx_id
                .parse()
                .map_err(|e| sqlx::Error::Decode(Box::new(e)))?,
            position: row.try_get("position")?,
            event_id: row.try_get("event_id")?,
            sequence: row.try_get("sequence")?,
            event_type: row.try_get("event_type")?,
            payload: row.try_get("payload")?,
            metadata: row.try_get("metadata")?,
            recorded_at: row.try_get("recorded_at")?,
        })
    }
}

/// Reads up to `limit` events after `after`, in log order, only from transactions older than
/// every transaction still running (the tailing rule). `xid8` travels as text: sqlx has no
/// `xid8` type.
pub async fn read_batch(
    conn: &mut PgConnection,
    after: Cursor,
    limit: i64,
) -> Result<Vec<LogEvent>, sqlx::Error> {
    Ok(read_tail(conn, after, limit, None).await?.events)
}

/// One read of the log's tail by [`read_tail`].
#[derive(Debug, Clone, Default)]
pub struct Tail {
    /// The events read that the reader wants, in log order.
    pub events: Vec<LogEvent>,
    /// How many events the read went past, wanted or not.
    pub scanned: usize,
    /// The last event the read went past: where the reader stands once it has handled
    /// `events`.
    pub last: Option<Cursor>,
    /// Committed events wait behind a transaction that was still open when the read ran:
    /// visible, but at or above the read's horizon, so the read left them for later. Nothing
    /// announces when that transaction ends; the reader looks again soon.
    pub held_back: bool,
}

/// The oldest transaction of snapshot `snap` that may still append events, or the snapshot's
/// `xmax` if none: its running transactions except those of log readers' connections (whose
/// `application_name` is the given parameter, [`READER_APPLICATION_NAME`]). `backend_xid` is
/// a 32-bit xid; the snapshot's are 64-bit (epoch and xid). Reads `pg_stat_activity`.
macro_rules! horizon {
    ($readers:literal) => {
        concat!(
            "coalesce((select min(x) from pg_snapshot_xip(snap) as x
                        where x::text::bigint % 4294967296 not in
                              (select backend_xid::text::bigint from pg_stat_activity
                                where application_name = ",
            $readers,
            " and backend_xid is not null)),
                      pg_snapshot_xmax(snap))"
        )
    };
}

/// The `application_name` of connections that never append to the log: log readers' leader
/// connections, and the email sender's (`notify::sender`), whose transactions stay open during
/// a delivery.
pub const READER_APPLICATION_NAME: &str = "order-service log reader";

/// Reads like [`read_batch`]; events whose type is not in `wanted` (when given) are passed
/// over without their payload and metadata, which is most of what a read transfers and
/// decodes. Also tells, from the same snapshot, whether events were held back (see
/// [`Tail::held_back`]): one statement per read.
pub async fn read_tail(
    conn: &mut PgConnection,
    after: Cursor,
    limit: i64,
    wanted: Option<&[String]>,
) -> Result<Tail, sqlx::Error> {
    // The horizon is the oldest transaction still running, as `pg_snapshot_xmin`, except the
    // transactions of log readers' connections (marked by their `application_name`): they
    // never append events, so no event can still commit below them, and the projector, busy
    // most of the time under load, would otherwise make every other reader wait for each of
    // its batches (see `horizon!`). A reader transaction that ended and was followed by another between the snapshot and
    // the look at `pg_stat_activity` is simply not excluded (a lower horizon, never a higher).
    //
    // Telling readers apart costs a copy of every backend's status (`pg_stat_activity`,
    // 0.15–0.3 ms under load, more than the rest of the read), so it is done only when it can
    // matter: when some event's transaction is not older than the oldest running one. Below
    // that, every visible event is older than either horizon, and the plain `xmin` gives the
    // same read. `h` is materialized: inlined, its expression was copied into both of its
    // uses, and the check ran twice.
    //
    // One row even when no event qualifies, with nulls for the event. The held-back check
    // compares with this read's own horizon, not a newer one, so an event left behind by the
    // read is never missed; such events are all after any checkpoint (a checkpoint lies below
    // an earlier horizon, and the horizon never moves back). `max()` reads one entry at the
    // end of the (tx_id, position) index; an `exists` was planned as a sequential scan.
    let rows = sqlx::query(concat!(
        r#"with s as materialized (select pg_current_snapshot() as snap,
                                        (select max(tx_id) from events) as newest),
              h as materialized (select newest, case
                when newest is null or newest < pg_snapshot_xmin(snap) then pg_snapshot_xmin(snap)
                else "#,
        horizon!("$5"),
        r#"
                end as xmin from s)
         select coalesce(h.newest >= h.xmin, false) as held_back,
                e.tx_id::text as tx_id, e.position, e.wanted, e.event_id, e.aggregate_type,
                e.aggregate_id, e.sequence, e.event_type,
                case when e.wanted then e.payload end as payload,
                case when e.wanted then e.metadata end as metadata,
                e.recorded_at
           from h
           left join lateral (
                select events.*,
                       ($4::text[] is null or events.event_type = any($4::text[])) as wanted
                  from events
                 where (tx_id, position) > ($1::text::xid8, $2)
                   and tx_id < h.xmin
                 order by events.tx_id, events.position
                 limit $3) e on true
          -- qualified: a bare `tx_id` would name the text column of the select list, and
          -- sort `1000` before `999`
          order by e.tx_id, e.position"#
    ))
    .bind(after.tx_id.to_string())
    .bind(after.position)
    .bind(limit)
    .bind(wanted)
    .bind(READER_APPLICATION_NAME)
    .fetch_all(conn)
    .await?;
    let mut tail = Tail {
        held_back: rows
            .first()
            .ok_or(sqlx::Error::RowNotFound)?
            .try_get("held_back")?,
        ..Tail::default()
    };
    for row in &rows {
        let Some(position) = row.try_get::<Option<i64>, _>("position")? else {
            continue;
        };
        let tx_id: String = row.try_get("tx_id")?;
        tail.last = Some(Cursor {
            tx_id: tx_id
                .parse()
                .map_err(|e| sqlx::Error::Decode(Box::new(e)))?,
            position,
        });
        tail.scanned += 1;
        if row.try_get("wanted")? {
            tail.events.push(LogEvent::from_row(row)?);
        }
    }
    Ok(tail)
}

/// Where a reader that starts "now" stands: before the events of every transaction still
/// running (and of every later one), after those of every transaction that has ended. A few
/// events committed just before may follow it too (by transactions younger than the oldest
/// running one that may append); none that commits later is left behind it. Log readers'
/// transactions are passed over, as in [`read_tail`]: a projector batch running when a live
/// feed opened made the feed repeat what was appended before it.
pub async fn end_of_log(conn: &mut PgConnection) -> Result<Cursor, sqlx::Error> {
    let xmin: String = sqlx::query_scalar(concat!(
        "with s as materialized (select pg_current_snapshot() as snap) select (",
        horizon!("$1"),
        ")::text from s"
    ))
    .bind(READER_APPLICATION_NAME)
    .fetch_one(conn)
    .await?;
    Ok(Cursor {
        tx_id: xmin.parse().map_err(|e| sqlx::Error::Decode(Box::new(e)))?,
        // positions start at 1: the running transaction `xmin` itself is after this
        position: 0,
    })
}

/// The reader's checkpoint, or the start of the log.
pub async fn load_checkpoint(conn: &mut PgConnection, name: &str) -> Result<Cursor, sqlx::Error> {
    let row: Option<(String, i64)> =
        sqlx::query_as("select tx_id::text, position from reader_checkpoints where name = $1")
            .bind(name)
            .fetch_optional(conn)
            .await?;
    match row {
        Some((tx_id, position)) => Ok(Cursor {
            tx_id: tx_id
                .parse()
                .map_err(|e| sqlx::Error::Decode(Box::new(e)))?,
            position,
        }),
        None => Ok(Cursor::default()),
    }
}

/// Moves the reader's checkpoint forward to `at` (inside the caller's transaction). A
/// checkpoint only ever moves forward: when it already stands at or past `at` (someone else,
/// e.g. a rebuild, advanced it), nothing is written and this returns `false`.
pub async fn save_checkpoint(
    conn: &mut PgConnection,
    name: &str,
    at: Cursor,
) -> Result<bool, sqlx::Error> {
    let written = sqlx::query(
        "insert into reader_checkpoints (name, tx_id, position, updated_at)
         values ($1, $2::text::xid8, $3, now())
         on conflict (name) do update
            set tx_id = excluded.tx_id, position = excluded.position, updated_at = now()
          where (reader_checkpoints.tx_id, reader_checkpoints.position)
              < (excluded.tx_id, excluded.position)",
    )
    .bind(name)
    .bind(at.tx_id.to_string())
    .bind(at.position)
    .execute(conn)
    .await?
    .rows_affected();
    Ok(written == 1)
}

/// Sets the reader's checkpoint to `at`, backwards too: only for a rebuild, which has just
/// made the reader's output match `at` (inside the caller's transaction).
pub async fn reset_checkpoint(
    conn: &mut PgConnection,
    name: &str,
    at: Cursor,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "insert into reader_checkpoints (name, tx_id, position, updated_at)
         values ($1, $2::text::xid8, $3, now())
         on conflict (name) do update
            set tx_id = excluded.tx_id, position = excluded.position, updated_at = now()",
    )
    .bind(name)
    .bind(at.tx_id.to_string())
    .bind(at.position)
    .execute(conn)
    .await?;
    Ok(())
}

/// Most events [`lag`] counts: beyond it the count stops (a reader that far behind is
/// catching up from a rebuild or an outage), so a measurement stays a bounded read.
pub const LAG_COUNT_LIMIT: i64 = 100_000;

/// How far behind `at` is: events committed after it (at most [`LAG_COUNT_LIMIT`]), and how
/// long ago the next of them was recorded. Two bounded index reads: a count that stops at the
/// limit, and the first entry after `at`.
pub async fn lag(conn: &mut PgConnection, at: Cursor) -> Result<(i64, f64), sqlx::Error> {
    let (count, oldest): (i64, Option<f64>) = sqlx::query_as(
        "select (select count(*) from (select from events
                                        where (tx_id, position) > ($1::text::xid8, $2)
                                        limit $3) as behind),
                (select extract(epoch from now() - recorded_at)::float8 from events
                  where (tx_id, position) > ($1::text::xid8, $2)
                  order by tx_id, position limit 1)",
    )
    .bind(at.tx_id.to_string())
    .bind(at.position)
    .bind(LAG_COUNT_LIMIT)
    .fetch_one(conn)
    .await?;
    Ok((count, oldest.unwrap_or(0.0).max(0.0)))
}
