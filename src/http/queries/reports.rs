//! The sales reports' representations (DESIGN §9): what `productSalesReport` and
//! `salesSummary` answer, who may read them, and the product-sales report as CSV.
//!
//! The CSV is RFC 4180 as spreadsheets read it: a header row, `\r\n` after every row, a field
//! quoted only when it holds a comma, a quote or a line break, numbers as plain integers; and a
//! text field that a spreadsheet would run as a formula is defused first.

use anyhow::Context as _;
use poem_openapi::payload::{Json, PlainText};
use poem_openapi::types::Example;
use poem_openapi::{ApiResponse, Enum, Object, ResponseContent};
use uuid::Uuid;

use crate::http::dates::Day;
use crate::http::example_data as x;

use crate::http::auth::{Principal, Role};
use crate::http::problem::ApiError;
use crate::http::security::sees_every_order;

/// The columns of the product-sales CSV, in order (also its header row).
const PRODUCT_SALES_COLUMNS: [&str; 7] = [
    "store_id",
    "sku",
    "name",
    "currency",
    "quantity",
    "revenue_minor",
    "orders",
];

/// How the product-sales report is ranked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Enum)]
#[oai(rename_all = "snake_case")]
pub enum SalesSort {
    /// Revenue, then quantity, descending.
    Revenue,
    /// Quantity, then revenue, descending.
    Quantity,
}

/// One product of one store over the report's days.
#[derive(Debug, Clone, Object)]
#[oai(example)]
pub struct ProductSalesView {
    /// The store that sold it.
    pub store_id: Uuid,
    /// The product's SKU.
    pub sku: String,
    /// The product's name on the latest day it sold.
    pub name: String,
    /// ISO 4217 code of `revenue_minor`, e.g. `EUR`; a product sold in two currencies has a
    /// row for each.
    pub currency: String,
    /// Units sold.
    pub quantity: i64,
    /// Revenue of those units, in minor units of `currency` (cents: `125000` is 1 250.00 EUR).
    pub revenue_minor: i64,
    /// Orders that contained the product.
    pub orders: i64,
}

/// Units and revenue per product of confirmed, not cancelled, orders.
#[derive(Debug, Clone, Object)]
#[oai(example)]
pub struct ProductSalesReport {
    /// First day, inclusive (UTC).
    pub from: Day,
    /// Last day, inclusive (UTC).
    pub to: Day,
    /// The store reported on; absent when the report covers every store.
    #[oai(skip_serializing_if_is_none)]
    pub store_id: Option<Uuid>,
    /// How `items` is ranked.
    pub sort: SalesSort,
    /// One row per product, store and currency, best first; empty when nothing sold.
    pub items: Vec<ProductSalesView>,
}

/// The period a sales summary adds up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Enum)]
#[oai(rename_all = "snake_case")]
pub enum Granularity {
    Day,
    /// ISO weeks, Monday to Sunday.
    Week,
    Month,
}

/// Sales of one period in one currency.
#[derive(Debug, Clone, Object)]
#[oai(example)]
pub struct SalesPeriodView {
    /// First day of the period: the day, the week's Monday, the month's 1st.
    pub period_start: Day,
    /// ISO 4217 code of the amounts of this row, e.g. `EUR`; one row per currency sold in.
    pub currency: String,
    /// Orders confirmed in the period and not cancelled since.
    pub orders: i64,
    /// Total of those orders, in minor units of `currency` (cents).
    pub revenue_minor: i64,
    /// `revenue_minor / orders`, rounded toward zero; 0 without orders.
    pub average_order_value_minor: i64,
    /// Orders cancelled in the period.
    pub cancellations: i64,
    /// Orders rejected in the period.
    pub rejections: i64,
}

/// Orders, revenue, average order value, cancellations and rejections per period.
#[derive(Debug, Clone, Object)]
#[oai(example)]
pub struct SalesSummaryReport {
    /// The length of each period.
    pub granularity: Granularity,
    /// First day reported on, inclusive (UTC); absent when the request set no `from`.
    #[oai(skip_serializing_if_is_none)]
    pub from: Option<Day>,
    /// Last day reported on, inclusive (UTC); absent when the request set no `to`.
    #[oai(skip_serializing_if_is_none)]
    pub to: Option<Day>,
    /// The store reported on; absent when the report covers every store.
    #[oai(skip_serializing_if_is_none)]
    pub store_id: Option<Uuid>,
    /// Oldest period first, then by currency; periods without any activity are left out.
    pub items: Vec<SalesPeriodView>,
}

/// The product-sales report in the media type asked for.
#[derive(ResponseContent)]
pub enum ProductSalesContent {
    Json(Json<ProductSalesReport>),
    /// Header row `store_id,sku,name,currency,quantity,revenue_minor,orders`, then one row per
    /// product (RFC 4180).
    #[oai(content_type = "text/csv; charset=utf-8")]
    Csv(PlainText<String>),
}

/// Answer of `productSalesReport`.
#[derive(ApiResponse)]
pub enum ProductSalesResponse {
    /// The report: JSON, or CSV with `Accept: text/csv`.
    #[oai(status = 200)]
    Ok(ProductSalesContent),
}

/// Answer of `salesSummary`.
#[derive(ApiResponse)]
pub enum SalesSummaryResponse {
    /// The summary.
    #[oai(status = 200)]
    Ok(Json<SalesSummaryReport>),
}

/// Analysts, admins and services read every report; staff and members only their own stores',
/// one store at a time; customers none.
pub(super) fn authorize_report(p: &Principal, store_id: Option<Uuid>) -> Result<(), ApiError> {
    if sees_every_order(p) {
        return Ok(());
    }
    if !(p.has(Role::Staff) || p.has(Role::Service) || p.has(Role::Merchant)) {
        return Err(ApiError::forbidden(
            "reports are for analysts, admins, services and store staff",
        ));
    }
    match store_id {
        Some(store) if p.can_access_store(store) => Ok(()),
        Some(_) => Err(ApiError::forbidden(
            "staff read the reports of their own stores only",
        )),
        None => Err(ApiError::forbidden(
            "staff read the reports of one of their stores: pass its store_id",
        )),
    }
}

/// A text field with spreadsheet formulas defused: a field starting with `=`, `+`, `-`, `@`,
/// tab or CR gets a leading `'` (OWASP "CSV injection"). Quoting is the CSV writer's.
fn defused(raw: &str) -> String {
    if raw.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        format!("'{raw}")
    } else {
        raw.to_owned()
    }
}

/// The product-sales report as CSV (see the module docs for the dialect).
pub(super) fn product_sales_csv(rows: &[ProductSalesView]) -> anyhow::Result<String> {
    let mut csv = csv::WriterBuilder::new()
        .terminator(csv::Terminator::CRLF)
        .quote_style(csv::QuoteStyle::Necessary)
        .from_writer(Vec::new());
    csv.write_record(PRODUCT_SALES_COLUMNS)
        .context("writing the CSV header")?;
    for r in rows {
        csv.write_record([
            r.store_id.to_string(),
            defused(&r.sku),
            defused(&r.name),
            defused(&r.currency),
            r.quantity.to_string(),
            r.revenue_minor.to_string(),
            r.orders.to_string(),
        ])
        .context("writing a CSV row")?;
    }
    let bytes = csv
        .into_inner()
        .map_err(csv::IntoInnerError::into_error)
        .context("flushing the CSV")?;
    String::from_utf8(bytes).context("the CSV of UTF-8 fields is UTF-8")
}

// ---- examples (the story of `example_data`) -------------------------------------------------

fn day(d: u32) -> Day {
    Day(chrono::NaiveDate::from_ymd_opt(2026, 3, d).unwrap_or_default())
}

impl Example for ProductSalesView {
    fn example() -> Self {
        Self {
            store_id: x::STORE_ID,
            sku: x::TEA_SKU.to_owned(),
            name: x::TEA_NAME.to_owned(),
            currency: x::CURRENCY.to_owned(),
            quantity: 186,
            revenue_minor: 186 * x::TEA_PRICE_MINOR,
            orders: 121,
        }
    }
}

impl Example for ProductSalesReport {
    fn example() -> Self {
        Self {
            from: day(1),
            to: day(14),
            store_id: Some(x::STORE_ID),
            sort: SalesSort::Revenue,
            items: vec![
                ProductSalesView::example(),
                ProductSalesView {
                    sku: x::MUG_SKU.to_owned(),
                    name: x::MUG_NAME.to_owned(),
                    quantity: 64,
                    revenue_minor: 64 * x::MUG_PRICE_MINOR,
                    orders: 58,
                    ..ProductSalesView::example()
                },
            ],
        }
    }
}

impl Example for SalesPeriodView {
    fn example() -> Self {
        Self {
            period_start: day(14),
            currency: x::CURRENCY.to_owned(),
            orders: 37,
            revenue_minor: 37 * x::TOTAL_MINOR,
            average_order_value_minor: x::TOTAL_MINOR,
            cancellations: 2,
            rejections: 1,
        }
    }
}

impl Example for SalesSummaryReport {
    fn example() -> Self {
        Self {
            granularity: Granularity::Day,
            from: Some(day(13)),
            to: Some(day(14)),
            store_id: Some(x::STORE_ID),
            items: vec![
                SalesPeriodView {
                    period_start: day(13),
                    orders: 29,
                    revenue_minor: 118_755,
                    average_order_value_minor: 4095,
                    cancellations: 1,
                    rejections: 0,
                    ..SalesPeriodView::example()
                },
                SalesPeriodView::example(),
            ],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(sku: &str, name: &str) -> ProductSalesView {
        ProductSalesView {
            store_id: Uuid::from_u128(7),
            sku: sku.to_owned(),
            name: name.to_owned(),
            currency: "EUR".to_owned(),
            quantity: 3,
            revenue_minor: -1250,
            orders: 2,
        }
    }

    #[test]
    fn the_csv_has_a_header_row_and_crlf_line_ends_even_when_empty() {
        assert_eq!(
            product_sales_csv(&[]).expect("csv"),
            "store_id,sku,name,currency,quantity,revenue_minor,orders\r\n"
        );
    }

    #[test]
    fn csv_fields_are_quoted_and_formulas_defused() {
        let store = Uuid::from_u128(7);
        for (name, field) in [
            ("Green tea", "Green tea"),
            ("Tea, green", "\"Tea, green\""),
            ("6\" pie", "\"6\"\" pie\""),
            ("Two\nlines", "\"Two\nlines\""),
            ("=HYPERLINK(1)", "'=HYPERLINK(1)"),
            ("-1,5", "\"'-1,5\""),
            ("+1", "'+1"),
            ("@SUM(A1)", "'@SUM(A1)"),
            ("\tTab", "'\tTab"),
        ] {
            assert_eq!(
                product_sales_csv(&[row("TEA", name)]).expect("csv"),
                format!(
                    "store_id,sku,name,currency,quantity,revenue_minor,orders\r\n\
                     {store},TEA,{field},EUR,3,-1250,2\r\n"
                ),
                "{name:?}"
            );
        }
    }

    #[test]
    fn skus_and_currencies_are_defused_too() {
        let mut r = row("=SKU", "Tea");
        r.currency = "-EU".to_owned();
        let csv = product_sales_csv(&[r]).expect("csv");
        assert!(csv.ends_with(",'=SKU,Tea,'-EU,3,-1250,2\r\n"), "{csv}");
    }
}
