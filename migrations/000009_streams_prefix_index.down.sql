DROP INDEX IF EXISTS chronicle.streams_stream_id_prefix_idx;
