-- Append one event to one stream: the most common append (one command, one
-- event), with scalar parameters instead of arrays.
--
-- $1 stream id, $2 expected version (-1 any, -2 stream exists, n >= 0
-- exactly n), $3 event id, $4 type, $5 schema version, $6 data (JSON text),
-- $7 metadata (JSON text, NULL when empty).
--
-- The head CTE moves the stream's head row (chronicle.streams) by one
-- version, and only if the expectation holds (see append_one.sql for the
-- whole explanation); the event is inserted at the new version. No row is
-- returned when the expectation or the order check failed.
WITH head AS (
    INSERT INTO chronicle.streams AS h (stream_id, version, last_transaction_id)
    SELECT $1, 1, pg_current_xact_id()
    WHERE $2::bigint IN (-1, 0)
       OR (SELECT s.stream_id FROM chronicle.streams s
           WHERE s.stream_id >= $1 ORDER BY s.stream_id LIMIT 1) = $1
    ON CONFLICT (stream_id) DO UPDATE
    SET version = h.version + 1,
        last_transaction_id = excluded.last_transaction_id,
        updated_at = excluded.updated_at
    WHERE h.last_transaction_id <= excluded.last_transaction_id
      AND ($2::bigint < 0 OR h.version = $2::bigint)
    RETURNING h.version
)
INSERT INTO chronicle.events (event_id, stream_id, stream_version, event_type, schema_version, data, metadata)
SELECT $3::uuid, $1, head.version, $4::text, $5::int, $6::text::jsonb, $7::text::jsonb
FROM head
RETURNING stream_version, global_position, transaction_id
