package postgres_test

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"reflect"
	"strings"
	"sync"
	"testing"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/chronicle-go/chronicle/aggregate"
	"github.com/chronicle-go/chronicle/eventstore"
	"github.com/chronicle-go/chronicle/memory"
	"github.com/chronicle-go/chronicle/postgres"
	"github.com/chronicle-go/chronicle/postgres/postgrestest"
	"github.com/chronicle-go/chronicle/snapshot"
	"github.com/chronicle-go/chronicle/snapshot/snapshottest"
)

func TestSnapshotStoreConformance(t *testing.T) {
	t.Parallel()
	snapshottest.Run(t, func(t *testing.T) snapshot.Store {
		s, err := postgres.NewSnapshotStore(postgrestest.Pool(t), nil)
		if err != nil {
			t.Fatal(err)
		}
		return s
	})
}

func TestSnapshotStoreConfig(t *testing.T) {
	t.Parallel()
	if _, err := postgres.NewSnapshotStore(nil, nil); !errors.Is(err, eventstore.ErrInvalidInput) {
		t.Fatalf("NewSnapshotStore(nil pool) = %v, want ErrInvalidInput", err)
	}
	pool := postgrestest.Pool(t)
	if _, err := postgres.NewSnapshotStore(pool, &postgres.SnapshotStoreConfig{MaxSize: -1}); !errors.Is(err, eventstore.ErrInvalidInput) {
		t.Fatalf("NewSnapshotStore(MaxSize -1) = %v, want ErrInvalidInput", err)
	}
	s, err := postgres.NewSnapshotStore(pool, &postgres.SnapshotStoreConfig{MaxSize: 4})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	sn := snapshot.Snapshot{StreamID: "a", Type: "T", Version: 1, SchemaVersion: 1, Data: []byte("12345")}
	if err := s.Save(ctx, sn); !errors.Is(err, eventstore.ErrInvalidInput) {
		t.Fatalf("Save of 5 bytes with MaxSize 4 = %v, want ErrInvalidInput", err)
	}
	sn.Data = sn.Data[:4]
	if err := s.Save(ctx, sn); err != nil {
		t.Fatal(err)
	}
}

func TestSnapshotStoreSchemaMissing(t *testing.T) {
	t.Parallel()
	pool := postgrestest.Pool(t)
	ctx := context.Background()
	if _, err := pool.Exec(ctx, "DROP TABLE chronicle.snapshots"); err != nil {
		t.Fatal(err)
	}
	s, err := postgres.NewSnapshotStore(pool, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Save(ctx, snapshot.Snapshot{StreamID: "a", Type: "T", Version: 1, SchemaVersion: 1, Data: []byte("x")}); !errors.Is(err, postgres.ErrSchemaMissing) {
		t.Fatalf("Save without the table = %v, want ErrSchemaMissing", err)
	}
	if _, err := s.Load(ctx, "a"); !errors.Is(err, postgres.ErrSchemaMissing) {
		t.Fatalf("Load without the table = %v, want ErrSchemaMissing", err)
	}
}

// pgSetup returns an event store and a snapshot store on one fresh database.
func pgSetup(t testing.TB) (*postgres.Store, *postgres.SnapshotStore, *pgxpool.Pool) {
	t.Helper()
	pool := postgrestest.Pool(t)
	events, err := postgres.New(pool, &postgres.Config{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(events.Close)
	snaps, err := postgres.NewSnapshotStore(pool, nil)
	if err != nil {
		t.Fatal(err)
	}
	return events, snaps, pool
}

func appendDeposits(t testing.TB, s eventstore.Store, stream string, n int) {
	t.Helper()
	ctx := context.Background()
	const batch = 1000
	for done := 0; done < n; {
		k := min(batch, n-done)
		evs := make([]eventstore.Event, k)
		for i := range evs {
			evs[i] = eventstore.Event{
				Type:     "Deposited",
				Data:     []byte(`{"account_id":"acc-000123","amount":1,"currency":"EUR","note":"deposit via ATM 42"}`),
				Metadata: eventstore.Metadata{CorrelationID: "c", Headers: map[string]string{"k": "v"}},
			}
		}
		if _, err := s.Append(ctx, stream, eventstore.Any, evs...); err != nil {
			t.Fatal(err)
		}
		done += k
	}
}

func TestSnapshotLoadStream(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	events, snaps, pool := pgSetup(t)
	appendDeposits(t, events, "acc-1", 10)
	all, err := events.ReadStream(ctx, "acc-1", eventstore.ReadStreamOptions{})
	if err != nil {
		t.Fatal(err)
	}
	put := func(s snapshot.Snapshot) {
		t.Helper()
		if err := snaps.Delete(ctx, s.StreamID); err != nil {
			t.Fatal(err)
		}
		if err := snaps.Save(ctx, s); err != nil {
			t.Fatal(err)
		}
	}
	load := func(stream string, limit int) snapshot.StreamLoad {
		t.Helper()
		res, err := snaps.LoadStream(ctx, events, stream, "Account", 2, limit)
		if err != nil {
			t.Fatal(err)
		}
		return res
	}

	// No snapshot: the events from version 1, exactly as ReadStream returns them.
	res := load("acc-1", 100)
	if res.Found || res.Usable() || !reflect.DeepEqual(res.Records, all) {
		t.Fatalf("without a snapshot: found %v, %d records (equal to ReadStream: %v)", res.Found, len(res.Records), reflect.DeepEqual(res.Records, all))
	}
	if res := load("acc-1", 3); len(res.Records) != 3 || res.Records[2].StreamVersion != 3 {
		t.Fatalf("limit 3: %d records", len(res.Records))
	}
	// No snapshot, no events.
	if res := load("nobody", 100); res.Found || len(res.Records) != 0 {
		t.Fatalf("empty stream: %+v", res)
	}

	// A usable snapshot: its data and the events from the covered one.
	want := snapshot.Snapshot{StreamID: "acc-1", Type: "Account", Version: 6, SchemaVersion: 2, Data: []byte{0, 1, 2, 0xff}}
	put(want)
	res = load("acc-1", 100)
	stored, err := snaps.Load(ctx, "acc-1")
	if err != nil {
		t.Fatal(err)
	}
	if !res.Found || !res.Usable() || !bytes.Equal(res.Snapshot.Data, want.Data) || res.Snapshot.Version != 6 ||
		res.Snapshot.Type != "Account" || res.Snapshot.SchemaVersion != 2 || !res.Snapshot.TakenAt.Equal(stored.TakenAt) {
		t.Fatalf("usable snapshot: %+v", res.Snapshot)
	}
	if !reflect.DeepEqual(res.Records, all[5:]) {
		t.Fatalf("usable snapshot: records %d.., want the events from version 6 as ReadStream returns them", res.Records[0].StreamVersion)
	}
	if res := load("acc-1", 2); len(res.Records) != 2 || res.Records[0].StreamVersion != 6 || !res.Usable() {
		t.Fatalf("usable snapshot, limit 2: %d records from %d", len(res.Records), res.Records[0].StreamVersion)
	}

	// Another schema version or type: found, no data, events from 1.
	for _, stale := range []snapshot.Snapshot{
		{StreamID: "acc-1", Type: "Account", Version: 6, SchemaVersion: 1, Data: []byte("x")},
		{StreamID: "acc-1", Type: "Order", Version: 6, SchemaVersion: 2, Data: []byte("x")},
	} {
		put(stale)
		res := load("acc-1", 100)
		if !res.Found || res.Usable() || res.Snapshot.Data != nil || res.Snapshot.Type != stale.Type || res.Snapshot.SchemaVersion != stale.SchemaVersion {
			t.Fatalf("stale snapshot %s/%d: %+v", stale.Type, stale.SchemaVersion, res.Snapshot)
		}
		if !reflect.DeepEqual(res.Records, all) {
			t.Fatalf("stale snapshot %s/%d: records do not start at 1", stale.Type, stale.SchemaVersion)
		}
	}

	// A snapshot ahead of its stream: usable, no records.
	put(snapshot.Snapshot{StreamID: "acc-1", Type: "Account", Version: 50, SchemaVersion: 2, Data: []byte("x")})
	if res := load("acc-1", 100); !res.Usable() || len(res.Records) != 0 {
		t.Fatalf("snapshot ahead: usable %v, %d records", res.Usable(), len(res.Records))
	}
	put(snapshot.Snapshot{StreamID: "ghost", Type: "Account", Version: 1, SchemaVersion: 2, Data: []byte("x")})
	if res := load("ghost", 100); !res.Usable() || len(res.Records) != 0 {
		t.Fatalf("snapshot without events: usable %v, %d records", res.Usable(), len(res.Records))
	}

	// Bad input and other event stores.
	if _, err := snaps.LoadStream(ctx, events, "", "Account", 2, 10); !errors.Is(err, eventstore.ErrInvalidInput) {
		t.Fatalf("empty stream id: %v", err)
	}
	if _, err := snaps.LoadStream(ctx, events, "acc-1", "Account", 2, 0); !errors.Is(err, eventstore.ErrInvalidInput) {
		t.Fatalf("limit 0: %v", err)
	}
	if _, err := snaps.LoadStream(ctx, memory.New(nil), "acc-1", "Account", 2, 10); !errors.Is(err, errors.ErrUnsupported) {
		t.Fatalf("memory event store: %v, want ErrUnsupported", err)
	}
	otherPool, err := pgxpool.New(ctx, pool.Config().ConnString())
	if err != nil {
		t.Fatal(err)
	}
	defer otherPool.Close()
	other, err := postgres.New(otherPool, &postgres.Config{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	if _, err := snaps.LoadStream(ctx, other, "acc-1", "Account", 2, 10); !errors.Is(err, errors.ErrUnsupported) {
		t.Fatalf("event store on another pool: %v, want ErrUnsupported", err)
	}
}

// The aggregate of the repository tests.

type pgDeposited struct {
	Amount int64 `json:"amount"`
}

type pgAccount struct {
	aggregate.Base
	Balance int64 `json:"balance"`
}

func (a *pgAccount) Apply(event any) error {
	switch e := event.(type) {
	case pgDeposited:
		a.Balance += e.Amount
	default:
		return aggregate.Unhandled(event)
	}
	return nil
}

type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func pgRepository(t testing.TB, events eventstore.Store, snaps snapshot.Store, cfg aggregate.Config) (*aggregate.Repository[pgAccount, *pgAccount], *syncBuffer) {
	t.Helper()
	reg := eventstore.NewRegistry(nil)
	eventstore.MustRegister[pgDeposited](reg, "Deposited")
	logs := &syncBuffer{}
	cfg.Snapshots = snaps
	cfg.Logger = slog.New(slog.NewTextHandler(logs, nil))
	repo, err := aggregate.NewRepository[pgAccount](events, reg, &cfg)
	if err != nil {
		t.Fatal(err)
	}
	return repo, logs
}

func TestSnapshotRepository(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	events, snaps, pool := pgSetup(t)
	repo, logs := pgRepository(t, events, snaps, aggregate.Config{SnapshotPolicy: snapshot.EveryN(10)})
	for range 25 {
		if _, err := repo.Update(ctx, "acc-1", func(a *pgAccount) error { return aggregate.Record(a, pgDeposited{Amount: 2}) }); err != nil {
			t.Fatal(err)
		}
	}
	s, err := snaps.Load(ctx, "acc-1")
	if err != nil {
		t.Fatal(err)
	}
	if s.Version != 20 || s.Type != "pgAccount" || string(s.Data) != `{"balance":40}` {
		t.Fatalf("snapshot v%d %s %s, want v20 pgAccount {\"balance\":40}", s.Version, s.Type, s.Data)
	}
	check := func(what string, wantSnapshot int64) {
		t.Helper()
		a, err := repo.Load(ctx, "acc-1")
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		if a.Balance != 50 || a.Version() != 25 || a.SnapshotVersion() != wantSnapshot {
			t.Fatalf("%s: balance %d version %d snapshot %d, want 50 25 %d", what, a.Balance, a.Version(), a.SnapshotVersion(), wantSnapshot)
		}
	}
	check("load from the snapshot", 20)

	// Time travel before the snapshot replays the events.
	for _, v := range []int64{5, 20, 23} {
		a, err := repo.LoadVersion(ctx, "acc-1", v)
		if err != nil || a.Balance != 2*v {
			t.Fatalf("LoadVersion(%d) = %v, %v", v, a, err)
		}
	}

	// A corrupt snapshot in the table is ignored and replaced.
	if _, err := pool.Exec(ctx, `UPDATE chronicle.snapshots SET data = '\x00ff'::bytea WHERE stream_id = 'acc-1'`); err != nil {
		t.Fatal(err)
	}
	check("load past a corrupt snapshot (which it replaces)", 25)
	if !strings.Contains(logs.String(), "cannot decode the snapshot") {
		t.Fatalf("the corrupt snapshot was not logged:\n%s", logs.String())
	}
	check("load from the replacement", 25)

	// A repository with a new snapshot schema version ignores and replaces it.
	v2, _ := pgRepository(t, events, snaps, aggregate.Config{SnapshotSchemaVersion: 2})
	a, err := v2.Load(ctx, "acc-1")
	if err != nil || a.Balance != 50 || a.SnapshotVersion() != 25 {
		t.Fatalf("schema 2 load = %v, %v", a, err)
	}
	if s, err := snaps.Load(ctx, "acc-1"); err != nil || s.SchemaVersion != 2 || s.Version != 25 {
		t.Fatalf("snapshot after the schema 2 load: %+v, %v", s, err)
	}

	// Without the snapshots table, saves and loads still work from events.
	if _, err := pool.Exec(ctx, "DROP TABLE chronicle.snapshots"); err != nil {
		t.Fatal(err)
	}
	for range 10 {
		if _, err := repo.Update(ctx, "acc-1", func(a *pgAccount) error { return aggregate.Record(a, pgDeposited{Amount: 1}) }); err != nil {
			t.Fatalf("Update without the snapshots table: %v", err)
		}
	}
	if a, err := repo.Load(ctx, "acc-1"); err != nil || a.Balance != 60 || a.Version() != 35 {
		t.Fatalf("Load without the snapshots table = %v, %v", a, err)
	}
	if !strings.Contains(logs.String(), "snapshot not taken") {
		t.Fatalf("the failed snapshot was not logged:\n%s", logs.String())
	}
}

func BenchmarkLoad10kSnapshot(b *testing.B) {
	events, snaps, _ := pgSetup(b)
	appendDeposits(b, events, "acc-1", 10_000)
	ctx := context.Background()
	for _, tc := range []struct {
		name  string
		snaps snapshot.Store
	}{
		{"WithoutSnapshot", nil},
		{"WithSnapshot", snaps},
	} {
		b.Run(tc.name, func(b *testing.B) {
			cfg := aggregate.Config{SnapshotPolicy: snapshot.Never()}
			repo, _ := pgRepository(b, events, snaps, cfg)
			if tc.snaps == nil {
				reg := eventstore.NewRegistry(nil)
				eventstore.MustRegister[pgDeposited](reg, "Deposited")
				r, err := aggregate.NewRepository[pgAccount](events, reg, nil)
				if err != nil {
					b.Fatal(err)
				}
				repo = r
			} else {
				a, err := repo.Load(ctx, "acc-1")
				if err != nil {
					b.Fatal(err)
				}
				if err := repo.Snapshot(ctx, a); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportAllocs()
			for b.Loop() {
				a, err := repo.Load(ctx, "acc-1")
				if err != nil {
					b.Fatal(err)
				}
				if a.Balance != 10_000 {
					b.Fatalf("balance %d", a.Balance)
				}
			}
		})
	}
}
