package postgres_test

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/chronicle-go/chronicle/aggregate"
	"github.com/chronicle-go/chronicle/eventstore"
	"github.com/chronicle-go/chronicle/memory"
	"github.com/chronicle-go/chronicle/postgres"
	"github.com/chronicle-go/chronicle/postgres/postgrestest"
	"github.com/chronicle-go/chronicle/snapshot"
	"github.com/chronicle-go/chronicle/snapshot/snapshottest"
)

// The aggregate of the transaction tests: a wallet whose payments are
// business rows written in the same transaction as its events.

type txDeposited struct {
	Amount int64 `json:"amount"`
}

type txWithdrawn struct {
	Amount int64 `json:"amount"`
}

var errTxNoFunds = errors.New("insufficient funds")

type txWallet struct {
	aggregate.Base
	Balance int64 `json:"balance"`
}

func (w *txWallet) Apply(event any) error {
	switch e := event.(type) {
	case txDeposited:
		w.Balance += e.Amount
	case txWithdrawn:
		w.Balance -= e.Amount
	default:
		return aggregate.Unhandled(event)
	}
	return nil
}

func (w *txWallet) Deposit(n int64) error { return aggregate.Record(w, txDeposited{Amount: n}) }

func (w *txWallet) Withdraw(n int64) error {
	if n > w.Balance {
		return errTxNoFunds
	}
	return aggregate.Record(w, txWithdrawn{Amount: n})
}

type txFixture struct {
	pool   *pgxpool.Pool
	events *postgres.Store
	snaps  *postgres.SnapshotStore
	reg    *eventstore.Registry
	repo   *aggregate.Repository[txWallet, *txWallet]
}

// setupTx returns a wallet repository on a fresh database with a payments
// table, snapshotting every event so that each save also writes a
// snapshot.
func setupTx(t testing.TB) *txFixture {
	t.Helper()
	f := &txFixture{pool: postgrestest.Pool(t), reg: eventstore.NewRegistry(nil)}
	var err error
	if f.events, err = postgres.New(f.pool, &postgres.Config{Logger: slog.New(slog.DiscardHandler)}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(f.events.Close)
	if f.snaps, err = postgres.NewSnapshotStore(f.pool, nil); err != nil {
		t.Fatal(err)
	}
	eventstore.MustRegister[txDeposited](f.reg, "Deposited")
	eventstore.MustRegister[txWithdrawn](f.reg, "Withdrawn")
	f.repo, err = aggregate.NewRepository[txWallet](f.events, f.reg, &aggregate.Config{
		Snapshots:      f.snaps,
		SnapshotPolicy: snapshot.EveryN(1),
		Logger:         slog.New(slog.DiscardHandler),
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.pool.Exec(context.Background(), `CREATE TABLE payments (id text PRIMARY KEY, wallet text NOT NULL, amount bigint NOT NULL)`); err != nil {
		t.Fatal(err)
	}
	return f
}

func (f *txFixture) payments(t testing.TB) int {
	t.Helper()
	var n int
	if err := f.pool.QueryRow(context.Background(), `SELECT count(*) FROM payments`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

func (f *txFixture) version(t testing.TB, stream string) int64 {
	t.Helper()
	v, err := f.events.StreamVersion(context.Background(), stream)
	if errors.Is(err, eventstore.ErrStreamNotFound) {
		return 0
	}
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func (f *txFixture) snapshotVersion(t testing.TB, stream string) int64 {
	t.Helper()
	s, err := f.snaps.Load(context.Background(), stream)
	if errors.Is(err, snapshot.ErrNotFound) {
		return 0
	}
	if err != nil {
		t.Fatal(err)
	}
	return s.Version
}

// pay records a payment row and withdraws its amount from the wallet, in
// tx.
func (f *txFixture) pay(ctx context.Context, tx pgx.Tx, id, wallet string, amount int64) (*txWallet, error) {
	if _, err := tx.Exec(ctx, `INSERT INTO payments (id, wallet, amount) VALUES ($1, $2, $3)`, id, wallet, amount); err != nil {
		return nil, err
	}
	return f.repo.With(f.events.InTx(tx)).Update(ctx, wallet, func(w *txWallet) error { return w.Withdraw(amount) })
}

func (f *txFixture) deposit(t testing.TB, wallet string, amount int64) {
	t.Helper()
	if _, err := f.repo.Update(context.Background(), wallet, func(w *txWallet) error { return w.Deposit(amount) }); err != nil {
		t.Fatal(err)
	}
}

func TestRepositoryInTxCommit(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	f := setupTx(t)

	tx, err := f.pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(ctx)
	bound := f.repo.With(f.events.InTx(tx))
	w := bound.New("wallet-1")
	if err := w.Deposit(100); err != nil {
		t.Fatal(err)
	}
	res, err := bound.Save(ctx, w)
	if err != nil {
		t.Fatal(err)
	}
	if res.StreamID != "wallet-1" || res.Version != 1 || res.Position.IsZero() {
		t.Fatalf("Save = %+v, want wallet-1 at version 1 with a position", res)
	}
	w, err = f.pay(ctx, tx, "pay-1", "wallet-1", 30)
	if err != nil || w.Balance != 70 || w.Version() != 2 {
		t.Fatalf("pay = %v, %v; want balance 70 at version 2", w, err)
	}
	// Inside the transaction its events and snapshot are visible; outside
	// they are not, until it commits.
	if got, err := bound.Load(ctx, "wallet-1"); err != nil || got.Balance != 70 || got.SnapshotVersion() != 2 {
		t.Fatalf("Load in the transaction = %v, %v; want balance 70 from the snapshot at version 2", got, err)
	}
	if f.version(t, "wallet-1") != 0 || f.snapshotVersion(t, "wallet-1") != 0 || f.payments(t) != 0 {
		t.Fatal("the transaction's writes are visible before it commits")
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}

	if f.version(t, "wallet-1") != 2 || f.snapshotVersion(t, "wallet-1") != 2 || f.payments(t) != 1 {
		t.Fatalf("after commit: version %d, snapshot %d, %d payments; want 2 2 1",
			f.version(t, "wallet-1"), f.snapshotVersion(t, "wallet-1"), f.payments(t))
	}
	// The result's position is the event's: a reader of the global order
	// reaches it once the transaction committed (read-your-writes).
	recs, err := f.events.ReadStream(ctx, "wallet-1", eventstore.ReadStreamOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if recs[0].Position != res.Position {
		t.Fatalf("event 1 at %v, Save reported %v", recs[0].Position, res.Position)
	}
	// The head passes it once every older transaction of the cluster
	// (other tests' among them) has ended.
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		head, err := f.events.Head(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if head.Compare(res.Position) >= 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("head %v still before the saved position %v 10s after commit", head, res.Position)
		}
	}
	if got, err := f.repo.Load(ctx, "wallet-1"); err != nil || got.Balance != 70 {
		t.Fatalf("Load = %v, %v", got, err)
	}
}

func TestRepositoryInTxRollback(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	f := setupTx(t)
	f.deposit(t, "wallet-1", 100)

	errRefused := errors.New("refused by the payment provider")
	err := pgx.BeginFunc(ctx, f.pool, func(tx pgx.Tx) error {
		w, err := f.pay(ctx, tx, "pay-1", "wallet-1", 30)
		if err != nil {
			return err
		}
		if w.SnapshotVersion() != 2 {
			t.Errorf("snapshot version %d in the transaction, want 2", w.SnapshotVersion())
		}
		return errRefused // rolls back the payment, the events and the snapshot
	})
	if !errors.Is(err, errRefused) {
		t.Fatalf("BeginFunc = %v", err)
	}
	if f.payments(t) != 0 || f.version(t, "wallet-1") != 1 || f.snapshotVersion(t, "wallet-1") != 1 {
		t.Fatalf("after rollback: %d payments, version %d, snapshot %d; want 0 1 1",
			f.payments(t), f.version(t, "wallet-1"), f.snapshotVersion(t, "wallet-1"))
	}
	// A new stream's events are gone as well.
	err = pgx.BeginFunc(ctx, f.pool, func(tx pgx.Tx) error {
		if _, err := f.repo.With(f.events.InTx(tx)).Update(ctx, "wallet-2", func(w *txWallet) error { return w.Deposit(5) }); err != nil {
			return err
		}
		return errRefused
	})
	if !errors.Is(err, errRefused) {
		t.Fatalf("BeginFunc = %v", err)
	}
	if _, err := f.repo.Load(ctx, "wallet-2"); !errors.Is(err, eventstore.ErrStreamNotFound) {
		t.Fatalf("Load of a rolled back stream = %v, want ErrStreamNotFound", err)
	}
	if f.snapshotVersion(t, "wallet-2") != 0 {
		t.Fatal("a snapshot of rolled back events survived")
	}
}

// A Save that conflicts inside the transaction returns a typed error and
// leaves the transaction usable: the caller can roll back, or carry on.
func TestRepositoryInTxSaveConflict(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	f := setupTx(t)
	f.deposit(t, "wallet-1", 100)

	tx, err := f.pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(ctx)
	bound := f.repo.With(f.events.InTx(tx))
	w, err := bound.Load(ctx, "wallet-1")
	if err != nil {
		t.Fatal(err)
	}
	f.deposit(t, "wallet-1", 1) // another writer commits version 2
	if err := w.Withdraw(10); err != nil {
		t.Fatal(err)
	}
	_, err = bound.Save(ctx, w)
	var conflict *eventstore.ConcurrencyError
	if !errors.Is(err, eventstore.ErrConcurrencyConflict) || !errors.As(err, &conflict) || conflict.StreamID != "wallet-1" {
		t.Fatalf("Save = %v, want a concurrency conflict on wallet-1", err)
	}
	if w.StoredVersion() != 1 || !w.HasUncommitted() {
		t.Fatal("a failed save changed the aggregate")
	}
	// The transaction is still usable.
	if _, err := tx.Exec(ctx, `INSERT INTO payments (id, wallet, amount) VALUES ('pay-1', 'wallet-1', 10)`); err != nil {
		t.Fatalf("the transaction is unusable after the conflict: %v", err)
	}
	if err := tx.Rollback(ctx); err != nil {
		t.Fatal(err)
	}
	if f.payments(t) != 0 || f.version(t, "wallet-1") != 2 {
		t.Fatalf("after rollback: %d payments, version %d; want 0 2", f.payments(t), f.version(t, "wallet-1"))
	}
}

// Under READ COMMITTED a reload inside the transaction sees the competing
// commit, so Update retries there; under REPEATABLE READ and SERIALIZABLE
// the append fails with a serialization failure, so Update returns the
// transaction conflict at once and the caller retries the whole
// transaction.
func TestRepositoryInTxUpdateConflict(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	for _, tc := range []struct {
		name      string
		iso       pgx.TxIsoLevel
		wantCalls int
		wantErr   bool
	}{
		{"ReadCommitted", pgx.ReadCommitted, 2, false},
		{"RepeatableRead", pgx.RepeatableRead, 1, true},
		{"Serializable", pgx.Serializable, 1, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			f := setupTx(t)
			f.deposit(t, "wallet-1", 100)
			calls := 0
			err := pgx.BeginTxFunc(ctx, f.pool, pgx.TxOptions{IsoLevel: tc.iso}, func(tx pgx.Tx) error {
				if _, err := tx.Exec(ctx, `SELECT 1`); err != nil { // take the snapshot
					return err
				}
				_, err := f.repo.With(f.events.InTx(tx)).Update(ctx, "wallet-1", func(w *txWallet) error {
					calls++
					if calls == 1 {
						f.deposit(t, "wallet-1", 1) // a competing writer commits first
					}
					return w.Withdraw(10)
				})
				return err
			})
			if calls != tc.wantCalls {
				t.Fatalf("fn ran %d times, want %d", calls, tc.wantCalls)
			}
			if !tc.wantErr {
				if err != nil {
					t.Fatal(err)
				}
				if w, err := f.repo.Load(ctx, "wallet-1"); err != nil || w.Balance != 91 || w.Version() != 3 {
					t.Fatalf("Load = %v, %v; want balance 91 at version 3", w, err)
				}
				return
			}
			// A serialization failure: a transaction conflict, returned
			// at once.
			if !errors.Is(err, eventstore.ErrTransactionConflict) || !errors.Is(err, eventstore.ErrConcurrencyConflict) ||
				!strings.Contains(err.Error(), "retry the whole transaction") {
				t.Fatalf("Update = %v, want a transaction conflict telling to retry the transaction", err)
			}
			// The whole transaction, run again, succeeds.
			err = pgx.BeginTxFunc(ctx, f.pool, pgx.TxOptions{IsoLevel: tc.iso}, func(tx pgx.Tx) error {
				_, err := f.pay(ctx, tx, "pay-1", "wallet-1", 10)
				return err
			})
			if err != nil {
				t.Fatal(err)
			}
			if w, err := f.repo.Load(ctx, "wallet-1"); err != nil || w.Balance != 91 || f.payments(t) != 1 {
				t.Fatalf("Load = %v, %v with %d payments; want balance 91 and 1 payment", w, err, f.payments(t))
			}
		})
	}
}

// A failing snapshot save inside the transaction leaves it usable.
func TestTxSnapshotStoreSaveFailureKeepsTransaction(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	f := setupTx(t)
	if _, err := f.pool.Exec(ctx, `DROP TABLE chronicle.snapshots`); err != nil {
		t.Fatal(err)
	}
	err := pgx.BeginFunc(ctx, f.pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `INSERT INTO payments (id, wallet, amount) VALUES ('pay-1', 'wallet-1', 1)`); err != nil {
			return err
		}
		err := f.snaps.InTx(tx).Save(ctx, snapshot.Snapshot{StreamID: "wallet-1", Type: "txWallet", Version: 1, SchemaVersion: 1, Data: []byte(`{}`)})
		if !errors.Is(err, postgres.ErrSchemaMissing) {
			t.Errorf("Save without the table = %v, want ErrSchemaMissing", err)
		}
		_, err = tx.Exec(ctx, `INSERT INTO payments (id, wallet, amount) VALUES ('pay-2', 'wallet-1', 1)`)
		return err
	})
	if err != nil {
		t.Fatalf("the transaction failed after a failed snapshot save: %v", err)
	}
	if n := f.payments(t); n != 2 {
		t.Fatalf("%d payments, want 2", n)
	}
}

func TestTxStoreReads(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	f := setupTx(t)
	f.deposit(t, "wallet-1", 100)
	committed, err := f.events.ReadStream(ctx, "wallet-1", eventstore.ReadStreamOptions{})
	if err != nil || len(committed) != 1 {
		t.Fatalf("ReadStream = %v, %v", committed, err)
	}
	head := committed[0].Position

	tx, err := f.pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(ctx)
	ts := f.events.InTx(tx)
	if ts.Tx() != tx {
		t.Fatal("Tx() is not the transaction")
	}
	ev, err := f.reg.Encode(txDeposited{Amount: 5})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ts.Append(ctx, "wallet-1", eventstore.Exact(1), ev); err != nil {
		t.Fatal(err)
	}
	if _, err := ts.AppendStreams(ctx, eventstore.StreamAppend{StreamID: "wallet-2", Expected: eventstore.NoStream, Events: []eventstore.Event{ev}}); err != nil {
		t.Fatal(err)
	}
	// Stream reads see the transaction's own events.
	if v, err := ts.StreamVersion(ctx, "wallet-1"); err != nil || v != 2 {
		t.Fatalf("StreamVersion = %d, %v; want 2", v, err)
	}
	back, err := ts.ReadStream(ctx, "wallet-1", eventstore.ReadStreamOptions{Direction: eventstore.Backward, Limit: 1})
	if err != nil || len(back) != 1 || back[0].StreamVersion != 2 || back[0].EventID.IsZero() {
		t.Fatalf("ReadStream backward = %+v, %v", back, err)
	}
	payloads, err := ts.ReadStreamPayloads(ctx, "wallet-1", eventstore.ReadStreamOptions{From: 2})
	if err != nil || len(payloads) != 1 || string(payloads[0].Data) != `{"amount": 5}` {
		t.Fatalf("ReadStreamPayloads = %+v, %v", payloads, err)
	}
	// The global order never shows uncommitted events, its own included.
	// The committed event shows once every older transaction of the
	// cluster (other tests' among them) has ended.
	deadline := time.Now().Add(10 * time.Second)
	for {
		all, err := ts.ReadAll(ctx, eventstore.Position{}, 10)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range all {
			if r.StreamID != "wallet-1" || r.StreamVersion != 1 {
				t.Fatalf("ReadAll in the transaction returned an uncommitted event: %+v", r)
			}
		}
		h, err := ts.Head(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if len(all) == 1 && h == head && all[0].Position == head {
			break
		}
		if h.Compare(head) > 0 {
			t.Fatalf("Head in the transaction = %v, past the committed head %v", h, head)
		}
		if time.Now().After(deadline) {
			t.Fatalf("ReadAll in the transaction = %d events, head %v; want the committed event at %v", len(all), h, head)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if _, err := ts.StreamVersion(ctx, "nope"); !errors.Is(err, eventstore.ErrStreamNotFound) {
		t.Fatalf("StreamVersion(nope) = %v, want ErrStreamNotFound", err)
	}
	for name, err := range map[string]error{
		"ReadStream limit": func() error {
			_, err := ts.ReadStream(ctx, "wallet-1", eventstore.ReadStreamOptions{Limit: -1})
			return err
		}(),
		"ReadStream id": func() error { _, err := ts.ReadStream(ctx, "", eventstore.ReadStreamOptions{}); return err }(),
		"ReadAll limit": func() error { _, err := ts.ReadAll(ctx, eventstore.Position{}, 0); return err }(),
	} {
		if !errors.Is(err, eventstore.ErrInvalidInput) {
			t.Errorf("%s: %v, want ErrInvalidInput", name, err)
		}
	}
}

func TestTxStoreNil(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	f := setupTx(t)
	for name, ts := range map[string]*postgres.TxStore{
		"nil tx":    f.events.InTx(nil),
		"nil store": (*postgres.Store)(nil).InTx(nil),
	} {
		if _, err := ts.Append(ctx, "s", eventstore.Any, eventstore.Event{Type: "T", Data: []byte(`{}`)}); !errors.Is(err, eventstore.ErrInvalidInput) {
			t.Errorf("%s: Append = %v, want ErrInvalidInput", name, err)
		}
		if _, err := ts.ReadStream(ctx, "s", eventstore.ReadStreamOptions{}); !errors.Is(err, eventstore.ErrInvalidInput) {
			t.Errorf("%s: ReadStream = %v, want ErrInvalidInput", name, err)
		}
		if _, err := ts.Head(ctx); !errors.Is(err, eventstore.ErrInvalidInput) {
			t.Errorf("%s: Head = %v, want ErrInvalidInput", name, err)
		}
		if _, err := f.repo.With(ts).Load(ctx, "s"); !errors.Is(err, eventstore.ErrInvalidInput) {
			t.Errorf("%s: repository Load = %v, want ErrInvalidInput", name, err)
		}
	}
	if err := f.snaps.InTx(nil).Save(ctx, snapshot.Snapshot{StreamID: "s", Type: "T", Version: 1, SchemaVersion: 1, Data: []byte(`{}`)}); !errors.Is(err, eventstore.ErrInvalidInput) {
		t.Errorf("snapshot Save with a nil tx = %v, want ErrInvalidInput", err)
	}
	// A typed-nil store is refused by the repository, not a panic.
	if _, err := aggregate.NewRepository[txWallet]((*postgres.Store)(nil), f.reg, nil); !errors.Is(err, eventstore.ErrInvalidInput) {
		t.Errorf("NewRepository((*postgres.Store)(nil)) = %v, want ErrInvalidInput", err)
	}
	// A snapshot store binds only to a transaction view of its own pool.
	if _, ok := f.snaps.BindTx(f.events); ok {
		t.Error("BindTx accepted a store that is not in a transaction")
	}
	if _, ok := f.snaps.BindTx(memory.New(nil)); ok {
		t.Error("BindTx accepted a memory store")
	}
}

// A payload that cannot be decoded names its stream and version, not the
// zero event ID of the payload-only read path, on both stores.
func TestRepositoryDecodeErrorNamesEvent(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	f := setupTx(t)
	for name, store := range map[string]eventstore.Store{"postgres": f.events, "memory": memory.New(nil)} {
		stream := "wallet-" + name
		good, err := f.reg.Encode(txDeposited{Amount: 1})
		if err != nil {
			t.Fatal(err)
		}
		bad := eventstore.Event{Type: "Deposited", Data: []byte(`{"amount":"lots"}`)}
		if _, err := store.Append(ctx, stream, eventstore.NoStream, good, bad); err != nil {
			t.Fatal(err)
		}
		repo, err := aggregate.NewRepository[txWallet](store, f.reg, nil)
		if err != nil {
			t.Fatal(err)
		}
		check := func(how string, err error) {
			t.Helper()
			var de *eventstore.DecodeError
			if !errors.As(err, &de) || de.StreamID != stream || de.StreamVersion != 2 {
				t.Fatalf("%s %s: Load = %v, want a DecodeError at version 2 of %s", name, how, err, stream)
			}
			msg := err.Error()
			if strings.Contains(msg, "00000000-0000-0000-0000-000000000000") || !strings.Contains(msg, `version 2 of stream "`+stream+`"`) {
				t.Fatalf("%s %s: error %q does not name the event", name, how, msg)
			}
		}
		_, err = repo.Load(ctx, stream)
		check("Load", err)
		if name == "postgres" {
			err = pgx.BeginFunc(ctx, f.pool, func(tx pgx.Tx) error {
				_, err := repo.With(f.events.InTx(tx)).Load(ctx, stream)
				return err
			})
			check("Load in a transaction", err)
		}
	}
}

// serialSnapshots serialises the calls to a snapshot store that, like a
// transaction, is not safe for concurrent use.
type serialSnapshots struct {
	mu sync.Mutex
	s  snapshot.Store
}

func (s *serialSnapshots) Save(ctx context.Context, snap snapshot.Snapshot) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.s.Save(ctx, snap)
}

func (s *serialSnapshots) Load(ctx context.Context, streamID string) (snapshot.Snapshot, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.s.Load(ctx, streamID)
}

func (s *serialSnapshots) Delete(ctx context.Context, streamID string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.s.Delete(ctx, streamID)
}

// The snapshot store inside a transaction keeps the snapshot.Store
// contract; invalid input and failures leave the transaction usable.
func TestTxSnapshotStoreConformance(t *testing.T) {
	t.Parallel()
	snapshottest.Run(t, func(t *testing.T) snapshot.Store {
		pool := postgrestest.Pool(t)
		snaps, err := postgres.NewSnapshotStore(pool, nil)
		if err != nil {
			t.Fatal(err)
		}
		ctx := context.Background()
		tx, err := pool.Begin(ctx)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			// The transaction must still be usable after the suite.
			if _, err := tx.Exec(ctx, `SELECT 1`); err != nil {
				t.Errorf("the transaction is unusable after the suite: %v", err)
			}
			_ = tx.Rollback(ctx)
		})
		return &serialSnapshots{s: snaps.InTx(tx)}
	})
}

// Two transactions that each hold one wallet's head row and then update
// the other's deadlock: the victim's Update returns the transaction
// conflict at once, without a retry that would deadlock again, and the
// other transaction completes.
func TestRepositoryInTxDeadlock(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	f := setupTx(t)
	f.deposit(t, "wallet-1", 100)
	f.deposit(t, "wallet-2", 100)

	type result struct {
		calls int
		err   error
	}
	results := make(chan result, 2)
	var ready sync.WaitGroup
	ready.Add(2)
	run := func(first, second string) {
		tx, err := f.pool.Begin(ctx)
		if err != nil {
			ready.Done()
			results <- result{err: err}
			return
		}
		repo := f.repo.With(f.events.InTx(tx))
		_, err = repo.Update(ctx, first, func(w *txWallet) error { return w.Withdraw(1) })
		ready.Done()
		if err != nil {
			_ = tx.Rollback(ctx)
			results <- result{err: err}
			return
		}
		ready.Wait() // both hold their first wallet's head row
		calls := 0
		_, err = repo.Update(ctx, second, func(w *txWallet) error { calls++; return w.Withdraw(1) })
		if err != nil {
			_ = tx.Rollback(ctx)
		} else {
			err = tx.Commit(ctx)
		}
		results <- result{calls: calls, err: err}
	}
	go run("wallet-1", "wallet-2")
	go run("wallet-2", "wallet-1")
	var victims, winners int
	for range 2 {
		r := <-results
		switch {
		case r.err == nil:
			winners++
		case errors.Is(r.err, eventstore.ErrTransactionConflict):
			victims++
			if r.calls != 1 {
				t.Errorf("the deadlocked Update ran its function %d times, want 1", r.calls)
			}
		default:
			t.Errorf("Update = %v, want nil or a transaction conflict", r.err)
		}
	}
	if victims != 1 || winners != 1 {
		t.Fatalf("%d victims and %d winners, want 1 and 1", victims, winners)
	}
	w1, err1 := f.repo.Load(ctx, "wallet-1")
	w2, err2 := f.repo.Load(ctx, "wallet-2")
	if err1 != nil || err2 != nil || w1.Balance+w2.Balance != 198 {
		t.Fatalf("after the deadlock: %v, %v, %v, %v; want the winner's two withdrawals only", w1, err1, w2, err2)
	}
}
