DROP TABLE IF EXISTS chronicle.processed_events;
