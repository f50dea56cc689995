-- read_stream_backward.sql with only the columns rehydrating an aggregate
-- uses (ReadStreamPayloads).
--
-- $1 stream id, $2 highest version, $3 limit, at most 1000 (ReadStreamMaxPage).
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
    WHERE (stream_id, stream_version) <= ($1, $2) AND stream_id >= $1
    ORDER BY stream_id DESC, stream_version DESC
    LIMIT 1000
) AS page
ORDER BY stream_id DESC, stream_version DESC
LIMIT $3
