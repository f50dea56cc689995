package storetest

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"testing"
	"time"

	"github.com/chronicle-go/chronicle/eventstore"
)

// tenEvents appends 10 events to stream "s", interleaved with events of
// another stream, and returns them.
func tenEvents(t *testing.T, s *suite) (context.Context, eventstore.Store, []eventstore.Event) {
	t.Helper()
	ctx, store := s.setup(t)
	events := numbered("S", 10)
	for i, e := range events {
		mustAppend(t, ctx, store, "s", eventstore.Exact(int64(i)), e)
		mustAppend(t, ctx, store, "noise", eventstore.Any, newEvent("N", `{}`))
	}
	return ctx, store, events
}

func testReadStreamForward(t *testing.T, s *suite) {
	ctx, store, events := tenEvents(t, s)
	tests := []struct {
		from    int64
		limit   int
		want    []int64
		comment string
	}{
		{0, 0, span(1, 10), "defaults: everything"},
		{-5, 0, span(1, 10), "below 1 means 1"},
		{1, 0, span(1, 10), ""},
		{4, 0, span(4, 10), ""},
		{4, 3, span(4, 6), ""},
		{0, 1, span(1, 1), ""},
		{10, 0, span(10, 10), "the last event"},
		{10, 5, span(10, 10), ""},
		{11, 0, nil, "past the end"},
		{1000, 10, nil, "far past the end"},
		{0, 100, span(1, 10), "limit above the length"},
	}
	for _, tt := range tests {
		opts := eventstore.ReadStreamOptions{Direction: eventstore.Forward, From: tt.from, Limit: tt.limit}
		recs := mustReadStream(t, ctx, store, "s", opts)
		requireVersions(t, fmt.Sprintf("forward %+v (%s)", opts, tt.comment), recs, tt.want)
		for _, r := range recs {
			if r.StreamID != "s" {
				t.Fatalf("forward %+v returned an event of stream %q", opts, r.StreamID)
			}
			requireEvent(t, r, events[r.StreamVersion-1])
		}
	}
}

func testReadStreamBackward(t *testing.T, s *suite) {
	ctx, store, events := tenEvents(t, s)
	tests := []struct {
		from    int64
		limit   int
		want    []int64
		comment string
	}{
		{0, 0, span(10, 1), "from the end"},
		{0, 3, span(10, 8), "the last three"},
		{10, 0, span(10, 1), ""},
		{4, 0, span(4, 1), "from a version"},
		{4, 2, span(4, 3), ""},
		{1, 0, span(1, 1), "the first event"},
		{1, 5, span(1, 1), ""},
		{50, 0, span(10, 1), "from past the end"},
		{0, 100, span(10, 1), "limit above the length"},
	}
	for _, tt := range tests {
		opts := eventstore.ReadStreamOptions{Direction: eventstore.Backward, From: tt.from, Limit: tt.limit}
		recs := mustReadStream(t, ctx, store, "s", opts)
		requireVersions(t, fmt.Sprintf("backward %+v (%s)", opts, tt.comment), recs, tt.want)
		for _, r := range recs {
			if r.StreamID != "s" {
				t.Fatalf("backward %+v returned an event of stream %q", opts, r.StreamID)
			}
			requireEvent(t, r, events[r.StreamVersion-1])
		}
	}
}

func testReadStreamEmpty(t *testing.T, s *suite) {
	ctx, store := s.setup(t)
	check := func(what string) {
		t.Helper()
		for _, opts := range []eventstore.ReadStreamOptions{
			{},
			{Direction: eventstore.Backward},
			{From: 5, Limit: 3},
			{Direction: eventstore.Backward, From: 5, Limit: 3},
		} {
			recs, err := store.ReadStream(ctx, "missing", opts)
			if err != nil || len(recs) != 0 {
				t.Fatalf("%s: ReadStream(missing, %+v) = %d events, %v; want an empty page and no error", what, opts, len(recs), err)
			}
		}
		if _, err := store.StreamVersion(ctx, "missing"); !errors.Is(err, eventstore.ErrStreamNotFound) {
			t.Fatalf("%s: StreamVersion(missing) error %v, want ErrStreamNotFound", what, err)
		}
	}
	check("empty store")
	mustAppend(t, ctx, store, "present", eventstore.NoStream, numbered("E", 3)...)
	mustAppend(t, ctx, store, "missing-not", eventstore.NoStream, numbered("E", 1)...)
	check("store with other streams")
}

func testReadStreamSeq(t *testing.T, s *suite) {
	ctx, store := s.setup(t)
	events := numbered("E", 25)
	mustAppend(t, ctx, store, "s", eventstore.NoStream, events[:12]...)
	mustAppend(t, ctx, store, "other", eventstore.NoStream, numbered("O", 3)...)
	mustAppend(t, ctx, store, "s", eventstore.Exact(12), events[12:]...)

	tests := []struct {
		opts eventstore.ReadStreamOptions
		want []int64
	}{
		{eventstore.ReadStreamOptions{}, span(1, 25)},
		{eventstore.ReadStreamOptions{From: 10}, span(10, 25)},
		{eventstore.ReadStreamOptions{Limit: 7}, span(1, 7)},
		{eventstore.ReadStreamOptions{From: 20, Limit: 100}, span(20, 25)},
		{eventstore.ReadStreamOptions{Direction: eventstore.Backward}, span(25, 1)},
		{eventstore.ReadStreamOptions{Direction: eventstore.Backward, From: 10}, span(10, 1)},
		{eventstore.ReadStreamOptions{Direction: eventstore.Backward, From: 10, Limit: 3}, span(10, 8)},
		{eventstore.ReadStreamOptions{Direction: eventstore.Backward, Limit: 12}, span(25, 14)},
	}
	for _, pageSize := range []int{0, 1, 4, 5, 25, 1000} {
		for _, tt := range tests {
			var recs []eventstore.Record
			for r, err := range eventstore.ReadStreamSeq(ctx, store, "s", tt.opts, pageSize) {
				if err != nil {
					t.Fatalf("ReadStreamSeq(%+v, page %d): %v", tt.opts, pageSize, err)
				}
				recs = append(recs, r)
			}
			requireVersions(t, fmt.Sprintf("ReadStreamSeq(%+v, page %d)", tt.opts, pageSize), recs, tt.want)
			for _, r := range recs {
				requireEvent(t, r, events[r.StreamVersion-1])
			}
		}
		// Stopping early is fine.
		n := 0
		for range eventstore.ReadStreamSeq(ctx, store, "s", eventstore.ReadStreamOptions{}, pageSize) {
			n++
			if n == 3 {
				break
			}
		}
		if n != 3 {
			t.Fatalf("ReadStreamSeq stopped after %d events, want 3", n)
		}
	}
	for r, err := range eventstore.ReadStreamSeq(ctx, store, "missing", eventstore.ReadStreamOptions{}, 10) {
		t.Fatalf("ReadStreamSeq of a missing stream yielded %+v, %v", r, err)
	}
}

func testReadAllOrder(t *testing.T, s *suite) {
	ctx, store := s.setup(t)
	// Appends one after another: the global order is the order of the
	// appends, and within each append the order of its events.
	plan := []struct {
		stream string
		n      int
	}{{"a", 1}, {"b", 2}, {"a", 1}, {"c", 3}, {"b", 1}, {"a", 2}, {"c", 1}, {"d", 1}, {"a", 1}}
	var order []eventstore.Event
	var results []eventstore.AppendResult
	for _, p := range plan {
		events := numbered(p.stream, p.n)
		results = append(results, mustAppend(t, ctx, store, p.stream, eventstore.Any, events...))
		order = append(order, events...)
	}
	all := readAllN(t, ctx, store, eventstore.Position{}, len(order))
	requireAscending(t, all)
	for i, r := range all {
		requireEvent(t, r, order[i])
	}
	// Per-stream versions ascend in the global order, with no holes.
	next := map[string]int64{}
	for _, r := range all {
		next[r.StreamID]++
		if r.StreamVersion != next[r.StreamID] {
			t.Fatalf("ReadAll has %s v%d where v%d was due", r.StreamID, r.StreamVersion, next[r.StreamID])
		}
	}
	// Every way of reading an event gives it the same position.
	byID := map[eventstore.EventID]eventstore.Record{}
	for _, r := range all {
		byID[r.EventID] = r
	}
	for _, stream := range []string{"a", "b", "c", "d"} {
		for _, r := range readStream(t, ctx, store, stream) {
			if byID[r.EventID].Position.Compare(r.Position) != 0 {
				t.Fatalf("%s v%d: ReadStream position %s, ReadAll position %s", stream, r.StreamVersion, r.Position, byID[r.EventID].Position)
			}
		}
	}
	i := 0
	for k, p := range plan {
		i += p.n
		if results[k].Position.Compare(all[i-1].Position) != 0 {
			t.Fatalf("append %d: result position %s, want its last event's %s", k, results[k].Position, all[i-1].Position)
		}
	}
}

func testReadAllPaging(t *testing.T, s *suite) {
	ctx, store := s.setup(t)
	for i := range 10 {
		mustAppend(t, ctx, store, fmt.Sprintf("s-%d", i%4), eventstore.Any, numbered("E", i%3+1)...)
	}
	const total = 19 // sum of i%3+1 for i in 0..9
	all := readAllN(t, ctx, store, eventstore.Position{}, total)

	for _, size := range []int{1, 2, 7, total, 1000} {
		var got []eventstore.Record
		var checkpoint eventstore.Position
		for {
			page, err := store.ReadAll(ctx, checkpoint, size)
			if err != nil {
				t.Fatalf("ReadAll(%s, %d): %v", checkpoint, size, err)
			}
			if len(page) > size {
				t.Fatalf("ReadAll(%s, %d) returned %d events", checkpoint, size, len(page))
			}
			if len(page) == 0 {
				break
			}
			got = append(got, page...)
			checkpoint = page[len(page)-1].Position
		}
		if len(got) != total {
			t.Fatalf("paging by %d: %d events, want %d", size, len(got), total)
		}
		for i := range got {
			if got[i].EventID != all[i].EventID || got[i].Position.Compare(all[i].Position) != 0 {
				t.Fatalf("paging by %d: event %d is %s, want %s", size, i, got[i].EventID, all[i].EventID)
			}
		}
	}

	// Reading after any event's position returns exactly the events after it.
	for i, r := range all {
		rest, err := store.ReadAll(ctx, r.Position, 1000)
		if err != nil {
			t.Fatalf("ReadAll(%s): %v", r.Position, err)
		}
		want := all[i+1:]
		if len(rest) != len(want) {
			t.Fatalf("ReadAll after event %d: %d events, want %d", i, len(rest), len(want))
		}
		for k := range rest {
			if rest[k].EventID != want[k].EventID {
				t.Fatalf("ReadAll after event %d: event %d is %s, want %s", i, k, rest[k].EventID, want[k].EventID)
			}
		}
	}
	beyond := eventstore.Position{Transaction: 1 << 62, Global: 1 << 62}
	if recs, err := store.ReadAll(ctx, beyond, 10); err != nil || len(recs) != 0 {
		t.Fatalf("ReadAll(%s) = %d events, %v; want none", beyond, len(recs), err)
	}
}

func testReadAllSeq(t *testing.T, s *suite) {
	ctx, store := s.setup(t)
	for i := range 9 {
		mustAppend(t, ctx, store, fmt.Sprintf("s-%d", i%3), eventstore.Any, numbered("E", i%3+1)...)
	}
	all := readAllN(t, ctx, store, eventstore.Position{}, 18)
	for _, size := range []int{0, 1, 5, 6, 18, 1000} {
		for _, from := range []int{0, 1, 10, 17} {
			var after eventstore.Position
			if from > 0 {
				after = all[from-1].Position
			}
			var got []eventstore.EventID
			for r, err := range eventstore.ReadAllSeq(ctx, store, after, size) {
				if err != nil {
					t.Fatalf("ReadAllSeq(%s, %d): %v", after, size, err)
				}
				got = append(got, r.EventID)
			}
			var want []eventstore.EventID
			for _, r := range all[from:] {
				want = append(want, r.EventID)
			}
			if !slices.Equal(got, want) {
				t.Fatalf("ReadAllSeq after event %d with pages of %d: %d events, want %d in order", from, size, len(got), len(want))
			}
		}
	}
}

func testHead(t *testing.T, s *suite) {
	ctx, store := s.setup(t)
	head, err := store.Head(ctx)
	if err != nil || !head.IsZero() {
		t.Fatalf("Head of an empty store = %s, %v; want the zero position", head, err)
	}
	var last eventstore.AppendResult
	for i := range 5 {
		last = mustAppend(t, ctx, store, fmt.Sprintf("s-%d", i%2), eventstore.Any, numbered("E", 2)...)
	}
	waitFor(t, "Head to reach the last append", func() bool {
		head, err = store.Head(ctx)
		if err != nil {
			t.Fatalf("Head: %v", err)
		}
		if head.Compare(last.Position) > 0 {
			t.Fatalf("Head %s is after the last append's position %s", head, last.Position)
		}
		return head.Compare(last.Position) == 0
	})
	all := readAllN(t, ctx, store, eventstore.Position{}, 10)
	if all[len(all)-1].Position.Compare(head) != 0 {
		t.Fatalf("Head %s, last ReadAll position %s", head, all[len(all)-1].Position)
	}
	if recs, err := store.ReadAll(ctx, head, 10); err != nil || len(recs) != 0 {
		t.Fatalf("ReadAll(Head) = %d events, %v; want none", len(recs), err)
	}
}

func testStreamVersion(t *testing.T, s *suite) {
	ctx, store := s.setup(t)
	if _, err := store.StreamVersion(ctx, "s"); !errors.Is(err, eventstore.ErrStreamNotFound) {
		t.Fatalf("StreamVersion of a new stream: error %v, want ErrStreamNotFound", err)
	}
	mustAppend(t, ctx, store, "s", eventstore.NoStream, numbered("E", 3)...)
	mustAppend(t, ctx, store, "t", eventstore.NoStream, numbered("E", 1)...)
	mustAppend(t, ctx, store, "s", eventstore.Exact(3), numbered("E", 2)...)
	if _, err := store.Append(ctx, "s", eventstore.Exact(3), numbered("E", 2)...); !errors.Is(err, eventstore.ErrConcurrencyConflict) {
		t.Fatalf("stale append: error %v, want a conflict", err)
	}
	if v, err := store.StreamVersion(ctx, "s"); err != nil || v != 5 {
		t.Fatalf("StreamVersion(s) = %d, %v; want 5", v, err)
	}
	if v, err := store.StreamVersion(ctx, "t"); err != nil || v != 1 {
		t.Fatalf("StreamVersion(t) = %d, %v; want 1", v, err)
	}
}

// testReadStreamPayloads checks [eventstore.PayloadReader] against
// ReadStream when the store has it, and [eventstore.ReadStreamPayloadsSeq]
// in any case: the same pages, with only the payload fields set.
func testReadStreamPayloads(t *testing.T, s *suite) {
	ctx, store := s.setup(t)
	events := numbered("P", 12)
	for i := range events {
		events[i].SchemaVersion = 1 + i%3
		events[i].Metadata = eventstore.Metadata{CorrelationID: fmt.Sprintf("c%d", i), Headers: map[string]string{"h": "v"}}
	}
	mustAppend(t, ctx, store, "s", eventstore.NoStream, events[:5]...)
	mustAppend(t, ctx, store, "noise", eventstore.NoStream, numbered("N", 2)...)
	mustAppend(t, ctx, store, "s", eventstore.Exact(5), events[5:]...)

	requirePayloads := func(what string, got, full []eventstore.Record) {
		t.Helper()
		if len(got) != len(full) {
			t.Fatalf("%s: %d records, ReadStream returned %d", what, len(got), len(full))
		}
		for i, r := range got {
			f := full[i]
			want := eventstore.Record{StreamID: f.StreamID, StreamVersion: f.StreamVersion, Type: f.Type, SchemaVersion: f.SchemaVersion, Data: r.Data}
			if !slices.Equal(r.Data, f.Data) {
				t.Fatalf("%s: v%d data %s, want %s", what, f.StreamVersion, r.Data, f.Data)
			}
			if !reflect.DeepEqual(r, want) {
				t.Fatalf("%s: v%d is %+v, want only the payload fields %+v", what, f.StreamVersion, r, want)
			}
		}
	}
	pr, direct := store.(eventstore.PayloadReader)
	for _, opts := range []eventstore.ReadStreamOptions{
		{},
		{From: 4},
		{From: 4, Limit: 3},
		{From: 13},
		{Direction: eventstore.Backward},
		{Direction: eventstore.Backward, From: 7, Limit: 2},
	} {
		full := mustReadStream(t, ctx, store, "s", opts)
		if direct {
			got, err := pr.ReadStreamPayloads(ctx, "s", opts)
			if err != nil {
				t.Fatalf("ReadStreamPayloads(%+v): %v", opts, err)
			}
			requirePayloads(fmt.Sprintf("ReadStreamPayloads(%+v)", opts), got, full)
		}
		for _, pageSize := range []int{1, 5, 1000} {
			var got []eventstore.Record
			for r, err := range eventstore.ReadStreamPayloadsSeq(ctx, store, "s", opts, pageSize) {
				if err != nil {
					t.Fatalf("ReadStreamPayloadsSeq(%+v, page %d): %v", opts, pageSize, err)
				}
				got = append(got, r)
			}
			what := fmt.Sprintf("ReadStreamPayloadsSeq(%+v, page %d)", opts, pageSize)
			if !direct {
				requireSameRecords(t, what, got, full)
				continue
			}
			requirePayloads(what, got, full)
		}
	}
	if !direct {
		return
	}
	if recs, err := pr.ReadStreamPayloads(ctx, "missing", eventstore.ReadStreamOptions{}); err != nil || len(recs) != 0 {
		t.Fatalf("ReadStreamPayloads of a missing stream = %d records, %v; want an empty page", len(recs), err)
	}
	for _, bad := range []struct {
		stream string
		opts   eventstore.ReadStreamOptions
	}{
		{"", eventstore.ReadStreamOptions{}},
		{"s\xff", eventstore.ReadStreamOptions{}},
		{"s", eventstore.ReadStreamOptions{Limit: -1}},
		{"s", eventstore.ReadStreamOptions{Direction: 7}},
	} {
		if _, err := pr.ReadStreamPayloads(ctx, bad.stream, bad.opts); !errors.Is(err, eventstore.ErrInvalidInput) {
			t.Fatalf("ReadStreamPayloads(%q, %+v) = %v, want ErrInvalidInput", bad.stream, bad.opts, err)
		}
	}
}

// requireSameRecords fails unless got and want hold equal records.
func requireSameRecords(t *testing.T, what string, got, want []eventstore.Record) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: %d records, want %d", what, len(got), len(want))
	}
	for i := range got {
		if !reflect.DeepEqual(got[i], want[i]) {
			t.Fatalf("%s: record %d is %+v, want %+v", what, i, got[i], want[i])
		}
	}
}

// testReadAllInto checks [eventstore.RecordReader] against ReadAll when
// the store has it: the same records, whatever the records it writes
// into held before, with next asked for increasing indexes below the
// limit and free to move the records it returned before; and the same
// invalid arguments.
func testReadAllInto(t *testing.T, s *suite) {
	ctx, store := s.setup(t)
	rr, ok := store.(eventstore.RecordReader)
	if !ok {
		t.Skipf("%T is not an eventstore.RecordReader", store)
	}
	events := numbered("R", 6)
	for i := range events {
		if i%2 == 0 {
			events[i].Metadata = eventstore.Metadata{CorrelationID: fmt.Sprintf("c%d", i)}
		}
		events[i].SchemaVersion = 1 + i%2
	}
	mustAppend(t, ctx, store, "s", eventstore.NoStream, events[:4]...)
	mustAppend(t, ctx, store, "t", eventstore.NoStream, events[4:]...)
	const total = 6
	all := readAllN(t, ctx, store, eventstore.Position{}, total)

	garbage := eventstore.Record{EventID: eventstore.NewEventID(), StreamID: "old", StreamVersion: 99, Type: "Old", SchemaVersion: 9,
		Data: []byte(`{"old":true}`), Metadata: eventstore.Metadata{CausationID: "old", Headers: map[string]string{"old": "1"}},
		Position: eventstore.Position{Transaction: 1, Global: 1}, RecordedAt: time.Unix(1, 0)}
	for _, after := range []int{-1, 0, 3} {
		var from eventstore.Position
		if after >= 0 {
			from = all[after].Position
		}
		for _, limit := range []int{1, 2, 5, 1000} {
			want, err := store.ReadAll(ctx, from, limit)
			if err != nil {
				t.Fatalf("ReadAll(%s, %d): %v", from, limit, err)
			}
			// A slice grown by one record per call, so that every call
			// moves the records returned before, each new one holding
			// another record's values.
			var got []eventstore.Record
			next := func(i int) *eventstore.Record {
				if i < 0 || i >= limit || i > len(got) {
					t.Fatalf("ReadAllInto(%s, %d): next(%d) after %d records", from, limit, i, len(got))
				}
				if i == len(got) {
					got = append(slices.Clone(got), garbage)
				}
				return &got[i]
			}
			n, err := rr.ReadAllInto(ctx, from, limit, next)
			if err != nil {
				t.Fatalf("ReadAllInto(%s, %d): %v", from, limit, err)
			}
			if n > len(got) {
				t.Fatalf("ReadAllInto(%s, %d) = %d records, but asked for %d", from, limit, n, len(got))
			}
			requireSameRecords(t, fmt.Sprintf("ReadAllInto(%s, %d)", from, limit), got[:n], want)
		}
	}
	for _, bad := range []struct {
		after eventstore.Position
		limit int
		next  func(int) *eventstore.Record
	}{
		{eventstore.Position{}, 0, func(int) *eventstore.Record { return new(eventstore.Record) }},
		{eventstore.Position{}, -1, func(int) *eventstore.Record { return new(eventstore.Record) }},
		{eventstore.Position{}, 10, nil},
	} {
		if _, err := rr.ReadAllInto(ctx, bad.after, bad.limit, bad.next); !errors.Is(err, eventstore.ErrInvalidInput) {
			t.Fatalf("ReadAllInto(%s, %d, next nil: %t) = %v, want ErrInvalidInput", bad.after, bad.limit, bad.next == nil, err)
		}
	}
	// A negative global position is refused exactly when ReadAll refuses it.
	neg := eventstore.Position{Global: -1}
	_, errAll := store.ReadAll(ctx, neg, 10)
	_, errInto := rr.ReadAllInto(ctx, neg, 10, func(int) *eventstore.Record { return new(eventstore.Record) })
	if errors.Is(errAll, eventstore.ErrInvalidInput) != errors.Is(errInto, eventstore.ErrInvalidInput) {
		t.Fatalf("after %s: ReadAll gave %v, ReadAllInto %v", neg, errAll, errInto)
	}
}
