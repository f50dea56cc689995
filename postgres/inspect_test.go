package postgres

import (
	"errors"
	"testing"
	"time"

	"github.com/chronicle-go/chronicle/eventstore"
)

func TestEventCount(t *testing.T) {
	t.Parallel()
	s, pool := setupStore(t, nil)
	ctx := t.Context()

	n, exact, err := s.EventCount(ctx)
	if err != nil || n != 0 || !exact {
		t.Fatalf("EventCount on an empty store = %d, %v, %v; want 0, true, nil", n, exact, err)
	}
	for _, stream := range []string{"a-1", "b-1", "a-2"} {
		if _, err := s.Append(ctx, stream, eventstore.Any, testEvents("Happened", 3)...); err != nil {
			t.Fatal(err)
		}
	}
	n, exact, err = s.EventCount(ctx)
	if err != nil || n != 9 || !exact {
		t.Fatalf("EventCount = %d, %v, %v; want 9, true, nil", n, exact, err)
	}

	// Above the threshold the statistics answer: fake them, as ANALYZE on
	// a large table would leave them.
	if _, err := pool.Exec(ctx, `UPDATE pg_class SET reltuples = 2500000 WHERE oid = 'chronicle.events'::regclass`); err != nil {
		t.Fatal(err)
	}
	n, exact, err = s.EventCount(ctx)
	if err != nil || n != 2_500_000 || exact {
		t.Fatalf("EventCount with large statistics = %d, %v, %v; want 2500000, false, nil", n, exact, err)
	}
}

func TestReadAllBackward(t *testing.T) {
	t.Parallel()
	s, _ := setupStore(t, nil)
	ctx := t.Context()

	recs, err := s.ReadAllBackward(ctx, eventstore.Position{}, 10)
	if err != nil || len(recs) != 0 {
		t.Fatalf("ReadAllBackward on an empty store = %d records, %v", len(recs), err)
	}
	for i := range 5 {
		if _, err := s.Append(ctx, "s-"+string(rune('a'+i)), eventstore.NoStream, testEvents("Happened", 2)...); err != nil {
			t.Fatal(err)
		}
	}
	forward := readAllUntil(t, s, eventstore.Position{}, 10)

	// Paging back three at a time returns ReadAll's order reversed.
	var back []eventstore.Record
	before := eventstore.Position{}
	for {
		page, err := s.ReadAllBackward(ctx, before, 3)
		if err != nil {
			t.Fatal(err)
		}
		if len(page) == 0 {
			break
		}
		back = append(back, page...)
		before = page[len(page)-1].Position
	}
	if len(back) != len(forward) {
		t.Fatalf("paged back %d records, want %d", len(back), len(forward))
	}
	for i := range back {
		want := forward[len(forward)-1-i]
		if back[i].EventID != want.EventID || back[i].Position != want.Position || back[i].StreamID != want.StreamID {
			t.Fatalf("record %d back = %s at %s, want %s at %s", i, back[i].EventID, back[i].Position, want.EventID, want.Position)
		}
	}
	head, err := s.Head(ctx)
	if err != nil || back[0].Position != head {
		t.Fatalf("newest record at %s, head %s (%v)", back[0].Position, head, err)
	}

	for _, tc := range []struct {
		name   string
		before eventstore.Position
		limit  int
	}{
		{"zero limit", eventstore.Position{}, 0},
		{"negative limit", eventstore.Position{}, -1},
		{"negative position", eventstore.Position{Transaction: 1, Global: -1}, 1},
	} {
		if _, err := s.ReadAllBackward(ctx, tc.before, tc.limit); !errors.Is(err, eventstore.ErrInvalidInput) {
			t.Errorf("%s: err = %v, want ErrInvalidInput", tc.name, err)
		}
	}
}

// TestReadAllBackwardStopsAtTheHorizon checks that an event committed
// after a still-open transaction began is hidden, as ReadAll hides it.
func TestReadAllBackwardStopsAtTheHorizon(t *testing.T) {
	t.Parallel()
	s, pool := setupStore(t, nil)
	ctx := t.Context()
	if _, err := s.Append(ctx, "early", eventstore.NoStream, testEvents("Happened", 1)...); err != nil {
		t.Fatal(err)
	}
	readAllUntil(t, s, eventstore.Position{}, 1)
	tx, err := pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(ctx)
	if _, err := tx.Exec(ctx, `SELECT pg_current_xact_id()`); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Append(ctx, "late", eventstore.NoStream, testEvents("Happened", 1)...); err != nil {
		t.Fatal(err)
	}
	recs, err := s.ReadAllBackward(ctx, eventstore.Position{}, 10)
	if err != nil || len(recs) != 1 || recs[0].StreamID != "early" {
		t.Fatalf("ReadAllBackward with an open older transaction = %v, %v; want only the early event", recs, err)
	}
	if err := tx.Rollback(ctx); err != nil {
		t.Fatal(err)
	}
	// Other tests' transactions on the shared server hold the horizon too:
	// wait for them to end.
	deadline := time.Now().Add(30 * time.Second)
	for {
		recs, err = s.ReadAllBackward(ctx, eventstore.Position{}, 10)
		if err != nil {
			t.Fatal(err)
		}
		if len(recs) == 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("ReadAllBackward after the rollback = %d records; want late then early", len(recs))
		}
		time.Sleep(20 * time.Millisecond)
	}
	if recs[0].StreamID != "late" || recs[1].StreamID != "early" {
		t.Fatalf("ReadAllBackward after the rollback = %s, %s; want late then early", recs[0].StreamID, recs[1].StreamID)
	}
}

func TestAppendRate(t *testing.T) {
	t.Parallel()
	s, pool := setupStore(t, nil)
	ctx := t.Context()

	rate, err := s.AppendRate(ctx, time.Minute)
	if err != nil || rate != 0 {
		t.Fatalf("AppendRate on an empty store = %v, %v", rate, err)
	}
	// 30 events an hour ago, 120 now: the last minute saw 120, 2/s.
	if _, err := s.Append(ctx, "old", eventstore.NoStream, testEvents("Happened", 30)...); err != nil {
		t.Fatal(err)
	}
	if _, err := pool.Exec(ctx, `UPDATE chronicle.events SET recorded_at = now() - interval '1 hour'`); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Append(ctx, "new", eventstore.NoStream, testEvents("Happened", 120)...); err != nil {
		t.Fatal(err)
	}
	rate, err = s.AppendRate(ctx, time.Minute)
	if err != nil || rate != 2 {
		t.Fatalf("AppendRate over a minute = %v, %v; want 2", rate, err)
	}
	rate, err = s.AppendRate(ctx, 2*time.Hour)
	if err != nil || rate != 150.0/7200 {
		t.Fatalf("AppendRate over two hours = %v, %v; want %v", rate, err, 150.0/7200)
	}
	if _, err := s.AppendRate(ctx, 0); !errors.Is(err, eventstore.ErrInvalidInput) {
		t.Fatalf("AppendRate(0) err = %v, want ErrInvalidInput", err)
	}
}

// TestAppendRateAboveTheSample checks the rate when more events than the
// sample arrived within the window: it is measured over the time the
// sampled events took, not divided by the whole window.
func TestAppendRateAboveTheSample(t *testing.T) {
	t.Parallel()
	s, pool := setupStore(t, nil)
	ctx := t.Context()
	// 12,000 events spread evenly over the last 120 seconds: 100/s.
	if _, err := pool.Exec(ctx, `
INSERT INTO chronicle.events (event_id, stream_id, stream_version, event_type, data, recorded_at)
SELECT gen_random_uuid(), 'bulk', g, 'Happened', '{}', clock_timestamp() - (12000 - g) * interval '10 ms'
FROM generate_series(1, 12000) AS g`); err != nil {
		t.Fatal(err)
	}
	rate, err := s.AppendRate(ctx, 10*time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if rate < 90 || rate > 101 {
		t.Fatalf("AppendRate = %v, want about 100/s (not 12000/600 = 20)", rate)
	}
}

func TestCountEventsUpTo(t *testing.T) {
	t.Parallel()
	s, _ := setupStore(t, nil)
	ctx := t.Context()
	if _, err := s.Append(ctx, "s", eventstore.NoStream, testEvents("Happened", 10)...); err != nil {
		t.Fatal(err)
	}
	recs := readAllUntil(t, s, eventstore.Position{}, 10)
	head := recs[9].Position
	tests := []struct {
		name  string
		after eventstore.Position
		upTo  eventstore.Position
		limit int64
		want  int64
	}{
		{"all", eventstore.Position{}, head, 100, 10},
		{"capped", eventstore.Position{}, head, 4, 4},
		{"after the third", recs[2].Position, head, 100, 7},
		{"up to the fifth", recs[2].Position, recs[4].Position, 100, 2},
		{"empty range", head, head, 100, 0},
	}
	for _, tc := range tests {
		got, err := s.CountEventsUpTo(ctx, tc.after, tc.upTo, tc.limit)
		if err != nil || got != tc.want {
			t.Errorf("%s: CountEventsUpTo = %d, %v; want %d", tc.name, got, err, tc.want)
		}
	}
	if _, err := s.CountEventsUpTo(ctx, eventstore.Position{}, head, 0); !errors.Is(err, eventstore.ErrInvalidInput) {
		t.Errorf("limit 0: err = %v, want ErrInvalidInput", err)
	}
}
