DROP TABLE IF EXISTS chronicle.projection_dead_letters;
DROP TABLE IF EXISTS chronicle.projection_checkpoints;
