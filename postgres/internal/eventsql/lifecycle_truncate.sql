-- Remove a live stream's events before a version, for good. Used by
-- TruncateStream, with the head row locked.
--
-- $1 stream id, $2 the first version kept.
DELETE FROM chronicle.events
WHERE stream_id = $1 AND stream_version < $2
