DROP TABLE IF EXISTS chronicle.events;
DROP SCHEMA IF EXISTS chronicle;
