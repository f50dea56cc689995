-- The last position read_all.sql can return now: the last event below the
-- transaction-id horizon.
SELECT transaction_id, global_position
FROM chronicle.events
WHERE transaction_id < pg_snapshot_xmin(pg_current_snapshot())
ORDER BY transaction_id DESC, global_position DESC
LIMIT 1
