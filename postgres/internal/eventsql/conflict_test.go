package eventsql

import (
	"errors"
	"testing"

	"github.com/chronicle-go/chronicle/eventstore"
)

func TestDecideConflict(t *testing.T) {
	t.Parallel()
	ids := [3]eventstore.EventID{eventstore.NewEventID(), eventstore.NewEventID(), eventstore.NewEventID()}
	ev := func(i int) eventstore.Event {
		return eventstore.Event{ID: ids[i], Type: "E", Data: []byte(`{}`)}
	}
	pos := func(g int64) eventstore.Position { return eventstore.Position{Transaction: 7, Global: g} }
	at := func(stream string, v int64) StoredEvent {
		return StoredEvent{Found: true, StreamID: stream, Version: v, Type: "E", SchemaVersion: 1, SameData: true, Position: pos(v)}
	}
	none := StoredEvent{}
	tests := []struct {
		name     string
		expected eventstore.ExpectedVersion
		stored   []StoredEvent
		current  int64
		want     string // "ok", "retry", "conflict", "transaction conflict", "duplicate"
		wantVer  int64
		// unordered: the stream's last event fails the order check.
		unordered bool
	}{
		{"nothing stored, exact holds: lost race", eventstore.Exact(3), []StoredEvent{none, none}, 3, "retry", 0, false},
		{"nothing stored, exact fails", eventstore.Exact(3), []StoredEvent{none, none}, 5, "conflict", 0, false},
		{"nothing stored, any: lost race", eventstore.Any, []StoredEvent{none, none}, 5, "retry", 0, false},
		{"nothing stored, stream exists fails", eventstore.StreamExists, []StoredEvent{none, none}, 0, "conflict", 0, false},
		{"retry at the expected versions", eventstore.Exact(3), []StoredEvent{at("s", 4), at("s", 5)}, 9, "ok", 5, false},
		{"retry of no stream", eventstore.NoStream, []StoredEvent{at("s", 1), at("s", 2)}, 2, "ok", 2, false},
		{"stored at other versions than exact implies", eventstore.Exact(2), []StoredEvent{at("s", 4), at("s", 5)}, 5, "duplicate", 0, false},
		{"any: anywhere consecutive", eventstore.Any, []StoredEvent{at("s", 7), at("s", 8)}, 9, "ok", 8, false},
		{"stream exists: anywhere, even from version 1", eventstore.StreamExists, []StoredEvent{at("s", 1), at("s", 2)}, 9, "ok", 2, false},
		{"stream exists: later", eventstore.StreamExists, []StoredEvent{at("s", 2), at("s", 3)}, 9, "ok", 3, false},
		{"not consecutive", eventstore.Any, []StoredEvent{at("s", 7), at("s", 9)}, 9, "duplicate", 0, false},
		{"other stream", eventstore.Any, []StoredEvent{at("t", 1), at("t", 2)}, 0, "duplicate", 0, false},
		{"partly stored", eventstore.Any, []StoredEvent{none, at("s", 2)}, 2, "duplicate", 0, false},
		{"other data", eventstore.Any, []StoredEvent{at("s", 1), func() StoredEvent { e := at("s", 2); e.SameData = false; return e }()}, 2, "duplicate", 0, false},
		{"other type", eventstore.Any, []StoredEvent{at("s", 1), func() StoredEvent { e := at("s", 2); e.Type = "F"; return e }()}, 2, "duplicate", 0, false},
		{"other schema version", eventstore.Any, []StoredEvent{at("s", 1), func() StoredEvent { e := at("s", 2); e.SchemaVersion = 2; return e }()}, 2, "duplicate", 0, false},
		{"nothing stored, exact holds, last event ordered after this tx", eventstore.Exact(3), []StoredEvent{none, none}, 3, "transaction conflict", 0, true},
		{"nothing stored, any, last event ordered after this tx", eventstore.Any, []StoredEvent{none, none}, 5, "transaction conflict", 0, true},
		{"nothing stored, exact fails and unordered", eventstore.Exact(2), []StoredEvent{none, none}, 5, "conflict", 0, true},
		{"retry of an append that is stored, unordered", eventstore.Exact(3), []StoredEvent{at("s", 4), at("s", 5)}, 5, "ok", 5, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			in, err := Flatten([]eventstore.StreamAppend{{StreamID: "s", Expected: tt.expected, Events: []eventstore.Event{ev(0), ev(1)}}})
			if err != nil {
				t.Fatal(err)
			}
			res, retry, err := Decide(in, tt.stored, []int64{tt.current}, []bool{!tt.unordered})
			var got string
			switch {
			case errors.Is(err, eventstore.ErrTransactionConflict):
				got = "transaction conflict"
			case errors.Is(err, eventstore.ErrConcurrencyConflict):
				got = "conflict"
				var ce *eventstore.ConcurrencyError
				if errors.As(err, &ce); ce.Actual != tt.current {
					t.Fatalf("conflict with actual %d, want %d", ce.Actual, tt.current)
				}
			case errors.Is(err, eventstore.ErrDuplicateEvent):
				got = "duplicate"
			case err != nil:
				t.Fatalf("unexpected error %v", err)
			case retry:
				got = "retry"
			default:
				got = "ok"
				if res[0].Version != tt.wantVer || res[0].Position != pos(tt.wantVer) || res[0].StreamID != "s" {
					t.Fatalf("result %+v, want version %d", res[0], tt.wantVer)
				}
			}
			if got != tt.want {
				t.Fatalf("got %s (%v), want %s", got, err, tt.want)
			}
		})
	}
}
