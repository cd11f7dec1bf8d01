-- Email notifications (DESIGN §13): the outbox. The notifier log reader inserts one row per
-- notifiable order event in the same transaction as its checkpoint (so each event is queued
-- exactly once: `event_id` is unique); the sender claims due `pending` rows with
-- `for update skip locked` (replicas share the work), delivers them over SMTP and marks them
-- `sent`, or `failed` on a permanent refusal (kept for the admin listing), or reschedules them.
create table notifications (
    id              bigint      generated always as identity,
    order_id        uuid        not null,
    -- the order event that caused it; also the email's Message-ID
    event_id        uuid        not null,
    -- what happened: confirmed, rejected, ready_for_pickup, picked_up, shipped, delivered,
    -- cancelled
    kind            text        not null,
    recipient       text        not null,
    -- the store's name when the event was queued: the sender's display name
    sender_name     text        not null,
    -- rendered when queued, so a later catalog change does not rewrite a sent email
    subject         text        not null,
    body_text       text        not null,
    body_html       text        not null,
    status          text        not null default 'pending',
    -- delivery attempts made so far
    attempts        integer     not null default 0,
    next_attempt_at timestamptz not null default now(),
    last_error      text,
    created_at      timestamptz not null default now(),
    sent_at         timestamptz,
    constraint notifications_pkey primary key (id),
    constraint notifications_event_id_key unique (event_id),
    constraint notifications_status_known check (status in ('pending', 'sent', 'failed'))
);

-- the sender's scan: due pending rows, oldest first
create index notifications_due_idx on notifications (next_attempt_at) where status = 'pending';
-- the admin listing: by status, newest first
create index notifications_status_idx on notifications (status, created_at desc);

-- the runtime role inserts, claims and updates rows (order_service_grant_roles, 0010)
select order_service_grant_roles();
