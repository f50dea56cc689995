-- Move a stream's events from the log into the archive, every column as
-- it is (positions included), in one statement: nothing is half moved.
-- Used by ArchiveStream and DeleteStream, with the head row locked.
--
-- $1 stream id.
WITH moved AS (
    DELETE FROM chronicle.events
    WHERE stream_id = $1
    RETURNING global_position, transaction_id, event_id, stream_id, stream_version,
              event_type, schema_version, data, metadata, recorded_at
)
INSERT INTO chronicle.events_archive (global_position, transaction_id, event_id, stream_id, stream_version,
                                      event_type, schema_version, data, metadata, recorded_at)
SELECT global_position, transaction_id, event_id, stream_id, stream_version,
       event_type, schema_version, data, metadata, recorded_at
FROM moved
