-- The live instances running each projection, so that runners share a
-- projection's partitions evenly: each runner records itself here about
-- every acquire interval (a heartbeat pushing expires_at forward) and
-- takes its share of the partitions, computed from the instances whose
-- expires_at is in the future. An instance that stops (or dies) drops out
-- when its row expires; a clean shutdown deletes its row at once.
CREATE TABLE chronicle.projection_instances (
    projection text        NOT NULL,
    holder     text        NOT NULL,
    expires_at timestamptz NOT NULL,
    CONSTRAINT projection_instances_pkey PRIMARY KEY (projection, holder)
);
