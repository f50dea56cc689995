// Package memory holds Chronicle's in-memory implementations, the
// siblings of package postgres's: they keep everything in the process,
// for tests, examples and single-process programs, and behave as the
// PostgreSQL ones do (each passes the same conformance suite).
//
//   - [Store] ([New]) is an [eventstore.Store]: Chronicle's embedded
//     default event store.
//   - [SnapshotStore] ([NewSnapshotStore]) is a [snapshot.Store].
//   - [ProjectionStore] ([NewProjectionStore]) keeps the projection runner's
//     state (checkpoints, leases, instances, dead letters), optionally with
//     transactions ([ProjectionStoreConfig.Transactional]).
//   - [SubjectKeyStore] ([NewSubjectKeyStore]) is a [shred.KeyStore]: the
//     data keys of crypto-shredding, lost when the process ends.
//
// For example:
//
//	store := memory.New(nil)
//	res, err := store.Append(ctx, "account-42", eventstore.NoStream, events...)
//
// # The event store
//
// Appends validate their input with [eventstore.ValidateAppend] and fail
// with the same typed errors as every other store. Each append (or
// [Store.AppendStreams] call) is one commit: its events get consecutive
// positions with the same [eventstore.Position.Transaction], a counter
// of commits, while [eventstore.Position.Global] counts events. Nothing
// commits late in memory, so [Store.ReadAll] returns every stored event
// at once and [Store.Head] is the last event's position. An append with
// [eventstore.Any] never conflicts: appends to one store are serialised.
//
// Appends are idempotent by event ID: retrying an append whose events are
// all stored, consecutively, in the same stream and order, with the same
// type, schema version and payload (equal as JSON values) (and, for
// [eventstore.Exact] or [eventstore.NoStream], at the versions the
// expectation implies) returns the original [eventstore.AppendResult]. Any
// other reuse of a stored ID fails with a [*eventstore.DuplicateEventError].
//
// [Store.Watch] wakes watchers after each append; it starts no goroutine
// until the watcher's context ends.
//
// The store implements [eventstore.Lifecycle]. Deleted, archived and
// truncated events leave the log without moving the others: ReadAll and
// Head skip them. Truncated and hard-deleted events also lose their
// payload and metadata. Snapshots live in a separate store: delete a
// hard-deleted stream's snapshot there yourself.
//
// # Isolation and cost
//
// The stores copy payloads and headers on the way in and out: a caller
// that changes a slice or map it passed or received changes nothing
// stored. Small payloads are packed into shared blocks, so appending does
// not allocate per event; each read allocates its page, one buffer for
// its payloads, and a map per event that has headers. Streams are indexed,
// so reading a stream costs the events read, and ReadAll finds a
// checkpoint in constant time (logarithmic for a position it did not
// return).
//
// Everything is held in memory and lost when the process exits; the event
// store never forgets an event, so memory grows with the events stored.
package memory
