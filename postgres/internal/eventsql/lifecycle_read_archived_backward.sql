-- read_stream_backward.sql on the archive (ReadArchivedStream).
--
-- $1 stream id, $2 highest version, $3 limit (NULL: none).
SELECT global_position, transaction_id, event_id, stream_id, stream_version,
       event_type, schema_version, data, metadata, recorded_at
FROM chronicle.events_archive
WHERE (stream_id, stream_version) <= ($1, $2) AND stream_id >= $1
ORDER BY stream_id DESC, stream_version DESC
LIMIT $3
