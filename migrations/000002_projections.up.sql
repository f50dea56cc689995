-- Projection state: one checkpoint row per partition of each projection, and
-- the dead letters of events a projection parked. Written by the projection
-- runner through package postgres (see docs/projections.md).
--
-- A checkpoint is a position in the events table's global order,
-- (transaction_id, global_position): the partition resumes after it. The
-- runner moves it with a compare-and-set on the old value, in the same
-- transaction as the read model's writes. Leadership is a session advisory
-- lock held by the connection that runs those transactions; holder and
-- holder_since only describe the last runner that took it.
CREATE TABLE chronicle.projection_checkpoints (
    projection        text        NOT NULL,
    partition         integer     NOT NULL,
    partitions        integer     NOT NULL,
    transaction_id    xid8        NOT NULL DEFAULT '0',
    global_position   bigint      NOT NULL DEFAULT 0,
    updated_at        timestamptz NOT NULL DEFAULT now(),
    holder            text,
    holder_since      timestamptz,
    rebuild_requested boolean     NOT NULL DEFAULT false,
    error             text,
    CONSTRAINT projection_checkpoints_pkey PRIMARY KEY (projection, partition),
    CONSTRAINT projection_checkpoints_partition_check CHECK (partition >= 0 AND partition < partitions),
    CONSTRAINT projection_checkpoints_partitions_check CHECK (partitions BETWEEN 1 AND 1024),
    CONSTRAINT projection_checkpoints_global_position_check CHECK (global_position >= 0)
);

-- Events a projection could not handle and set aside. One row per event and
-- projection: parking an event again replaces its row.
CREATE TABLE chronicle.projection_dead_letters (
    id              bigint      GENERATED ALWAYS AS IDENTITY,
    projection      text        NOT NULL,
    partition       integer     NOT NULL,
    event_id        uuid        NOT NULL,
    stream_id       text        NOT NULL,
    stream_version  bigint      NOT NULL,
    transaction_id  xid8        NOT NULL,
    global_position bigint      NOT NULL,
    event_type      text        NOT NULL,
    error           text        NOT NULL,
    attempts        integer     NOT NULL,
    status          text        NOT NULL DEFAULT 'parked',
    parked_at       timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT projection_dead_letters_pkey PRIMARY KEY (id),
    CONSTRAINT projection_dead_letters_event_key UNIQUE (projection, event_id),
    CONSTRAINT projection_dead_letters_status_check CHECK (status IN ('parked', 'retry', 'resolved', 'skipped'))
);

-- Open dead letters by partition: parked counts and retry requests.
CREATE INDEX projection_dead_letters_open_idx ON chronicle.projection_dead_letters (projection, partition, id)
    WHERE status IN ('parked', 'retry');
