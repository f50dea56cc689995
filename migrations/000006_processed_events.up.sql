-- Events that idempotent consumers already handled: one row per consumer
-- and event ID, inserted by postgres.Idempotent in the same transaction as
-- the handler's writes, so that a message delivered again (the bus delivers
-- at least once) has no second effect. See docs/eventbus.md.
CREATE TABLE chronicle.processed_events (
    consumer     text        NOT NULL,
    event_id     uuid        NOT NULL,
    processed_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT processed_events_pkey PRIMARY KEY (consumer, event_id),
    CONSTRAINT processed_events_consumer_check CHECK (consumer <> '' AND length(consumer) <= 200)
);

-- For pruning old rows (DELETE ... WHERE processed_at < ...), once no
-- message older than that can be delivered again.
CREATE INDEX processed_events_processed_at_idx ON chronicle.processed_events (processed_at);
