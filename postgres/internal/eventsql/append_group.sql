-- Append the pending appends of several callers (a group) in one statement
-- and one commit, each keeping its own outcome: an append whose
-- expectation fails inserts nothing while the others are stored.
--
-- Per append (each to a different stream): $1 stream ids, $2 expected
-- versions (-1 any, -2 stream exists, n >= 0 exactly n), $3 event counts.
-- Per event: $4 its append's 1-based index in $1, $5 the event's 1-based
-- offset in its append, $6 event id, $7 type, $8 schema version, $9 data
-- (JSON text), $10 metadata (JSON text, NULL when empty). Events are
-- inserted in array order, so global positions follow it.
--
-- The head CTE is append_streams.sql's (head rows locked in stream-id
-- order, expectation and order checks), with one difference: an append
-- whose head row is not written (its expectation or order check failed)
-- inserts nothing, because its events are inner-joined to the head rows
-- written, and the statement does not fail. The store runs such appends
-- again on their own to learn why. A failure of the statement as a whole
-- (a duplicate event id, data the server refuses, a deadlock) stores
-- nothing; the store then runs every append on its own.
--
-- The group waits at most 50ms for a lock (lock_timeout, set for this
-- statement's own transaction before the first row is written): a head
-- row, or a new stream's key, that another transaction holds (typically a
-- caller's open transaction that appended to the stream) must not stall
-- every append queued behind the group. A group that times out (SQLSTATE
-- 55P03) stores nothing, and the store runs its appends on their own,
-- where they wait as long as it takes.
--
-- Returns one row per inserted event; an append without rows stored
-- nothing.
WITH head AS (
    INSERT INTO chronicle.streams AS h (stream_id, version, last_transaction_id)
    SELECT s.stream_id, s.n, pg_current_xact_id()
    FROM unnest($1::text[], $2::bigint[], $3::bigint[]) AS s(stream_id, expected, n)
    WHERE (SELECT set_config('lock_timeout', '50ms', true)) IS NOT NULL
      AND (s.expected IN (-1, 0)
           OR (SELECT e.stream_id FROM chronicle.streams e
               WHERE e.stream_id >= s.stream_id ORDER BY e.stream_id LIMIT 1) = s.stream_id)
    ORDER BY s.stream_id
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
