-- read_stream_forward.sql with only the columns rehydrating an aggregate
-- uses (ReadStreamPayloads): less than half the bytes for small events.
--
-- $1 stream id, $2 first version, $3 limit (NULL: none).
SELECT stream_version, event_type, schema_version, data
FROM chronicle.events
WHERE (stream_id, stream_version) >= ($1, $2) AND stream_id <= $1
ORDER BY stream_id, stream_version
LIMIT $3
