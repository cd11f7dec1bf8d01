//! Store memberships (DESIGN §10): who, besides the `store_ids` of its token, acts on a store.
//! Owners manage the store, its catalog and its members; staff act on its orders.
//!
//! Guarantees:
//! * **The last owner stays.** Every membership change locks its store's row first (`for
//!   update`), so two owners removing or demoting each other at once are decided one after
//!   the other, and the second finds itself the last owner: refused, nothing written.
//! * **Recorded with the change.** Each change writes its `store_changes` row (who, when,
//!   before, after) in the same transaction (`changes.rs`).
//! * **Cheap on the command path.** A staff or merchant caller's memberships are read once per
//!   subject (one indexed select, `store_members_by_subject`) and then served from memory
//!   while the catalog's `LISTEN catalog_changed` connection is up (`catalog.rs`); any change,
//!   in any process, empties the cache (a trigger on `store_members`, migration 0013), and a
//!   change made here empties it as soon as it commits. Without that connection every lookup
//!   reads the table. Requests of customers, analysts, admins and services never look.
//! * **Revocation reaches open feeds.** Every emptying of the cache bumps
//!   [`Memberships::changes`], which a live feed opened on membership watches to re-check and
//!   end (`http/live.rs`).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use anyhow::Context as _;
use chrono::{DateTime, Utc};
use prometheus::{IntCounterVec, Registry};
use serde::Serialize;
use sqlx::PgPool;
use tokio::sync::watch;
use uuid::Uuid;

use super::changes::{record, Change, Entity};
use crate::metric;

/// The memberships' metrics.
#[derive(Debug, Clone)]
pub struct MemberMetrics {
    /// Membership lookups of staff and merchant requests, by source (`cache`, `database`):
    /// how often the command path pays a round trip for them.
    pub lookups: IntCounterVec,
}

impl MemberMetrics {
    pub fn register(registry: &Registry) -> prometheus::Result<Self> {
        Ok(Self {
            lookups: metric::counters(
                registry,
                "store_member_lookups_total",
                "Membership lookups of staff and merchant requests, by source (cache, database)",
                &["source"],
            )?,
        })
    }
}

/// Most subjects whose memberships are kept in memory; beyond, the cache starts over (every
/// verified caller with a staff or merchant token may add one).
const MAX_CACHED_SUBJECTS: usize = 10_000;

/// What a member may do in a store (`store_members.role`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum MemberRole {
    /// Manages the store, its catalog and its members, and acts on its orders.
    Owner,
    /// Acts on the store's orders, as a `store_ids` claim allows.
    Staff,
}

impl MemberRole {
    /// The snake_case name stored and sent.
    pub fn as_str(self) -> &'static str {
        match self {
            MemberRole::Owner => "owner",
            MemberRole::Staff => "staff",
        }
    }

    /// The role named `s`, if any.
    pub fn parse(s: &str) -> Option<Self> {
        [MemberRole::Owner, MemberRole::Staff]
            .into_iter()
            .find(|r| r.as_str() == s)
    }
}

/// One store a caller is a member of.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Membership {
    pub store_id: Uuid,
    pub role: MemberRole,
}

/// A member as stored.
#[derive(Debug, Clone, sqlx::FromRow, Serialize)]
pub struct MemberRow {
    pub store_id: Uuid,
    pub subject: String,
    pub role: String,
    pub added_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// How a membership change ended.
#[derive(Debug, Clone)]
pub enum MemberChange {
    /// Done (or already so): the member as it now stands.
    Done(MemberRow),
    /// Removed.
    Removed,
    NoSuchStore,
    NoSuchMember,
    /// It would leave the store without an owner.
    LastOwner,
}

/// Memberships by subject as last read.
#[derive(Debug)]
struct MemberCache {
    entries: Mutex<HashMap<String, Arc<[Membership]>>>,
    /// Bumped on every invalidation: a lookup that started before one does not store its rows.
    generation: AtomicU64,
    /// Whether the catalog's `LISTEN` connection is up; the cache is used only then.
    watching: AtomicBool,
    /// Tells open feeds that memberships may have changed.
    changed: watch::Sender<u64>,
}

/// The membership repository and its cache. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Memberships {
    pool: PgPool,
    cache: Arc<MemberCache>,
    metrics: MemberMetrics,
}

impl Memberships {
    pub fn new(pool: PgPool, metrics: MemberMetrics) -> Self {
        Self {
            pool,
            metrics,
            cache: Arc::new(MemberCache {
                entries: Mutex::default(),
                generation: AtomicU64::new(0),
                watching: AtomicBool::new(false),
                changed: watch::Sender::new(0),
            }),
        }
    }

    /// Empties the cache and tells open feeds.
    pub fn invalidate(&self) {
        let generation = self.cache.generation.fetch_add(1, Ordering::SeqCst) + 1;
        self.cache
            .entries
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clear();
        self.cache.changed.send_replace(generation);
    }

    /// Turns the cache on or off (the catalog watcher's `LISTEN` is up or not); either way it
    /// starts empty.
    pub(super) fn set_watching(&self, watching: bool) {
        self.cache.watching.store(watching, Ordering::SeqCst);
        self.invalidate();
    }

    /// Changes whenever memberships may have changed (here or, through `LISTEN`, elsewhere).
    pub fn changes(&self) -> watch::Receiver<u64> {
        self.cache.changed.subscribe()
    }

    /// The stores `subject` is a member of.
    #[tracing::instrument(skip_all)]
    pub async fn of(&self, subject: &str) -> anyhow::Result<Arc<[Membership]>> {
        let cached = self.cache.watching.load(Ordering::SeqCst);
        if cached {
            let entries = self
                .cache
                .entries
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            if let Some(found) = entries.get(subject) {
                self.metrics.lookups.with_label_values(&["cache"]).inc();
                return Ok(found.clone());
            }
        }
        self.metrics.lookups.with_label_values(&["database"]).inc();
        let generation = self.cache.generation.load(Ordering::SeqCst);
        let rows: Vec<(Uuid, String)> =
            sqlx::query_as("select store_id, role from store_members where subject = $1")
                .bind(subject)
                .fetch_all(&self.pool)
                .await
                .context("reading a caller's memberships")?;
        let found: Arc<[Membership]> = rows
            .into_iter()
            .filter_map(|(store_id, role)| {
                MemberRole::parse(&role).map(|role| Membership { store_id, role })
            })
            .collect();
        if cached {
            let mut entries = self
                .cache
                .entries
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            if self.cache.generation.load(Ordering::SeqCst) == generation {
                if entries.len() >= MAX_CACHED_SUBJECTS {
                    entries.clear();
                }
                entries.insert(subject.to_owned(), found.clone());
            }
        }
        Ok(found)
    }

    /// A store's members ordered by subject, after `after`, at most `limit`.
    pub async fn list(
        &self,
        store: Uuid,
        after: Option<&str>,
        limit: i64,
    ) -> anyhow::Result<Vec<MemberRow>> {
        sqlx::query_as(
            "select * from store_members where store_id = $1 and ($2::text is null or subject > $2)
             order by subject limit $3",
        )
        .bind(store)
        .bind(after)
        .bind(limit)
        .fetch_all(&self.pool)
        .await
        .context("listing a store's members")
    }

    /// Makes `subject` a member of `store` with `role` (added, or its role changed), as
    /// `actor`; the last owner is not demoted.
    #[tracing::instrument(skip_all, fields(store_id = %store))]
    pub async fn put(
        &self,
        store: Uuid,
        subject: &str,
        role: MemberRole,
        actor: &str,
    ) -> anyhow::Result<MemberChange> {
        let mut tx = self
            .pool
            .begin()
            .await
            .context("beginning a member change")?;
        if !lock_store(&mut tx, store).await? {
            return Ok(MemberChange::NoSuchStore);
        }
        let before = member(&mut tx, store, subject).await?;
        if let Some(before) = &before {
            if before.role == role.as_str() {
                return Ok(MemberChange::Done(before.clone()));
            }
            if is_last_owner(&mut tx, before).await? {
                return Ok(MemberChange::LastOwner);
            }
        }
        let after: MemberRow = sqlx::query_as(
            "insert into store_members (store_id, subject, role) values ($1, $2, $3)
             on conflict (store_id, subject) do update set role = $3, updated_at = now()
             returning *",
        )
        .bind(store)
        .bind(subject)
        .bind(role.as_str())
        .fetch_one(&mut *tx)
        .await
        .context("writing a member")?;
        let action = if before.is_some() { "updated" } else { "added" };
        record(
            &mut tx,
            Change::of(store, actor, Entity::Member, subject, action)
                .before(before.as_ref())
                .after(Some(&after)),
        )
        .await?;
        tx.commit().await.context("committing a member change")?;
        self.invalidate();
        Ok(MemberChange::Done(after))
    }

    /// Removes `subject` from `store`, as `actor`; the last owner stays.
    #[tracing::instrument(skip_all, fields(store_id = %store))]
    pub async fn remove(
        &self,
        store: Uuid,
        subject: &str,
        actor: &str,
    ) -> anyhow::Result<MemberChange> {
        let mut tx = self
            .pool
            .begin()
            .await
            .context("beginning a member change")?;
        if !lock_store(&mut tx, store).await? {
            return Ok(MemberChange::NoSuchStore);
        }
        let Some(before) = member(&mut tx, store, subject).await? else {
            return Ok(MemberChange::NoSuchMember);
        };
        if is_last_owner(&mut tx, &before).await? {
            return Ok(MemberChange::LastOwner);
        }
        sqlx::query("delete from store_members where store_id = $1 and subject = $2")
            .bind(store)
            .bind(subject)
            .execute(&mut *tx)
            .await
            .context("removing a member")?;
        record(
            &mut tx,
            Change::of(store, actor, Entity::Member, subject, "removed").before(Some(&before)),
        )
        .await?;
        tx.commit().await.context("committing a member change")?;
        self.invalidate();
        Ok(MemberChange::Removed)
    }
}

/// Adds `subject` as the owner of the store it has just created in `tx`.
pub(super) async fn add_owner(
    tx: &mut sqlx::PgConnection,
    store: Uuid,
    subject: &str,
) -> anyhow::Result<()> {
    let row: MemberRow = sqlx::query_as(
        "insert into store_members (store_id, subject, role) values ($1, $2, 'owner')
         returning *",
    )
    .bind(store)
    .bind(subject)
    .fetch_one(&mut *tx)
    .await
    .context("adding a store's owner")?;
    record(
        tx,
        Change::of(store, subject, Entity::Member, subject, "added").after(Some(&row)),
    )
    .await
}

/// Locks `store`'s row until the transaction ends; false when there is no such store.
async fn lock_store(tx: &mut sqlx::PgConnection, store: Uuid) -> anyhow::Result<bool> {
    let found: Option<i32> = sqlx::query_scalar("select 1 from stores where id = $1 for update")
        .bind(store)
        .fetch_optional(&mut *tx)
        .await
        .context("locking a store")?;
    Ok(found.is_some())
}

async fn member(
    tx: &mut sqlx::PgConnection,
    store: Uuid,
    subject: &str,
) -> anyhow::Result<Option<MemberRow>> {
    sqlx::query_as("select * from store_members where store_id = $1 and subject = $2")
        .bind(store)
        .bind(subject)
        .fetch_optional(&mut *tx)
        .await
        .context("reading a member")
}

/// Whether `member` is the store's only owner (who may neither leave nor become staff).
async fn is_last_owner(tx: &mut sqlx::PgConnection, member: &MemberRow) -> anyhow::Result<bool> {
    if member.role != MemberRole::Owner.as_str() {
        return Ok(false);
    }
    let owners: i64 = sqlx::query_scalar(
        "select count(*) from store_members where store_id = $1 and role = 'owner'",
    )
    .bind(member.store_id)
    .fetch_one(&mut *tx)
    .await
    .context("counting a store's owners")?;
    Ok(owners <= 1)
}
