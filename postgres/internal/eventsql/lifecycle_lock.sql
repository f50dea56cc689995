-- Lock a stream's head row for a lifecycle operation (delete, truncate,
-- archive, restore) and read its state. The lock is the one every append
-- to the stream takes (its INSERT ... ON CONFLICT DO UPDATE of the head
-- row): appends wait until the operation's transaction ends, then see its
-- result. No row when the stream does not exist. Run unprepared (planned
-- with the stream id), so the plan is the primary key at every size.
--
-- $1 stream id. Returns (version, status, truncated_before).
SELECT version, status, truncated_before
FROM chronicle.streams
WHERE stream_id = $1
FOR UPDATE
