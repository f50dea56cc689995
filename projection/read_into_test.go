package projection_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/chronicle-go/chronicle/eventstore"
	"github.com/chronicle-go/chronicle/memory"
	"github.com/chronicle-go/chronicle/projection"
	"github.com/chronicle-go/chronicle/projection/projectionstore"
)

// intoStore is a memory store that is an [eventstore.RecordReader]: it
// reads with ReadAll, then writes each record through next, after a first
// attempt that wrote other records' values and failed, as a read retried
// after a lost connection does. The first attempt writes 40 records on
// odd calls (fewer than a full batch: the retry grows the events) and
// 5 more than the retry on even ones (where the limit allows: records
// beyond those read must never be delivered).
type intoStore struct {
	*memory.Store
	calls atomic.Int64
	// skip, when set, makes every read break the contract: it asks for
	// record 0, then record 2.
	skip bool
	// keepFirst, when set, keeps the record of index 0 of every read
	// that returns limit records in firsts, which also keeps the events
	// holding it from the garbage collector: a record met twice there
	// was reused by the runner, never reallocated at the same address.
	keepFirst bool
	mu        sync.Mutex
	firsts    []*eventstore.Record
}

func (s *intoStore) ReadAllInto(ctx context.Context, after eventstore.Position, limit int, next func(i int) *eventstore.Record) (int, error) {
	if next == nil {
		return 0, &eventstore.ValidationError{Field: "next", Reason: "must not be nil"}
	}
	recs, err := s.ReadAll(ctx, after, limit)
	if err != nil {
		return 0, err
	}
	call := s.calls.Add(1)
	if s.skip && len(recs) >= 2 {
		*next(0) = recs[0]
		*next(2) = recs[1]
		return 2, nil
	}
	stale := eventstore.Record{StreamID: "stale", StreamVersion: 99, Type: "Stale", Data: []byte(`{}`),
		Metadata: eventstore.Metadata{CorrelationID: "stale"}}
	first := min(len(recs)+5, limit)
	if call%2 == 1 {
		first = min(40, limit)
	}
	for i := range first {
		*next(i) = stale
	}
	for i := range recs {
		*next(i) = recs[i]
	}
	if s.keepFirst && len(recs) == limit {
		s.mu.Lock()
		s.firsts = append(s.firsts, next(0))
		s.mu.Unlock()
	}
	return len(recs), nil
}

// A runner on a store that is an eventstore.RecordReader reads its
// batches into its events: every event is handled once, in order within
// its stream, in its partition, with its payload decoded ahead, and a
// failed event is retried; the records a retried read wrote first never
// reach a handler. A projection with more partitions than streams moves
// the checkpoints of partitions whose batches hold none of their events.
func TestRunnerReadsIntoItsEvents(t *testing.T) {
	t.Parallel()
	e := setup(t)
	reg, storage := e.reg, e.storage
	store := &intoStore{Store: e.store}
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
	var sparse atomic.Int64
	if err := r.Add(projection.Projection{Name: "sparse", Partitions: streams + 1, BatchSize: 50,
		Handler: projection.HandlerFunc(func(context.Context, projection.Event) error { sparse.Add(1); return nil })}); err != nil {
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
	stop := e.start(r)
	err = errors.Join(r.WaitFor(ctx, "into", res.Position), r.WaitFor(ctx, "sparse", res.Position))
	stop()
	if err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(errs) > 0 {
		t.Fatalf("wrong events: %v", errs)
	}
	if count != streams*perStream || !retried || sparse.Load() != streams*perStream {
		t.Fatalf("handled %d events (retried: %t) and %d in the sparse projection, want %d", count, retried, sparse.Load(), streams*perStream)
	}
	if store.calls.Load() == 0 {
		t.Fatal("the runner never read with ReadAllInto")
	}
}

// A store that breaks RecordReader's contract (it skips an index) does
// not lose or invent events: the runner reads those batches with ReadAll
// instead, and says so in its log.
func TestRunnerSurvivesABrokenRecordReader(t *testing.T) {
	t.Parallel()
	e := setup(t)
	storage := e.storage
	store := &intoStore{Store: e.store, skip: true}
	ctx := waitCtx(t)
	var want []eventstore.EventID
	var res eventstore.AppendResult
	var err error
	for i := range 30 {
		if res, err = store.Append(ctx, fmt.Sprintf("acc-%d", i%3), eventstore.Any, eventstore.Event{Type: "Deposited", Data: []byte(`{}`)}); err != nil {
			t.Fatal(err)
		}
		recs, err := store.ReadStream(ctx, fmt.Sprintf("acc-%d", i%3), eventstore.ReadStreamOptions{From: res.Version, Limit: 1})
		if err != nil || len(recs) != 1 {
			t.Fatal(recs, err)
		}
		want = append(want, recs[0].EventID)
	}
	var got []eventstore.EventID
	h := projection.HandlerFunc(func(_ context.Context, ev projection.Event) error {
		got = append(got, ev.EventID)
		return nil
	})
	cfg := testConfig()
	// The handler serialises its writes; logs is read once Run has
	// returned.
	var logs strings.Builder
	cfg.Logger = slog.New(slog.NewTextHandler(&logs, nil))
	r, err := projection.New(store, storage, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Add(projection.Projection{Name: "broken", Handler: h, BatchSize: 7}); err != nil {
		t.Fatal(err)
	}
	stop := e.start(r)
	err = r.WaitFor(ctx, "broken", res.Position)
	stop() // got and logs are read once Run has returned
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(got, want) {
		t.Fatalf("handled %v, want %v", got, want)
	}
	if !strings.Contains(logs.String(), "broke eventstore.RecordReader's contract") {
		t.Fatalf("nothing logged about the broken store:\n%s", logs.String())
	}
}

// While catching up, the runner reads each full batch into the events of
// a batch it has handled, instead of allocating new ones, and nothing of
// the handled batch reaches the new one: an event whose payload does not
// decode (so that nothing is decoded ahead for it) is parked, never
// handled with the payload decoded for the event that held its place.
func TestRunnerReusesTheEventsOfHandledBatches(t *testing.T) {
	t.Parallel()
	e := setup(t)
	reg, storage := e.reg, e.storage
	store := &intoStore{Store: e.store, keepFirst: true}
	ctx := waitCtx(t)

	const streams, events, batch = 4, 400, 20
	var (
		mu      sync.Mutex
		handled int
		errs    []string
		corrupt []eventstore.EventID
		res     eventstore.AppendResult
	)
	h := projection.NewHandlers(reg)
	projection.On(h, func(_ context.Context, ev projection.Event, d Deposited) error {
		mu.Lock()
		defer mu.Unlock()
		if d.Account != ev.StreamID || d.Amount != ev.StreamVersion {
			errs = append(errs, fmt.Sprintf("%s v%d handled with %+v", ev.StreamID, ev.StreamVersion, d))
		}
		handled++
		return nil
	})
	r, err := projection.New(store, storage, testConfig())
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Add(projection.Projection{Name: "reuse", Handler: h, BatchSize: batch, OnFailure: projection.ParkOnFailure}); err != nil {
		t.Fatal(err)
	}
	for i := range events {
		stream := fmt.Sprintf("acc-%d", i%streams)
		ev, err := reg.Encode(Deposited{Account: stream, Amount: int64(i/streams + 1)})
		if err != nil {
			t.Fatal(err)
		}
		if i%7 == 3 {
			ev.Data = []byte(`{"account":"` + stream + `","amount":"not a number"}`)
		}
		if res, err = store.Append(ctx, stream, eventstore.Any, ev); err != nil {
			t.Fatal(err)
		}
		if i%7 == 3 {
			recs, err := store.ReadStream(ctx, stream, eventstore.ReadStreamOptions{From: res.Version, Limit: 1})
			if err != nil || len(recs) != 1 {
				t.Fatal(recs, err)
			}
			corrupt = append(corrupt, recs[0].EventID)
		}
	}
	stop := e.start(r)
	err = r.WaitFor(ctx, "reuse", res.Position)
	stop()
	if err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(errs) > 0 {
		t.Fatalf("events handled with another event's payload: %v", errs)
	}
	if handled != events-len(corrupt) {
		t.Fatalf("handled %d events, want %d", handled, events-len(corrupt))
	}
	dls, err := storage.DeadLetters(ctx, projectionstore.DeadLetterFilter{Projection: "reuse"})
	if err != nil {
		t.Fatal(err)
	}
	var parked []eventstore.EventID
	for _, dl := range dls {
		parked = append(parked, dl.EventID)
	}
	if !slices.Equal(parked, corrupt) {
		t.Fatalf("parked %v, want the events that do not decode: %v", parked, corrupt)
	}
	store.mu.Lock()
	defer store.mu.Unlock()
	seen := map[*eventstore.Record]bool{}
	for _, rec := range store.firsts {
		seen[rec] = true
	}
	// 20 full batches. Reads allocate their events until handled batches
	// come back, and again whenever a read finds none kept (a batch
	// handled while two are kept is let go, and the order of reads and
	// handling is the scheduler's): typically 3–5 batches' events, 7 seen
	// on a loaded machine. Without reuse, every batch's would be new.
	if len(store.firsts) != events/batch || len(seen) > events/batch/2 {
		t.Fatalf("%d full batches read into %d different events, want at most %d", len(store.firsts), len(seen), events/batch/2)
	}
}
