package storetest

import (
	"errors"
	"testing"

	"github.com/chronicle-go/chronicle/eventstore"
)

func testAppendAndReadBack(t *testing.T, s *suite) {
	ctx, store := s.setup(t)
	events := []eventstore.Event{
		{ID: eventstore.NewEventID(), Type: "AccountOpened", SchemaVersion: 1, Data: []byte(`{"owner":"Ada"}`)},
		{ID: eventstore.NewEventID(), Type: "DepositCompleted", SchemaVersion: 2, Data: []byte(`{"amount":125.5,"currency":"EUR"}`)},
		{ID: eventstore.NewEventID(), Type: "DepositCompleted", Data: []byte(`{"amount":1}`)}, // schema version 0 is stored as 1
	}
	res := mustAppend(t, ctx, store, "account-1", eventstore.NoStream, events...)
	if res.StreamID != "account-1" || res.Version != 3 {
		t.Fatalf("AppendResult = %+v, want stream account-1 at version 3", res)
	}
	recs := requireStream(t, ctx, store, "account-1", events)
	if recs[2].Position.Compare(res.Position) != 0 {
		t.Fatalf("AppendResult.Position %s, want the last event's position %s", res.Position, recs[2].Position)
	}

	all := readAllN(t, ctx, store, eventstore.Position{}, 3)
	for i := range all {
		if all[i].Position.Compare(recs[i].Position) != 0 || all[i].EventID != recs[i].EventID {
			t.Fatalf("ReadAll event %d: %s at %s, ReadStream: %s at %s", i, all[i].EventID, all[i].Position, recs[i].EventID, recs[i].Position)
		}
	}
}

func testExpectedAny(t *testing.T, s *suite) {
	ctx, store := s.setup(t)
	res := mustAppend(t, ctx, store, "s", eventstore.Any, numbered("E", 2)...)
	if res.Version != 2 {
		t.Fatalf("Any on a new stream: version %d, want 2", res.Version)
	}
	res = mustAppend(t, ctx, store, "s", eventstore.Any, numbered("E", 1)...)
	if res.Version != 3 {
		t.Fatalf("Any on an existing stream: version %d, want 3", res.Version)
	}
	requireVersion(t, ctx, store, "s", 3)
}

func testExpectedNoStream(t *testing.T, s *suite) {
	ctx, store := s.setup(t)
	res := mustAppend(t, ctx, store, "s", eventstore.NoStream, numbered("E", 2)...)
	if res.Version != 2 {
		t.Fatalf("NoStream on a new stream: version %d, want 2", res.Version)
	}
	_, err := store.Append(ctx, "s", eventstore.NoStream, numbered("E", 1)...)
	requireConflict(t, err, "s", eventstore.NoStream, 2)
	requireVersion(t, ctx, store, "s", 2)

	// Exact(0) is NoStream.
	mustAppend(t, ctx, store, "t", eventstore.Exact(0), numbered("E", 1)...)
	_, err = store.Append(ctx, "t", eventstore.Exact(0), numbered("E", 1)...)
	requireConflict(t, err, "t", eventstore.NoStream, 1)
	requireVersion(t, ctx, store, "t", 1)
}

func testExpectedStreamExists(t *testing.T, s *suite) {
	ctx, store := s.setup(t)
	_, err := store.Append(ctx, "s", eventstore.StreamExists, numbered("E", 1)...)
	requireConflict(t, err, "s", eventstore.StreamExists, 0)
	requireVersion(t, ctx, store, "s", 0)

	mustAppend(t, ctx, store, "s", eventstore.NoStream, numbered("E", 1)...)
	res := mustAppend(t, ctx, store, "s", eventstore.StreamExists, numbered("E", 2)...)
	if res.Version != 3 {
		t.Fatalf("StreamExists on an existing stream: version %d, want 3", res.Version)
	}
	requireVersion(t, ctx, store, "s", 3)
}

func testExpectedExact(t *testing.T, s *suite) {
	ctx, store := s.setup(t)
	_, err := store.Append(ctx, "s", eventstore.Exact(1), numbered("E", 1)...)
	requireConflict(t, err, "s", eventstore.Exact(1), 0)
	requireVersion(t, ctx, store, "s", 0)

	var stored []eventstore.Event
	for v := int64(0); v < 4; v++ {
		events := numbered("E", 1)
		res := mustAppend(t, ctx, store, "s", eventstore.Exact(v), events...)
		if res.Version != v+1 {
			t.Fatalf("Exact(%d): version %d, want %d", v, res.Version, v+1)
		}
		stored = append(stored, events...)
	}
	for _, stale := range []int64{1, 3, 5, 100} {
		_, err := store.Append(ctx, "s", eventstore.Exact(stale), numbered("E", 2)...)
		requireConflict(t, err, "s", eventstore.Exact(stale), 4)
	}
	requireStream(t, ctx, store, "s", stored)
}

func testGeneratedIDs(t *testing.T, s *suite) {
	ctx, store := s.setup(t)
	same := eventstore.Event{Type: "E", Data: []byte(`{"same":true}`)}
	mustAppend(t, ctx, store, "s", eventstore.Any, same, same, same)
	for range 5 {
		// Zero IDs are never deduplicated: identical content is a new event.
		mustAppend(t, ctx, store, "s", eventstore.Any, same)
	}
	recs := readStream(t, ctx, store, "s")
	if len(recs) != 8 {
		t.Fatalf("stream has %d events, want 8", len(recs))
	}
	seen := map[eventstore.EventID]bool{}
	for _, r := range recs {
		if r.EventID.IsZero() {
			t.Fatalf("v%d has a zero event id", r.StreamVersion)
		}
		if seen[r.EventID] {
			t.Fatalf("event id %s generated twice", r.EventID)
		}
		seen[r.EventID] = true
	}
}

func testAppendStreams(t *testing.T, s *suite) {
	ctx, store := s.setup(t)
	b := numbered("B", 2)
	mustAppend(t, ctx, store, "b", eventstore.NoStream, b...)
	a, b2, c := numbered("A", 2), numbered("B", 1), numbered("C", 1)
	results, err := store.AppendStreams(ctx,
		eventstore.StreamAppend{StreamID: "a", Expected: eventstore.NoStream, Events: a},
		eventstore.StreamAppend{StreamID: "b", Expected: eventstore.Exact(2), Events: b2},
		eventstore.StreamAppend{StreamID: "c", Expected: eventstore.Any, Events: c},
	)
	if err != nil {
		t.Fatalf("AppendStreams: %v", err)
	}
	want := []struct {
		stream  string
		version int64
	}{{"a", 2}, {"b", 3}, {"c", 1}}
	if len(results) != len(want) {
		t.Fatalf("AppendStreams returned %d results, want %d", len(results), len(want))
	}
	for i, w := range want {
		if results[i].StreamID != w.stream || results[i].Version != w.version {
			t.Fatalf("results[%d] = %+v, want stream %q at version %d", i, results[i], w.stream, w.version)
		}
	}
	recsA := requireStream(t, ctx, store, "a", a)
	recsB := requireStream(t, ctx, store, "b", append(b, b2...))
	recsC := requireStream(t, ctx, store, "c", c)
	for i, last := range []eventstore.Record{recsA[1], recsB[2], recsC[0]} {
		if results[i].Position.Compare(last.Position) != 0 {
			t.Fatalf("results[%d].Position %s, want the stream's last event position %s", i, results[i].Position, last.Position)
		}
	}

	// The four events of the call are stored together: nothing sorts
	// between them in the global order.
	all := readAllN(t, ctx, store, eventstore.Position{}, 6)
	ids := map[eventstore.EventID]bool{}
	for _, e := range append(append(a, b2...), c...) {
		ids[e.ID] = true
	}
	first := -1
	for i, r := range all {
		if ids[r.EventID] {
			if first < 0 {
				first = i
			}
			if i-first >= len(ids) {
				t.Fatalf("the events of one AppendStreams call are not contiguous in ReadAll")
			}
		} else if first >= 0 && i-first < len(ids) {
			t.Fatalf("event %s v%d sorts between the events of one AppendStreams call", r.StreamID, r.StreamVersion)
		}
	}
}

func testAppendStreamsAtomic(t *testing.T, s *suite) {
	ctx, store := s.setup(t)
	b := numbered("B", 2)
	mustAppend(t, ctx, store, "b", eventstore.NoStream, b...)

	_, err := store.AppendStreams(ctx,
		eventstore.StreamAppend{StreamID: "a", Expected: eventstore.NoStream, Events: numbered("A", 2)},
		eventstore.StreamAppend{StreamID: "b", Expected: eventstore.Exact(1), Events: numbered("B", 1)},
		eventstore.StreamAppend{StreamID: "c", Expected: eventstore.Any, Events: numbered("C", 1)},
	)
	requireConflict(t, err, "b", eventstore.Exact(1), 2)

	_, err = store.AppendStreams(ctx,
		eventstore.StreamAppend{StreamID: "b", Expected: eventstore.NoStream, Events: numbered("B", 1)},
		eventstore.StreamAppend{StreamID: "a", Expected: eventstore.NoStream, Events: numbered("A", 1)},
	)
	requireConflict(t, err, "b", eventstore.NoStream, 2)

	requireVersion(t, ctx, store, "a", 0)
	requireVersion(t, ctx, store, "c", 0)
	requireStream(t, ctx, store, "b", b)
	readAllN(t, ctx, store, eventstore.Position{}, 2)
}

func testAppendStreamsInvalid(t *testing.T, s *suite) {
	ctx, store := s.setup(t)
	existing := newEvent("E", `{}`)
	mustAppend(t, ctx, store, "existing", eventstore.NoStream, existing)

	_, err := store.AppendStreams(ctx)
	requireInvalid(t, "no appends", err)

	_, err = store.AppendStreams(ctx,
		eventstore.StreamAppend{StreamID: "a", Expected: eventstore.Any, Events: numbered("A", 1)},
		eventstore.StreamAppend{StreamID: "a", Expected: eventstore.Any, Events: numbered("A", 1)},
	)
	requireInvalid(t, "same stream twice", err)

	_, err = store.AppendStreams(ctx,
		eventstore.StreamAppend{StreamID: "a", Expected: eventstore.Any, Events: numbered("A", 1)},
		eventstore.StreamAppend{StreamID: "b", Expected: eventstore.Any, Events: []eventstore.Event{{Type: "B", Data: []byte(`{`)}}},
	)
	requireInvalid(t, "invalid event in the second append", err)

	_, err = store.AppendStreams(ctx,
		eventstore.StreamAppend{StreamID: "a", Expected: eventstore.Any, Events: numbered("A", 1)},
		eventstore.StreamAppend{StreamID: "", Expected: eventstore.Any, Events: numbered("B", 1)},
	)
	requireInvalid(t, "invalid stream id in the second append", err)

	// One event ID in two streams of one call: invalid input, or a
	// duplicate when the store only notices on insert. Never stored.
	shared := newEvent("Shared", `{}`)
	_, err = store.AppendStreams(ctx,
		eventstore.StreamAppend{StreamID: "a", Expected: eventstore.Any, Events: []eventstore.Event{shared}},
		eventstore.StreamAppend{StreamID: "b", Expected: eventstore.Any, Events: []eventstore.Event{shared}},
	)
	if !errors.Is(err, eventstore.ErrInvalidInput) && !errors.Is(err, eventstore.ErrDuplicateEvent) {
		t.Fatalf("one event id in two streams: error %v, want ErrInvalidInput or ErrDuplicateEvent", err)
	}

	// A new stream plus an event ID that is already stored elsewhere.
	_, err = store.AppendStreams(ctx,
		eventstore.StreamAppend{StreamID: "a", Expected: eventstore.Any, Events: numbered("A", 1)},
		eventstore.StreamAppend{StreamID: "b", Expected: eventstore.Any, Events: []eventstore.Event{existing}},
	)
	if !errors.Is(err, eventstore.ErrDuplicateEvent) {
		t.Fatalf("reusing a stored event id: error %v, want ErrDuplicateEvent", err)
	}

	requireVersion(t, ctx, store, "a", 0)
	requireVersion(t, ctx, store, "b", 0)
	requireVersion(t, ctx, store, "existing", 1)
	readAllN(t, ctx, store, eventstore.Position{}, 1)
}

func testAppendStreamsRetry(t *testing.T, s *suite) {
	ctx, store := s.setup(t)
	appends := []eventstore.StreamAppend{
		{StreamID: "a", Expected: eventstore.NoStream, Events: numbered("A", 2)},
		{StreamID: "b", Expected: eventstore.Any, Events: numbered("B", 1)},
	}
	first, err := store.AppendStreams(ctx, appends...)
	if err != nil {
		t.Fatalf("AppendStreams: %v", err)
	}
	mustAppend(t, ctx, store, "b", eventstore.Any, numbered("B", 1)...) // someone else appends meanwhile
	again, err := store.AppendStreams(ctx, appends...)
	if err != nil {
		t.Fatalf("retried AppendStreams: %v", err)
	}
	if len(again) != len(first) {
		t.Fatalf("retry returned %d results, want %d", len(again), len(first))
	}
	for i := range first {
		if !sameResult(first[i], again[i]) {
			t.Fatalf("retry results[%d] = %+v, want the original %+v", i, again[i], first[i])
		}
	}
	requireStream(t, ctx, store, "a", appends[0].Events)
	requireVersion(t, ctx, store, "b", 2)
	readAllN(t, ctx, store, eventstore.Position{}, 4)
}
