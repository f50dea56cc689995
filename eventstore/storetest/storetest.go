package storetest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"reflect"
	"slices"
	"testing"
	"time"

	"github.com/chronicle-go/chronicle/eventstore"
)

// Options describes the stores under test. A nil *Options means defaults.
type Options struct {
	// MaxEventSize is the size limit (payload plus metadata, in bytes) of
	// the stores newStore returns, so that the suite can test both sides of
	// it. A negative value skips the size-limit tests, for a store without
	// a limit. Defaults to [eventstore.DefaultMaxEventSize].
	MaxEventSize int
}

// Run runs the conformance suite against the stores newStore returns. Each
// subtest calls newStore once and must get an empty store that no other
// subtest uses (with PostgreSQL: its own database); subtests run in
// parallel. A nil opts means defaults.
//
// The suite assumes nothing about the values of positions beyond their
// order ([eventstore.Position.Compare]), and tolerates ReadAll and Head
// lagging behind appends for a while (a PostgreSQL store holds back events
// while older transactions in the cluster are still open).
func Run(t *testing.T, newStore func(t *testing.T) eventstore.Store, opts *Options) {
	t.Helper()
	if opts == nil {
		opts = &Options{}
	}
	s := &suite{newStore: newStore, maxEventSize: opts.MaxEventSize}
	if s.maxEventSize == 0 {
		s.maxEventSize = eventstore.DefaultMaxEventSize
	}
	tests := []struct {
		name string
		fn   func(t *testing.T, s *suite)
	}{
		{"AppendAndReadBack", testAppendAndReadBack},
		{"ExpectedVersionAny", testExpectedAny},
		{"ExpectedVersionNoStream", testExpectedNoStream},
		{"ExpectedVersionStreamExists", testExpectedStreamExists},
		{"ExpectedVersionExact", testExpectedExact},
		{"RaceExactExpectedVersion", testRaceExact},
		{"RaceAnyExpectedVersion", testRaceAny},
		{"AnyNeverConflicts", testAnyNeverConflicts},
		{"ListStreams", testListStreams},
		{"IdempotentRetry", testIdempotentRetry},
		{"DuplicateEventID", testDuplicateEventID},
		{"GeneratedEventIDs", testGeneratedIDs},
		{"ReadStreamForward", testReadStreamForward},
		{"ReadStreamBackward", testReadStreamBackward},
		{"ReadStreamEmpty", testReadStreamEmpty},
		{"ReadStreamSeq", testReadStreamSeq},
		{"ReadStreamPayloads", testReadStreamPayloads},
		{"ReadAllOrder", testReadAllOrder},
		{"ReadAllPaging", testReadAllPaging},
		{"ReadAllSeq", testReadAllSeq},
		{"ReadAllInto", testReadAllInto},
		{"Head", testHead},
		{"StreamVersion", testStreamVersion},
		{"AppendStreams", testAppendStreams},
		{"AppendStreamsAtomic", testAppendStreamsAtomic},
		{"AppendStreamsInvalid", testAppendStreamsInvalid},
		{"AppendStreamsRetry", testAppendStreamsRetry},
		{"Watch", testWatch},
		{"WatchClosesOnCancel", testWatchCancel},
		{"MetadataAndRecordedAt", testMetadata},
		{"PayloadRoundTrip", testPayloadRoundTrip},
		{"StreamIDsRoundTrip", testStreamIDs},
		{"InvalidInput", testInvalidInput},
		{"EventTooLarge", testEventTooLarge},
		{"InvalidReadArguments", testInvalidReadArguments},
		{"CanceledContext", testCanceledContext},
		{"CallerCannotMutateStoredEvents", testCallerCannotMutate},
		{"ConcurrentTailing", testConcurrentTailing},
	}
	tests = append(tests, lifecycleTests...)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			tt.fn(t, s)
		})
	}
}

type suite struct {
	newStore     func(t *testing.T) eventstore.Store
	maxEventSize int
}

// setup returns a fresh store and a context that ends with the test.
func (s *suite) setup(t *testing.T) (context.Context, eventstore.Store) {
	t.Helper()
	store := s.newStore(t)
	if store == nil {
		t.Fatal("newStore returned nil")
	}
	return t.Context(), store
}

// waitTimeout bounds every wait for something a store must do eventually
// (a read-all horizon passing, a wake-up arriving). It is a safety net
// against hangs, not a performance expectation. The suite's own tests
// shorten it (export_test.go); nothing else changes it.
var waitTimeout = 30 * time.Second

// newEvent returns an event with a fresh ID.
func newEvent(typ, data string) eventstore.Event {
	return eventstore.Event{ID: eventstore.NewEventID(), Type: typ, Data: []byte(data)}
}

// numbered returns n events with fresh IDs whose payloads say which they are.
func numbered(typ string, n int) []eventstore.Event {
	events := make([]eventstore.Event, n)
	for i := range events {
		events[i] = newEvent(typ, fmt.Sprintf(`{"n":%d}`, i+1))
	}
	return events
}

func mustAppend(t *testing.T, ctx context.Context, store eventstore.Store, streamID string, expected eventstore.ExpectedVersion, events ...eventstore.Event) eventstore.AppendResult {
	t.Helper()
	res, err := store.Append(ctx, streamID, expected, events...)
	if err != nil {
		t.Fatalf("Append(%q, %s, %d events): %v", streamID, expected, len(events), err)
	}
	return res
}

func mustReadStream(t *testing.T, ctx context.Context, store eventstore.Store, streamID string, opts eventstore.ReadStreamOptions) []eventstore.Record {
	t.Helper()
	recs, err := store.ReadStream(ctx, streamID, opts)
	if err != nil {
		t.Fatalf("ReadStream(%q, %+v): %v", streamID, opts, err)
	}
	return recs
}

// readAll reads the whole stream from the start.
func readStream(t *testing.T, ctx context.Context, store eventstore.Store, streamID string) []eventstore.Record {
	t.Helper()
	return mustReadStream(t, ctx, store, streamID, eventstore.ReadStreamOptions{})
}

// streamVersion returns the stream's version, 0 when it does not exist.
func streamVersion(t *testing.T, ctx context.Context, store eventstore.Store, streamID string) int64 {
	t.Helper()
	v, err := store.StreamVersion(ctx, streamID)
	if errors.Is(err, eventstore.ErrStreamNotFound) {
		return 0
	}
	if err != nil {
		t.Fatalf("StreamVersion(%q): %v", streamID, err)
	}
	if v < 1 {
		t.Fatalf("StreamVersion(%q) = %d without an error, want >= 1 or ErrStreamNotFound", streamID, v)
	}
	return v
}

// requireVersion checks a stream's version (0: the stream must not exist).
func requireVersion(t *testing.T, ctx context.Context, store eventstore.Store, streamID string, want int64) {
	t.Helper()
	if got := streamVersion(t, ctx, store, streamID); got != want {
		t.Fatalf("stream %q is at version %d, want %d", streamID, got, want)
	}
	if n := int64(len(readStream(t, ctx, store, streamID))); n != want {
		t.Fatalf("stream %q has %d events, want %d", streamID, n, want)
	}
}

// readAllN reads from after until it has n events, waiting for a lagging
// read-all horizon, then checks that no more events follow.
func readAllN(t *testing.T, ctx context.Context, store eventstore.Store, after eventstore.Position, n int) []eventstore.Record {
	t.Helper()
	var all []eventstore.Record
	deadline := time.Now().Add(waitTimeout)
	for len(all) < n {
		recs, err := store.ReadAll(ctx, after, 1000)
		if err != nil {
			t.Fatalf("ReadAll(%s, 1000): %v", after, err)
		}
		all = append(all, recs...)
		if len(recs) > 0 {
			after = recs[len(recs)-1].Position
			continue
		}
		if time.Now().After(deadline) {
			t.Fatalf("ReadAll returned %d events within %s, want %d", len(all), waitTimeout, n)
		}
		time.Sleep(5 * time.Millisecond)
	}
	if len(all) > n {
		t.Fatalf("ReadAll returned %d events, want %d", len(all), n)
	}
	if more, err := store.ReadAll(ctx, after, 1000); err != nil || len(more) != 0 {
		t.Fatalf("ReadAll after the last of %d expected events = %d events, %v; want none", n, len(more), err)
	}
	return all
}

// requireAscending checks that positions strictly increase.
func requireAscending(t *testing.T, recs []eventstore.Record) {
	t.Helper()
	for i := 1; i < len(recs); i++ {
		if recs[i-1].Position.Compare(recs[i].Position) >= 0 {
			t.Fatalf("position %s (event %d) does not sort after %s (event %d)", recs[i].Position, i, recs[i-1].Position, i-1)
		}
	}
}

func versions(recs []eventstore.Record) []int64 {
	vs := make([]int64, len(recs))
	for i, r := range recs {
		vs[i] = r.StreamVersion
	}
	return vs
}

func span(from, to int64) []int64 {
	var vs []int64
	if from <= to {
		for v := from; v <= to; v++ {
			vs = append(vs, v)
		}
		return vs
	}
	for v := from; v >= to; v-- {
		vs = append(vs, v)
	}
	return vs
}

func requireVersions(t *testing.T, what string, recs []eventstore.Record, want []int64) {
	t.Helper()
	if got := versions(recs); !slices.Equal(got, want) {
		t.Fatalf("%s: versions %v, want %v", what, got, want)
	}
}

// sameJSON reports whether two JSON documents hold the same value. Stores
// may normalise payloads (PostgreSQL's jsonb reorders keys and spaces).
func sameJSON(a, b []byte) bool {
	var va, vb any
	if json.Unmarshal(a, &va) != nil || json.Unmarshal(b, &vb) != nil {
		return false
	}
	return reflect.DeepEqual(va, vb)
}

func sameMetadata(a, b eventstore.Metadata) bool {
	return a.CorrelationID == b.CorrelationID && a.CausationID == b.CausationID && maps.Equal(a.Headers, b.Headers)
}

// requireEvent checks that rec stores e (its ID, when e has one).
func requireEvent(t *testing.T, rec eventstore.Record, e eventstore.Event) {
	t.Helper()
	if !e.ID.IsZero() && rec.EventID != e.ID {
		t.Fatalf("%s v%d: event id %s, want %s", rec.StreamID, rec.StreamVersion, rec.EventID, e.ID)
	}
	if rec.EventID.IsZero() {
		t.Fatalf("%s v%d: zero event id", rec.StreamID, rec.StreamVersion)
	}
	if rec.Type != e.Type {
		t.Fatalf("%s v%d: type %q, want %q", rec.StreamID, rec.StreamVersion, rec.Type, e.Type)
	}
	if want := max(e.SchemaVersion, 1); rec.SchemaVersion != want {
		t.Fatalf("%s v%d: schema version %d, want %d", rec.StreamID, rec.StreamVersion, rec.SchemaVersion, want)
	}
	if !sameJSON(rec.Data, e.Data) {
		t.Fatalf("%s v%d: data %s, want %s", rec.StreamID, rec.StreamVersion, rec.Data, e.Data)
	}
	if !sameMetadata(rec.Metadata, e.Metadata) {
		t.Fatalf("%s v%d: metadata %+v, want %+v", rec.StreamID, rec.StreamVersion, rec.Metadata, e.Metadata)
	}
	if rec.Position.IsZero() {
		t.Fatalf("%s v%d: zero position", rec.StreamID, rec.StreamVersion)
	}
}

// requireStream checks that the stream holds exactly events, at versions 1..n.
func requireStream(t *testing.T, ctx context.Context, store eventstore.Store, streamID string, events []eventstore.Event) []eventstore.Record {
	t.Helper()
	recs := readStream(t, ctx, store, streamID)
	requireVersions(t, "stream "+streamID, recs, span(1, int64(len(events))))
	for i, r := range recs {
		if r.StreamID != streamID {
			t.Fatalf("reading %q returned an event of stream %q", streamID, r.StreamID)
		}
		requireEvent(t, r, events[i])
	}
	requireAscending(t, recs)
	return recs
}

// requireConflict checks that err is a concurrency conflict with these details.
func requireConflict(t *testing.T, err error, streamID string, expected eventstore.ExpectedVersion, actual int64) {
	t.Helper()
	if !errors.Is(err, eventstore.ErrConcurrencyConflict) {
		t.Fatalf("error %v, want one matching ErrConcurrencyConflict", err)
	}
	var ce *eventstore.ConcurrencyError
	if !errors.As(err, &ce) {
		t.Fatalf("error %v (%T) is not a *ConcurrencyError", err, err)
	}
	if ce.StreamID != streamID || ce.Expected != expected || ce.Actual != actual {
		t.Fatalf("ConcurrencyError{StreamID: %q, Expected: %s, Actual: %d}, want {%q, %s, %d}", ce.StreamID, ce.Expected, ce.Actual, streamID, expected, actual)
	}
}

// requireInvalid checks that err is a typed validation error.
func requireInvalid(t *testing.T, what string, err error) {
	t.Helper()
	if !errors.Is(err, eventstore.ErrInvalidInput) {
		t.Fatalf("%s: error %v, want one matching ErrInvalidInput", what, err)
	}
	var ve *eventstore.ValidationError
	var te *eventstore.EventTooLargeError
	if !errors.As(err, &ve) && !errors.As(err, &te) {
		t.Fatalf("%s: error %v (%T) is neither a *ValidationError nor an *EventTooLargeError", what, err, err)
	}
}

func sameResult(a, b eventstore.AppendResult) bool {
	return a.StreamID == b.StreamID && a.Version == b.Version && a.Position.Compare(b.Position) == 0
}

// waitFor polls cond until it holds or the wait times out.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(waitTimeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", waitTimeout, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
