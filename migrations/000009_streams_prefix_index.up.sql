-- Stream search by ID prefix (chronicle streams list --prefix, the
-- console's streams page): an index whose operator class compares bytes,
-- so that starts_with(stream_id, $1) becomes a range scan
-- (stream_id ~>=~ 'acct-45' AND stream_id ~<~ 'acct-46') whatever the
-- database's collation (the primary key cannot serve it unless the
-- collation is "C"). It includes created_seq, so that listing a prefix
-- matching many old streams sorts them from the index alone.
-- postgres/internal/eventsql/list_streams.sql explains how a listing uses
-- it; docs/ui.md has the plans before and after.
--
-- Not built CONCURRENTLY: that waits for every transaction open in the
-- database, including other processes waiting for the migration lock this
-- one holds (a deadlock). The build blocks appends that create a stream
-- or move a stream's head for its duration: 7.3 s for a million streams
-- on a 2-core machine under heavy load, so plan the upgrade of a large
-- store for a quiet moment.
CREATE INDEX IF NOT EXISTS streams_stream_id_prefix_idx
    ON chronicle.streams (stream_id text_pattern_ops) INCLUDE (created_seq);
