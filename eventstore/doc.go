// Package eventstore is Chronicle's core vocabulary: events, streams,
// versions, positions, the [Store] interface every event store implements,
// the typed errors they return, and the [Registry] that maps Go types to
// stored event types.
//
// It imports no database driver. The in-memory store lives in
// package memory, the PostgreSQL store in package postgres, and the
// conformance suite both pass in eventstore/storetest.
//
// # Streams and versions
//
// A stream is an ordered sequence of events identified by a string such as
// "account-42" (see [ValidateStreamID]). Its events carry versions 1, 2,
// 3... with no holes. Every append states an [ExpectedVersion] — [Any],
// [NoStream], [StreamExists] or [Exact] — and a store refuses an append
// whose expectation does not hold with a [*ConcurrencyError] matching
// [ErrConcurrencyConflict]:
//
//	_, err := store.Append(ctx, "account-42", eventstore.Exact(7), ev)
//	if errors.Is(err, eventstore.ErrConcurrencyConflict) {
//		// reload and retry the command
//	}
//
// # Global order
//
// Every stored event also has a [Position] in one global order.
// [Store.ReadAll] returns events strictly after a position and never skips an
// event that commits late, so a projection can checkpoint the last position
// it handled and resume from it. [ReadAllSeq] and [ReadStreamSeq] wrap the
// paged reads as iterators.
//
// A store may also implement [PayloadReader], reading only what rehydrating
// an aggregate needs; [ReadStreamPayloadsSeq] uses it when present (the
// aggregate repository loads through it) and falls back to whole records.
// [PageReader] reads the global order a page ahead ([ReadAllSeq] uses it),
// and [RecordReader] reads a page into records the caller provides (the
// projection runner reads its batches into its events with it).
//
// # Ending streams
//
// A store may implement [Lifecycle]: soft delete, truncation before a
// version, hard delete (a tombstone), archiving and restoring, each safe
// under concurrent appends. Closed streams fail reads and appends with a
// [*StreamDeletedError] (matching [ErrStreamDeleted] and
// [ErrStreamNotFound]) or a [*StreamArchivedError] (matching
// [ErrStreamArchived]). Global positions never move. docs/concepts.md says
// what each operation means for readers and projections.
//
// # Types, codecs and upcasting
//
// Register each event type once, by name, with [Register]. Payloads are JSON
// by default. When a type's shape changes, keep the old Go type and register
// an [Upcast] chain (v1→v2→v3); old events are upcast when decoded, so
// handlers only ever see the current type.
//
// # Personal data
//
// Fields tagged `chronicle:"personal"` are sealed (encrypted) by the
// registry's [FieldCipher] when an event is encoded, with the key of the
// data subject named by the field tagged `chronicle:"subject"`, and opened
// when it is decoded, before upcasting. Once the subject's keys are gone,
// those fields decode as zero values and an embedded [Redactions] names
// them. Package shred provides the cipher and the keys; docs/concepts.md
// explains crypto-shredding.
package eventstore
