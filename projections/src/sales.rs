//! Counting sales into `product_sales_daily` and `store_sales_daily`: an order counts as sold
//! on the day it is confirmed ([`Sale`] with sign 1) and is taken back on that same day when it
//! is cancelled later (sign -1); cancellations and rejections raise a store [`Counter`] on the
//! day they happen. A batch adds one sum per sales row, so the rows stay exact whatever the
//! batch size.

use std::collections::{BTreeMap, BTreeSet};

use chrono::NaiveDate;
use uuid::Uuid;

use crate::record::{ProjectionError, Recorded};
use crate::rows::{OrderState, ProductSale, ProductSaleKey, StoreSale, StoreSaleKey};

/// A store counter of `store_sales_daily`.
pub enum Counter {
    Cancellation,
    Rejection,
}

impl Counter {
    /// Raises this counter of the store row `key` (store, day, currency).
    pub fn count_into(
        self,
        key: StoreSaleKey,
        store_sales: &mut BTreeMap<StoreSaleKey, StoreSale>,
    ) {
        let row = store_sales.entry(key).or_default();
        match self {
            Counter::Cancellation => row.cancellations += 1,
            Counter::Rejection => row.rejections += 1,
        }
    }
}

/// An order's lines and total counted as sales of `day` (`sign` 1) or taken back (-1).
pub struct Sale {
    store_id: Uuid,
    day: NaiveDate,
    currency: String,
    sign: i64,
    total_minor: i64,
    /// SKU, name, quantity, revenue.
    lines: Vec<(String, String, i64, i64)>,
}

impl Sale {
    /// The sale of the order as it stands. Each SKU may appear once: the per-order upsert of
    /// `product_sales_daily` could not count one row twice.
    pub fn of(
        o: &OrderState,
        e: &Recorded<'_>,
        day: NaiveDate,
        sign: i64,
    ) -> Result<Sale, ProjectionError> {
        let mut skus = BTreeSet::new();
        let mut lines = Vec::with_capacity(o.row.lines.len());
        for line in o.row.lines.values() {
            if !skus.insert(line.sku.as_str()) {
                return Err(ProjectionError::Inconsistent {
                    order_id: e.order_id,
                    sequence: e.sequence,
                    what: "sells an order with two lines of the same SKU",
                });
            }
            lines.push((
                line.sku.clone(),
                line.name.clone(),
                sign * line.quantity,
                sign * line.line_total_minor,
            ));
        }
        Ok(Sale {
            store_id: o.row.store_id,
            day,
            currency: o.row.currency.clone(),
            sign,
            total_minor: o.row.total_minor,
            lines,
        })
    }

    /// Adds this sale (or take-back) to the day's product and store rows.
    pub fn count_into(
        self,
        product_sales: &mut BTreeMap<ProductSaleKey, ProductSale>,
        store_sales: &mut BTreeMap<StoreSaleKey, StoreSale>,
    ) {
        for (sku, name, quantity, revenue) in self.lines {
            let key = (self.store_id, self.day, sku, self.currency.clone());
            match product_sales.get_mut(&key) {
                Some(p) => {
                    p.name = name;
                    p.quantity += quantity;
                    p.revenue_minor += revenue;
                    p.orders += self.sign;
                }
                None => {
                    product_sales.insert(
                        key,
                        ProductSale {
                            name,
                            quantity,
                            revenue_minor: revenue,
                            orders: self.sign,
                        },
                    );
                }
            }
        }
        let store = store_sales
            .entry((self.store_id, self.day, self.currency))
            .or_default();
        store.orders += self.sign;
        store.revenue_minor += self.sign * self.total_minor;
    }
}
