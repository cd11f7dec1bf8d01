-- What the query endpoints (docs/queries.md) need beyond the indexes of 0003.
--
-- `order_events` exposes the order id as a uuid cast of the event store's text key
-- (`aggregate_id::uuid`). A filter on that cast cannot use the events primary key
-- (aggregate_type, aggregate_id, sequence) and scans every order event. Rather than index the
-- cast on the hottest table (one more index entry per appended event), the view also exposes
-- the raw key, so that reads of one order's log filter on `aggregate_id` and go through the
-- primary key. The columns before it are unchanged (`create or replace` may only append).
create or replace view order_events as
    select aggregate_id::uuid as order_id, sequence as version, event_id, event_type,
           event_version, payload, metadata, recorded_at,
           -- the event store's key of the order (its id as text): filter on this one
           aggregate_id
      from events
     where aggregate_type = 'Order';

-- A store's orders in one status, newest first: the staff's work queue ("confirmed orders of
-- my store"). With only (store_id, created_at) the status is a filter, and a status the store
-- has few orders in (placed, ready_for_pickup) walks the store's whole history to fill a page.
create index order_summaries_store_status_idx
    on read.order_summaries (store_id, status, created_at desc, order_id desc);
