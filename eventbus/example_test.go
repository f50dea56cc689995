package eventbus_test

import (
	"context"
	"fmt"
	"time"

	"github.com/chronicle-go/chronicle/eventbus"
	"github.com/chronicle-go/chronicle/eventstore"
)

type UserRegistered struct {
	Email string `json:"email"`
}

// A consumer group on the in-process bus, with a typed handler.
func Example() {
	ctx := context.Background()
	reg := eventstore.NewRegistry(nil)
	eventstore.MustRegister[UserRegistered](reg, "UserRegistered")
	bus := eventbus.NewMemoryBus(nil)

	done := make(chan struct{})
	h := eventbus.NewHandlers(reg)
	eventbus.On(h, func(ctx context.Context, d eventbus.Delivery, e UserRegistered) error {
		fmt.Printf("welcome %s (stream %s, attempt %d)\n", e.Email, d.StreamID, d.Attempt)
		close(done)
		return nil
	})
	sub, err := bus.Subscribe(ctx, eventbus.Consumer{Group: "welcome-email", Handler: h})
	if err != nil {
		panic(err)
	}
	defer sub.Close(ctx)

	err = bus.Publish(ctx, eventbus.Message{
		EventID: eventstore.NewEventID(), Type: "UserRegistered", SchemaVersion: 1,
		StreamID: "user-1", StreamVersion: 1, Data: []byte(`{"email":"ada@example.com"}`),
	})
	if err != nil {
		panic(err)
	}
	select {
	case <-done:
	case <-time.After(time.Minute):
	}
	// Output: welcome ada@example.com (stream user-1, attempt 1)
}
