package eventstore

import (
	"cmp"
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Event is an event to append: its identity, type, schema version, encoded
// payload and metadata. Build one from a Go value with [Registry.Encode].
type Event struct {
	// ID identifies the event. Set it to make an append safely retryable:
	// retrying an append with the same IDs at the same versions is a no-op.
	// Defaults to a new [NewEventID] when zero.
	ID EventID
	// Type is the registered event type name, e.g. "DepositCompleted".
	Type string
	// SchemaVersion is the version of the payload's shape; upcasters lift
	// older versions to the current one on read. Defaults to 1.
	SchemaVersion int
	// Data is the encoded payload. It must be a JSON value.
	Data []byte
	// Metadata carries correlation, causation and free-form headers.
	Metadata Metadata
}

// Metadata is the envelope information stored next to an event's payload.
type Metadata struct {
	// CorrelationID ties together every event caused by one request.
	CorrelationID string `json:"correlation_id,omitempty"`
	// CausationID names the message (command or event) that caused this event.
	CausationID string `json:"causation_id,omitempty"`
	// Headers are free-form string pairs (tenant, user, trace id, ...).
	Headers map[string]string `json:"headers,omitempty"`
}

// IsZero reports whether m carries no information.
func (m Metadata) IsZero() bool {
	return m.CorrelationID == "" && m.CausationID == "" && len(m.Headers) == 0
}

// Record is a stored event, as read back from a [Store].
type Record struct {
	// EventID is the event's unique identifier.
	EventID EventID
	// StreamID is the stream the event belongs to.
	StreamID string
	// StreamVersion is the event's version in its stream: 1, 2, 3... with no holes.
	StreamVersion int64
	// Position is the event's place in the global order read by [Store.ReadAll].
	Position Position
	// Type is the event type name.
	Type string
	// SchemaVersion is the version of the payload's shape as stored.
	SchemaVersion int
	// Data is the encoded payload as stored (before any upcasting).
	Data []byte
	// Metadata is the event's metadata.
	Metadata Metadata
	// RecordedAt is the time the store recorded the event, in UTC.
	RecordedAt time.Time
}

// Position is a place in the store's global order. Events are ordered by
// Transaction first, then by Global. In PostgreSQL, Transaction is the id of
// the transaction that wrote the event (xid8) and Global the events table's
// identity column; the in-memory store uses a commit counter. A checkpoint
// is a Position: [Store.ReadAll] returns the events strictly after it.
//
// The zero Position is before the first event.
type Position struct {
	// Transaction orders commits.
	Transaction uint64
	// Global orders events within a commit and identifies an event globally.
	Global int64
}

// Compare returns -1, 0 or +1 as p is before, equal to or after q.
func (p Position) Compare(q Position) int {
	return cmp.Or(cmp.Compare(p.Transaction, q.Transaction), cmp.Compare(p.Global, q.Global))
}

// IsZero reports whether p is the start of the store.
func (p Position) IsZero() bool { return p == Position{} }

// String formats p as "transaction/global", the form [ParsePosition] reads.
func (p Position) String() string {
	return strconv.FormatUint(p.Transaction, 10) + "/" + strconv.FormatInt(p.Global, 10)
}

// ParsePosition parses the "transaction/global" form produced by [Position.String].
func ParsePosition(s string) (Position, error) {
	tx, global, ok := strings.Cut(s, "/")
	if !ok {
		return Position{}, &ValidationError{Field: "position", Reason: fmt.Sprintf("%q is not of the form transaction/global", s)}
	}
	t, err1 := strconv.ParseUint(tx, 10, 64)
	g, err2 := strconv.ParseInt(global, 10, 64)
	if err1 != nil || err2 != nil || g < 0 {
		return Position{}, &ValidationError{Field: "position", Reason: fmt.Sprintf("%q is not of the form transaction/global", s)}
	}
	return Position{Transaction: t, Global: g}, nil
}

// ExpectedVersion is the optimistic-concurrency condition of an append: the
// version the caller expects the stream to be at. Use [Any], [NoStream],
// [StreamExists] or [Exact].
type ExpectedVersion int64

const (
	// Any appends whatever the stream's version, creating it if needed.
	Any ExpectedVersion = -1
	// StreamExists appends only if the stream has at least one event.
	StreamExists ExpectedVersion = -2
	// NoStream appends only if the stream has no events yet; it equals Exact(0).
	NoStream ExpectedVersion = 0
)

// Exact expects the stream to be exactly at version v (0 means no stream).
func Exact(v int64) ExpectedVersion { return ExpectedVersion(v) }

// String describes the expectation for error messages.
func (e ExpectedVersion) String() string {
	switch {
	case e == Any:
		return "any"
	case e == StreamExists:
		return "stream exists"
	case e == NoStream:
		return "no stream"
	case e > 0:
		return strconv.FormatInt(int64(e), 10)
	default:
		return "invalid(" + strconv.FormatInt(int64(e), 10) + ")"
	}
}

// Check reports whether a stream at version actual satisfies e.
func (e ExpectedVersion) Check(actual int64) bool {
	switch {
	case e == Any:
		return true
	case e == StreamExists:
		return actual > 0
	default:
		return int64(e) == actual
	}
}

// Valid reports whether e is one of the defined expectations.
func (e ExpectedVersion) Valid() bool { return e >= 0 || e == Any || e == StreamExists }

type metadataKey struct{}

// WithMetadata returns a context carrying md. The aggregate repository
// stamps it on the events it saves, so correlation and causation IDs flow
// from a request to its events without changing every call.
func WithMetadata(ctx context.Context, md Metadata) context.Context {
	return context.WithValue(ctx, metadataKey{}, md)
}

// MetadataFromContext returns the metadata set by [WithMetadata], if any.
func MetadataFromContext(ctx context.Context) (Metadata, bool) {
	md, ok := ctx.Value(metadataKey{}).(Metadata)
	return md, ok
}
