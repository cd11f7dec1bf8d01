-- Least privilege (DESIGN §10): the grants of the roles of deploy/postgres/roles.sql on what the
-- migrations create. `order_migrator` runs the migrations and so owns every object;
-- `order_runtime` (the service) and `order_analyst` get exactly what they need, from the one
-- function below.
--
-- Roles that do not exist are skipped: `order-service dev` (an embedded cluster, one superuser)
-- and single-role setups migrate and run as one role that owns everything, and need no grant.
-- Run again, it converges (revokes what is not listed, grants what is), so `order-service
-- migrate` calls it after every run (src/store/mod.rs): objects of later migrations, and roles
-- created after the database was migrated, get their grants without a migration of their own.
create function order_service_grant_roles() returns void
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

-- Owners only: it changes grants.
revoke execute on function order_service_grant_roles() from public;

select order_service_grant_roles();
