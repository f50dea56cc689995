-- A stream's current version, from its head row; no row when the stream
-- does not exist or is not live (the store then reads lifecycle_state.sql
-- to say why). Read as "the first key at or after the stream id" so that
-- the plan uses the primary key at every table size.
--
-- $1 stream id.
SELECT h.version
FROM (SELECT stream_id, version, status FROM chronicle.streams
      WHERE stream_id >= $1 ORDER BY stream_id LIMIT 1) h
WHERE h.stream_id = $1 AND h.status = 'live'
