-- The statement trigger that sent `NOTIFY events_appended` from inside every appending
-- transaction serialized all of them: PostgreSQL holds one database-wide lock on the
-- notification queue from a notifying transaction's pre-commit until its commit has been
-- flushed, so appends could never share a WAL flush (measured: ~900 single-event commands/s,
-- most backends waiting on `Lock:object`). The process that appends now wakes its own readers
-- directly and notifies other processes once per burst, outside any writing transaction
-- (src/log/wake.rs).
drop trigger events_appended on events;
drop function notify_events_appended();
