-- Shops run themselves (issue 21, DESIGN §9 "Shops", §10): stores that open and close, their
-- members, retired products, and who changed what.
--
-- * `stores` gain a contact email, an `open` flag (a closed store takes no new order and no
--   placement; its orders and reports stay) and `updated_at`.
-- * `products.retired_at`: a retired product is no longer orderable and is listed only when
--   asked for; orders that hold it keep the name and price they snapshotted.
-- * `store_members`: who acts on a store besides its tokens' `store_ids` (owners manage the
--   store, its catalog and its members; staff act on its orders). Looked up by subject on
--   every request of a staff or merchant token, hence the index by subject; cached in memory
--   and dropped on `catalog_changed`, like prices (0007).
-- * `store_changes`: every change of a store, its products and its members, with who, when,
--   before and after, written in the transaction of the change. Append-only for the service.

alter table stores
    add column contact_email text,
    add column open          boolean     not null default true,
    add column updated_at    timestamptz not null default now();

alter table products add column retired_at timestamptz;

create table store_members (
    store_id   uuid        not null,
    -- the member's token `sub`
    subject    text        not null,
    role       text        not null,
    added_at   timestamptz not null default now(),
    updated_at timestamptz not null default now(),
    constraint store_members_pkey primary key (store_id, subject),
    constraint store_members_store_fkey foreign key (store_id) references stores (id),
    constraint store_members_role check (role in ('owner', 'staff'))
);
-- one indexed read per cache miss: the stores a caller belongs to
create index store_members_by_subject on store_members (subject);

create table store_changes (
    id       bigint      generated always as identity,
    store_id uuid        not null,
    at       timestamptz not null default now(),
    -- the `sub` of the caller who made the change
    actor    text        not null,
    -- what changed: the store itself, one of its products (key = sku), a member (key = sub)
    entity   text        not null,
    key      text        not null,
    action   text        not null,
    -- the row before and after (null when created / removed)
    before   jsonb,
    after    jsonb,
    constraint store_changes_pkey primary key (id),
    constraint store_changes_store_fkey foreign key (store_id) references stores (id),
    constraint store_changes_entity check (entity in ('store', 'product', 'member'))
);
create index store_changes_by_store on store_changes (store_id, id);

-- Store rows (open, closed) and memberships are cached like prices: any change empties every
-- process's caches (src/store/catalog.rs, src/store/members.rs).
create trigger stores_changed
    after insert or update or delete or truncate on stores
    for each statement execute function notify_catalog_changed();
create trigger store_members_changed
    after insert or update or delete or truncate on store_members
    for each statement execute function notify_catalog_changed();

-- The grants of 0010, with the audit trail append-only for the runtime role.
create or replace function order_service_grant_roles() returns void
language plpgsql
set search_path = pg_catalog, pg_temp
as $$
declare
    runtime boolean := exists (select from pg_roles where rolname = 'order_runtime');
    analyst boolean := exists (select from pg_roles where rolname = 'order_analyst');
    t record;
    f text;
begin
    -- Two processes migrating at once (replicas starting with APP__DATABASE__MIGRATE_ON_START)
    -- would update the same catalog rows and one would fail with "tuple concurrently updated":
    -- one at a time, until the caller's transaction ends.
    perform pg_advisory_xact_lock(hashtext('order_service_grant_roles'));
    for t in
        select c.oid::regclass::text as name, n.nspname as schema, c.relname as relname,
               c.relkind as kind
          from pg_class c
          join pg_namespace n on n.oid = c.relnamespace
         where n.nspname in ('public', 'read', 'read_rebuild')
           and c.relkind in ('r', 'p', 'v', 'm')
         order by 1
    loop
        if runtime then
            execute format('revoke all on %s from order_runtime', t.name);
            execute format('grant %s on %s to order_runtime', case
                -- the log: read and append, never update, delete or truncate (0009 refuses
                -- those to everyone; without the grant the service cannot even try)
                when t.schema = 'public' and t.relname = 'events' then 'select, insert'
                -- who changed what in a store (0013): an audit trail the service only adds to
                when t.schema = 'public' and t.relname = 'store_changes' then 'select, insert'
                -- readiness checks what has been applied; only the migrator applies
                when t.schema = 'public' and t.relname = '_sqlx_migrations' then 'select'
                when t.kind in ('v', 'm') then 'select'
                -- the catalog, the checkpoints, the read models (and their shadow while a
                -- rebuild fills it): rows come and go; truncate and DDL are not the service's
                else 'select, insert, update, delete'
            end, t.name);
        end if;
        if analyst then
            execute format('revoke all on %s from order_analyst', t.name);
            if t.schema = 'read' then
                execute format('grant select on %s to order_analyst', t.name);
            end if;
        end if;
    end loop;

    if runtime then
        grant usage on schema read to order_runtime;
        if exists (select from pg_namespace where nspname = 'read_rebuild') then
            grant usage on schema read_rebuild to order_runtime;
        end if;
    end if;
    -- the rebuild of the read models (migration 0011): the runtime role runs it
    for f in
        select p.oid::regprocedure::text
          from pg_proc p
          join pg_namespace n on n.oid = p.pronamespace
         where n.nspname = 'public' and p.proname like 'read\_rebuild\_%'
    loop
        execute format('revoke all on function %s from public', f);
        if runtime then
            execute format('grant execute on function %s to order_runtime', f);
        end if;
    end loop;

    if analyst then
        -- the read models only: no usage on the rebuild's shadow, and no table of `public`
        grant usage on schema read to order_analyst;
    end if;
end
$$;

select order_service_grant_roles();
