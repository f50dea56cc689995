package postgres_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/chronicle-go/chronicle/aggregate"
	"github.com/chronicle-go/chronicle/eventstore"
	"github.com/chronicle-go/chronicle/postgres"
	"github.com/chronicle-go/chronicle/snapshot"
)

// A truncated stream loads through the snapshot store's one-query path
// (snapshot.StreamLoader) from a snapshot at the truncation point; a hard
// delete removes the snapshot with the events.
func TestLifecycleAggregateWithSnapshots(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	events, snaps, pool := pgSetup(t)
	repo, _ := pgRepository(t, events, snaps, aggregate.Config{SnapshotPolicy: snapshot.EveryN(6)})
	for range 10 {
		if _, err := repo.Update(ctx, "acc-1", func(a *pgAccount) error { return aggregate.Record(a, pgDeposited{Amount: 1}) }); err != nil {
			t.Fatal(err)
		}
	}
	if s, err := snaps.Load(ctx, "acc-1"); err != nil || s.Version != 6 {
		t.Fatalf("snapshot = %+v, %v; want one at version 6", s, err)
	}
	if _, err := events.TruncateStream(ctx, "acc-1", 7); err != nil {
		t.Fatal(err)
	}
	a, err := repo.Load(ctx, "acc-1")
	if err != nil || a.Balance != 10 || a.Version() != 10 || a.SnapshotVersion() != 6 {
		t.Fatalf("Load after truncation = %+v, %v; want balance 10 at version 10 from the snapshot at 6", a, err)
	}
	if _, err := events.TruncateStream(ctx, "acc-1", 9); err != nil {
		t.Fatal(err)
	}
	_, err = repo.Load(ctx, "acc-1")
	var te *aggregate.StreamTruncatedError
	if !errors.As(err, &te) || te.FirstVersion != 9 || te.Version != 0 {
		t.Fatalf("Load truncated past the snapshot = %v, want a *StreamTruncatedError at first version 9", err)
	}

	if _, err := events.HardDeleteStream(ctx, "acc-1", eventstore.Exact(10)); err != nil {
		t.Fatal(err)
	}
	if _, err := snaps.Load(ctx, "acc-1"); !errors.Is(err, snapshot.ErrNotFound) {
		t.Fatalf("snapshot after a hard delete: %v, want ErrNotFound", err)
	}
	var n int
	if err := pool.QueryRow(ctx, `SELECT count(*) FROM chronicle.events WHERE stream_id = 'acc-1'`).Scan(&n); err != nil || n != 0 {
		t.Fatalf("%d events left after a hard delete (%v)", n, err)
	}
	if _, err := repo.Update(ctx, "acc-1", func(a *pgAccount) error { return aggregate.Record(a, pgDeposited{Amount: 1}) }); !errors.Is(err, eventstore.ErrStreamDeleted) {
		t.Fatalf("Update of a hard-deleted stream = %v, want ErrStreamDeleted", err)
	}
}

// An append in the caller's transaction to a closed stream fails with the
// typed error and leaves the transaction usable.
func TestLifecycleAppendTx(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	events, _, pool := pgSetup(t)
	if _, err := events.Append(ctx, "cold", eventstore.NoStream, eventstore.Event{Type: "E", Data: []byte(`{}`)}); err != nil {
		t.Fatal(err)
	}
	if _, err := events.ArchiveStream(ctx, "cold", eventstore.Any); err != nil {
		t.Fatal(err)
	}
	err := pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		_, err := events.AppendTx(ctx, tx, "cold", eventstore.Any, eventstore.Event{Type: "E", Data: []byte(`{}`)})
		if !errors.Is(err, eventstore.ErrStreamArchived) {
			t.Errorf("AppendTx to an archived stream = %v, want ErrStreamArchived", err)
		}
		_, err = events.AppendStreamsTx(ctx, tx,
			eventstore.StreamAppend{StreamID: "warm", Expected: eventstore.NoStream, Events: []eventstore.Event{{Type: "E", Data: []byte(`{}`)}}},
			eventstore.StreamAppend{StreamID: "cold", Expected: eventstore.Exact(1), Events: []eventstore.Event{{Type: "E", Data: []byte(`{}`)}}})
		if !errors.Is(err, eventstore.ErrStreamArchived) {
			t.Errorf("AppendStreamsTx with an archived stream = %v, want ErrStreamArchived", err)
		}
		if _, err := events.InTx(tx).StreamVersion(ctx, "cold"); !errors.Is(err, eventstore.ErrStreamArchived) {
			t.Errorf("StreamVersion in a transaction = %v, want ErrStreamArchived", err)
		}
		_, err = events.AppendTx(ctx, tx, "warm", eventstore.NoStream, eventstore.Event{Type: "E", Data: []byte(`{}`)})
		return err
	})
	if err != nil {
		t.Fatalf("the transaction after refused appends: %v", err)
	}
	if v, err := events.StreamVersion(ctx, "warm"); err != nil || v != 1 {
		t.Fatalf("warm = %d, %v; want version 1", v, err)
	}
}

// A lifecycle operation waits for a transaction that appended to the
// stream and has not committed, then includes its events: nothing that
// commits is left behind in the log or lost.
func TestLifecycleWaitsForOpenAppend(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	events, _, pool := pgSetup(t)
	if _, err := events.Append(ctx, "s", eventstore.NoStream, eventstore.Event{Type: "E", Data: []byte(`{}`)}); err != nil {
		t.Fatal(err)
	}
	tx, err := pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(ctx)
	late := eventstore.Event{ID: eventstore.NewEventID(), Type: "E", Data: []byte(`{"late":true}`)}
	if _, err := events.AppendTx(ctx, tx, "s", eventstore.Exact(1), late); err != nil {
		t.Fatal(err)
	}
	type result struct {
		st  eventstore.StreamState
		err error
	}
	done := make(chan result, 1)
	go func() {
		st, err := events.ArchiveStream(ctx, "s", eventstore.Any)
		done <- result{st, err}
	}()
	// Wait until the archive waits for the head row's lock.
	for {
		var waiting bool
		if err := pool.QueryRow(ctx, `SELECT EXISTS (SELECT FROM pg_stat_activity
			WHERE wait_event_type = 'Lock' AND query LIKE '%FOR UPDATE%' AND datname = current_database())`).Scan(&waiting); err != nil {
			t.Fatal(err)
		}
		if waiting {
			break
		}
		select {
		case r := <-done:
			t.Fatalf("ArchiveStream returned %+v, %v while a transaction that appended was open", r.st, r.err)
		case <-time.After(10 * time.Millisecond):
		}
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	r := <-done
	if r.err != nil || r.st.Version != 2 {
		t.Fatalf("ArchiveStream = %+v, %v; want the stream archived at version 2", r.st, r.err)
	}
	recs, err := events.ReadArchivedStream(ctx, "s", eventstore.ReadStreamOptions{})
	if err != nil || len(recs) != 2 || recs[1].EventID != late.ID {
		t.Fatalf("archived events = %d, %v; want both, the late one last", len(recs), err)
	}
}

var _ eventstore.Lifecycle = (*postgres.Store)(nil)
