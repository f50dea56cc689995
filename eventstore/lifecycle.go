package eventstore

import (
	"context"
	"errors"
	"fmt"
)

// Lifecycle is an optional interface of a [Store] that ends streams: soft
// delete, truncation, hard delete, archiving and restoring. Both stores in
// this module implement it; the CLI's `streams delete|truncate|archive|
// restore` use it. docs/concepts.md explains what each operation means for
// readers and projections.
//
// Every operation locks the stream against concurrent appends (in
// PostgreSQL: the stream's head row, which every append updates) for its
// whole duration, so an append either happens before it, and is deleted,
// truncated or archived with the rest, or after it, and sees its result.
// Nothing is half done: each operation is one transaction. Global positions
// never move, and [Store.ReadAll] never skips an event of another stream.
//
// Every operation is idempotent (deleting a deleted stream, archiving an
// archived one or restoring a live one changes nothing and succeeds), so
// retrying one after a lost connection is safe. A stream that does not
// exist gives an error matching [ErrStreamNotFound].
type Lifecycle interface {
	// DeleteStream soft-deletes the stream: it then reads as not found
	// (ReadStream returns an empty page, StreamVersion a
	// [*StreamDeletedError] that matches [ErrStreamNotFound]), its events
	// leave ReadAll, and appends are refused with a [*StreamDeletedError]
	// until [Lifecycle.RestoreStream] brings it back with every event. Its
	// events are kept where archived events are (see
	// [Lifecycle.ReadArchivedStream]). expected is [Any], [StreamExists] or
	// an exact version ([NoStream] is invalid): when the stream is not at
	// it, nothing changes and the error is a [*ConcurrencyError].
	DeleteStream(ctx context.Context, streamID string, expected ExpectedVersion) (StreamState, error)

	// HardDeleteStream removes the stream's events for good (from the
	// archive too) and leaves a tombstone: the stream then cannot be read,
	// appended to, restored or recreated, and every such call fails with a
	// [*StreamDeletedError] whose Hard field is set. The PostgreSQL store
	// also removes the stream's snapshot in the same transaction. expected
	// is as for DeleteStream.
	HardDeleteStream(ctx context.Context, streamID string, expected ExpectedVersion) (StreamState, error)

	// TruncateStream removes the live stream's events before version
	// before, for good: reads then start at version before, while the
	// stream keeps its version and appends continue after it. A stream
	// aggregate must then load from a snapshot at version before-1 or
	// later (the aggregate repository does, see package aggregate). before
	// must be between 1 and the stream's version (a truncation keeps at
	// least the last event; delete the stream to remove them all); a
	// before at or below the current truncation point changes nothing.
	// A closed stream gives its [*StreamDeletedError] or
	// [*StreamArchivedError].
	TruncateStream(ctx context.Context, streamID string, before int64) (StreamState, error)

	// ArchiveStream moves the stream's events out of the log into the
	// archive, in one transaction: the stream then reads as archived
	// (ReadStream and StreamVersion fail with a [*StreamArchivedError]),
	// its events leave ReadAll, appends are refused, and
	// [Lifecycle.ReadArchivedStream] reads them. A soft-deleted stream
	// becomes archived. expected is as for DeleteStream.
	ArchiveStream(ctx context.Context, streamID string, expected ExpectedVersion) (StreamState, error)

	// RestoreStream brings an archived or soft-deleted stream back, with
	// every event at its version and global position: it is live again
	// and appends continue after its version. A restored event keeps its
	// position, which tailers that are already past it do not read
	// again. A hard-deleted stream gives a [*StreamDeletedError]. The IDs
	// of events out of the log are free: when another stream took one
	// meanwhile, RestoreStream fails with a [*DuplicateEventError] and
	// changes nothing.
	RestoreStream(ctx context.Context, streamID string) (StreamState, error)

	// ReadArchivedStream reads one page of the events of an archived or
	// soft-deleted stream, as [Store.ReadStream] reads a live one, with
	// the same options. A live stream has no archived events (an empty
	// page); a hard-deleted one gives a [*StreamDeletedError].
	ReadArchivedStream(ctx context.Context, streamID string, opts ReadStreamOptions) ([]Record, error)

	// StreamState describes the stream's lifecycle, whatever its status.
	StreamState(ctx context.Context, streamID string) (StreamState, error)
}

// StreamStatus is where a stream is in its lifecycle.
type StreamStatus int

const (
	// StreamLive is a stream that is read and appended to.
	StreamLive StreamStatus = iota + 1
	// StreamDeleted is a soft-deleted stream: it reads as not found,
	// refuses appends, and can be restored.
	StreamDeleted
	// StreamArchived is an archived stream: it reads as archived, refuses
	// appends, and can be restored.
	StreamArchived
	// StreamHardDeleted is a tombstone: the events are gone and the stream
	// can never be read, appended to or recreated.
	StreamHardDeleted
)

// String returns the status as the CLI and the PostgreSQL schema write it:
// live, deleted, archived or hard_deleted.
func (s StreamStatus) String() string {
	switch s {
	case StreamLive:
		return "live"
	case StreamDeleted:
		return "deleted"
	case StreamArchived:
		return "archived"
	case StreamHardDeleted:
		return "hard_deleted"
	}
	return fmt.Sprintf("StreamStatus(%d)", int(s))
}

// ParseStreamStatus parses the form [StreamStatus.String] returns.
func ParseStreamStatus(s string) (StreamStatus, error) {
	for st := StreamLive; st <= StreamHardDeleted; st++ {
		if st.String() == s {
			return st, nil
		}
	}
	return 0, &ValidationError{Field: "stream status", Reason: fmt.Sprintf("%q is not live, deleted, archived or hard_deleted", s)}
}

// StreamState describes a stream's lifecycle; see [Lifecycle].
type StreamState struct {
	// StreamID is the stream's ID.
	StreamID string
	// Status is the stream's status.
	Status StreamStatus
	// Version is the version of the last event ever appended. Versions are
	// never reused: it stays when the stream is deleted or archived.
	Version int64
	// FirstVersion is the first version that still exists: 1, or the
	// version the stream was truncated before. Of a hard-deleted stream
	// it is Version+1.
	FirstVersion int64
}

// Errors of closed streams. The errors are a [*StreamDeletedError] or a
// [*StreamArchivedError].
var (
	// ErrStreamDeleted: the stream is soft-deleted or hard-deleted. Errors
	// matching it also match [ErrStreamNotFound].
	ErrStreamDeleted = errors.New("stream deleted")
	// ErrStreamArchived: the stream is archived.
	ErrStreamArchived = errors.New("stream archived")
)

// StreamDeletedError reports a soft-deleted or hard-deleted stream. It
// matches [ErrStreamDeleted] and [ErrStreamNotFound], so code that treats a
// missing stream as new sees a deleted one as missing too (and then fails
// to append to it with this error).
type StreamDeletedError struct {
	// StreamID is the deleted stream.
	StreamID string
	// Hard is set when the stream is hard-deleted (a tombstone).
	Hard bool
	// Version is the stream's version when it was deleted.
	Version int64
}

func (e *StreamDeletedError) Error() string {
	if e.Hard {
		return fmt.Sprintf("stream %q is hard-deleted at version %d: it cannot be read, appended to or recreated", e.StreamID, e.Version)
	}
	return fmt.Sprintf("stream %q is deleted at version %d: restore it to read or append to it", e.StreamID, e.Version)
}

// Is matches [ErrStreamDeleted] and [ErrStreamNotFound].
func (e *StreamDeletedError) Is(target error) bool {
	return target == ErrStreamDeleted || target == ErrStreamNotFound
}

// StreamArchivedError reports an archived stream. It matches
// [ErrStreamArchived].
type StreamArchivedError struct {
	// StreamID is the archived stream.
	StreamID string
	// Version is the stream's version when it was archived.
	Version int64
}

func (e *StreamArchivedError) Error() string {
	return fmt.Sprintf("stream %q is archived at version %d: read it from the archive or restore it", e.StreamID, e.Version)
}

// Is matches [ErrStreamArchived].
func (e *StreamArchivedError) Is(target error) bool { return target == ErrStreamArchived }

// ClosedError returns the error that reads of and appends to a stream in
// state st fail with: a [*StreamDeletedError] or a [*StreamArchivedError],
// or nil for a live stream. Store implementations use it so that every
// store fails the same way.
func (st StreamState) ClosedError() error {
	switch st.Status {
	case StreamDeleted, StreamHardDeleted:
		return &StreamDeletedError{StreamID: st.StreamID, Hard: st.Status == StreamHardDeleted, Version: st.Version}
	case StreamArchived:
		return &StreamArchivedError{StreamID: st.StreamID, Version: st.Version}
	}
	return nil
}

// ValidateLifecycleExpected checks the expected version of
// [Lifecycle.DeleteStream], HardDeleteStream and ArchiveStream: [Any],
// [StreamExists] or an exact version of at least 1.
func ValidateLifecycleExpected(expected ExpectedVersion) error {
	if expected == Any || expected == StreamExists || expected > 0 {
		return nil
	}
	return &ValidationError{Field: "expected version", Reason: fmt.Sprintf("%s is not any, stream exists or a version: only an existing stream can be deleted or archived", expected)}
}

// ValidateTruncate checks a truncation of a stream at version version
// before version before (see [Lifecycle.TruncateStream]).
func ValidateTruncate(streamID string, before, version int64) error {
	switch {
	case before < 1:
		return &ValidationError{Field: "before", Reason: fmt.Sprintf("%d is not a version (versions start at 1)", before)}
	case before > version:
		return &ValidationError{Field: "before", Reason: fmt.Sprintf("version %d is beyond the head of stream %q (version %d): a truncation keeps at least the last event; delete the stream to remove them all", before, streamID, version)}
	}
	return nil
}
