package eventstore

import (
	"errors"
	"fmt"
	"strings"
)

// Sentinel errors. Stores and the codec return typed errors (below) that
// match these with [errors.Is]; branch on them, never on messages.
var (
	// ErrConcurrencyConflict: the stream was not at the expected version.
	// The error is a [*ConcurrencyError] carrying both versions.
	ErrConcurrencyConflict = errors.New("concurrency conflict")
	// ErrStreamNotFound: the stream has no events.
	ErrStreamNotFound = errors.New("stream not found")
	// ErrInvalidInput: an argument failed validation (stream ID, event,
	// expected version, size limit...). The error is a [*ValidationError]
	// or an [*EventTooLargeError].
	ErrInvalidInput = errors.New("invalid input")
	// ErrEventTooLarge: an event exceeds the store's size limit. Errors
	// matching it also match [ErrInvalidInput].
	ErrEventTooLarge = errors.New("event too large")
	// ErrUnknownEventType: an event type name or Go type is not registered.
	// The error is an [*UnknownEventTypeError].
	ErrUnknownEventType = errors.New("unknown event type")
	// ErrDuplicateEvent: an event ID is already stored with different
	// content or at a different place. The error is a [*DuplicateEventError].
	ErrDuplicateEvent = errors.New("duplicate event id")
	// ErrDecode: a stored payload could not be decoded or upcast. The error
	// is a [*DecodeError].
	ErrDecode = errors.New("cannot decode event")
)

// ConcurrencyError reports that an append's expected version did not hold.
type ConcurrencyError struct {
	// StreamID is the contended stream.
	StreamID string
	// Expected is what the caller expected.
	Expected ExpectedVersion
	// Actual is the stream's version when the append was refused. It is -1
	// when the store could not tell (a racing writer won a unique-key race).
	Actual int64
}

func (e *ConcurrencyError) Error() string {
	if e.Actual < 0 {
		return fmt.Sprintf("concurrency conflict on stream %q: expected version %s, another writer appended first", e.StreamID, e.Expected)
	}
	return fmt.Sprintf("concurrency conflict on stream %q: expected version %s, actual %d", e.StreamID, e.Expected, e.Actual)
}

// Is matches [ErrConcurrencyConflict].
func (e *ConcurrencyError) Is(target error) bool { return target == ErrConcurrencyConflict }

// ValidationError reports an argument that failed validation.
type ValidationError struct {
	// Field names what was invalid, e.g. "stream id" or "events[2].type".
	Field string
	// Reason says why, lowercase.
	Reason string
}

func (e *ValidationError) Error() string { return "invalid " + e.Field + ": " + e.Reason }

// Is matches [ErrInvalidInput].
func (e *ValidationError) Is(target error) bool { return target == ErrInvalidInput }

// EventTooLargeError reports an event over the store's size limit.
type EventTooLargeError struct {
	// Index is the event's index in the append.
	Index int
	// Size is the event's payload plus metadata size in bytes.
	Size int
	// Limit is the configured maximum.
	Limit int
}

func (e *EventTooLargeError) Error() string {
	return fmt.Sprintf("event too large: events[%d] is %d bytes, limit is %d", e.Index, e.Size, e.Limit)
}

// Is matches [ErrEventTooLarge] and [ErrInvalidInput].
func (e *EventTooLargeError) Is(target error) bool {
	return target == ErrEventTooLarge || target == ErrInvalidInput
}

// UnknownEventTypeError reports an unregistered event type.
type UnknownEventTypeError struct {
	// Type is the unknown name, or the Go type's name when encoding.
	Type string
}

func (e *UnknownEventTypeError) Error() string { return fmt.Sprintf("unknown event type %q", e.Type) }

// Is matches [ErrUnknownEventType].
func (e *UnknownEventTypeError) Is(target error) bool { return target == ErrUnknownEventType }

// DuplicateEventError reports an event ID that is already stored, but not as
// part of an identical earlier append (which would be an idempotent retry).
type DuplicateEventError struct {
	// EventID is the duplicated ID.
	EventID EventID
	// StreamID is the stream the append targeted.
	StreamID string
}

func (e *DuplicateEventError) Error() string {
	return fmt.Sprintf("duplicate event id %s in append to stream %q: already stored with different content or position", e.EventID, e.StreamID)
}

// Is matches [ErrDuplicateEvent].
func (e *DuplicateEventError) Is(target error) bool { return target == ErrDuplicateEvent }

// DecodeError reports a stored event that could not be decoded.
type DecodeError struct {
	// StreamID and StreamVersion locate the event, when known: a record
	// read from a store always carries them.
	StreamID      string
	StreamVersion int64
	// Type and SchemaVersion identify the payload.
	Type          string
	SchemaVersion int
	// EventID identifies the event, when known. It is zero when the event
	// was read without its ID, as [PayloadReader] reads do.
	EventID EventID
	// Err is the cause.
	Err error
}

// Error says where the event is (stream and version), its ID when known,
// its type and schema version, and the cause.
func (e *DecodeError) Error() string {
	var b strings.Builder
	b.WriteString("cannot decode event")
	if e.StreamID != "" {
		fmt.Fprintf(&b, " at version %d of stream %q", e.StreamVersion, e.StreamID)
	}
	if !e.EventID.IsZero() {
		fmt.Fprintf(&b, " (id %s, type %q, schema version %d)", e.EventID, e.Type, e.SchemaVersion)
	} else {
		fmt.Fprintf(&b, " (type %q, schema version %d)", e.Type, e.SchemaVersion)
	}
	fmt.Fprintf(&b, ": %v", e.Err)
	return b.String()
}

// Unwrap returns the cause.
func (e *DecodeError) Unwrap() error { return e.Err }

// Is matches [ErrDecode].
func (e *DecodeError) Is(target error) bool { return target == ErrDecode }

// ErrTransactionConflict: an append inside the caller's transaction cannot
// succeed in that transaction (a deadlock, a serialization failure, or the
// global order would be broken); the caller must roll back and retry the
// whole transaction. The error is a [*TransactionConflictError]. It also
// matches [ErrConcurrencyConflict].
var ErrTransactionConflict = errors.New("transaction conflict")

// TransactionConflictError reports an append inside the caller's
// transaction that no retry inside that transaction can complete. Roll
// the transaction back and run it again from the start: a new transaction
// re-reads what it decides on and gets a new transaction id.
type TransactionConflictError struct {
	// StreamID is the stream appended to (the first one of a multi-stream
	// append, when the database does not say which).
	StreamID string
	// Reason says what happened, lowercase.
	Reason string
	// Err is the database error, if any.
	Err error
}

func (e *TransactionConflictError) Error() string {
	msg := fmt.Sprintf("transaction conflict on stream %q: %s: roll back and retry the whole transaction", e.StreamID, e.Reason)
	if e.Err != nil {
		msg += ": " + e.Err.Error()
	}
	return msg
}

// Unwrap returns the database error.
func (e *TransactionConflictError) Unwrap() error { return e.Err }

// Is matches [ErrTransactionConflict] and [ErrConcurrencyConflict].
func (e *TransactionConflictError) Is(target error) bool {
	return target == ErrTransactionConflict || target == ErrConcurrencyConflict
}

// ErrOutcomeUnknown: the connection to the database broke while an append
// was in flight, so it may or may not have been committed (all of its
// events or none). Retrying it with the same event IDs is safe: an append
// whose events are already stored is a no-op that returns the original
// result. The error is an [*OutcomeUnknownError].
var ErrOutcomeUnknown = errors.New("outcome unknown")

// OutcomeUnknownError reports an append whose outcome is unknown; see
// [ErrOutcomeUnknown].
type OutcomeUnknownError struct {
	// Op describes the append, e.g. `append to stream "account-42"`.
	Op string
	// Err is the cause: the connection error.
	Err error
}

func (e *OutcomeUnknownError) Error() string {
	return e.Op + ": outcome unknown, retrying with the same event ids is safe: " + e.Err.Error()
}

// Unwrap returns the cause.
func (e *OutcomeUnknownError) Unwrap() error { return e.Err }

// Is matches [ErrOutcomeUnknown].
func (e *OutcomeUnknownError) Is(target error) bool { return target == ErrOutcomeUnknown }

// ErrPermanent: a handler's failure that retrying cannot fix (a payload
// that does not decode, an event the handler can never accept). The error
// is a [*PermanentError]. Projection handlers and event bus handlers share
// it: a projection applies its failure policy at once, a bus consumer
// dead-letters the message at once.
var ErrPermanent = errors.New("permanent failure")

// PermanentError marks a failure that retrying cannot fix; it matches
// [ErrPermanent]. Create one with [Permanent].
type PermanentError struct {
	// Err is the failure.
	Err error
}

// Permanent wraps err in a [*PermanentError]. It returns nil for nil.
func Permanent(err error) error {
	if err == nil {
		return nil
	}
	return &PermanentError{Err: err}
}

func (e *PermanentError) Error() string { return "permanent failure: " + e.Err.Error() }

// Unwrap returns the failure.
func (e *PermanentError) Unwrap() error { return e.Err }

// Is matches [ErrPermanent].
func (e *PermanentError) Is(target error) bool { return target == ErrPermanent }
