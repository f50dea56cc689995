package telemetry_test

import (
	"fmt"
	"log/slog"
	"sync"
	"testing"

	"github.com/chronicle-go/chronicle/eventstore"
	"github.com/chronicle-go/chronicle/postgres"
	"github.com/chronicle-go/chronicle/telemetry"
)

// TestGroupCommitMetrics appends concurrently through a PostgreSQL store
// with group commit, observed by GroupCommitMetrics: every append and
// every event is counted in exactly one flush.
func TestGroupCommitMetrics(t *testing.T) {
	t.Parallel()
	f := setup(t)
	m, err := telemetry.NewGroupCommitMetrics(f.cfg)
	if err != nil {
		t.Fatal(err)
	}
	s, err := postgres.New(f.pool, &postgres.Config{PollOnly: true, GroupCommit: true, GroupObserver: m.Observe, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	const writers, appends = 6, 10
	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			for i := range appends {
				evs := make([]eventstore.Event, 1+i%3)
				for j := range evs {
					evs[j] = eventstore.Event{Type: "E", Data: []byte(`{}`)}
				}
				if _, err := s.Append(t.Context(), fmt.Sprintf("s-%d", w), eventstore.Any, evs...); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	if t.Failed() {
		return
	}
	rm := f.collect(t)
	a := find(t, rm, telemetry.MetricGroupCommitAppends)
	e := find(t, rm, telemetry.MetricGroupCommitEvents)
	wantEvents := 0
	for i := range appends {
		wantEvents += writers * (1 + i%3)
	}
	if a.value != writers*appends || e.value != float64(wantEvents) {
		t.Fatalf("flushes sent %v appends and %v events, want %d and %d", a.value, e.value, writers*appends, wantEvents)
	}
	if a.count == 0 || a.count != e.count || a.count > writers*appends {
		t.Fatalf("%d and %d flushes recorded", a.count, e.count)
	}
	t.Logf("%d appends in %d flushes", writers*appends, a.count)
}
