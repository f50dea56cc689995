package projection_test

import (
	"context"
	"encoding/json"
	"errors"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chronicle-go/chronicle/eventstore"
	"github.com/chronicle-go/chronicle/memory"
	"github.com/chronicle-go/chronicle/projection"
)

// While the runner handles a batch, it reads the next one and decodes its
// payloads: a handler of the first batch sees the second batch decoded
// (the upcaster counts decodings). Each payload is decoded once, except
// on a retry, which decodes afresh.
func TestRunnerDecodesAhead(t *testing.T) {
	t.Parallel()
	e := setup(t)
	reg := eventstore.NewRegistry(nil)
	var decodings atomic.Int64
	eventstore.MustRegister[Deposited](reg, "Deposited", eventstore.UpcastData(1, func(b []byte) ([]byte, error) {
		decodings.Add(1)
		return b, nil
	}))
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute) // a hang limit
	defer cancel()
	var last eventstore.AppendResult
	for i := range int64(10) {
		data, err := json.Marshal(Deposited{Account: "acc", Amount: i + 1})
		if err != nil {
			t.Fatal(err)
		}
		// Schema version 1: decoding it runs the upcaster.
		last, err = e.store.Append(ctx, "acc", eventstore.Any, eventstore.Event{Type: "Deposited", SchemaVersion: 1, Data: data})
		if err != nil {
			t.Fatal(err)
		}
	}
	var (
		handled []int64
		failed  bool
	)
	h := projection.NewHandlers(reg)
	projection.On(h, func(_ context.Context, ev projection.Event, d Deposited) error {
		if d.Amount == 1 {
			// Batch 1 decodes as it goes (1 so far); batch 2 is decoded
			// ahead meanwhile.
			deadline := time.Now().Add(time.Minute)
			for decodings.Load() < 6 {
				if time.Now().After(deadline) {
					return projection.Permanent(errors.New("the second batch was not decoded while the first was handled"))
				}
				time.Sleep(time.Millisecond)
			}
		}
		if d.Amount == 7 && !failed {
			failed = true
			return errors.New("fail once")
		}
		handled = append(handled, d.Amount)
		return nil
	})
	r := e.runner(projection.Projection{Name: "ahead", Handler: h, BatchSize: 5})
	e.start(r)
	if err := r.WaitFor(ctx, "ahead", last.Position); err != nil {
		t.Fatal(err)
	}
	want := []int64{1, 2, 3, 4, 5, 6, 7, 8, 9, 10}
	if len(handled) != len(want) {
		t.Fatalf("handled %v, want %v", handled, want)
	}
	for i := range want {
		if handled[i] != want[i] {
			t.Fatalf("handled %v, want %v", handled, want)
		}
	}
	// 10 decodings, plus one for the retry of 7 (and, in a transaction,
	// the redelivery of the batch's events before it: 6).
	if n := decodings.Load(); n < 11 || n > 12 {
		t.Fatalf("%d decodings for 10 events and one retry, want 11 or 12", n)
	}
}

// readLog is a store that records the position after which each ReadAll
// starts.
type readLog struct {
	*memory.Store
	mu     sync.Mutex
	afters []eventstore.Position
}

func (s *readLog) ReadAll(ctx context.Context, after eventstore.Position, limit int) ([]eventstore.Record, error) {
	s.mu.Lock()
	s.afters = append(s.afters, after)
	s.mu.Unlock()
	return s.Store.ReadAll(ctx, after, limit)
}

func (s *readLog) started(after eventstore.Position) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Contains(s.afters, after)
}

// While the runner handles a batch of a partition catching up, the next
// batch is decoded and the one after it is already being read: a handler
// of batch 2 sees the read of batch 4 start. Nothing is delivered twice
// or out of order.
func TestRunnerReadsTwoBatchesAhead(t *testing.T) {
	t.Parallel()
	e := setup(t)
	var results []eventstore.AppendResult
	for i := range int64(30) {
		results = append(results, e.deposit("acc", i+1))
	}
	store := &readLog{Store: e.store}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute) // a hang limit
	defer cancel()
	var handled []int64
	h := projection.NewHandlers(e.reg)
	projection.On(h, func(ctx context.Context, _ projection.Event, d Deposited) error {
		if d.Amount == 6 { // the first event of batch 2 (batches of 5)
			// Batch 3 (after event 10) is read ahead; batch 4 (after
			// event 15) must start being read too, before batch 2 is done.
			deadline := time.Now().Add(10 * time.Second)
			for !store.started(results[14].Position) {
				if time.Now().After(deadline) || ctx.Err() != nil {
					return projection.Permanent(errors.New("batch 4 was not read while batch 2 was handled"))
				}
				time.Sleep(time.Millisecond)
			}
			// And no further: batch 5 is read only once the runner takes
			// batch 3 (three batches at most).
			if store.started(results[19].Position) {
				return projection.Permanent(errors.New("batch 5 was read while batch 2 was handled: the read-ahead is not bounded"))
			}
		}
		handled = append(handled, d.Amount)
		return nil
	})
	r, err := projection.New(store, e.storage, &projection.Config{Logger: quietLogger(), PollInterval: 20 * time.Millisecond, AcquireInterval: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Add(projection.Projection{Name: "two-ahead", Handler: h, BatchSize: 5}); err != nil {
		t.Fatal(err)
	}
	e.start(r)
	if err := r.WaitFor(ctx, "two-ahead", results[len(results)-1].Position); err != nil {
		t.Fatal(err)
	}
	for i, amount := range handled {
		if amount != int64(i+1) {
			t.Fatalf("handled %v, want 1 to 30 in order, once each", handled)
		}
	}
	if len(handled) != 30 {
		t.Fatalf("handled %d events, want 30", len(handled))
	}
}
