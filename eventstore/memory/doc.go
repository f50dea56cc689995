// Package memory is an in-memory [eventstore.Store]: Chronicle's embedded
// default, for tests, examples and single-process applications that need
// no database. It passes the same conformance suite
// (eventstore/storetest) as the PostgreSQL store, so code written against
// it runs unchanged on PostgreSQL.
//
//	store := memory.New(nil)
//	res, err := store.Append(ctx, "account-42", eventstore.NoStream, events...)
//
// # Behaviour
//
// Appends validate their input with [eventstore.ValidateAppend] and fail
// with the same typed errors as every other store. Each append (or
// [Store.AppendStreams] call) is one commit: its events get consecutive
// positions with the same [eventstore.Position.Transaction], a counter
// of commits, while [eventstore.Position.Global] counts events. Nothing
// commits late in memory, so [Store.ReadAll] returns every stored event
// at once and [Store.Head] is the last event's position.
//
// Appends are idempotent by event ID: retrying an append whose events are
// all stored, consecutively, in the same stream and order, with the same
// type, schema version and payload bytes (and, for [eventstore.Exact] or
// [eventstore.NoStream], at the versions the expectation implies) returns
// the original [eventstore.AppendResult]. Any other reuse of a stored ID
// fails with a [*eventstore.DuplicateEventError].
//
// [Store.Watch] wakes watchers after each append; it starts no goroutine
// until the watcher's context ends.
//
// # Isolation and cost
//
// The store copies payloads and headers on the way in and out: a caller
// that changes a slice or map it passed or received changes nothing
// stored. Small payloads are packed into shared blocks, so appending does
// not allocate per event; each read allocates its page, one buffer for
// its payloads, and a map per event that has headers. Streams are indexed,
// so reading a stream costs the events read, and ReadAll finds a
// checkpoint in constant time (logarithmic for a position it did not
// return).
//
// Everything is held in memory and lost when the process exits; the store
// never forgets an event, so memory grows with the events stored.
package memory
