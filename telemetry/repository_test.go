package telemetry_test

import (
	"errors"
	"testing"

	"go.opentelemetry.io/otel/codes"

	"github.com/chronicle-go/chronicle/aggregate"
	"github.com/chronicle-go/chronicle/eventstore"
	"github.com/chronicle-go/chronicle/postgres"
	"github.com/chronicle-go/chronicle/snapshot"
	"github.com/chronicle-go/chronicle/telemetry"
)

type counted struct {
	By int `json:"by"`
}

// counter is the smallest aggregate: a sum of counted events.
type counter struct {
	aggregate.Base
	N int `json:"n"`
}

func (c *counter) Apply(event any) error {
	e, ok := event.(counted)
	if !ok {
		return aggregate.Unhandled(event)
	}
	c.N += e.By
	return nil
}

// TestRepositoryLoadAndSave: an aggregate repository on the wrapped event
// and snapshot stores. Its save is an append span (and a snapshot save);
// its load keeps the PostgreSQL one-round-trip read of the snapshot and
// the events (one load_stream span, no separate read).
func TestRepositoryLoadAndSave(t *testing.T) {
	t.Parallel()
	f := setup(t)
	ctx := t.Context()
	reg := eventstore.NewRegistry(nil)
	if err := eventstore.Register[counted](reg, "Counted"); err != nil {
		t.Fatal(err)
	}
	pgSnaps, err := postgres.NewSnapshotStore(f.pool, nil)
	if err != nil {
		t.Fatal(err)
	}
	snaps, err := telemetry.NewSnapshotStore(pgSnaps, f.cfg)
	if err != nil {
		t.Fatal(err)
	}
	repo, err := aggregate.NewRepository[counter](f.store, reg, &aggregate.Config{Snapshots: snaps, SnapshotPolicy: snapshot.EveryN(1)})
	if err != nil {
		t.Fatal(err)
	}
	c := repo.New("counter-1")
	for range 3 {
		if err := aggregate.Record(c, counted{By: 2}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := repo.Save(ctx, c); err != nil {
		t.Fatal(err)
	}
	if len(f.spansNamed(telemetry.SpanAppend)) != 1 {
		t.Errorf("save: %d append spans, want 1", len(f.spansNamed(telemetry.SpanAppend)))
	}
	if s := f.spansNamed(telemetry.SpanSnapshotSave); len(s) != 1 || attr(s[0], telemetry.AttrStreamVersion).AsInt64() != 3 {
		t.Fatalf("save: snapshot save spans %v, want one at version 3", s)
	}

	f.spans.Reset()
	got, err := repo.Load(ctx, "counter-1")
	if err != nil || got.N != 6 {
		t.Fatalf("load: %+v, %v", got, err)
	}
	ls := f.spansNamed(telemetry.SpanSnapshotLoadStream)
	if len(ls) != 1 || attr(ls[0], telemetry.AttrOutcome).AsString() != "ok" {
		t.Fatalf("load: load_stream spans %v", ls)
	}
	if n := len(f.spansNamed(telemetry.SpanReadStream)) + len(f.spansNamed(telemetry.SpanReadStreamPayloads)) + len(f.spansNamed(telemetry.SpanSnapshotLoad)); n != 0 {
		t.Errorf("load: %d separate snapshot and stream reads; the one-round-trip load was lost", n)
	}
}

// TestRepositoryInTransaction: a repository bound to a transaction view
// through the wrappers (Store.With, SnapshotStore.BindTx) appends and
// snapshots in the caller's transaction, traced.
func TestRepositoryInTransaction(t *testing.T) {
	t.Parallel()
	f := setup(t)
	ctx := t.Context()
	reg := eventstore.NewRegistry(nil)
	if err := eventstore.Register[counted](reg, "Counted"); err != nil {
		t.Fatal(err)
	}
	pgSnaps, err := postgres.NewSnapshotStore(f.pool, nil)
	if err != nil {
		t.Fatal(err)
	}
	snaps, err := telemetry.NewSnapshotStore(pgSnaps, f.cfg)
	if err != nil {
		t.Fatal(err)
	}
	repo, err := aggregate.NewRepository[counter](f.store, reg, &aggregate.Config{Snapshots: snaps, SnapshotPolicy: snapshot.EveryN(1)})
	if err != nil {
		t.Fatal(err)
	}
	tx, err := f.pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(ctx)
	view, err := f.store.With(f.pg.InTx(tx))
	if err != nil {
		t.Fatal(err)
	}
	c := repo.With(view).New("counter-tx")
	if err := aggregate.Record(c, counted{By: 5}); err != nil {
		t.Fatal(err)
	}
	if _, err := repo.With(view).Save(ctx, c); err != nil {
		t.Fatal(err)
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	if s := f.spansNamed(telemetry.SpanAppend); len(s) != 1 || attr(s[0], telemetry.AttrStreamID).AsString() != "counter-tx" {
		t.Errorf("append spans %v", s)
	}
	if s := f.spansNamed(telemetry.SpanSnapshotSave); len(s) != 1 || s[0].Status().Code == codes.Error {
		t.Errorf("snapshot save spans %v: the snapshot store was not bound to the transaction", s)
	}
	if snap, err := pgSnaps.Load(ctx, "counter-tx"); err != nil || snap.Version != 1 {
		t.Errorf("snapshot after commit: %+v, %v", snap, err)
	}
	if _, err := f.store.With(nil); !errors.Is(err, eventstore.ErrInvalidInput) {
		t.Errorf("With(nil): %v", err)
	}
}
