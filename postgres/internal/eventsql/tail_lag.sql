-- How long the transaction-id horizon of read_all.sql has been held back:
-- the age of the running transaction with the oldest transaction id (in any
-- database of the cluster), or of the oldest prepared transaction; 0 when
-- none runs.
SELECT greatest(
    (SELECT extract(epoch FROM clock_timestamp() - xact_start)
     FROM pg_stat_activity
     WHERE backend_xid IS NOT NULL AND pid <> pg_backend_pid()
     ORDER BY age(backend_xid) DESC
     LIMIT 1),
    (SELECT extract(epoch FROM clock_timestamp() - prepared)
     FROM pg_prepared_xacts
     ORDER BY age(transaction) DESC
     LIMIT 1),
    0)::float8
