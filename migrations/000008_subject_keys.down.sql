-- Dropping the keys makes every sealed personal value unreadable for good:
-- it forgets every subject at once.
DROP TABLE IF EXISTS chronicle.subject_keys;
DROP TABLE IF EXISTS chronicle.subjects;
