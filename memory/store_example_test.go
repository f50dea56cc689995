package memory_test

import (
	"context"
	"errors"
	"fmt"

	"github.com/chronicle-go/chronicle/eventstore"
	"github.com/chronicle-go/chronicle/memory"
)

func deposit(amount int) eventstore.Event {
	return eventstore.Event{Type: "DepositCompleted", Data: fmt.Appendf(nil, `{"amount":%d}`, amount)}
}

// Append to a stream, read it back, and read every stream in global order.
func Example() {
	ctx := context.Background()
	store := memory.New(nil)

	opened := eventstore.Event{Type: "AccountOpened", Data: []byte(`{"owner":"Ada"}`)}
	res, err := store.Append(ctx, "account-42", eventstore.NoStream, opened, deposit(100))
	if err != nil {
		panic(err)
	}
	fmt.Println("account-42 is at version", res.Version)

	if _, err := store.Append(ctx, "account-7", eventstore.NoStream, opened); err != nil {
		panic(err)
	}
	if _, err := store.Append(ctx, "account-42", eventstore.Exact(res.Version), deposit(50)); err != nil {
		panic(err)
	}

	recs, err := store.ReadStream(ctx, "account-42", eventstore.ReadStreamOptions{})
	if err != nil {
		panic(err)
	}
	for _, r := range recs {
		fmt.Printf("v%d %s %s\n", r.StreamVersion, r.Type, r.Data)
	}

	// A projection reads all events in global order, from its checkpoint.
	var checkpoint eventstore.Position
	for r, err := range eventstore.ReadAllSeq(ctx, store, checkpoint, 100) {
		if err != nil {
			panic(err)
		}
		fmt.Printf("%s: %s v%d %s\n", r.Position, r.StreamID, r.StreamVersion, r.Type)
		checkpoint = r.Position
	}
	// Output:
	// account-42 is at version 2
	// v1 AccountOpened {"owner":"Ada"}
	// v2 DepositCompleted {"amount":100}
	// v3 DepositCompleted {"amount":50}
	// 1/1: account-42 v1 AccountOpened
	// 1/2: account-42 v2 DepositCompleted
	// 2/3: account-7 v1 AccountOpened
	// 3/4: account-42 v3 DepositCompleted
}

// Two writers decide on the same version of a stream: the second append
// fails with a concurrency conflict, and the writer reloads and retries.
func ExampleStore_Append_concurrencyConflict() {
	ctx := context.Background()
	store := memory.New(nil)
	if _, err := store.Append(ctx, "account-42", eventstore.NoStream, deposit(100)); err != nil {
		panic(err)
	}

	// Both writers loaded the stream at version 1.
	loaded := int64(1)
	if _, err := store.Append(ctx, "account-42", eventstore.Exact(loaded), deposit(10)); err != nil {
		panic(err)
	}
	_, err := store.Append(ctx, "account-42", eventstore.Exact(loaded), deposit(20))
	if errors.Is(err, eventstore.ErrConcurrencyConflict) {
		var conflict *eventstore.ConcurrencyError
		errors.As(err, &conflict)
		fmt.Printf("conflict: expected version %s, actual %d\n", conflict.Expected, conflict.Actual)

		// Reload the current version and retry the command.
		current, err := store.StreamVersion(ctx, "account-42")
		if err != nil {
			panic(err)
		}
		res, err := store.Append(ctx, "account-42", eventstore.Exact(current), deposit(20))
		if err != nil {
			panic(err)
		}
		fmt.Println("retried: now at version", res.Version)
	}
	// Output:
	// conflict: expected version 1, actual 2
	// retried: now at version 3
}

// Setting event IDs makes an append safe to retry, e.g. after a timeout
// whose outcome is unknown: the retry returns the original result.
func ExampleStore_Append_idempotentRetry() {
	ctx := context.Background()
	store := memory.New(nil)
	e := deposit(100)
	e.ID = eventstore.NewEventID()

	first, _ := store.Append(ctx, "account-42", eventstore.NoStream, e)
	retry, err := store.Append(ctx, "account-42", eventstore.NoStream, e)
	fmt.Println(retry == first, err)

	version, _ := store.StreamVersion(ctx, "account-42")
	fmt.Println("version", version)

	e.Data = []byte(`{"amount":999}`) // same ID, different content
	_, err = store.Append(ctx, "account-42", eventstore.Any, e)
	fmt.Println(errors.Is(err, eventstore.ErrDuplicateEvent))
	// Output:
	// true <nil>
	// version 1
	// true
}
