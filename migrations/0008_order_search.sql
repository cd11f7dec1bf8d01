-- The free-text search of `GET /v1/orders?q=` moves out of `order_summaries` into a table of
-- its own.
--
-- A summary changes with every event of its order, and most of those changes (a status) touch
-- an indexed column, so they cannot be HOT updates: each one wrote a new entry into every index
-- of the table, the trigram GIN of the search text included (one entry per trigram, some fifty
-- per order). That GIN made the projector's summary updates about 2.8 times as expensive
-- (measured with pgbench on the seeded 100k orders: 480 against 1,367 twelve-row updates per
-- second). The search text (customer email, item names and SKUs) changes only while an order
-- is a draft, so in a table of its own it is written on creation and on item changes, and
-- never again after the order is placed.
create table read.order_search (
    order_id    uuid not null,
    -- lower-cased customer email, item names and SKUs
    search_text text not null,
    constraint order_search_pkey primary key (order_id)
);

insert into read.order_search (order_id, search_text)
select order_id, search_text from read.order_summaries;

create index order_search_text_idx on read.order_search using gin (search_text gin_trgm_ops);

-- drops order_summaries_search_idx with it
alter table read.order_summaries drop column search_text;
