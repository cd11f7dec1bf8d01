-- The plans of docs/queries.md: every read statement of order_projections::queries, prepared
-- with the parameter types the service binds and executed with representative values on the
-- database benches/seed_orders.sql fills (100 000 orders).
--
--   psql -h 127.0.0.1 -U postgres -d qexplain -f benches/explain_queries.sql
--
-- `prepare` + `execute` is what sqlx does, so these are the plans the service gets: PostgreSQL
-- plans each execution for its values (a custom plan) unless a generic plan is estimated no
-- dearer; the last section shows the generic plans too.
\set cols 's.order_id, s.version, s.status, s.customer_id, s.store_id, s.currency, s.customer_email, s.total_minor, s.line_count, s.item_count, s.carrier, s.tracking_number, s.cancel_reason, s.reject_reason, s.created_at, s.updated_at, s.placed_at, s.confirmed_at, s.rejected_at, s.preparing_at, s.ready_at, s.picked_up_at, s.shipped_at, s.delivered_at, s.cancelled_at, s.discarded_at'
\set QUIET on
\pset pager off
\echo ==== L1
prepare l1(int8) as select :cols from read.order_summaries s order by s.created_at desc, s.order_id desc limit $1;
explain (analyze, buffers, costs off) execute l1(51);
\echo ==== L2
prepare l2(timestamptz, uuid, int8) as select :cols from read.order_summaries s where (s.created_at, s.order_id) < ($1, $2) order by s.created_at desc, s.order_id desc limit $3;
explain (analyze, buffers, costs off) execute l2('2026-06-23 14:40:00+00', 'e62bd3fd-ef35-f153-c328-d9a543235feb', 51);
\echo ==== L3
prepare l3(text, int8) as select :cols from read.order_summaries s where s.status = $1 order by s.created_at desc, s.order_id desc limit $2;
explain (analyze, buffers, costs off) execute l3('placed', 51);
\echo ==== L4
prepare l4(uuid, int8) as select :cols from read.order_summaries s where s.store_id = $1 order by s.created_at desc, s.order_id desc limit $2;
explain (analyze, buffers, costs off) execute l4('0d8ab59a-91f5-f191-8cd0-461626ac1b94', 51);
\echo ==== L5
prepare l5(text, int8) as select :cols from read.order_summaries s where s.customer_id = $1 order by s.created_at desc, s.order_id desc limit $2;
explain (analyze, buffers, costs off) execute l5('customer-2786', 51);
\echo ==== L6
prepare l6(uuid[], int8) as select :cols from read.order_summaries s where s.store_id = any($1) order by s.created_at desc, s.order_id desc limit $2;
explain (analyze, buffers, costs off) execute l6(array[md5('store3')::uuid, md5('store7')::uuid], 51);
\echo ==== L7
prepare l7(timestamptz, timestamptz, int8) as select :cols from read.order_summaries s where s.created_at >= $1 and s.created_at < $2 order by s.created_at desc, s.order_id desc limit $3;
explain (analyze, buffers, costs off) execute l7('2026-03-01', '2026-03-08', 51);
\echo ==== L8a
prepare l8(text, int8) as select :cols from read.order_summaries s where s.order_id in (select x.order_id from read.order_search x where x.search_text ilike '%' || lower($1) || '%') order by s.created_at desc, s.order_id desc limit $2;
explain (analyze, buffers, costs off) execute l8('customer-2786@', 51);
\echo ==== L8b
explain (analyze, buffers, costs off) execute l8('matcha', 51);
\echo ==== L9
prepare l9(text, uuid, int8) as select :cols from read.order_summaries s where s.status = $1 and s.store_id = $2 order by s.created_at desc, s.order_id desc limit $3;
explain (analyze, buffers, costs off) execute l9('placed', '0d8ab59a-91f5-f191-8cd0-461626ac1b94', 51);
\echo ==== L9-before-0004
begin;
drop index read.order_summaries_store_status_idx;
prepare l9_before(text, uuid, int8) as select :cols from read.order_summaries s where s.status = $1 and s.store_id = $2 order by s.created_at desc, s.order_id desc limit $3;
explain (analyze, buffers, costs off) execute l9_before('placed', '0d8ab59a-91f5-f191-8cd0-461626ac1b94', 51);
rollback;
\echo ==== D1
prepare d1(uuid, text) as select :cols, s.shipping_address,
                coalesce((select jsonb_agg(jsonb_build_object(
                                 'line_id', l.line_id, 'sku', l.sku, 'name', l.name,
                                 'quantity', l.quantity, 'unit_price_minor', l.unit_price_minor,
                                 'line_total_minor', l.line_total_minor) order by l.line_id)
                            from read.order_lines l
                           where l.order_id = s.order_id), '[]'::jsonb) as lines,
                coalesce((select max(e.version) from order_events e
                           where e.aggregate_id = $2), 0) as log_version
           from read.order_summaries s
          where s.order_id = $1;
explain (analyze, buffers, costs off) execute d1('e76d4206-3561-3da2-ea10-55954a0e9ded', 'e76d4206-3561-3da2-ea10-55954a0e9ded');
\echo ==== D2
prepare d2(text) as select c.payload ->> 'customer_id' as customer_id,
                (c.payload ->> 'store_id')::uuid as store_id,
                (select max(e.version) from order_events e where e.aggregate_id = $1) as version
           from order_events c
          where c.aggregate_id = $1 and c.version = 1;
explain (analyze, buffers, costs off) execute d2('e76d4206-3561-3da2-ea10-55954a0e9ded');
\echo ==== D3
prepare d3(uuid) as select version, status, previous_status, note, principal, recorded_at
           from read.order_status_history
          where order_id = $1
          order by version;
explain (analyze, buffers, costs off) execute d3('e76d4206-3561-3da2-ea10-55954a0e9ded');
\echo ==== D4
prepare d4(text, int8, int8) as select version, event_id, event_type, event_version, payload, metadata, recorded_at
           from order_events
          where aggregate_id = $1 and version > $2
          order by version
          limit $3;
explain (analyze, buffers, costs off) execute d4('e76d4206-3561-3da2-ea10-55954a0e9ded', 0, 1000);
\echo ==== D4-by-uuid
-- the view's uuid column, as 0003 left it: no index reaches the cast
explain (analyze, buffers, costs off) select version, event_id, event_type from order_events where order_id = 'e76d4206-3561-3da2-ea10-55954a0e9ded' order by version;
\echo ==== R1
prepare r1(date, date, uuid, int8) as select store_id, sku, currency, (array_agg(name order by day desc))[1] as name,
                sum(quantity)::bigint as quantity, sum(revenue_minor)::bigint as revenue_minor,
                sum(orders)::bigint as orders
           from read.product_sales_daily
          where day between $1 and $2 and store_id = $3 group by store_id, sku, currency having sum(orders) > 0 order by revenue_minor desc, quantity desc, store_id, sku, currency limit $4;
explain (analyze, buffers, costs off) execute r1('2026-03-01', '2026-03-31', '0d8ab59a-91f5-f191-8cd0-461626ac1b94', 100);
\echo ==== R2
prepare r2(date, date, int8) as select store_id, sku, currency, (array_agg(name order by day desc))[1] as name,
                sum(quantity)::bigint as quantity, sum(revenue_minor)::bigint as revenue_minor,
                sum(orders)::bigint as orders
           from read.product_sales_daily
          where day between $1 and $2 group by store_id, sku, currency having sum(orders) > 0 order by quantity desc, revenue_minor desc, store_id, sku, currency limit $3;
explain (analyze, buffers, costs off) execute r2('2026-03-01', '2026-03-31', 100);
\echo ==== S1
prepare s1(uuid, date, date) as select date_trunc('week', day::timestamp)::date as period_start, currency,
                sum(orders)::bigint as orders, sum(revenue_minor)::bigint as revenue_minor,
                coalesce(sum(revenue_minor)::bigint / nullif(sum(orders), 0), 0)
                    as average_order_value_minor,
                sum(cancellations)::bigint as cancellations, sum(rejections)::bigint as rejections
           from read.store_sales_daily where store_id = $1 and day >= $2 and day <= $3 group by 1, 2 order by 1, 2;
explain (analyze, buffers, costs off) execute s1('0d8ab59a-91f5-f191-8cd0-461626ac1b94', '2026-01-01', '2026-03-31');
\echo ==== S2
prepare s2(date, date) as select date_trunc('month', day::timestamp)::date as period_start, currency,
                sum(orders)::bigint as orders, sum(revenue_minor)::bigint as revenue_minor,
                coalesce(sum(revenue_minor)::bigint / nullif(sum(orders), 0), 0)
                    as average_order_value_minor,
                sum(cancellations)::bigint as cancellations, sum(rejections)::bigint as rejections
           from read.store_sales_daily where day >= $1 and day <= $2 group by 1, 2 order by 1, 2;
explain (analyze, buffers, costs off) execute s2('2026-03-01', '2026-03-31');
\echo ==== S3
prepare s3 as select date_trunc('month', day::timestamp)::date as period_start, currency,
                sum(orders)::bigint as orders, sum(revenue_minor)::bigint as revenue_minor,
                coalesce(sum(revenue_minor)::bigint / nullif(sum(orders), 0), 0)
                    as average_order_value_minor,
                sum(cancellations)::bigint as cancellations, sum(rejections)::bigint as rejections
           from read.store_sales_daily group by 1, 2 order by 1, 2;
explain (analyze, buffers, costs off) execute s3;
\echo ==== GENERIC
-- what PostgreSQL would run if it switched to a generic plan
set plan_cache_mode = force_generic_plan;
\echo ---- L2
explain (costs off) execute l2('2026-06-23 14:40:00+00', 'e62bd3fd-ef35-f153-c328-d9a543235feb', 51);
\echo ---- L3
explain (costs off) execute l3('placed', 51);
\echo ---- L4
explain (costs off) execute l4('0d8ab59a-91f5-f191-8cd0-461626ac1b94', 51);
\echo ---- L5
explain (costs off) execute l5('customer-2786', 51);
\echo ---- L6
explain (costs off) execute l6(array[md5('store3')::uuid, md5('store7')::uuid], 51);
\echo ---- L7
explain (costs off) execute l7('2026-03-01', '2026-03-08', 51);
\echo ---- L8
explain (costs off) execute l8('customer-2786@', 51);
\echo ---- L9
explain (costs off) execute l9('placed', '0d8ab59a-91f5-f191-8cd0-461626ac1b94', 51);
\echo ---- D1
explain (costs off) execute d1('e76d4206-3561-3da2-ea10-55954a0e9ded', 'e76d4206-3561-3da2-ea10-55954a0e9ded');
\echo ---- D4
explain (costs off) execute d4('e76d4206-3561-3da2-ea10-55954a0e9ded', 0, 1000);
\echo ---- R1
explain (costs off) execute r1('2026-03-01', '2026-03-31', '0d8ab59a-91f5-f191-8cd0-461626ac1b94', 100);
\echo ---- R2
explain (costs off) execute r2('2026-03-01', '2026-03-31', 100);
\echo ---- S1
explain (costs off) execute s1('0d8ab59a-91f5-f191-8cd0-461626ac1b94', '2026-01-01', '2026-03-31');
\echo ---- S2
explain (costs off) execute s2('2026-03-01', '2026-03-31');
reset plan_cache_mode;
