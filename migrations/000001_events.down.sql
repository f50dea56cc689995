-- The chronicle schema stays: it holds golang-migrate's version table
-- (chronicle.schema_migrations), which records that nothing is applied.
DROP TABLE IF EXISTS chronicle.events;
