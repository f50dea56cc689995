-- Append the pending appends of several callers (a group) in one statement
-- and one commit, each keeping its own outcome: an append whose
-- expectation fails inserts nothing while the others are stored.
--
-- Per append (each to a different stream): $1 stream ids, $2 expected
-- versions (-1 any, -2 stream exists, n >= 0 exactly n), $3 event counts.
-- Per event: $4 its append's 1-based index in $1, $5 the event's 1-based
-- offset in its append, $6 event id, $7 type, $8 schema version, $9 data
-- (JSON text), $10 metadata (JSON text, NULL when empty). Events are
-- inserted in array order.
--
-- The head CTE is append_streams.sql's, with two differences:
--   - A stream whose head row another transaction holds locked is left out
--     (FOR UPDATE SKIP LOCKED): the group never waits for another writer's
--     transaction, so one slow writer cannot stall its neighbours; the
--     store runs the left-out append again on its own, where it queues.
--     The row is found with a range on the primary key ordered and limited
--     to one row, for the plan (see the package documentation).
--   - An append whose head row is not written (left out, or its
--     expectation or order check failed) inserts nothing: its events are
--     inner-joined to the head rows written. The statement does not fail;
--     the store runs such appends again on their own to learn why.
-- Returns one row per inserted event; an append without rows stored
-- nothing.
WITH input AS (
    SELECT s.stream_id, s.expected, s.n,
           (SELECT e.stream_id FROM chronicle.streams e
            WHERE e.stream_id >= s.stream_id ORDER BY e.stream_id LIMIT 1) = s.stream_id AS found,
           (SELECT e.stream_id FROM chronicle.streams e
            WHERE e.stream_id >= s.stream_id AND e.stream_id <= s.stream_id
            ORDER BY e.stream_id LIMIT 1 FOR UPDATE SKIP LOCKED) AS locked
    FROM unnest($1::text[], $2::bigint[], $3::bigint[]) AS s(stream_id, expected, n)
), head AS (
    INSERT INTO chronicle.streams AS h (stream_id, version, last_transaction_id)
    SELECT i.stream_id, i.n, pg_current_xact_id()
    FROM input i
    WHERE i.locked IS NOT NULL
       OR (i.found IS NOT TRUE AND i.expected IN (-1, 0))
    ORDER BY i.stream_id
    ON CONFLICT (stream_id) DO UPDATE
    SET version = h.version + excluded.version,
        last_transaction_id = excluded.last_transaction_id,
        updated_at = excluded.updated_at
    WHERE h.last_transaction_id <= excluded.last_transaction_id
      AND (($2::bigint[])[array_position($1::text[], h.stream_id)] < 0
           OR h.version = ($2::bigint[])[array_position($1::text[], h.stream_id)])
    RETURNING h.stream_id, h.version - ($3::bigint[])[array_position($1::text[], h.stream_id)] AS base
)
INSERT INTO chronicle.events (event_id, stream_id, stream_version, event_type, schema_version, data, metadata)
SELECT n.event_id, s.stream_id, head.base + n.pos,
       n.event_type, n.schema_version, n.data::jsonb, n.metadata::jsonb
FROM unnest($4::int[], $5::bigint[], $6::uuid[], $7::text[], $8::int[], $9::text[], $10::text[])
     WITH ORDINALITY AS n(stream_idx, pos, event_id, event_type, schema_version, data, metadata, ord)
JOIN unnest($1::text[]) WITH ORDINALITY AS s(stream_id, idx) ON s.idx = n.stream_idx
JOIN head ON head.stream_id = s.stream_id
ORDER BY n.ord
RETURNING stream_id, stream_version, global_position, transaction_id
