//! **I4**: stock is conserved, and the inventory's books agree with the sagas.
//!
//! Given the inventory participant's books (the simulator's [`StockLedger`]):
//! * every SKU's units are all accounted for: `available + reserved + committed` is what it
//!   started with, and `reserved` / `committed` are the units of its reservations in that state;
//! * every settled saga's stock is what the books say: a held reservation is reserved (for that
//!   order, with the order's items), a committed one committed, a released one released, and a
//!   saga that holds none has no reservation left reserved or committed;
//! * no reservation holds or took stock for an order whose saga does not know of it.
//!
//! Sagas still at work, or parked as needing attention, are skipped (I1 judges them), but their
//! reservations are not counted as held for nobody.
//!
//! The books must be those of a stopped simulator (or a quiet system): the log and the books are
//! read at different moments, and a saga that moves on in between would look at odds with them.

use std::collections::{BTreeMap, HashMap, HashSet};

use order_sagas::{SagaStatus, Stock};
use uuid::Uuid;

use super::fold::{Orders, Sagas};
use super::report::Report;
use crate::simulator::{Reservation, ReservationState, StockLedger};

const I4: &str = "I4";

/// Judges the books against the folded log.
pub fn judge(orders: &Orders, sagas: &Sagas, ledger: &StockLedger, report: &mut Report) {
    conservation(ledger, report);
    let by_id: HashMap<&str, &Reservation> = ledger
        .reservations
        .iter()
        .map(|r| (r.id.as_str(), r))
        .collect();
    let mut by_order: HashMap<Uuid, Vec<&Reservation>> = HashMap::new();
    for r in &ledger.reservations {
        by_order.entry(r.order_id.as_uuid()).or_default().push(r);
    }
    // orders whose reservations a saga accounts for (or will: still at work)
    let mut known: HashSet<Uuid> = HashSet::new();
    for (id, saga) in sagas.iter().filter(|(_, s)| s.is_started()) {
        known.insert(*id);
        if saga.deadline().is_some() || saga.status() == Some(SagaStatus::NeedsAttention) {
            continue;
        }
        let stock = saga.stock().cloned().unwrap_or_default();
        let (wanted, reservation) = match &stock {
            Stock::None => {
                for r in by_order.get(id).into_iter().flatten() {
                    if r.state != ReservationState::Released {
                        report.broken(
                            I4,
                            id,
                            format!(
                                "its saga holds no stock, but reservation {} is {:?} ({} units)",
                                r.id,
                                r.state,
                                r.units()
                            ),
                        );
                    }
                }
                continue;
            }
            Stock::Held(r) => (ReservationState::Reserved, r),
            Stock::Committed(r) => (ReservationState::Committed, r),
            Stock::Released(r) => (ReservationState::Released, r),
        };
        let Some(found) = by_id.get(reservation.as_str()) else {
            report.broken(
                I4,
                id,
                format!("its saga says {stock:?}, the inventory has no such reservation"),
            );
            continue;
        };
        let mut wrong = Vec::new();
        if found.order_id.as_uuid() != *id {
            wrong.push(format!("it is order {}'s", found.order_id));
        }
        if found.state != wanted {
            wrong.push(format!("it is {:?}", found.state));
        }
        if let Some(order) = orders.get(id) {
            let mut items: BTreeMap<String, u64> = BTreeMap::new();
            for line in order.lines() {
                *items.entry(line.sku.as_str().to_owned()).or_default() += u64::from(line.quantity);
            }
            if items != found.items {
                wrong.push(format!(
                    "it holds {:?}, the order has {items:?}",
                    found.items
                ));
            }
        }
        if !wrong.is_empty() {
            report.broken(
                I4,
                id,
                format!("its saga says {stock:?}, but {}", wrong.join("; ")),
            );
        }
    }
    for r in &ledger.reservations {
        let order = r.order_id.as_uuid();
        if r.state != ReservationState::Released && !known.contains(&order) {
            report.broken(
                I4,
                &order,
                format!(
                    "reservation {} is {:?} ({} units) for an order without a saga",
                    r.id,
                    r.state,
                    r.units()
                ),
            );
        }
    }
}

/// Every SKU's units add up to what it started with, and to its reservations.
fn conservation(ledger: &StockLedger, report: &mut Report) {
    let mut held: BTreeMap<(&str, ReservationState), u64> = BTreeMap::new();
    for r in &ledger.reservations {
        for (sku, units) in &r.items {
            *held.entry((sku.as_str(), r.state)).or_default() += units;
        }
    }
    for (sku, level) in &ledger.levels {
        let subject = format!("sku {sku}");
        let total = level.available + level.reserved + level.committed;
        let initial = ledger.initial(sku);
        if total != initial {
            report.broken(
                I4,
                &subject,
                format!(
                    "{} available + {} reserved + {} committed = {total} units, it started with {initial}",
                    level.available, level.reserved, level.committed
                ),
            );
        }
        for (state, counted) in [
            (ReservationState::Reserved, level.reserved),
            (ReservationState::Committed, level.committed),
        ] {
            let by_reservations = held.get(&(sku.as_str(), state)).copied().unwrap_or(0);
            if by_reservations != counted {
                report.broken(
                    I4,
                    &subject,
                    format!(
                        "{counted} units counted {state:?}, its reservations in that state hold {by_reservations}"
                    ),
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::simulator::StockLevel;
    use order_domain::OrderId;
    use order_sagas::messages::ReservationId;

    fn reservation(order: u128, units: u64, state: ReservationState) -> Reservation {
        Reservation {
            id: ReservationId::new(format!("res-{order}")),
            order_id: OrderId::from_uuid(Uuid::from_u128(order)),
            items: BTreeMap::from([("TEA".to_owned(), units)]),
            state,
        }
    }

    fn ledger(levels: StockLevel, reservations: Vec<Reservation>) -> StockLedger {
        StockLedger {
            default_stock: 100,
            initial: BTreeMap::new(),
            levels: BTreeMap::from([("TEA".to_owned(), levels)]),
            reservations,
        }
    }

    fn violations(ledger: &StockLedger) -> Vec<String> {
        let mut report = Report::default();
        judge(&Orders::new(), &Sagas::new(), ledger, &mut report);
        report.violations.iter().map(ToString::to_string).collect()
    }

    #[test]
    fn units_that_add_up_hold() {
        let books = ledger(
            StockLevel {
                available: 100,
                reserved: 0,
                committed: 0,
            },
            vec![reservation(1, 2, ReservationState::Released)],
        );
        assert_eq!(violations(&books), Vec::<String>::new());
    }

    #[test]
    fn units_gone_astray_and_stock_held_for_nobody_are_named() {
        let lost = ledger(
            StockLevel {
                available: 95,
                reserved: 0,
                committed: 0,
            },
            vec![],
        );
        let said = violations(&lost);
        assert_eq!(said.len(), 1, "{said:?}");
        assert!(said[0].starts_with("I4 sku TEA"), "{said:?}");
        assert!(said[0].contains("started with 100"), "{said:?}");

        let orphan = ledger(
            StockLevel {
                available: 98,
                reserved: 2,
                committed: 0,
            },
            vec![reservation(7, 2, ReservationState::Reserved)],
        );
        let said = violations(&orphan);
        assert_eq!(said.len(), 1, "{said:?}");
        assert!(said[0].contains("without a saga"), "{said:?}");
        assert!(
            said[0].contains(&Uuid::from_u128(7).to_string()),
            "{said:?}"
        );
    }
}
