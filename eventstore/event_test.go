package eventstore_test

import (
	"context"
	"errors"
	"testing"

	"github.com/chronicle-go/chronicle/eventstore"
)

func pos(tx uint64, global int64) eventstore.Position {
	return eventstore.Position{Transaction: tx, Global: global}
}

func TestParsePosition(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in   string
		want eventstore.Position
		ok   bool
	}{
		{"0/0", pos(0, 0), true},
		{"1/2", pos(1, 2), true},
		{"750123/9001", pos(750123, 9001), true},
		{"18446744073709551615/9223372036854775807", pos(1<<64-1, 1<<63-1), true},
		{"007/08", pos(7, 8), true},
		{"", pos(0, 0), false},
		{"1", pos(0, 0), false},
		{"1/", pos(0, 0), false},
		{"/1", pos(0, 0), false},
		{"1/2/3", pos(0, 0), false},
		{"-1/2", pos(0, 0), false},
		{"1/-2", pos(0, 0), false},
		{"a/b", pos(0, 0), false},
		{" 1/2", pos(0, 0), false},
		{"1/2 ", pos(0, 0), false},
		{"1:2", pos(0, 0), false},
		{"0x1/2", pos(0, 0), false},
		{"1_000/2", pos(0, 0), false},
		{"18446744073709551616/0", pos(0, 0), false},
		{"0/9223372036854775808", pos(0, 0), false},
	}
	for _, tt := range tests {
		got, err := eventstore.ParsePosition(tt.in)
		if !tt.ok {
			var ve *eventstore.ValidationError
			if !errors.As(err, &ve) || !errors.Is(err, eventstore.ErrInvalidInput) || ve.Field != "position" {
				t.Errorf("ParsePosition(%q) = %v, %v; want a ValidationError for field \"position\"", tt.in, got, err)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("ParsePosition(%q) = %v, %v; want %v", tt.in, got, err, tt.want)
			continue
		}
		again, err := eventstore.ParsePosition(got.String())
		if err != nil || again != got {
			t.Errorf("ParsePosition(%q) = %v, %v; want %v back", got.String(), again, err, got)
		}
	}
}

func TestPositionCompare(t *testing.T) {
	t.Parallel()
	tests := []struct {
		p, q eventstore.Position
		want int
	}{
		{pos(0, 0), pos(0, 0), 0},
		{pos(1, 5), pos(1, 5), 0},
		{pos(1, 5), pos(1, 6), -1},
		{pos(1, 6), pos(1, 5), 1},
		{pos(1, 100), pos(2, 1), -1}, // transaction first: a late commit with a low global sorts later
		{pos(2, 1), pos(1, 100), 1},
		{pos(0, 0), pos(0, 1), -1},
		{pos(1<<64-1, 0), pos(1<<63, 1<<62), 1}, // transaction compares unsigned
	}
	for _, tt := range tests {
		if got := tt.p.Compare(tt.q); got != tt.want {
			t.Errorf("%v.Compare(%v) = %d, want %d", tt.p, tt.q, got, tt.want)
		}
	}
	if !pos(0, 0).IsZero() || pos(0, 1).IsZero() || pos(1, 0).IsZero() {
		t.Error("IsZero is true only for the zero position")
	}
}

func TestExpectedVersion(t *testing.T) {
	t.Parallel()
	tests := []struct {
		e      eventstore.ExpectedVersion
		str    string
		valid  bool
		checks map[int64]bool // actual version -> satisfied
	}{
		{eventstore.Any, "any", true, map[int64]bool{0: true, 1: true, 9: true}},
		{eventstore.StreamExists, "stream exists", true, map[int64]bool{0: false, 1: true, 9: true}},
		{eventstore.NoStream, "no stream", true, map[int64]bool{0: true, 1: false}},
		{eventstore.Exact(0), "no stream", true, map[int64]bool{0: true, 1: false}},
		{eventstore.Exact(3), "3", true, map[int64]bool{0: false, 2: false, 3: true, 4: false}},
		{eventstore.ExpectedVersion(-3), "invalid(-3)", false, nil},
		{eventstore.ExpectedVersion(-1 << 40), "invalid(-1099511627776)", false, nil},
	}
	for _, tt := range tests {
		if got := tt.e.String(); got != tt.str {
			t.Errorf("ExpectedVersion(%d).String() = %q, want %q", int64(tt.e), got, tt.str)
		}
		if got := tt.e.Valid(); got != tt.valid {
			t.Errorf("ExpectedVersion(%d).Valid() = %v, want %v", int64(tt.e), got, tt.valid)
		}
		for actual, want := range tt.checks {
			if got := tt.e.Check(actual); got != want {
				t.Errorf("%s.Check(%d) = %v, want %v", tt.e, actual, got, want)
			}
		}
	}
}

func TestMetadataContext(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	if _, ok := eventstore.MetadataFromContext(ctx); ok {
		t.Fatal("MetadataFromContext found metadata in an empty context")
	}
	md := eventstore.Metadata{CorrelationID: "req-1", Headers: map[string]string{"tenant": "acme"}}
	got, ok := eventstore.MetadataFromContext(eventstore.WithMetadata(ctx, md))
	if !ok || got.CorrelationID != "req-1" || got.Headers["tenant"] != "acme" {
		t.Fatalf("MetadataFromContext = %+v, %v; want %+v", got, ok, md)
	}
	if md.IsZero() || !(eventstore.Metadata{}).IsZero() || !(eventstore.Metadata{Headers: map[string]string{}}).IsZero() {
		t.Fatal("Metadata.IsZero is true only without correlation, causation and headers")
	}
}

func TestErrorsMatchSentinels(t *testing.T) {
	t.Parallel()
	cause := errors.New("boom")
	tests := []struct {
		err      error
		sentinel error
		msg      string
	}{
		{&eventstore.ConcurrencyError{StreamID: "s", Expected: eventstore.Exact(2), Actual: 3}, eventstore.ErrConcurrencyConflict,
			`concurrency conflict on stream "s": expected version 2, actual 3`},
		{&eventstore.ConcurrencyError{StreamID: "s", Expected: eventstore.NoStream, Actual: -1}, eventstore.ErrConcurrencyConflict,
			`concurrency conflict on stream "s": expected version no stream, another writer appended first`},
		{&eventstore.ValidationError{Field: "f", Reason: "r"}, eventstore.ErrInvalidInput, "invalid f: r"},
		{&eventstore.EventTooLargeError{Index: 1, Size: 5, Limit: 4}, eventstore.ErrEventTooLarge, "event too large: events[1] is 5 bytes, limit is 4"},
		{&eventstore.UnknownEventTypeError{Type: "X"}, eventstore.ErrUnknownEventType, `unknown event type "X"`},
		{&eventstore.DuplicateEventError{StreamID: "s"}, eventstore.ErrDuplicateEvent,
			`duplicate event id 00000000-0000-0000-0000-000000000000 in append to stream "s": already stored with different content or position`},
		{&eventstore.DecodeError{Type: "X", SchemaVersion: 2, Err: cause}, eventstore.ErrDecode,
			`cannot decode event (type "X", schema version 2): boom`},
		// Read without its ID (eventstore.PayloadReader): no zero ID.
		{&eventstore.DecodeError{StreamID: "s", StreamVersion: 7, Type: "X", SchemaVersion: 2, Err: cause}, eventstore.ErrDecode,
			`cannot decode event at version 7 of stream "s" (type "X", schema version 2): boom`},
		{&eventstore.DecodeError{StreamID: "s", StreamVersion: 7, Type: "X", SchemaVersion: 2, EventID: eventstore.EventID{15: 1}, Err: cause}, eventstore.ErrDecode,
			`cannot decode event at version 7 of stream "s" (id 00000000-0000-0000-0000-000000000001, type "X", schema version 2): boom`},
	}
	sentinels := []error{eventstore.ErrConcurrencyConflict, eventstore.ErrStreamNotFound, eventstore.ErrInvalidInput,
		eventstore.ErrEventTooLarge, eventstore.ErrUnknownEventType, eventstore.ErrDuplicateEvent, eventstore.ErrDecode}
	for _, tt := range tests {
		if tt.err.Error() != tt.msg {
			t.Errorf("Error() = %q, want %q", tt.err.Error(), tt.msg)
		}
		for _, s := range sentinels {
			want := s == tt.sentinel || (s == eventstore.ErrInvalidInput && tt.sentinel == eventstore.ErrEventTooLarge)
			if got := errors.Is(tt.err, s); got != want {
				t.Errorf("errors.Is(%T, %v) = %v, want %v", tt.err, s, got, want)
			}
		}
	}
	if !errors.Is(&eventstore.DecodeError{Err: cause}, cause) {
		t.Error("DecodeError does not unwrap to its cause")
	}
}
