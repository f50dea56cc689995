CREATE SCHEMA IF NOT EXISTS chronicle;

-- One table holds every event; docs/postgres.md explains each column and
-- index.
--
-- (stream_id, stream_version) is the optimistic-concurrency check: two
-- writers cannot both store version N of a stream, and the loser gets a
-- unique violation that the store reports as a concurrency conflict. Its
-- index also serves stream reads and the current-version probe.
--
-- event_id makes retried appends idempotent: the store recognises an append
-- whose event IDs are already stored and returns the original result.
--
-- (transaction_id, global_position), the primary key, is the gap-safe
-- global order. Each row records the id of the transaction that wrote it;
-- readers only return rows whose transaction_id is below the oldest
-- transaction still running (pg_snapshot_xmin of the current snapshot), so
-- a transaction that commits late can never be skipped. global_position
-- orders the rows of one transaction. Nothing looks rows up by
-- global_position alone, so it has no index of its own (one index less to
-- maintain on every insert).
--
-- There is deliberately no NOTIFY trigger: a NOTIFY takes a cluster-wide
-- lock at commit, which serialises concurrent appends. The store sends its
-- own rate-limited notifications after its appends commit (see
-- postgres/store_watch.go).
CREATE TABLE chronicle.events (
    global_position bigint      GENERATED ALWAYS AS IDENTITY,
    transaction_id  xid8        NOT NULL DEFAULT pg_current_xact_id(),
    event_id        uuid        NOT NULL,
    stream_id       text        NOT NULL,
    stream_version  bigint      NOT NULL,
    event_type      text        NOT NULL,
    schema_version  integer     NOT NULL DEFAULT 1,
    data            jsonb       NOT NULL,
    metadata        jsonb,
    recorded_at     timestamptz NOT NULL DEFAULT statement_timestamp(),
    CONSTRAINT events_pkey PRIMARY KEY (transaction_id, global_position),
    CONSTRAINT events_stream_version_key UNIQUE (stream_id, stream_version),
    CONSTRAINT events_event_id_key UNIQUE (event_id),
    CONSTRAINT events_stream_version_check CHECK (stream_version > 0),
    CONSTRAINT events_schema_version_check CHECK (schema_version > 0)
);
