package eventstore_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/chronicle-go/chronicle/eventstore"
)

func TestValidateStreamID(t *testing.T) {
	t.Parallel()
	tests := []struct {
		id    string
		valid bool
	}{
		{"a", true},
		{"account-42", true},
		{"it's; DROP TABLE x; --", true},
		{`back\slash "quoted"`, true},
		{"日本語 🎉", true},
		{"with space", true},
		{"nbsp\u00a0and\u2028separator", true}, // not ASCII control characters
		{strings.Repeat("x", eventstore.MaxStreamIDLength), true},
		{strings.Repeat("日", eventstore.MaxStreamIDLength/3), true},
		{"", false},
		{strings.Repeat("x", eventstore.MaxStreamIDLength+1), false},
		{strings.Repeat("日", eventstore.MaxStreamIDLength/3) + "x", false},
		{"bad\xffutf8", false},
		{"truncated\xe6\x97", false},
		{"nul\x00", false},
		{"new\nline", false},
		{"tab\t", false},
		{"\x1b[31m", false},
		{"del\x7f", false},
		{"\u0080c1-control", false}, // C1 controls, U+0080 to U+009F
		{"c1\u009f", false},
		{"latin1\u00a0\u00ff", true}, // just above C1
	}
	for _, tt := range tests {
		err := eventstore.ValidateStreamID(tt.id)
		if tt.valid {
			if err != nil {
				t.Errorf("ValidateStreamID(%q) = %v, want nil", tt.id, err)
			}
			continue
		}
		var ve *eventstore.ValidationError
		if !errors.Is(err, eventstore.ErrInvalidInput) || !errors.As(err, &ve) || ve.Field != "stream id" {
			t.Errorf("ValidateStreamID(%q) = %v, want a ValidationError for field \"stream id\"", tt.id, err)
		}
	}
}

func TestValidateAppend(t *testing.T) {
	t.Parallel()
	id := eventstore.NewEventID()
	ev := func(typ, data string) eventstore.Event { return eventstore.Event{Type: typ, Data: []byte(data)} }
	one := func(e eventstore.Event) []eventstore.Event { return []eventstore.Event{e} }
	ok := ev("E", `{}`)
	withMD := func(md eventstore.Metadata) []eventstore.Event {
		e := ok
		e.Metadata = md
		return one(e)
	}
	many := func(n int, dupAt int) []eventstore.Event {
		events := make([]eventstore.Event, n)
		for i := range events {
			events[i] = ok
			events[i].ID = eventstore.NewEventID()
		}
		if dupAt > 0 {
			events[dupAt].ID = events[0].ID
		}
		return events
	}
	tests := []struct {
		name      string
		stream    string
		expected  eventstore.ExpectedVersion
		events    []eventstore.Event
		max       int
		wantField string // "" means valid
		tooLarge  *eventstore.EventTooLargeError
	}{
		{name: "ok", stream: "s", expected: eventstore.Any, events: one(ok)},
		{name: "exact version", stream: "s", expected: eventstore.Exact(7), events: one(ok)},
		{name: "stream exists", stream: "s", expected: eventstore.StreamExists, events: one(ok)},
		{name: "no stream", stream: "s", expected: eventstore.NoStream, events: one(ok)},
		{name: "schema version 0 (defaults to 1)", stream: "s", expected: eventstore.Any, events: one(eventstore.Event{Type: "E", Data: []byte(`1`)})},
		{name: "json scalars", stream: "s", expected: eventstore.Any, events: []eventstore.Event{ev("E", `null`), ev("E", `"x"`), ev("E", `-1.5e3`), ev("E", " [ ] ")}},
		{name: `escaped backslash before u0000`, stream: "s", expected: eventstore.Any, events: one(ev("E", `{"a":"\\u0000"}`))},
		{name: `three backslashes before u0041`, stream: "s", expected: eventstore.Any, events: one(ev("E", `"\\\u0041"`))},
		{name: "surrogate pair", stream: "s", expected: eventstore.Any, events: one(ev("E", `"\ud83d\ude00"`))},
		{name: "upper-case surrogate pair", stream: "s", expected: eventstore.Any, events: one(ev("E", `"\uD83D\uDE00"`))},
		{name: "non-surrogate escapes", stream: "s", expected: eventstore.Any, events: one(ev("E", `"\u00e9\u20ac\uffff\ue000\ud7ff"`))},
		{name: "numbers at jsonb's limits", stream: "s", expected: eventstore.Any, events: []eventstore.Event{
			ev("E", `1e131071`), ev("E", `9.9e131071`), ev("E", `-123456789e131063`), ev("E", `0.00001e131076`), ev("E", `1e-16383`),
			ev("E", `1.0e-16382`), ev("E", `0e200000`), ev("E", `0e1073741822`), ev("E", `"1e200000 in a string"`), ev("E", `{"1e200000":[1E5,-0]}`),
			ev("E", `0.`+strings.Repeat("1", 16383)), ev("E", `1`+strings.Repeat("0", 131071)),
		}},
		{name: "zero ids repeat", stream: "s", expected: eventstore.Any, events: []eventstore.Event{ok, ok, ok}},
		{name: "40 distinct ids", stream: "s", expected: eventstore.Any, events: many(40, 0)},
		{name: "no size limit", stream: "s", expected: eventstore.Any, events: one(ev("E", `"`+strings.Repeat("x", 2<<20)+`"`)), max: 0},
		{name: "at the size limit", stream: "s", expected: eventstore.Any, events: one(ev("E", `"xxxxxxxx"`)), max: 10},
		{name: "metadata", stream: "s", expected: eventstore.Any, events: withMD(eventstore.Metadata{CorrelationID: "c", CausationID: "d", Headers: map[string]string{"k": "v\n\t", "": ""}})},

		{name: "empty stream id", stream: "", expected: eventstore.Any, events: one(ok), wantField: "stream id"},
		{name: "invalid stream id", stream: "a\x00", expected: eventstore.Any, events: one(ok), wantField: "stream id"},
		{name: "expected version -3", stream: "s", expected: eventstore.ExpectedVersion(-3), events: one(ok), wantField: "expected version"},
		{name: "no events", stream: "s", expected: eventstore.Any, wantField: "events"},
		{name: "empty type", stream: "s", expected: eventstore.Any, events: one(ev("", `{}`)), wantField: "events[0].type"},
		{name: "type with control character", stream: "s", expected: eventstore.Any, events: []eventstore.Event{ok, ev("A\x01", `{}`)}, wantField: "events[1].type"},
		{name: "type too long", stream: "s", expected: eventstore.Any, events: one(ev(strings.Repeat("T", 256), `{}`)), wantField: "events[0].type"},
		{name: "type invalid utf-8", stream: "s", expected: eventstore.Any, events: one(ev("T\xff", `{}`)), wantField: "events[0].type"},
		{name: "negative schema version", stream: "s", expected: eventstore.Any, events: one(eventstore.Event{Type: "E", SchemaVersion: -1, Data: []byte(`{}`)}), wantField: "events[0].schema version"},
		{name: "nil data", stream: "s", expected: eventstore.Any, events: one(eventstore.Event{Type: "E"}), wantField: "events[0].data"},
		{name: "invalid json", stream: "s", expected: eventstore.Any, events: one(ev("E", `{"a":}`)), wantField: "events[0].data"},
		{name: "two json values", stream: "s", expected: eventstore.Any, events: one(ev("E", `{} {}`)), wantField: "events[0].data"},
		{name: "NUL escape", stream: "s", expected: eventstore.Any, events: one(ev("E", `{"a":"\u0000"}`)), wantField: "events[0].data"},
		{name: "NUL escape after escaped backslash", stream: "s", expected: eventstore.Any, events: one(ev("E", `"\\\u0000"`)), wantField: "events[0].data"},
		{name: "NUL escape in a key", stream: "s", expected: eventstore.Any, events: one(ev("E", `{"\u0000":1}`)), wantField: "events[0].data"},
		{name: "invalid utf-8 in a string", stream: "s", expected: eventstore.Any, events: one(ev("E", "\"\xc3\x28\"")), wantField: "events[0].data"},
		{name: "lone high surrogate", stream: "s", expected: eventstore.Any, events: one(ev("E", `"\ud800"`)), wantField: "events[0].data"},
		{name: "high surrogate then text", stream: "s", expected: eventstore.Any, events: one(ev("E", `"\ud800abcdef"`)), wantField: "events[0].data"},
		{name: "high surrogate then non-surrogate escape", stream: "s", expected: eventstore.Any, events: one(ev("E", `"\ud800\u0041"`)), wantField: "events[0].data"},
		{name: "two high surrogates", stream: "s", expected: eventstore.Any, events: one(ev("E", `"\ud800\ud800"`)), wantField: "events[0].data"},
		{name: "lone low surrogate", stream: "s", expected: eventstore.Any, events: one(ev("E", `["\uDC00"]`)), wantField: "events[0].data"},
		{name: "high surrogate at the end of a key", stream: "s", expected: eventstore.Any, events: one(ev("E", `{"\ud83d":1}`)), wantField: "events[0].data"},
		{name: "number too large for jsonb", stream: "s", expected: eventstore.Any, events: one(ev("E", `1e200000`)), wantField: "events[0].data"},
		{name: "number just too large for jsonb", stream: "s", expected: eventstore.Any, events: []eventstore.Event{ok, ev("E", `[1, 1e131072]`)}, wantField: "events[1].data"},
		{name: "negative number too large for jsonb", stream: "s", expected: eventstore.Any, events: one(ev("E", `{"a":-1E+131072}`)), wantField: "events[0].data"},
		{name: "shifted mantissa too large for jsonb", stream: "s", expected: eventstore.Any, events: one(ev("E", `123456789e131064`)), wantField: "events[0].data"},
		{name: "long integer too large for jsonb", stream: "s", expected: eventstore.Any, events: one(ev("E", `1`+strings.Repeat("0", 131072))), wantField: "events[0].data"},
		{name: "too many decimals for jsonb", stream: "s", expected: eventstore.Any, events: one(ev("E", `1e-16384`)), wantField: "events[0].data"},
		{name: "trailing zeros count as decimals", stream: "s", expected: eventstore.Any, events: one(ev("E", `1.50e-16382`)), wantField: "events[0].data"},
		{name: "zero with too many decimals", stream: "s", expected: eventstore.Any, events: one(ev("E", `0e-16384`)), wantField: "events[0].data"},
		{name: "long fraction for jsonb", stream: "s", expected: eventstore.Any, events: one(ev("E", `0.`+strings.Repeat("1", 16384))), wantField: "events[0].data"},
		{name: "exponent overflow on zero", stream: "s", expected: eventstore.Any, events: one(ev("E", `0e1073741823`)), wantField: "events[0].data"},
		{name: "huge exponent", stream: "s", expected: eventstore.Any, events: one(ev("E", `1e99999999999999999999`)), wantField: "events[0].data"},
		{name: "correlation id invalid utf-8", stream: "s", expected: eventstore.Any, events: withMD(eventstore.Metadata{CorrelationID: "\xff"}), wantField: "events[0].metadata"},
		{name: "causation id with NUL", stream: "s", expected: eventstore.Any, events: withMD(eventstore.Metadata{CausationID: "a\x00"}), wantField: "events[0].metadata"},
		{name: "header key with NUL", stream: "s", expected: eventstore.Any, events: withMD(eventstore.Metadata{Headers: map[string]string{"\x00": "v"}}), wantField: "events[0].metadata"},
		{name: "header value invalid utf-8", stream: "s", expected: eventstore.Any, events: withMD(eventstore.Metadata{Headers: map[string]string{"k": "\xff"}}), wantField: "events[0].metadata"},
		{name: "duplicate id", stream: "s", expected: eventstore.Any, events: []eventstore.Event{{ID: id, Type: "E", Data: []byte(`1`)}, ok, {ID: id, Type: "E", Data: []byte(`2`)}}, wantField: "events[2].id"},
		{name: "duplicate id in a long append", stream: "s", expected: eventstore.Any, events: many(40, 39), wantField: "events[39].id"},
		{name: "duplicate id in a short append", stream: "s", expected: eventstore.Any, events: many(5, 1), wantField: "events[1].id"},

		{name: "one byte over the size limit", stream: "s", expected: eventstore.Any, events: []eventstore.Event{ok, ev("E", `"xxxxxxxxx"`)}, max: 10,
			tooLarge: &eventstore.EventTooLargeError{Index: 1, Size: 11, Limit: 10}},
		{name: "metadata counts toward the size", stream: "s", expected: eventstore.Any, events: withMD(eventstore.Metadata{CorrelationID: "cc", CausationID: "dd", Headers: map[string]string{"k": "vvv"}}), max: 9,
			tooLarge: &eventstore.EventTooLargeError{Index: 0, Size: 10, Limit: 9}},
	}
	for _, tt := range tests {
		err := eventstore.ValidateAppend(tt.stream, tt.expected, tt.events, tt.max)
		switch {
		case tt.tooLarge != nil:
			var te *eventstore.EventTooLargeError
			if !errors.As(err, &te) || *te != *tt.tooLarge || !errors.Is(err, eventstore.ErrEventTooLarge) || !errors.Is(err, eventstore.ErrInvalidInput) {
				t.Errorf("%s: error %v, want %v", tt.name, err, tt.tooLarge)
			}
		case tt.wantField == "":
			if err != nil {
				t.Errorf("%s: error %v, want nil", tt.name, err)
			}
		default:
			var ve *eventstore.ValidationError
			if !errors.Is(err, eventstore.ErrInvalidInput) || !errors.As(err, &ve) || ve.Field != tt.wantField {
				t.Errorf("%s: error %v, want a ValidationError for field %q", tt.name, err, tt.wantField)
			}
		}
	}
}

func TestValidationErrorMessage(t *testing.T) {
	t.Parallel()
	err := eventstore.ValidateAppend("", eventstore.Any, nil, 0)
	if got, want := err.Error(), "invalid stream id: must not be empty"; got != want {
		t.Errorf("Error() = %q, want %q", got, want)
	}
	err = eventstore.ValidateAppend("s", eventstore.Any, []eventstore.Event{{Type: "E", Data: []byte(`"xx"`)}}, 3)
	if got, want := err.Error(), "event too large: events[0] is 4 bytes, limit is 3"; got != want {
		t.Errorf("Error() = %q, want %q", got, want)
	}
}
