-- An admin may send a failed notification back to the queue (POST
-- /v1/admin/notifications/{id}/retry), e.g. once the SMTP relay or the mailbox is fixed. The
-- sender's retry window (APP__NOTIFY__RETRY_FOR_SECS) then counts from that moment, not from
-- when the event was first queued.
alter table notifications add column requeued_at timestamptz;
