//! Request bodies into domain values: every field parsed by its value type, and every problem
//! of one body collected, so one 422 answer lists all of them.

use order_domain::{
    AddressLine, CountryCode, Currency, CustomerId, Email, NewItem, PostalCode, Quantity,
    ShippingAddress, Sku, ValueError,
};

use super::dto::{AddressBody, CreateOrderBody, ItemBody};
use crate::http::problem::{ApiError, FieldProblem};
use crate::http::text::Text;

/// Most lines one create request may carry (the order itself holds at most as many).
const MAX_ITEMS: usize = order_domain::MAX_LINES;

/// Collects field problems while parsing a body, so one answer lists all of them.
#[derive(Default)]
pub(super) struct Fields(Vec<FieldProblem>);

impl Fields {
    pub(super) fn take<T>(
        &mut self,
        field: impl Into<String>,
        r: Result<T, ValueError>,
    ) -> Option<T> {
        r.map_err(|e| {
            self.0.push(FieldProblem {
                field: field.into(),
                message: e.to_string(),
            });
        })
        .ok()
    }

    pub(super) fn finish<T>(self, value: Option<T>) -> Result<T, ApiError> {
        match value {
            Some(v) if self.0.is_empty() => Ok(v),
            _ => Err(ApiError::invalid_fields(self.0)),
        }
    }
}

fn parse_address(f: &mut Fields, a: &AddressBody) -> Option<ShippingAddress> {
    let name = f.take("shipping_address.name", AddressLine::parse(a.name.clone()));
    let line1 = f.take(
        "shipping_address.line1",
        AddressLine::parse(a.line1.clone()),
    );
    let line2 = match &a.line2 {
        Some(l) => Some(f.take("shipping_address.line2", AddressLine::parse(l.clone()))?),
        None => None,
    };
    let city = f.take("shipping_address.city", AddressLine::parse(a.city.clone()));
    let postal_code = f.take(
        "shipping_address.postal_code",
        PostalCode::parse(a.postal_code.clone()),
    );
    let country = f.take("shipping_address.country", CountryCode::parse(&a.country));
    Some(ShippingAddress {
        name: name?,
        line1: line1?,
        line2,
        city: city?,
        postal_code: postal_code?,
        country: country?,
    })
}

fn parse_items(f: &mut Fields, items: &[ItemBody]) -> Option<Vec<NewItem>> {
    let parsed: Vec<Option<NewItem>> = items
        .iter()
        .enumerate()
        .map(|(i, item)| {
            let sku = f.take(format!("items[{i}].sku"), Sku::parse(item.sku.clone()));
            let quantity = f.take(
                format!("items[{i}].quantity"),
                Quantity::parse(item.quantity),
            );
            Some(NewItem {
                sku: sku?,
                quantity: quantity?,
            })
        })
        .collect();
    parsed.into_iter().collect()
}

/// Parses an optional field: absent is `None`; invalid is `None` with the problem recorded.
pub(super) fn optional<T>(
    f: &mut Fields,
    field: &str,
    raw: Option<&Text>,
    parse: impl Fn(String) -> Result<T, ValueError>,
) -> Option<T> {
    f.take(field, parse(raw?.0.clone()))
}

/// A create body's fields as domain values; the currency is still optional (it defaults to
/// the store's, which only the catalog knows).
pub(super) struct NewOrder {
    pub customer_id: CustomerId,
    pub currency: Option<Currency>,
    pub customer_email: Option<Email>,
    pub shipping_address: Option<ShippingAddress>,
    pub items: Vec<NewItem>,
}

/// Parses a create body for the customer `customer` (decided by who asks, see `createOrder`).
pub(super) fn parse_create(customer: String, body: &CreateOrderBody) -> Result<NewOrder, ApiError> {
    let mut f = Fields::default();
    let customer_id = f.take("customer_id", CustomerId::parse(customer));
    let currency = optional(&mut f, "currency", body.currency.as_ref(), |c| {
        Currency::parse(&c)
    });
    let customer_email = optional(
        &mut f,
        "customer_email",
        body.customer_email.as_ref(),
        Email::parse,
    );
    let shipping_address = body
        .shipping_address
        .as_ref()
        .and_then(|a| parse_address(&mut f, a));
    let items = parse_items(&mut f, body.items.as_deref().unwrap_or_default());
    let parsed = (|| Some((customer_id?, items?)))();
    let (customer_id, items) = f.finish(parsed)?;
    debug_assert!(items.len() <= MAX_ITEMS);
    Ok(NewOrder {
        customer_id,
        currency,
        customer_email,
        shipping_address,
        items,
    })
}

/// A required text field parsed by its value type, or a 422 naming the field.
pub(super) fn text<T>(
    field: &str,
    raw: &str,
    parse: impl Fn(String) -> Result<T, ValueError>,
) -> Result<T, ApiError> {
    parse(raw.to_owned()).map_err(|e| ApiError::invalid_field(field, &e))
}

/// An optional text field parsed by its value type: absent stays `None`.
pub(super) fn opt_text<T>(
    field: &str,
    raw: Option<&Text>,
    parse: impl Fn(String) -> Result<T, ValueError>,
) -> Result<Option<T>, ApiError> {
    raw.map(|r| text(field, r, parse)).transpose()
}
