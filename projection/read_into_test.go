package projection_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/chronicle-go/chronicle/eventstore"
	"github.com/chronicle-go/chronicle/memory"
	"github.com/chronicle-go/chronicle/projection"
)

// intoStore is a memory store that is an [eventstore.RecordReader]: it
// reads with ReadAll, then writes each record through next, after first
// filling the first three with another record's values and starting again
// from index 0, as a read retried after a lost connection does.
type intoStore struct {
	*memory.Store
	calls atomic.Int64
}

func (s *intoStore) ReadAllInto(ctx context.Context, after eventstore.Position, limit int, next func(i int) *eventstore.Record) (int, error) {
	if next == nil {
		return 0, &eventstore.ValidationError{Field: "next", Reason: "must not be nil"}
	}
	recs, err := s.ReadAll(ctx, after, limit)
	if err != nil {
		return 0, err
	}
	s.calls.Add(1)
	stale := eventstore.Record{StreamID: "stale", StreamVersion: 99, Type: "Stale", Data: []byte(`{}`),
		Metadata: eventstore.Metadata{CorrelationID: "stale"}}
	for i := range min(len(recs), 3) {
		*next(i) = stale
	}
	for i := range recs {
		*next(i) = recs[i]
	}
	return len(recs), nil
}

// A runner on a store that is an eventstore.RecordReader reads its
// batches into its events: every event is handled once, in order within
// its stream, in its partition, with its payload decoded ahead, and a
// failed event is retried; the records a retried read wrote first never
// reach a handler.
func TestRunnerReadsIntoItsEvents(t *testing.T) {
	t.Parallel()
	reg := eventstore.NewRegistry(nil)
	eventstore.MustRegister[Deposited](reg, "Deposited")
	storage, err := memory.NewProjectionStore(nil)
	if err != nil {
		t.Fatal(err)
	}
	store := &intoStore{Store: memory.New(nil)}
	ctx := waitCtx(t)

	const streams, perStream, parts = 7, 60, 3
	var (
		mu      sync.Mutex
		last    = map[string]int64{}
		count   int
		retried bool
		errs    []string
	)
	h := projection.NewHandlers(reg)
	projection.On(h, func(_ context.Context, ev projection.Event, d Deposited) error {
		mu.Lock()
		defer mu.Unlock()
		if ev.StreamID == "acc-3" && ev.StreamVersion == 5 && !retried {
			retried = true
			return errors.New("fail once")
		}
		switch {
		case ev.StreamVersion != last[ev.StreamID]+1:
			errs = append(errs, fmt.Sprintf("%s: version %d after %d", ev.StreamID, ev.StreamVersion, last[ev.StreamID]))
		case ev.Partition != projection.PartitionOf(ev.StreamID, parts):
			errs = append(errs, fmt.Sprintf("%s in partition %d", ev.StreamID, ev.Partition))
		case ev.Projection != "into" || d.Account != ev.StreamID || d.Amount != ev.StreamVersion:
			errs = append(errs, fmt.Sprintf("%s v%d: projection %q, payload %+v", ev.StreamID, ev.StreamVersion, ev.Projection, d))
		case (ev.Attempt == 2) != (ev.StreamID == "acc-3" && ev.StreamVersion == 5):
			errs = append(errs, fmt.Sprintf("%s v%d: attempt %d", ev.StreamID, ev.StreamVersion, ev.Attempt))
		}
		last[ev.StreamID] = ev.StreamVersion
		count++
		return nil
	})
	r, err := projection.New(store, storage, testConfig())
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Add(projection.Projection{Name: "into", Handler: h, Partitions: parts, BatchSize: 200}); err != nil {
		t.Fatal(err)
	}
	var res eventstore.AppendResult
	for v := range int64(perStream) {
		for s := range streams {
			stream := fmt.Sprintf("acc-%d", s)
			ev, err := reg.Encode(Deposited{Account: stream, Amount: v + 1})
			if err != nil {
				t.Fatal(err)
			}
			if res, err = store.Append(ctx, stream, eventstore.Any, ev); err != nil {
				t.Fatal(err)
			}
		}
	}
	rctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(rctx) }()
	err = r.WaitFor(ctx, "into", res.Position)
	cancel()
	if rerr := <-done; rerr != nil {
		t.Errorf("Run: %v", rerr)
	}
	if err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(errs) > 0 {
		t.Fatalf("wrong events: %v", errs)
	}
	if count != streams*perStream || !retried {
		t.Fatalf("handled %d events (retried: %t), want %d", count, retried, streams*perStream)
	}
	if store.calls.Load() == 0 {
		t.Fatal("the runner never read with ReadAllInto")
	}
}
