//! What an email says: pure functions from an order event and what the notifier knows about
//! the order (its id, its store's name) to a subject, a plain-text body and an HTML body. No
//! I/O here: the notifier renders when it queues, the sender only delivers.

use order_domain::{OrderChange, OrderId};

/// A notifiable change of an order (DESIGN §13): the ones a customer hears of by email.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Notice {
    Confirmed,
    Rejected {
        reason: String,
    },
    ReadyForPickup,
    PickedUp,
    Shipped {
        carrier: String,
        tracking_number: String,
    },
    Delivered,
    Cancelled {
        reason: String,
    },
}

/// The order event types that may lead to an email: what the notifier's reader wants.
pub const NOTIFIABLE_EVENTS: [&str; 7] = [
    "OrderConfirmed",
    "OrderRejected",
    "OrderReadyForPickup",
    "OrderPickedUp",
    "OrderShipped",
    "OrderDelivered",
    "OrderCancelled",
];

impl Notice {
    /// The notice for `change`, if the customer is told about it.
    pub fn of(change: &OrderChange) -> Option<Self> {
        Some(match change {
            OrderChange::OrderConfirmed => Self::Confirmed,
            OrderChange::OrderRejected { reason } => Self::Rejected {
                reason: reason.as_str().to_owned(),
            },
            OrderChange::OrderReadyForPickup { .. } => Self::ReadyForPickup,
            OrderChange::OrderPickedUp { .. } => Self::PickedUp,
            OrderChange::OrderShipped {
                carrier,
                tracking_number,
                ..
            } => Self::Shipped {
                carrier: carrier.as_str().to_owned(),
                tracking_number: tracking_number.as_str().to_owned(),
            },
            OrderChange::OrderDelivered { .. } => Self::Delivered,
            OrderChange::OrderCancelled { reason, .. } => Self::Cancelled {
                reason: reason.as_str().to_owned(),
            },
            _ => return None,
        })
    }

    /// The order's status after the change, as the API names it (`ready_for_pickup`).
    pub fn status(&self) -> &'static str {
        match self {
            Self::Confirmed => "confirmed",
            Self::Rejected { .. } => "rejected",
            Self::ReadyForPickup => "ready_for_pickup",
            Self::PickedUp => "picked_up",
            Self::Shipped { .. } => "shipped",
            Self::Delivered => "delivered",
            Self::Cancelled { .. } => "cancelled",
        }
    }

    /// The status in words (`ready for pickup`).
    fn words(&self) -> &'static str {
        match self {
            Self::Confirmed => "confirmed",
            Self::Rejected { .. } => "rejected",
            Self::ReadyForPickup => "ready for pickup",
            Self::PickedUp => "picked up",
            Self::Shipped { .. } => "shipped",
            Self::Delivered => "delivered",
            Self::Cancelled { .. } => "cancelled",
        }
    }

    /// What the customer should know beyond the status, one sentence.
    fn detail(&self) -> String {
        match self {
            Self::Confirmed => "We have received your payment and are preparing your order.".into(),
            Self::Rejected { reason } => format!("We could not accept it: {reason}."),
            Self::ReadyForPickup => "You can pick it up at the store now.".into(),
            Self::PickedUp => "Thank you for picking it up.".into(),
            Self::Shipped {
                carrier,
                tracking_number,
            } => format!("It is on its way with {carrier}, tracking number {tracking_number}."),
            Self::Delivered => "It has been delivered.".into(),
            Self::Cancelled { reason } => format!("It was cancelled: {reason}."),
        }
    }
}

/// A rendered email.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rendered {
    pub subject: String,
    pub text: String,
    pub html: String,
}

/// The email telling the customer of `order` at `store` about `notice`.
pub fn render(order: OrderId, store: &str, notice: &Notice) -> Rendered {
    let id = order.to_string();
    let short = id.get(..8).unwrap_or(&id);
    let words = notice.words();
    let detail = notice.detail();
    let subject = format!("Your order {short} at {store} is {words}");
    let text = format!(
        "Hello,\n\nyour order {id} at {store} is {words}.\n{detail}\n\nStatus: {status}\n\n{store}\n",
        status = notice.status(),
    );
    let html = format!(
        "<!doctype html>\n<html><body>\n<p>Hello,</p>\n<p>your order <strong>{id}</strong> at \
         {store_html} is <strong>{words}</strong>.<br>{detail_html}</p>\n<p>Status: \
         <code>{status}</code></p>\n<p>{store_html}</p>\n</body></html>\n",
        store_html = escape(store),
        detail_html = escape(&detail),
        status = notice.status(),
    );
    Rendered {
        subject,
        text,
        html,
    }
}

/// `text` safe inside HTML text and attribute values.
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use order_domain::{Carrier, Reason, TrackingNumber};

    use super::*;

    fn order() -> OrderId {
        OrderId::from_uuid(uuid::Uuid::from_u128(
            0x1234_5678_9abc_def0_1234_5678_9abc_def0,
        ))
    }

    #[test]
    fn a_shipped_email_names_the_order_the_status_the_carrier_and_the_tracking_number() {
        let change = OrderChange::OrderShipped {
            carrier: Carrier::parse("DHL").unwrap(),
            tracking_number: TrackingNumber::parse("TRK-42").unwrap(),
            note: None,
        };
        let notice = Notice::of(&change).expect("shipping is notifiable");
        let email = render(order(), "Tea & Cake", &notice);
        assert_eq!(
            email.subject,
            "Your order 12345678 at Tea & Cake is shipped"
        );
        for body in [&email.text, &email.html] {
            assert!(body.contains(&order().to_string()), "{body}");
            assert!(body.contains("DHL") && body.contains("TRK-42"), "{body}");
            assert!(body.contains("shipped"), "{body}");
        }
        assert!(email.html.contains("Tea &amp; Cake"), "{}", email.html);
    }

    #[test]
    fn markup_in_a_reason_is_escaped_in_the_html_body() {
        let notice = Notice::of(&OrderChange::OrderCancelled {
            reason: Reason::parse("<script>x</script>").unwrap(),
            previous_status: order_domain::OrderStatus::Confirmed,
        })
        .expect("cancelling is notifiable");
        let email = render(order(), "Shop", &notice);
        assert!(!email.html.contains("<script>"), "{}", email.html);
        assert!(email.html.contains("&lt;script&gt;"));
        assert!(email.text.contains("<script>x</script>"));
    }

    #[test]
    fn only_status_changes_a_customer_cares_about_are_notifiable() {
        assert_eq!(
            Notice::of(&OrderChange::OrderConfirmed),
            Some(Notice::Confirmed)
        );
        assert_eq!(Notice::of(&OrderChange::DraftDiscarded), None);
        assert_eq!(
            Notice::of(&OrderChange::PreparationStarted { note: None }),
            None
        );
        // every notifiable event type is one the reader asks for
        let statuses: Vec<&str> = [
            Notice::Confirmed,
            Notice::ReadyForPickup,
            Notice::PickedUp,
            Notice::Delivered,
        ]
        .iter()
        .map(Notice::status)
        .collect();
        assert_eq!(
            statuses,
            ["confirmed", "ready_for_pickup", "picked_up", "delivered"]
        );
        assert_eq!(NOTIFIABLE_EVENTS.len(), 7);
    }
}
