package aggregate_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/chronicle-go/chronicle/aggregate"
	"github.com/chronicle-go/chronicle/eventstore"
	"github.com/chronicle-go/chronicle/memory"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// The test domain: a wallet.

type Deposited struct {
	Amount int64 `json:"amount"`
}

type Withdrawn struct {
	Amount int64 `json:"amount"`
}

// Renamed is registered but the wallet's Apply does not handle it.
type Renamed struct {
	Name string `json:"name"`
}

// Unregistered is handled by Apply but not registered.
type Unregistered struct{}

var errNoFunds = errors.New("insufficient funds")

type wallet struct {
	aggregate.Base
	Balance int64 `json:"balance"`
}

func (w *wallet) Apply(event any) error {
	switch e := event.(type) {
	case Deposited:
		w.Balance += e.Amount
	case Withdrawn:
		w.Balance -= e.Amount
	case Unregistered:
	default:
		return aggregate.Unhandled(event)
	}
	return nil
}

func (w *wallet) Deposit(n int64) error { return aggregate.Record(w, Deposited{Amount: n}) }

func (w *wallet) Withdraw(n int64) error {
	if n > w.Balance {
		return errNoFunds
	}
	return aggregate.Record(w, Withdrawn{Amount: n})
}

type fixture struct {
	mem   *memory.Store
	reg   *eventstore.Registry
	repo  *aggregate.Repository[wallet, *wallet]
	clock *clock
}

// clock is a settable time source for memory.Config.Now.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Set(t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = t
}

func newRegistry(t testing.TB) *eventstore.Registry {
	t.Helper()
	reg := eventstore.NewRegistry(nil)
	for _, err := range []error{
		eventstore.Register[Deposited](reg, "Deposited"),
		eventstore.Register[Withdrawn](reg, "Withdrawn"),
		eventstore.Register[Renamed](reg, "Renamed"),
	} {
		if err != nil {
			t.Fatal(err)
		}
	}
	return reg
}

// setup returns a memory store, a registry and a wallet repository on the
// store wrapped by wrap (when not nil).
func setup(t testing.TB, cfg *aggregate.Config, wrap func(eventstore.Store) eventstore.Store) *fixture {
	t.Helper()
	c := &clock{t: time.Date(2025, 1, 1, 12, 0, 0, 0, time.UTC)}
	f := &fixture{mem: memory.New(&memory.Config{Now: c.Now}), reg: newRegistry(t), clock: c}
	var store eventstore.Store = f.mem
	if wrap != nil {
		store = wrap(store)
	}
	repo, err := aggregate.NewRepository[wallet](store, f.reg, cfg)
	if err != nil {
		t.Fatal(err)
	}
	f.repo = repo
	return f
}

// appendRaw appends a Go event value straight to the memory store.
func (f *fixture) appendRaw(t testing.TB, id string, events ...any) {
	t.Helper()
	encoded := make([]eventstore.Event, len(events))
	for i, e := range events {
		ev, err := f.reg.Encode(e)
		if err != nil {
			t.Fatal(err)
		}
		encoded[i] = ev
	}
	if _, err := f.mem.Append(context.Background(), id, eventstore.Any, encoded...); err != nil {
		t.Fatal(err)
	}
}

func (f *fixture) streamVersion(t testing.TB, id string) int64 {
	t.Helper()
	v, err := f.mem.StreamVersion(context.Background(), id)
	if errors.Is(err, eventstore.ErrStreamNotFound) {
		return 0
	}
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// racingStore runs before (when set) ahead of every Append, to let a
// competing writer in between a load and a save.
type racingStore struct {
	eventstore.Store
	before  func()
	appends atomic.Int32
}

func (s *racingStore) Append(ctx context.Context, id string, exp eventstore.ExpectedVersion, evs ...eventstore.Event) (eventstore.AppendResult, error) {
	s.appends.Add(1)
	if s.before != nil {
		s.before()
	}
	return s.Store.Append(ctx, id, exp, evs...)
}

// countingStore counts ReadStream calls.
type countingStore struct {
	eventstore.Store
	reads atomic.Int32
}

func (s *countingStore) ReadStream(ctx context.Context, id string, opts eventstore.ReadStreamOptions) ([]eventstore.Record, error) {
	s.reads.Add(1)
	return s.Store.ReadStream(ctx, id, opts)
}

// lostReplyStore stores the first append but reports a lost connection,
// like a commit whose acknowledgement never arrived.
type lostReplyStore struct {
	eventstore.Store
	lost atomic.Bool
}

var errConnectionLost = errors.New("connection lost")

func (s *lostReplyStore) Append(ctx context.Context, id string, exp eventstore.ExpectedVersion, evs ...eventstore.Event) (eventstore.AppendResult, error) {
	res, err := s.Store.Append(ctx, id, exp, evs...)
	if err == nil && s.lost.CompareAndSwap(false, true) {
		return eventstore.AppendResult{}, errConnectionLost
	}
	return res, err
}

func TestRecord(t *testing.T) {
	t.Parallel()
	f := setup(t, nil, nil)
	w := f.repo.New("wallet-1")
	if w.ID() != "wallet-1" || w.Version() != 0 || w.StoredVersion() != 0 || w.HasUncommitted() {
		t.Fatalf("new aggregate: id %q version %d stored %d uncommitted %v", w.ID(), w.Version(), w.StoredVersion(), w.HasUncommitted())
	}
	if err := w.Deposit(10); err != nil {
		t.Fatal(err)
	}
	if err := w.Withdraw(3); err != nil {
		t.Fatal(err)
	}
	if w.Balance != 7 || w.Version() != 2 || w.StoredVersion() != 0 {
		t.Fatalf("after two events: balance %d version %d stored %d, want 7 2 0", w.Balance, w.Version(), w.StoredVersion())
	}
	got := w.Uncommitted()
	if len(got) != 2 || got[0] != (Deposited{10}) || got[1] != (Withdrawn{3}) {
		t.Fatalf("uncommitted = %#v", got)
	}
	got[0] = nil // a copy: the aggregate is not affected
	if w.Uncommitted()[0] != (Deposited{10}) {
		t.Fatal("Uncommitted returned the aggregate's own slice")
	}

	// A command refused by the domain records nothing.
	if err := w.Withdraw(100); !errors.Is(err, errNoFunds) {
		t.Fatalf("Withdraw(100) = %v, want errNoFunds", err)
	}
	// An event Apply does not handle is refused, and so is nil.
	err := aggregate.Record(w, Renamed{Name: "x"})
	var unhandled *aggregate.UnhandledEventError
	if !errors.Is(err, aggregate.ErrUnhandledEvent) || !errors.As(err, &unhandled) || unhandled.Event != (Renamed{Name: "x"}) {
		t.Fatalf("Record(Renamed) = %v, want an UnhandledEventError", err)
	}
	var invalid *eventstore.ValidationError
	if err := aggregate.Record(w, nil); !errors.Is(err, eventstore.ErrInvalidInput) || !errors.As(err, &invalid) || invalid.Field != "event" {
		t.Fatalf("Record(agg, nil) = %v, want a ValidationError on the event", err)
	}
	if err := aggregate.Record(nil, Deposited{1}); !errors.Is(err, eventstore.ErrInvalidInput) {
		t.Fatalf("Record(nil, event) = %v, want ErrInvalidInput", err)
	}
	if err := aggregate.Record((*wallet)(nil), Deposited{1}); !errors.Is(err, eventstore.ErrInvalidInput) {
		t.Fatalf("Record((*wallet)(nil), event) = %v, want ErrInvalidInput", err)
	}
	if w.Balance != 7 || w.Version() != 2 || len(w.Uncommitted()) != 2 {
		t.Fatalf("refused records changed the aggregate: balance %d version %d uncommitted %d", w.Balance, w.Version(), len(w.Uncommitted()))
	}
}

func TestSaveLoad(t *testing.T) {
	t.Parallel()
	f := setup(t, nil, nil)
	ctx := context.Background()

	w := f.repo.New("wallet-1")
	for _, n := range []int64{10, 20, 30} {
		if err := w.Deposit(n); err != nil {
			t.Fatal(err)
		}
	}
	md := eventstore.Metadata{CorrelationID: "req-1", CausationID: "cmd-1", Headers: map[string]string{"user": "ada"}}
	res, err := f.repo.Save(eventstore.WithMetadata(ctx, md), w)
	if err != nil {
		t.Fatal(err)
	}
	head, err := f.mem.Head(ctx)
	if err != nil {
		t.Fatal(err)
	}
	// The store's append result: what a caller waits for (read-your-writes).
	if res.StreamID != "wallet-1" || res.Version != 3 || res.Position != head || head.IsZero() {
		t.Fatalf("Save = %+v, want stream wallet-1 at version 3, position %v", res, head)
	}
	if w.Version() != 3 || w.StoredVersion() != 3 || w.HasUncommitted() {
		t.Fatalf("after save: version %d stored %d uncommitted %v, want 3 3 false", w.Version(), w.StoredVersion(), w.HasUncommitted())
	}
	// Saving again without new events is a no-op.
	if res, err := f.repo.Save(ctx, w); err != nil || res != (eventstore.AppendResult{StreamID: "wallet-1", Version: 3}) {
		t.Fatalf("no-op Save = %+v, %v; want version 3 and no position", res, err)
	}
	if v := f.streamVersion(t, "wallet-1"); v != 3 {
		t.Fatalf("stream version %d, want 3", v)
	}
	recs, err := f.mem.ReadStream(ctx, "wallet-1", eventstore.ReadStreamOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if recs[2].Position != res.Position || w.SavedPosition() != res.Position {
		t.Fatalf("last event at %v, Save reported %v, SavedPosition %v", recs[2].Position, res.Position, w.SavedPosition())
	}
	for _, r := range recs {
		if r.Type != "Deposited" || r.SchemaVersion != 1 || r.Metadata.CorrelationID != "req-1" || r.Metadata.CausationID != "cmd-1" || r.Metadata.Headers["user"] != "ada" {
			t.Fatalf("stored record %+v", r)
		}
	}

	got, err := f.repo.Load(ctx, "wallet-1")
	if err != nil {
		t.Fatal(err)
	}
	if got.ID() != "wallet-1" || got.Balance != 60 || got.Version() != 3 || got.StoredVersion() != 3 || got.HasUncommitted() {
		t.Fatalf("loaded: id %q balance %d version %d stored %d", got.ID(), got.Balance, got.Version(), got.StoredVersion())
	}

	// A second save continues from the stored version.
	if err := got.Withdraw(15); err != nil {
		t.Fatal(err)
	}
	if _, err := f.repo.Save(ctx, got); err != nil {
		t.Fatal(err)
	}
	again, err := f.repo.Load(ctx, "wallet-1")
	if err != nil {
		t.Fatal(err)
	}
	if again.Balance != 45 || again.Version() != 4 {
		t.Fatalf("reloaded: balance %d version %d, want 45 4", again.Balance, again.Version())
	}
}

func TestLoadNotFound(t *testing.T) {
	t.Parallel()
	f := setup(t, nil, nil)
	_, err := f.repo.Load(context.Background(), "nobody")
	if !errors.Is(err, eventstore.ErrStreamNotFound) {
		t.Fatalf("Load of a missing stream = %v, want ErrStreamNotFound", err)
	}
}

func TestLoadPaging(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	t.Run("DefaultOneRoundTrip", func(t *testing.T) {
		t.Parallel()
		var counter *countingStore
		f := setup(t, nil, func(s eventstore.Store) eventstore.Store { counter = &countingStore{Store: s}; return counter })
		for range 100 {
			f.appendRaw(t, "wallet-1", Deposited{1})
		}
		w, err := f.repo.Load(ctx, "wallet-1")
		if err != nil {
			t.Fatal(err)
		}
		if w.Balance != 100 || w.Version() != 100 {
			t.Fatalf("balance %d version %d, want 100 100", w.Balance, w.Version())
		}
		if n := counter.reads.Load(); n != 1 {
			t.Fatalf("loading 100 events took %d store reads, want 1", n)
		}
	})
	t.Run("SmallPages", func(t *testing.T) {
		t.Parallel()
		f := setup(t, &aggregate.Config{PageSize: 2}, nil)
		for i := range 7 {
			f.appendRaw(t, "wallet-1", Deposited{int64(i + 1)})
		}
		w, err := f.repo.Load(ctx, "wallet-1")
		if err != nil {
			t.Fatal(err)
		}
		if w.Balance != 28 || w.Version() != 7 {
			t.Fatalf("balance %d version %d, want 28 7", w.Balance, w.Version())
		}
		w, err = f.repo.LoadVersion(ctx, "wallet-1", 5)
		if err != nil {
			t.Fatal(err)
		}
		if w.Balance != 15 || w.Version() != 5 {
			t.Fatalf("at v5: balance %d version %d, want 15 5", w.Balance, w.Version())
		}
	})
}

func TestSaveConflict(t *testing.T) {
	t.Parallel()
	f := setup(t, nil, nil)
	ctx := context.Background()
	f.appendRaw(t, "wallet-1", Deposited{100})

	one, err := f.repo.Load(ctx, "wallet-1")
	if err != nil {
		t.Fatal(err)
	}
	two, err := f.repo.Load(ctx, "wallet-1")
	if err != nil {
		t.Fatal(err)
	}
	if err := one.Withdraw(60); err != nil {
		t.Fatal(err)
	}
	if err := two.Withdraw(70); err != nil {
		t.Fatal(err)
	}
	if _, err := f.repo.Save(ctx, one); err != nil {
		t.Fatal(err)
	}
	_, err = f.repo.Save(ctx, two)
	var conflict *eventstore.ConcurrencyError
	if !errors.Is(err, eventstore.ErrConcurrencyConflict) || !errors.As(err, &conflict) {
		t.Fatalf("second save = %v, want a concurrency conflict", err)
	}
	if conflict.Expected != eventstore.Exact(1) || conflict.Actual != 2 {
		t.Fatalf("conflict expected %s actual %d, want 1 and 2", conflict.Expected, conflict.Actual)
	}
	// The refused copy keeps its events; the store has only the winner's.
	if two.StoredVersion() != 1 || len(two.Uncommitted()) != 1 {
		t.Fatalf("refused copy: stored %d uncommitted %d, want 1 1", two.StoredVersion(), len(two.Uncommitted()))
	}
	w, err := f.repo.Load(ctx, "wallet-1")
	if err != nil {
		t.Fatal(err)
	}
	if w.Balance != 40 || w.Version() != 2 {
		t.Fatalf("stored: balance %d version %d, want 40 2", w.Balance, w.Version())
	}

	// Two new aggregates for the same stream: the second expects no stream.
	a, b := f.repo.New("wallet-2"), f.repo.New("wallet-2")
	_ = a.Deposit(1)
	_ = b.Deposit(2)
	if _, err := f.repo.Save(ctx, a); err != nil {
		t.Fatal(err)
	}
	if _, err := f.repo.Save(ctx, b); !errors.Is(err, eventstore.ErrConcurrencyConflict) {
		t.Fatalf("second create = %v, want a concurrency conflict", err)
	}
}

func TestSaveRetryAfterLostReply(t *testing.T) {
	t.Parallel()
	var lossy *lostReplyStore
	f := setup(t, nil, func(s eventstore.Store) eventstore.Store { lossy = &lostReplyStore{Store: s}; return lossy })
	ctx := eventstore.WithMetadata(context.Background(), eventstore.Metadata{CorrelationID: "req-9"})

	w := f.repo.New("wallet-1")
	_ = w.Deposit(5)
	_ = w.Deposit(6)
	if _, err := f.repo.Save(ctx, w); !errors.Is(err, errConnectionLost) {
		t.Fatalf("first save = %v, want the lost connection", err)
	}
	if w.StoredVersion() != 0 || len(w.Uncommitted()) != 2 {
		t.Fatalf("after a failed save: stored %d uncommitted %d, want 0 2", w.StoredVersion(), len(w.Uncommitted()))
	}
	// The events were stored; retrying the same save is a no-op success.
	if _, err := f.repo.Save(ctx, w); err != nil {
		t.Fatalf("retried save = %v", err)
	}
	if w.StoredVersion() != 2 || w.HasUncommitted() {
		t.Fatalf("after the retry: stored %d uncommitted %v", w.StoredVersion(), w.HasUncommitted())
	}
	if v := f.streamVersion(t, "wallet-1"); v != 2 {
		t.Fatalf("stream version %d, want 2: the retry stored events twice", v)
	}
}

func TestSaveUnregisteredEvent(t *testing.T) {
	t.Parallel()
	f := setup(t, nil, nil)
	w := f.repo.New("wallet-1")
	_ = w.Deposit(1)
	if err := aggregate.Record(w, Unregistered{}); err != nil {
		t.Fatal(err)
	}
	_, err := f.repo.Save(context.Background(), w)
	if !errors.Is(err, eventstore.ErrUnknownEventType) {
		t.Fatalf("Save = %v, want ErrUnknownEventType", err)
	}
	if v := f.streamVersion(t, "wallet-1"); v != 0 {
		t.Fatalf("stream version %d: part of a failed save was stored", v)
	}
}

func TestUpdate(t *testing.T) {
	t.Parallel()
	ctx := context.Background()

	t.Run("CreateOrUpdate", func(t *testing.T) {
		t.Parallel()
		f := setup(t, nil, nil)
		var versions []int64
		deposit := func(w *wallet) error {
			versions = append(versions, w.Version())
			return w.Deposit(10)
		}
		w, err := f.repo.Update(ctx, "wallet-1", deposit)
		if err != nil {
			t.Fatal(err)
		}
		if w.Version() != 1 || w.StoredVersion() != 1 || w.HasUncommitted() {
			t.Fatalf("created: version %d stored %d", w.Version(), w.StoredVersion())
		}
		if head, err := f.mem.Head(ctx); err != nil || w.SavedPosition() != head || head.IsZero() {
			t.Fatalf("SavedPosition %v after Update, head %v (%v)", w.SavedPosition(), head, err)
		}
		if loaded, err := f.repo.Load(ctx, "wallet-1"); err != nil || !loaded.SavedPosition().IsZero() {
			t.Fatalf("a loaded aggregate has SavedPosition %v (%v), want zero", loaded.SavedPosition(), err)
		}
		if _, err := f.repo.Update(ctx, "wallet-1", deposit); err != nil {
			t.Fatal(err)
		}
		if len(versions) != 2 || versions[0] != 0 || versions[1] != 1 {
			t.Fatalf("fn saw versions %v, want [0 1]", versions)
		}
		if v := f.streamVersion(t, "wallet-1"); v != 2 {
			t.Fatalf("stream version %d, want 2", v)
		}
	})

	t.Run("RetriesAfterConflict", func(t *testing.T) {
		t.Parallel()
		var racing *racingStore
		f := setup(t, nil, func(s eventstore.Store) eventstore.Store { racing = &racingStore{Store: s}; return racing })
		f.appendRaw(t, "wallet-1", Deposited{100})
		var once sync.Once
		racing.before = func() {
			// A competing writer appends between the first load and save.
			once.Do(func() { f.appendRaw(t, "wallet-1", Withdrawn{80}) })
		}
		var seen []int64
		w, err := f.repo.Update(ctx, "wallet-1", func(w *wallet) error {
			seen = append(seen, w.Balance)
			return w.Withdraw(15)
		})
		if err != nil {
			t.Fatalf("Update = %v", err)
		}
		if len(seen) != 2 || seen[0] != 100 || seen[1] != 20 {
			t.Fatalf("fn saw balances %v, want [100 20]: it must rerun on the reloaded state", seen)
		}
		if w.Balance != 5 || w.Version() != 3 || racing.appends.Load() != 2 {
			t.Fatalf("balance %d version %d appends %d, want 5 3 2", w.Balance, w.Version(), racing.appends.Load())
		}
	})

	t.Run("RetryRespectsDomainRules", func(t *testing.T) {
		t.Parallel()
		var racing *racingStore
		f := setup(t, nil, func(s eventstore.Store) eventstore.Store { racing = &racingStore{Store: s}; return racing })
		f.appendRaw(t, "wallet-1", Deposited{100})
		var once sync.Once
		racing.before = func() { once.Do(func() { f.appendRaw(t, "wallet-1", Withdrawn{90}) }) }
		_, err := f.repo.Update(ctx, "wallet-1", func(w *wallet) error { return w.Withdraw(50) })
		if !errors.Is(err, errNoFunds) {
			t.Fatalf("Update = %v, want errNoFunds from the rerun on the new state", err)
		}
		if v := f.streamVersion(t, "wallet-1"); v != 2 {
			t.Fatalf("stream version %d, want 2", v)
		}
	})

	t.Run("GivesUp", func(t *testing.T) {
		t.Parallel()
		for _, tc := range []struct {
			maxRetries int
			wantCalls  int
		}{
			{maxRetries: 0, wantCalls: 4}, // default: 3 retries
			{maxRetries: 1, wantCalls: 2},
			{maxRetries: -1, wantCalls: 1},
		} {
			var racing *racingStore
			f := setup(t, &aggregate.Config{MaxRetries: tc.maxRetries}, func(s eventstore.Store) eventstore.Store {
				racing = &racingStore{Store: s}
				return racing
			})
			f.appendRaw(t, "wallet-1", Deposited{100})
			racing.before = func() { f.appendRaw(t, "wallet-1", Deposited{1}) }
			calls := 0
			w, err := f.repo.Update(ctx, "wallet-1", func(w *wallet) error { calls++; return w.Withdraw(10) })
			if !errors.Is(err, eventstore.ErrConcurrencyConflict) || w != nil {
				t.Fatalf("MaxRetries %d: Update = %v, %v; want a concurrency conflict and no aggregate", tc.maxRetries, w, err)
			}
			if calls != tc.wantCalls {
				t.Fatalf("MaxRetries %d: fn ran %d times, want %d", tc.maxRetries, calls, tc.wantCalls)
			}
			if v := f.streamVersion(t, "wallet-1"); v != int64(1+tc.wantCalls) {
				t.Fatalf("MaxRetries %d: stream version %d, want %d (only the competing events)", tc.maxRetries, v, 1+tc.wantCalls)
			}
		}
	})

	t.Run("FunctionErrorAborts", func(t *testing.T) {
		t.Parallel()
		var racing *racingStore
		f := setup(t, nil, func(s eventstore.Store) eventstore.Store { racing = &racingStore{Store: s}; return racing })
		f.appendRaw(t, "wallet-1", Deposited{100})
		w, err := f.repo.Update(ctx, "wallet-1", func(w *wallet) error {
			_ = w.Deposit(1) // recorded, then the command fails: nothing is saved
			return w.Withdraw(1000)
		})
		if !errors.Is(err, errNoFunds) || w != nil {
			t.Fatalf("Update = %v, %v; want errNoFunds and no aggregate", w, err)
		}
		if racing.appends.Load() != 0 || f.streamVersion(t, "wallet-1") != 1 {
			t.Fatalf("appends %d, stream version %d: a failed command was saved", racing.appends.Load(), f.streamVersion(t, "wallet-1"))
		}
	})

	t.Run("NothingRecorded", func(t *testing.T) {
		t.Parallel()
		var racing *racingStore
		f := setup(t, nil, func(s eventstore.Store) eventstore.Store { racing = &racingStore{Store: s}; return racing })
		f.appendRaw(t, "wallet-1", Deposited{100})
		w, err := f.repo.Update(ctx, "wallet-1", func(*wallet) error { return nil })
		if err != nil || w.Version() != 1 || racing.appends.Load() != 0 {
			t.Fatalf("Update = %v; version %d appends %d", err, w.Version(), racing.appends.Load())
		}
	})

	t.Run("NothingRecordedOnNewStream", func(t *testing.T) {
		t.Parallel()
		var racing *racingStore
		f := setup(t, nil, func(s eventstore.Store) eventstore.Store { racing = &racingStore{Store: s}; return racing })
		w, err := f.repo.Update(ctx, "wallet-new", func(*wallet) error { return nil })
		if !errors.Is(err, eventstore.ErrStreamNotFound) || w != nil {
			t.Fatalf("Update = %v, %v; want ErrStreamNotFound and no aggregate", w, err)
		}
		if racing.appends.Load() != 0 || f.streamVersion(t, "wallet-new") != 0 {
			t.Fatal("an update that recorded nothing stored something")
		}
	})

	t.Run("LostReplyReturnsAggregateToRetry", func(t *testing.T) {
		t.Parallel()
		f := setup(t, nil, func(s eventstore.Store) eventstore.Store { return &lostReplyStore{Store: s} })
		w, err := f.repo.Update(ctx, "wallet-1", func(w *wallet) error { return w.Deposit(7) })
		if !errors.Is(err, errConnectionLost) || w == nil {
			t.Fatalf("Update = %v, %v; want the lost connection and the unsaved aggregate", w, err)
		}
		if _, err := f.repo.Save(ctx, w); err != nil {
			t.Fatal(err)
		}
		if v := f.streamVersion(t, "wallet-1"); v != 1 {
			t.Fatalf("stream version %d, want 1", v)
		}
	})

	t.Run("NilFunction", func(t *testing.T) {
		t.Parallel()
		f := setup(t, nil, nil)
		if _, err := f.repo.Update(ctx, "wallet-1", nil); !errors.Is(err, eventstore.ErrInvalidInput) {
			t.Fatalf("Update(nil) = %v, want ErrInvalidInput", err)
		}
	})
}

func TestLoadVersion(t *testing.T) {
	t.Parallel()
	f := setup(t, nil, nil)
	ctx := context.Background()
	f.appendRaw(t, "wallet-1", Deposited{100}, Withdrawn{30}, Deposited{5})

	for _, tc := range []struct {
		version int64
		balance int64
	}{{1, 100}, {2, 70}, {3, 75}} {
		w, err := f.repo.LoadVersion(ctx, "wallet-1", tc.version)
		if err != nil {
			t.Fatalf("LoadVersion(%d) = %v", tc.version, err)
		}
		if w.Balance != tc.balance || w.Version() != tc.version || w.StoredVersion() != tc.version {
			t.Fatalf("LoadVersion(%d): balance %d version %d stored %d", tc.version, w.Balance, w.Version(), w.StoredVersion())
		}
	}

	_, err := f.repo.LoadVersion(ctx, "wallet-1", 4)
	var vnf *aggregate.VersionNotFoundError
	if !errors.Is(err, aggregate.ErrVersionNotFound) || !errors.As(err, &vnf) || vnf.Current != 3 || vnf.Version != 4 {
		t.Fatalf("LoadVersion(4) = %v, want a VersionNotFoundError at 3", err)
	}
	for _, v := range []int64{0, -1} {
		if _, err := f.repo.LoadVersion(ctx, "wallet-1", v); !errors.Is(err, eventstore.ErrInvalidInput) {
			t.Fatalf("LoadVersion(%d) = %v, want ErrInvalidInput", v, err)
		}
	}
	if _, err := f.repo.LoadVersion(ctx, "nobody", 1); !errors.Is(err, eventstore.ErrStreamNotFound) {
		t.Fatalf("LoadVersion of a missing stream = %v, want ErrStreamNotFound", err)
	}

	// A past state cannot overwrite the present.
	old, err := f.repo.LoadVersion(ctx, "wallet-1", 1)
	if err != nil {
		t.Fatal(err)
	}
	_ = old.Deposit(1)
	if _, err := f.repo.Save(ctx, old); !errors.Is(err, eventstore.ErrConcurrencyConflict) {
		t.Fatalf("saving a past state = %v, want a concurrency conflict", err)
	}
}

func TestLoadAt(t *testing.T) {
	t.Parallel()
	f := setup(t, nil, nil)
	ctx := context.Background()
	t0 := time.Date(2025, 3, 1, 9, 0, 0, 0, time.UTC)
	for i, e := range []any{Deposited{100}, Withdrawn{30}, Deposited{5}} {
		f.clock.Set(t0.Add(time.Duration(i) * time.Minute))
		f.appendRaw(t, "wallet-1", e)
	}

	for _, tc := range []struct {
		name    string
		at      time.Time
		version int64
		balance int64
	}{
		{"AtFirst", t0, 1, 100},
		{"BetweenFirstAndSecond", t0.Add(30 * time.Second), 1, 100},
		{"AtSecond", t0.Add(time.Minute), 2, 70},
		{"AtSecondInAnotherZone", t0.Add(time.Minute).In(time.FixedZone("X", 3600)), 2, 70},
		{"AtLast", t0.Add(2 * time.Minute), 3, 75},
		{"Later", t0.Add(time.Hour), 3, 75},
	} {
		w, err := f.repo.LoadAt(ctx, "wallet-1", tc.at)
		if err != nil {
			t.Fatalf("%s: LoadAt = %v", tc.name, err)
		}
		if w.Version() != tc.version || w.Balance != tc.balance {
			t.Fatalf("%s: version %d balance %d, want %d %d", tc.name, w.Version(), w.Balance, tc.version, tc.balance)
		}
	}
	if _, err := f.repo.LoadAt(ctx, "wallet-1", t0.Add(-time.Nanosecond)); !errors.Is(err, eventstore.ErrStreamNotFound) {
		t.Fatalf("LoadAt before the first event = %v, want ErrStreamNotFound", err)
	}
	if _, err := f.repo.LoadAt(ctx, "wallet-1", time.Time{}); !errors.Is(err, eventstore.ErrInvalidInput) {
		t.Fatalf("LoadAt(zero time) = %v, want ErrInvalidInput", err)
	}
}

func TestLoadBadEvents(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	for _, tc := range []struct {
		name    string
		event   eventstore.Event
		want    error
		version int64
	}{
		{"UnknownType", eventstore.Event{Type: "Mystery", Data: []byte(`{}`)}, eventstore.ErrUnknownEventType, 2},
		{"CorruptPayload", eventstore.Event{Type: "Deposited", Data: []byte(`{"amount":"lots"}`)}, eventstore.ErrDecode, 2},
		{"PayloadNotAnObject", eventstore.Event{Type: "Deposited", Data: []byte(`[1,2]`)}, eventstore.ErrDecode, 2},
		{"NewerSchemaVersion", eventstore.Event{Type: "Deposited", SchemaVersion: 9, Data: []byte(`{"amount":1}`)}, eventstore.ErrDecode, 2},
		{"UnhandledByApply", eventstore.Event{Type: "Renamed", Data: []byte(`{"name":"x"}`)}, aggregate.ErrUnhandledEvent, 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			f := setup(t, nil, nil)
			f.appendRaw(t, "wallet-1", Deposited{1})
			if _, err := f.mem.Append(ctx, "wallet-1", eventstore.Any, tc.event); err != nil {
				t.Fatal(err)
			}
			f.appendRaw(t, "wallet-1", Deposited{1})
			w, err := f.repo.Load(ctx, "wallet-1")
			if !errors.Is(err, tc.want) || w != nil {
				t.Fatalf("Load = %v, %v; want %v and no aggregate", w, err, tc.want)
			}
			if !strings.Contains(err.Error(), `"wallet-1"`) || !strings.Contains(err.Error(), "version 2") {
				t.Fatalf("error %q does not name the stream and version", err)
			}
			if tc.want == aggregate.ErrUnhandledEvent {
				var ae *aggregate.ApplyError
				if !errors.As(err, &ae) || ae.Version != tc.version || ae.Type != "Renamed" {
					t.Fatalf("error %v is not an ApplyError at version %d", err, tc.version)
				}
			}
			// Time travel before the bad event still works.
			if w, err := f.repo.LoadVersion(ctx, "wallet-1", 1); err != nil || w.Balance != 1 {
				t.Fatalf("LoadVersion(1) = %v, %v", w, err)
			}
			// And Update refuses rather than acting on a wrong state.
			if _, err := f.repo.Update(ctx, "wallet-1", func(w *wallet) error { return w.Deposit(1) }); !errors.Is(err, tc.want) {
				t.Fatalf("Update = %v, want %v", err, tc.want)
			}
		})
	}
}

func TestInvalidStreamID(t *testing.T) {
	t.Parallel()
	f := setup(t, nil, nil)
	ctx := context.Background()
	for _, tc := range []struct {
		name string
		id   string
	}{
		{"Empty", ""},
		{"TooLong", strings.Repeat("x", eventstore.MaxStreamIDLength+1)},
		{"InvalidUTF8", "wallet-\xff"},
		{"ControlCharacter", "wallet\x00-1"},
		{"Newline", "wallet\n1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			check := func(op string, err error) {
				t.Helper()
				if !errors.Is(err, eventstore.ErrInvalidInput) {
					t.Fatalf("%s(%q) = %v, want ErrInvalidInput", op, tc.id, err)
				}
			}
			_, err := f.repo.Load(ctx, tc.id)
			check("Load", err)
			_, err = f.repo.LoadVersion(ctx, tc.id, 1)
			check("LoadVersion", err)
			_, err = f.repo.LoadAt(ctx, tc.id, time.Now())
			check("LoadAt", err)
			_, err = f.repo.Update(ctx, tc.id, func(w *wallet) error { return w.Deposit(1) })
			check("Update", err)
			w := f.repo.New(tc.id)
			_ = w.Deposit(1)
			_, err = f.repo.Save(ctx, w)
			check("Save", err)
		})
	}
	// A valid ID with quotes and semicolons is just a string.
	w := f.repo.New(`wallet'; DROP TABLE events; --`)
	_ = w.Deposit(1)
	if _, err := f.repo.Save(ctx, w); err != nil {
		t.Fatal(err)
	}
	if _, err := f.repo.Load(ctx, w.ID()); err != nil {
		t.Fatal(err)
	}
}

func TestNewRepositoryValidation(t *testing.T) {
	t.Parallel()
	store, reg := memory.New(nil), newRegistry(t)
	for _, tc := range []struct {
		name  string
		store eventstore.Store
		reg   *eventstore.Registry
		cfg   *aggregate.Config
		ok    bool
	}{
		{"Defaults", store, reg, nil, true},
		{"ZeroConfig", store, reg, &aggregate.Config{}, true},
		{"NilStore", nil, reg, nil, false},
		{"TypedNilStore", (*memory.Store)(nil), reg, nil, false},
		{"TypedNilSnapshots", store, reg, &aggregate.Config{Snapshots: (*memory.SnapshotStore)(nil)}, false},
		{"NilRegistry", store, nil, nil, false},
		{"NegativePageSize", store, reg, &aggregate.Config{PageSize: -1}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			repo, err := aggregate.NewRepository[wallet](tc.store, tc.reg, tc.cfg)
			if tc.ok != (err == nil) || tc.ok != (repo != nil) {
				t.Fatalf("NewRepository = %v, %v; want ok=%v", repo, err, tc.ok)
			}
			if !tc.ok && !errors.Is(err, eventstore.ErrInvalidInput) {
				t.Fatalf("error %v does not match ErrInvalidInput", err)
			}
		})
	}
	repo, _ := aggregate.NewRepository[wallet](store, reg, nil)
	if _, err := repo.Save(context.Background(), nil); !errors.Is(err, eventstore.ErrInvalidInput) {
		t.Fatalf("Save(nil) = %v, want ErrInvalidInput", err)
	}
}

func TestConcurrentUpdates(t *testing.T) {
	t.Parallel()
	f := setup(t, &aggregate.Config{MaxRetries: 100}, nil)
	ctx := context.Background()
	const workers, each = 8, 10
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
	if w.Balance != workers*each || w.Version() != workers*each {
		t.Fatalf("balance %d version %d, want %d: an update was lost", w.Balance, w.Version(), workers*each)
	}
}

func BenchmarkLoad100(b *testing.B) {
	f := setup(b, nil, nil)
	events := make([]any, 100)
	for i := range events {
		events[i] = Deposited{Amount: int64(i)}
	}
	f.appendRaw(b, "wallet-1", events...)
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := f.repo.Load(ctx, "wallet-1"); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkSave1(b *testing.B) {
	f := setup(b, nil, nil)
	ctx := context.Background()
	w := f.repo.New("wallet-1")
	b.ReportAllocs()
	for b.Loop() {
		if err := w.Deposit(1); err != nil {
			b.Fatal(err)
		}
		if _, err := f.repo.Save(ctx, w); err != nil {
			b.Fatal(err)
		}
	}
}

// stuckStore refuses every append with a conflict and stores nothing, like
// a store inside a transaction that cannot see the conflicting write.
type stuckStore struct {
	eventstore.Store
	appends atomic.Int32
}

func (s *stuckStore) Append(ctx context.Context, id string, exp eventstore.ExpectedVersion, _ ...eventstore.Event) (eventstore.AppendResult, error) {
	s.appends.Add(1)
	return eventstore.AppendResult{}, &eventstore.ConcurrencyError{StreamID: id, Expected: exp, Actual: -1}
}

// deadlockStore refuses every append with a transaction conflict after
// another writer appended, as a deadlock inside the caller's transaction
// does once the other transaction commits: a reload would see progress.
type deadlockStore struct {
	eventstore.Store
	appends atomic.Int32
}

func (s *deadlockStore) Append(ctx context.Context, id string, exp eventstore.ExpectedVersion, evs ...eventstore.Event) (eventstore.AppendResult, error) {
	s.appends.Add(1)
	if _, err := s.Store.Append(ctx, id, eventstore.Any, eventstore.Event{Type: "Deposited", Data: []byte(`{"amount":1}`)}); err != nil {
		return eventstore.AppendResult{}, err
	}
	return eventstore.AppendResult{}, &eventstore.TransactionConflictError{StreamID: id, Reason: "deadlock detected"}
}

func TestWith(t *testing.T) {
	t.Parallel()
	ctx := context.Background()

	t.Run("WorksOnTheGivenStore", func(t *testing.T) {
		t.Parallel()
		f := setup(t, nil, nil)
		other := memory.New(nil)
		bound := f.repo.With(other)
		w, err := bound.Update(ctx, "wallet-1", func(w *wallet) error { return w.Deposit(5) })
		if err != nil || w.Balance != 5 {
			t.Fatalf("Update = %v, %v", w, err)
		}
		if v, err := other.StreamVersion(ctx, "wallet-1"); err != nil || v != 1 {
			t.Fatalf("given store at version %d, %v; want 1", v, err)
		}
		if f.streamVersion(t, "wallet-1") != 0 {
			t.Fatal("the repository's own store was written")
		}
		if _, err := f.repo.Load(ctx, "wallet-1"); !errors.Is(err, eventstore.ErrStreamNotFound) {
			t.Fatalf("own repository Load = %v, want ErrStreamNotFound", err)
		}
		if w, err := bound.Load(ctx, "wallet-1"); err != nil || w.Balance != 5 {
			t.Fatalf("bound Load = %v, %v", w, err)
		}
	})

	t.Run("NilStore", func(t *testing.T) {
		t.Parallel()
		f := setup(t, nil, nil)
		for _, store := range []eventstore.Store{nil, (*memory.Store)(nil)} {
			bound := f.repo.With(store)
			if _, err := bound.Load(ctx, "wallet-1"); !errors.Is(err, eventstore.ErrInvalidInput) {
				t.Fatalf("Load = %v, want ErrInvalidInput", err)
			}
			if _, err := bound.Update(ctx, "wallet-1", func(w *wallet) error { return w.Deposit(1) }); !errors.Is(err, eventstore.ErrInvalidInput) {
				t.Fatalf("Update = %v, want ErrInvalidInput", err)
			}
			w := bound.New("wallet-1")
			_ = w.Deposit(1)
			if _, err := bound.Save(ctx, w); !errors.Is(err, eventstore.ErrInvalidInput) {
				t.Fatalf("Save = %v, want ErrInvalidInput", err)
			}
		}
	})

	// Inside a transaction, Update stops at a conflict that a reload does
	// not get past; the repository's own store keeps retrying.
	t.Run("UpdateStopsWithoutProgress", func(t *testing.T) {
		t.Parallel()
		f := setup(t, nil, nil)
		f.appendRaw(t, "wallet-1", Deposited{100})
		stuck := &stuckStore{Store: f.mem}
		calls := 0
		w, err := f.repo.With(stuck).Update(ctx, "wallet-1", func(w *wallet) error { calls++; return w.Withdraw(1) })
		if !errors.Is(err, eventstore.ErrConcurrencyConflict) || w != nil {
			t.Fatalf("Update = %v, %v; want a concurrency conflict and no aggregate", w, err)
		}
		if !strings.Contains(err.Error(), "retry the whole transaction") {
			t.Fatalf("error %q does not say to retry the transaction", err)
		}
		if calls != 1 || stuck.appends.Load() != 1 {
			t.Fatalf("fn ran %d times, %d appends; want 1 and 1", calls, stuck.appends.Load())
		}

		repo, err := aggregate.NewRepository[wallet](stuck, f.reg, nil)
		if err != nil {
			t.Fatal(err)
		}
		stuck.appends.Store(0)
		if _, err := repo.Update(ctx, "wallet-1", func(w *wallet) error { return w.Withdraw(1) }); !errors.Is(err, eventstore.ErrConcurrencyConflict) {
			t.Fatalf("Update = %v, want a concurrency conflict", err)
		}
		if n := stuck.appends.Load(); n != 4 {
			t.Fatalf("outside a transaction: %d appends, want 4 (3 retries)", n)
		}
	})

	// Inside a transaction nothing is committed before the caller's
	// commit: a failed save leaves no aggregate to retry Save with.
	t.Run("UpdateFailureReturnsNoAggregate", func(t *testing.T) {
		t.Parallel()
		f := setup(t, nil, nil)
		lost := &lostReplyStore{Store: f.mem}
		w, err := f.repo.With(lost).Update(ctx, "wallet-1", func(w *wallet) error { return w.Deposit(1) })
		if !errors.Is(err, errConnectionLost) || w != nil {
			t.Fatalf("Update = %v, %v; want the error and no aggregate", w, err)
		}
	})

	t.Run("UpdateStopsAtTransactionConflict", func(t *testing.T) {
		t.Parallel()
		f := setup(t, nil, nil)
		f.appendRaw(t, "wallet-1", Deposited{100})
		deadlocked := &deadlockStore{Store: f.mem}
		calls := 0
		w, err := f.repo.With(deadlocked).Update(ctx, "wallet-1", func(w *wallet) error { calls++; return w.Withdraw(1) })
		if !errors.Is(err, eventstore.ErrTransactionConflict) || w != nil || calls != 1 || deadlocked.appends.Load() != 1 {
			t.Fatalf("Update = %v, %v after %d calls and %d appends; want the transaction conflict after 1 and 1", w, err, calls, deadlocked.appends.Load())
		}
	})

	t.Run("UpdateRetriesAfterProgress", func(t *testing.T) {
		t.Parallel()
		f := setup(t, nil, nil)
		f.appendRaw(t, "wallet-1", Deposited{100})
		racing := &racingStore{Store: f.mem}
		var once sync.Once
		racing.before = func() { once.Do(func() { f.appendRaw(t, "wallet-1", Withdrawn{80}) }) }
		w, err := f.repo.With(racing).Update(ctx, "wallet-1", func(w *wallet) error { return w.Withdraw(15) })
		if err != nil || w.Balance != 5 || racing.appends.Load() != 2 {
			t.Fatalf("Update = %v, %v after %d appends; want balance 5 after 2", w, err, racing.appends.Load())
		}
	})
}
