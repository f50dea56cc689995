package natsbus_test

import (
	"context"
	"fmt"
	"os"
	"time"

	"github.com/chronicle-go/chronicle/eventbus"
	"github.com/chronicle-go/chronicle/eventstore"
	"github.com/chronicle-go/chronicle/memory"
	"github.com/chronicle-go/chronicle/natsbus"
	"github.com/chronicle-go/chronicle/natsbus/natstest"
)

type OrderPlaced struct {
	OrderID string `json:"order_id"`
}

// The relay publishes what the store committed to JetStream; a consumer
// group handles it.
func Example() {
	// A NATS server for the example; in production, your cluster's URL.
	dir, _ := os.MkdirTemp("", "natsbus-example-")
	defer os.RemoveAll(dir)
	srv, err := natstest.StartServer(dir)
	if err != nil {
		panic(err)
	}
	defer srv.Shutdown()

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	nc, err := natsbus.Connect(srv.URL(), "orders")
	if err != nil {
		panic(err)
	}
	defer nc.Close()
	bus, err := natsbus.New(ctx, nc, nil)
	if err != nil {
		panic(err)
	}

	reg := eventstore.NewRegistry(nil)
	eventstore.MustRegister[OrderPlaced](reg, "OrderPlaced")
	store := memory.New(nil)
	storage, err := memory.NewProjectionStore(nil)
	if err != nil {
		panic(err)
	}
	relay, err := eventbus.NewRelay(store, storage, bus, nil)
	if err != nil {
		panic(err)
	}
	go relay.Run(ctx)

	done := make(chan struct{})
	h := eventbus.NewHandlers(reg)
	eventbus.On(h, func(ctx context.Context, d eventbus.Delivery, e OrderPlaced) error {
		fmt.Printf("shipping %s (event %d of stream %s)\n", e.OrderID, d.StreamVersion, d.StreamID)
		close(done)
		return nil
	})
	sub, err := bus.Subscribe(ctx, eventbus.Consumer{Group: "shipping", Handler: h})
	if err != nil {
		panic(err)
	}
	defer sub.Close(ctx)

	ev, _ := reg.Encode(OrderPlaced{OrderID: "o-1"})
	if _, err := store.Append(ctx, "order-o-1", eventstore.NoStream, ev); err != nil {
		panic(err)
	}
	select {
	case <-done:
	case <-ctx.Done():
	}
	// Output: shipping o-1 (event 1 of stream order-o-1)
}
