-- Reverting drops the archive, with the events of every archived and
-- soft-deleted stream, and reopens closed streams: hard-deleted streams
-- keep no events, but could then be appended to again. Restore the
-- streams you want to keep before migrating down.
DROP TABLE IF EXISTS chronicle.events_archive;
ALTER TABLE chronicle.streams
    DROP CONSTRAINT IF EXISTS streams_truncated_before_check,
    DROP CONSTRAINT IF EXISTS streams_status_check;
UPDATE chronicle.streams
SET last_transaction_id = pg_current_xact_id()
WHERE status <> 'live';
ALTER TABLE chronicle.streams
    DROP COLUMN IF EXISTS status_changed_at,
    DROP COLUMN IF EXISTS truncated_before,
    DROP COLUMN IF EXISTS status;
