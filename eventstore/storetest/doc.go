// Package storetest is the conformance suite of [eventstore.Store]: the
// behaviour every event store must share, so that code written and tested
// against the in-memory store runs unchanged on PostgreSQL.
//
// # Running the suite
//
// A store implementation calls [Run] from a test, with a function that
// returns a new, empty store private to the subtest (for a database-backed
// store: one database per call):
//
//	func TestConformance(t *testing.T) {
//		storetest.Run(t, func(t *testing.T) eventstore.Store {
//			return memory.New(nil)
//		}, nil)
//	}
//
// Pass [Options] when the store is configured differently from the
// defaults, e.g. with another event size limit. Run with -race.
//
// # What it checks
//
//   - every [eventstore.ExpectedVersion] mode, succeeding and failing with
//     a [*eventstore.ConcurrencyError] that carries the expected and actual
//     versions;
//   - 16 writers racing on one stream with exact expected versions (in
//     lockstep rounds, where exactly one may win each version, then
//     free-running with retries) and with [eventstore.Any]: the stream ends
//     with every acknowledged event exactly once and no holes;
//   - idempotent retries by event ID, and each way of reusing an ID that is
//     not a retry failing with a [*eventstore.DuplicateEventError];
//   - reading streams forward and backward, from versions, with limits; the
//     paging helpers [eventstore.ReadStreamSeq] and [eventstore.ReadAllSeq];
//   - the global order of [eventstore.Store.ReadAll]: consistent with every
//     stream's versions, paged from checkpoints without loss or repetition,
//     and a reader tailing it while writers append seeing every event
//     exactly once;
//   - [eventstore.Store.Head], [eventstore.Store.StreamVersion],
//     atomic [eventstore.Store.AppendStreams], [eventstore.Store.Watch];
//   - metadata, recorded-at times and payloads round-tripping, stream IDs
//     full of quotes, backslashes, SQL and unicode working;
//   - every kind of bad input (stream IDs, event types, payloads, schema
//     and expected versions, sizes, read arguments, done contexts) failing
//     with its typed error and storing nothing.
//
// # Rules the suite pins down
//
// Where the [eventstore.Store] documentation leaves room, the suite
// expects what a user would:
//
//   - an event's SchemaVersion 0 is stored and read back as 1, and
//     RecordedAt is read back in UTC;
//   - ReadStream and StreamVersion validate the stream ID like Append;
//     an unknown direction or a negative limit to ReadStream, and a limit
//     below 1 to ReadAll, fail with an error matching
//     [eventstore.ErrInvalidInput];
//   - reusing a stored event ID fails with a
//     [*eventstore.DuplicateEventError] even when the expected version does
//     not hold either; one ID twice in an append is invalid input;
//   - retrying a whole AppendStreams call with the same event IDs returns
//     the original results;
//   - a done context fails every call with an error matching the
//     context's error, storing nothing.
//
// # Assumptions
//
// The suite compares positions only with [eventstore.Position.Compare]
// and never assumes their values. It tolerates [eventstore.Store.ReadAll]
// and [eventstore.Store.Head] lagging behind appends for a while, since a
// gap-safe store holds events back while older transactions are open.
// Payloads are compared as JSON values, since a store may normalise them.
// Waits for such eventual behaviour time out after 30 seconds; no test
// asserts on speed.
package storetest
