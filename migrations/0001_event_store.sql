-- The event store: the one source of truth (DESIGN §5).
--
-- The first seven columns are the table postgres-es writes (its INSERT names only them). The
-- last four are the log columns every reader tails by; postgres-es leaves them to their
-- defaults. `payload` and `metadata` are jsonb so read-side queries can look inside events.
create table events (
    aggregate_type text        not null,
    aggregate_id   text        not null,
    sequence       bigint      not null,
    event_type     text        not null,
    event_version  text        not null,
    payload        jsonb       not null,
    metadata       jsonb       not null,
    -- the event's identity outside the store: NATS Nats-Msg-Id, CloudEvents ce-id
    event_id       uuid        not null default gen_random_uuid(),
    recorded_at    timestamptz not null default now(),
    -- the writing transaction: readers tail by (tx_id, position) below the oldest running
    -- transaction, so a late commit with a smaller position is never skipped
    tx_id          xid8        not null default pg_current_xact_id(),
    position       bigint      not null generated always as identity,
    -- optimistic concurrency: two writers of the same sequence collide here
    constraint events_pkey primary key (aggregate_type, aggregate_id, sequence),
    constraint events_event_id_key unique (event_id),
    constraint events_sequence_positive check (sequence >= 1)
);

-- the log order every reader follows
create index events_log_idx on events (tx_id, position);

-- one row per log reader (projector, saga reactor, relay): how far it has durably got
create table reader_checkpoints (
    name       text        not null,
    tx_id      xid8        not null default '0',
    position   bigint      not null default 0,
    updated_at timestamptz not null default now(),
    constraint reader_checkpoints_pkey primary key (name)
);
