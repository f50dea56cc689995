-- A page of head rows, newest-created first, whose stream IDs start with a
-- prefix ('' for all), with a cost bounded by the index fitting the
-- prefix rather than by the number of streams.
--
-- $1 prefix ('' for all), $2 created_seq bound (exclusive), $3 limit.
--
-- hits: the newest 5,000 head rows below the bound, walked backward on
-- streams_created_seq_idx and filtered by prefix. When the prefix is
-- common (or empty) the page is found here after a few rows, and the
-- answer is exact: the window is the start of the newest-first order.
--
-- older: only when hits is not a full page (a rare prefix, or the last
-- page), the whole answer again, this time over every row below the bound.
-- Its ORDER BY is on an expression that no index provides, so the planner
-- cannot walk streams_created_seq_idx hoping to meet matching rows soon
-- (with stream IDs that grow with time, such as order-1, order-2, …, it
-- would read most of the table). It picks between the range of
-- streams_stream_id_prefix_idx (migration 000009) that the prefix gives
-- and the range of streams_created_seq_idx that the bound gives, from
-- their estimated sizes, then sorts what it read. The bound and the prefix
-- are planned as values: the store runs this statement unnamed.
--
-- Exactly one of the two branches runs (each is behind a one-time filter
-- on the count of hits); the outer ORDER BY sorts at most $3 rows.
WITH hits AS (
    SELECT stream_id, version, created_seq, created_at, updated_at, status
    FROM (
        SELECT stream_id, version, created_seq, created_at, updated_at, status
        FROM chronicle.streams
        WHERE created_seq < $2
        ORDER BY created_seq DESC
        LIMIT 1000
    ) newest
    WHERE starts_with(stream_id, $1)
    ORDER BY created_seq DESC
    LIMIT $3
)
SELECT stream_id, version, created_seq, created_at, updated_at, status
FROM hits
WHERE (SELECT count(*) FROM hits) >= $3
UNION ALL
SELECT s.stream_id, s.version, s.created_seq, s.created_at, s.updated_at, s.status
FROM (
    SELECT stream_id
    FROM chronicle.streams
    WHERE created_seq < $2 AND starts_with(stream_id, $1)
    ORDER BY created_seq + 0 DESC
    LIMIT $3
) older
JOIN chronicle.streams s USING (stream_id)
WHERE (SELECT count(*) FROM hits) < $3
ORDER BY created_seq DESC
