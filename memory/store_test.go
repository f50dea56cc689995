package memory_test

import (
	"context"
	"errors"
	"math/rand/v2"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/chronicle-go/chronicle/eventstore"
	"github.com/chronicle-go/chronicle/eventstore/storetest"
	"github.com/chronicle-go/chronicle/memory"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

func TestConformance(t *testing.T) {
	t.Parallel()
	storetest.Run(t, func(t *testing.T) eventstore.Store { return memory.New(nil) }, nil)
}

func TestConformanceSmallEventLimit(t *testing.T) {
	t.Parallel()
	storetest.Run(t, func(t *testing.T) eventstore.Store {
		return memory.New(&memory.Config{MaxEventSize: 1000})
	}, &storetest.Options{MaxEventSize: 1000})
}

func setup(t *testing.T, cfg *memory.Config) (context.Context, *memory.Store) {
	t.Helper()
	return t.Context(), memory.New(cfg)
}

func event(typ, data string) eventstore.Event {
	return eventstore.Event{ID: eventstore.NewEventID(), Type: typ, Data: []byte(data)}
}

// The memory store numbers commits and events from 1: one transaction per
// append, one global number per event.
func TestPositions(t *testing.T) {
	t.Parallel()
	ctx, s := setup(t, nil)
	if _, err := s.Append(ctx, "a", eventstore.Any, event("E", `1`), event("E", `2`)); err != nil {
		t.Fatal(err)
	}
	if _, err := s.AppendStreams(ctx,
		eventstore.StreamAppend{StreamID: "b", Expected: eventstore.Any, Events: []eventstore.Event{event("E", `3`)}},
		eventstore.StreamAppend{StreamID: "a", Expected: eventstore.Exact(2), Events: []eventstore.Event{event("E", `4`)}},
	); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Append(ctx, "a", eventstore.Any, event("E", `5`)); err != nil {
		t.Fatal(err)
	}
	recs, err := s.ReadAll(ctx, eventstore.Position{}, 10)
	if err != nil {
		t.Fatal(err)
	}
	pos := func(tx uint64, global int64) eventstore.Position {
		return eventstore.Position{Transaction: tx, Global: global}
	}
	want := []eventstore.Position{pos(1, 1), pos(1, 2), pos(2, 3), pos(2, 4), pos(3, 5)}
	if len(recs) != len(want) {
		t.Fatalf("ReadAll: %d events, want %d", len(recs), len(want))
	}
	for i, r := range recs {
		if r.Position != want[i] {
			t.Errorf("event %d at %s, want %s", i, r.Position, want[i])
		}
	}
	if head, err := s.Head(ctx); err != nil || head != want[4] {
		t.Errorf("Head = %s, %v; want %s", head, err, want[4])
	}
}

// ReadAll accepts any position, not only ones it returned: it resumes at
// the first event after it.
func TestReadAllFromAnyPosition(t *testing.T) {
	t.Parallel()
	ctx, s := setup(t, nil)
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range 300 {
		events := make([]eventstore.Event, rng.IntN(4)+1)
		for k := range events {
			events[k] = event("E", `{}`)
		}
		if _, err := s.Append(ctx, []string{"a", "b", "c"}[i%3], eventstore.Any, events...); err != nil {
			t.Fatal(err)
		}
	}
	all, err := s.ReadAll(ctx, eventstore.Position{}, 10000)
	if err != nil {
		t.Fatal(err)
	}
	last := all[len(all)-1].Position
	for range 2000 {
		after := eventstore.Position{
			Transaction: rng.Uint64N(last.Transaction + 3),
			Global:      rng.Int64N(last.Global+3) - 1,
		}
		want := len(all)
		for i, r := range all {
			if r.Position.Compare(after) > 0 {
				want = i
				break
			}
		}
		got, err := s.ReadAll(ctx, after, 3)
		if err != nil {
			t.Fatal(err)
		}
		if want == len(all) {
			if len(got) != 0 {
				t.Fatalf("ReadAll(%s) = %d events, want none", after, len(got))
			}
			continue
		}
		if len(got) == 0 || got[0].Position != all[want].Position {
			t.Fatalf("ReadAll(%s) starts at %v, want %s", after, got, all[want].Position)
		}
	}
}

func TestConfigNow(t *testing.T) {
	t.Parallel()
	zone := time.FixedZone("UTC+5", 5*3600)
	at := time.Date(2024, 2, 29, 12, 30, 0, 123456789, zone)
	ctx, s := setup(t, &memory.Config{Now: func() time.Time { return at }})
	if _, err := s.Append(ctx, "s", eventstore.NoStream, event("E", `{}`), event("E", `{}`)); err != nil {
		t.Fatal(err)
	}
	recs, err := s.ReadStream(ctx, "s", eventstore.ReadStreamOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range recs {
		if !r.RecordedAt.Equal(at) || r.RecordedAt.Location() != time.UTC {
			t.Errorf("RecordedAt = %s, want %s in UTC", r.RecordedAt, at)
		}
	}
}

func TestConfigDefaults(t *testing.T) {
	t.Parallel()
	ctx, s := setup(t, &memory.Config{})
	data := make([]byte, eventstore.DefaultMaxEventSize+1)
	for i := range data {
		data[i] = ' '
	}
	data[0] = '0' // a JSON number padded with spaces
	big := eventstore.Event{Type: "Big", Data: data}
	_, err := s.Append(ctx, "s", eventstore.Any, big)
	var te *eventstore.EventTooLargeError
	if !errors.As(err, &te) || te.Limit != eventstore.DefaultMaxEventSize {
		t.Fatalf("oversized event: error %v, want an EventTooLargeError with the default limit", err)
	}
}

// An AppendStreams call that retries some parts and adds new events in
// others is not a retry: it fails and stores nothing.
func TestAppendStreamsPartialRetry(t *testing.T) {
	t.Parallel()
	ctx, s := setup(t, nil)
	a := []eventstore.Event{event("A", `{}`)}
	if _, err := s.Append(ctx, "a", eventstore.NoStream, a...); err != nil {
		t.Fatal(err)
	}
	_, err := s.AppendStreams(ctx,
		eventstore.StreamAppend{StreamID: "a", Expected: eventstore.NoStream, Events: a},
		eventstore.StreamAppend{StreamID: "b", Expected: eventstore.NoStream, Events: []eventstore.Event{event("B", `{}`)}},
	)
	var de *eventstore.DuplicateEventError
	if !errors.As(err, &de) || de.EventID != a[0].ID || de.StreamID != "a" {
		t.Fatalf("error %v, want a DuplicateEventError for %s in stream a", err, a[0].ID)
	}
	if _, err := s.StreamVersion(ctx, "b"); !errors.Is(err, eventstore.ErrStreamNotFound) {
		t.Fatalf("stream b: %v, want ErrStreamNotFound", err)
	}
}

// Large payloads bypass the shared arena; both kinds read back intact.
func TestPayloadSizes(t *testing.T) {
	t.Parallel()
	ctx, s := setup(t, nil)
	var events []eventstore.Event
	for _, size := range []int{2, 100, 4 << 10, 4<<10 + 1, 60 << 10, 70 << 10, 300 << 10} {
		data := make([]byte, size)
		data[0], data[size-1] = '"', '"'
		for i := 1; i < size-1; i++ {
			data[i] = 'a' + byte(i%26)
		}
		events = append(events, eventstore.Event{Type: "Sized", Data: data})
	}
	for _, e := range events {
		if _, err := s.Append(ctx, "s", eventstore.Any, e, e); err != nil {
			t.Fatal(err)
		}
	}
	recs, err := s.ReadStream(ctx, "s", eventstore.ReadStreamOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for i, r := range recs {
		if string(r.Data) != string(events[i/2].Data) {
			t.Fatalf("v%d: payload of %d bytes differs from the %d bytes appended", r.StreamVersion, len(r.Data), len(events[i/2].Data))
		}
		if cap(r.Data) != len(r.Data) {
			t.Fatalf("v%d: payload has spare capacity %d: appending to it could overwrite another event", r.StreamVersion, cap(r.Data)-len(r.Data))
		}
	}
}

// Concurrent appends, reads and watches, for the race detector.
func TestConcurrentUse(t *testing.T) {
	t.Parallel()
	ctx, s := setup(t, nil)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	done := make(chan struct{})
	go func() {
		defer close(done)
		wake := s.Watch(ctx)
		var after eventstore.Position
		for {
			recs, err := s.ReadAll(ctx, after, 50)
			if err != nil {
				return
			}
			if len(recs) > 0 {
				after = recs[len(recs)-1].Position
				continue
			}
			if _, ok := <-wake; !ok {
				return
			}
		}
	}()
	errs := make(chan error, 4)
	for w := range 4 {
		go func() {
			var err error
			for i := 0; i < 200 && err == nil; i++ {
				_, err = s.Append(ctx, []string{"a", "b"}[(w+i)%2], eventstore.Any, event("E", `{}`))
				if err == nil {
					_, err = s.ReadStream(ctx, "a", eventstore.ReadStreamOptions{Direction: eventstore.Backward, Limit: 5})
				}
			}
			errs <- err
		}()
	}
	for range 4 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	cancel()
	<-done
}
