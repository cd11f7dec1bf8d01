//! Examples of the catalog's bodies (stores, products, members, changes) in the OpenAPI
//! document: the store of the example order (`example_data.rs`), its tea, its owner and staff.

use poem_openapi::types::Example;

use super::catalog::{
    CreateProductBody, CreateStoreBody, ProductPage, ProductView, StorePage, StoreView,
    UpdateProductBody, UpdateStoreBody,
};
use super::cursor::{
    encode_change_cursor, encode_member_cursor, encode_product_cursor, encode_store_cursor,
};
use super::example_data as x;
use super::members::{ChangePage, ChangeView, MemberBody, MemberPage, MemberRoleName, MemberView};
use super::text::Text;

/// When the store was opened, a week before the example order.
fn opened_at() -> chrono::DateTime<chrono::Utc> {
    x::created_at() - chrono::Duration::days(7)
}

impl Example for CreateStoreBody {
    fn example() -> Self {
        Self {
            name: Text(x::STORE_NAME.to_owned()),
            currency: Text(x::CURRENCY.to_owned()),
        }
    }
}

impl Example for UpdateStoreBody {
    fn example() -> Self {
        Self {
            name: None,
            contact_email: Some(Text(x::STORE_EMAIL.to_owned())),
            open: Some(false),
        }
    }
}

impl Example for StoreView {
    fn example() -> Self {
        Self {
            id: x::STORE_ID,
            name: x::STORE_NAME.to_owned(),
            currency: x::CURRENCY.to_owned(),
            created_at: opened_at(),
            contact_email: Some(x::STORE_EMAIL.to_owned()),
            open: true,
            updated_at: opened_at(),
        }
    }
}

impl Example for StorePage {
    fn example() -> Self {
        Self {
            items: vec![StoreView::example()],
            next: Some(encode_store_cursor(x::STORE_ID)),
        }
    }
}

impl Example for CreateProductBody {
    fn example() -> Self {
        Self {
            sku: Text(x::TEA_SKU.to_owned()),
            name: Text(x::TEA_NAME.to_owned()),
            unit_price_minor: x::TEA_PRICE_MINOR,
            currency: None,
            active: None,
        }
    }
}

impl Example for UpdateProductBody {
    fn example() -> Self {
        Self {
            name: None,
            unit_price_minor: Some(x::TEA_PRICE_MINOR + 100),
            active: None,
            retired: None,
        }
    }
}

impl Example for ProductView {
    fn example() -> Self {
        Self {
            store_id: x::STORE_ID,
            sku: x::TEA_SKU.to_owned(),
            name: x::TEA_NAME.to_owned(),
            unit_price_minor: x::TEA_PRICE_MINOR,
            currency: x::CURRENCY.to_owned(),
            active: true,
            created_at: opened_at(),
            updated_at: opened_at(),
            retired_at: None,
        }
    }
}

impl Example for ProductPage {
    fn example() -> Self {
        Self {
            items: vec![ProductView::example()],
            next: Some(encode_product_cursor(x::TEA_SKU)),
        }
    }
}

impl Example for MemberBody {
    fn example() -> Self {
        Self {
            role: MemberRoleName::Staff,
        }
    }
}

impl Example for MemberView {
    fn example() -> Self {
        Self {
            store_id: x::STORE_ID,
            sub: x::STAFF_ID.to_owned(),
            role: "staff".to_owned(),
            added_at: opened_at(),
            updated_at: opened_at(),
        }
    }
}

impl Example for MemberPage {
    fn example() -> Self {
        Self {
            items: vec![MemberView::example()],
            next: Some(encode_member_cursor(x::STAFF_ID)),
        }
    }
}

impl Example for ChangeView {
    fn example() -> Self {
        let product = |price: i64| serde_json::json!({"sku": x::TEA_SKU, "name": x::TEA_NAME, "unit_price_minor": price});
        Self {
            id: 42,
            at: opened_at() + chrono::Duration::days(1),
            actor: x::OWNER_ID.to_owned(),
            entity: "product".to_owned(),
            key: x::TEA_SKU.to_owned(),
            action: "updated".to_owned(),
            before: Some(product(x::TEA_PRICE_MINOR - 100)),
            after: Some(product(x::TEA_PRICE_MINOR)),
        }
    }
}

impl Example for ChangePage {
    fn example() -> Self {
        Self {
            items: vec![ChangeView::example()],
            next: Some(encode_change_cursor(42)),
        }
    }
}
