//! Where an order stands: [`OrderStatus`] and the rules that depend on the status alone.
//! Status machine (DESIGN §4); [`crate::Order::decide`] refuses every other move:
//!
//! ```text
//! draft ─place─► placed ─(saga ok)─► confirmed ─► preparing ─► ready_for_pickup ─► picked_up
//!   │              │ (saga failed)─► rejected        │  └──────────► shipped ─► delivered
//!   └─discard      └──────────── cancel ◄────────────┘ (cancel allowed until shipped / picked up)
//! ```
//! Shipping is allowed from `preparing` and from `ready_for_pickup` (an uncollected order may
//! still be sent).

use std::fmt;

use serde::{Deserialize, Serialize};

/// Where an order stands. JSON: snake_case.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OrderStatus {
    #[default]
    Draft,
    Placed,
    Confirmed,
    Rejected,
    Preparing,
    ReadyForPickup,
    PickedUp,
    Shipped,
    Delivered,
    Cancelled,
    Discarded,
}

impl OrderStatus {
    /// Every status, in declaration order.
    pub const ALL: [OrderStatus; 11] = [
        Self::Draft,
        Self::Placed,
        Self::Confirmed,
        Self::Rejected,
        Self::Preparing,
        Self::ReadyForPickup,
        Self::PickedUp,
        Self::Shipped,
        Self::Delivered,
        Self::Cancelled,
        Self::Discarded,
    ];

    /// The snake_case name, as in JSON and in the read models.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Draft => "draft",
            Self::Placed => "placed",
            Self::Confirmed => "confirmed",
            Self::Rejected => "rejected",
            Self::Preparing => "preparing",
            Self::ReadyForPickup => "ready_for_pickup",
            Self::PickedUp => "picked_up",
            Self::Shipped => "shipped",
            Self::Delivered => "delivered",
            Self::Cancelled => "cancelled",
            Self::Discarded => "discarded",
        }
    }

    /// Parses the snake_case name.
    pub fn parse(raw: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.as_str() == raw)
    }

    /// Whether an order in this status may still be cancelled.
    pub fn is_cancellable(self) -> bool {
        matches!(
            self,
            Self::Placed | Self::Confirmed | Self::Preparing | Self::ReadyForPickup
        )
    }
}

impl fmt::Display for OrderStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
