//! Who changed what in a store (`store_changes`, migration 0013): every change of a store, its
//! products and its members, with who, when, before and after, so that a price dispute can be
//! answered. A row is written in the transaction of the change it records (all or nothing),
//! and the runtime role may only add rows, never rewrite them.

use anyhow::Context as _;
use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::Value;
use sqlx::PgPool;
use uuid::Uuid;

/// What a change is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Entity {
    Store,
    Product,
    Member,
}

impl Entity {
    fn as_str(self) -> &'static str {
        match self {
            Entity::Store => "store",
            Entity::Product => "product",
            Entity::Member => "member",
        }
    }
}

/// One change to record.
#[derive(Debug, Clone)]
pub struct Change<'a> {
    store_id: Uuid,
    actor: &'a str,
    entity: Entity,
    key: &'a str,
    action: &'static str,
    before: Option<Value>,
    after: Option<Value>,
}

impl<'a> Change<'a> {
    /// `actor` did `action` to `entity` `key` (a SKU, a subject, the store's id) of `store_id`.
    pub fn of(
        store_id: Uuid,
        actor: &'a str,
        entity: Entity,
        key: &'a str,
        action: &'static str,
    ) -> Self {
        Self {
            store_id,
            actor,
            entity,
            key,
            action,
            before: None,
            after: None,
        }
    }

    /// The row before the change.
    #[must_use]
    pub fn before(mut self, row: Option<&impl Serialize>) -> Self {
        self.before = row.and_then(|r| serde_json::to_value(r).ok());
        self
    }

    /// The row after the change.
    #[must_use]
    pub fn after(mut self, row: Option<&impl Serialize>) -> Self {
        self.after = row.and_then(|r| serde_json::to_value(r).ok());
        self
    }
}

/// A recorded change.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ChangeRow {
    pub id: i64,
    pub store_id: Uuid,
    pub at: DateTime<Utc>,
    pub actor: String,
    pub entity: String,
    pub key: String,
    pub action: String,
    pub before: Option<Value>,
    pub after: Option<Value>,
}

/// Records `change` in the caller's transaction.
pub async fn record(tx: &mut sqlx::PgConnection, change: Change<'_>) -> anyhow::Result<()> {
    sqlx::query(
        "insert into store_changes (store_id, actor, entity, key, action, before, after)
         values ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(change.store_id)
    .bind(change.actor)
    .bind(change.entity.as_str())
    .bind(change.key)
    .bind(change.action)
    .bind(change.before)
    .bind(change.after)
    .execute(&mut *tx)
    .await
    .context("recording a store change")?;
    Ok(())
}

/// A store's changes, oldest first, after change `after`, at most `limit`.
#[tracing::instrument(skip_all, fields(store_id = %store))]
pub async fn list(
    pool: &PgPool,
    store: Uuid,
    after: Option<i64>,
    limit: i64,
) -> anyhow::Result<Vec<ChangeRow>> {
    sqlx::query_as(
        "select * from store_changes where store_id = $1 and ($2::bigint is null or id > $2)
         order by id limit $3",
    )
    .bind(store)
    .bind(after)
    .bind(limit)
    .fetch_all(pool)
    .await
    .context("listing a store's changes")
}
