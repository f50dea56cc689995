package storetest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/chronicle-go/chronicle/eventstore"
)

const racers = 16

// ack is an append a racer saw succeed.
type ack struct {
	writer, seq int
	ids         []eventstore.EventID
	res         eventstore.AppendResult
}

type acks struct {
	mu   sync.Mutex
	list []ack
}

func (a *acks) add(x ack) {
	a.mu.Lock()
	a.list = append(a.list, x)
	a.mu.Unlock()
}

func racedEvent(writer, seq, part int) eventstore.Event {
	return newEvent("Raced", fmt.Sprintf(`{"writer":%d,"seq":%d,"part":%d}`, writer, seq, part))
}

// testRaceExact has 16 writers append to one stream with exact expected
// versions. First in lockstep rounds (all read the same version, then all
// append: exactly one may win each round), then free-running: each loops
// read version, append with Exact(v), retry on conflict. The stream must
// end with every acknowledged event exactly once, at its acknowledged
// version, and no holes.
func testRaceExact(t *testing.T, s *suite) {
	ctx, store := s.setup(t)
	const stream, rounds, perWriter = "contended", 6, 8
	var acked acks

	for round := range rounds {
		v := streamVersion(t, ctx, store, stream)
		var ready, done sync.WaitGroup
		start := make(chan struct{})
		var mu sync.Mutex
		wins, conflicts := 0, 0
		for w := range racers {
			ready.Add(1)
			done.Go(func() {
				got, err := store.StreamVersion(ctx, stream)
				if errors.Is(err, eventstore.ErrStreamNotFound) {
					got, err = 0, nil
				}
				ready.Done()
				if err != nil {
					t.Errorf("round %d writer %d: StreamVersion: %v", round, w, err)
					return
				}
				if got != v {
					t.Errorf("round %d writer %d: StreamVersion %d, want %d", round, w, got, v)
					return
				}
				<-start
				e := racedEvent(w, -1, round)
				res, err := store.Append(ctx, stream, eventstore.Exact(got), e)
				mu.Lock()
				defer mu.Unlock()
				switch {
				case err == nil:
					wins++
					acked.add(ack{writer: w, seq: -1, ids: []eventstore.EventID{e.ID}, res: res})
				case errors.Is(err, eventstore.ErrConcurrencyConflict):
					conflicts++
					var ce *eventstore.ConcurrencyError
					if !errors.As(err, &ce) || ce.StreamID != stream || ce.Expected != eventstore.Exact(got) || (ce.Actual != -1 && ce.Actual <= got) {
						t.Errorf("round %d writer %d: conflict %#v, want stream %q, expected %d, actual > %d or -1", round, w, ce, stream, got, got)
					}
				default:
					t.Errorf("round %d writer %d: Append: %v", round, w, err)
				}
			})
		}
		ready.Wait()
		close(start)
		done.Wait()
		if t.Failed() {
			t.FailNow()
		}
		if wins != 1 || conflicts != racers-1 {
			t.Fatalf("round %d: %d writers won and %d got a conflict; want exactly 1 winner and %d conflicts", round, wins, conflicts, racers-1)
		}
	}

	var wg sync.WaitGroup
	var mu sync.Mutex
	conflicts := 0
	for w := range racers {
		wg.Go(func() {
			for seq := 0; seq < perWriter; {
				if ctx.Err() != nil {
					return
				}
				v, err := store.StreamVersion(ctx, stream)
				if err != nil {
					t.Errorf("writer %d: StreamVersion: %v", w, err)
					return
				}
				e := racedEvent(w, seq, 0)
				res, err := store.Append(ctx, stream, eventstore.Exact(v), e)
				if errors.Is(err, eventstore.ErrConcurrencyConflict) {
					var ce *eventstore.ConcurrencyError
					if !errors.As(err, &ce) || (ce.Actual != -1 && ce.Actual <= v) {
						t.Errorf("writer %d: conflict %#v appending at %d, want actual > %d or -1", w, ce, v, v)
						return
					}
					mu.Lock()
					conflicts++
					mu.Unlock()
					continue
				}
				if err != nil {
					t.Errorf("writer %d: Append(Exact(%d)): %v", w, v, err)
					return
				}
				if res.Version != v+1 {
					t.Errorf("writer %d: Append(Exact(%d)) returned version %d", w, v, res.Version)
				}
				acked.add(ack{writer: w, seq: seq, ids: []eventstore.EventID{e.ID}, res: res})
				seq++
			}
		})
	}
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	t.Logf("free-running phase: %d conflicts for %d appends", conflicts, racers*perWriter)

	total := rounds + racers*perWriter
	recs := checkRace(t, ctx, store, stream, acked.list, total)

	// Each writer's events are in the order it appended them.
	last := map[int]int{}
	for _, r := range recs {
		var p struct{ Writer, Seq int }
		if err := json.Unmarshal(r.Data, &p); err != nil {
			t.Fatalf("v%d: payload %s: %v", r.StreamVersion, r.Data, err)
		}
		if prev, ok := last[p.Writer]; ok && p.Seq != -1 && p.Seq <= prev {
			t.Fatalf("writer %d's event %d is stored after its event %d", p.Writer, p.Seq, prev)
		}
		last[p.Writer] = p.Seq
	}
}

// testRaceAny has 16 writers append batches of 1 to 3 events to one
// stream with Any: every append succeeds, and each batch is stored
// contiguously, at the versions its result reports.
func testRaceAny(t *testing.T, s *suite) {
	ctx, store := s.setup(t)
	const stream, perWriter = "contended", 6
	var acked acks
	var wg sync.WaitGroup
	total := 0
	start := make(chan struct{})
	for w := range racers {
		for seq := range perWriter {
			total += (w+seq)%3 + 1
		}
		wg.Go(func() {
			<-start
			for seq := range perWriter {
				events := make([]eventstore.Event, (w+seq)%3+1)
				ids := make([]eventstore.EventID, len(events))
				for i := range events {
					events[i] = racedEvent(w, seq, i)
					ids[i] = events[i].ID
				}
				res, err := store.Append(ctx, stream, eventstore.Any, events...)
				if err != nil {
					t.Errorf("writer %d: Append(Any): %v", w, err)
					return
				}
				acked.add(ack{writer: w, seq: seq, ids: ids, res: res})
			}
		})
	}
	close(start)
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	checkRace(t, ctx, store, stream, acked.list, total)
}

// testAnyNeverConflicts has 32 writers each append 50 single events to
// one existing stream, half of them with Any and half with StreamExists:
// neither may ever fail with a concurrency conflict, however many writers
// contend (a store may make them wait). Every append succeeds and is
// stored once, at the version its result reports.
func testAnyNeverConflicts(t *testing.T, s *suite) {
	ctx, store := s.setup(t)
	const stream, writers, perWriter = "hot", 32, 50
	first := newEvent("Opened", `{}`)
	opened, err := store.Append(ctx, stream, eventstore.NoStream, first)
	if err != nil {
		t.Fatal(err)
	}
	var acked acks
	acked.add(ack{writer: -1, ids: []eventstore.EventID{first.ID}, res: opened})
	var wg sync.WaitGroup
	start := make(chan struct{})
	for w := range writers {
		expected := eventstore.Any
		if w%2 == 1 {
			expected = eventstore.StreamExists
		}
		wg.Go(func() {
			<-start
			for seq := range perWriter {
				ev := racedEvent(w, seq, 0)
				res, err := store.Append(ctx, stream, expected, ev)
				if err != nil {
					t.Errorf("writer %d, append %d: Append(%s): %v", w, seq, expected, err)
					return
				}
				acked.add(ack{writer: w, seq: seq, ids: []eventstore.EventID{ev.ID}, res: res})
			}
		})
	}
	close(start)
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	checkRace(t, ctx, store, stream, acked.list, 1+writers*perWriter)
}

// checkRace checks that the stream holds exactly the acknowledged events,
// each batch at the versions its result reports, with no holes and no
// duplicates, and that ReadAll agrees. It returns the stream.
func checkRace(t *testing.T, ctx context.Context, store eventstore.Store, stream string, acked []ack, total int) []eventstore.Record {
	t.Helper()
	requireVersion(t, ctx, store, stream, int64(total))
	recs := readStream(t, ctx, store, stream)
	requireVersions(t, "raced stream", recs, span(1, int64(total)))
	requireAscending(t, recs)

	owner := make([]int, total+1) // version -> index in acked + 1
	for i, a := range acked {
		first := a.res.Version - int64(len(a.ids)) + 1
		if a.res.StreamID != stream || first < 1 || a.res.Version > int64(total) {
			t.Fatalf("writer %d: result %+v for %d events does not fit the stream", a.writer, a.res, len(a.ids))
		}
		for k, id := range a.ids {
			v := first + int64(k)
			if owner[v] != 0 {
				t.Fatalf("version %d acknowledged to two appends (writers %d and %d)", v, acked[owner[v]-1].writer, a.writer)
			}
			owner[v] = i + 1
			if recs[v-1].EventID != id {
				t.Fatalf("version %d holds event %s, but writer %d was told its event %s is there", v, recs[v-1].EventID, a.writer, id)
			}
		}
		if recs[a.res.Version-1].Position.Compare(a.res.Position) != 0 {
			t.Fatalf("writer %d: result position %s, but its last event is at %s", a.writer, a.res.Position, recs[a.res.Version-1].Position)
		}
	}
	for v := 1; v <= total; v++ {
		if owner[v] == 0 {
			t.Fatalf("version %d holds an event no writer was told about", v)
		}
	}

	// ReadAll has the same events in the same order: a batch stays together.
	all := readAllN(t, ctx, store, eventstore.Position{}, total)
	for i := range all {
		if all[i].EventID != recs[i].EventID || all[i].Position.Compare(recs[i].Position) != 0 {
			t.Fatalf("ReadAll event %d is %s v%d at %s, the stream's is v%d at %s", i, all[i].StreamID, all[i].StreamVersion, all[i].Position, recs[i].StreamVersion, recs[i].Position)
		}
	}
	return recs
}

// testConcurrentTailing has a reader tail ReadAll from its checkpoint,
// woken by Watch and polling, while writers append concurrently. It must
// see every acknowledged event exactly once, in an order consistent with
// every stream's versions.
func testConcurrentTailing(t *testing.T, s *suite) {
	ctx, store := s.setup(t)
	ctx, cancel := context.WithTimeout(ctx, 2*waitTimeout)
	defer cancel()
	const writers, perWriter, pageSize = 4, 25, 7

	var acked acks
	var wg sync.WaitGroup
	defer wg.Wait() // after cancel: no writer outlives the test, even when it fails
	defer cancel()
	writing := make(chan struct{})
	for w := range writers {
		wg.Go(func() {
			for seq := range perWriter {
				stream := fmt.Sprintf("tail-%d", (w+seq)%3)
				events := make([]eventstore.Event, seq%3+1)
				ids := make([]eventstore.EventID, len(events))
				for i := range events {
					events[i] = racedEvent(w, seq, i)
					ids[i] = events[i].ID
				}
				res, err := store.Append(ctx, stream, eventstore.Any, events...)
				if err != nil {
					if ctx.Err() == nil { // else the reader has failed already
						t.Errorf("writer %d: Append: %v", w, err)
					}
					return
				}
				acked.add(ack{writer: w, seq: seq, ids: ids, res: res})
			}
		})
	}
	go func() { wg.Wait(); close(writing) }()

	wake := store.Watch(ctx)
	seen := map[eventstore.EventID]int{}
	var tail []eventstore.Record
	var checkpoint eventstore.Position
	done := false
	for {
		recs, err := store.ReadAll(ctx, checkpoint, pageSize)
		if err != nil {
			t.Fatalf("ReadAll(%s): %v", checkpoint, err)
		}
		if len(recs) > pageSize {
			t.Fatalf("ReadAll returned %d events, limit %d", len(recs), pageSize)
		}
		for _, r := range recs {
			if r.Position.Compare(checkpoint) <= 0 {
				t.Fatalf("ReadAll after %s returned %s v%d at %s", checkpoint, r.StreamID, r.StreamVersion, r.Position)
			}
			if i, ok := seen[r.EventID]; ok {
				t.Fatalf("event %s seen twice (events %d and %d of the tail)", r.EventID, i, len(tail))
			}
			seen[r.EventID] = len(tail)
			tail = append(tail, r)
			checkpoint = r.Position
		}
		if len(recs) > 0 {
			continue
		}
		if done {
			acked.mu.Lock()
			want := 0
			for _, a := range acked.list {
				want += len(a.ids)
			}
			acked.mu.Unlock()
			if len(tail) >= want {
				break
			}
		}
		select {
		case <-writing:
			done, writing = true, nil
		case <-wake:
		case <-time.After(20 * time.Millisecond):
		case <-ctx.Done():
			t.Fatalf("tailing reader saw %d events before the timeout: %v", len(tail), ctx.Err())
		}
	}
	if t.Failed() {
		t.FailNow()
	}

	want := 0
	for _, a := range acked.list {
		want += len(a.ids)
		for _, id := range a.ids {
			if _, ok := seen[id]; !ok {
				t.Fatalf("acknowledged event %s (writer %d) never seen by the tailing reader", id, a.writer)
			}
		}
	}
	if len(tail) != want {
		t.Fatalf("tailing reader saw %d events, %d were acknowledged", len(tail), want)
	}
	next := map[string]int64{}
	for _, r := range tail {
		if r.StreamVersion != next[r.StreamID]+1 {
			t.Fatalf("tail has %s v%d after v%d", r.StreamID, r.StreamVersion, next[r.StreamID])
		}
		next[r.StreamID] = r.StreamVersion
	}
}
