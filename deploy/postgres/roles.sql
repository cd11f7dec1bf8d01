-- The order service's database roles (DESIGN §10), cluster-wide. Idempotent: run it as a
-- superuser or a role with CREATEROLE whenever it changes, e.g.
--   psql "$ADMIN_URL" -v ON_ERROR_STOP=1 -f deploy/postgres/roles.sql
-- then, in each database of the service, deploy/postgres/database.sql.
--
-- * order_migrator: owns the schema (tables, views, functions) and runs the migrations
--   (`order-service migrate` with its DATABASE_URL). Nothing else connects as it.
-- * order_runtime: the service (`order-service serve`). Reads and writes the tables it keeps,
--   may only read and append `events`, owns nothing and cannot run DDL. Its grants are made by
--   the migrations (migration 0010, `order_service_grant_roles()`), on the objects they create.
-- * order_analyst: reads the read models (schema `read`) and nothing else.
--
-- No password is set here: they do not belong in a repository. The operator sets them once,
-- out of band, e.g. from psql (`\password order_runtime` sends only a hash), or
--   alter role order_runtime password 'SCRAM-SHA-256$4096:...';
-- with a verifier made elsewhere, or uses certificate / IAM authentication instead.
-- A role without a password cannot log in over password authentication.

do $$
declare
    r text;
begin
    foreach r in array array['order_migrator', 'order_runtime', 'order_analyst'] loop
        if not exists (select from pg_roles where rolname = r) then
            -- Concurrent runs (the tests of several processes) may race between the check and
            -- the create: the loser sees duplicate_object and finds the role there.
            begin
                execute format('create role %I', r);
            exception
                when duplicate_object or unique_violation then null;
            end;
        end if;
    end loop;
end
$$;

-- Login roles without special powers (`create role` makes them neither superuser nor
-- replication nor bypassrls; naming those needs a superuser, so a CREATEROLE admin can run this
-- file too). Set again on every run, so a role someone changed by hand converges back.
-- `noinherit` on the service's and the analyst's roles: they never act with the privileges of
-- a role they might be granted by mistake.
alter role order_migrator login nocreatedb nocreaterole inherit;
alter role order_runtime  login nocreatedb nocreaterole noinherit;
alter role order_analyst  login nocreatedb nocreaterole noinherit;

-- A stuck session of the service must not hold back every log reader's snapshot horizon
-- (DESIGN §5); the service sets the same per connection, this covers other clients.
alter role order_runtime set idle_in_transaction_session_timeout = '30s';
-- An analyst's ad-hoc query is bounded, so it cannot hold locks a rebuild's swap waits for.
alter role order_analyst set statement_timeout = '5min';
alter role order_analyst set idle_in_transaction_session_timeout = '5min';
