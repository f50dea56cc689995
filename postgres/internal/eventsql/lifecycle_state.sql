-- A stream's lifecycle state, without a lock: what StreamState returns,
-- and what a read that found no event (or no live head row) checks to
-- tell an archived or hard-deleted stream from an empty one. No row when
-- the stream does not exist. Run unprepared, like lifecycle_lock.sql.
--
-- $1 stream id. Returns (version, status, truncated_before).
SELECT version, status, truncated_before
FROM chronicle.streams
WHERE stream_id = $1
