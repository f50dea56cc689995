package eventbus_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/chronicle-go/chronicle/eventbus"
	"github.com/chronicle-go/chronicle/eventstore"
)

type signedUp struct{ Email string }
type unregistered struct{}

func setupHandlers(t *testing.T) (*eventstore.Registry, *eventbus.Handlers) {
	t.Helper()
	reg := eventstore.NewRegistry(nil)
	if err := eventstore.Register[signedUp](reg, "SignedUp"); err != nil {
		t.Fatal(err)
	}
	return reg, eventbus.NewHandlers(reg)
}

func delivery(typ, data string) eventbus.Delivery {
	return eventbus.Delivery{Message: eventbus.Message{EventID: eventstore.NewEventID(), Type: typ, SchemaVersion: 1, StreamID: "s", StreamVersion: 1, Data: []byte(data)}}
}

func TestHandlersDispatch(t *testing.T) {
	t.Parallel()
	_, h := setupHandlers(t)
	var calls []string
	eventbus.On(h, func(_ context.Context, _ eventbus.Delivery, e signedUp) error {
		calls = append(calls, "first:"+e.Email)
		return nil
	})
	eventbus.On(h, func(_ context.Context, _ eventbus.Delivery, e signedUp) error {
		calls = append(calls, "second:"+e.Email)
		return nil
	})
	h.All(func(_ context.Context, d eventbus.Delivery) error {
		calls = append(calls, "all:"+d.Type)
		return nil
	})
	if err := h.Err(); err != nil {
		t.Fatal(err)
	}
	if types := h.Types(); types != nil {
		t.Fatalf("Types() = %v with a catch-all, want nil (every type)", types)
	}
	_, typed := setupHandlers(t)
	eventbus.On(typed, func(context.Context, eventbus.Delivery, signedUp) error { return nil })
	if types := typed.Types(); len(types) != 1 || types[0] != "SignedUp" {
		t.Fatalf("Types() = %v, want [SignedUp]", types)
	}
	ctx := context.Background()
	if err := h.Handle(ctx, delivery("SignedUp", `{"Email":"a@x"}`)); err != nil {
		t.Fatal(err)
	}
	if err := h.Handle(ctx, delivery("Other", `{}`)); err != nil {
		t.Fatal(err)
	}
	want := "first:a@x second:a@x all:SignedUp all:Other"
	if got := strings.Join(calls, " "); got != want {
		t.Fatalf("calls %q, want %q", got, want)
	}
}

func TestHandlersFailures(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name      string
		register  func(h *eventbus.Handlers)
		d         eventbus.Delivery
		permanent bool
		errText   string
	}{
		{"unknown type without catch-all", func(h *eventbus.Handlers) {}, delivery("Nope", `{}`), true, `unknown event type "Nope"`},
		{"known type without handler is ignored", func(h *eventbus.Handlers) {}, delivery("SignedUp", `{}`), false, ""},
		{"undecodable payload", func(h *eventbus.Handlers) {
			eventbus.On(h, func(context.Context, eventbus.Delivery, signedUp) error { return nil })
		}, delivery("SignedUp", `{not json`), true, "decode"},
		{"handler error is retryable", func(h *eventbus.Handlers) {
			eventbus.On(h, func(context.Context, eventbus.Delivery, signedUp) error { return errors.New("smtp down") })
		}, delivery("SignedUp", `{}`), false, "smtp down"},
		{"unregistered go type", func(h *eventbus.Handlers) {
			eventbus.On(h, func(context.Context, eventbus.Delivery, unregistered) error { return nil })
		}, delivery("SignedUp", `{}`), true, "unknown event type"},
		{"nil function", func(h *eventbus.Handlers) {
			eventbus.On[signedUp](h, nil)
		}, delivery("SignedUp", `{}`), true, "function is nil"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, h := setupHandlers(t)
			tt.register(h)
			err := h.Handle(context.Background(), tt.d)
			if tt.errText == "" {
				if err != nil {
					t.Fatalf("error %v, want nil", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.errText) {
				t.Fatalf("error %v, want one containing %q", err, tt.errText)
			}
			if got := eventbus.IsPermanent(err); got != tt.permanent {
				t.Fatalf("IsPermanent(%v) = %v, want %v", err, got, tt.permanent)
			}
		})
	}
}
