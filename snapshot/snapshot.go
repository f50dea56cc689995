package snapshot

import (
	"context"
	"errors"
	"fmt"
	"time"
	"unicode/utf8"

	"github.com/chronicle-go/chronicle/eventstore"
)

// ErrNotFound is returned (wrapped) by [Store.Load] when a stream has no
// snapshot.
var ErrNotFound = errors.New("snapshot not found")

// DefaultMaxSize is the default limit on a snapshot's encoded state, in
// bytes (16 MiB).
const DefaultMaxSize = 16 << 20

// MaxTypeLength is the longest aggregate type name in bytes.
const MaxTypeLength = 255

// Snapshot is an aggregate's state as of a version of its stream, encoded.
type Snapshot struct {
	// StreamID is the aggregate's stream.
	StreamID string
	// Type names the aggregate type whose state Data holds, e.g. "Account".
	// A loader ignores a snapshot of another type.
	Type string
	// Version is the stream version the state covers: the version of the
	// last event applied to it. Loading applies the events after it.
	Version int64
	// SchemaVersion is the version of the state's encoding. A loader
	// ignores a snapshot whose schema version is not its current one.
	SchemaVersion int
	// Data is the encoded state.
	Data []byte
	// TakenAt is when the snapshot was taken, in UTC. A store sets it to
	// the current time when it is zero on [Store.Save].
	TakenAt time.Time
}

// Store keeps the latest snapshot of each stream. The in-memory
// The in-memory store (memory.SnapshotStore) and the PostgreSQL store (package postgres) implement it,
// and both pass the conformance suite in snapshot/snapshottest.
//
// Snapshots are a cache of state that the events can always rebuild, so a
// store may lose or drop them at any time without losing information.
// All methods are safe for concurrent use.
type Store interface {
	// Save stores s as its stream's latest snapshot, unless the stream's
	// stored snapshot covers a higher version: then s is dropped and Save
	// returns nil. A snapshot at the same version replaces the stored one
	// (a new schema version of the same state). Invalid snapshots fail
	// with an error matching [eventstore.ErrInvalidInput]; see [Validate].
	Save(ctx context.Context, s Snapshot) error

	// Load returns the latest snapshot of the stream, or an error matching
	// [ErrNotFound] when there is none.
	Load(ctx context.Context, streamID string) (Snapshot, error)

	// Delete removes the stream's snapshot. Deleting a missing snapshot is
	// not an error.
	Delete(ctx context.Context, streamID string) error
}

// StreamLoader is an optional interface of a [Store] that reads a stream's
// snapshot and the events after it in one round trip. The aggregate
// repository uses it, when the snapshot store implements it, for loads of
// the current state; otherwise it calls [Store.Load] and then reads the
// events.
type StreamLoader interface {
	// LoadStream reads streamID's latest snapshot and up to limit events of
	// the stream from events. When the snapshot exists and has type typ and
	// schema version schemaVersion, the events start at the snapshot's
	// version, so the event the snapshot covers comes first and the caller
	// can check that the stream still reaches it; otherwise they start at
	// version 1 and [StreamLoad.Snapshot] holds no Data.
	//
	// It fails with an error matching [errors.ErrUnsupported] when events
	// is not an event store it can read in the same round trip (another
	// implementation, another database).
	LoadStream(ctx context.Context, events eventstore.Store, streamID, typ string, schemaVersion int, limit int) (StreamLoad, error)
}

// TxBinder is an optional interface of a [Store] whose snapshots can be
// read and written inside the caller's transaction. The aggregate
// repository's With method uses it to follow an event store view bound to
// a transaction (such as the one postgres.Store.InTx returns): a snapshot
// taken inside the transaction then commits or rolls back with its events,
// so a snapshot of events that were rolled back can never survive.
type TxBinder interface {
	// BindTx returns a Store that reads and writes snapshots in the same
	// transaction as events, and true; or false when events is not a
	// transaction view that this store can join (another implementation,
	// another database). A repository given such a view without a bound
	// snapshot store takes no snapshots in it.
	BindTx(events eventstore.Store) (Store, bool)
}

// StreamLoad is the result of [StreamLoader.LoadStream].
type StreamLoad struct {
	// Found reports whether the stream has a snapshot at all.
	Found bool
	// Snapshot is the stream's latest snapshot when Found. Its Data is nil
	// unless it has the requested type and schema version.
	Snapshot Snapshot
	// Records are the events read, in version order.
	Records []eventstore.Record
}

// Usable reports whether the snapshot was found and has the requested type
// and schema version (its Data is then set).
func (l StreamLoad) Usable() bool { return l.Found && l.Snapshot.Data != nil }

// Validate checks a snapshot before it is stored: a valid stream ID
// ([eventstore.ValidateStreamID]), a non-empty type name of at most
// [MaxTypeLength] bytes of printable UTF-8, a version and a schema version
// of at least 1, and non-empty data of at most maxSize bytes when maxSize >
// 0. Store implementations call it so that every store rejects the same
// input with the same errors, matching [eventstore.ErrInvalidInput].
func Validate(s Snapshot, maxSize int) error {
	invalid := func(field, reason string) error {
		return &eventstore.ValidationError{Field: "snapshot " + field, Reason: reason}
	}
	if err := eventstore.ValidateStreamID(s.StreamID); err != nil {
		return err
	}
	switch {
	case s.Type == "":
		return invalid("type", "must not be empty")
	case len(s.Type) > MaxTypeLength:
		return invalid("type", fmt.Sprintf("is %d bytes, longer than %d", len(s.Type), MaxTypeLength))
	case !utf8.ValidString(s.Type):
		return invalid("type", "is not valid utf-8")
	case s.Version < 1:
		return invalid("version", fmt.Sprintf("%d is not a stream version (versions start at 1)", s.Version))
	case s.SchemaVersion < 1 || s.SchemaVersion > 1<<31-1:
		return invalid("schema version", fmt.Sprintf("%d is outside 1..%d (a 32-bit integer)", s.SchemaVersion, 1<<31-1))
	case len(s.Data) == 0:
		return invalid("data", "must not be empty")
	case maxSize > 0 && len(s.Data) > maxSize:
		return invalid("data", fmt.Sprintf("is %d bytes, larger than the limit of %d", len(s.Data), maxSize))
	}
	for _, r := range s.Type {
		if r < 0x20 || r == 0x7f {
			return invalid("type", fmt.Sprintf("contains control character %U", r))
		}
	}
	return nil
}
