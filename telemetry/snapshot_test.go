package telemetry_test

import (
	"errors"
	"testing"

	"go.opentelemetry.io/otel/codes"

	"github.com/chronicle-go/chronicle/eventstore"
	"github.com/chronicle-go/chronicle/memory"
	"github.com/chronicle-go/chronicle/postgres"
	"github.com/chronicle-go/chronicle/snapshot"
	"github.com/chronicle-go/chronicle/telemetry"
)

func TestSnapshotStore(t *testing.T) {
	t.Parallel()
	f := setup(t)
	ctx := t.Context()
	pgSnaps, err := postgres.NewSnapshotStore(f.pool, nil)
	if err != nil {
		t.Fatal(err)
	}
	snaps, err := telemetry.NewSnapshotStore(pgSnaps, f.cfg)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.store.Append(ctx, "acc-1", eventstore.NoStream, event("Opened", `{}`), event("Deposited", `{}`)); err != nil {
		t.Fatal(err)
	}
	if _, err := snaps.Load(ctx, "acc-1"); !errors.Is(err, snapshot.ErrNotFound) {
		t.Fatalf("Load before Save: %v", err)
	}
	if err := snaps.Save(ctx, snapshot.Snapshot{StreamID: "acc-1", Type: "Account", Version: 1, SchemaVersion: 1, Data: []byte(`{"balance":0}`)}); err != nil {
		t.Fatal(err)
	}
	// Behind a telemetry Store, the PostgreSQL one-round-trip load still
	// works: the event store is unwrapped for it.
	if _, err := pgSnaps.LoadStream(ctx, f.store, "acc-1", "Account", 1, 10); !errors.Is(err, errors.ErrUnsupported) {
		t.Fatalf("the postgres snapshot store reads a wrapped store directly (%v): this test no longer shows the unwrapping", err)
	}
	res, err := snaps.LoadStream(ctx, f.store, "acc-1", "Account", 1, 10)
	if err != nil || !res.Usable() || len(res.Records) != 2 {
		t.Fatalf("LoadStream: %+v, %v", res, err)
	}
	if err := snaps.Delete(ctx, "acc-1"); err != nil {
		t.Fatal(err)
	}

	for name, wantOutcome := range map[string]string{
		telemetry.SpanSnapshotSave: "ok", telemetry.SpanSnapshotLoadStream: "ok", telemetry.SpanSnapshotDelete: "ok",
		telemetry.SpanSnapshotLoad: "not_found",
	} {
		s := f.spansNamed(name)
		if len(s) != 1 || attr(s[0], telemetry.AttrOutcome).AsString() != wantOutcome || s[0].Status().Code == codes.Error ||
			attr(s[0], telemetry.AttrStreamID).AsString() != "acc-1" {
			t.Errorf("%s spans: %v", name, s)
		}
	}
	rm := f.collect(t)
	if p := find(t, rm, telemetry.MetricSnapshotDuration, telemetry.AttrOperation.String("load"), telemetry.AttrOutcome.String("not_found")); p.count != 1 {
		t.Errorf("snapshot load not_found count %d", p.count)
	}

	// A snapshot store that cannot load streams says so: the repository
	// then reads the snapshot and the events apart.
	mem, err := telemetry.NewSnapshotStore(memory.NewSnapshotStore(nil), f.cfg)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := mem.LoadStream(ctx, f.store, "acc-1", "Account", 1, 10); !errors.Is(err, errors.ErrUnsupported) {
		t.Errorf("LoadStream on a memory snapshot store: %v, want ErrUnsupported", err)
	}
	if _, err := telemetry.NewSnapshotStore(nil, nil); !errors.Is(err, eventstore.ErrInvalidInput) {
		t.Errorf("nil: %v", err)
	}
}
