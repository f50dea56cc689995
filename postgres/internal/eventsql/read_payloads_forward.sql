-- read_stream_forward.sql with only the columns rehydrating an aggregate
-- uses (ReadStreamPayloads): less than half the bytes for small events.
--
-- $1 stream id, $2 first version, $3 limit, at most 1000 (ReadStreamMaxPage).
--
-- The literal inner LIMIT (ReadStreamMaxPage: the store splits longer
-- reads) bounds the cost of the statement's generic plan at any table size,
-- as in read_all.sql: with only LIMIT $3, a generic plan costs the page as
-- 10% of the rows the range may match, which grows with the table and
-- crosses jit_above_cost at about 10 million events. The outer ORDER BY
-- repeats the inner one and adds no sort node.
SELECT stream_version, event_type, schema_version, data
FROM (
    SELECT stream_id, stream_version, event_type, schema_version, data
    FROM chronicle.events
    WHERE (stream_id, stream_version) >= ($1, $2) AND stream_id <= $1
    ORDER BY stream_id, stream_version
    LIMIT 1000
) AS page
ORDER BY stream_id, stream_version
LIMIT $3
