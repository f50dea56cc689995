package storetest

import (
	"errors"
	"fmt"
	"slices"
	"testing"

	"github.com/chronicle-go/chronicle/eventstore"
)

// testIdempotentRetry retries appends whose events are all stored, at the
// versions the expectation implies: each retry returns the original result
// and stores nothing.
func testIdempotentRetry(t *testing.T, s *suite) {
	ctx, store := s.setup(t)
	a := numbered("A", 2)
	first := mustAppend(t, ctx, store, "s", eventstore.NoStream, a...)

	retry := func(what string, streamID string, expected eventstore.ExpectedVersion, events []eventstore.Event, want eventstore.AppendResult) {
		t.Helper()
		got, err := store.Append(ctx, streamID, expected, events...)
		if err != nil {
			t.Fatalf("%s: retry failed: %v", what, err)
		}
		if !sameResult(got, want) {
			t.Fatalf("%s: retry returned %+v, want the original result %+v", what, got, want)
		}
	}
	retry("same expectation", "s", eventstore.NoStream, a, first)
	retry("Exact(0)", "s", eventstore.Exact(0), a, first)
	retry("Any", "s", eventstore.Any, a, first)
	retry("StreamExists", "s", eventstore.StreamExists, a, first)
	requireStream(t, ctx, store, "s", a)

	// Another writer appends; the retries are still recognised.
	b := numbered("B", 3)
	second := mustAppend(t, ctx, store, "s", eventstore.Exact(2), b...)
	c := numbered("C", 1)
	mustAppend(t, ctx, store, "s", eventstore.Any, c...)
	retry("after others appended, NoStream", "s", eventstore.NoStream, a, first)
	retry("after others appended, Exact", "s", eventstore.Exact(2), b, second)
	retry("after others appended, Any", "s", eventstore.Any, b, second)

	// A payload that is the same JSON value, byte for byte: a retry.
	copied := slices.Clone(b)
	for i := range copied {
		copied[i].Data = slices.Clone(copied[i].Data)
	}
	retry("copied events", "s", eventstore.Exact(2), copied, second)

	// The same JSON value, encoded differently (white space, number form):
	// still a retry, as PostgreSQL's jsonb equality has it.
	reencoded := slices.Clone(b)
	for i := range reencoded {
		reencoded[i].Data = []byte(fmt.Sprintf(`{ "n" : %d.0 }`, i+1))
	}
	retry("re-encoded payloads", "s", eventstore.Exact(2), reencoded, second)

	requireStream(t, ctx, store, "s", slices.Concat(a, b, c))
	readAllN(t, ctx, store, eventstore.Position{}, 6)
}

// testDuplicateEventID reuses stored event IDs in ways that are not
// retries: each fails with a *DuplicateEventError and stores nothing.
func testDuplicateEventID(t *testing.T, s *suite) {
	ctx, store := s.setup(t)
	a := numbered("A", 2)
	mustAppend(t, ctx, store, "s", eventstore.NoStream, a...)

	with := func(f func(e *eventstore.Event)) []eventstore.Event {
		events := slices.Clone(a)
		for i := range events {
			f(&events[i])
		}
		return events
	}
	fresh := newEvent("A", `{"fresh":true}`)
	tests := []struct {
		name     string
		stream   string
		expected eventstore.ExpectedVersion
		events   []eventstore.Event
		dupID    eventstore.EventID // the ID the error must name; zero: any of a
	}{
		{"different payload", "s", eventstore.Any, with(func(e *eventstore.Event) { e.Data = []byte(`{"n":42}`) }), a[0].ID},
		{"different type", "s", eventstore.Any, with(func(e *eventstore.Event) { e.Type = "Other" }), a[0].ID},
		{"different schema version", "s", eventstore.Any, with(func(e *eventstore.Event) { e.SchemaVersion = 2 }), a[0].ID},
		// Reusing an ID is reported even when the expectation fails too.
		{"different payload, stale expectation", "s", eventstore.NoStream, with(func(e *eventstore.Event) { e.Data = []byte(`{"n":42}`) }), a[0].ID},
		{"other stream", "other", eventstore.NoStream, a, a[0].ID},
		{"other stream, Any", "other", eventstore.Any, a, a[0].ID},
		{"different order", "s", eventstore.NoStream, []eventstore.Event{a[1], a[0]}, eventstore.EventID{}},
		{"partial overlap, stored first", "s", eventstore.Exact(2), []eventstore.Event{a[1], fresh}, a[1].ID},
		{"partial overlap, stored last", "s", eventstore.Exact(2), []eventstore.Event{fresh, a[0]}, a[0].ID},
		{"partial overlap, Any", "s", eventstore.Any, []eventstore.Event{fresh, a[1]}, a[1].ID},
		// Stored at versions 1-2, but Exact(2) puts them at 3-4.
		{"versions the expectation implies", "s", eventstore.Exact(2), a, eventstore.EventID{}},
		{"versions the expectation implies, one event", "s", eventstore.Exact(2), a[1:], a[1].ID},
	}
	for _, tt := range tests {
		_, err := store.Append(ctx, tt.stream, tt.expected, tt.events...)
		if !errors.Is(err, eventstore.ErrDuplicateEvent) {
			t.Fatalf("%s: error %v, want one matching ErrDuplicateEvent", tt.name, err)
		}
		var de *eventstore.DuplicateEventError
		if !errors.As(err, &de) {
			t.Fatalf("%s: error %v (%T) is not a *DuplicateEventError", tt.name, err, err)
		}
		if de.StreamID != tt.stream {
			t.Fatalf("%s: DuplicateEventError.StreamID %q, want %q", tt.name, de.StreamID, tt.stream)
		}
		if !tt.dupID.IsZero() && de.EventID != tt.dupID {
			t.Fatalf("%s: DuplicateEventError.EventID %s, want %s", tt.name, de.EventID, tt.dupID)
		}
		if tt.dupID.IsZero() && de.EventID != a[0].ID && de.EventID != a[1].ID {
			t.Fatalf("%s: DuplicateEventError.EventID %s is none of the reused IDs", tt.name, de.EventID)
		}
	}

	// The same ID twice in one append is invalid input.
	twice := newEvent("T", `{}`)
	_, err := store.Append(ctx, "t", eventstore.NoStream, twice, newEvent("T", `{}`), twice)
	requireInvalid(t, "one event id twice in an append", err)
	// Also in long appends (stores may check short and long ones apart),
	// and across the streams of one AppendStreams.
	for _, n := range []int{16, 17, 40} {
		long := numbered("T", n)
		long[n-1].ID = long[n/2].ID
		_, err := store.Append(ctx, "t", eventstore.NoStream, long...)
		requireInvalid(t, fmt.Sprintf("one event id twice in an append of %d events", n), err)
	}
	across := numbered("T", 20)
	across[19].ID = across[3].ID
	_, err = store.AppendStreams(ctx,
		eventstore.StreamAppend{StreamID: "t", Expected: eventstore.NoStream, Events: across[:10]},
		eventstore.StreamAppend{StreamID: "other", Expected: eventstore.NoStream, Events: across[10:]})
	requireInvalid(t, "one event id in two streams of an AppendStreams", err)

	requireStream(t, ctx, store, "s", a)
	requireVersion(t, ctx, store, "other", 0)
	requireVersion(t, ctx, store, "t", 0)
	readAllN(t, ctx, store, eventstore.Position{}, 2)
}
