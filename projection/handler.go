package projection

import (
	"context"
	"errors"
	"fmt"
	"reflect"

	"github.com/chronicle-go/chronicle/eventstore"
)

// Event is what a handler receives: the stored record (event ID, stream,
// stream version, global position, type, payload, metadata, recorded-at
// time) and where it is being delivered.
//
// Handlers with outside effects deduplicate on [eventstore.Record.EventID]:
// they may see an event more than once (see [AtLeastOnce]).
type Event struct {
	eventstore.Record

	// Projection is the name of the projection handling the event.
	Projection string
	// Partition is the partition handling the event: 0 ≤ Partition <
	// [Projection.Partitions]. It is [PartitionOf] the event's stream.
	Partition int
	// Attempt counts this process's attempts to handle the event: 1 on the
	// first delivery, 2 on the first retry, and so on.
	Attempt int

	// decoded is the payload decoded ahead by [Handlers] while the runner
	// read the batch (see decodeAhead), or nil. It serves the first
	// attempt only: a retry decodes afresh, in case a handler changed
	// the value.
	decoded any
}

// Handler handles the events of a projection, one at a time and in global
// order (per partition). An error makes the runner retry the event and
// then apply the projection's [FailurePolicy]; wrap it with [Permanent] to
// skip the retries.
//
// In [Transactional] mode on a store with transactions, Handle runs inside
// the batch's transaction, which the storage puts in ctx (on PostgreSQL,
// see postgres.ProjectionTx); its writes through it commit together with
// the checkpoint.
type Handler interface {
	Handle(ctx context.Context, ev Event) error
}

// HandlerFunc adapts a function to [Handler]. A HandlerFunc used as
// [Projection.Handler] receives every event.
type HandlerFunc func(ctx context.Context, ev Event) error

// Handle calls f.
func (f HandlerFunc) Handle(ctx context.Context, ev Event) error { return f(ctx, ev) }

// Resetter is implemented by handlers that can clear their read model. A
// rebuild calls Reset before replaying the projection from the start; see
// [Projection.Reset], which takes precedence.
type Resetter interface {
	Reset(ctx context.Context, partition int) error
}

// Handlers dispatches events to typed handlers by event type, decoding each
// payload with an [eventstore.Registry]. Register handlers with [On] before
// the runner starts; events of a type without a handler go to the
// [Handlers.Fallback] handler, or are skipped.
//
//	h := projection.NewHandlers(registry)
//	projection.On(h, func(ctx context.Context, ev projection.Event, e DepositCompleted) error {
//		return balances.Add(ctx, ev.StreamID, e.Amount)
//	})
//
// Registration mistakes (an unregistered Go type, two handlers for one
// type) are collected and reported by [Handlers.Err], which [Runner.Add]
// checks, so they fail at start-up rather than on the first event.
type Handlers struct {
	reg      *eventstore.Registry
	byType   map[string]HandlerFunc
	decoders map[string]func(context.Context, eventstore.Record) (any, error)
	fallback HandlerFunc
	reset    func(ctx context.Context, partition int) error
	errs     []error
}

// NewHandlers returns an empty [Handlers] that decodes payloads with reg.
func NewHandlers(reg *eventstore.Registry) *Handlers {
	h := &Handlers{reg: reg, byType: map[string]HandlerFunc{}, decoders: map[string]func(context.Context, eventstore.Record) (any, error){}}
	if reg == nil {
		h.errs = append(h.errs, errors.New("projection handlers: registry is nil"))
	}
	return h
}

// On registers fn for the events whose registered Go type is T. The
// payload is decoded (and upcast) with the registry of h; a payload that
// cannot be decoded is a [Permanent] failure.
func On[T any](h *Handlers, fn func(ctx context.Context, ev Event, e T) error) {
	if h.reg == nil {
		return
	}
	var zero T
	name, err := h.reg.Name(zero)
	switch {
	case err != nil:
		h.errs = append(h.errs, fmt.Errorf("projection handler for %s: %w", reflect.TypeFor[T](), err))
		return
	case fn == nil:
		h.errs = append(h.errs, fmt.Errorf("projection handler for %q: function is nil", name))
		return
	case h.byType[name] != nil:
		h.errs = append(h.errs, fmt.Errorf("projection handler for %q: registered twice", name))
		return
	}
	reg := h.reg
	h.byType[name] = func(ctx context.Context, ev Event) error {
		if e, ok := ev.decoded.(T); ok && ev.Attempt == 1 {
			return fn(ctx, ev, e)
		}
		e, err := eventstore.DecodeContext[T](ctx, reg, ev.Record)
		if err != nil {
			if errors.Is(err, eventstore.ErrDecode) || errors.Is(err, eventstore.ErrUnknownEventType) {
				return Permanent(err)
			}
			return err // a key store out of reach (shredding): worth a retry
		}
		return fn(ctx, ev, e)
	}
	h.decoders[name] = func(ctx context.Context, rec eventstore.Record) (any, error) {
		return eventstore.DecodeContext[T](ctx, reg, rec)
	}
}

// decodeAhead decodes the payloads of evs that have an [On] handler,
// while the runner reads ahead: the decoding of the next batch then
// overlaps the handling and checkpoint commit of the current one. A
// payload that fails to decode (or whose key store is out of reach) is
// left alone: its handler decodes it again, and fails, in order.
func (h *Handlers) decodeAhead(ctx context.Context, evs []Event) {
	if h.Err() != nil {
		return
	}
	for i := range evs {
		if decode := h.decoders[evs[i].Type]; decode != nil {
			if v, err := decode(ctx, evs[i].Record); err == nil {
				evs[i].decoded = v
			}
		}
	}
}

// Fallback sets the handler of events whose type has no [On] handler,
// including types the registry does not know. Without one, such events
// are skipped (their checkpoint still advances).
func (h *Handlers) Fallback(fn HandlerFunc) { h.fallback = fn }

// OnReset sets the reset hook a rebuild calls to clear the read model; it
// makes h a [Resetter].
func (h *Handlers) OnReset(fn func(ctx context.Context, partition int) error) { h.reset = fn }

// Reset implements [Resetter]: it calls the [Handlers.OnReset] hook, if
// any.
func (h *Handlers) Reset(ctx context.Context, partition int) error {
	if h.reset == nil {
		return nil
	}
	return h.reset(ctx, partition)
}

// Err reports the registration mistakes made so far, joined, or nil.
func (h *Handlers) Err() error { return errors.Join(h.errs...) }

// Handle implements [Handler].
func (h *Handlers) Handle(ctx context.Context, ev Event) error {
	if err := h.Err(); err != nil {
		return Permanent(err)
	}
	if fn := h.byType[ev.Type]; fn != nil {
		return fn(ctx, ev)
	}
	if h.fallback != nil {
		return h.fallback(ctx, ev)
	}
	return nil
}

// ErrPermanent is matched by a [*PermanentError]: [eventstore.ErrPermanent],
// shared with the event bus.
var ErrPermanent = eventstore.ErrPermanent

// PermanentError marks a handler failure that retrying cannot fix, such as
// a payload that does not decode: the runner applies the projection's
// [FailurePolicy] at once instead of retrying. It is
// [eventstore.PermanentError], shared with the event bus.
type PermanentError = eventstore.PermanentError

// Permanent wraps err in a [*PermanentError]. It returns nil for nil.
func Permanent(err error) error { return eventstore.Permanent(err) }

// isPermanent reports whether retrying err is pointless: it was marked
// [Permanent], or it is a payload the registry cannot decode.
func isPermanent(err error) bool {
	return errors.Is(err, ErrPermanent) || errors.Is(err, eventstore.ErrDecode) || errors.Is(err, eventstore.ErrUnknownEventType)
}
