-- One head row per stream: its current version and the id of the
-- transaction that last appended to it. Every append updates its stream's
-- row in the same statement that inserts the events (INSERT … ON CONFLICT
-- DO UPDATE), so concurrent writers to one stream queue on that row's lock
-- instead of failing: an append with expected version Any (or
-- StreamExists, once the stream exists) then never reports a concurrency
-- conflict. The current-version check is a primary-key lookup whose plan
-- cannot change as tables grow. events_stream_version_key stays as the
-- safety net. docs/postgres.md explains the columns.
--
-- Only id-ordered columns are indexed besides the primary key, and appends
-- update none of them, so the update of a head row is a HOT update (no
-- index entry) whenever its page has room: hence the fill factor.
CREATE TABLE chronicle.streams (
    stream_id           text        NOT NULL,
    version             bigint      NOT NULL,
    last_transaction_id xid8        NOT NULL,
    created_seq         bigint      GENERATED ALWAYS AS IDENTITY,
    created_at          timestamptz NOT NULL DEFAULT statement_timestamp(),
    updated_at          timestamptz NOT NULL DEFAULT statement_timestamp(),
    CONSTRAINT streams_pkey PRIMARY KEY (stream_id),
    CONSTRAINT streams_version_check CHECK (version > 0)
) WITH (fillfactor = 70);

-- Newest-created first, for listing streams (chronicle streams list, the
-- console).
CREATE INDEX streams_created_seq_idx ON chronicle.streams (created_seq);

-- Existing events: one row per stream, in the order the streams were
-- created. Writers are locked out until this migration commits, so no
-- append can slip between the scan and the new table. Stop processes
-- running an older Chronicle before applying it: they append without
-- updating the head rows (see docs/postgres.md, "Upgrading").
LOCK TABLE chronicle.events IN SHARE MODE;
INSERT INTO chronicle.streams (stream_id, version, last_transaction_id, created_at, updated_at)
SELECT stream_id, max(stream_version), max(transaction_id), min(recorded_at), max(recorded_at)
FROM chronicle.events
GROUP BY stream_id
ORDER BY min(transaction_id), min(global_position);
