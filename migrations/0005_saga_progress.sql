-- Saga read model (DESIGN §6): one row per order saga with its status and the deadline of the
-- step it waits for. The deadline worker scans the partial index for due rows; the admin API
-- lists sagas by status.
create table read.saga_progress (
    order_id    uuid        not null,
    -- sequence of the last saga event applied (idempotent applies)
    version     bigint      not null,
    status      text        not null,
    -- when the step in flight times out; null when the saga waits for nothing
    deadline_at timestamptz,
    last_event  text        not null,
    -- why the saga needs a human, when it does
    attention   text,
    started_at  timestamptz not null,
    updated_at  timestamptz not null,
    constraint saga_progress_pkey primary key (order_id)
);

create index saga_progress_deadline_idx on read.saga_progress (deadline_at)
    where deadline_at is not null;
create index saga_progress_status_idx on read.saga_progress (status, updated_at desc);
