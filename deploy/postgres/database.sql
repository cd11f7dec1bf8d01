-- Per database: what the order service's roles (roles.sql) may do in the database it is run in.
-- Idempotent: run it, connected to that database, as its owner or a superuser, after roles.sql
-- and before the first migration, e.g.
--   psql "postgres://admin@db/orders" -v ON_ERROR_STOP=1 -f deploy/postgres/database.sql
--
-- The grants on tables, views and functions are not here: the migrations make them on what
-- they create (migration 0010, `order_service_grant_roles()`), so that a database migrated by
-- the migrator is at once usable by the service, and every later migration's objects too.

do $$
begin
    -- create: the migrations create schemas (`read`), and so does the rebuild of the read
    -- models, through functions the migrator owns (migration 0011)
    execute format('grant connect, create, temporary on database %I to order_migrator',
                   current_database());
    execute format('grant connect on database %I to order_runtime, order_analyst',
                   current_database());
end
$$;

-- Before PostgreSQL 15 everybody may create objects in `public`; only the migrator may.
revoke create on schema public from public;
grant usage, create on schema public to order_migrator;
-- The service's tables live in `public`. The analyst reaches nothing there: no table or view
-- of `public` is granted to it (nor, by default, to anyone but the migrator), only `read.*`.
grant usage on schema public to order_runtime;
