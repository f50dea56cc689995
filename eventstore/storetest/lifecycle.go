package storetest

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/chronicle-go/chronicle/eventstore"
)

// lifecycleTests are the cases of a store that implements
// [eventstore.Lifecycle]; the others skip them.
var lifecycleTests = []struct {
	name string
	fn   func(t *testing.T, s *suite)
}{
	{"LifecycleSoftDelete", testSoftDelete},
	{"LifecycleHardDelete", testHardDelete},
	{"LifecycleTruncate", testTruncate},
	{"LifecycleArchive", testArchive},
	{"LifecycleExpectedVersion", testLifecycleExpected},
	{"LifecycleBadInput", testLifecycleBadInput},
	{"LifecycleConcurrentAppends", testLifecycleConcurrent},
	{"LifecycleRestoreIDTaken", testRestoreIDTaken},
}

// lifecycleSetup returns a fresh store that implements
// [eventstore.Lifecycle], or skips the test.
func (s *suite) lifecycleSetup(t *testing.T) (context.Context, eventstore.Store, eventstore.Lifecycle) {
	t.Helper()
	ctx, store := s.setup(t)
	lc, ok := store.(eventstore.Lifecycle)
	if !ok {
		t.Skip("the store does not implement eventstore.Lifecycle")
	}
	return ctx, store, lc
}

// requireState checks a stream's lifecycle state.
func requireState(t *testing.T, ctx context.Context, lc eventstore.Lifecycle, want eventstore.StreamState) {
	t.Helper()
	got, err := lc.StreamState(ctx, want.StreamID)
	if err != nil {
		t.Fatalf("StreamState(%q): %v", want.StreamID, err)
	}
	if got != want {
		t.Fatalf("StreamState(%q) = %+v, want %+v", want.StreamID, got, want)
	}
	// A listing shows the stream, in every status, with its status.
	lister, ok := lc.(eventstore.StreamLister)
	if !ok {
		return
	}
	page, err := lister.ListStreams(ctx, eventstore.ListStreamsOptions{Prefix: want.StreamID})
	if err != nil {
		t.Fatalf("ListStreams(prefix %q): %v", want.StreamID, err)
	}
	i := slices.IndexFunc(page, func(info eventstore.StreamInfo) bool { return info.StreamID == want.StreamID })
	if i < 0 {
		t.Fatalf("ListStreams(prefix %q) = %+v: the stream is missing", want.StreamID, page)
	}
	if page[i].Status != want.Status || page[i].Version != want.Version {
		t.Fatalf("ListStreams shows %q at version %d, %v; want version %d, %v", want.StreamID, page[i].Version, page[i].Status, want.Version, want.Status)
	}
}

// requireStreamClosed checks that err is the typed error of a closed stream.
func requireStreamClosed(t *testing.T, what string, err error, target error, hard bool) {
	t.Helper()
	if !errors.Is(err, target) {
		t.Fatalf("%s: error %v, want one matching %v", what, err, target)
	}
	var de *eventstore.StreamDeletedError
	var ae *eventstore.StreamArchivedError
	switch target {
	case eventstore.ErrStreamDeleted:
		if !errors.As(err, &de) || de.Hard != hard {
			t.Fatalf("%s: error %v (%T), want a *StreamDeletedError with Hard %v", what, err, err, hard)
		}
		if !errors.Is(err, eventstore.ErrStreamNotFound) {
			t.Fatalf("%s: error %v does not match ErrStreamNotFound", what, err)
		}
	case eventstore.ErrStreamArchived:
		if !errors.As(err, &ae) {
			t.Fatalf("%s: error %v (%T), want a *StreamArchivedError", what, err, err)
		}
	}
}

// requireAppendRefused checks that every kind of append to a closed stream
// fails with target and stores nothing.
func requireAppendRefused(t *testing.T, ctx context.Context, store eventstore.Store, streamID string, version int64, target error, hard bool) {
	t.Helper()
	for _, exp := range []eventstore.ExpectedVersion{eventstore.Any, eventstore.NoStream, eventstore.StreamExists, eventstore.Exact(version)} {
		_, err := store.Append(ctx, streamID, exp, newEvent("Late", `{}`))
		requireStreamClosed(t, fmt.Sprintf("Append(%q, %s)", streamID, exp), err, target, hard)
	}
	_, err := store.AppendStreams(ctx,
		eventstore.StreamAppend{StreamID: streamID + "-other", Expected: eventstore.Any, Events: []eventstore.Event{newEvent("Late", `{}`)}},
		eventstore.StreamAppend{StreamID: streamID, Expected: eventstore.Any, Events: []eventstore.Event{newEvent("Late", `{}`)}})
	requireStreamClosed(t, fmt.Sprintf("AppendStreams(.., %q)", streamID), err, target, hard)
	if v := streamVersion(t, ctx, store, streamID+"-other"); v != 0 {
		t.Fatalf("an AppendStreams refused for a closed stream stored events in another stream")
	}
}

// readAllIDs reads every event in the log and returns their IDs by stream.
func readAllIDs(t *testing.T, ctx context.Context, store eventstore.Store) map[string][]eventstore.EventID {
	t.Helper()
	ids := map[string][]eventstore.EventID{}
	var prev eventstore.Position
	for rec, err := range eventstore.ReadAllSeq(ctx, store, eventstore.Position{}, 2) {
		if err != nil {
			t.Fatalf("ReadAllSeq: %v", err)
		}
		if rec.Position.Compare(prev) <= 0 {
			t.Fatalf("ReadAll: position %s after %s", rec.Position, prev)
		}
		prev = rec.Position
		ids[rec.StreamID] = append(ids[rec.StreamID], rec.EventID)
	}
	return ids
}

func eventIDs(events []eventstore.Event) []eventstore.EventID {
	ids := make([]eventstore.EventID, len(events))
	for i, e := range events {
		ids[i] = e.ID
	}
	return ids
}

func recordIDs(recs []eventstore.Record) []eventstore.EventID {
	ids := make([]eventstore.EventID, len(recs))
	for i, r := range recs {
		ids[i] = r.EventID
	}
	return ids
}

// waitReadAll waits until ReadAll returns exactly want by stream (the
// read-all horizon may lag behind commits).
func waitReadAll(t *testing.T, ctx context.Context, store eventstore.Store, want map[string][]eventstore.EventID) {
	t.Helper()
	var got map[string][]eventstore.EventID
	deadline := time.Now().Add(waitTimeout)
	for {
		got = readAllIDs(t, ctx, store)
		same := len(got) == len(want)
		for id, ids := range want {
			same = same && slices.Equal(got[id], ids)
		}
		if same {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("ReadAll returns %v, want %v", got, want)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// testSoftDelete: a deleted stream reads as not found, refuses appends,
// leaves ReadAll, keeps its events in the archive, and comes back whole.
func testSoftDelete(t *testing.T, s *suite) {
	ctx, store, lc := s.lifecycleSetup(t)
	doomed, kept := numbered("Opened", 3), numbered("Kept", 2)
	mustAppend(t, ctx, store, "doomed", eventstore.NoStream, doomed...)
	mustAppend(t, ctx, store, "kept", eventstore.NoStream, kept...)
	before := requireStream(t, ctx, store, "doomed", doomed)

	st, err := lc.DeleteStream(ctx, "doomed", eventstore.Any)
	want := eventstore.StreamState{StreamID: "doomed", Status: eventstore.StreamDeleted, Version: 3, FirstVersion: 1}
	if err != nil || st != want {
		t.Fatalf("DeleteStream = %+v, %v; want %+v", st, err, want)
	}
	requireState(t, ctx, lc, want)
	if recs := readStream(t, ctx, store, "doomed"); len(recs) != 0 {
		t.Fatalf("a deleted stream reads %d events, want none (it reads as not found)", len(recs))
	}
	_, err = store.StreamVersion(ctx, "doomed")
	requireStreamClosed(t, "StreamVersion of a deleted stream", err, eventstore.ErrStreamDeleted, false)
	requireAppendRefused(t, ctx, store, "doomed", 3, eventstore.ErrStreamDeleted, false)
	waitReadAll(t, ctx, store, map[string][]eventstore.EventID{"kept": eventIDs(kept)})

	archived, err := lc.ReadArchivedStream(ctx, "doomed", eventstore.ReadStreamOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.EqualFunc(archived, before, sameRecord) {
		t.Fatalf("ReadArchivedStream of a deleted stream = %v, want its events as they were", versions(archived))
	}
	// Idempotent: deleting again changes nothing.
	if st, err := lc.DeleteStream(ctx, "doomed", eventstore.Exact(3)); err != nil || st != want {
		t.Fatalf("DeleteStream again = %+v, %v; want %+v", st, err, want)
	}

	st, err = lc.RestoreStream(ctx, "doomed")
	want.Status = eventstore.StreamLive
	if err != nil || st != want {
		t.Fatalf("RestoreStream = %+v, %v; want %+v", st, err, want)
	}
	if after := readStream(t, ctx, store, "doomed"); !slices.EqualFunc(after, before, sameRecord) {
		t.Fatalf("the restored stream reads %v, want its events as they were", versions(after))
	}
	if recs, err := lc.ReadArchivedStream(ctx, "doomed", eventstore.ReadStreamOptions{}); err != nil || len(recs) != 0 {
		t.Fatalf("ReadArchivedStream of a live stream = %d events, %v; want none", len(recs), err)
	}
	res := mustAppend(t, ctx, store, "doomed", eventstore.Exact(3), newEvent("Reopened", `{}`))
	if res.Version != 4 {
		t.Fatalf("append after restore: version %d, want 4 (versions are never reused)", res.Version)
	}
	waitReadAll(t, ctx, store, map[string][]eventstore.EventID{
		"kept":   eventIDs(kept),
		"doomed": append(eventIDs(doomed), readStream(t, ctx, store, "doomed")[3].EventID),
	})
}

// sameRecord compares records by what the store keeps.
func sameRecord(a, b eventstore.Record) bool {
	return a.EventID == b.EventID && a.StreamID == b.StreamID && a.StreamVersion == b.StreamVersion &&
		a.Position == b.Position && a.Type == b.Type && a.SchemaVersion == b.SchemaVersion &&
		sameJSON(a.Data, b.Data) && sameMetadata(a.Metadata, b.Metadata) && a.RecordedAt.Equal(b.RecordedAt)
}

// testHardDelete: a tombstone cannot be read, appended to, restored or
// recreated, and other streams keep their positions.
func testHardDelete(t *testing.T, s *suite) {
	ctx, store, lc := s.lifecycleSetup(t)
	first := numbered("Kept", 2)
	mustAppend(t, ctx, store, "kept", eventstore.NoStream, first...)
	mustAppend(t, ctx, store, "gone", eventstore.NoStream, numbered("Secret", 4)...)
	later := numbered("Kept", 2)
	mustAppend(t, ctx, store, "kept", eventstore.Exact(2), later...)
	keptBefore := readStream(t, ctx, store, "kept")

	st, err := lc.HardDeleteStream(ctx, "gone", eventstore.StreamExists)
	want := eventstore.StreamState{StreamID: "gone", Status: eventstore.StreamHardDeleted, Version: 4, FirstVersion: 5}
	if err != nil || st != want {
		t.Fatalf("HardDeleteStream = %+v, %v; want %+v", st, err, want)
	}
	requireState(t, ctx, lc, want)
	_, err = store.ReadStream(ctx, "gone", eventstore.ReadStreamOptions{})
	requireStreamClosed(t, "ReadStream of a hard-deleted stream", err, eventstore.ErrStreamDeleted, true)
	_, err = store.StreamVersion(ctx, "gone")
	requireStreamClosed(t, "StreamVersion of a hard-deleted stream", err, eventstore.ErrStreamDeleted, true)
	requireAppendRefused(t, ctx, store, "gone", 4, eventstore.ErrStreamDeleted, true)
	_, err = lc.RestoreStream(ctx, "gone")
	requireStreamClosed(t, "RestoreStream of a hard-deleted stream", err, eventstore.ErrStreamDeleted, true)
	_, err = lc.ArchiveStream(ctx, "gone", eventstore.Any)
	requireStreamClosed(t, "ArchiveStream of a hard-deleted stream", err, eventstore.ErrStreamDeleted, true)
	_, err = lc.TruncateStream(ctx, "gone", 2)
	requireStreamClosed(t, "TruncateStream of a hard-deleted stream", err, eventstore.ErrStreamDeleted, true)
	_, err = lc.ReadArchivedStream(ctx, "gone", eventstore.ReadStreamOptions{})
	requireStreamClosed(t, "ReadArchivedStream of a hard-deleted stream", err, eventstore.ErrStreamDeleted, true)
	if st, err := lc.HardDeleteStream(ctx, "gone", eventstore.Any); err != nil || st != want {
		t.Fatalf("HardDeleteStream again = %+v, %v; want %+v (idempotent)", st, err, want)
	}

	// The other stream is untouched, positions included, and ReadAll
	// goes on past the hole.
	if after := readStream(t, ctx, store, "kept"); !slices.EqualFunc(after, keptBefore, sameRecord) {
		t.Fatalf("hard-deleting a stream changed another: %v", versions(after))
	}
	waitReadAll(t, ctx, store, map[string][]eventstore.EventID{"kept": append(eventIDs(first), eventIDs(later)...)})
	next := mustAppend(t, ctx, store, "kept", eventstore.Exact(4), newEvent("Kept", `{}`))
	if next.Position.Compare(keptBefore[3].Position) <= 0 {
		t.Fatalf("an append after a hard delete got position %s, not after %s", next.Position, keptBefore[3].Position)
	}

	// A soft-deleted stream can be hard-deleted: its archived events go too.
	mustAppend(t, ctx, store, "soft", eventstore.NoStream, numbered("Secret", 2)...)
	if _, err := lc.DeleteStream(ctx, "soft", eventstore.Any); err != nil {
		t.Fatal(err)
	}
	if _, err := lc.HardDeleteStream(ctx, "soft", eventstore.Exact(2)); err != nil {
		t.Fatal(err)
	}
	_, err = lc.ReadArchivedStream(ctx, "soft", eventstore.ReadStreamOptions{})
	requireStreamClosed(t, "ReadArchivedStream of a hard-deleted stream", err, eventstore.ErrStreamDeleted, true)
}

// testTruncate: events before the truncation point are gone from the
// stream and from ReadAll; the version and appends go on.
func testTruncate(t *testing.T, s *suite) {
	ctx, store, lc := s.lifecycleSetup(t)
	events := numbered("Counted", 5)
	mustAppend(t, ctx, store, "long", eventstore.NoStream, events...)
	all := readStream(t, ctx, store, "long")

	st, err := lc.TruncateStream(ctx, "long", 3)
	want := eventstore.StreamState{StreamID: "long", Status: eventstore.StreamLive, Version: 5, FirstVersion: 3}
	if err != nil || st != want {
		t.Fatalf("TruncateStream(3) = %+v, %v; want %+v", st, err, want)
	}
	requireState(t, ctx, lc, want)
	if recs := readStream(t, ctx, store, "long"); !slices.EqualFunc(recs, all[2:], sameRecord) {
		t.Fatalf("after truncating before 3 the stream reads %v, want 3..5 as they were", versions(recs))
	}
	requireVersions(t, "backward", mustReadStream(t, ctx, store, "long", eventstore.ReadStreamOptions{Direction: eventstore.Backward}), span(5, 3))
	requireVersions(t, "backward from 2", mustReadStream(t, ctx, store, "long", eventstore.ReadStreamOptions{Direction: eventstore.Backward, From: 2}), nil)
	requireVersions(t, "forward from 4", mustReadStream(t, ctx, store, "long", eventstore.ReadStreamOptions{From: 4}), span(4, 5))
	requireVersions(t, "forward limit 2", mustReadStream(t, ctx, store, "long", eventstore.ReadStreamOptions{Limit: 2}), span(3, 4))
	var seq []int64
	for rec, err := range eventstore.ReadStreamSeq(ctx, store, "long", eventstore.ReadStreamOptions{}, 1) {
		if err != nil {
			t.Fatal(err)
		}
		seq = append(seq, rec.StreamVersion)
	}
	if !slices.Equal(seq, span(3, 5)) {
		t.Fatalf("ReadStreamSeq after truncation = %v, want 3..5", seq)
	}
	if v := streamVersion(t, ctx, store, "long"); v != 5 {
		t.Fatalf("StreamVersion after truncation = %d, want 5", v)
	}
	waitReadAll(t, ctx, store, map[string][]eventstore.EventID{"long": eventIDs(events[2:])})

	// At or below the truncation point: nothing changes.
	for _, before := range []int64{1, 2, 3} {
		if st, err := lc.TruncateStream(ctx, "long", before); err != nil || st != want {
			t.Fatalf("TruncateStream(%d) = %+v, %v; want %+v unchanged", before, st, err, want)
		}
	}
	// Appends go on after the version; truncating up to the head keeps
	// the last event.
	if res := mustAppend(t, ctx, store, "long", eventstore.Exact(5), newEvent("Counted", `{}`)); res.Version != 6 {
		t.Fatalf("append after truncation: version %d, want 6", res.Version)
	}
	if _, err := lc.TruncateStream(ctx, "long", 6); err != nil {
		t.Fatal(err)
	}
	requireVersions(t, "truncated to the head", readStream(t, ctx, store, "long"), []int64{6})
	_, err = lc.TruncateStream(ctx, "long", 7)
	requireInvalid(t, "TruncateStream beyond the head", err)
	requireVersions(t, "after a refused truncation", readStream(t, ctx, store, "long"), []int64{6})

	// A truncated stream can be archived and restored: the truncated
	// events stay gone.
	if _, err := lc.ArchiveStream(ctx, "long", eventstore.Exact(6)); err != nil {
		t.Fatal(err)
	}
	requireVersions(t, "archive of a truncated stream", mustReadArchived(t, ctx, lc, "long"), []int64{6})
	if _, err := lc.RestoreStream(ctx, "long"); err != nil {
		t.Fatal(err)
	}
	requireVersions(t, "restored truncated stream", readStream(t, ctx, store, "long"), []int64{6})
}

func mustReadArchived(t *testing.T, ctx context.Context, lc eventstore.Lifecycle, streamID string) []eventstore.Record {
	t.Helper()
	recs, err := lc.ReadArchivedStream(ctx, streamID, eventstore.ReadStreamOptions{})
	if err != nil {
		t.Fatalf("ReadArchivedStream(%q): %v", streamID, err)
	}
	return recs
}

// testArchive: an archived stream reads as archived, its events are
// readable on request, and restoring brings them back unchanged.
func testArchive(t *testing.T, s *suite) {
	ctx, store, lc := s.lifecycleSetup(t)
	cold, hot := numbered("Old", 4), numbered("New", 1)
	mustAppend(t, ctx, store, "cold", eventstore.NoStream, cold...)
	mustAppend(t, ctx, store, "hot", eventstore.NoStream, hot...)
	before := readStream(t, ctx, store, "cold")

	st, err := lc.ArchiveStream(ctx, "cold", eventstore.Exact(4))
	want := eventstore.StreamState{StreamID: "cold", Status: eventstore.StreamArchived, Version: 4, FirstVersion: 1}
	if err != nil || st != want {
		t.Fatalf("ArchiveStream = %+v, %v; want %+v", st, err, want)
	}
	requireState(t, ctx, lc, want)
	_, err = store.ReadStream(ctx, "cold", eventstore.ReadStreamOptions{})
	requireStreamClosed(t, "ReadStream of an archived stream", err, eventstore.ErrStreamArchived, false)
	_, err = store.StreamVersion(ctx, "cold")
	requireStreamClosed(t, "StreamVersion of an archived stream", err, eventstore.ErrStreamArchived, false)
	requireAppendRefused(t, ctx, store, "cold", 4, eventstore.ErrStreamArchived, false)
	_, err = lc.TruncateStream(ctx, "cold", 2)
	requireStreamClosed(t, "TruncateStream of an archived stream", err, eventstore.ErrStreamArchived, false)
	waitReadAll(t, ctx, store, map[string][]eventstore.EventID{"hot": eventIDs(hot)})

	if got := mustReadArchived(t, ctx, lc, "cold"); !slices.EqualFunc(got, before, sameRecord) {
		t.Fatalf("ReadArchivedStream = %v, want the events as they were", versions(got))
	}
	back, err := lc.ReadArchivedStream(ctx, "cold", eventstore.ReadStreamOptions{Direction: eventstore.Backward, From: 3, Limit: 2})
	if err != nil {
		t.Fatal(err)
	}
	requireVersions(t, "archived backward from 3, limit 2", back, span(3, 2))
	if st, err := lc.ArchiveStream(ctx, "cold", eventstore.Any); err != nil || st != want {
		t.Fatalf("ArchiveStream again = %+v, %v; want %+v (idempotent)", st, err, want)
	}

	if _, err := lc.RestoreStream(ctx, "cold"); err != nil {
		t.Fatal(err)
	}
	if after := readStream(t, ctx, store, "cold"); !slices.EqualFunc(after, before, sameRecord) {
		t.Fatalf("the restored stream reads %v, want its events as they were", versions(after))
	}
	if st, err := lc.RestoreStream(ctx, "cold"); err != nil || st.Status != eventstore.StreamLive {
		t.Fatalf("RestoreStream of a live stream = %+v, %v; want no change", st, err)
	}
	waitReadAll(t, ctx, store, map[string][]eventstore.EventID{"hot": eventIDs(hot), "cold": eventIDs(cold)})
	if res := mustAppend(t, ctx, store, "cold", eventstore.Exact(4), newEvent("Old", `{}`)); res.Version != 5 {
		t.Fatalf("append after restore: version %d, want 5", res.Version)
	}

	// An archived stream can be soft-deleted, and a deleted one archived.
	if st, err := lc.DeleteStream(ctx, "hot", eventstore.Any); err != nil || st.Status != eventstore.StreamDeleted {
		t.Fatalf("DeleteStream = %+v, %v", st, err)
	}
	if st, err := lc.ArchiveStream(ctx, "hot", eventstore.Any); err != nil || st.Status != eventstore.StreamArchived {
		t.Fatalf("ArchiveStream of a deleted stream = %+v, %v", st, err)
	}
	if got := mustReadArchived(t, ctx, lc, "hot"); len(got) != 1 || got[0].EventID != hot[0].ID {
		t.Fatalf("ReadArchivedStream after delete then archive = %v", versions(got))
	}
}

// testLifecycleExpected: the expected version guards delete and archive.
func testLifecycleExpected(t *testing.T, s *suite) {
	ctx, store, lc := s.lifecycleSetup(t)
	mustAppend(t, ctx, store, "s", eventstore.NoStream, numbered("E", 3)...)
	ops := map[string]func(eventstore.ExpectedVersion) (eventstore.StreamState, error){
		"DeleteStream": func(e eventstore.ExpectedVersion) (eventstore.StreamState, error) {
			return lc.DeleteStream(ctx, "s", e)
		},
		"HardDeleteStream": func(e eventstore.ExpectedVersion) (eventstore.StreamState, error) {
			return lc.HardDeleteStream(ctx, "s", e)
		},
		"ArchiveStream": func(e eventstore.ExpectedVersion) (eventstore.StreamState, error) {
			return lc.ArchiveStream(ctx, "s", e)
		},
	}
	for name, op := range ops {
		_, err := op(eventstore.Exact(2))
		requireConflict(t, err, "s", eventstore.Exact(2), 3)
		_, err = op(eventstore.NoStream)
		requireInvalid(t, name+" with NoStream", err)
		_, err = op(eventstore.ExpectedVersion(-7))
		requireInvalid(t, name+" with an invalid expectation", err)
	}
	requireVersions(t, "the stream after refused operations", readStream(t, ctx, store, "s"), span(1, 3))
}

// testLifecycleBadInput: streams that do not exist and invalid arguments
// give typed errors and change nothing.
func testLifecycleBadInput(t *testing.T, s *suite) {
	ctx, store, lc := s.lifecycleSetup(t)
	mustAppend(t, ctx, store, "s", eventstore.NoStream, numbered("E", 2)...)
	notFound := map[string]func() (eventstore.StreamState, error){
		"DeleteStream":     func() (eventstore.StreamState, error) { return lc.DeleteStream(ctx, "missing", eventstore.Any) },
		"HardDeleteStream": func() (eventstore.StreamState, error) { return lc.HardDeleteStream(ctx, "missing", eventstore.Any) },
		"TruncateStream":   func() (eventstore.StreamState, error) { return lc.TruncateStream(ctx, "missing", 1) },
		"ArchiveStream":    func() (eventstore.StreamState, error) { return lc.ArchiveStream(ctx, "missing", eventstore.Any) },
		"RestoreStream":    func() (eventstore.StreamState, error) { return lc.RestoreStream(ctx, "missing") },
		"StreamState":      func() (eventstore.StreamState, error) { return lc.StreamState(ctx, "missing") },
	}
	for name, op := range notFound {
		if _, err := op(); !errors.Is(err, eventstore.ErrStreamNotFound) || errors.Is(err, eventstore.ErrStreamDeleted) {
			t.Fatalf("%s of a stream that does not exist: error %v, want one matching ErrStreamNotFound only", name, err)
		}
	}
	if recs, err := lc.ReadArchivedStream(ctx, "missing", eventstore.ReadStreamOptions{}); err != nil || len(recs) != 0 {
		t.Fatalf("ReadArchivedStream of a stream that does not exist = %d events, %v; want an empty page", len(recs), err)
	}
	invalid := map[string]func() (eventstore.StreamState, error){
		"DeleteStream(empty id)":   func() (eventstore.StreamState, error) { return lc.DeleteStream(ctx, "", eventstore.Any) },
		"TruncateStream(0)":        func() (eventstore.StreamState, error) { return lc.TruncateStream(ctx, "s", 0) },
		"TruncateStream(-1)":       func() (eventstore.StreamState, error) { return lc.TruncateStream(ctx, "s", -1) },
		"TruncateStream(3 > head)": func() (eventstore.StreamState, error) { return lc.TruncateStream(ctx, "s", 3) },
		"RestoreStream(bad id)":    func() (eventstore.StreamState, error) { return lc.RestoreStream(ctx, "a\x00b") },
		"StreamState(empty id)":    func() (eventstore.StreamState, error) { return lc.StreamState(ctx, "") },
	}
	for name, op := range invalid {
		_, err := op()
		requireInvalid(t, name, err)
	}
	_, err := lc.ReadArchivedStream(ctx, "s", eventstore.ReadStreamOptions{Limit: -1})
	requireInvalid(t, "ReadArchivedStream with a negative limit", err)
	requireVersions(t, "the stream after bad input", readStream(t, ctx, store, "s"), span(1, 2))
}

// testLifecycleConcurrent runs writers appending to a stream while it is
// truncated, archived, restored, soft-deleted, restored and hard-deleted,
// and a tailer reading all events of another stream throughout. Every
// acknowledged append is where its result says (unless truncated or
// hard-deleted), no append fails with an untyped error, versions have no
// holes, and the tailer sees every event of the other stream exactly once
// in order.
func testLifecycleConcurrent(t *testing.T, s *suite) {
	ctx, store, lc := s.lifecycleSetup(t)
	mustAppend(t, ctx, store, "busy", eventstore.NoStream, numbered("Seed", 5)...)

	type acked struct {
		id      eventstore.EventID
		version int64
	}
	var (
		mu       sync.Mutex
		acks     []acked
		refused  int
		stop     = make(chan struct{})
		wg       sync.WaitGroup
		errs     = make(chan error, 16)
		otherIDs []eventstore.EventID
	)
	for w := range 3 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				e := newEvent("Busy", fmt.Sprintf(`{"w":%d,"i":%d}`, w, i))
				res, err := store.Append(ctx, "busy", eventstore.Any, e)
				switch {
				case err == nil:
					mu.Lock()
					acks = append(acks, acked{e.ID, res.Version})
					mu.Unlock()
				case errors.Is(err, eventstore.ErrStreamDeleted), errors.Is(err, eventstore.ErrStreamArchived):
					mu.Lock()
					refused++
					mu.Unlock()
					time.Sleep(time.Millisecond)
				default:
					errs <- fmt.Errorf("append to busy: %w", err)
					return
				}
			}
		}()
	}
	wg.Add(1)
	go func() { // the other stream, which the tailer must see whole
		defer wg.Done()
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			e := newEvent("Other", fmt.Sprintf(`{"i":%d}`, i))
			if _, err := store.Append(ctx, "other", eventstore.Any, e); err != nil {
				errs <- fmt.Errorf("append to other: %w", err)
				return
			}
			mu.Lock()
			otherIDs = append(otherIDs, e.ID)
			mu.Unlock()
		}
	}()
	var (
		tailed  []eventstore.EventID
		tailPos eventstore.Position
	)
	tail := func() error { // reads everything readable now
		for {
			recs, err := store.ReadAll(ctx, tailPos, 50)
			if err != nil {
				return err
			}
			for _, r := range recs {
				if r.Position.Compare(tailPos) <= 0 {
					return fmt.Errorf("ReadAll returned position %s after %s", r.Position, tailPos)
				}
				tailPos = r.Position
				if r.StreamID == "other" {
					tailed = append(tailed, r.EventID)
				}
			}
			if len(recs) < 50 {
				return nil
			}
		}
	}
	tailDone := make(chan error, 1)
	go func() {
		for {
			select {
			case <-stop:
				tailDone <- nil
				return
			default:
			}
			if err := tail(); err != nil {
				tailDone <- err
				return
			}
			time.Sleep(time.Millisecond)
		}
	}()

	// waitAcks lets the writers get some appends in.
	waitAcks := func(n int) {
		t.Helper()
		mu.Lock()
		start := len(acks)
		mu.Unlock()
		waitFor(t, fmt.Sprintf("%d more acknowledged appends", n), func() bool {
			mu.Lock()
			defer mu.Unlock()
			return len(acks) >= start+n
		})
	}
	step := func(what string, op func() (eventstore.StreamState, error)) eventstore.StreamState {
		t.Helper()
		st, err := op()
		if err != nil {
			close(stop)
			wg.Wait()
			t.Fatalf("%s under concurrent appends: %v", what, err)
		}
		return st
	}

	waitAcks(20)
	version := streamVersion(t, ctx, store, "busy")
	truncated := step("TruncateStream", func() (eventstore.StreamState, error) { return lc.TruncateStream(ctx, "busy", version) })
	waitAcks(20)
	archived := step("ArchiveStream", func() (eventstore.StreamState, error) { return lc.ArchiveStream(ctx, "busy", eventstore.Any) })
	mustReadArchived(t, ctx, lc, "busy")
	step("RestoreStream", func() (eventstore.StreamState, error) { return lc.RestoreStream(ctx, "busy") })
	waitAcks(20)
	step("DeleteStream", func() (eventstore.StreamState, error) { return lc.DeleteStream(ctx, "busy", eventstore.Any) })
	restored := step("RestoreStream", func() (eventstore.StreamState, error) { return lc.RestoreStream(ctx, "busy") })
	waitAcks(20)

	// Everything acknowledged so far is in the stream at its version.
	mu.Lock()
	snapshot := slices.Clone(acks)
	mu.Unlock()
	recs := readStream(t, ctx, store, "busy")
	if len(recs) == 0 || recs[0].StreamVersion != truncated.FirstVersion {
		t.Fatalf("after truncating before %d the stream starts at %v", truncated.FirstVersion, versions(recs[:min(len(recs), 1)]))
	}
	requireVersions(t, "busy", recs, span(truncated.FirstVersion, recs[len(recs)-1].StreamVersion))
	byVersion := map[int64]eventstore.EventID{}
	for _, r := range recs {
		byVersion[r.StreamVersion] = r.EventID
	}
	for _, a := range snapshot {
		if a.version < truncated.FirstVersion {
			continue
		}
		if byVersion[a.version] != a.id {
			t.Fatalf("acknowledged event %s at version %d is not there (found %s)", a.id, a.version, byVersion[a.version])
		}
	}
	if restored.Version < archived.Version {
		t.Fatalf("the version went back from %d to %d", archived.Version, restored.Version)
	}

	hard := step("HardDeleteStream", func() (eventstore.StreamState, error) { return lc.HardDeleteStream(ctx, "busy", eventstore.Any) })
	waitFor(t, "appends refused after the hard delete", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return refused > 0
	})
	close(stop)
	wg.Wait()
	select {
	case err := <-errs:
		t.Fatal(err)
	default:
	}
	if err := <-tailDone; err != nil {
		t.Fatal(err)
	}
	for _, a := range acks {
		if a.version > hard.Version {
			t.Fatalf("an append was acknowledged at version %d after the hard delete at version %d", a.version, hard.Version)
		}
	}
	// The tailer sees every event of the other stream once, in order.
	mu.Lock()
	want := slices.Clone(otherIDs)
	mu.Unlock()
	deadline := time.Now().Add(waitTimeout)
	for len(tailed) < len(want) && time.Now().Before(deadline) {
		if err := tail(); err != nil {
			t.Fatal(err)
		}
		time.Sleep(5 * time.Millisecond)
	}
	if !slices.Equal(tailed, want) {
		t.Fatalf("the tailer read %d events of the other stream, want the %d appended, in order", len(tailed), len(want))
	}
	if got := recordIDs(readStream(t, ctx, store, "other")); !slices.Equal(got, want) {
		t.Fatalf("the other stream holds %d events, want %d", len(got), len(want))
	}
}

// testRestoreIDTaken: the IDs of archived events leave the log with them,
// so another stream may take one; restoring then fails with a typed error
// and changes nothing. An append retried after its stream was archived is
// refused, not recognised as a retry.
func testRestoreIDTaken(t *testing.T, s *suite) {
	ctx, store, lc := s.lifecycleSetup(t)
	events := numbered("E", 2)
	mustAppend(t, ctx, store, "cold", eventstore.NoStream, events...)
	if _, err := lc.ArchiveStream(ctx, "cold", eventstore.Any); err != nil {
		t.Fatal(err)
	}
	_, err := store.Append(ctx, "cold", eventstore.NoStream, events...)
	requireStreamClosed(t, "retrying the archived append", err, eventstore.ErrStreamArchived, false)

	thief := eventstore.Event{ID: events[1].ID, Type: "Other", Data: []byte(`{}`)}
	mustAppend(t, ctx, store, "thief", eventstore.NoStream, thief)
	_, err = lc.RestoreStream(ctx, "cold")
	var de *eventstore.DuplicateEventError
	if !errors.Is(err, eventstore.ErrDuplicateEvent) || !errors.As(err, &de) || de.StreamID != "cold" || de.EventID != thief.ID {
		t.Fatalf("RestoreStream with a taken event id = %v, want a *DuplicateEventError for stream cold", err)
	}
	requireState(t, ctx, lc, eventstore.StreamState{StreamID: "cold", Status: eventstore.StreamArchived, Version: 2, FirstVersion: 1})
	if got := recordIDs(mustReadArchived(t, ctx, lc, "cold")); !slices.Equal(got, eventIDs(events)) {
		t.Fatalf("the archive after a refused restore holds %v, want %v", got, eventIDs(events))
	}
	requireStream(t, ctx, store, "thief", []eventstore.Event{thief})
}
