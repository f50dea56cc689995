package memory_test

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/chronicle-go/chronicle/eventstore"
	"github.com/chronicle-go/chronicle/memory"
	"github.com/chronicle-go/chronicle/projection"
)

// A transactional memory storage applies a handler's staged writes with
// the checkpoint: a batch that fails changes nothing, so the read model
// counts each event once, as on PostgreSQL.
func ExampleNewProjectionStore_transactional() {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	store := memory.New(nil)
	storage, err := memory.NewProjectionStore(&memory.ProjectionStoreConfig{Transactional: true})
	if err != nil {
		panic(err)
	}
	var (
		mu     sync.Mutex
		counts = map[string]int{}
	)
	count := projection.HandlerFunc(func(ctx context.Context, ev projection.Event) error {
		tx, ok := memory.ProjectionTxFrom(ctx)
		if !ok {
			return projection.Permanent(fmt.Errorf("no transaction"))
		}
		tx.OnCommit(func() {
			mu.Lock()
			counts[ev.StreamID]++
			mu.Unlock()
		})
		return nil
	})
	runner, err := projection.New(store, storage, &projection.Config{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		panic(err)
	}
	if err := runner.Add(projection.Projection{Name: "counts", Handler: count}); err != nil {
		panic(err)
	}
	for _, stream := range []string{"a", "b", "a"} {
		if _, err := store.Append(ctx, stream, eventstore.Any, eventstore.Event{Type: "Touched", Data: []byte(`{}`)}); err != nil {
			panic(err)
		}
	}
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- runner.Run(runCtx) }()
	if err := runner.WaitForHead(ctx, "counts"); err != nil {
		panic(err)
	}
	stop()
	if err := <-done; err != nil {
		panic(err)
	}
	mu.Lock()
	defer mu.Unlock()
	fmt.Println(counts["a"], counts["b"])
	// Output: 2 1
}
