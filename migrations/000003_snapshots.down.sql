DROP TABLE IF EXISTS chronicle.snapshots;
