-- A page of head rows, newest-created first, through
-- streams_created_seq_idx read backward and filtered by prefix.
--
-- $1 prefix ('' for all), $2 created_seq bound (exclusive), $3 limit.
SELECT stream_id, version, created_seq, created_at, updated_at
FROM chronicle.streams
WHERE created_seq < $2 AND starts_with(stream_id, $1)
ORDER BY created_seq DESC
LIMIT $3
