package storetest

import (
	"context"
	"encoding/json"
	"errors"
	"math/big"
	"strings"
	"testing"
	"time"

	"github.com/chronicle-go/chronicle/eventstore"
)

func testMetadata(t *testing.T, s *suite) {
	ctx, store := s.setup(t)
	events := []eventstore.Event{
		{ID: eventstore.NewEventID(), Type: "Full", Data: []byte(`{}`), Metadata: eventstore.Metadata{
			CorrelationID: "req-42",
			CausationID:   "cmd-7",
			Headers: map[string]string{
				"tenant":     "acme",
				"user":       `ada "the first"`,
				"ünïcödé":    "✓ 日本",
				"empty":      "",
				"quote'key":  "semi;colon \\ backslash",
				"json-ish":   `{"not":"parsed"}`,
				"whitespace": " \t\n ",
			},
		}},
		{ID: eventstore.NewEventID(), Type: "Bare", Data: []byte(`{}`)},
		{ID: eventstore.NewEventID(), Type: "EmptyHeaders", Data: []byte(`{}`), Metadata: eventstore.Metadata{Headers: map[string]string{}}},
		{ID: eventstore.NewEventID(), Type: "CausationOnly", Data: []byte(`{}`), Metadata: eventstore.Metadata{CausationID: "evt-1"}},
	}
	before := time.Now()
	mustAppend(t, ctx, store, "s", eventstore.NoStream, events...)
	after := time.Now()
	recs := requireStream(t, ctx, store, "s", events)
	all := readAllN(t, ctx, store, eventstore.Position{}, len(events))
	for i := range events {
		requireEvent(t, all[i], events[i])
	}
	if !recs[1].Metadata.IsZero() || !recs[2].Metadata.IsZero() {
		t.Fatalf("events without metadata read back with %+v and %+v", recs[1].Metadata, recs[2].Metadata)
	}
	// The clocks of the test and the store may differ a little.
	const slack = time.Minute
	for _, r := range append(recs, all...) {
		if r.RecordedAt.Location() != time.UTC {
			t.Fatalf("v%d: RecordedAt %s is in %s, want UTC", r.StreamVersion, r.RecordedAt, r.RecordedAt.Location())
		}
		if r.RecordedAt.Before(before.Add(-slack)) || r.RecordedAt.After(after.Add(slack)) {
			t.Fatalf("v%d: RecordedAt %s is not around the append (%s to %s)", r.StreamVersion, r.RecordedAt, before.UTC(), after.UTC())
		}
	}
}

func testPayloadRoundTrip(t *testing.T, s *suite) {
	ctx, store := s.setup(t)
	payloads := []string{
		`{}`,
		`[]`,
		`42`,
		`-1.5e3`,
		`"text"`,
		`null`,
		`true`,
		" \n{\"spaced\" : [1, 2 ,3]}\t ",
		`{"nested":{"a":[{"b":null},{"c":[[]]}]}}`,
		`{"a":1,"b":"two","c":[3.25,false]}`,
		`"\\u0000 is plain text here"`,
		`"escapes: \" \\ \/ \b \f \n \r \t \u00e9 \ud83d\ude00"`,
		`"日本語 ✓ emoji 🎉"`,
		`{"big":12345678901234567890,"small":1e-300}`,
		`{"deep":` + strings.Repeat("[", 100) + strings.Repeat("]", 100) + `}`,
	}
	events := make([]eventstore.Event, len(payloads))
	for i, p := range payloads {
		events[i] = newEvent("Payload", p)
		events[i].SchemaVersion = i // 0 and 1 both read back as 1
	}
	mustAppend(t, ctx, store, "s", eventstore.NoStream, events...)
	requireStream(t, ctx, store, "s", events)

	// Numbers at the edges of what PostgreSQL's jsonb (numeric) stores are
	// accepted by every store and read back with the same value.
	limits := []string{
		`1e131071`, `-9.9e131071`, `0.00001e131076`, `1e-16383`, `1.0e-16382`,
		`0e200000`, `0e1073741822`, `0.00000000000000000000000000000000000000000000000007`,
	}
	for _, n := range limits {
		mustAppend(t, ctx, store, "limits", eventstore.Any, newEvent("Number", n))
	}
	recs := readStream(t, ctx, store, "limits")
	if len(recs) != len(limits) {
		t.Fatalf("stream limits has %d events, want %d", len(recs), len(limits))
	}
	for i, r := range recs {
		got, ok1 := new(big.Rat).SetString(strings.TrimSpace(string(r.Data)))
		want, ok2 := new(big.Rat).SetString(limits[i])
		if !ok1 || !ok2 || got.Cmp(want) != 0 {
			t.Fatalf("number %.40s read back as %.40s", limits[i], r.Data)
		}
	}
}

func testStreamIDs(t *testing.T, s *suite) {
	ctx, store := s.setup(t)
	ids := []string{
		"it's", `say "hi"`, "semi;colon", `back\slash`, `\\`, `\x00`,
		"'; DROP TABLE chronicle.events; --",
		"Robert'); DROP TABLE students;--",
		"1' OR '1'='1", "$1", "?", "%", "a%", "_", "a_c", "abc", "*", "[a-z]",
		"日本語-ストリーム", "emoji-🎉", "é", "e\u0301", // precomposed and decomposed: different streams
		"Account-1", "account-1", "acc ", "acc", " acc", "NULL", "null",
		"nbsp\u00a0x", "line\u2028separator", "bidi\u202eoverride", "\ufeffbom",
		strings.Repeat("x", eventstore.MaxStreamIDLength),
		strings.Repeat("日", eventstore.MaxStreamIDLength/3),         // 255 bytes
		strings.Repeat("🎉", eventstore.MaxStreamIDLength/4) + "abc", // 255 bytes
	}
	for _, id := range ids {
		data, _ := json.Marshal(map[string]string{"stream": id})
		mustAppend(t, ctx, store, id, eventstore.NoStream, eventstore.Event{ID: eventstore.NewEventID(), Type: "Named", Data: data})
	}
	for _, id := range ids {
		recs := readStream(t, ctx, store, id)
		if len(recs) != 1 || recs[0].StreamID != id {
			t.Fatalf("ReadStream(%q) = %d events, want its 1 event", id, len(recs))
		}
		var p struct{ Stream string }
		if err := json.Unmarshal(recs[0].Data, &p); err != nil || p.Stream != id {
			t.Fatalf("ReadStream(%q) returned the event of stream %q", id, p.Stream)
		}
		if v, err := store.StreamVersion(ctx, id); err != nil || v != 1 {
			t.Fatalf("StreamVersion(%q) = %d, %v; want 1", id, v, err)
		}
	}
	all := readAllN(t, ctx, store, eventstore.Position{}, len(ids))
	for i, r := range all {
		if r.StreamID != ids[i] {
			t.Fatalf("ReadAll event %d has stream %q, want %q", i, r.StreamID, ids[i])
		}
	}
	for _, missing := range []string{"a", "ab", "%%", "abc ", "ACCOUNT-1", "日本語"} {
		if recs := readStream(t, ctx, store, missing); len(recs) != 0 {
			t.Fatalf("ReadStream(%q) = %d events of stream %q, want none", missing, len(recs), recs[0].StreamID)
		}
	}
}

type badAppend struct {
	name     string
	stream   string
	expected eventstore.ExpectedVersion
	events   []eventstore.Event
}

func badAppends() []badAppend {
	ok := func() eventstore.Event { return newEvent("E", `{}`) }
	with := func(f func(e *eventstore.Event)) []eventstore.Event {
		e := ok()
		f(&e)
		return []eventstore.Event{e}
	}
	data := func(d string) []eventstore.Event { return with(func(e *eventstore.Event) { e.Data = []byte(d) }) }
	typ := func(tp string) []eventstore.Event { return with(func(e *eventstore.Event) { e.Type = tp }) }
	md := func(m eventstore.Metadata) []eventstore.Event {
		return with(func(e *eventstore.Event) { e.Metadata = m })
	}
	stream := func(name, id string) badAppend {
		return badAppend{name: name, stream: id, expected: eventstore.Any, events: []eventstore.Event{ok()}}
	}
	event := func(name string, events []eventstore.Event) badAppend {
		return badAppend{name: name, stream: "target", expected: eventstore.Any, events: events}
	}
	dup := ok()
	return []badAppend{
		stream("empty stream id", ""),
		stream("stream id over the length limit", strings.Repeat("x", eventstore.MaxStreamIDLength+1)),
		stream("multibyte stream id over the length limit", strings.Repeat("é", eventstore.MaxStreamIDLength/2+1)),
		stream("stream id with invalid utf-8", "acc\xff-1"),
		stream("stream id with truncated utf-8", "acc-\xe6\x97"),
		stream("stream id with NUL", "acc\x00-1"),
		stream("stream id with newline", "acc\n1"),
		stream("stream id with tab", "acc\t1"),
		stream("stream id with escape sequence", "\x1b[31macc"),
		stream("stream id with DEL", "acc\x7f"),
		stream("stream id with C1 control U+0080", "acc\u0080"),
		stream("stream id with C1 control U+009B (CSI)", "\u009b31macc"),
		stream("stream id with C1 control U+009F", "acc-\u009f-1"),
		event("event type with C1 control", typ("Deposit\u0085")),
		event("empty event type", typ("")),
		event("event type with invalid utf-8", typ("Dep\xffosit")),
		event("event type with newline", typ("Deposit\n")),
		event("event type with NUL", typ("Dep\x00osit")),
		event("event type over the length limit", typ(strings.Repeat("T", eventstore.MaxTypeNameLength+1))),
		event("nil payload", data("")),
		event("empty payload", with(func(e *eventstore.Event) { e.Data = []byte{} })),
		event("whitespace payload", data("  \n")),
		event("truncated json", data(`{"a":`)),
		event("single-quoted json", data(`{'a':1}`)),
		event("trailing garbage", data(`{"a":1} x`)),
		event("two json values", data(`1 2`)),
		event("bare word", data(`hello`)),
		event("NaN", data(`NaN`)),
		event(`\u0000 in a string`, data(`{"a":"x\u0000y"}`)),
		event(`\u0000 in a key`, data(`{"\u0000":1}`)),
		event(`\u0000 alone`, data(`"\u0000"`)),
		event("invalid utf-8 in payload", data("\"\xff\"")),
		event("lone high surrogate escape", data(`"\ud800"`)),
		event("lone low surrogate escape", data(`"x\udc00"`)),
		event("reversed surrogate escapes", data(`"\udc00\ud800"`)),
		event("number above jsonb's numeric range", data(`{"amount":1e200000}`)),
		event("number just above jsonb's numeric range", data(`[1e131072]`)),
		event("negative number above jsonb's numeric range", data(`-9.99E+131072`)),
		event("integer with too many digits for jsonb", data(`1`+strings.Repeat("0", 131072))),
		event("number with too many decimals for jsonb", data(`1e-16384`)),
		event("trailing zeros beyond jsonb's decimals", data(`1.50e-16382`)),
		event("zero with too many decimals for jsonb", data(`0e-16384`)),
		event("exponent beyond jsonb's numeric input", data(`0e1073741823`)),
		// PostgreSQL's limit depends on max_stack_depth (the default
		// accepts 10001 levels); the shared validation refuses what Go's
		// encoding/json cannot parse, so every store refuses the same.
		event("nesting deeper than 10000", data(strings.Repeat("[", 10001)+strings.Repeat("]", 10001))),
		event("negative schema version", with(func(e *eventstore.Event) { e.SchemaVersion = -1 })),
		event("schema version above 32 bits", with(func(e *eventstore.Event) { e.SchemaVersion = 1<<32 + 1 })),
		event("schema version 2^31", with(func(e *eventstore.Event) { e.SchemaVersion = 1 << 31 })),
		{name: "expected version -3", stream: "target", expected: eventstore.ExpectedVersion(-3), events: []eventstore.Event{ok()}},
		{name: "expected version -1000", stream: "target", expected: eventstore.ExpectedVersion(-1000), events: []eventstore.Event{ok()}},
		{name: "no events", stream: "target", expected: eventstore.Any},
		{name: "empty events", stream: "target", expected: eventstore.Any, events: []eventstore.Event{}},
		event("correlation id with invalid utf-8", md(eventstore.Metadata{CorrelationID: "req-\xff"})),
		event("causation id with NUL", md(eventstore.Metadata{CausationID: "cmd\x00"})),
		event("header key with NUL", md(eventstore.Metadata{Headers: map[string]string{"k\x00": "v"}})),
		event("header value with invalid utf-8", md(eventstore.Metadata{Headers: map[string]string{"k": "\xc3"}})),
		event("valid event then invalid one", []eventstore.Event{ok(), {Type: "E", Data: []byte(`{`)}}),
		event("one event id twice", []eventstore.Event{dup, ok(), dup}),
	}
}

// testInvalidInput sends every kind of bad append, through Append and
// AppendStreams: each fails with a typed validation error and stores
// nothing.
func testInvalidInput(t *testing.T, s *suite) {
	ctx, store := s.setup(t)
	for _, tt := range badAppends() {
		_, err := store.Append(ctx, tt.stream, tt.expected, tt.events...)
		requireInvalid(t, "Append: "+tt.name, err)
		_, err = store.AppendStreams(ctx,
			eventstore.StreamAppend{StreamID: "bystander", Expected: eventstore.Any, Events: []eventstore.Event{newEvent("E", `{}`)}},
			eventstore.StreamAppend{StreamID: tt.stream, Expected: tt.expected, Events: tt.events},
		)
		requireInvalid(t, "AppendStreams: "+tt.name, err)
	}
	requireVersion(t, ctx, store, "target", 0)
	requireVersion(t, ctx, store, "bystander", 0)
	// Nothing was stored anywhere: after one good append, ReadAll holds
	// just that event.
	sentinel := newEvent("Sentinel", `{}`)
	mustAppend(t, ctx, store, "sentinel", eventstore.NoStream, sentinel)
	all := readAllN(t, ctx, store, eventstore.Position{}, 1)
	requireEvent(t, all[0], sentinel)
}

func testEventTooLarge(t *testing.T, s *suite) {
	if s.maxEventSize < 0 {
		t.Skip("the store has no event size limit")
	}
	ctx, store := s.setup(t)
	limit := s.maxEventSize
	jsonString := func(size int) []byte { // a JSON string of exactly size bytes
		return []byte(`"` + strings.Repeat("x", size-2) + `"`)
	}
	requireTooLarge := func(what string, err error, index, size int) {
		t.Helper()
		requireInvalid(t, what, err)
		if !errors.Is(err, eventstore.ErrEventTooLarge) {
			t.Fatalf("%s: error %v, want one matching ErrEventTooLarge", what, err)
		}
		var te *eventstore.EventTooLargeError
		if !errors.As(err, &te) {
			t.Fatalf("%s: error %v (%T) is not an *EventTooLargeError", what, err, err)
		}
		if te.Index != index || te.Size != size || te.Limit != limit {
			t.Fatalf("%s: EventTooLargeError{Index: %d, Size: %d, Limit: %d}, want {%d, %d, %d}", what, te.Index, te.Size, te.Limit, index, size, limit)
		}
	}

	over := eventstore.Event{ID: eventstore.NewEventID(), Type: "Big", Data: jsonString(limit + 1)}
	_, err := store.Append(ctx, "big", eventstore.Any, over)
	requireTooLarge("payload one byte over", err, 0, limit+1)
	_, err = store.Append(ctx, "big", eventstore.Any, newEvent("Small", `{}`), over)
	requireTooLarge("second event over", err, 1, limit+1)
	_, err = store.AppendStreams(ctx, eventstore.StreamAppend{StreamID: "big", Expected: eventstore.Any, Events: []eventstore.Event{over}})
	requireTooLarge("AppendStreams", err, 0, limit+1)
	header := eventstore.Event{ID: eventstore.NewEventID(), Type: "Big", Data: []byte(`{}`), Metadata: eventstore.Metadata{
		Headers: map[string]string{"k": strings.Repeat("v", limit-2)}, // 2 + 1 + limit-2 bytes
	}}
	_, err = store.Append(ctx, "big", eventstore.Any, header)
	requireTooLarge("metadata over", err, 0, limit+1)
	requireVersion(t, ctx, store, "big", 0)

	// Exactly at the limit is accepted.
	atLimit := []eventstore.Event{
		{ID: eventstore.NewEventID(), Type: "Big", Data: jsonString(limit)},
		{ID: eventstore.NewEventID(), Type: "Big", Data: []byte(`{}`), Metadata: eventstore.Metadata{CorrelationID: strings.Repeat("c", limit-2)}},
	}
	mustAppend(t, ctx, store, "big", eventstore.NoStream, atLimit...)
	requireStream(t, ctx, store, "big", atLimit)
}

func testInvalidReadArguments(t *testing.T, s *suite) {
	ctx, store := s.setup(t)
	mustAppend(t, ctx, store, "s", eventstore.NoStream, numbered("E", 2)...)
	for _, id := range []string{"", "a\xffb", "a\x00b", "a\nb", strings.Repeat("x", eventstore.MaxStreamIDLength+1)} {
		_, err := store.ReadStream(ctx, id, eventstore.ReadStreamOptions{})
		requireInvalid(t, "ReadStream("+id+")", err)
		_, err = store.StreamVersion(ctx, id)
		requireInvalid(t, "StreamVersion("+id+")", err)
	}
	for _, opts := range []eventstore.ReadStreamOptions{
		{Direction: eventstore.Direction(7)},
		{Direction: eventstore.Direction(-1)},
		{Limit: -1},
		{Direction: eventstore.Backward, Limit: -5},
	} {
		_, err := store.ReadStream(ctx, "s", opts)
		requireInvalid(t, "ReadStream options", err)
	}
	for _, limit := range []int{0, -1} {
		_, err := store.ReadAll(ctx, eventstore.Position{}, limit)
		requireInvalid(t, "ReadAll limit", err)
	}
}

func testCanceledContext(t *testing.T, s *suite) {
	ctx, store := s.setup(t)
	first := newEvent("E", `{}`)
	mustAppend(t, ctx, store, "s", eventstore.NoStream, first)

	canceled, cancel := context.WithCancel(ctx)
	cancel()
	expired, cancel2 := context.WithDeadline(ctx, time.Now().Add(-time.Second))
	defer cancel2()
	for _, c := range []struct {
		ctx  context.Context
		want error
	}{{canceled, context.Canceled}, {expired, context.DeadlineExceeded}} {
		check := func(what string, err error) {
			t.Helper()
			if !errors.Is(err, c.want) {
				t.Fatalf("%s with a done context: error %v, want one matching %v", what, err, c.want)
			}
		}
		_, err := store.Append(c.ctx, "s", eventstore.Any, newEvent("E", `{}`))
		check("Append", err)
		_, err = store.Append(c.ctx, "new", eventstore.NoStream, newEvent("E", `{}`))
		check("Append to a new stream", err)
		_, err = store.AppendStreams(c.ctx, eventstore.StreamAppend{StreamID: "new", Expected: eventstore.Any, Events: []eventstore.Event{newEvent("E", `{}`)}})
		check("AppendStreams", err)
		_, err = store.ReadStream(c.ctx, "s", eventstore.ReadStreamOptions{})
		check("ReadStream", err)
		_, err = store.ReadAll(c.ctx, eventstore.Position{}, 10)
		check("ReadAll", err)
		_, err = store.StreamVersion(c.ctx, "s")
		check("StreamVersion", err)
		_, err = store.Head(c.ctx)
		check("Head", err)
	}
	requireStream(t, ctx, store, "s", []eventstore.Event{first})
	requireVersion(t, ctx, store, "new", 0)
	mustAppend(t, ctx, store, "s", eventstore.Exact(1), newEvent("E", `{}`))
	readAllN(t, ctx, store, eventstore.Position{}, 2)
}

func testCallerCannotMutate(t *testing.T, s *suite) {
	ctx, store := s.setup(t)
	data := []byte(`{"v":1}`)
	headers := map[string]string{"k": "v"}
	e := eventstore.Event{ID: eventstore.NewEventID(), Type: "E", Data: data, Metadata: eventstore.Metadata{Headers: headers}}
	events := []eventstore.Event{e}
	mustAppend(t, ctx, store, "s", eventstore.NoStream, events...)
	want := e
	want.Data = []byte(`{"v":1}`)
	want.Metadata.Headers = map[string]string{"k": "v"}

	// Changing what was appended does not change what is stored.
	data[5] = '2'
	headers["k"] = "changed"
	headers["added"] = "x"
	events[0].Type = "Changed"
	recs := requireStream(t, ctx, store, "s", []eventstore.Event{want})

	// Neither does changing what was read.
	recs[0].Data[5] = '9'
	recs[0].Metadata.Headers["k"] = "mutated"
	requireStream(t, ctx, store, "s", []eventstore.Event{want})
	all := readAllN(t, ctx, store, eventstore.Position{}, 1)
	all[0].Data[5] = '9'
	all[0].Metadata.Headers["k"] = "mutated"
	requireStream(t, ctx, store, "s", []eventstore.Event{want})
	all = readAllN(t, ctx, store, eventstore.Position{}, 1)
	requireEvent(t, all[0], want)
}
