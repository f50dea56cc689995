-- A page of the global order after a position, up to the transaction-id
-- horizon: rows written by a transaction that is older than every
-- transaction still running. Such a transaction has finished, so no row can
-- ever appear below the horizon again, and a reader that resumes from its
-- last position never skips one. See docs/postgres.md, "The ordering
-- guarantee". A range scan of events_pkey.
--
-- $1 transaction id, $2 global position (the position read up to), $3 limit.
SELECT global_position, transaction_id, event_id, stream_id, stream_version,
       event_type, schema_version, data, metadata, recorded_at
FROM chronicle.events
WHERE (transaction_id, global_position) > ($1::xid8, $2::bigint)
  AND transaction_id < pg_snapshot_xmin(pg_current_snapshot())
ORDER BY transaction_id, global_position
LIMIT $3
