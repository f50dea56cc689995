package projection_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/chronicle-go/chronicle/eventstore"
	"github.com/chronicle-go/chronicle/projection"
)

// batchRecorder is a BatchObserver that records the batches and checks
// that handlers run under its context.
type batchRecorder struct {
	mu      sync.Mutex
	batches []projection.Batch
	ends    []error
	open    int
	inCtx   int // handler calls that saw the observer's context value
}

type observerKey struct{}

func (r *batchRecorder) StartBatch(ctx context.Context, b projection.Batch) (context.Context, func(error)) {
	r.mu.Lock()
	r.batches = append(r.batches, b)
	r.open++
	r.mu.Unlock()
	var once sync.Once
	return context.WithValue(ctx, observerKey{}, b), func(err error) {
		once.Do(func() {
			r.mu.Lock()
			defer r.mu.Unlock()
			r.ends = append(r.ends, err)
			r.open--
		})
	}
}

func TestBatchObserver(t *testing.T) {
	t.Parallel()
	e := setup(t)
	for i := range 25 {
		e.deposit(fmt.Sprintf("acc-%d", i%3), int64(i))
	}
	rec := &batchRecorder{}
	r, err := projection.New(e.store, e.storage, &projection.Config{
		Logger: quietLogger(), PollInterval: 20 * time.Millisecond, AcquireInterval: 20 * time.Millisecond,
		BatchSize: 10, Observer: rec,
	})
	if err != nil {
		t.Fatal(err)
	}
	err = r.Add(projection.Projection{Name: "observed", Handler: projection.HandlerFunc(func(ctx context.Context, ev projection.Event) error {
		if b, ok := ctx.Value(observerKey{}).(projection.Batch); ok && b.Projection == "observed" && ev.Position.Compare(b.From) > 0 && ev.Position.Compare(b.To) <= 0 {
			rec.mu.Lock()
			rec.inCtx++
			rec.mu.Unlock()
		}
		if ev.StreamVersion == 2 && ev.StreamID == "acc-1" {
			return projection.Permanent(errors.New("parked on purpose"))
		}
		return nil
	}), OnFailure: projection.ParkOnFailure})
	if err != nil {
		t.Fatal(err)
	}
	e.start(r)
	if err := r.WaitForHead(waitCtx(t), "observed"); err != nil {
		t.Fatal(err)
	}
	// The last batch's end follows its commit, which WaitForHead saw.
	for deadline := time.Now().Add(2 * time.Minute); ; time.Sleep(10 * time.Millisecond) {
		rec.mu.Lock()
		n := len(rec.ends)
		rec.mu.Unlock()
		if n >= 3 || time.Now().After(deadline) {
			break
		}
	}
	rec.mu.Lock()
	defer rec.mu.Unlock()
	if len(rec.batches) != 3 || rec.open != 0 || len(rec.ends) != 3 {
		t.Fatalf("observed %d batches (%d still open, %d ended), want 3 of 10, 10 and 5 events: %+v", len(rec.batches), rec.open, len(rec.ends), rec.batches)
	}
	var from eventstore.Position
	for i, b := range rec.batches {
		want := []int{10, 10, 5}[i]
		if b.Projection != "observed" || b.Partition != 0 || b.Partitions != 1 || b.Events != want || b.From != from || b.To.Compare(b.From) <= 0 {
			t.Errorf("batch %d = %+v, want %d events from %s", i, b, want, from)
		}
		if rec.ends[i] != nil {
			t.Errorf("batch %d ended with %v, want nil (a parked event is handled)", i, rec.ends[i])
		}
		from = b.To
	}
	if rec.inCtx < 25 {
		t.Errorf("%d handler calls ran under the observer's context, want every one of the 25 events'", rec.inCtx)
	}
}
