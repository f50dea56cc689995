-- A page of a stream's records, backward from a version.
--
-- $1 stream id, $2 highest version, $3 limit, at most 1000 (ReadStreamMaxPage).
--
-- The WHERE is "from (stream, version) up to the end of the stream" on
-- events_stream_version_key, written as a row comparison bounded by the
-- stream id rather than as stream_id = $1: with the ORDER BY on the index
-- columns and the LIMIT, the planner picks the index at every table size.
-- The obvious form, planned while the table fits in a page or two, is a
-- sequential scan and a sort, and a prepared statement keeps that plan as
-- the table grows (until the next ANALYZE).
--
-- The literal inner LIMIT (ReadStreamMaxPage: the store splits longer
-- reads) bounds the cost of the statement's generic plan at any table size,
-- as in read_all.sql: with only LIMIT $3, a generic plan costs the page as
-- 10% of the rows the range may match, which grows with the table and
-- crosses jit_above_cost at about 10 million events. The outer ORDER BY
-- repeats the inner one and adds no sort node.
SELECT global_position, transaction_id, event_id, stream_id, stream_version,
       event_type, schema_version, data, metadata, recorded_at
FROM (
    SELECT global_position, transaction_id, event_id, stream_id, stream_version,
           event_type, schema_version, data, metadata, recorded_at
    FROM chronicle.events
    WHERE (stream_id, stream_version) <= ($1, $2) AND stream_id >= $1
    ORDER BY stream_id DESC, stream_version DESC
    LIMIT 1000
) AS page
ORDER BY stream_id DESC, stream_version DESC
LIMIT $3
