-- Read models (DESIGN §6), written only by the projector (a log reader) and rebuilt from the log
-- at will. They live in schema `read`; a rebuild fills `read_rebuild` with the same tables and
-- swaps the two schemas in one transaction.
create extension if not exists pg_trgm;

-- Log readers wake on this instead of polling hard.
create function notify_events_appended() returns trigger
language plpgsql as $$
begin
    perform pg_notify('events_appended', '');
    return null;
end
$$;

create trigger events_appended
    after insert on events
    for each statement execute function notify_events_appended();

create schema read;

-- One row per order: status, totals, a timestamp per status, tracking.
create table read.order_summaries (
    order_id         uuid        not null,
    -- the sequence of the last event applied; applies are idempotent through it
    version          bigint      not null,
    status           text        not null,
    customer_id      text        not null,
    store_id         uuid        not null,
    currency         text        not null,
    customer_email   text,
    shipping_address jsonb,
    total_minor      bigint      not null default 0,
    line_count       integer     not null default 0,
    item_count       integer     not null default 0,
    carrier          text,
    tracking_number  text,
    cancel_reason    text,
    reject_reason    text,
    created_at       timestamptz not null,
    updated_at       timestamptz not null,
    placed_at        timestamptz,
    confirmed_at     timestamptz,
    rejected_at      timestamptz,
    preparing_at     timestamptz,
    ready_at         timestamptz,
    picked_up_at     timestamptz,
    shipped_at       timestamptz,
    delivered_at     timestamptz,
    cancelled_at     timestamptz,
    discarded_at     timestamptz,
    -- lower-cased customer email, item names and SKUs, for free-text search
    search_text      text        not null default '',
    constraint order_summaries_pkey primary key (order_id)
);

-- list and filter orders newest first, keyset-paginated by (created_at, order_id)
create index order_summaries_created_idx on read.order_summaries (created_at desc, order_id desc);
create index order_summaries_status_idx on read.order_summaries (status, created_at desc, order_id desc);
create index order_summaries_store_idx on read.order_summaries (store_id, created_at desc, order_id desc);
create index order_summaries_customer_idx on read.order_summaries (customer_id, created_at desc, order_id desc);
create index order_summaries_search_idx on read.order_summaries using gin (search_text gin_trgm_ops);

-- The lines of each order, as they stand.
create table read.order_lines (
    order_id         uuid    not null,
    line_id          integer not null,
    sku              text    not null,
    name             text    not null,
    quantity         integer not null,
    unit_price_minor bigint  not null,
    line_total_minor bigint  not null,
    constraint order_lines_pkey primary key (order_id, line_id)
);

-- Every status an order went through, with who moved it and why.
create table read.order_status_history (
    order_id        uuid        not null,
    version         bigint      not null,
    status          text        not null,
    previous_status text,
    note            text,
    principal       text,
    recorded_at     timestamptz not null,
    constraint order_status_history_pkey primary key (order_id, version)
);

-- Units and revenue per store, day (UTC) and SKU of confirmed orders; a cancellation after
-- confirmation takes its lines back out of the day they were counted in.
create table read.product_sales_daily (
    store_id      uuid    not null,
    day           date    not null,
    sku           text    not null,
    currency      text    not null,
    name          text    not null,
    quantity      bigint  not null default 0,
    revenue_minor bigint  not null default 0,
    orders        integer not null default 0,
    constraint product_sales_daily_pkey primary key (store_id, day, sku, currency)
);
create index product_sales_daily_day_idx on read.product_sales_daily (day, store_id);

-- Orders, revenue, cancellations and rejections per store, day (UTC) and currency.
create table read.store_sales_daily (
    store_id      uuid    not null,
    day           date    not null,
    currency      text    not null,
    orders        integer not null default 0,
    revenue_minor bigint  not null default 0,
    cancellations integer not null default 0,
    rejections    integer not null default 0,
    constraint store_sales_daily_pkey primary key (store_id, day, currency)
);
create index store_sales_daily_day_idx on read.store_sales_daily (day, store_id);

-- The raw audit log of one order, straight from the event store.
create view order_events as
    select aggregate_id::uuid as order_id, sequence as version, event_id, event_type,
           event_version, payload, metadata, recorded_at
      from events
     where aggregate_type = 'Order';
