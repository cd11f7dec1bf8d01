//! The values the OpenAPI document's examples share, so they tell one story: customer
//! `customer-4821` orders green tea and a mug from one store in EUR on 14 March 2026, the
//! order is placed, confirmed, prepared and shipped. Every id, amount and timestamp of an
//! example comes from here (`examples.rs` and the reports' own examples use them).

use chrono::{DateTime, TimeZone as _, Utc};
use uuid::Uuid;

/// The example order.
pub const ORDER_ID: Uuid = Uuid::from_u128(0x3f2b_8c1e_5d4a_4c7b_9e21_8a6f_0d9b_4c57);
/// Its store.
pub const STORE_ID: Uuid = Uuid::from_u128(0xb7e4_d2a9_1c3f_4e8b_a5d6_2f9c_0e7b_1a34);
/// The event that confirmed it (what a notification tells of).
pub const CONFIRMED_EVENT_ID: Uuid = Uuid::from_u128(0x0195_9a3c_6e4b_7d2f_8a41_c3e5_9b7d_2f60);
/// The saga's stock reservation request.
pub const RESERVE_MESSAGE_ID: Uuid = Uuid::from_u128(0x0195_9a3c_6a10_7b8e_9c2d_4f61_a0e3_b5d7);
/// The saga's payment authorization request.
pub const AUTHORIZE_MESSAGE_ID: Uuid = Uuid::from_u128(0x0195_9a3c_6c02_7e41_b3f8_5d9a_1c6e_04a2);
/// The customer: their token's `sub`.
pub const CUSTOMER_ID: &str = "customer-4821";
/// The store's name.
pub const STORE_NAME: &str = "Corner Café Berlin";
/// The merchant owning the store: its token's `sub`.
pub const OWNER_ID: &str = "merchant-corner-cafe";
/// The staff member preparing and shipping the order: its token's `sub`.
pub const STAFF_ID: &str = "staff-berlin-07";
/// Where customers reach the store.
pub const STORE_EMAIL: &str = "orders@corner-cafe.example";
/// Where the order's emails go.
pub const CUSTOMER_EMAIL: &str = "ada@example.com";
/// The order's currency.
pub const CURRENCY: &str = "EUR";

/// The first line: two packs of tea at 12.50 EUR.
pub const TEA_SKU: &str = "TEA-SENCHA-250";
pub const TEA_NAME: &str = "Sencha green tea, 250 g";
pub const TEA_PRICE_MINOR: i64 = 1250;
pub const TEA_QUANTITY: i64 = 2;
/// The second line: one mug at 18.90 EUR.
pub const MUG_SKU: &str = "MUG-STONE-350";
pub const MUG_NAME: &str = "Stoneware mug, 350 ml";
pub const MUG_PRICE_MINOR: i64 = 1890;
pub const MUG_QUANTITY: i64 = 1;
/// Both lines: 2 × 1250 + 1 × 1890.
pub const TOTAL_MINOR: i64 = TEA_PRICE_MINOR * TEA_QUANTITY + MUG_PRICE_MINOR * MUG_QUANTITY;

/// The shipping address, as `name`, `line1`, `line2`, `city`, `postal_code`, `country`.
pub const ADDRESS: [&str; 6] = [
    "Ada Lovelace",
    "Invalidenstraße 117",
    "3rd floor",
    "Berlin",
    "10115",
    "DE",
];

/// The shipment.
pub const CARRIER: &str = "DHL";
pub const TRACKING_NUMBER: &str = "00340434161094042557";

/// A moment of 14 March 2026 (UTC), when the example order happens.
pub fn at(hour: u32, minute: u32, second: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 3, 14, hour, minute, second)
        .single()
        .unwrap_or_default()
}

/// When the draft was created, and then each step.
pub fn created_at() -> DateTime<Utc> {
    at(9, 26, 53)
}
pub fn placed_at() -> DateTime<Utc> {
    at(9, 31, 7)
}
pub fn confirmed_at() -> DateTime<Utc> {
    at(9, 31, 8)
}
pub fn preparing_at() -> DateTime<Utc> {
    at(10, 2, 41)
}
pub fn shipped_at() -> DateTime<Utc> {
    at(14, 18, 5)
}
