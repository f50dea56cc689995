-- Already stored events by id, for the idempotent-retry check: an append
-- whose event ids are stored at the same stream and versions, with the
-- same type, schema version and (jsonb-equal) data, is a retry.
--
-- $1 event ids, $2 their data (JSON text). Returns one row per stored id:
-- (1-based index in $1, stream id, version, type, schema version, same
-- data, global position, transaction id).
SELECT n.ord, e.stream_id, e.stream_version, e.event_type, e.schema_version, e.data = n.data::jsonb,
       e.global_position, e.transaction_id
FROM unnest($1::uuid[], $2::text[]) WITH ORDINALITY AS n(event_id, data, ord)
JOIN chronicle.events e ON e.event_id = n.event_id
