DROP TABLE IF EXISTS chronicle.streams;
