-- Stream lifecycle: soft delete, truncation, hard delete and archiving
-- (see docs/operations.md, "Retention", and docs/postgres.md).
--
-- Each head row in chronicle.streams gains a status and a truncation
-- point. A stream that is not live (soft-deleted, archived or
-- hard-deleted) is closed to appends by its last_transaction_id: it is set
-- to the largest xid8, so the order check that every append statement
-- already makes on the head row (h.last_transaction_id <= the appending
-- transaction's id) refuses every append without a predicate of its own,
-- and costs appends nothing. streams_status_check ties the two columns
-- together. Restoring a stream sets last_transaction_id to the restoring
-- transaction's id, which reopens it.
--
-- The columns have constant defaults, so adding them does not rewrite
-- the table.
ALTER TABLE chronicle.streams
    ADD COLUMN status            text        NOT NULL DEFAULT 'live',
    ADD COLUMN truncated_before  bigint      NOT NULL DEFAULT 1,
    ADD COLUMN status_changed_at timestamptz,
    ADD CONSTRAINT streams_status_check CHECK (
        status IN ('live', 'deleted', 'archived', 'hard_deleted')
        AND (status = 'live') = (last_transaction_id <> '18446744073709551615'::xid8)),
    ADD CONSTRAINT streams_truncated_before_check CHECK (truncated_before >= 1 AND truncated_before <= version + 1);

-- The events of archived and soft-deleted streams, moved out of
-- chronicle.events in the transaction that archived or deleted them, with
-- every column as it was (positions included), so that restoring a stream
-- moves them back unchanged. Readers of all (projections, the relay) do
-- not see them; chronicle streams read --archived and ReadArchivedStream
-- do.
CREATE TABLE chronicle.events_archive (
    global_position bigint      NOT NULL,
    transaction_id  xid8        NOT NULL,
    event_id        uuid        NOT NULL,
    stream_id       text        NOT NULL,
    stream_version  bigint      NOT NULL,
    event_type      text        NOT NULL,
    schema_version  integer     NOT NULL,
    data            jsonb       NOT NULL,
    metadata        jsonb,
    recorded_at     timestamptz NOT NULL,
    archived_at     timestamptz NOT NULL DEFAULT statement_timestamp(),
    CONSTRAINT events_archive_pkey PRIMARY KEY (stream_id, stream_version)
);
