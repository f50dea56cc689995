-- Remove every trace of a stream's events for good: in the log, in the
-- archive, and its snapshot (state derived from them). Used by
-- HardDeleteStream, with the head row locked; the head row stays as the
-- tombstone. Data-modifying CTEs always run to completion.
--
-- $1 stream id.
WITH events AS (
    DELETE FROM chronicle.events WHERE stream_id = $1
), archived AS (
    DELETE FROM chronicle.events_archive WHERE stream_id = $1
), snapshots AS (
    DELETE FROM chronicle.snapshots WHERE stream_id = $1
)
SELECT 1
