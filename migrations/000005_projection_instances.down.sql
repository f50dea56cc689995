DROP TABLE IF EXISTS chronicle.projection_instances;
