//! The inventory participant's book: stock per SKU and the reservations that hold it.
//!
//! Units only move between `available`, `reserved` and `committed`: a reservation takes all its
//! units or none, and ends once, released (back to `available`) or committed (gone). Commands
//! the book contradicts come back as `Err(description)`; `Books` records them as
//! anomalies and sends no reply.

use std::collections::{BTreeMap, HashMap};

use order_domain::OrderId;
use order_sagas::messages::{
    CommitStock, ReleaseStock, Reply, ReplyKind, ReservationId, ReserveStock, StockCommitted,
    StockRejected, StockReleased, StockReserved, UnavailableItem,
};

use serde::{Deserialize, Serialize};

use super::ids::{derive, head};

/// The inventory's books as `order-service verify` reads them (I4): what each SKU started with,
/// where its units are now, and every reservation. `order-service simulate` writes it to
/// `APP__SIMULATOR__BOOKS_FILE`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StockLedger {
    /// Units any SKU not in `initial` started with.
    pub default_stock: u64,
    /// Units configured per SKU at start.
    pub initial: BTreeMap<String, u64>,
    /// Where the units of every SKU touched are now.
    pub levels: BTreeMap<String, StockLevel>,
    /// Every reservation, by id.
    pub reservations: Vec<Reservation>,
}

impl StockLedger {
    /// Units `sku` started with.
    pub fn initial(&self, sku: &str) -> u64 {
        self.initial.get(sku).copied().unwrap_or(self.default_stock)
    }
}

/// Units of one SKU by state. `available + reserved + committed` only changes when stock is
/// configured, never through commands.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StockLevel {
    /// Free to reserve.
    pub available: u64,
    /// Held by reservations in [`ReservationState::Reserved`].
    pub reserved: u64,
    /// Gone with committed reservations.
    pub committed: u64,
}

/// Where a reservation stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReservationState {
    Reserved,
    Released,
    Committed,
}

/// One stock reservation, created by a successful `reserve`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reservation {
    pub id: ReservationId,
    pub order_id: OrderId,
    /// Units per SKU (lines of the same SKU added up).
    pub items: BTreeMap<String, u64>,
    pub state: ReservationState,
}

impl Reservation {
    /// Units over all SKUs.
    pub fn units(&self) -> u64 {
        self.items.values().sum()
    }
}

/// Stock and reservations of the simulated inventory participant.
#[derive(Debug, Clone, Default)]
pub(super) struct InventoryBook {
    default_stock: u64,
    /// Units configured per SKU at start.
    initial: BTreeMap<String, u64>,
    stock: BTreeMap<String, StockLevel>,
    reservations: HashMap<ReservationId, Reservation>,
    reservation_by_order: HashMap<OrderId, ReservationId>,
}

impl InventoryBook {
    /// `stock` available per SKU and `default_stock` for any other SKU.
    pub(super) fn new(stock: &HashMap<String, u64>, default_stock: u64) -> Self {
        Self {
            default_stock,
            initial: stock.iter().map(|(k, v)| (k.clone(), *v)).collect(),
            stock: stock
                .iter()
                .map(|(sku, available)| {
                    let level = StockLevel {
                        available: *available,
                        ..StockLevel::default()
                    };
                    (sku.clone(), level)
                })
                .collect(),
            ..Self::default()
        }
    }

    /// The stock of `sku` (an SKU never seen has `default_stock` available).
    pub(super) fn stock(&self, sku: &str) -> StockLevel {
        self.stock.get(sku).copied().unwrap_or(StockLevel {
            available: self.default_stock,
            ..StockLevel::default()
        })
    }

    pub(super) fn reservation(&self, id: &ReservationId) -> Option<&Reservation> {
        self.reservations.get(id)
    }

    pub(super) fn reservation_of(&self, order_id: OrderId) -> Option<&Reservation> {
        self.reservation_by_order
            .get(&order_id)
            .and_then(|id| self.reservations.get(id))
    }

    pub(super) fn reservations(&self) -> impl Iterator<Item = &Reservation> {
        self.reservations.values()
    }

    pub(super) fn ledger(&self) -> StockLedger {
        let mut reservations: Vec<Reservation> = self.reservations.values().cloned().collect();
        reservations.sort_by(|a, b| a.id.cmp(&b.id));
        StockLedger {
            default_stock: self.default_stock,
            initial: self.initial.clone(),
            levels: self.stock.clone(),
            reservations,
        }
    }

    pub(super) fn reserved_units(&self) -> u64 {
        self.stock.values().map(|s| s.reserved).sum()
    }

    pub(super) fn committed_units(&self) -> u64 {
        self.stock.values().map(|s| s.committed).sum()
    }

    fn level(&mut self, sku: &str) -> &mut StockLevel {
        let default = self.default_stock;
        self.stock.entry(sku.to_owned()).or_insert(StockLevel {
            available: default,
            ..StockLevel::default()
        })
    }

    pub(super) fn reserve(&mut self, c: &ReserveStock, out_of_stock: bool) -> Reply {
        let mut wanted: BTreeMap<String, u64> = BTreeMap::new();
        for item in &c.items {
            *wanted.entry(item.sku.as_str().to_owned()).or_default() +=
                u64::from(item.quantity.get());
        }
        let (reason, unavailable): (&str, Vec<UnavailableItem>) = if out_of_stock {
            let all = wanted
                .iter()
                .map(|(sku, requested)| unavailable(sku, *requested, 0))
                .collect();
            ("out of stock (simulated)", all)
        } else {
            let short = wanted
                .iter()
                .filter_map(|(sku, requested)| {
                    let available = self.stock(sku).available;
                    (available < *requested).then(|| unavailable(sku, *requested, available))
                })
                .collect();
            ("insufficient stock", short)
        };
        let (message_id, saga_id, order_id, in_reply_to) = head(c, ReplyKind::StockRejected);
        if !unavailable.is_empty() {
            return StockRejected {
                message_id,
                saga_id,
                order_id,
                in_reply_to,
                reason: reason.to_owned(),
                unavailable,
            }
            .into();
        }
        for (sku, quantity) in &wanted {
            let level = self.level(sku);
            level.available -= quantity;
            level.reserved += quantity;
        }
        let id = ReservationId::new(format!("res-{}", derive(c.message_id, "reservation")));
        self.reservations.insert(
            id.clone(),
            Reservation {
                id: id.clone(),
                order_id: c.order_id,
                items: wanted,
                state: ReservationState::Reserved,
            },
        );
        self.reservation_by_order.insert(c.order_id, id.clone());
        let (message_id, saga_id, order_id, in_reply_to) = head(c, ReplyKind::StockReserved);
        StockReserved {
            message_id,
            saga_id,
            order_id,
            in_reply_to,
            reservation_id: id,
        }
        .into()
    }

    /// Ends a held reservation: its units go from `reserved` back to `available` (released) or
    /// on to `committed`.
    fn settle_reservation(&mut self, id: &ReservationId, released: bool) {
        let Some(reservation) = self.reservations.get_mut(id) else {
            return;
        };
        reservation.state = if released {
            ReservationState::Released
        } else {
            ReservationState::Committed
        };
        let items = reservation.items.clone();
        for (sku, quantity) in &items {
            let level = self.level(sku);
            level.reserved -= quantity;
            if released {
                level.available += quantity;
            } else {
                level.committed += quantity;
            }
        }
    }

    pub(super) fn release(&mut self, c: &ReleaseStock) -> Result<Reply, String> {
        match self.reservations.get(&c.reservation_id).map(|r| r.state) {
            Some(ReservationState::Reserved) => {
                self.settle_reservation(&c.reservation_id, true);
            }
            Some(ReservationState::Released) => {}
            None => {
                // A compensation must be answerable: nothing is held under an unknown id, so
                // "released" is true (a restarted simulator forgot its books, say).
                tracing::warn!(reservation_id = %c.reservation_id, "simulator: release of an unknown reservation");
            }
            Some(ReservationState::Committed) => {
                return Err(format!(
                    "release of committed reservation {}",
                    c.reservation_id
                ));
            }
        }
        let (message_id, saga_id, order_id, in_reply_to) = head(c, ReplyKind::StockReleased);
        Ok(StockReleased {
            message_id,
            saga_id,
            order_id,
            in_reply_to,
        }
        .into())
    }

    pub(super) fn commit(&mut self, c: &CommitStock) -> Result<Reply, String> {
        match self.reservations.get(&c.reservation_id).map(|r| r.state) {
            Some(ReservationState::Reserved) => {
                self.settle_reservation(&c.reservation_id, false);
            }
            Some(ReservationState::Committed) => {}
            Some(ReservationState::Released) => {
                return Err(format!(
                    "commit of released reservation {}",
                    c.reservation_id
                ));
            }
            None => {
                return Err(format!(
                    "commit of unknown reservation {}",
                    c.reservation_id
                ));
            }
        }
        let (message_id, saga_id, order_id, in_reply_to) = head(c, ReplyKind::StockCommitted);
        Ok(StockCommitted {
            message_id,
            saga_id,
            order_id,
            in_reply_to,
        }
        .into())
    }
}

fn unavailable(sku: &str, requested: u64, available: u64) -> UnavailableItem {
    UnavailableItem {
        sku: sku.to_owned(),
        requested: u32::try_from(requested).unwrap_or(u32::MAX),
        available: u32::try_from(available).unwrap_or(u32::MAX),
    }
}
