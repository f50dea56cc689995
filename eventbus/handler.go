package eventbus

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"reflect"
	"slices"

	"github.com/chronicle-go/chronicle/eventstore"
)

// Handler handles messages delivered to a consumer group.
type Handler interface {
	Handle(ctx context.Context, d Delivery) error
}

// HandlerFunc adapts a function to [Handler].
type HandlerFunc func(ctx context.Context, d Delivery) error

// Handle calls f.
func (f HandlerFunc) Handle(ctx context.Context, d Delivery) error { return f(ctx, d) }

// Handlers dispatches messages by event type to typed functions registered
// with [On], decoding (and upcasting) payloads with an
// [eventstore.Registry]. Several functions may handle one type: they run
// in registration order, and the message is acknowledged when all of them
// returned nil (a failure retries the message, and so all its functions:
// make them idempotent). A catch-all registered with [Handlers.All] runs
// for every message after the typed functions.
//
// A message of a type the registry does not know, with no catch-all, is
// dead-lettered with the reason; a known type with no function is
// acknowledged and ignored.
type Handlers struct {
	reg    *eventstore.Registry
	byType map[string][]HandlerFunc
	all    []HandlerFunc
	errs   []error
}

// NewHandlers returns an empty dispatcher decoding with reg.
func NewHandlers(reg *eventstore.Registry) *Handlers {
	h := &Handlers{reg: reg, byType: map[string][]HandlerFunc{}}
	if reg == nil {
		h.errs = append(h.errs, errors.New("event bus handlers: registry is nil"))
	}
	return h
}

// On registers fn for the event type registered for T. Mistakes (T not
// registered, fn nil) are reported by [Handlers.Err] and by Subscribe.
func On[T any](h *Handlers, fn func(ctx context.Context, d Delivery, e T) error) {
	if h.reg == nil {
		return
	}
	var zero T
	name, err := h.reg.Name(zero)
	switch {
	case err != nil:
		h.errs = append(h.errs, fmt.Errorf("event bus handler for %s: %w", reflect.TypeFor[T](), err))
		return
	case fn == nil:
		h.errs = append(h.errs, fmt.Errorf("event bus handler for %q: function is nil", name))
		return
	}
	reg := h.reg
	h.byType[name] = append(h.byType[name], func(ctx context.Context, d Delivery) error {
		e, err := eventstore.DecodeContext[T](ctx, reg, d.Record())
		if err != nil {
			if errors.Is(err, eventstore.ErrDecode) || errors.Is(err, eventstore.ErrUnknownEventType) {
				return Permanent(err)
			}
			return err // a key store out of reach (shredding): worth a retry
		}
		return fn(ctx, d, e)
	})
}

// All registers a catch-all function, called for every message.
func (h *Handlers) All(fn HandlerFunc) {
	if fn == nil {
		h.errs = append(h.errs, errors.New("event bus catch-all handler: function is nil"))
		return
	}
	h.all = append(h.all, fn)
}

// Types returns the event types with a registered function, sorted, or
// nil when a catch-all takes every type. [Consumer.Types] defaults to it,
// so that a group receives only the types it handles.
func (h *Handlers) Types() []string {
	if len(h.all) > 0 || len(h.byType) == 0 {
		return nil
	}
	return slices.Sorted(maps.Keys(h.byType))
}

// Err reports registration mistakes.
func (h *Handlers) Err() error { return errors.Join(h.errs...) }

// Handle dispatches d.
func (h *Handlers) Handle(ctx context.Context, d Delivery) error {
	if err := h.Err(); err != nil {
		return Permanent(err)
	}
	fns := h.byType[d.Type]
	if len(fns) == 0 && len(h.all) == 0 {
		if _, known := h.reg.SchemaVersion(d.Type); !known {
			return Permanent(&eventstore.UnknownEventTypeError{Type: d.Type})
		}
		return nil
	}
	for _, fn := range fns {
		if err := fn(ctx, d); err != nil {
			return err
		}
	}
	for _, fn := range h.all {
		if err := fn(ctx, d); err != nil {
			return err
		}
	}
	return nil
}
