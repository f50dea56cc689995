-- Set a locked head row's lifecycle state (see lifecycle_lock.sql). A
-- stream that is not live is closed to appends by its
-- last_transaction_id, set to the largest xid8: every append statement's
-- order check (h.last_transaction_id <= the appending transaction's id)
-- then fails, and the store reads the status to say why (see
-- current_versions.sql). A stream that becomes live again gets this
-- transaction's id, so that appends after it sort after the restored
-- events; a live stream that stays live (a truncation) keeps its own.
--
-- $1 stream id, $2 status, $3 truncated_before.
UPDATE chronicle.streams
SET status = $2::text,
    truncated_before = $3::bigint,
    last_transaction_id = CASE
        WHEN $2::text <> 'live' THEN '18446744073709551615'::xid8
        WHEN status <> 'live' THEN pg_current_xact_id()
        ELSE last_transaction_id
    END,
    status_changed_at = statement_timestamp()
WHERE stream_id = $1
