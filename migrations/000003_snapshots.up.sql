-- The latest snapshot of each stream: an aggregate's state encoded as of a
-- stream version. Snapshots are a cache that the events can always rebuild;
-- deleting rows (or truncating the table) only makes loads slower.
-- Writers keep the row with the highest stream_version (an upsert that only
-- replaces an older or equal version), so a slow writer cannot put an older
-- snapshot back.
CREATE TABLE chronicle.snapshots (
    stream_id      text        NOT NULL,
    aggregate_type text        NOT NULL,
    stream_version bigint      NOT NULL,
    schema_version integer     NOT NULL,
    data           bytea       NOT NULL,
    taken_at       timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT snapshots_pkey PRIMARY KEY (stream_id),
    CONSTRAINT snapshots_stream_version_check CHECK (stream_version > 0),
    CONSTRAINT snapshots_schema_version_check CHECK (schema_version > 0)
);
