package eventstore_test

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/chronicle-go/chronicle/eventstore"
	"github.com/chronicle-go/chronicle/memory"
)

// flakyStore fails every read after the first failAfter ones and counts reads.
type flakyStore struct {
	*memory.Store
	failAfter, reads int
}

var errFlaky = errors.New("connection lost")

func (s *flakyStore) ReadStream(ctx context.Context, id string, opts eventstore.ReadStreamOptions) ([]eventstore.Record, error) {
	s.reads++
	if s.reads > s.failAfter {
		return nil, errFlaky
	}
	return s.Store.ReadStream(ctx, id, opts)
}

func (s *flakyStore) ReadAll(ctx context.Context, after eventstore.Position, limit int) ([]eventstore.Record, error) {
	s.reads++
	if s.reads > s.failAfter {
		return nil, errFlaky
	}
	return s.Store.ReadAll(ctx, after, limit)
}

func setupFlaky(t *testing.T, failAfter int) (context.Context, *flakyStore) {
	t.Helper()
	ctx := t.Context()
	s := &flakyStore{Store: memory.New(nil), failAfter: failAfter}
	for i := range 10 {
		e := eventstore.Event{Type: "E", Data: fmt.Appendf(nil, `{"n":%d}`, i)}
		if _, err := s.Append(ctx, "s", eventstore.Any, e); err != nil {
			t.Fatal(err)
		}
	}
	return ctx, s
}

// An error ends the sequence after the events read before it.
func TestSeqErrors(t *testing.T) {
	t.Parallel()
	seqs := map[string]func(ctx context.Context, s eventstore.Store) func(func(eventstore.Record, error) bool){
		"ReadStreamSeq": func(ctx context.Context, s eventstore.Store) func(func(eventstore.Record, error) bool) {
			return eventstore.ReadStreamSeq(ctx, s, "s", eventstore.ReadStreamOptions{}, 4)
		},
		"ReadStreamSeq backward": func(ctx context.Context, s eventstore.Store) func(func(eventstore.Record, error) bool) {
			return eventstore.ReadStreamSeq(ctx, s, "s", eventstore.ReadStreamOptions{Direction: eventstore.Backward}, 4)
		},
		"ReadAllSeq": func(ctx context.Context, s eventstore.Store) func(func(eventstore.Record, error) bool) {
			return eventstore.ReadAllSeq(ctx, s, eventstore.Position{}, 4)
		},
	}
	for name, seq := range seqs {
		ctx, s := setupFlaky(t, 1)
		var got []int64
		var errs []error
		for r, err := range seq(ctx, s) {
			if err != nil {
				errs = append(errs, err)
				continue
			}
			got = append(got, r.StreamVersion)
		}
		if len(got) != 4 || len(errs) != 1 || !errors.Is(errs[0], errFlaky) {
			t.Errorf("%s: %d events then errors %v; want the first page of 4 then the read error once", name, len(got), errs)
		}
		if s.reads != 2 {
			t.Errorf("%s: %d reads, want 2 (no read after the error)", name, s.reads)
		}
	}
}

// Stopping early makes no further reads.
func TestSeqStopEarly(t *testing.T) {
	t.Parallel()
	ctx, s := setupFlaky(t, 100)
	n := 0
	for _, err := range eventstore.ReadAllSeq(ctx, s, eventstore.Position{}, 3) {
		if err != nil {
			t.Fatal(err)
		}
		if n++; n == 5 {
			break
		}
	}
	if s.reads != 2 {
		t.Fatalf("%d reads for 5 events in pages of 3, want 2", s.reads)
	}

	// An exact multiple of the page size needs one more, empty, read.
	s.reads = 0
	n = 0
	for _, err := range eventstore.ReadStreamSeq(ctx, s, "s", eventstore.ReadStreamOptions{}, 5) {
		if err != nil {
			t.Fatal(err)
		}
		n++
	}
	if n != 10 || s.reads != 3 {
		t.Fatalf("%d events in %d reads, want 10 in 3", n, s.reads)
	}
	// A limit that ends on a page boundary needs no extra read.
	s.reads = 0
	n = 0
	for range eventstore.ReadStreamSeq(ctx, s, "s", eventstore.ReadStreamOptions{Limit: 6}, 3) {
		n++
	}
	if n != 6 || s.reads != 2 {
		t.Fatalf("Limit 6 in pages of 3: %d events in %d reads, want 6 in 2", n, s.reads)
	}
}
