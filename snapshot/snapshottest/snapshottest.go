package snapshottest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chronicle-go/chronicle/eventstore"
	"github.com/chronicle-go/chronicle/snapshot"
)

// Run runs the conformance suite as subtests of t. newStore returns an
// empty store for one subtest (it may register cleanups on t).
func Run(t *testing.T, newStore func(t *testing.T) snapshot.Store) {
	t.Helper()
	tests := []struct {
		name string
		fn   func(t *testing.T, s snapshot.Store)
	}{
		{"SaveLoad", testSaveLoad},
		{"LoadMissing", testLoadMissing},
		{"KeepsLatest", testKeepsLatest},
		{"SameVersionReplaces", testSameVersionReplaces},
		{"StreamsAreIndependent", testStreamsAreIndependent},
		{"Delete", testDelete},
		{"TakenAtDefault", testTakenAtDefault},
		{"DataIsCopied", testDataIsCopied},
		{"BinaryAndLargeData", testBinaryAndLargeData},
		{"StreamIDsAreData", testStreamIDsAreData},
		{"InvalidInput", testInvalidInput},
		{"ConcurrentSaves", testConcurrentSaves},
		{"CanceledContext", testCanceledContext},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			tc.fn(t, newStore(t))
		})
	}
}

var t0 = time.Date(2025, 6, 1, 12, 30, 45, 123456000, time.UTC) // microsecond precision, as PostgreSQL keeps it

func snap(stream string, version int64, data string) snapshot.Snapshot {
	return snapshot.Snapshot{StreamID: stream, Type: "Account", Version: version, SchemaVersion: 1, Data: []byte(data), TakenAt: t0}
}

func mustSave(t *testing.T, s snapshot.Store, snaps ...snapshot.Snapshot) {
	t.Helper()
	for _, sn := range snaps {
		if err := s.Save(context.Background(), sn); err != nil {
			t.Fatalf("Save(%s v%d): %v", sn.StreamID, sn.Version, err)
		}
	}
}

func mustLoad(t *testing.T, s snapshot.Store, stream string) snapshot.Snapshot {
	t.Helper()
	got, err := s.Load(context.Background(), stream)
	if err != nil {
		t.Fatalf("Load(%q): %v", stream, err)
	}
	return got
}

func equal(a, b snapshot.Snapshot) bool {
	return a.StreamID == b.StreamID && a.Type == b.Type && a.Version == b.Version &&
		a.SchemaVersion == b.SchemaVersion && bytes.Equal(a.Data, b.Data) && a.TakenAt.Equal(b.TakenAt)
}

func testSaveLoad(t *testing.T, s snapshot.Store) {
	want := snapshot.Snapshot{StreamID: "account-1", Type: "Account", Version: 42, SchemaVersion: 3, Data: []byte(`{"balance":100}`), TakenAt: t0}
	mustSave(t, s, want)
	got := mustLoad(t, s, "account-1")
	if !equal(got, want) {
		t.Fatalf("Load = %+v, want %+v", got, want)
	}
	if got.TakenAt.Location() != time.UTC {
		t.Fatalf("TakenAt %v is not in UTC", got.TakenAt)
	}
	// A TakenAt in another zone is the same instant, returned in UTC.
	zoned := snap("account-2", 1, "x")
	zoned.TakenAt = t0.In(time.FixedZone("UTC+5", 5*3600))
	mustSave(t, s, zoned)
	if got := mustLoad(t, s, "account-2"); !got.TakenAt.Equal(t0) || got.TakenAt.Location() != time.UTC {
		t.Fatalf("TakenAt = %v, want %v", got.TakenAt, t0)
	}
}

func testLoadMissing(t *testing.T, s snapshot.Store) {
	_, err := s.Load(context.Background(), "nobody")
	if !errors.Is(err, snapshot.ErrNotFound) {
		t.Fatalf("Load of a missing snapshot = %v, want ErrNotFound", err)
	}
}

func testKeepsLatest(t *testing.T, s snapshot.Store) {
	mustSave(t, s, snap("account-1", 10, "v10"), snap("account-1", 20, "v20"))
	if got := mustLoad(t, s, "account-1"); got.Version != 20 || string(got.Data) != "v20" {
		t.Fatalf("after saving v10 then v20: got v%d %q", got.Version, got.Data)
	}
	// An older snapshot (a slow writer) does not replace a newer one.
	mustSave(t, s, snap("account-1", 15, "v15"))
	if got := mustLoad(t, s, "account-1"); got.Version != 20 || string(got.Data) != "v20" {
		t.Fatalf("an older snapshot replaced a newer one: got v%d %q", got.Version, got.Data)
	}
}

func testSameVersionReplaces(t *testing.T, s snapshot.Store) {
	old := snap("account-1", 10, "old schema")
	mustSave(t, s, old)
	next := snap("account-1", 10, "new schema")
	next.SchemaVersion = 2
	next.Type = "AccountV2"
	mustSave(t, s, next)
	if got := mustLoad(t, s, "account-1"); !equal(got, next) {
		t.Fatalf("Load = %+v, want %+v", got, next)
	}
}

func testStreamsAreIndependent(t *testing.T, s snapshot.Store) {
	mustSave(t, s, snap("account-1", 5, "one"), snap("account-2", 3, "two"), snap("account-10", 7, "ten"))
	for stream, want := range map[string]string{"account-1": "one", "account-2": "two", "account-10": "ten"} {
		if got := mustLoad(t, s, stream); string(got.Data) != want {
			t.Fatalf("Load(%q) = %q, want %q", stream, got.Data, want)
		}
	}
	if err := s.Delete(context.Background(), "account-2"); err != nil {
		t.Fatal(err)
	}
	if got := mustLoad(t, s, "account-1"); string(got.Data) != "one" {
		t.Fatalf("deleting account-2 changed account-1: %q", got.Data)
	}
}

func testDelete(t *testing.T, s snapshot.Store) {
	ctx := context.Background()
	mustSave(t, s, snap("account-1", 10, "v10"))
	if err := s.Delete(ctx, "account-1"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Load(ctx, "account-1"); !errors.Is(err, snapshot.ErrNotFound) {
		t.Fatalf("Load after Delete = %v, want ErrNotFound", err)
	}
	if err := s.Delete(ctx, "account-1"); err != nil {
		t.Fatalf("deleting a missing snapshot = %v, want nil", err)
	}
	// After a delete, any version can be saved again.
	mustSave(t, s, snap("account-1", 3, "v3"))
	if got := mustLoad(t, s, "account-1"); got.Version != 3 {
		t.Fatalf("after delete and save: version %d, want 3", got.Version)
	}
}

func testTakenAtDefault(t *testing.T, s snapshot.Store) {
	before := time.Now().Add(-time.Minute) // the store's clock may be another machine's
	sn := snap("account-1", 1, "x")
	sn.TakenAt = time.Time{}
	mustSave(t, s, sn)
	got := mustLoad(t, s, "account-1")
	if got.TakenAt.IsZero() || got.TakenAt.Before(before) || got.TakenAt.After(time.Now().Add(time.Minute)) {
		t.Fatalf("TakenAt = %v, want about now", got.TakenAt)
	}
}

func testDataIsCopied(t *testing.T, s snapshot.Store) {
	data := []byte("original")
	sn := snap("account-1", 1, "")
	sn.Data = data
	mustSave(t, s, sn)
	copy(data, "mutated!")
	got := mustLoad(t, s, "account-1")
	if string(got.Data) != "original" {
		t.Fatalf("mutating the saved slice changed the store: %q", got.Data)
	}
	copy(got.Data, "mutated!")
	if again := mustLoad(t, s, "account-1"); string(again.Data) != "original" {
		t.Fatalf("mutating a loaded slice changed the store: %q", again.Data)
	}
}

func testBinaryAndLargeData(t *testing.T, s snapshot.Store) {
	binary := make([]byte, 256)
	for i := range binary {
		binary[i] = byte(i) // NUL bytes and invalid UTF-8 included
	}
	large := bytes.Repeat([]byte("0123456789abcdef"), 1<<16) // 1 MiB
	mustSave(t, s, snap("binary", 1, string(binary)), snap("large", 1, string(large)))
	if got := mustLoad(t, s, "binary"); !bytes.Equal(got.Data, binary) {
		t.Fatalf("binary data came back as %x", got.Data)
	}
	if got := mustLoad(t, s, "large"); !bytes.Equal(got.Data, large) {
		t.Fatalf("1 MiB of data came back as %d bytes", len(got.Data))
	}
}

func testStreamIDsAreData(t *testing.T, s snapshot.Store) {
	for i, id := range []string{`it's`, `a"b`, `x; DROP TABLE chronicle.snapshots; --`, "ünïcödé-✓", `back\slash`, "%_"} {
		mustSave(t, s, snap(id, int64(i+1), id))
	}
	for i, id := range []string{`it's`, `a"b`, `x; DROP TABLE chronicle.snapshots; --`, "ünïcödé-✓", `back\slash`, "%_"} {
		if got := mustLoad(t, s, id); string(got.Data) != id || got.Version != int64(i+1) {
			t.Fatalf("Load(%q) = v%d %q", id, got.Version, got.Data)
		}
	}
	if _, err := s.Load(context.Background(), "%"); !errors.Is(err, snapshot.ErrNotFound) {
		t.Fatalf("Load(%q) = %v, want ErrNotFound: stream IDs are not patterns", "%", err)
	}
}

func testInvalidInput(t *testing.T, s snapshot.Store) {
	ctx := context.Background()
	valid := snap("account-1", 1, "x")
	for _, tc := range []struct {
		name   string
		mutate func(*snapshot.Snapshot)
	}{
		{"EmptyStreamID", func(sn *snapshot.Snapshot) { sn.StreamID = "" }},
		{"LongStreamID", func(sn *snapshot.Snapshot) { sn.StreamID = strings.Repeat("x", eventstore.MaxStreamIDLength+1) }},
		{"InvalidUTF8StreamID", func(sn *snapshot.Snapshot) { sn.StreamID = "a\xffb" }},
		{"ControlCharStreamID", func(sn *snapshot.Snapshot) { sn.StreamID = "a\x00b" }},
		{"EmptyType", func(sn *snapshot.Snapshot) { sn.Type = "" }},
		{"LongType", func(sn *snapshot.Snapshot) { sn.Type = strings.Repeat("T", snapshot.MaxTypeLength+1) }},
		{"ControlCharType", func(sn *snapshot.Snapshot) { sn.Type = "Acc\nount" }},
		{"ZeroVersion", func(sn *snapshot.Snapshot) { sn.Version = 0 }},
		{"NegativeVersion", func(sn *snapshot.Snapshot) { sn.Version = -3 }},
		{"ZeroSchemaVersion", func(sn *snapshot.Snapshot) { sn.SchemaVersion = 0 }},
		{"EmptyData", func(sn *snapshot.Snapshot) { sn.Data = nil }},
	} {
		sn := valid
		tc.mutate(&sn)
		if err := s.Save(ctx, sn); !errors.Is(err, eventstore.ErrInvalidInput) {
			t.Errorf("%s: Save = %v, want ErrInvalidInput", tc.name, err)
		}
	}
	for _, id := range []string{"", "a\xffb", "a\x00b", strings.Repeat("x", eventstore.MaxStreamIDLength+1)} {
		if _, err := s.Load(ctx, id); !errors.Is(err, eventstore.ErrInvalidInput) {
			t.Errorf("Load(%q) = %v, want ErrInvalidInput", id, err)
		}
		if err := s.Delete(ctx, id); !errors.Is(err, eventstore.ErrInvalidInput) {
			t.Errorf("Delete(%q) = %v, want ErrInvalidInput", id, err)
		}
	}
	// Nothing invalid was stored.
	if _, err := s.Load(ctx, "account-1"); !errors.Is(err, snapshot.ErrNotFound) {
		t.Fatalf("Load after invalid saves = %v, want ErrNotFound", err)
	}
}

func testConcurrentSaves(t *testing.T, s snapshot.Store) {
	const writers, each = 8, 10
	versions := rand.Perm(writers * each)
	var wg sync.WaitGroup
	errs := make(chan error, writers*each)
	for w := range writers {
		wg.Go(func() {
			for _, v := range versions[w*each : (w+1)*each] {
				if err := s.Save(context.Background(), snap("account-1", int64(v+1), fmt.Sprint("v", v+1))); err != nil {
					errs <- err
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	got := mustLoad(t, s, "account-1")
	if want := int64(writers * each); got.Version != want || string(got.Data) != fmt.Sprint("v", want) {
		t.Fatalf("after concurrent saves: v%d %q, want v%d: an older snapshot won", got.Version, got.Data, want)
	}
}

func testCanceledContext(t *testing.T, s snapshot.Store) {
	mustSave(t, s, snap("account-1", 1, "x"))
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := s.Save(ctx, snap("account-1", 2, "y")); !errors.Is(err, context.Canceled) {
		t.Errorf("Save with a canceled context = %v, want context.Canceled", err)
	}
	if _, err := s.Load(ctx, "account-1"); !errors.Is(err, context.Canceled) {
		t.Errorf("Load with a canceled context = %v, want context.Canceled", err)
	}
	if err := s.Delete(ctx, "account-1"); !errors.Is(err, context.Canceled) {
		t.Errorf("Delete with a canceled context = %v, want context.Canceled", err)
	}
	if got := mustLoad(t, s, "account-1"); got.Version != 1 {
		t.Fatalf("a canceled call changed the store: version %d", got.Version)
	}
}
