// Package eventsql holds the event store's SQL statements and the pure
// logic around the appends: flattening appends into the statements'
// parameter arrays, reading their results, and deciding what an append
// that wrote nothing means (an idempotent retry, a duplicate event, a
// concurrency conflict, or a race worth retrying).
//
// Each statement is a whole .sql file in this folder, embedded as it is:
// the exact text a call runs is one file away. Package postgres runs them
// (on its pool or in a caller's transaction) and owns the retries.
//
// # The appends
//
//   - append_one_event.sql: one event to one stream, scalar parameters.
//   - append_one.sql: several events to one stream, array parameters.
//   - append_streams.sql: an atomic append to several streams.
//
// The three are one statement written three ways for speed: the scalar form
// skips encoding and unnesting arrays for the most common append, and the
// one-stream forms need no join and insert nothing (instead of failing)
// when an expectation does not hold. Each moves the stream's head row in
// chronicle.streams and inserts the events numbered from it.
//
// # Reads
//
//   - read_stream_forward.sql, read_stream_backward.sql: a page of a
//     stream's records.
//   - read_payloads_forward.sql, read_payloads_backward.sql: the same,
//     with only what rehydrating an aggregate uses.
//   - read_all.sql, head.sql: the global order up to the transaction-id
//     horizon.
//   - stream_version.sql, list_streams.sql: head rows.
//   - tail_lag.sql: how long the horizon has been held back.
//
// # Plans that stay right as tables grow
//
// PostgreSQL caches a prepared statement's generic plan per connection
// until the table is analyzed again. A lookup written the obvious way
// (WHERE stream_id = $1), planned while chronicle.streams fits in a page,
// is a sequential scan, and the cached plan would keep scanning the whole
// table as it grows. The statements write such lookups as "the first key
// at or after the stream id" (WHERE stream_id >= $1 ORDER BY stream_id
// LIMIT 1, then compared with the id): its first index entry is all the
// LIMIT needs, so the planner picks the primary key at every size. The
// head row itself is reached through ON CONFLICT, which always uses the
// primary key. Stream reads use the same idea on
// events_stream_version_key: a row comparison from (stream, version)
// bounded by the stream id, ordered by the index columns.
//
// # After a conflict
//
//   - current_versions.sql: each stream's version and order check.
//   - lookup_events.sql: the append's event ids as already stored.
package eventsql
