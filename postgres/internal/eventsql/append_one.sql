-- Append events to one stream.
--
-- $1 stream id, $2 expected version (-1 any, -2 stream exists, n >= 0
-- exactly n), then one array element per event: $3 event id, $4 type,
-- $5 schema version, $6 data (JSON text), $7 metadata (JSON text, NULL
-- when empty).
--
-- The head CTE inserts the stream's head row (a new stream) or updates it
-- (an existing one) by the number of events:
--   - A new stream is created only when the expectation allows it (any, no
--     stream). For stream exists and exact n, the row is only proposed when
--     the stream exists, so that the conflict path below checks it. That
--     lookup is written "the first key at or after the stream id" so that
--     its plan uses the primary key at every table size (see the package
--     documentation).
--   - An existing stream's row is locked (a concurrent writer waits here
--     until the one before it commits, then sees its version: with any,
--     writers queue instead of failing) and updated only when the
--     expectation holds against the version it now has, and when its last
--     append sorts before this one in the global order (transaction_id,
--     global_position): the transaction that last appended must not have a
--     larger id than this one. Only a transaction that took its id before
--     the other took the lock fails that check; a new transaction (a
--     retry) passes it.
-- The events are then numbered from the head's previous version. When the
-- head row was not written, nothing is inserted and no row is returned; the
-- store then reads why (current_versions.sql).
WITH head AS (
    INSERT INTO chronicle.streams AS h (stream_id, version, last_transaction_id)
    SELECT $1, cardinality($3::uuid[]), pg_current_xact_id()
    WHERE $2::bigint IN (-1, 0)
       OR (SELECT s.stream_id FROM chronicle.streams s
           WHERE s.stream_id >= $1 ORDER BY s.stream_id LIMIT 1) = $1
    ON CONFLICT (stream_id) DO UPDATE
    SET version = h.version + excluded.version,
        last_transaction_id = excluded.last_transaction_id,
        updated_at = excluded.updated_at
    WHERE h.last_transaction_id <= excluded.last_transaction_id
      AND ($2::bigint < 0 OR h.version = $2::bigint)
    RETURNING h.version - cardinality($3::uuid[]) AS base
)
INSERT INTO chronicle.events (event_id, stream_id, stream_version, event_type, schema_version, data, metadata)
SELECT n.event_id, $1, head.base + n.ord, n.event_type, n.schema_version, n.data::jsonb, n.metadata::jsonb
FROM head, unnest($3::uuid[], $4::text[], $5::int[], $6::text[], $7::text[])
     WITH ORDINALITY AS n(event_id, event_type, schema_version, data, metadata, ord)
RETURNING stream_version, global_position, transaction_id
