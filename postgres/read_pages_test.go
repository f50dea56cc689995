package postgres

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/chronicle-go/chronicle/eventstore"
	"github.com/chronicle-go/chronicle/postgres/internal/eventsql"
	"github.com/chronicle-go/chronicle/postgres/postgrestest"
)

// hangLimit bounds waits for something that must happen, however loaded
// the machine: reaching it means a bug, not slowness.
const hangLimit = 2 * time.Minute

// readAllCounter is a pgx tracer that counts the read-all statements sent.
type readAllCounter struct{ n atomic.Int64 }

func (c *readAllCounter) TraceQueryStart(ctx context.Context, _ *pgx.Conn, data pgx.TraceQueryStartData) context.Context {
	if data.SQL == eventsql.ReadAllSQL {
		c.n.Add(1)
	}
	return ctx
}

func (*readAllCounter) TraceQueryEnd(context.Context, *pgx.Conn, pgx.TraceQueryEndData) {}

// waitFor polls cond until it holds, failing the test at hangLimit.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(hangLimit)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not after %s", what, hangLimit)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// fillReadable is fillEvents, then waits until ReadAll can return every
// event: the horizon is the cluster's, and another test's transaction
// (in another database) holds it back while it runs.
func fillReadable(t *testing.T, s *Store, n int64) {
	t.Helper()
	fillEvents(t, s, n)
	var last int64
	if err := s.pool.QueryRow(t.Context(), "SELECT max(global_position) FROM chronicle.events").Scan(&last); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the filled events are below the horizon", func() bool {
		h, err := s.Head(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		return h.Global >= last
	})
}

// setupCountingStore returns a store whose pool counts its read-all
// statements.
func setupCountingStore(t *testing.T) (*Store, *readAllCounter) {
	t.Helper()
	cfg, err := pgxpool.ParseConfig(postgrestest.DatabaseURL(t))
	if err != nil {
		t.Fatal(err)
	}
	counter := &readAllCounter{}
	cfg.ConnConfig.Tracer = counter
	pool, err := pgxpool.NewWithConfig(t.Context(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	return newStoreOn(t, pool, nil), counter
}

// ReadAllPages sends the next page's query while the caller still holds
// the current page, and yields the same events as one ReadAll.
func TestReadAllPagesReadsAhead(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	s, counter := setupCountingStore(t)
	fillReadable(t, s, 3500)
	want, err := s.ReadAll(ctx, eventstore.Position{}, 10_000)
	if err != nil || len(want) != 3500 {
		t.Fatalf("ReadAll: %d events, %v", len(want), err)
	}
	before := counter.n.Load()
	var got []eventstore.Record
	var sizes []int
	for recs, err := range s.ReadAllPages(ctx, eventstore.Position{}, 1000) {
		if err != nil {
			t.Fatal(err)
		}
		if len(got) == 0 {
			// The first page is in hand: the second is already asked for.
			waitFor(t, "the second page's query is sent while the caller holds the first", func() bool { return counter.n.Load() >= before+2 })
		}
		got = append(got, recs...)
		sizes = append(sizes, len(recs))
	}
	if len(sizes) != 4 || sizes[3] != 500 {
		t.Fatalf("page sizes %v, want 1000, 1000, 1000, 500", sizes)
	}
	for i := range want {
		if got[i].EventID != want[i].EventID || got[i].Position != want[i].Position {
			t.Fatalf("event %d is %s at %s, want %s at %s", i, got[i].EventID, got[i].Position, want[i].EventID, want[i].Position)
		}
	}
	if n := counter.n.Load() - before; n != 4 {
		t.Fatalf("%d read-all statements for 4 pages", n)
	}
	// Through ReadAllSeq, which uses it, the same events.
	i := 0
	for r, err := range eventstore.ReadAllSeq(ctx, s, eventstore.Position{}, 1000) {
		if err != nil {
			t.Fatal(err)
		}
		if r.EventID != want[i].EventID {
			t.Fatalf("ReadAllSeq event %d is %s, want %s", i, r.EventID, want[i].EventID)
		}
		i++
	}
	if i != len(want) {
		t.Fatalf("ReadAllSeq read %d events, want %d", i, len(want))
	}
}

// A caller that stops early stops the reader: once the loop is left, no
// more pages are read (and no goroutine is left, which TestMain's goleak
// checks). An empty store yields no page; bad arguments and a cancelled
// ctx yield one error.
func TestReadAllPagesStopsAndFails(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	s, counter := setupCountingStore(t)
	fillReadable(t, s, 10_000)
	before := counter.n.Load()
	pages := 0
	for _, err := range s.ReadAllPages(ctx, eventstore.Position{}, 100) {
		if err != nil {
			t.Fatal(err)
		}
		pages++
		break
	}
	after := counter.n.Load()
	if pages != 1 || after-before > 1+readAhead+1 {
		t.Fatalf("stopped after %d pages, %d statements sent", pages, after-before)
	}
	time.Sleep(50 * time.Millisecond)
	if n := counter.n.Load(); n != after {
		t.Fatalf("%d read-all statements sent after the loop ended", n-after)
	}

	empty, _ := setupStore(t, nil)
	for recs, err := range empty.ReadAllPages(ctx, eventstore.Position{}, 100) {
		t.Fatalf("an empty store yields %d events, %v", len(recs), err)
	}

	for _, size := range []int{0, -1} {
		var errs []error
		for recs, err := range s.ReadAllPages(ctx, eventstore.Position{}, size) {
			if recs != nil {
				t.Fatalf("page size %d yields events", size)
			}
			errs = append(errs, err)
		}
		if len(errs) != 1 || !errors.Is(errs[0], eventstore.ErrInvalidInput) {
			t.Fatalf("page size %d: %v, want one invalid-input error", size, errs)
		}
	}

	cctx, cancel := context.WithCancel(ctx)
	var (
		errs []error
		n    int
	)
	for recs, err := range s.ReadAllPages(cctx, eventstore.Position{}, 100) {
		if err != nil {
			errs = append(errs, err)
			continue
		}
		n += len(recs)
		cancel()
	}
	cancel()
	if len(errs) != 1 || !errors.Is(errs[0], context.Canceled) || n == 0 || n >= 10_000 {
		t.Fatalf("cancelled after the first page: %d events, errors %v; want one context.Canceled", n, errs)
	}
}
