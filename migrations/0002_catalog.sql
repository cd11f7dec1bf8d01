-- The catalog: stores and the products they sell. Plain tables, not event-sourced: orders
-- snapshot name and price into their own events when an item is added, so later catalog
-- changes never rewrite an order.
create table stores (
    id         uuid        not null,
    name       text        not null,
    -- default currency of the store's products
    currency   text        not null,
    created_at timestamptz not null default now(),
    constraint stores_pkey primary key (id),
    constraint stores_currency_iso check (currency ~ '^[A-Z]{3}$')
);

create table products (
    store_id         uuid        not null,
    sku              text        not null,
    name             text        not null,
    unit_price_minor bigint      not null,
    currency         text        not null,
    active           boolean     not null default true,
    created_at       timestamptz not null default now(),
    updated_at       timestamptz not null default now(),
    constraint products_pkey primary key (store_id, sku),
    constraint products_store_fkey foreign key (store_id) references stores (id),
    constraint products_price_non_negative check (unit_price_minor >= 0),
    constraint products_currency_iso check (currency ~ '^[A-Z]{3}$')
);
