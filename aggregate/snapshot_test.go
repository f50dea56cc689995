package aggregate_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chronicle-go/chronicle/aggregate"
	"github.com/chronicle-go/chronicle/eventstore"
	"github.com/chronicle-go/chronicle/memory"
	"github.com/chronicle-go/chronicle/snapshot"
)

// logBuffer collects log output from concurrent goroutines.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *logBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// readLog records the From of every ReadStream call.
type readLog struct {
	eventstore.Store
	mu    sync.Mutex
	froms []int64
}

func (s *readLog) ReadStream(ctx context.Context, id string, opts eventstore.ReadStreamOptions) ([]eventstore.Record, error) {
	s.mu.Lock()
	s.froms = append(s.froms, opts.From)
	s.mu.Unlock()
	return s.Store.ReadStream(ctx, id, opts)
}

func (s *readLog) take() []int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	f := s.froms
	s.froms = nil
	return f
}

type snapFixture struct {
	*fixture
	snaps *memory.SnapshotStore
	reads *readLog
	log   *logBuffer
	cfg   aggregate.Config
}

// setupSnapshots returns a fixture whose repository snapshots into an
// in-memory snapshot store (wrapped by wrapSnaps when not nil), with cfg's
// snapshot fields (Snapshots and Logger are filled in).
func setupSnapshots(t testing.TB, cfg aggregate.Config, wrapSnaps func(snapshot.Store) snapshot.Store) *snapFixture {
	t.Helper()
	f := &snapFixture{snaps: memory.NewSnapshotStore(nil), log: &logBuffer{}}
	cfg.Snapshots = f.snaps
	if wrapSnaps != nil {
		cfg.Snapshots = wrapSnaps(f.snaps)
	}
	cfg.Logger = slog.New(slog.NewTextHandler(f.log, &slog.HandlerOptions{Level: slog.LevelDebug}))
	f.cfg = cfg
	f.fixture = setup(t, &cfg, func(s eventstore.Store) eventstore.Store { f.reads = &readLog{Store: s}; return f.reads })
	return f
}

// repoWith returns another wallet repository on the same stores with cfg
// changed by change.
func (f *snapFixture) repoWith(t testing.TB, change func(*aggregate.Config)) *aggregate.Repository[wallet, *wallet] {
	t.Helper()
	cfg := f.cfg
	change(&cfg)
	repo, err := aggregate.NewRepository[wallet](f.reads, f.reg, &cfg)
	if err != nil {
		t.Fatal(err)
	}
	return repo
}

func (f *snapFixture) deposit(t testing.TB, n int) {
	t.Helper()
	for range n {
		if _, err := f.repo.Update(context.Background(), "wallet-1", func(w *wallet) error { return w.Deposit(1) }); err != nil {
			t.Fatal(err)
		}
	}
}

func (f *snapFixture) snapshotVersion(t testing.TB) int64 {
	t.Helper()
	s, err := f.snaps.Load(context.Background(), "wallet-1")
	if errors.Is(err, snapshot.ErrNotFound) {
		return 0
	}
	if err != nil {
		t.Fatal(err)
	}
	return s.Version
}

func (f *snapFixture) putSnapshot(t testing.TB, s snapshot.Snapshot) {
	t.Helper()
	if err := f.snaps.Delete(context.Background(), s.StreamID); err != nil {
		t.Fatal(err)
	}
	if err := f.snaps.Save(context.Background(), s); err != nil {
		t.Fatal(err)
	}
}

func TestSnapshotEveryN(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	var infos []snapshot.Info
	var mu sync.Mutex
	policy := snapshot.PolicyFunc(func(info snapshot.Info) bool {
		mu.Lock()
		infos = append(infos, info)
		mu.Unlock()
		return snapshot.EveryN(3).ShouldSnapshot(info)
	})
	f := setupSnapshots(t, aggregate.Config{SnapshotPolicy: policy}, nil)

	f.deposit(t, 2)
	if v := f.snapshotVersion(t); v != 0 {
		t.Fatalf("snapshot at v%d after 2 events, want none", v)
	}
	f.deposit(t, 1)
	if v := f.snapshotVersion(t); v != 3 {
		t.Fatalf("snapshot at v%d after 3 events, want 3", v)
	}
	f.deposit(t, 4)
	if v := f.snapshotVersion(t); v != 6 {
		t.Fatalf("snapshot at v%d after 7 events, want 6", v)
	}
	mu.Lock()
	last := infos[len(infos)-1]
	mu.Unlock()
	if want := (snapshot.Info{StreamID: "wallet-1", Version: 7, PreviousVersion: 6, SnapshotVersion: 6}); last != want {
		t.Fatalf("policy got %+v, want %+v", last, want)
	}

	// A load starts at the snapshot: it reads from the covered event on.
	f.reads.take()
	w, err := f.repo.Load(ctx, "wallet-1")
	if err != nil {
		t.Fatal(err)
	}
	if w.Balance != 7 || w.Version() != 7 || w.StoredVersion() != 7 || w.SnapshotVersion() != 6 {
		t.Fatalf("loaded balance %d version %d stored %d snapshot %d, want 7 7 7 6", w.Balance, w.Version(), w.StoredVersion(), w.SnapshotVersion())
	}
	if froms := f.reads.take(); len(froms) != 1 || froms[0] != 6 {
		t.Fatalf("store reads from %v, want one read from 6", froms)
	}
	s, err := f.snaps.Load(ctx, "wallet-1")
	if err != nil {
		t.Fatal(err)
	}
	if s.Type != "wallet" || s.SchemaVersion != 1 || string(s.Data) != `{"balance":6}` {
		t.Fatalf("stored snapshot %+v (%s)", s, s.Data)
	}
	if log := f.log.String(); log != "" {
		t.Fatalf("unexpected log output:\n%s", log)
	}
}

func TestSnapshotDefaultPolicy(t *testing.T) {
	t.Parallel()
	f := setupSnapshots(t, aggregate.Config{}, nil)
	// A long stream without a snapshot gets one at its next save.
	events := make([]any, 150)
	for i := range events {
		events[i] = Deposited{1}
	}
	f.appendRaw(t, "wallet-1", events...)
	f.deposit(t, 1)
	if v := f.snapshotVersion(t); v != 151 {
		t.Fatalf("snapshot at v%d, want 151", v)
	}
	f.deposit(t, 99)
	if v := f.snapshotVersion(t); v != 151 {
		t.Fatalf("snapshot at v%d after 99 more events, want still 151", v)
	}
	f.deposit(t, 1)
	if v := f.snapshotVersion(t); v != 251 {
		t.Fatalf("snapshot at v%d after 100 more events, want 251", v)
	}
}

func TestSnapshotExplicit(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	f := setupSnapshots(t, aggregate.Config{SnapshotPolicy: snapshot.Never()}, nil)
	f.deposit(t, 5)
	if v := f.snapshotVersion(t); v != 0 {
		t.Fatalf("Never policy took a snapshot at v%d", v)
	}
	w, err := f.repo.Load(ctx, "wallet-1")
	if err != nil {
		t.Fatal(err)
	}
	if err := f.repo.Snapshot(ctx, w); err != nil {
		t.Fatal(err)
	}
	if v := f.snapshotVersion(t); v != 5 || w.SnapshotVersion() != 5 {
		t.Fatalf("snapshot at v%d (aggregate says %d), want 5", v, w.SnapshotVersion())
	}

	_ = w.Deposit(1)
	if err := f.repo.Snapshot(ctx, w); !errors.Is(err, eventstore.ErrInvalidInput) {
		t.Fatalf("Snapshot with unsaved events = %v, want ErrInvalidInput", err)
	}
	if err := f.repo.Snapshot(ctx, f.repo.New("wallet-2")); !errors.Is(err, eventstore.ErrInvalidInput) {
		t.Fatalf("Snapshot of a new aggregate = %v, want ErrInvalidInput", err)
	}
	if err := f.repo.Snapshot(ctx, nil); !errors.Is(err, eventstore.ErrInvalidInput) {
		t.Fatalf("Snapshot(nil) = %v, want ErrInvalidInput", err)
	}
	plain := setup(t, nil, nil)
	if err := plain.repo.Snapshot(ctx, w); !errors.Is(err, eventstore.ErrInvalidInput) {
		t.Fatalf("Snapshot without a snapshot store = %v, want ErrInvalidInput", err)
	}
}

func TestSnapshotSchemaVersionMismatch(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	f := setupSnapshots(t, aggregate.Config{SnapshotPolicy: snapshot.EveryN(4)}, nil)
	f.deposit(t, 5)
	if v := f.snapshotVersion(t); v != 4 {
		t.Fatalf("snapshot at v%d, want 4", v)
	}
	// Overwrite it with different (wrong) state: a repository that used it
	// would show a balance of 1000.
	f.putSnapshot(t, snapshot.Snapshot{StreamID: "wallet-1", Type: "wallet", Version: 4, SchemaVersion: 1, Data: []byte(`{"balance":1000}`)})

	v2 := f.repoWith(t, func(c *aggregate.Config) { c.SnapshotSchemaVersion = 2 })
	f.reads.take()
	w, err := v2.Load(ctx, "wallet-1")
	if err != nil {
		t.Fatal(err)
	}
	if w.Balance != 5 || w.Version() != 5 {
		t.Fatalf("balance %d version %d, want 5 5: a snapshot of another schema version was used", w.Balance, w.Version())
	}
	if froms := f.reads.take(); len(froms) == 0 || froms[0] != 1 {
		t.Fatalf("store reads from %v, want a replay from 1", froms)
	}
	if !strings.Contains(f.log.String(), "ignoring a snapshot of another type or schema version") {
		t.Fatalf("the ignored snapshot was not logged:\n%s", f.log.String())
	}
	// The stale snapshot was replaced by one of the current schema version.
	s, err := f.snaps.Load(ctx, "wallet-1")
	if err != nil {
		t.Fatal(err)
	}
	if s.SchemaVersion != 2 || s.Version != 5 || string(s.Data) != `{"balance":5}` {
		t.Fatalf("snapshot after the load: %+v (%s), want schema 2 at v5", s, s.Data)
	}
	// The next load uses it.
	if w, err := v2.Load(ctx, "wallet-1"); err != nil || w.SnapshotVersion() != 5 || w.Balance != 5 {
		t.Fatalf("second load = %v, %v", w, err)
	}
}

func TestSnapshotTypeMismatch(t *testing.T) {
	t.Parallel()
	f := setupSnapshots(t, aggregate.Config{SnapshotPolicy: snapshot.Never()}, nil)
	f.deposit(t, 3)
	f.putSnapshot(t, snapshot.Snapshot{StreamID: "wallet-1", Type: "Order", Version: 3, SchemaVersion: 1, Data: []byte(`{"balance":1000}`)})
	w, err := f.repo.Load(context.Background(), "wallet-1")
	if err != nil {
		t.Fatal(err)
	}
	if w.Balance != 3 {
		t.Fatalf("balance %d, want 3: a snapshot of another type was used", w.Balance)
	}
}

func TestSnapshotCorrupt(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	for _, tc := range []struct {
		name string
		data string
	}{
		{"NotJSON", `not json at all`},
		{"WrongFieldType", `{"balance":"lots"}`},
		{"UnknownField", `{"balance":1000,"owner":"x"}`},
		{"Null", `null`},
		{"TrailingData", `{"balance":1000} {"balance":2000}`},
		{"Truncated", `{"balance":10`},
		{"Array", `[1000]`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			f := setupSnapshots(t, aggregate.Config{SnapshotPolicy: snapshot.Never()}, nil)
			f.deposit(t, 4)
			f.putSnapshot(t, snapshot.Snapshot{StreamID: "wallet-1", Type: "wallet", Version: 3, SchemaVersion: 1, Data: []byte(tc.data)})
			w, err := f.repo.Load(ctx, "wallet-1")
			if err != nil {
				t.Fatalf("Load = %v, want a fallback to events", err)
			}
			if w.Balance != 4 || w.Version() != 4 {
				t.Fatalf("balance %d version %d, want 4 4", w.Balance, w.Version())
			}
			if !strings.Contains(f.log.String(), "cannot decode the snapshot") {
				t.Fatalf("the corrupt snapshot was not logged:\n%s", f.log.String())
			}
			s, err := f.snaps.Load(ctx, "wallet-1")
			if err != nil {
				t.Fatal(err)
			}
			if s.Version != 4 || string(s.Data) != `{"balance":4}` {
				t.Fatalf("the corrupt snapshot was not replaced: v%d %s", s.Version, s.Data)
			}
		})
	}
}

func TestSnapshotAheadOfStream(t *testing.T) {
	t.Parallel()
	f := setupSnapshots(t, aggregate.Config{SnapshotPolicy: snapshot.Never()}, nil)
	f.deposit(t, 3)
	// A snapshot from a database the events were not restored to.
	f.putSnapshot(t, snapshot.Snapshot{StreamID: "wallet-1", Type: "wallet", Version: 10, SchemaVersion: 1, Data: []byte(`{"balance":10}`)})
	w, err := f.repo.Load(context.Background(), "wallet-1")
	if err != nil {
		t.Fatal(err)
	}
	if w.Balance != 3 || w.Version() != 3 {
		t.Fatalf("balance %d version %d, want 3 3", w.Balance, w.Version())
	}
	if !strings.Contains(f.log.String(), "ahead of its stream") {
		t.Fatalf("the snapshot ahead of its stream was not logged:\n%s", f.log.String())
	}
	// A snapshot of a stream that does not exist is no stream either.
	f.putSnapshot(t, snapshot.Snapshot{StreamID: "wallet-9", Type: "wallet", Version: 1, SchemaVersion: 1, Data: []byte(`{"balance":10}`)})
	if _, err := f.repo.Load(context.Background(), "wallet-9"); !errors.Is(err, eventstore.ErrStreamNotFound) {
		t.Fatalf("Load of a stream with only a snapshot = %v, want ErrStreamNotFound", err)
	}
}

func TestSnapshotTimeTravel(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	f := setupSnapshots(t, aggregate.Config{SnapshotPolicy: snapshot.EveryN(5)}, nil)
	f.deposit(t, 7)
	if v := f.snapshotVersion(t); v != 5 {
		t.Fatalf("snapshot at v%d, want 5", v)
	}
	for _, tc := range []struct {
		version   int64
		wantFirst int64 // the first version read from the store
	}{
		{2, 1}, // before the snapshot: replay from the first event
		{4, 1},
		{5, 5}, // at or after the snapshot: start from it
		{6, 5},
		{7, 5},
	} {
		f.reads.take()
		w, err := f.repo.LoadVersion(ctx, "wallet-1", tc.version)
		if err != nil {
			t.Fatalf("LoadVersion(%d) = %v", tc.version, err)
		}
		if w.Balance != tc.version || w.Version() != tc.version {
			t.Fatalf("LoadVersion(%d): balance %d version %d", tc.version, w.Balance, w.Version())
		}
		if froms := f.reads.take(); len(froms) == 0 || froms[0] != tc.wantFirst {
			t.Fatalf("LoadVersion(%d) read from %v, want first %d", tc.version, froms, tc.wantFirst)
		}
	}
	if _, err := f.repo.LoadVersion(ctx, "wallet-1", 8); !errors.Is(err, aggregate.ErrVersionNotFound) {
		t.Fatalf("LoadVersion(8) = %v, want ErrVersionNotFound", err)
	}
	// LoadAt always replays the events.
	f.reads.take()
	w, err := f.repo.LoadAt(ctx, "wallet-1", f.clock.Now())
	if err != nil || w.Version() != 7 {
		t.Fatalf("LoadAt = %v, %v", w, err)
	}
	if froms := f.reads.take(); froms[0] != 1 {
		t.Fatalf("LoadAt read from %v, want 1", froms)
	}
}

func TestSnapshotEventsAfterAreChecked(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	f := setupSnapshots(t, aggregate.Config{SnapshotPolicy: snapshot.EveryN(2)}, nil)
	f.deposit(t, 2)
	if _, err := f.mem.Append(ctx, "wallet-1", eventstore.Any, eventstore.Event{Type: "Deposited", Data: []byte(`{"amount":"x"}`)}); err != nil {
		t.Fatal(err)
	}
	if _, err := f.repo.Load(ctx, "wallet-1"); !errors.Is(err, eventstore.ErrDecode) {
		t.Fatalf("Load with a corrupt event after the snapshot = %v, want ErrDecode", err)
	}
}

// failingSnapshots fails every Save and Load.
type failingSnapshots struct{ snapshot.Store }

var errSnapshotsDown = errors.New("snapshot store down")

func (failingSnapshots) Save(context.Context, snapshot.Snapshot) error { return errSnapshotsDown }
func (failingSnapshots) Load(context.Context, string) (snapshot.Snapshot, error) {
	return snapshot.Snapshot{}, errSnapshotsDown
}

func TestSnapshotStoreFailure(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	f := setupSnapshots(t, aggregate.Config{SnapshotPolicy: snapshot.EveryN(1)}, func(s snapshot.Store) snapshot.Store { return failingSnapshots{s} })
	f.deposit(t, 3) // saves succeed although every snapshot fails
	if v := f.streamVersion(t, "wallet-1"); v != 3 {
		t.Fatalf("stream version %d, want 3", v)
	}
	w, err := f.repo.Load(ctx, "wallet-1")
	if err != nil || w.Balance != 3 || w.SnapshotVersion() != 0 {
		t.Fatalf("Load = %v, %v; want the state from the events", w, err)
	}
	log := f.log.String()
	if !strings.Contains(log, "snapshot not taken") || !strings.Contains(log, "cannot load the snapshot") || !strings.Contains(log, errSnapshotsDown.Error()) {
		t.Fatalf("the failures were not logged:\n%s", log)
	}
	// An explicit snapshot returns the error.
	if err := f.repo.Snapshot(ctx, w); !errors.Is(err, errSnapshotsDown) {
		t.Fatalf("Snapshot = %v, want the store's error", err)
	}
}

// blockingSnapshots blocks Save until its context ends, and records it.
type blockingSnapshots struct {
	snapshot.Store
	deadline atomic.Int64 // time left until the deadline when Save was called, in ns
	canceled atomic.Bool
}

func (s *blockingSnapshots) Save(ctx context.Context, _ snapshot.Snapshot) error {
	if d, ok := ctx.Deadline(); ok {
		s.deadline.Store(int64(time.Until(d)))
	}
	<-ctx.Done()
	s.canceled.Store(true)
	return ctx.Err()
}

func TestSnapshotSaveIsBounded(t *testing.T) {
	t.Parallel()
	var blocking *blockingSnapshots
	f := setupSnapshots(t, aggregate.Config{SnapshotPolicy: snapshot.EveryN(1), SnapshotTimeout: 20 * time.Millisecond},
		func(s snapshot.Store) snapshot.Store { blocking = &blockingSnapshots{Store: s}; return blocking })
	f.deposit(t, 1)
	left := time.Duration(blocking.deadline.Load())
	if left <= 0 || left > 20*time.Millisecond {
		t.Fatalf("the snapshot's context had %v left, want a deadline within the 20ms SnapshotTimeout", left)
	}
	if !blocking.canceled.Load() || !strings.Contains(f.log.String(), "context deadline exceeded") {
		t.Fatalf("the hung snapshot was not abandoned and logged:\n%s", f.log.String())
	}
	if v := f.streamVersion(t, "wallet-1"); v != 1 {
		t.Fatalf("stream version %d, want 1", v)
	}
}

// secretWallet keeps its state in an unexported field.
type secretWallet struct {
	aggregate.Base
	balance int64
}

func (w *secretWallet) Apply(event any) error {
	switch e := event.(type) {
	case Deposited:
		w.balance += e.Amount
	default:
		return aggregate.Unhandled(event)
	}
	return nil
}

// binaryWallet is a secretWallet that implements aggregate.Snapshotter.
type binaryWallet struct {
	secretWallet
}

func (w *binaryWallet) MarshalSnapshot() ([]byte, error) {
	return binary.AppendVarint([]byte("bw1:"), w.balance), nil
}

func (w *binaryWallet) UnmarshalSnapshot(data []byte) error {
	rest, ok := bytes.CutPrefix(data, []byte("bw1:"))
	if !ok {
		return errors.New("not a bw1 snapshot")
	}
	if bytes.Equal(rest, []byte("boom")) {
		panic("decoder bug")
	}
	v, n := binary.Varint(rest)
	if n <= 0 || n != len(rest) {
		return errors.New("bad varint")
	}
	w.balance = v
	return nil
}

type pointerBaseWallet struct {
	*aggregate.Base
}

func (*pointerBaseWallet) Apply(any) error { return nil }

type hiddenFieldWallet struct {
	aggregate.Base
	Balance int64
	Cache   string `json:"-"`
}

func (*hiddenFieldWallet) Apply(any) error { return nil }

func TestSnapshotEncodingChecks(t *testing.T) {
	t.Parallel()
	store, reg, snaps := memory.New(nil), newRegistry(t), memory.NewSnapshotStore(nil)
	with := &aggregate.Config{Snapshots: snaps}
	if _, err := aggregate.NewRepository[secretWallet](store, reg, with); !errors.Is(err, eventstore.ErrInvalidInput) || !strings.Contains(err.Error(), "balance") {
		t.Fatalf("JSON snapshots of an unexported field: NewRepository = %v, want ErrInvalidInput naming the field", err)
	}
	if _, err := aggregate.NewRepository[hiddenFieldWallet](store, reg, with); !errors.Is(err, eventstore.ErrInvalidInput) || !strings.Contains(err.Error(), "Cache") {
		t.Fatalf(`JSON snapshots of a json:"-" field: NewRepository = %v, want ErrInvalidInput naming the field`, err)
	}
	if _, err := aggregate.NewRepository[secretWallet](store, reg, nil); err != nil {
		t.Fatalf("without snapshots, unexported fields are fine: %v", err)
	}
	if _, err := aggregate.NewRepository[binaryWallet](store, reg, with); err != nil {
		t.Fatalf("a Snapshotter may keep unexported fields: %v", err)
	}
	if _, err := aggregate.NewRepository[pointerBaseWallet](store, reg, nil); !errors.Is(err, eventstore.ErrInvalidInput) {
		t.Fatalf("embedding *aggregate.Base: NewRepository = %v, want ErrInvalidInput", err)
	}
	for _, cfg := range []*aggregate.Config{
		{Snapshots: snaps, SnapshotType: "bad\ntype"},
		{Snapshots: snaps, SnapshotSchemaVersion: -1},
		{Snapshots: snaps, SnapshotTimeout: -time.Second},
	} {
		if _, err := aggregate.NewRepository[wallet](store, reg, cfg); !errors.Is(err, eventstore.ErrInvalidInput) {
			t.Fatalf("NewRepository(%+v) = %v, want ErrInvalidInput", cfg, err)
		}
	}
}

func TestSnapshotter(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	store, reg, snaps := memory.New(nil), newRegistry(t), memory.NewSnapshotStore(nil)
	logs := &logBuffer{}
	repo, err := aggregate.NewRepository[binaryWallet](store, reg, &aggregate.Config{
		Snapshots: snaps, SnapshotPolicy: snapshot.EveryN(2), Logger: slog.New(slog.NewTextHandler(logs, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	for range 3 {
		if _, err := repo.Update(ctx, "wallet-1", func(w *binaryWallet) error { return aggregate.Record(w, Deposited{10}) }); err != nil {
			t.Fatal(err)
		}
	}
	s, err := snaps.Load(ctx, "wallet-1")
	if err != nil {
		t.Fatal(err)
	}
	if s.Type != "binaryWallet" || s.Version != 2 || !bytes.HasPrefix(s.Data, []byte("bw1:")) {
		t.Fatalf("snapshot %+v", s)
	}
	w, err := repo.Load(ctx, "wallet-1")
	if err != nil {
		t.Fatal(err)
	}
	if w.balance != 30 || w.SnapshotVersion() != 2 {
		t.Fatalf("balance %d snapshot %d, want 30 2: the unexported state did not survive the snapshot", w.balance, w.SnapshotVersion())
	}

	// A decoder that panics on bad data is contained.
	if err := snaps.Save(ctx, snapshot.Snapshot{StreamID: "wallet-1", Type: "binaryWallet", Version: 3, SchemaVersion: 1, Data: []byte("bw1:boom")}); err != nil {
		t.Fatal(err)
	}
	w, err = repo.Load(ctx, "wallet-1")
	if err != nil || w.balance != 30 {
		t.Fatalf("Load with a panicking decoder = %v, %v; want the state from the events", w, err)
	}
	if !strings.Contains(logs.String(), "decoder bug") {
		t.Fatalf("the panic was not logged:\n%s", logs.String())
	}
}

// loaderSnapshots gives the in-memory snapshot store a StreamLoader fast
// path reading from an in-memory event store, to exercise the
// repository's use of it.
type loaderSnapshots struct {
	*memory.SnapshotStore
	events      eventstore.Store
	unsupported bool
	calls       atomic.Int32
}

func (s *loaderSnapshots) LoadStream(ctx context.Context, events eventstore.Store, id, typ string, schema, limit int) (snapshot.StreamLoad, error) {
	s.calls.Add(1)
	if s.unsupported || events != s.events {
		return snapshot.StreamLoad{}, fmt.Errorf("other store: %w", errors.ErrUnsupported)
	}
	var res snapshot.StreamLoad
	from := int64(1)
	snap, err := s.Load(ctx, id)
	switch {
	case errors.Is(err, snapshot.ErrNotFound):
	case err != nil:
		return res, err
	default:
		res.Found = true
		if snap.Type == typ && snap.SchemaVersion == schema {
			from = snap.Version
		} else {
			snap.Data = nil
		}
		res.Snapshot = snap
	}
	res.Records, err = events.ReadStream(ctx, id, eventstore.ReadStreamOptions{From: from, Limit: limit})
	return res, err
}

func TestSnapshotStreamLoader(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	var loader *loaderSnapshots
	f := setupSnapshots(t, aggregate.Config{SnapshotPolicy: snapshot.EveryN(5), PageSize: 4}, func(s snapshot.Store) snapshot.Store {
		loader = &loaderSnapshots{SnapshotStore: s.(*memory.SnapshotStore)}
		return loader
	})
	loader.events = f.reads

	f.deposit(t, 7)
	f.reads.take()
	before := loader.calls.Load()
	w, err := f.repo.Load(ctx, "wallet-1")
	if err != nil {
		t.Fatal(err)
	}
	if w.Balance != 7 || w.Version() != 7 || w.SnapshotVersion() != 5 {
		t.Fatalf("balance %d version %d snapshot %d, want 7 7 5", w.Balance, w.Version(), w.SnapshotVersion())
	}
	// One LoadStream call read the snapshot and events 5..7: no other read.
	if n := loader.calls.Load() - before; n != 1 {
		t.Fatalf("%d LoadStream calls, want 1", n)
	}
	if froms := f.reads.take(); len(froms) != 1 || froms[0] != 5 {
		t.Fatalf("event reads from %v, want only the loader's from 5", froms)
	}

	// More events than a page after the snapshot: the load continues.
	f.appendRaw(t, "wallet-1", Deposited{1}, Deposited{1}, Deposited{1}, Deposited{1})
	if w, err := f.repo.Load(ctx, "wallet-1"); err != nil || w.Balance != 11 || w.Version() != 11 {
		t.Fatalf("Load over a page = %v, %v", w, err)
	}

	// Stale, corrupt and ahead snapshots through the fast path.
	for _, tc := range []struct {
		name string
		snap snapshot.Snapshot
		log  string
	}{
		{"Stale", snapshot.Snapshot{StreamID: "wallet-1", Type: "wallet", Version: 9, SchemaVersion: 7, Data: []byte(`{"balance":1000}`)}, "ignoring a snapshot"},
		{"Corrupt", snapshot.Snapshot{StreamID: "wallet-1", Type: "wallet", Version: 9, SchemaVersion: 1, Data: []byte(`{"balance":`)}, "cannot decode"},
		{"Ahead", snapshot.Snapshot{StreamID: "wallet-1", Type: "wallet", Version: 90, SchemaVersion: 1, Data: []byte(`{"balance":1000}`)}, "ahead of its stream"},
	} {
		f.putSnapshot(t, tc.snap)
		w, err := f.repo.Load(ctx, "wallet-1")
		if err != nil || w.Balance != 11 || w.Version() != 11 {
			t.Fatalf("%s: Load = %v, %v; want balance 11 at v11", tc.name, w, err)
		}
		if !strings.Contains(f.log.String(), tc.log) {
			t.Fatalf("%s: not logged:\n%s", tc.name, f.log.String())
		}
	}

	// An unsupported fast path falls back to loading the snapshot, then
	// reading the events from the one it covers.
	f.putSnapshot(t, snapshot.Snapshot{StreamID: "wallet-1", Type: "wallet", Version: 9, SchemaVersion: 1, Data: []byte(`{"balance":9}`)})
	loader.unsupported = true
	f.reads.take()
	if w, err := f.repo.Load(ctx, "wallet-1"); err != nil || w.Balance != 11 || w.SnapshotVersion() != 9 {
		t.Fatalf("Load without the fast path = %v, %v", w, err)
	}
	if froms := f.reads.take(); len(froms) != 1 || froms[0] != 9 {
		t.Fatalf("event reads from %v, want one from 9", froms)
	}
}

func TestSnapshotConcurrentUpdates(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	f := setupSnapshots(t, aggregate.Config{SnapshotPolicy: snapshot.EveryN(3), MaxRetries: 100}, nil)
	const workers, each = 6, 10
	var wg sync.WaitGroup
	errs := make(chan error, workers*each)
	for range workers {
		wg.Go(func() {
			for range each {
				if _, err := f.repo.Update(ctx, "wallet-1", func(w *wallet) error { return w.Deposit(1) }); err != nil {
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
	w, err := f.repo.Load(ctx, "wallet-1")
	if err != nil {
		t.Fatal(err)
	}
	if w.Balance != workers*each || w.Version() != workers*each || w.SnapshotVersion() == 0 {
		t.Fatalf("balance %d version %d snapshot %d, want %d %d and a snapshot", w.Balance, w.Version(), w.SnapshotVersion(), workers*each, workers*each)
	}
}

func BenchmarkLoad10kSnapshot(b *testing.B) {
	for _, withSnapshot := range []bool{false, true} {
		name := "WithoutSnapshot"
		if withSnapshot {
			name = "WithSnapshot"
		}
		b.Run(name, func(b *testing.B) {
			f := setupSnapshots(b, aggregate.Config{SnapshotPolicy: snapshot.Never()}, nil)
			events := make([]any, 10_000)
			for i := range events {
				events[i] = Deposited{Amount: 1}
			}
			f.appendRaw(b, "wallet-1", events...)
			repo := f.repo
			if !withSnapshot {
				repo = f.repoWith(b, func(c *aggregate.Config) { c.Snapshots = nil })
			} else {
				w, err := repo.Load(context.Background(), "wallet-1")
				if err != nil {
					b.Fatal(err)
				}
				if err := repo.Snapshot(context.Background(), w); err != nil {
					b.Fatal(err)
				}
			}
			ctx := context.Background()
			b.ReportAllocs()
			for b.Loop() {
				w, err := repo.Load(ctx, "wallet-1")
				if err != nil {
					b.Fatal(err)
				}
				if w.Balance != 10_000 {
					b.Fatalf("balance %d", w.Balance)
				}
			}
		})
	}
}

// bindingSnapshots is a snapshot store that joins "transactions": BindTx
// accepts only the store tx and returns the snapshot store inTx.
type bindingSnapshots struct {
	*memory.SnapshotStore
	tx   eventstore.Store
	inTx snapshot.Store
}

func (s *bindingSnapshots) BindTx(events eventstore.Store) (snapshot.Store, bool) {
	if events != s.tx {
		return nil, false
	}
	return s.inTx, true
}

// deadlineSnapshots records the deadline of each Save.
type deadlineSnapshots struct {
	*memory.SnapshotStore
	saves, withDeadline atomic.Int32
}

func (s *deadlineSnapshots) Save(ctx context.Context, snap snapshot.Snapshot) error {
	s.saves.Add(1)
	if _, ok := ctx.Deadline(); ok {
		s.withDeadline.Add(1)
	}
	return s.SnapshotStore.Save(ctx, snap)
}

func TestSnapshotWith(t *testing.T) {
	t.Parallel()
	ctx := context.Background()

	// A snapshot store that cannot join the given store's transaction is
	// not used at all: no snapshot of uncommitted events may outlive them.
	t.Run("NotBindable", func(t *testing.T) {
		t.Parallel()
		f := setupSnapshots(t, aggregate.Config{SnapshotPolicy: snapshot.EveryN(1)}, nil)
		f.deposit(t, 2)
		f.putSnapshot(t, snapshot.Snapshot{StreamID: "wallet-1", Type: "wallet", Version: 2, SchemaVersion: 1, Data: []byte(`{"balance":1000}`)})
		tx := &readLog{Store: f.mem}
		w, err := f.repo.With(tx).Update(ctx, "wallet-1", func(w *wallet) error { return w.Deposit(1) })
		if err != nil || w.Balance != 3 || w.SnapshotVersion() != 0 {
			t.Fatalf("Update = %v, %v; want balance 3 from the events, without a snapshot", w, err)
		}
		if v := f.snapshotVersion(t); v != 2 {
			t.Fatalf("snapshot at version %d, want 2: the bound repository took one", v)
		}
		bound := f.repo.With(tx)
		if err := bound.Snapshot(ctx, w); !errors.Is(err, eventstore.ErrInvalidInput) || !strings.Contains(err.Error(), "cannot join the transaction") {
			t.Fatalf("Snapshot = %v, want ErrInvalidInput saying the snapshot store cannot join", err)
		}
	})

	t.Run("Bound", func(t *testing.T) {
		t.Parallel()
		inTx := &deadlineSnapshots{SnapshotStore: memory.NewSnapshotStore(nil)}
		var binding *bindingSnapshots
		f := setupSnapshots(t, aggregate.Config{SnapshotPolicy: snapshot.EveryN(1)}, func(s snapshot.Store) snapshot.Store {
			binding = &bindingSnapshots{SnapshotStore: s.(*memory.SnapshotStore), inTx: inTx}
			return binding
		})
		binding.tx = &readLog{Store: f.mem}
		bound := f.repo.With(binding.tx)
		w, err := bound.Update(ctx, "wallet-1", func(w *wallet) error { return w.Deposit(4) })
		if err != nil || w.SnapshotVersion() != 1 {
			t.Fatalf("Update = %v, %v; want a snapshot at version 1", w, err)
		}
		if f.snapshotVersion(t) != 0 || inTx.saves.Load() != 1 {
			t.Fatalf("the snapshot went to the repository's own store (%d saves in the transaction)", inTx.saves.Load())
		}
		if inTx.withDeadline.Load() != 0 {
			t.Fatal("a snapshot inside a transaction was given the SnapshotTimeout deadline")
		}
		// Loads read the bound store's snapshot; an unusable one is not
		// replaced inside the transaction.
		if err := inTx.SnapshotStore.Save(ctx, snapshot.Snapshot{StreamID: "wallet-1", Type: "wallet", Version: 1, SchemaVersion: 9, Data: []byte(`{}`)}); err != nil {
			t.Fatal(err)
		}
		saves := inTx.saves.Load()
		if w, err := bound.Load(ctx, "wallet-1"); err != nil || w.Balance != 4 {
			t.Fatalf("Load = %v, %v", w, err)
		}
		if !strings.Contains(f.log.String(), "ignoring a snapshot of another type or schema version") {
			t.Fatalf("the load did not meet the stale snapshot:\n%s", f.log.String())
		}
		if inTx.saves.Load() != saves {
			t.Fatal("a load inside a transaction replaced a stale snapshot")
		}
	})

	// Inside a transaction a snapshot that cannot be read fails the load:
	// the statement may have aborted the transaction. (Outside, such a
	// failure is logged and skipped: TestSnapshotStoreFailure.)
	t.Run("ReadFailure", func(t *testing.T) {
		t.Parallel()
		var binding *bindingSnapshots
		f := setupSnapshots(t, aggregate.Config{SnapshotPolicy: snapshot.EveryN(1)}, func(s snapshot.Store) snapshot.Store {
			binding = &bindingSnapshots{SnapshotStore: s.(*memory.SnapshotStore), inTx: failingSnapshots{s}}
			return binding
		})
		binding.tx = &readLog{Store: f.mem}
		f.deposit(t, 1)
		if _, err := f.repo.With(binding.tx).Load(ctx, "wallet-1"); !errors.Is(err, errSnapshotsDown) {
			t.Fatalf("Load in a transaction = %v, want the snapshot store's error", err)
		}
		if w, err := f.repo.Load(ctx, "wallet-1"); err != nil || w.Balance != 1 {
			t.Fatalf("Load = %v, %v", w, err)
		}
	})
}
