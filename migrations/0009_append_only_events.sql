-- The log is append-only, for everyone (DESIGN §10): `events` is the source of truth and the
-- outbox, and every reader's checkpoint points into it, so a changed or removed event would
-- silently rewrite history that projections, sagas and NATS subscribers have already acted on.
-- The runtime role is not even granted update, delete or truncate (migration 0010); this
-- trigger also stops the owner, a superuser's slip and a `truncate` of several tables at once.
-- Dropping it takes a migration.
--
-- The service only ever inserts (`src/store/append.rs`, `on conflict do nothing`, which fires
-- no update trigger); postgres-es's event-store mode only inserts too.
create function refuse_events_change() returns trigger
language plpgsql as $$
begin
    raise exception 'events are append-only: % on events is refused', tg_op
        using errcode = 'restrict_violation',
              detail = 'The event log is the source of truth; no event is ever changed or removed.',
              hint = 'Record the correction as a new event.';
end
$$;

-- Per statement, not per row: the statement is refused whether it would touch rows or none,
-- and an insert (the hot path) fires nothing.
create trigger events_append_only
    before update or delete or truncate on events
    for each statement execute function refuse_events_change();

-- `always`: it fires under `session_replication_role = replica` too (as restores and logical
-- replication run), which would otherwise skip it.
alter table events enable always trigger events_append_only;
