-- The rebuild of the read models (src/read_models/rebuild.rs) fills a shadow schema
-- `read_rebuild` and swaps it in for `read`: creating and renaming schemas is DDL, which the
-- runtime role may not run. The DDL moves into these three functions, owned by the migrator
-- and run with its rights (`security definer`); the runtime role may only execute them. They
-- take no names from the caller: every statement is made from the catalog's description of
-- `read`, so all a caller can do is what a rebuild does.
--
-- Why not shadow tables kept by a migration and no DDL at all: the swap would have to copy the
-- rebuilt rows into the live tables (and their indexes) while holding them, seconds during which
-- every read of the read models waits, instead of two renames; and the shadow would have to
-- carry all its indexes through the replay instead of building them once after it.
--
-- `search_path` is pinned so that nothing a caller creates can stand in for what is named here.

-- Step 1: an empty shadow of every read model: columns, defaults and checks of the live tables,
-- and only the indexes the replay needs (its primary keys, unique indexes and their `on
-- conflict` targets); grants as on the live tables, the analyst's excepted.
create function read_rebuild_prepare() returns void
language plpgsql security definer
set search_path = pg_catalog, pg_temp
as $$
declare
    t text;
begin
    if not exists (select from pg_tables where schemaname = 'read') then
        raise exception 'no read models in schema read: run the migrations first';
    end if;
    drop schema if exists read_rebuild cascade;
    create schema read_rebuild;
    for t in select tablename from pg_tables where schemaname = 'read' order by tablename loop
        execute format(
            'create table read_rebuild.%I (like read.%I including all excluding indexes)', t, t);
    end loop;
    perform public.read_rebuild_create_indexes(true);
    perform public.order_service_grant_roles();
end
$$;

-- Steps 1 and 2b: the live read models' indexes and constraints, same names and definitions, on
-- the shadow tables: those the replay needs (`for_the_replay`), or the others, built once over
-- the finished tables (cheaper than keeping them up to date through the replay's updates).
-- `maintenance_work_mem`: a trigram GIN build flushes its entries, and a btree build sorts on
-- disk, whenever it runs out; on the seeded 100k orders the builds fit the 64MB default (16, 64
-- and 256MB built the search index equally fast, about 2.3 s); this leaves room for larger read
-- models, one rebuild (and one index) at a time.
create function read_rebuild_create_indexes(for_the_replay boolean) returns void
language plpgsql security definer
set search_path = pg_catalog, pg_temp
set maintenance_work_mem = '256MB'
as $$
declare
    i record;
    live text;
begin
    if not exists (select from pg_namespace where nspname = 'read_rebuild') then
        raise exception 'no shadow read models: call read_rebuild_prepare() first';
    end if;
    for i in
        select t.relname::text as tbl, x_class.relname::text as name,
               pg_get_indexdef(x.indexrelid) as definition,
               pg_get_constraintdef(c.oid) as con, x.indisunique as is_unique
          from pg_index x
          join pg_class t on t.oid = x.indrelid
          join pg_class x_class on x_class.oid = x.indexrelid
          join pg_namespace n on n.oid = t.relnamespace
          left join pg_constraint c
                 on c.conindid = x.indexrelid and c.conrelid = x.indrelid
                and c.contype in ('p', 'u', 'x')
         where n.nspname = 'read' and t.relkind = 'r'
         order by t.relname, x_class.relname
    loop
        continue when (i.con is not null or i.is_unique) <> for_the_replay;
        if i.con is not null then
            execute format('alter table read_rebuild.%I add constraint %I %s',
                           i.tbl, i.name, i.con);
        else
            -- `CREATE [UNIQUE] INDEX <name> ON read.<table> USING ...`: the table is always
            -- named schema-qualified, exactly once
            live := format(' ON read.%s ', quote_ident(i.tbl));
            if (length(i.definition) - length(replace(i.definition, live, '')))
                / length(live) <> 1 then
                raise exception 'unexpected definition of index %: %', i.name, i.definition;
            end if;
            execute replace(i.definition, live, format(' ON read_rebuild.%s ', quote_ident(i.tbl)));
        end if;
    end loop;
end
$$;

-- Step 3: the swap. The caller's transaction holds the live tables (`lock table ... in access
-- exclusive mode`), has caught the shadow up to the projector's checkpoint and pointed the
-- checkpoint at it; this renames the schemas, drops the old read models and grants the
-- analyst its reads of the new ones. Refused unless the shadow has exactly the live tables.
create function read_rebuild_swap() returns void
language plpgsql security definer
set search_path = pg_catalog, pg_temp
as $$
begin
    if not exists (select from pg_namespace where nspname = 'read_rebuild') then
        raise exception 'no shadow read models to swap in: call read_rebuild_prepare() first';
    end if;
    if exists (
        (select tablename from pg_tables where schemaname = 'read'
         except select tablename from pg_tables where schemaname = 'read_rebuild')
        union all
        (select tablename from pg_tables where schemaname = 'read_rebuild'
         except select tablename from pg_tables where schemaname = 'read')
    ) then
        raise exception 'the shadow read models are not the live ones: not swapped';
    end if;
    alter schema read rename to read_old;
    alter schema read_rebuild rename to read;
    drop schema read_old cascade;
    perform public.order_service_grant_roles();
end
$$;

-- The service's runtime role runs the rebuild (granted by `order_service_grant_roles()`, as
-- every `read_rebuild_*` function); no one else needs to.
revoke execute on function read_rebuild_prepare() from public;
revoke execute on function read_rebuild_create_indexes(boolean) from public;
revoke execute on function read_rebuild_swap() from public;
select order_service_grant_roles();
