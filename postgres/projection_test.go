package postgres_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/url"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/chronicle-go/chronicle/eventstore"
	"github.com/chronicle-go/chronicle/postgres"
	"github.com/chronicle-go/chronicle/postgres/postgrestest"
	"github.com/chronicle-go/chronicle/projection"
	"github.com/chronicle-go/chronicle/projection/projectionstore"
)

// projDeposit is the event of the projection tests.
type projDeposit struct {
	AccountID string `json:"account_id"`
	Amount    int64  `json:"amount"`
}

// projEnv is one projection test's database: the events, a read model
// (proj_balances, proj_seen) and the projection tables.
type projEnv struct {
	t      *testing.T
	dbURL  string
	dbName string
	pool   *pgxpool.Pool
	store  *postgres.Store
	ps     *postgres.ProjectionStore
	reg    *eventstore.Registry
}

const projReadModelSQL = `
CREATE TABLE proj_balances (account text PRIMARY KEY, balance bigint NOT NULL, events bigint NOT NULL);
CREATE TABLE proj_seen (
    event_id uuid PRIMARY KEY,
    holder   text NOT NULL,
    stream   text NOT NULL,
    version  bigint NOT NULL,
    seq      bigint GENERATED ALWAYS AS IDENTITY
)`

func projSetup(t *testing.T) *projEnv {
	t.Helper()
	dbURL := postgrestest.DatabaseURL(t)
	u, err := url.Parse(dbURL)
	if err != nil {
		t.Fatal(err)
	}
	e := &projEnv{t: t, dbURL: dbURL, dbName: strings.TrimPrefix(u.Path, "/")}
	e.pool = e.newPool("chronicle-test-main")
	if _, err := e.pool.Exec(context.Background(), projReadModelSQL); err != nil {
		t.Fatal(err)
	}
	e.store = projNewStore(t, e.pool)
	if e.ps, err = postgres.NewProjectionStore(e.pool, nil); err != nil {
		t.Fatal(err)
	}
	e.reg = eventstore.NewRegistry(nil)
	eventstore.MustRegister[projDeposit](e.reg, "Deposited")
	return e
}

// newPool opens another pool on the test database, as another process
// would; its connections carry the application name app.
func (e *projEnv) newPool(app string) *pgxpool.Pool {
	e.t.Helper()
	cfg, err := pgxpool.ParseConfig(e.dbURL)
	if err != nil {
		e.t.Fatal(err)
	}
	cfg.ConnConfig.RuntimeParams["application_name"] = app
	pool, err := pgxpool.NewWithConfig(context.Background(), cfg)
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(pool.Close)
	return pool
}

func projNewStore(t *testing.T, pool *pgxpool.Pool) *postgres.Store {
	t.Helper()
	s, err := postgres.New(pool, &postgres.Config{Logger: slog.New(slog.DiscardHandler), PollInterval: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return s
}

func projLogger() *slog.Logger {
	if testing.Verbose() {
		return slog.New(slog.NewTextHandler(os.Stderr, nil))
	}
	return slog.New(slog.DiscardHandler)
}

// runner returns a runner on pool (its own event store and projection
// store, like another process) holding under the name holder.
func (e *projEnv) runner(pool *pgxpool.Pool, holder string, ps ...projection.Projection) *projection.Runner {
	e.t.Helper()
	store := projNewStore(e.t, pool)
	pstore, err := postgres.NewProjectionStore(pool, nil)
	if err != nil {
		e.t.Fatal(err)
	}
	r, err := projection.New(store, pstore, &projection.Config{
		Logger:          projLogger(),
		Holder:          holder,
		PollInterval:    50 * time.Millisecond,
		AcquireInterval: 100 * time.Millisecond,
		// No test may hold a transaction open (and the cluster's horizon
		// back, for every parallel test package) for long.
		BatchTimeout: projTestBatchTimeout,
		Retry:        projection.RetryPolicy{BaseDelay: time.Millisecond, MaxDelay: 10 * time.Millisecond},
	})
	if err != nil {
		e.t.Fatal(err)
	}
	for _, p := range ps {
		if err := r.Add(p); err != nil {
			e.t.Fatal(err)
		}
	}
	return r
}

// projTestBatchTimeout is the runners' batch timeout in these tests.
const projTestBatchTimeout = 3 * time.Second

func (e *projEnv) start(r *projection.Runner) (stop func()) {
	e.t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				e.t.Errorf("Run: %v", err)
			}
		})
	}
	e.t.Cleanup(stop)
	return stop
}

func (e *projEnv) deposit(stream string, amount int64) eventstore.AppendResult {
	e.t.Helper()
	ev, err := e.reg.Encode(projDeposit{AccountID: stream, Amount: amount})
	if err != nil {
		e.t.Fatal(err)
	}
	res, err := e.store.Append(context.Background(), stream, eventstore.Any, ev)
	if err != nil {
		e.t.Fatal(err)
	}
	return res
}

// projBalanceSQL records an event in proj_seen (whose primary key refuses
// a second effect of one event) and adds it to its account's balance, in
// one statement.
const projBalanceSQL = `
WITH seen AS (
    INSERT INTO proj_seen (event_id, holder, stream, version) VALUES ($1, $2, $3, $4) RETURNING 1
)
INSERT INTO proj_balances (account, balance, events)
SELECT $5, $6, 1 FROM seen
ON CONFLICT (account) DO UPDATE SET balance = proj_balances.balance + EXCLUDED.balance, events = proj_balances.events + 1`

// balances returns the transactional read-model handlers; before, when
// not nil, runs first in each handler call.
func (e *projEnv) balances(holder string, before func(ctx context.Context, ev projection.Event) error) *projection.Handlers {
	h := projection.NewHandlers(e.reg)
	postgres.OnProjectionTx(h, func(ctx context.Context, tx pgx.Tx, ev projection.Event, d projDeposit) error {
		if before != nil {
			if err := before(ctx, ev); err != nil {
				return err
			}
		}
		_, err := tx.Exec(ctx, projBalanceSQL, [16]byte(ev.EventID), holder, ev.StreamID, ev.StreamVersion, d.AccountID, d.Amount)
		return err
	})
	h.OnReset(postgres.ProjectionTxReset(func(ctx context.Context, tx pgx.Tx, partition int) error {
		// The tests rebuild only unpartitioned projections: partition 0
		// is the whole read model.
		_, err := tx.Exec(ctx, `TRUNCATE proj_seen, proj_balances`)
		return err
	}))
	return h
}

// checkReadModel compares the read model with a replay of every event
// from scratch.
func (e *projEnv) checkReadModel() {
	e.t.Helper()
	ctx := context.Background()
	want := map[string]int64{}
	wantEvents := map[string]int64{}
	total := 0
	// Read the table itself: ReadAll stops at the cluster's transaction
	// horizon, which tests of other packages may hold back.
	evRows, err := e.pool.Query(ctx, `SELECT event_type, schema_version, data FROM chronicle.events ORDER BY global_position`)
	if err != nil {
		e.t.Fatal(err)
	}
	for evRows.Next() {
		var rec eventstore.Record
		if err := evRows.Scan(&rec.Type, &rec.SchemaVersion, &rec.Data); err != nil {
			e.t.Fatal(err)
		}
		d, err := eventstore.Decode[projDeposit](e.reg, rec)
		if err != nil {
			e.t.Fatal(err)
		}
		want[d.AccountID] += d.Amount
		wantEvents[d.AccountID]++
		total++
	}
	if err := evRows.Err(); err != nil {
		e.t.Fatal(err)
	}
	rows, err := e.pool.Query(ctx, `SELECT account, balance, events FROM proj_balances`)
	if err != nil {
		e.t.Fatal(err)
	}
	got, gotEvents := map[string]int64{}, map[string]int64{}
	for rows.Next() {
		var acc string
		var bal, n int64
		if err := rows.Scan(&acc, &bal, &n); err != nil {
			e.t.Fatal(err)
		}
		got[acc], gotEvents[acc] = bal, n
	}
	if err := rows.Err(); err != nil {
		e.t.Fatal(err)
	}
	if fmt.Sprint(got) != fmt.Sprint(want) || fmt.Sprint(gotEvents) != fmt.Sprint(wantEvents) {
		e.t.Fatalf("read model differs from a replay:\n got %v %v\nwant %v %v", got, gotEvents, want, wantEvents)
	}
	var seen int
	if err := e.pool.QueryRow(ctx, `SELECT count(*) FROM proj_seen`).Scan(&seen); err != nil {
		e.t.Fatal(err)
	}
	if seen != total {
		e.t.Fatalf("proj_seen has %d rows, want %d", seen, total)
	}
}

// killHolders terminates the sessions holding advisory locks in the test
// database (the projection leases) and returns how many it killed.
func (e *projEnv) killHolders(admin *pgx.Conn) int {
	e.t.Helper()
	var n int
	err := admin.QueryRow(context.Background(), `
		SELECT count(pg_terminate_backend(pid)) FROM pg_locks
		WHERE locktype = 'advisory' AND granted
		  AND database = (SELECT oid FROM pg_database WHERE datname = $1)`, e.dbName).Scan(&n)
	if err != nil {
		e.t.Fatal(err)
	}
	return n
}

func projAdmin(t *testing.T) *pgx.Conn {
	t.Helper()
	conn, err := pgx.Connect(context.Background(), postgrestest.AdminURL(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	return conn
}

func projWaitCtx(t *testing.T, d time.Duration) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

func TestProjectionExactlyOnceReadModel(t *testing.T) {
	t.Parallel()
	e := projSetup(t)
	ctx := projWaitCtx(t, 30*time.Second)
	var last eventstore.AppendResult
	for i := range 300 {
		last = e.deposit(fmt.Sprintf("acc-%d", i%13), int64(i))
	}
	// Fail the first attempt of some events, after the batch has written
	// earlier events: the transaction rolls back and the events before the
	// failure commit again, once.
	var failed atomic.Int32
	before := func(_ context.Context, ev projection.Event) error {
		if ev.Attempt == 1 && ev.StreamVersion%7 == 3 {
			failed.Add(1)
			return errors.New("transient")
		}
		return nil
	}
	r := e.runner(e.pool, "r1", projection.Projection{Name: "balances", Handler: e.balances("r1", before), BatchSize: 50})
	e.start(r)
	if err := r.WaitFor(ctx, "balances", last.Position); err != nil {
		t.Fatal(err)
	}
	for i := range 20 {
		res := e.deposit("live", int64(i))
		if err := r.WaitFor(ctx, "balances", res.Position); err != nil {
			t.Fatal(err)
		}
	}
	if failed.Load() == 0 {
		t.Fatal("no failure was injected")
	}
	e.checkReadModel()
	sts, err := projection.Statuses(ctx, e.store, e.ps, "")
	if err != nil {
		t.Fatal(err)
	}
	if len(sts) != 1 || sts[0].Holder != "r1" || sts[0].LagEvents != 0 || sts[0].Parked != 0 || sts[0].Error != "" {
		t.Fatalf("status = %+v", sts)
	}
}

func TestProjectionTwoRunnersNeverOverlap(t *testing.T) {
	t.Parallel()
	e := projSetup(t)
	ctx := projWaitCtx(t, 30*time.Second)
	var active atomic.Int32
	var overlap atomic.Bool
	before := func(context.Context, projection.Event) error {
		if active.Add(1) > 1 {
			overlap.Store(true)
		}
		time.Sleep(200 * time.Microsecond)
		active.Add(-1)
		return nil
	}
	poolA, poolB := e.newPool("runner-a"), e.newPool("runner-b")
	rA := e.runner(poolA, "a", projection.Projection{Name: "balances", Handler: e.balances("a", before), BatchSize: 20})
	rB := e.runner(poolB, "b", projection.Projection{Name: "balances", Handler: e.balances("b", before), BatchSize: 20})
	stopA := e.start(rA)
	e.start(rB)
	var last eventstore.AppendResult
	for i := range 400 {
		last = e.deposit(fmt.Sprintf("acc-%d", i%9), 1)
		if i == 200 {
			stopA() // a clean hand-over to b, mid-stream
		}
	}
	if err := rB.WaitFor(ctx, "balances", last.Position); err != nil {
		t.Fatal(err)
	}
	if overlap.Load() {
		t.Fatal("two runners handled the projection at the same time")
	}
	e.checkReadModel()
}

// TestProjectionTakeoverAfterKilledConnection freezes the holder inside a
// batch, kills its connection, and checks that the standby takes over from
// the checkpoint while the frozen holder's work is rolled back.
func TestProjectionTakeoverAfterKilledConnection(t *testing.T) {
	t.Parallel()
	e := projSetup(t)
	ctx := projWaitCtx(t, 30*time.Second)
	admin := projAdmin(t)
	for i := range 100 {
		e.deposit(fmt.Sprintf("acc-%d", i%10), 1)
	}
	e.deposit("freeze", 1)
	var last eventstore.AppendResult
	for i := range 100 {
		last = e.deposit(fmt.Sprintf("acc-%d", i%10), 2)
	}

	frozen, thaw := make(chan struct{}), make(chan struct{})
	var once sync.Once
	freeze := func(ctx context.Context, ev projection.Event) error {
		if ev.StreamID == "freeze" {
			once.Do(func() { close(frozen) })
			<-thaw // a stuck process: it ignores even its context
		}
		return nil
	}
	poolA, poolB := e.newPool("runner-a"), e.newPool("runner-b")
	rA := e.runner(poolA, "a", projection.Projection{Name: "balances", Handler: e.balances("a", freeze), BatchSize: 30})
	e.start(rA)
	var thawOnce sync.Once
	t.Cleanup(func() { thawOnce.Do(func() { close(thaw) }) }) // before a is stopped
	// a freezes inside its fourth batch, with its transaction open (which
	// holds back the cluster's transaction horizon until it is killed).
	select {
	case <-frozen:
	case <-ctx.Done():
		t.Fatal("a never reached the freezing event")
	}
	rB := e.runner(poolB, "b", projection.Projection{Name: "balances", Handler: e.balances("b", nil), BatchSize: 30})
	e.start(rB)
	time.Sleep(200 * time.Millisecond) // b tries, and fails, to acquire
	if n := e.killHolders(admin); n != 1 {
		t.Fatalf("killed %d lock holders, want 1", n)
	}
	killed := time.Now()
	if err := rB.WaitFor(ctx, "balances", last.Position); err != nil {
		t.Fatalf("b did not take over: %v", err)
	}
	t.Logf("b took over and caught up %v after a's connection was killed", time.Since(killed).Round(time.Millisecond))
	thawOnce.Do(func() { close(thaw) }) // a wakes up: its transaction died with its connection

	var frozenBy string
	if err := e.pool.QueryRow(ctx, `SELECT holder FROM proj_seen WHERE stream = 'freeze'`).Scan(&frozenBy); err != nil {
		t.Fatal(err)
	}
	if frozenBy != "b" {
		t.Fatalf("the frozen event was committed by %q, want b", frozenBy)
	}
	// Holders in commit order: a's events, then b's, nothing interleaved.
	rows, err := e.pool.Query(ctx, `SELECT holder FROM proj_seen ORDER BY seq`)
	if err != nil {
		t.Fatal(err)
	}
	holders, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	switches := 0
	for i := 1; i < len(holders); i++ {
		if holders[i] != holders[i-1] {
			switches++
		}
	}
	if switches != 1 || holders[0] != "a" {
		t.Fatalf("holders switched %d times (first %s), want once from a to b", switches, holders[0])
	}
	e.checkReadModel()
	// a, alive again, does not get the lease back while b holds it.
	time.Sleep(300 * time.Millisecond)
	sts, err := rB.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if sts[0].Holder != "b" {
		t.Fatalf("holder = %q, want b", sts[0].Holder)
	}
}

// TestProjectionAtLeastOnceRedelivery kills the holder's connection while
// an at-least-once handler works through a batch: the batch was not
// checkpointed, so its events are delivered again; none is lost.
func TestProjectionAtLeastOnceRedelivery(t *testing.T) {
	t.Parallel()
	e := projSetup(t)
	ctx := projWaitCtx(t, 30*time.Second)
	admin := projAdmin(t)
	var last eventstore.AppendResult
	for i := range 60 {
		last = e.deposit(fmt.Sprintf("acc-%d", i%6), 1)
	}
	var mu sync.Mutex
	deliveries := map[eventstore.EventID]int{}
	var killOnce sync.Once
	h := projection.HandlerFunc(func(ctx context.Context, ev projection.Event) error {
		mu.Lock()
		deliveries[ev.EventID]++
		mu.Unlock()
		if ev.StreamVersion == 5 && ev.StreamID == "acc-2" {
			killOnce.Do(func() { e.killHolders(admin) })
		}
		return nil
	})
	r := e.runner(e.pool, "r", projection.Projection{Name: "mailer", Handler: h, Mode: projection.AtLeastOnce, BatchSize: 100})
	e.start(r)
	if err := r.WaitFor(ctx, "mailer", last.Position); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	again := 0
	for _, n := range deliveries {
		if n > 1 {
			again++
		}
	}
	if len(deliveries) != 60 {
		t.Fatalf("%d distinct events delivered, want 60", len(deliveries))
	}
	if again == 0 {
		t.Fatal("no event was delivered again after the holder's connection died mid-batch")
	}
	t.Logf("%d of 60 events delivered again", again)
}

func TestProjectionParkRetrySkip(t *testing.T) {
	t.Parallel()
	e := projSetup(t)
	ctx := projWaitCtx(t, 30*time.Second)
	var fixed atomic.Bool
	var attempts sync.Map
	before := func(_ context.Context, ev projection.Event) error {
		if strings.HasPrefix(ev.StreamID, "poison") && !(fixed.Load() && ev.StreamID == "poison-1") {
			n, _ := attempts.LoadOrStore(ev.EventID, new(atomic.Int32))
			n.(*atomic.Int32).Add(1)
			// Invalid UTF-8 and a NUL: stored anyway.
			return errors.New("cannot handle \xff\x00 this")
		}
		return nil
	}
	e.deposit("acc-1", 1)
	e.deposit("poison-1", 10)
	e.deposit("poison-2", 20)
	last := e.deposit("acc-1", 2)
	r := e.runner(e.pool, "r", projection.Projection{
		Name: "balances", Handler: e.balances("r", before), OnFailure: projection.ParkOnFailure,
		Retry: projection.RetryPolicy{MaxAttempts: 3},
	})
	e.start(r)
	if err := r.WaitFor(ctx, "balances", last.Position); err != nil {
		t.Fatal(err)
	}
	dls, err := e.ps.DeadLetters(ctx, projectionstore.DeadLetterFilter{Projection: "balances"})
	if err != nil {
		t.Fatal(err)
	}
	if len(dls) != 2 || dls[0].StreamID != "poison-1" || dls[0].Attempts != 3 || dls[0].Status != projectionstore.DeadLetterParked ||
		dls[0].Error != "cannot handle \uFFFD this" || dls[0].Type != "Deposited" || dls[1].StreamID != "poison-2" {
		t.Fatalf("dead letters = %+v", dls)
	}
	var bal int64
	if err := e.pool.QueryRow(ctx, `SELECT balance FROM proj_balances WHERE account = 'acc-1'`).Scan(&bal); err != nil || bal != 3 {
		t.Fatalf("acc-1 = %d, %v; want 3 (the event after the poison was handled)", bal, err)
	}
	sts, err := projection.Statuses(ctx, e.store, e.ps, "balances")
	if err != nil || sts[0].Parked != 2 {
		t.Fatalf("status = %+v, %v; want 2 parked", sts, err)
	}

	fixed.Store(true)
	if err := e.ps.RetryDeadLetter(ctx, dls[0].ID); err != nil {
		t.Fatal(err)
	}
	if err := e.ps.SkipDeadLetter(ctx, dls[1].ID); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		got, err := e.ps.DeadLetters(ctx, projectionstore.DeadLetterFilter{Status: projectionstore.DeadLetterResolved})
		if err != nil {
			t.Fatal(err)
		}
		if len(got) == 1 && got[0].ID == dls[0].ID && got[0].Attempts == 4 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("retried dead letter not resolved: %+v", got)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err := e.pool.QueryRow(ctx, `SELECT balance FROM proj_balances WHERE account = 'poison-1'`).Scan(&bal); err != nil || bal != 10 {
		t.Fatalf("poison-1 = %d, %v; want 10 once retried", bal, err)
	}
	// The states' transitions, filters and paging are the storage's: see
	// projectionstore/storagetest (DeadLetterStates, DeadLetterFilters).
	sts, err = projection.Statuses(ctx, e.store, e.ps, "balances")
	if err != nil || sts[0].Parked != 0 {
		t.Fatalf("status = %+v, %v; want nothing parked", sts, err)
	}
}

func TestProjectionStopDoesNotBlockOthers(t *testing.T) {
	t.Parallel()
	e := projSetup(t)
	ctx := projWaitCtx(t, 30*time.Second)
	e.deposit("acc-1", 1)
	e.deposit("poison", 1)
	last := e.deposit("acc-2", 1)
	fragile := postgres.ProjectionTxHandler(func(_ context.Context, _ pgx.Tx, ev projection.Event) error {
		if ev.StreamID == "poison" {
			return errors.New("poison")
		}
		return nil
	})
	r := e.runner(e.pool, "r",
		projection.Projection{Name: "fragile", Handler: fragile, Retry: projection.RetryPolicy{MaxAttempts: 2}},
		projection.Projection{Name: "balances", Handler: e.balances("r", nil)},
	)
	e.start(r)
	if err := r.WaitFor(ctx, "fragile", last.Position); !errors.Is(err, projection.ErrStopped) {
		t.Fatalf("WaitFor fragile = %v, want ErrStopped", err)
	}
	if err := r.WaitFor(ctx, "balances", last.Position); err != nil {
		t.Fatal(err)
	}
	e.checkReadModel()
	sts, err := projection.Statuses(ctx, e.store, e.ps, "fragile")
	if err != nil {
		t.Fatal(err)
	}
	if len(sts) != 1 || !strings.Contains(sts[0].Error, "poison") || sts[0].LagEvents != 2 || sts[0].Holder != "r" || sts[0].LagTime <= 0 {
		t.Fatalf("fragile status = %+v", sts)
	}
}

func TestProjectionTxHandlerNeedsTransactionalMode(t *testing.T) {
	t.Parallel()
	e := projSetup(t)
	ctx := projWaitCtx(t, 30*time.Second)
	last := e.deposit("acc-1", 1)
	var calls atomic.Int32
	h := postgres.ProjectionTxHandler(func(context.Context, pgx.Tx, projection.Event) error {
		calls.Add(1)
		return nil
	})
	r := e.runner(e.pool, "r", projection.Projection{Name: "p", Handler: h, Mode: projection.AtLeastOnce, OnFailure: projection.ParkOnFailure})
	e.start(r)
	if err := r.WaitFor(ctx, "p", last.Position); err != nil {
		t.Fatal(err)
	}
	dls, err := e.ps.DeadLetters(ctx, projectionstore.DeadLetterFilter{})
	if err != nil || len(dls) != 1 || dls[0].Attempts != 1 || !strings.Contains(dls[0].Error, "no projection transaction") || calls.Load() != 0 {
		t.Fatalf("dead letters = %+v, %v; calls = %d", dls, err, calls.Load())
	}
}

func TestProjectionPartitionsKeepStreamOrder(t *testing.T) {
	t.Parallel()
	e := projSetup(t)
	ctx := projWaitCtx(t, 60*time.Second)
	if _, err := e.pool.Exec(ctx, `CREATE TABLE proj_order (stream text PRIMARY KEY, version bigint NOT NULL, partition int NOT NULL)`); err != nil {
		t.Fatal(err)
	}
	const parts = 4
	// The handler refuses an event that is not the next of its stream: a
	// reordering would stop the partition.
	h := postgres.ProjectionTxHandler(func(ctx context.Context, tx pgx.Tx, ev projection.Event) error {
		tag, err := tx.Exec(ctx, `
			INSERT INTO proj_order (stream, version, partition) VALUES ($1, $2, $3)
			ON CONFLICT (stream) DO UPDATE SET version = EXCLUDED.version
			WHERE proj_order.version = EXCLUDED.version - 1 AND proj_order.partition = EXCLUDED.partition`,
			ev.StreamID, ev.StreamVersion, ev.Partition)
		if err == nil && tag.RowsAffected() != 1 {
			err = fmt.Errorf("%s version %d out of order", ev.StreamID, ev.StreamVersion)
		}
		if err == nil && ev.StreamVersion == 1 && ev.Partition != projection.PartitionOf(ev.StreamID, parts) {
			err = fmt.Errorf("%s in partition %d", ev.StreamID, ev.Partition)
		}
		return err
	})
	p := projection.Projection{Name: "order", Handler: h, Partitions: parts, BatchSize: 25, Retry: projection.RetryPolicy{MaxAttempts: 1}}
	rA := e.runner(e.newPool("runner-a"), "a", p)
	rB := e.runner(e.newPool("runner-b"), "b", p)
	e.start(rA)
	e.start(rB)
	var last eventstore.AppendResult
	for v := range 15 {
		for s := range 16 {
			last = e.deposit(fmt.Sprintf("s-%d", s), int64(v))
		}
	}
	if err := rA.WaitFor(ctx, "order", last.Position); err != nil {
		t.Fatal(err)
	}
	var n, maxV, usedParts int
	if err := e.pool.QueryRow(ctx, `SELECT count(*), min(version), count(DISTINCT partition) FROM proj_order`).Scan(&n, &maxV, &usedParts); err != nil {
		t.Fatal(err)
	}
	if n != 16 || maxV != 15 || usedParts < 2 {
		t.Fatalf("streams = %d, lowest version = %d, partitions used = %d; want 16, 15, ≥ 2", n, maxV, usedParts)
	}
	sts, err := projection.Statuses(ctx, e.store, e.ps, "order")
	if err != nil || len(sts) != parts {
		t.Fatalf("status = %+v, %v", sts, err)
	}
	holders := map[string]bool{}
	for _, st := range sts {
		holders[st.Holder] = true
		if st.Position != last.Position || st.Error != "" {
			t.Fatalf("partition %d = %+v", st.Partition, st)
		}
	}
	t.Logf("partitions held by %v", holders)
}

func TestProjectionRebuild(t *testing.T) {
	t.Parallel()
	e := projSetup(t)
	ctx := projWaitCtx(t, 30*time.Second)
	var last eventstore.AppendResult
	for i := range 200 {
		last = e.deposit(fmt.Sprintf("acc-%d", i%5), 3)
	}
	r := e.runner(e.pool, "r", projection.Projection{Name: "balances", Handler: e.balances("r", nil), BatchSize: 40})
	e.start(r)
	if err := r.WaitFor(ctx, "balances", last.Position); err != nil {
		t.Fatal(err)
	}
	if _, err := e.pool.Exec(ctx, `UPDATE proj_balances SET balance = -1`); err != nil {
		t.Fatal(err)
	}
	var progress projection.Progress
	calls := 0
	if err := r.Rebuild(ctx, "balances", func(p projection.Progress) { progress = p; calls++ }); err != nil {
		t.Fatal(err)
	}
	if !progress.Done || progress.Fraction() != 1 || calls == 0 {
		t.Fatalf("last progress = %+v after %d calls", progress, calls)
	}
	// The rebuild caught up with the head readable when it started; the
	// cluster's transaction horizon may have hidden the last events then.
	if err := r.WaitFor(ctx, "balances", last.Position); err != nil {
		t.Fatal(err)
	}
	e.checkReadModel()

	// The CLI's way: request through the storage, then wait.
	if _, err := e.pool.Exec(ctx, `UPDATE proj_balances SET balance = -1`); err != nil {
		t.Fatal(err)
	}
	if err := e.ps.RequestRebuild(ctx, "balances", 0); err != nil {
		t.Fatal(err)
	}
	if err := projection.WaitRebuild(ctx, e.store, e.ps, "balances", nil); err != nil {
		t.Fatal(err)
	}
	if err := r.WaitFor(ctx, "balances", last.Position); err != nil {
		t.Fatal(err)
	}
	e.checkReadModel()
	if err := e.ps.RequestRebuild(ctx, "nope", 0); !errors.Is(err, projection.ErrUnknownProjection) {
		t.Fatalf("rebuild unknown = %v", err)
	}
	if err := e.ps.RequestRebuild(ctx, "balances", 3); !errors.Is(err, projection.ErrPartitionsMismatch) {
		t.Fatalf("rebuild with other partitions = %v", err)
	}
}

// TestProjectionCrashRecovery kills the runner again and again at random
// points of its batches, by cancelling it (its transaction is abandoned)
// or by killing its connection (its transaction dies with it), while
// events keep arriving; then it checks that the read model equals a replay
// from scratch.
func TestProjectionCrashRecovery(t *testing.T) {
	t.Parallel()
	e := projSetup(t)
	admin := projAdmin(t)
	chaos := 12 * time.Second
	if testing.Short() {
		chaos = 3 * time.Second
	}
	ctx := projWaitCtx(t, chaos+30*time.Second)

	writerCtx, stopWriter := context.WithCancel(ctx)
	var (
		writes sync.WaitGroup
		last   eventstore.AppendResult
	)
	writes.Go(func() {
		for i := 0; writerCtx.Err() == nil; i++ {
			ev, _ := e.reg.Encode(projDeposit{AccountID: fmt.Sprintf("acc-%d", i%17), Amount: int64(i%50) + 1})
			res, err := e.store.Append(context.WithoutCancel(writerCtx), fmt.Sprintf("acc-%d", i%17), eventstore.Any, ev)
			if err != nil {
				t.Errorf("append: %v", err)
				return
			}
			last = res
			time.Sleep(time.Duration(rand.IntN(500)) * time.Microsecond)
		}
	})

	// Handlers dawdle a little, so that kills land inside transactions, and
	// fail some first attempts, so that batches roll back and split.
	dawdle := func(_ context.Context, ev projection.Event) error {
		if rand.IntN(20) == 0 {
			time.Sleep(time.Duration(rand.IntN(2000)) * time.Microsecond)
		}
		if ev.Attempt == 1 && rand.IntN(100) == 0 {
			return errors.New("injected failure")
		}
		return nil
	}
	p := projection.Projection{Name: "balances", Handler: e.balances("r", dawdle), Partitions: 2, BatchSize: 64}
	rounds, kills, cancels := 0, 0, 0
	deadline := time.Now().Add(chaos)
	for time.Now().Before(deadline) {
		rounds++
		r := e.runner(e.pool, fmt.Sprintf("r%d", rounds), p)
		rctx, cancel := context.WithCancel(ctx)
		done := make(chan error, 1)
		go func() { done <- r.Run(rctx) }()
		time.Sleep(time.Duration(20+rand.IntN(250)) * time.Millisecond)
		if rand.IntN(2) == 0 {
			kills += e.killHolders(admin)
			time.Sleep(time.Duration(rand.IntN(200)) * time.Millisecond)
		}
		cancels++
		cancel()
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	}
	stopWriter()
	writes.Wait()
	if t.Failed() {
		return
	}
	r := e.runner(e.pool, "final", p)
	e.start(r)
	if err := r.WaitFor(ctx, "balances", last.Position); err != nil {
		t.Fatal(err)
	}
	var events int
	if err := e.pool.QueryRow(ctx, `SELECT count(*) FROM chronicle.events`).Scan(&events); err != nil {
		t.Fatal(err)
	}
	t.Logf("%d rounds: %d connections killed, %d cancellations, %d events", rounds, kills, cancels, events)
	if kills == 0 {
		t.Fatal("no connection was killed")
	}
	e.checkReadModel()
}

// TestProjectionBatchTimeoutEndsStuckTransaction blocks a handler inside a
// batch's transaction, ignoring its context: the batch timeout must end
// the transaction (which holds back every tailing reader of the cluster)
// without waiting for the handler, and the projection must then complete.
func TestProjectionBatchTimeoutEndsStuckTransaction(t *testing.T) {
	t.Parallel()
	e := projSetup(t)
	ctx := projWaitCtx(t, 30*time.Second)
	admin := projAdmin(t)
	var last eventstore.AppendResult
	for i := range 20 {
		last = e.deposit(fmt.Sprintf("acc-%d", i%4), 1)
		if i == 9 {
			last = e.deposit("stuck", 1)
		}
	}
	stuck, release := make(chan struct{}), make(chan struct{})
	var stuckOnce, releaseOnce sync.Once
	t.Cleanup(func() { releaseOnce.Do(func() { close(release) }) })
	block := func(_ context.Context, ev projection.Event) error {
		if ev.StreamID == "stuck" && ev.Attempt == 1 {
			stuckOnce.Do(func() {
				close(stuck)
				<-release // ignores its context
			})
		}
		return nil
	}
	r := e.runner(e.newPool("runner-stuck"), "r", projection.Projection{Name: "balances", Handler: e.balances("r", block), BatchSize: 50})
	e.start(r)
	select {
	case <-stuck:
	case <-ctx.Done():
		t.Fatal("the handler never reached the stuck event")
	}
	// The earlier events of the batch were written: its transaction is
	// open. It must be gone soon after the batch timeout, though the
	// handler is still blocked.
	openTx := func() (n int) {
		t.Helper()
		err := admin.QueryRow(ctx, `SELECT count(*) FROM pg_stat_activity WHERE datname = $1 AND xact_start IS NOT NULL AND backend_xid IS NOT NULL`, e.dbName).Scan(&n)
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	if openTx() == 0 {
		t.Fatal("no open transaction while the handler is stuck inside its batch")
	}
	blocked := time.Now()
	for openTx() > 0 {
		if time.Since(blocked) > projTestBatchTimeout+5*time.Second {
			t.Fatalf("the stuck batch's transaction is still open %v after it started", time.Since(blocked).Round(time.Millisecond))
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Logf("stuck transaction ended %v after the handler blocked", time.Since(blocked).Round(time.Millisecond))
	releaseOnce.Do(func() { close(release) })
	if err := r.WaitFor(ctx, "balances", last.Position); err != nil {
		t.Fatal(err)
	}
	e.checkReadModel()
}

// TestProjectionBatchTimeoutInStatementParks runs a handler whose SQL
// statement outlives the batch timeout: pgx ends the statement by closing
// the lease's connection, so the lease is lost with each attempt. The
// timeouts must still count as the handler's failures: after MaxAttempts
// the event is parked and the projection continues past it.
func TestProjectionBatchTimeoutInStatementParks(t *testing.T) {
	t.Parallel()
	e := projSetup(t)
	// A bound against a hang, not a speed target.
	ctx := projWaitCtx(t, 2*time.Minute)
	e.deposit("acc-1", 1)
	slow := e.deposit("slow", 5)
	e.deposit("acc-2", 2)
	last := e.deposit("acc-1", 3)

	var slowRuns atomic.Int32
	h := e.balances("r", func(ctx context.Context, ev projection.Event) error {
		if ev.StreamID != "slow" {
			return nil
		}
		slowRuns.Add(1)
		tx, _ := postgres.ProjectionTx(ctx)
		_, err := tx.Exec(ctx, `SELECT pg_sleep(60)`)
		return err
	})
	cfg, err := pgxpool.ParseConfig(e.dbURL)
	if err != nil {
		t.Fatal(err)
	}
	// The server notices the closed connection while pg_sleep runs, and
	// ends the session and its advisory lock then, not 60s later.
	cfg.ConnConfig.RuntimeParams["client_connection_check_interval"] = "50ms"
	pool, err := pgxpool.NewWithConfig(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	store := projNewStore(t, pool)
	pstore, err := postgres.NewProjectionStore(pool, nil)
	if err != nil {
		t.Fatal(err)
	}
	r, err := projection.New(store, pstore, &projection.Config{
		Logger:          projLogger(),
		Holder:          "r",
		PollInterval:    50 * time.Millisecond,
		AcquireInterval: 100 * time.Millisecond,
		// Long enough that an innocent batch does not time out on a loaded
		// machine, short enough to keep the test quick.
		BatchTimeout: time.Second,
		Retry:        projection.RetryPolicy{BaseDelay: time.Millisecond, MaxDelay: 10 * time.Millisecond},
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Add(projection.Projection{
		Name: "balances", Handler: h, OnFailure: projection.ParkOnFailure,
		Retry: projection.RetryPolicy{MaxAttempts: 2},
	}); err != nil {
		t.Fatal(err)
	}
	e.start(r)
	if err := r.WaitFor(ctx, "balances", last.Position); err != nil {
		t.Fatalf("WaitFor: %v (the slow handler ran %d times)", err, slowRuns.Load())
	}
	dls, err := e.ps.DeadLetters(ctx, projectionstore.DeadLetterFilter{Projection: "balances"})
	if err != nil {
		t.Fatal(err)
	}
	if len(dls) != 1 || dls[0].StreamID != "slow" || dls[0].Position != slow.Position || dls[0].Attempts != 2 || dls[0].Status != projectionstore.DeadLetterParked ||
		!strings.Contains(dls[0].Error, "batch timeout") {
		t.Fatalf("dead letters = %+v; want the slow event parked after 2 timed-out attempts", dls)
	}
	if n := slowRuns.Load(); n != 2 {
		t.Fatalf("the slow handler ran %d times, want 2 (MaxAttempts)", n)
	}
	var bal int64
	if err := e.pool.QueryRow(ctx, `SELECT sum(balance) FROM proj_balances WHERE account <> 'slow'`).Scan(&bal); err != nil || bal != 6 {
		t.Fatalf("balances = %d, %v; want 6 (every event but the parked one)", bal, err)
	}
}

// TestProjectionFirstClaimsRace starts a new projection from two runners
// configured with different partition counts, at once, again and again:
// exactly one configuration must win each time, the other getting a
// PartitionsMismatchError, and the stored partition counts must agree.
func TestProjectionFirstClaimsRace(t *testing.T) {
	t.Parallel()
	e := projSetup(t)
	// A bound against a hang, not a speed target: 60 rounds of two claims
	// took over 30s on a loaded 2-core machine.
	ctx := projWaitCtx(t, 5*time.Minute)
	stores := [2]*postgres.ProjectionStore{e.ps}
	var err error
	if stores[1], err = postgres.NewProjectionStore(e.newPool("other"), nil); err != nil {
		t.Fatal(err)
	}
	// Warm both pools, so that the two claims start together.
	for _, s := range stores {
		if _, err := s.Checkpoints(ctx, "warm-up"); err != nil {
			t.Fatal(err)
		}
	}
	configs := [2]struct{ partition, partitions int }{{0, 2}, {1, 3}}
	for round := range 60 {
		name := fmt.Sprintf("race-%d", round)
		var (
			leases [2]projectionstore.Lease
			errs   [2]error
			ready  sync.WaitGroup
			done   sync.WaitGroup
			start  = make(chan struct{})
		)
		for i, c := range configs {
			ready.Add(1)
			done.Go(func() {
				ready.Done()
				<-start
				leases[i], errs[i] = stores[i].Acquire(ctx, projectionstore.Key{Projection: name, Partition: c.partition}, c.partitions, "r")
			})
		}
		ready.Wait()
		close(start)
		done.Wait()
		won := -1
		for i := range leases {
			if leases[i] != nil {
				if won >= 0 {
					t.Fatalf("round %d: both partition counts claimed the projection", round)
				}
				won = i
			}
		}
		if won < 0 {
			t.Fatalf("round %d: no claim won: %v, %v", round, errs[0], errs[1])
		}
		var pe *projection.PartitionsMismatchError
		if lost := errs[1-won]; !errors.As(lost, &pe) || pe.Stored != configs[won].partitions || pe.Configured != configs[1-won].partitions {
			t.Fatalf("round %d: losing claim = %v, want a PartitionsMismatchError (stored %d)", round, lost, configs[won].partitions)
		}
		if err := leases[won].Release(ctx); err != nil {
			t.Fatal(err)
		}
		var counts int
		if err := e.pool.QueryRow(ctx, `SELECT count(DISTINCT partitions) FROM chronicle.projection_checkpoints WHERE projection = $1`, name).Scan(&counts); err != nil || counts != 1 {
			t.Fatalf("round %d: %d distinct stored partition counts (%v), want 1", round, counts, err)
		}
	}
}

// TestProjectionPartitionLagCountsOwnEvents checks that each partition's
// lag, counted in SQL, counts only the events of its own streams.
func TestProjectionPartitionLagCountsOwnEvents(t *testing.T) {
	t.Parallel()
	e := projSetup(t)
	ctx := projWaitCtx(t, 30*time.Second)
	const parts = 3
	want := make([]int64, parts)
	var last eventstore.AppendResult
	for i := range 40 {
		s := fmt.Sprintf("acc-%d", i%7)
		last = e.deposit(s, 1)
		want[projection.PartitionOf(s, parts)]++
	}
	// The head is the transaction horizon: other tests' open transactions
	// hold it back for a while.
	for {
		head, err := e.store.Head(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if head.Compare(last.Position) >= 0 {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err := e.ps.RequestRebuild(ctx, "lag", parts); err != nil { // creates the checkpoints at the start
		t.Fatal(err)
	}
	sts, err := projection.Statuses(ctx, e.store, e.ps, "lag")
	if err != nil {
		t.Fatal(err)
	}
	if len(sts) != parts {
		t.Fatalf("%d statuses, want %d", len(sts), parts)
	}
	for _, st := range sts {
		if st.LagEvents != want[st.Partition] {
			t.Errorf("partition %d lag = %d events, want %d", st.Partition, st.LagEvents, want[st.Partition])
		}
		if want[st.Partition] > 0 && st.LagTime <= 0 {
			t.Errorf("partition %d lag time = %s, want > 0", st.Partition, st.LagTime)
		}
	}
}
