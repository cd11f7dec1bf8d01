-- Seeds a scratch database with 100 000 orders straight into the read models and the event
-- store, for the query plans of docs/queries.md. Never run it against a real database: it
-- writes rows no command produced.
--
--   createdb -h 127.0.0.1 -U postgres qexplain
--   DATABASE_URL='postgres://postgres@127.0.0.1:5432/qexplain?sslmode=disable' cargo run -q -- migrate
--   psql -h 127.0.0.1 -U postgres -d qexplain -v ON_ERROR_STOP=1 -f benches/seed_orders.sql
--
-- Shape: 20 stores, about 20 000 customers, one order every 5 minutes over a year (2026), 1-4 lines
-- each from 30 products, statuses spread like a live shop's, the matching status history and
-- events, and a year of daily sales per store and product. Ids are md5-derived, so every run
-- produces the same data.

begin;

-- one row per order; status by i % 10: 2 draft, 1 placed, 3 confirmed, 1 preparing,
-- 1 picked up, 1 cancelled, 1 rejected
create temporary table seed_orders on commit drop as
select i,
       md5('order' || i)::uuid                                  as order_id,
       -- hashed, so that store and customer do not follow the status
       md5('store' || abs(hashint4(i) % 20))::uuid              as store_id,
       'customer-' || abs(hashint4(-i) % 20000)                 as customer_id,
       'customer-' || abs(hashint4(-i) % 20000) || '@example.com' as email,
       timestamptz '2026-01-01 00:00:00+00' + i * interval '5 minutes' as created_at,
       case i % 10 when 0 then 'draft' when 1 then 'draft' when 2 then 'placed'
                   when 3 then 'confirmed' when 4 then 'confirmed' when 5 then 'confirmed'
                   when 6 then 'preparing' when 7 then 'picked_up' when 8 then 'cancelled'
                   else 'rejected' end                          as status
  from generate_series(1, 100000) as i;

-- 30 products; a line's product and quantity follow from (order, line)
create temporary table seed_products on commit drop as
select p,
       'SKU-' || lpad(p::text, 3, '0') as sku,
       (array['Green tea', 'Black tea', 'Cheesecake', 'Scone', 'Apple pie', 'Bagel',
              'Filter coffee', 'Espresso', 'Matcha latte', 'Croissant'])[1 + p % 10]
           || ' ' || (array['small', 'large', 'to go'])[1 + p % 3] as name,
       100 + p * 37 as unit_price_minor
  from generate_series(0, 29) as p;

insert into read.order_lines (order_id, line_id, sku, name, quantity, unit_price_minor, line_total_minor)
select o.order_id, l, p.sku, p.name, 1 + (o.i + l) % 3, p.unit_price_minor,
       (1 + (o.i + l) % 3) * p.unit_price_minor
  from seed_orders o
  cross join lateral generate_series(1, 1 + o.i % 4) as l
  join seed_products p on p.p = (o.i * 13 + l * 7) % 30;

-- the events each order's status implies: created, one ItemAdded per line, then the steps
create temporary table seed_steps on commit drop as
select o.order_id, o.status, s.step, s.event_type, s.at_status
  from seed_orders o
  cross join lateral (values
      (1, 'OrderPlaced',        'placed'),
      (2, 'OrderConfirmed',     'confirmed'),
      (2, 'OrderRejected',      'rejected'),
      (3, 'PreparationStarted', 'preparing'),
      (4, 'OrderReadyForPickup','ready_for_pickup'),
      (5, 'OrderPickedUp',      'picked_up'),
      (3, 'OrderCancelled',     'cancelled')) as s(step, event_type, at_status)
 where case o.status
         when 'draft'     then false
         when 'placed'    then s.step = 1
         when 'confirmed' then s.step = 1 or s.event_type = 'OrderConfirmed'
         when 'preparing' then s.step = 1 or s.event_type in ('OrderConfirmed', 'PreparationStarted')
         when 'picked_up' then s.step = 1 or s.event_type in ('OrderConfirmed', 'PreparationStarted',
                                                              'OrderReadyForPickup', 'OrderPickedUp')
         when 'cancelled' then s.step = 1 or s.event_type in ('OrderConfirmed', 'OrderCancelled')
         when 'rejected'  then s.step = 1 or s.event_type = 'OrderRejected'
       end;

insert into events (aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata, recorded_at)
select 'Order', o.order_id::text, 1, 'OrderCreated', '1.0',
       jsonb_build_object('type', 'OrderCreated', 'order_id', o.order_id, 'customer_id', o.customer_id,
                          'store_id', o.store_id, 'currency', 'EUR', 'customer_email', o.email),
       jsonb_build_object('principal', o.customer_id), o.created_at
  from seed_orders o
union all
select 'Order', l.order_id::text, 1 + l.line_id, 'ItemAdded', '1.0',
       jsonb_build_object('type', 'ItemAdded', 'line_id', l.line_id, 'sku', l.sku, 'name', l.name,
                          'quantity', l.quantity, 'unit_price_minor', l.unit_price_minor,
                          'line_total_minor', l.line_total_minor,
                          'order_total_minor', sum(l.line_total_minor)
                              over (partition by l.order_id order by l.line_id)),
       '{}', o.created_at + l.line_id * interval '1 second'
  from read.order_lines l join seed_orders o using (order_id)
union all
-- payloads a real order would carry, so that a rebuild replays them into the same read models
select 'Order', s.order_id::text,
       1 + t.lines + row_number() over (partition by s.order_id order by s.step),
       s.event_type, '1.0',
       case s.event_type
           when 'OrderPlaced' then jsonb_build_object(
               'type', 'OrderPlaced', 'customer_id', o.customer_id, 'store_id', o.store_id,
               'currency', 'EUR', 'total_minor', t.total, 'lines', t.snapshot)
           when 'OrderRejected' then jsonb_build_object(
               'type', 'OrderRejected', 'reason', 'payment declined')
           when 'OrderCancelled' then jsonb_build_object(
               'type', 'OrderCancelled', 'reason', 'changed my mind', 'previous_status', 'confirmed')
           else jsonb_build_object('type', s.event_type)
       end,
       '{}', o.created_at + s.step * interval '10 minutes'
  from seed_steps s
  join seed_orders o using (order_id)
  join lateral (select count(*) as lines, sum(line_total_minor) as total,
                       jsonb_agg(jsonb_build_object('line_id', line_id, 'sku', sku, 'name', name,
                                                    'quantity', quantity,
                                                    'unit_price_minor', unit_price_minor,
                                                    'line_total_minor', line_total_minor)
                                 order by line_id) as snapshot
                  from read.order_lines where order_id = s.order_id) t on true;

-- the summaries, at the version of their last event
insert into read.order_summaries (order_id, version, status, customer_id, store_id, currency,
    customer_email, total_minor, line_count, item_count, created_at, updated_at, placed_at,
    confirmed_at, rejected_at, preparing_at, ready_at, picked_up_at, cancelled_at,
    cancel_reason, reject_reason)
select o.order_id, e.version, o.status, o.customer_id, o.store_id, 'EUR', o.email,
       l.total, l.lines, l.items, o.created_at, e.last_at,
       case when o.status <> 'draft' then o.created_at + interval '10 minutes' end,
       case when o.status in ('confirmed', 'preparing', 'picked_up', 'cancelled')
            then o.created_at + interval '20 minutes' end,
       case when o.status = 'rejected' then o.created_at + interval '20 minutes' end,
       case when o.status in ('preparing', 'picked_up') then o.created_at + interval '30 minutes' end,
       case when o.status = 'picked_up' then o.created_at + interval '40 minutes' end,
       case when o.status = 'picked_up' then o.created_at + interval '50 minutes' end,
       case when o.status = 'cancelled' then o.created_at + interval '30 minutes' end,
       case when o.status = 'cancelled' then 'changed my mind' end,
       case when o.status = 'rejected' then 'payment declined' end
  from seed_orders o
  join lateral (select count(*)::int as lines, sum(quantity)::int as items,
                       sum(line_total_minor) as total
                  from read.order_lines where order_id = o.order_id) l on true
  join lateral (select max(sequence) as version, max(recorded_at) as last_at
                  from events where aggregate_type = 'Order' and aggregate_id = o.order_id::text) e on true;

-- the search text, as the projector writes it: in read.order_search since migration 0008, in
-- a column of the summaries before (benches/reproduce --history seeds older builds too)
create temporary table seed_search as
select o.order_id, lower(o.email) || coalesce(' ' || l.words, '') as search_text
  from seed_orders o
  join lateral (select string_agg(lower(name || ' ' || sku), ' ' order by line_id) as words
                  from read.order_lines where order_id = o.order_id) l on true;
do $$
begin
    if to_regclass('read.order_search') is not null then
        execute 'insert into read.order_search (order_id, search_text)
                 select order_id, search_text from seed_search';
    else
        execute 'update read.order_summaries s set search_text = t.search_text
                   from seed_search t where t.order_id = s.order_id';
    end if;
end
$$;

insert into read.order_status_history (order_id, version, status, previous_status, note, principal, recorded_at)
select order_id, 1, 'draft', null, null, customer_id, created_at from seed_orders
union all
select e.aggregate_id::uuid, e.sequence,
       s.at_status,
       lag(s.at_status, 1, 'draft') over (partition by e.aggregate_id order by e.sequence),
       null, null, e.recorded_at
  from events e
  join seed_steps s on s.order_id = e.aggregate_id::uuid and s.event_type = e.event_type
 where e.aggregate_type = 'Order' and e.event_type not in ('OrderCreated', 'ItemAdded');

-- a year of daily sales: each store sells about half of the products on a given day
insert into read.product_sales_daily (store_id, day, sku, currency, name, quantity, revenue_minor, orders)
select md5('store' || s)::uuid, d::date, p.sku, 'EUR', p.name,
       1 + (s + p.p + extract(doy from d)::int) % 9,
       (1 + (s + p.p + extract(doy from d)::int) % 9) * p.unit_price_minor,
       1 + (s + p.p + extract(doy from d)::int) % 5
  from generate_series(0, 19) as s
  cross join generate_series(date '2026-01-01', date '2026-12-31', interval '1 day') as d
  join seed_products p on (s + p.p + extract(doy from d)::int) % 2 = 0;

insert into read.store_sales_daily (store_id, day, currency, orders, revenue_minor, cancellations, rejections)
select md5('store' || s)::uuid, d::date, 'EUR',
       10 + (s + extract(doy from d)::int) % 7,
       (10 + (s + extract(doy from d)::int) % 7) * 1450,
       (s + extract(doy from d)::int) % 3,
       (s + extract(doy from d)::int) % 2
  from generate_series(0, 19) as s
  cross join generate_series(date '2026-01-01', date '2026-12-31', interval '1 day') as d;

commit;

vacuum analyze events;
vacuum analyze read.order_summaries;
vacuum analyze read.order_lines;
select to_regclass('read.order_search') is not null as has_search \gset
\if :has_search
vacuum analyze read.order_search;
\endif
vacuum analyze read.order_status_history;
vacuum analyze read.product_sales_daily;
vacuum analyze read.store_sales_daily;

select (select count(*) from read.order_summaries)      as orders,
       (select count(*) from read.order_lines)          as lines,
       (select count(*) from read.order_status_history) as history,
       (select count(*) from events)                    as events,
       (select count(*) from read.product_sales_daily)  as product_days,
       (select count(*) from read.store_sales_daily)    as store_days;
