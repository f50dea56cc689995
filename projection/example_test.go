package projection_test

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/chronicle-go/chronicle/eventstore"
	"github.com/chronicle-go/chronicle/memory"
	"github.com/chronicle-go/chronicle/projection"
	"github.com/chronicle-go/chronicle/projection/projectionstore"
)

type DepositCompleted struct {
	AccountID string `json:"account_id"`
	Amount    int64  `json:"amount"`
}

// A projection keeping account balances, on the in-memory store, with
// read-your-writes through WaitFor.
func Example() {
	ctx := context.Background()
	reg := eventstore.NewRegistry(nil)
	eventstore.MustRegister[DepositCompleted](reg, "DepositCompleted")
	store := memory.New(nil)

	var mu sync.Mutex
	balances := map[string]int64{}
	h := projection.NewHandlers(reg)
	projection.On(h, func(_ context.Context, ev projection.Event, e DepositCompleted) error {
		mu.Lock()
		defer mu.Unlock()
		balances[e.AccountID] += e.Amount
		return nil
	})

	storage, err := memory.NewProjectionStore(nil)
	if err != nil {
		panic(err)
	}
	runner, err := projection.New(store, storage, &projection.Config{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		panic(err)
	}
	if err := runner.Add(projection.Projection{Name: "balances", Handler: h}); err != nil {
		panic(err)
	}
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error)
	go func() { done <- runner.Run(runCtx) }()

	ev, _ := reg.Encode(DepositCompleted{AccountID: "acc-1", Amount: 42})
	res, err := store.Append(ctx, "account-acc-1", eventstore.NoStream, ev)
	if err != nil {
		panic(err)
	}
	waitCtx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := runner.WaitFor(waitCtx, "balances", res.Position); err != nil {
		panic(err)
	}
	mu.Lock()
	fmt.Println("acc-1:", balances["acc-1"])
	mu.Unlock()

	stop()
	<-done
	// Output: acc-1: 42
}

// Parked events can be listed, retried and skipped.
func Example_deadLetters() {
	ctx := context.Background()
	store := memory.New(nil)
	storage, _ := memory.NewProjectionStore(nil)
	runner, _ := projection.New(store, storage, &projection.Config{
		Logger: slog.New(slog.DiscardHandler),
		Retry:  projection.RetryPolicy{MaxAttempts: 2, BaseDelay: time.Millisecond},
	})
	failing := projection.HandlerFunc(func(_ context.Context, ev projection.Event) error {
		return fmt.Errorf("cannot handle %s", ev.Type)
	})
	_ = runner.Add(projection.Projection{Name: "mailer", Handler: failing, Mode: projection.AtLeastOnce, OnFailure: projection.ParkOnFailure})
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error)
	go func() { done <- runner.Run(runCtx) }()

	res, _ := store.Append(ctx, "user-1", eventstore.NoStream, eventstore.Event{Type: "UserRegistered", Data: []byte(`{}`)})
	waitCtx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	_ = runner.WaitFor(waitCtx, "mailer", res.Position) // the projection moved past the event

	dls, _ := storage.DeadLetters(ctx, projectionstore.DeadLetterFilter{Projection: "mailer"})
	for _, dl := range dls {
		fmt.Printf("%s %s v%d: %s after %d attempts (%s)\n", dl.Projection, dl.StreamID, dl.StreamVersion, dl.Error, dl.Attempts, dl.Status)
		_ = storage.SkipDeadLetter(ctx, dl.ID)
	}
	stop()
	<-done
	// Output: mailer user-1 v1: cannot handle UserRegistered after 2 attempts (parked)
}

func ExamplePartitionOf() {
	// Every event of a stream goes to the same partition, between 0 and
	// the count minus one.
	p := projection.PartitionOf("account-42", 8)
	fmt.Println(p >= 0 && p < 8)
	fmt.Println(projection.PartitionOf("account-42", 1))
	// Output:
	// true
	// 0
}
