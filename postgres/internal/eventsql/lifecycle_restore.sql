-- Move a stream's events from the archive back into the log with their
-- positions and transaction ids (OVERRIDING SYSTEM VALUE keeps
-- global_position), in one statement. Used by RestoreStream, with the head
-- row locked. A restored event sorts where it always did in the global
-- order: tailers already past it do not read it again.
--
-- $1 stream id.
WITH moved AS (
    DELETE FROM chronicle.events_archive
    WHERE stream_id = $1
    RETURNING global_position, transaction_id, event_id, stream_id, stream_version,
              event_type, schema_version, data, metadata, recorded_at
)
INSERT INTO chronicle.events (global_position, transaction_id, event_id, stream_id, stream_version,
                              event_type, schema_version, data, metadata, recorded_at)
OVERRIDING SYSTEM VALUE
SELECT global_position, transaction_id, event_id, stream_id, stream_version,
       event_type, schema_version, data, metadata, recorded_at
FROM moved
