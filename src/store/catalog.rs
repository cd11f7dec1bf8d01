//! The catalog repository: stores and products in plain tables, and the price lookups order
//! commands need. Catalog POSTs are idempotent by identity: a store's id derives from the
//! `Idempotency-Key`, a product's from its SKU.
//!
//! Price lookups are served from memory while [`CatalogRepository::watch_changes`] listens for
//! `catalog_changed` (a trigger on `products`, migration 0007): any process's catalog write
//! empties every process's cache, so an order command never uses a price older than the
//! latest committed change it could have seen, give or take the notification's delivery.
//! Without a live `LISTEN` connection (not started, or lost) every lookup reads the table.
//! Whether a store is closed (new orders and placements check it) is cached the same way, and
//! so are memberships (`members.rs`): one listener keeps all three.
//!
//! Every write of a store or product records who changed what in its transaction
//! (`changes.rs`); a retired product stays in the table (orders and reports refer to it) and
//! is priced as not sold.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context as _;
use chrono::{DateTime, Utc};
use order_domain::{CatalogProduct, Currency, Money, PriceList, ProductName, Sku, StoreId};
use serde::Serialize;
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::changes::{record, Change, Entity};
use super::members::{add_owner, MemberMetrics, Memberships};

/// A store as stored.
#[derive(Debug, Clone, sqlx::FromRow, Serialize)]
pub struct StoreRow {
    pub id: Uuid,
    pub name: String,
    pub currency: String,
    pub created_at: DateTime<Utc>,
    pub contact_email: Option<String>,
    /// A closed store takes no new order and no placement.
    pub open: bool,
    pub updated_at: DateTime<Utc>,
}

/// Changes to a store; `None` leaves a field as it is.
#[derive(Debug, Clone, Default)]
pub struct StoreChanges {
    pub name: Option<String>,
    pub contact_email: Option<String>,
    pub open: Option<bool>,
}

/// Which stores a caller is shown.
#[derive(Debug, Clone, Default)]
pub struct StoreFilter {
    /// Every store.
    pub all: bool,
    /// Open stores.
    pub open: bool,
    /// These stores, open or closed.
    pub ids: Vec<Uuid>,
}

/// Which of a store's products a caller is shown.
#[derive(Debug, Clone, Copy, Default)]
pub struct ProductFilter {
    /// Retired products too.
    pub include_retired: bool,
    /// Only products that can be ordered (active, not retired).
    pub orderable_only: bool,
}

/// A product as stored.
#[derive(Debug, Clone, sqlx::FromRow, Serialize)]
pub struct ProductRow {
    pub store_id: Uuid,
    pub sku: String,
    pub name: String,
    pub unit_price_minor: i64,
    pub currency: String,
    pub active: bool,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// When the product was retired: no longer orderable, listed only when asked for.
    pub retired_at: Option<DateTime<Utc>>,
}

/// A new product, already validated.
#[derive(Debug, Clone)]
pub struct NewProduct {
    pub sku: Sku,
    pub name: ProductName,
    pub unit_price: Money,
    pub active: bool,
}

/// Changes to a product; `None` leaves a field as it is.
#[derive(Debug, Clone, Default)]
pub struct ProductChanges {
    pub name: Option<ProductName>,
    pub unit_price_minor: Option<i64>,
    pub active: Option<bool>,
    /// `Some(false)` brings a retired product back; `Some(true)` retires it.
    pub retired: Option<bool>,
}

/// Outcome of an insert keyed by natural identity.
#[derive(Debug, Clone)]
pub enum Inserted<T> {
    Created(T),
    /// A row with this identity already exists (returned as it is).
    Existing(T),
}

/// The channel of catalog changes (migration 0007).
const CHANNEL: &str = "catalog_changed";
/// How often the LISTEN connection must prove it is alive, and how long it has to answer.
const LISTEN_PING: Duration = Duration::from_secs(10);
const LISTEN_PING_TIMEOUT: Duration = Duration::from_secs(5);

/// The `application_name` of each process's catalog `LISTEN` connection, for operators
/// (`pg_stat_activity`) and tests to find it by.
pub const LISTENER_APPLICATION_NAME: &str = "order-service catalog listener";

/// Turns the price cache off (and empties it) when dropped: however
/// [`CatalogRepository::watch_changes`] ends, nothing serves prices from memory that no one
/// keeps up to date any more.
struct CacheOff<'a>(&'a PriceCache, &'a Memberships);

impl Drop for CacheOff<'_> {
    fn drop(&mut self) {
        self.0.watching.store(false, Ordering::SeqCst);
        self.0.generation.fetch_add(1, Ordering::SeqCst);
        // (may run during a panic: a poisoned lock is cleared all the same, never unwrapped)
        self.0
            .entries
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clear();
        self.0
            .closed
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clear();
        self.1.set_watching(false);
    }
}

#[derive(Debug, Clone)]
pub struct CatalogRepository {
    pool: PgPool,
    cache: Arc<PriceCache>,
    members: Memberships,
}

/// Products by (store, SKU) as last read. Only products that exist: SKUs a store does not
/// sell are asked again each time, so clients cannot grow the cache beyond the catalog.
#[derive(Debug, Default)]
struct PriceCache {
    entries: Mutex<HashMap<(Uuid, Sku), CatalogProduct>>,
    /// Whether each store looked up is closed (stores that exist only).
    closed: Mutex<HashMap<Uuid, bool>>,
    /// Bumped on every invalidation: a lookup that started before one does not store its
    /// (possibly older) rows.
    generation: AtomicU64,
    /// Whether a `LISTEN catalog_changed` connection is up; the cache is used only then.
    watching: AtomicBool,
}

impl PriceCache {
    fn invalidate(&self) {
        self.generation.fetch_add(1, Ordering::SeqCst);
        self.entries.lock().expect("not poisoned").clear();
        self.closed.lock().expect("not poisoned").clear();
    }
}

impl CatalogRepository {
    pub fn new(pool: PgPool, member_metrics: MemberMetrics) -> Self {
        Self {
            members: Memberships::new(pool.clone(), member_metrics),
            pool,
            cache: Arc::default(),
        }
    }

    /// The stores' memberships, whose cache this repository's watcher keeps.
    pub fn members(&self) -> &Memberships {
        &self.members
    }

    /// Empties every cache this repository keeps after a write of this process committed.
    fn invalidate(&self) {
        self.cache.invalidate();
        self.members.invalidate();
    }

    /// Whether `store` is closed (an unknown store is not: the order's own checks refuse it).
    #[tracing::instrument(skip_all, fields(store_id = %store))]
    pub async fn store_closed(&self, store: StoreId) -> anyhow::Result<bool> {
        let id = store.as_uuid();
        let cached = self.cache.watching.load(Ordering::SeqCst);
        if cached {
            if let Some(closed) = self.cache.closed.lock().expect("not poisoned").get(&id) {
                return Ok(*closed);
            }
        }
        let generation = self.cache.generation.load(Ordering::SeqCst);
        let open: Option<bool> = sqlx::query_scalar("select open from stores where id = $1")
            .bind(id)
            .fetch_optional(&self.pool)
            .await
            .context("reading whether a store is open")?;
        let Some(open) = open else { return Ok(false) };
        if cached {
            let mut closed = self.cache.closed.lock().expect("not poisoned");
            if self.cache.generation.load(Ordering::SeqCst) == generation {
                closed.insert(id, !open);
            }
        }
        Ok(!open)
    }

    /// Name, price and status of each SKU the store sells; SKUs it does not know are absent.
    #[tracing::instrument(skip_all, fields(store_id = %store))]
    pub async fn prices(&self, store: StoreId, skus: &[Sku]) -> anyhow::Result<PriceList> {
        let store_id = store.as_uuid();
        let mut prices = PriceList::new();
        let cached = self.cache.watching.load(Ordering::SeqCst);
        let mut missing: Vec<&Sku> = Vec::new();
        if cached {
            let entries = self.cache.entries.lock().expect("not poisoned");
            for sku in skus {
                match entries.get(&(store_id, sku.clone())) {
                    Some(product) => prices.insert(sku.clone(), product.clone()),
                    None => missing.push(sku),
                }
            }
        } else {
            missing.extend(skus);
        }
        if missing.is_empty() {
            return Ok(prices);
        }
        let generation = self.cache.generation.load(Ordering::SeqCst);
        let wanted: Vec<&str> = missing.iter().map(|s| s.as_str()).collect();
        let rows: Vec<ProductRow> =
            sqlx::query_as("select * from products where store_id = $1 and sku = any($2)")
                .bind(store_id)
                .bind(&wanted)
                .fetch_all(&self.pool)
                .await
                .context("looking up catalog prices")?;
        let mut found: HashMap<Sku, CatalogProduct> = HashMap::new();
        for row in rows {
            // Rows were validated on the way in; a row that no longer parses is treated as
            // not sold rather than failing the order.
            let (Ok(sku), Ok(name), Ok(currency)) = (
                Sku::parse(row.sku),
                ProductName::parse(row.name),
                Currency::parse(&row.currency),
            ) else {
                continue;
            };
            let Ok(unit_price) = Money::new(row.unit_price_minor, currency) else {
                continue;
            };
            found.insert(
                sku,
                CatalogProduct {
                    name,
                    unit_price,
                    active: row.active && row.retired_at.is_none(),
                },
            );
        }
        if cached {
            let mut entries = self.cache.entries.lock().expect("not poisoned");
            if self.cache.generation.load(Ordering::SeqCst) == generation {
                for (sku, product) in &found {
                    entries.insert((store_id, sku.clone()), product.clone());
                }
            }
        }
        for (sku, product) in found {
            prices.insert(sku, product);
        }
        Ok(prices)
    }

    /// Keeps the price cache usable until `shutdown` is cancelled: `LISTEN catalog_changed` on
    /// a connection of its own (named [`LISTENER_APPLICATION_NAME`]) and empty the cache on
    /// every notification. A lost connection ends it with the error (its supervisor starts it
    /// again). From the moment it ends, however it ends (a panic too), until it listens again,
    /// the cache is off (and emptied), so a missed notification can never leave a stale price
    /// in use: prices are read from the table meanwhile.
    pub async fn watch_changes(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        let _off = CacheOff(&self.cache, &self.members);
        // one connection, held for as long as this listens
        let mut listener = super::named_listener(&self.pool, LISTENER_APPLICATION_NAME).await?;
        listener.listen(CHANNEL).await?;
        // anything cached before this moment may have missed a notification
        self.cache.invalidate();
        self.cache.watching.store(true, Ordering::SeqCst);
        self.members.set_watching(true);
        let mut ping = tokio::time::interval(LISTEN_PING);
        ping.tick().await;
        loop {
            tokio::select! {
                n = listener.try_recv() => match n? {
                    Some(_) => self.invalidate(),
                    // the connection dropped (PgListener would reconnect silently): start over
                    None => anyhow::bail!("the catalog's LISTEN connection closed"),
                },
                // A connection that died without a word (host lost, failover) would wait
                // forever for notifications that go elsewhere: prove it alive now and then.
                _ = ping.tick() => {
                    tokio::time::timeout(LISTEN_PING_TIMEOUT, sqlx::query("select 1").execute(&mut listener))
                        .await
                        .context("the catalog's LISTEN connection did not answer a ping")??;
                }
                () = shutdown.cancelled() => return Ok(()),
            }
        }
    }

    /// Opens store `id`, as `actor`; with `owner`, that subject becomes its owner member, in
    /// the same transaction. An existing store is answered as it is, unchanged.
    #[tracing::instrument(skip_all, fields(store_id = %id))]
    pub async fn create_store(
        &self,
        id: Uuid,
        name: &str,
        currency: Currency,
        owner: Option<&str>,
        actor: &str,
    ) -> anyhow::Result<Inserted<StoreRow>> {
        let mut tx = self
            .pool
            .begin()
            .await
            .context("beginning a store's opening")?;
        let created: Option<StoreRow> = sqlx::query_as(
            "insert into stores (id, name, currency) values ($1, $2, $3)
             on conflict (id) do nothing returning *",
        )
        .bind(id)
        .bind(name)
        .bind(currency.as_str())
        .fetch_optional(&mut *tx)
        .await
        .context("inserting a store")?;
        let Some(row) = created else {
            drop(tx);
            return Ok(Inserted::Existing(
                self.store(id)
                    .await?
                    .context("store vanished after a conflicting insert")?,
            ));
        };
        let key = id.to_string();
        record(
            &mut tx,
            Change::of(id, actor, Entity::Store, &key, "created").after(Some(&row)),
        )
        .await?;
        if let Some(owner) = owner {
            add_owner(&mut tx, id, owner).await?;
        }
        tx.commit().await.context("committing a store's opening")?;
        self.invalidate();
        Ok(Inserted::Created(row))
    }

    /// Applies `changes` to store `id`, as `actor`; `None` when there is no such store.
    #[tracing::instrument(skip_all, fields(store_id = %id))]
    pub async fn update_store(
        &self,
        id: Uuid,
        changes: &StoreChanges,
        actor: &str,
    ) -> anyhow::Result<Option<StoreRow>> {
        let mut tx = self
            .pool
            .begin()
            .await
            .context("beginning a store change")?;
        let before: Option<StoreRow> =
            sqlx::query_as("select * from stores where id = $1 for update")
                .bind(id)
                .fetch_optional(&mut *tx)
                .await
                .context("reading a store to change")?;
        let Some(before) = before else {
            return Ok(None);
        };
        let after: StoreRow = sqlx::query_as(
            "update stores set
                 name = coalesce($2, name),
                 contact_email = coalesce($3, contact_email),
                 open = coalesce($4, open),
                 updated_at = now()
             where id = $1
             returning *",
        )
        .bind(id)
        .bind(changes.name.as_deref())
        .bind(changes.contact_email.as_deref())
        .bind(changes.open)
        .fetch_one(&mut *tx)
        .await
        .context("updating a store")?;
        let unchanged = (&before.name, &before.contact_email, before.open)
            == (&after.name, &after.contact_email, after.open);
        if unchanged {
            return Ok(Some(before));
        }
        let key = id.to_string();
        record(
            &mut tx,
            Change::of(id, actor, Entity::Store, &key, "updated")
                .before(Some(&before))
                .after(Some(&after)),
        )
        .await?;
        tx.commit().await.context("committing a store change")?;
        self.invalidate();
        Ok(Some(after))
    }

    pub async fn store(&self, id: Uuid) -> anyhow::Result<Option<StoreRow>> {
        sqlx::query_as("select * from stores where id = $1")
            .bind(id)
            .fetch_optional(&self.pool)
            .await
            .context("reading a store")
    }

    /// The stores `filter` shows, ordered by id, after `after`, at most `limit`.
    pub async fn stores(
        &self,
        filter: &StoreFilter,
        after: Option<Uuid>,
        limit: i64,
    ) -> anyhow::Result<Vec<StoreRow>> {
        sqlx::query_as(
            "select * from stores
              where ($1::uuid is null or id > $1)
                and ($3 or ($4 and open) or id = any($5))
              order by id limit $2",
        )
        .bind(after)
        .bind(limit)
        .bind(filter.all)
        .bind(filter.open)
        .bind(&filter.ids)
        .fetch_all(&self.pool)
        .await
        .context("listing stores")
    }

    /// Adds a product, as `actor`.
    #[tracing::instrument(skip_all, fields(store_id = %store))]
    pub async fn create_product(
        &self,
        store: Uuid,
        p: &NewProduct,
        actor: &str,
    ) -> anyhow::Result<Inserted<ProductRow>> {
        let mut tx = self
            .pool
            .begin()
            .await
            .context("beginning a product's creation")?;
        let created: Option<ProductRow> = sqlx::query_as(
            "insert into products (store_id, sku, name, unit_price_minor, currency, active)
             values ($1, $2, $3, $4, $5, $6)
             on conflict (store_id, sku) do nothing returning *",
        )
        .bind(store)
        .bind(p.sku.as_str())
        .bind(p.name.as_str())
        .bind(p.unit_price.amount_minor())
        .bind(p.unit_price.currency().as_str())
        .bind(p.active)
        .fetch_optional(&mut *tx)
        .await
        .context("inserting a product")?;
        let Some(row) = created else {
            drop(tx);
            return Ok(Inserted::Existing(
                self.product(store, &p.sku)
                    .await?
                    .context("product vanished after a conflicting insert")?,
            ));
        };
        record(
            &mut tx,
            Change::of(store, actor, Entity::Product, p.sku.as_str(), "created").after(Some(&row)),
        )
        .await?;
        tx.commit()
            .await
            .context("committing a product's creation")?;
        self.invalidate();
        Ok(Inserted::Created(row))
    }

    pub async fn product(&self, store: Uuid, sku: &Sku) -> anyhow::Result<Option<ProductRow>> {
        sqlx::query_as("select * from products where store_id = $1 and sku = $2")
            .bind(store)
            .bind(sku.as_str())
            .fetch_optional(&self.pool)
            .await
            .context("reading a product")
    }

    /// A store's products that `filter` shows, ordered by SKU, after `after`, at most `limit`.
    pub async fn products(
        &self,
        store: Uuid,
        filter: ProductFilter,
        after: Option<&str>,
        limit: i64,
    ) -> anyhow::Result<Vec<ProductRow>> {
        sqlx::query_as(
            "select * from products where store_id = $1 and ($2::text is null or sku > $2)
                and ($4 or retired_at is null)
                and (not $5 or (active and retired_at is null))
             order by sku limit $3",
        )
        .bind(store)
        .bind(after)
        .bind(limit)
        .bind(filter.include_retired)
        .bind(filter.orderable_only)
        .fetch_all(&self.pool)
        .await
        .context("listing products")
    }

    /// Applies `changes`, as `actor`; `None` when the product does not exist.
    #[tracing::instrument(skip_all, fields(store_id = %store))]
    pub async fn update_product(
        &self,
        store: Uuid,
        sku: &Sku,
        changes: &ProductChanges,
        actor: &str,
    ) -> anyhow::Result<Option<ProductRow>> {
        let mut tx = self
            .pool
            .begin()
            .await
            .context("beginning a product change")?;
        let Some(before) = product_for_update(&mut tx, store, sku).await? else {
            return Ok(None);
        };
        let after: ProductRow = sqlx::query_as(
            "update products set
                 name = coalesce($3, name),
                 unit_price_minor = coalesce($4, unit_price_minor),
                 active = coalesce($5, active),
                 retired_at = case when $6 then coalesce(retired_at, now())
                                   when not $6 then null
                                   else retired_at end,
                 updated_at = now()
             where store_id = $1 and sku = $2
             returning *",
        )
        .bind(store)
        .bind(sku.as_str())
        .bind(changes.name.as_ref().map(ProductName::as_str))
        .bind(changes.unit_price_minor)
        .bind(changes.active)
        .bind(changes.retired)
        .fetch_one(&mut *tx)
        .await
        .context("updating a product")?;
        let unchanged = (
            &before.name,
            before.unit_price_minor,
            before.active,
            before.retired_at,
        ) == (
            &after.name,
            after.unit_price_minor,
            after.active,
            after.retired_at,
        );
        if unchanged {
            return Ok(Some(before));
        }
        // what the change log calls it: coming back or going away says more than "updated"
        let action = match (before.retired_at.is_some(), after.retired_at.is_some()) {
            (true, false) => "reinstated",
            (false, true) => "retired",
            _ => "updated",
        };
        record(
            &mut tx,
            Change::of(store, actor, Entity::Product, sku.as_str(), action)
                .before(Some(&before))
                .after(Some(&after)),
        )
        .await?;
        tx.commit().await.context("committing a product change")?;
        self.invalidate();
        Ok(Some(after))
    }

    /// Retires a product, as `actor`: no longer orderable, listed only when asked for; orders
    /// that hold it keep their lines. Retiring a retired product changes nothing. `None` when
    /// the product does not exist.
    #[tracing::instrument(skip_all, fields(store_id = %store))]
    pub async fn retire_product(
        &self,
        store: Uuid,
        sku: &Sku,
        actor: &str,
    ) -> anyhow::Result<Option<ProductRow>> {
        let mut tx = self
            .pool
            .begin()
            .await
            .context("beginning a product's retirement")?;
        let Some(before) = product_for_update(&mut tx, store, sku).await? else {
            return Ok(None);
        };
        if before.retired_at.is_some() {
            return Ok(Some(before));
        }
        let after: ProductRow = sqlx::query_as(
            "update products set retired_at = now(), updated_at = now()
             where store_id = $1 and sku = $2 returning *",
        )
        .bind(store)
        .bind(sku.as_str())
        .fetch_one(&mut *tx)
        .await
        .context("retiring a product")?;
        record(
            &mut tx,
            Change::of(store, actor, Entity::Product, sku.as_str(), "retired")
                .before(Some(&before))
                .after(Some(&after)),
        )
        .await?;
        tx.commit()
            .await
            .context("committing a product's retirement")?;
        self.invalidate();
        Ok(Some(after))
    }
}

/// A product, locked until the transaction ends.
async fn product_for_update(
    tx: &mut sqlx::PgConnection,
    store: Uuid,
    sku: &Sku,
) -> anyhow::Result<Option<ProductRow>> {
    sqlx::query_as("select * from products where store_id = $1 and sku = $2 for update")
        .bind(store)
        .bind(sku.as_str())
        .fetch_optional(&mut *tx)
        .await
        .context("reading a product to change")
}
