package telemetry_test

import (
	"context"
	"fmt"
	"iter"
	"sync/atomic"
	"testing"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/chronicle-go/chronicle/eventstore"
	"github.com/chronicle-go/chronicle/memory"
	"github.com/chronicle-go/chronicle/telemetry"
)

// pagingStore is an in-memory store that reads pages itself, as
// postgres.Store does (ahead of the caller), counting the calls.
type pagingStore struct {
	*memory.Store
	calls atomic.Int32
}

func (s *pagingStore) ReadAllPages(ctx context.Context, after eventstore.Position, pageSize int) iter.Seq2[[]eventstore.Record, error] {
	s.calls.Add(1)
	return func(yield func([]eventstore.Record, error) bool) {
		for {
			recs, err := s.ReadAll(ctx, after, pageSize)
			if err != nil || len(recs) > 0 {
				if !yield(recs, err) || err != nil {
					return
				}
				after = recs[len(recs)-1].Position
			}
			if len(recs) < pageSize {
				return
			}
		}
	}
}

// Reading all events through the telemetry store keeps the wrapped
// store's own page reading (its read-ahead), records each page as a
// ReadAll span, and still pages a store that has no page reader.
func TestReadAllPages(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name   string
		paging bool
	}{{"page reader", true}, {"plain store", false}} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ctx := t.Context()
			var next eventstore.Store = memory.New(nil)
			paging := &pagingStore{Store: memory.New(nil)}
			if tc.paging {
				next = paging
			}
			for i := range 25 {
				if _, err := next.Append(ctx, fmt.Sprintf("s-%d", i%3), eventstore.Any, eventstore.Event{Type: "E", Data: []byte(`{}`)}); err != nil {
					t.Fatal(err)
				}
			}
			spans := tracetest.NewSpanRecorder()
			tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(spans))
			t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
			store, err := telemetry.NewStore(next, &telemetry.Config{TracerProvider: tp})
			if err != nil {
				t.Fatal(err)
			}
			var got []int64
			for rec, err := range eventstore.ReadAllSeq(ctx, store, eventstore.Position{}, 10) {
				if err != nil {
					t.Fatal(err)
				}
				got = append(got, rec.Position.Global)
			}
			if len(got) != 25 {
				t.Fatalf("read %d events, want 25", len(got))
			}
			for i := 1; i < len(got); i++ {
				if got[i] <= got[i-1] {
					t.Fatalf("positions out of order: %v", got)
				}
			}
			if tc.paging && paging.calls.Load() != 1 {
				t.Errorf("the wrapped store's ReadAllPages ran %d times, want 1", paging.calls.Load())
			}
			pages := 0
			for _, s := range spans.Ended() {
				if s.Name() == telemetry.SpanReadAll {
					pages++
				}
			}
			if pages != 3 {
				t.Errorf("%d %s spans, want 3 (pages of 10, 10 and 5)", pages, telemetry.SpanReadAll)
			}
		})
	}
}
