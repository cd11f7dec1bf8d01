//! Where each reader stands: for `order-service projections status` and the admin API.

use chrono::{DateTime, Utc};
use sqlx::PgPool;

use super::cursor::{self, Cursor};

/// One reader's position, lag and whether some process runs it right now.
#[derive(Debug, Clone)]
pub struct ReaderStatus {
    pub name: String,
    pub at: Cursor,
    pub updated_at: Option<DateTime<Utc>>,
    pub lag_events: i64,
    pub lag_seconds: f64,
    /// Some process holds the reader's advisory lock.
    pub active: bool,
}

/// The status of every reader in `names` and of every reader with a checkpoint.
pub async fn statuses(pool: &PgPool, names: &[&str]) -> anyhow::Result<Vec<ReaderStatus>> {
    let mut all: Vec<String> =
        sqlx::query_scalar("select name from reader_checkpoints order by name")
            .fetch_all(pool)
            .await?;
    for n in names {
        if !all.iter().any(|a| a == n) {
            all.push((*n).to_owned());
        }
    }
    all.sort();
    let mut conn = pool.acquire().await?;
    let mut out = Vec::new();
    for name in all {
        let at = cursor::load_checkpoint(&mut conn, &name).await?;
        let updated_at: Option<DateTime<Utc>> =
            sqlx::query_scalar("select updated_at from reader_checkpoints where name = $1")
                .bind(&name)
                .fetch_optional(&mut *conn)
                .await?;
        let (lag_events, lag_seconds) = cursor::lag(&mut conn, at).await?;
        // A bigint advisory key shows in pg_locks as (classid = high 32 bits, objid = low).
        let active: bool = sqlx::query_scalar(
            "select exists(select 1 from pg_locks
                where locktype = 'advisory' and granted and objsubid = 1
                  and ((classid::bigint << 32) | objid::bigint) = hashtextextended($1, 0))",
        )
        .bind(super::reader::lock_key(&name))
        .fetch_one(&mut *conn)
        .await?;
        out.push(ReaderStatus {
            name,
            at,
            updated_at,
            lag_events,
            lag_seconds,
            active,
        });
    }
    Ok(out)
}
