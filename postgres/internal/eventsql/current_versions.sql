-- Why an append wrote nothing: each stream's current version (0 when it
-- does not exist) and whether its last append sorts before anything this
-- transaction writes (see append_one.sql). A transaction that has no id
-- yet gets one larger than every committed one, so it passes; so does a
-- stream that was never appended to.
--
-- The head row is read as "the first key at or after the stream id" (see
-- the package documentation) so that the plan uses the primary key at every
-- table size.
--
-- A stream that is not live (deleted, archived, hard-deleted) refuses
-- every append (see lifecycle_set.sql); its status says why.
--
-- $1 stream ids. Returns (1-based index in $1, version, ordered, status).
SELECT s.idx, coalesce(h.version, 0),
       coalesce(h.last_transaction_id <= pg_current_xact_id_if_assigned(), true),
       coalesce(h.status, 'live')
FROM unnest($1::text[]) WITH ORDINALITY AS s(stream_id, idx)
LEFT JOIN LATERAL (
    SELECT h.version, h.last_transaction_id, h.stream_id, h.status FROM chronicle.streams h
    WHERE h.stream_id >= s.stream_id ORDER BY h.stream_id LIMIT 1
) h ON h.stream_id = s.stream_id
