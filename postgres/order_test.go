package postgres

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/chronicle-go/chronicle/eventstore"
	"github.com/chronicle-go/chronicle/postgres/postgrestest"
)

// The ordering proof, part (a): a transaction T1 that inserted an event
// and is still open holds back T2's event, which committed after it, and
// afterwards a reader gets both (or only T2's, when T1 aborts) exactly
// once, from the checkpoint it had.
func TestReadAllWaitsForOlderOpenTransaction(t *testing.T) {
	t.Parallel()
	for _, commitT1 := range []bool{true, false} {
		name := "T1 aborts"
		if commitT1 {
			name = "T1 commits"
		}
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			s, pool := setupStore(t, nil)
			ctx := t.Context()

			// Something before, so the reader resumes from a real checkpoint.
			before := testEvents("Before", 2)
			if _, err := s.Append(ctx, "before", eventstore.NoStream, before...); err != nil {
				t.Fatal(err)
			}
			seen := readAllUntil(t, s, eventstore.Position{}, 2)
			checkpoint := seen[1].Position

			t1, err := pool.Begin(ctx)
			if err != nil {
				t.Fatal(err)
			}
			defer t1.Rollback(context.Background()) //nolint:errcheck
			e1 := testEvents("T1", 1)
			r1, err := s.AppendTx(ctx, t1, "one", eventstore.NoStream, e1...)
			if err != nil {
				t.Fatal(err)
			}
			e2 := testEvents("T2", 1)
			r2, err := s.Append(ctx, "two", eventstore.NoStream, e2...) // T2 commits
			if err != nil {
				t.Fatal(err)
			}
			if r2.Position.Compare(r1.Position) <= 0 {
				t.Fatalf("T2's position %s does not sort after T1's %s", r2.Position, r1.Position)
			}
			// T2's event is committed and visible to ReadStream...
			if ids := streamEventIDs(t, s, "two"); len(ids) != 1 {
				t.Fatalf("T2's event not committed")
			}
			// ...and a reader ordering by the identity column alone would
			// return it now, and later skip T1's smaller position: the
			// hazard this test is about is real.
			var naive int
			if err := pool.QueryRow(ctx, `SELECT count(*) FROM chronicle.events WHERE global_position > $1`, checkpoint.Global).Scan(&naive); err != nil || naive != 1 {
				t.Fatalf("naive read = %d rows, %v; want T2's row", naive, err)
			}
			// ReadAll must not return it while T1 is open.
			for range 5 {
				recs, err := s.ReadAll(ctx, checkpoint, 100)
				if err != nil {
					t.Fatal(err)
				}
				if len(recs) != 0 {
					t.Fatalf("ReadAll returned %s v%d while the older T1 is open", recs[0].StreamID, recs[0].StreamVersion)
				}
				h, err := s.Head(ctx)
				if err != nil {
					t.Fatal(err)
				}
				if h.Compare(checkpoint) > 0 {
					t.Fatalf("Head %s is past the checkpoint %s while T1 is open", h, checkpoint)
				}
				time.Sleep(10 * time.Millisecond)
			}

			want := []eventstore.EventID{e2[0].ID}
			if commitT1 {
				if err := t1.Commit(ctx); err != nil {
					t.Fatal(err)
				}
				want = []eventstore.EventID{e1[0].ID, e2[0].ID}
			} else if err := t1.Rollback(ctx); err != nil {
				t.Fatal(err)
			}
			recs := readAllUntil(t, s, checkpoint, len(want))
			for i, r := range recs {
				if r.EventID != want[i] {
					t.Fatalf("ReadAll event %d = %s (%s), want %s", i, r.EventID, r.StreamID, want[i])
				}
			}
			if h, err := s.Head(ctx); err != nil || h != recs[len(recs)-1].Position {
				t.Fatalf("Head = %s, %v; want %s", h, err, recs[len(recs)-1].Position)
			}
			// A full read from the start agrees.
			full := readAllUntil(t, s, eventstore.Position{}, 2+len(want))
			for i, r := range full[2:] {
				if r.EventID != want[i] {
					t.Fatalf("full read event %d = %s, want %s", i+2, r.EventID, want[i])
				}
			}
		})
	}
}

// The ordering proof, part (b): writers commit and abort transactions in
// random order with random delays inside them while a reader tails from
// its checkpoint. The reader sees every committed event exactly once, no
// aborted one, in the order of a final full read.
//
// It runs with group commit off and on: grouped appends then share
// transactions, and wait on the streams that the writers' transactions hold.
func TestReadAllTailingUnderConcurrentWriters(t *testing.T) {
	t.Parallel()
	for _, group := range []bool{false, true} {
		t.Run(fmt.Sprintf("group=%t", group), func(t *testing.T) {
			t.Parallel()
			testReadAllTailingUnderConcurrentWriters(t, &Config{PollInterval: 20 * time.Millisecond, GroupCommit: group})
		})
	}
}

func testReadAllTailingUnderConcurrentWriters(t *testing.T, cfg *Config) {
	const writers = 10
	// Enough connections that no writer and not the reader waits for one:
	// the reader must be able to read while older transactions are open.
	pool := poolWithConns(t, writers+4)
	s := newStoreOn(t, pool, cfg)
	ctx := t.Context()

	duration := 3 * time.Second
	if testing.Short() {
		duration = time.Second
	}

	var (
		mu        sync.Mutex
		committed = map[eventstore.EventID]bool{}
		aborted   = map[eventstore.EventID]bool{}
	)
	// The writers run for duration, and on until they have committed and
	// aborted enough to exercise the reader (a loaded machine may need
	// longer), within a hang limit.
	writerCtx, stopWriters := context.WithTimeout(ctx, 2*time.Minute)
	defer stopWriters()
	go func() {
		defer stopWriters()
		time.Sleep(duration)
		for writerCtx.Err() == nil {
			mu.Lock()
			enough := len(committed) >= 100 && len(aborted) > 0
			mu.Unlock()
			if enough {
				return
			}
			time.Sleep(10 * time.Millisecond)
		}
	}()
	var wg sync.WaitGroup
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := tailWriter(writerCtx, s, pool, w, &mu, committed, aborted); err != nil {
				t.Error(err)
			}
		}()
	}

	// The reader tails concurrently, as a projection would.
	type seenEvent struct {
		id  eventstore.EventID
		pos eventstore.Position
	}
	var seen []seenEvent
	readerCtx, stopReader := context.WithCancel(ctx)
	defer stopReader()
	readerDone := make(chan struct{})
	writersDone := make(chan struct{})
	var readerErr error
	go func() {
		defer close(readerDone)
		wake := s.Watch(ctx)
		var checkpoint eventstore.Position
		ids := map[eventstore.EventID]bool{}
		for {
			recs, err := s.ReadAll(readerCtx, checkpoint, 1+rand.IntN(20))
			if err != nil {
				readerErr = err
				return
			}
			for _, r := range recs {
				if r.Position.Compare(checkpoint) <= 0 {
					readerErr = fmt.Errorf("position %s after checkpoint %s", r.Position, checkpoint)
					return
				}
				if ids[r.EventID] {
					readerErr = fmt.Errorf("event %s read twice", r.EventID)
					return
				}
				ids[r.EventID] = true
				checkpoint = r.Position
				seen = append(seen, seenEvent{r.EventID, r.Position})
			}
			if len(recs) > 0 {
				continue
			}
			select {
			case <-writersDone:
				// Caught up after the writers stopped: done once the
				// horizon has passed every committed event.
				mu.Lock()
				n := len(committed)
				mu.Unlock()
				if len(ids) >= n {
					return
				}
				time.Sleep(5 * time.Millisecond)
			case <-wake:
			case <-readerCtx.Done():
				readerErr = readerCtx.Err()
				return
			}
		}
	}()
	wg.Wait()
	close(writersDone)
	select {
	case <-readerDone:
	case <-time.After(2 * time.Minute):
		// A reader that skipped events never catches up: stop it and
		// report what it missed.
		stopReader()
		<-readerDone
		readerErr = nil
	}
	if readerErr != nil {
		t.Fatal(readerErr)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(committed) < 100 || len(aborted) == 0 {
		t.Fatalf("only %d committed and %d aborted events: the test did not exercise much", len(committed), len(aborted))
	}
	t.Logf("%d committed events, %d aborted, read in %d events", len(committed), len(aborted), len(seen))
	for _, e := range seen {
		if aborted[e.id] {
			t.Fatalf("reader saw aborted event %s", e.id)
		}
		if !committed[e.id] {
			t.Fatalf("reader saw unknown event %s", e.id)
		}
	}
	if len(seen) != len(committed) {
		t.Fatalf("reader saw %d events, %d committed: it skipped %d", len(seen), len(committed), len(committed)-len(seen))
	}
	var full []eventstore.Record
	for r, err := range eventstore.ReadAllSeq(ctx, s, eventstore.Position{}, 500) {
		if err != nil {
			t.Fatal(err)
		}
		full = append(full, r)
	}
	if len(full) != len(seen) {
		t.Fatalf("full read has %d events, tailing reader %d", len(full), len(seen))
	}
	for i := range full {
		if full[i].EventID != seen[i].id || full[i].Position != seen[i].pos {
			t.Fatalf("event %d: full read %s at %s, tailing reader %s at %s", i, full[i].EventID, full[i].Position, seen[i].id, seen[i].pos)
		}
	}
}

// poolWithConns returns a pool of up to n connections to a fresh database.
func poolWithConns(t testing.TB, n int32) *pgxpool.Pool {
	t.Helper()
	cfg, err := pgxpool.ParseConfig(postgrestest.DatabaseURL(t))
	if err != nil {
		t.Fatal(err)
	}
	cfg.MaxConns = n
	pool, err := pgxpool.NewWithConfig(t.Context(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	return pool
}

// tailWriter appends in random ways until ctx ends: transactions that
// insert, sleep, maybe insert more, then commit or roll back; and plain
// appends. It records which events committed and which were aborted.
func tailWriter(ctx context.Context, s *Store, pool *pgxpool.Pool, w int, mu *sync.Mutex, committed, aborted map[eventstore.EventID]bool) error {
	record := func(m map[eventstore.EventID]bool, evs []eventstore.Event) {
		mu.Lock()
		defer mu.Unlock()
		for _, e := range evs {
			m[e.ID] = true
		}
	}
	bg := context.Background() // commits must not be cut by the writers' deadline
	for i := 0; ctx.Err() == nil; i++ {
		stream := fmt.Sprintf("w%d-%d", w, rand.IntN(5))
		evs := testEvents("E", 1+rand.IntN(3))
		if rand.IntN(4) == 0 {
			if _, err := s.Append(bg, stream, eventstore.Any, evs...); err != nil {
				return fmt.Errorf("writer %d: Append: %w", w, err)
			}
			record(committed, evs)
			continue
		}
		tx, err := pool.Begin(bg)
		if err != nil {
			return err
		}
		var inTx []eventstore.Event
		for range 1 + rand.IntN(2) {
			time.Sleep(time.Duration(rand.IntN(3000)) * time.Microsecond)
			if _, err := s.AppendTx(bg, tx, stream, eventstore.Any, evs...); err != nil {
				tx.Rollback(bg) //nolint:errcheck
				return fmt.Errorf("writer %d: AppendTx: %w", w, err)
			}
			inTx = append(inTx, evs...)
			evs = testEvents("E", 1+rand.IntN(3))
		}
		time.Sleep(time.Duration(rand.IntN(5000)) * time.Microsecond)
		if rand.IntN(5) == 0 {
			if err := tx.Rollback(bg); err != nil {
				return err
			}
			record(aborted, inTx)
			continue
		}
		if err := tx.Commit(bg); err != nil {
			return err
		}
		record(committed, inTx)
	}
	return nil
}

// TestReadAllPagesInsideOneTransaction checks that a checkpoint in the
// middle of one transaction's events resumes correctly.
func TestReadAllPagesInsideOneTransaction(t *testing.T) {
	t.Parallel()
	s, _ := setupStore(t, nil)
	ctx := t.Context()
	evs := testEvents("E", 25)
	if _, err := s.Append(ctx, "big", eventstore.NoStream, evs...); err != nil {
		t.Fatal(err)
	}
	readAllUntil(t, s, eventstore.Position{}, 25)
	var got []eventstore.EventID
	var after eventstore.Position
	for {
		recs, err := s.ReadAll(ctx, after, 4)
		if err != nil {
			t.Fatal(err)
		}
		if len(recs) == 0 {
			break
		}
		for _, r := range recs {
			got = append(got, r.EventID)
		}
		after = recs[len(recs)-1].Position
	}
	want := make([]eventstore.EventID, len(evs))
	for i, e := range evs {
		want[i] = e.ID
	}
	if !slices.Equal(got, want) {
		t.Fatalf("paged read = %v, want %v", got, want)
	}
}

// TestTailLag holds the horizon back with an open transaction that has
// appended: TailLag reports at least its age.
func TestTailLag(t *testing.T) {
	t.Parallel()
	s, pool := setupStore(t, nil)
	ctx := t.Context()
	began := time.Now()
	tx, err := pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(context.Background()) //nolint:errcheck
	if _, err := s.AppendTx(ctx, tx, "s", eventstore.Any, testEvents("E", 1)...); err != nil {
		t.Fatal(err)
	}
	time.Sleep(50 * time.Millisecond)
	lag, err := s.TailLag(ctx)
	if err != nil {
		t.Fatal(err)
	}
	// The open transaction is at least this old; an older one elsewhere in
	// the cluster can only make the lag larger.
	if lag < 50*time.Millisecond {
		t.Fatalf("TailLag = %s with a transaction open for %s", lag, time.Since(began))
	}
	if err := tx.Rollback(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := s.TailLag(ctx); err != nil {
		t.Fatal(err)
	}
}
