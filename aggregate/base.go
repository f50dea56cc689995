package aggregate

import (
	"errors"
	"fmt"

	"github.com/chronicle-go/chronicle/eventstore"
)

// Root is an event-sourced aggregate: a type that embeds [Base] and applies
// events to its state. It can only be satisfied by types that embed [Base]
// (through an unexported method [Base] provides), so a [Repository] can
// always reach the identity, version and uncommitted events it needs.
type Root interface {
	// Apply mutates the aggregate's state for one event. The repository
	// calls it for every stored event when loading, and [Record] calls it
	// for every new event, so the same code builds the state in both cases.
	//
	// Apply must not fail for an event the aggregate knows: validation
	// belongs in command methods, before [Record]. For an event type it
	// does not handle it should return [Unhandled](event) without changing
	// the state, so that a forgotten case surfaces as an error matching
	// [ErrUnhandledEvent] instead of a silently wrong state.
	Apply(event any) error

	// ID returns the aggregate's stream ID.
	ID() string
	// Version returns the version of the last applied event.
	Version() int64

	aggregateBase() *Base
}

// Base is the part of an aggregate that the framework manages. Embed it by
// value in your aggregate type:
//
//	type Account struct {
//		aggregate.Base
//		Balance int64
//	}
//
// Base tracks the aggregate's stream ID, the version of its last applied
// event, the version it was loaded or last saved at (the expected version
// of the next save), and the events recorded since then.
//
// The zero Base is a new aggregate without an ID; [Repository.New] and the
// load methods set the ID. Base has no exported fields, so it adds nothing
// to a JSON encoding of the aggregate.
type Base struct {
	id       string
	version  int64
	stored   int64
	snapshot int64
	pending  []pendingEvent
	saved    eventstore.Position
}

type pendingEvent struct {
	id    eventstore.EventID
	event any
}

//lint:ignore U1000 it implements the unexported method of the aggregate constraint, which staticcheck does not follow through generics.
func (b *Base) aggregateBase() *Base { return b }

// ID returns the aggregate's stream ID ("" until set by the repository).
func (b *Base) ID() string { return b.id }

// Version returns the version of the last event applied to the aggregate,
// counting events recorded but not yet saved. It is 0 for a new aggregate.
func (b *Base) Version() int64 { return b.version }

// StoredVersion returns the stream version the aggregate was loaded at or
// last saved at: the expected version of its next save. It is 0 for an
// aggregate whose stream does not exist yet.
func (b *Base) StoredVersion() int64 { return b.stored }

// Uncommitted returns the events recorded since the aggregate was loaded or
// last saved, in order. The slice is a copy.
func (b *Base) Uncommitted() []any {
	out := make([]any, len(b.pending))
	for i, p := range b.pending {
		out[i] = p.event
	}
	return out
}

// HasUncommitted reports whether the aggregate has events to save.
func (b *Base) HasUncommitted() bool { return len(b.pending) > 0 }

// SavedPosition returns the global position of the last event that the
// last successful [Repository.Save] of this aggregate value stored (as
// [Repository.Save] returns it), or the zero position when it has not
// been saved since it was loaded or created. After [Repository.Update] it
// is what a reader of a projection waits for to see the update
// (read-your-writes); zero means the update saved nothing.
func (b *Base) SavedPosition() eventstore.Position { return b.saved }

// Record applies a new event to agg and appends it to agg's uncommitted
// events, to be stored by the next [Repository.Save]. Command methods call
// it after validating the command:
//
//	func (a *Account) Deposit(amount int64) error {
//		if amount <= 0 {
//			return ErrInvalidAmount
//		}
//		return aggregate.Record(a, DepositCompleted{Amount: amount})
//	}
//
// The event gets its event ID now, so retrying a [Repository.Save] of the
// same aggregate after an ambiguous failure stores it at most once. Pass
// event values (not pointers) of types registered in the repository's
// [eventstore.Registry]: loading decodes stored events as values.
//
// When Apply returns an error, Record records nothing, leaves the version
// unchanged and returns the error. A nil agg or event is refused the same
// way, with an error matching [eventstore.ErrInvalidInput].
func Record(agg Root, event any) error {
	switch {
	case isNil(agg):
		return &eventstore.ValidationError{Field: "aggregate", Reason: "must not be nil"}
	case event == nil:
		return &eventstore.ValidationError{Field: "event", Reason: "must not be nil"}
	}
	if err := agg.Apply(event); err != nil {
		return err
	}
	b := agg.aggregateBase()
	b.version++
	b.pending = append(b.pending, pendingEvent{id: eventstore.NewEventID(), event: event})
	return nil
}

// ErrUnhandledEvent is matched by the error [Unhandled] returns and so by a
// load that met an event the aggregate's Apply does not handle.
var ErrUnhandledEvent = errors.New("unhandled event")

// UnhandledEventError reports an event that an aggregate's Apply does not
// handle. It matches [ErrUnhandledEvent].
type UnhandledEventError struct {
	// Event is the unhandled event.
	Event any
}

func (e *UnhandledEventError) Error() string {
	return fmt.Sprintf("unhandled event of type %T", e.Event)
}

// Is matches [ErrUnhandledEvent].
func (e *UnhandledEventError) Is(target error) bool { return target == ErrUnhandledEvent }

// Unhandled returns an [*UnhandledEventError] for event. Return it from the
// default case of an Apply method's type switch:
//
//	default:
//		return aggregate.Unhandled(event)
func Unhandled(event any) error { return &UnhandledEventError{Event: event} }
