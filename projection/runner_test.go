package projection_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/chronicle-go/chronicle/eventstore"
	"github.com/chronicle-go/chronicle/memory"
	"github.com/chronicle-go/chronicle/projection"
	"github.com/chronicle-go/chronicle/projection/projectionstore"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

type Deposited struct {
	Account string `json:"account"`
	Amount  int64  `json:"amount"`
}

type Withdrawn struct {
	Account string `json:"account"`
	Amount  int64  `json:"amount"`
}

// env is one test's world: an in-memory store and projection storage.
type env struct {
	t       *testing.T
	store   *memory.Store
	storage *memory.ProjectionStore
	reg     *eventstore.Registry
}

func setup(t *testing.T) *env {
	t.Helper()
	reg := eventstore.NewRegistry(nil)
	eventstore.MustRegister[Deposited](reg, "Deposited")
	eventstore.MustRegister[Withdrawn](reg, "Withdrawn")
	storage, err := memory.NewProjectionStore(nil)
	if err != nil {
		t.Fatal(err)
	}
	return &env{t: t, store: memory.New(nil), storage: storage, reg: reg}
}

// testConfig is the runner configuration of the tests: quick polls and
// retries, quiet logs.
func testConfig() *projection.Config {
	return &projection.Config{
		Logger:          quietLogger(),
		PollInterval:    20 * time.Millisecond,
		AcquireInterval: 20 * time.Millisecond,
		Retry:           projection.RetryPolicy{BaseDelay: time.Millisecond, MaxDelay: 5 * time.Millisecond},
	}
}

// quietLogger discards logs unless the test runs verbosely.
func quietLogger() *slog.Logger {
	if testing.Verbose() {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.DiscardHandler)
}

func (e *env) runner(projections ...projection.Projection) *projection.Runner {
	e.t.Helper()
	r, err := projection.New(e.store, e.storage, testConfig())
	if err != nil {
		e.t.Fatal(err)
	}
	for _, p := range projections {
		if err := r.Add(p); err != nil {
			e.t.Fatal(err)
		}
	}
	return r
}

// start runs r until the test ends (or stop is called).
func (e *env) start(r *projection.Runner) (stop func()) {
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

func (e *env) deposit(stream string, amount int64) eventstore.AppendResult {
	e.t.Helper()
	ev, err := e.reg.Encode(Deposited{Account: stream, Amount: amount})
	if err != nil {
		e.t.Fatal(err)
	}
	res, err := e.store.Append(context.Background(), stream, eventstore.Any, ev)
	if err != nil {
		e.t.Fatal(err)
	}
	return res
}

func waitCtx(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// balances is a read model kept by a projection.
type balances struct {
	mu      sync.Mutex
	byAcc   map[string]int64
	seen    map[eventstore.EventID]int
	resets  int
	handled int

	partitions int
	streamOf   map[eventstore.EventID]string
}

func newBalances() *balances {
	return &balances{byAcc: map[string]int64{}, seen: map[eventstore.EventID]int{}, streamOf: map[eventstore.EventID]string{}, partitions: 1}
}

func (b *balances) handlers(reg *eventstore.Registry) *projection.Handlers {
	h := projection.NewHandlers(reg)
	projection.On(h, func(_ context.Context, ev projection.Event, e Deposited) error {
		b.mu.Lock()
		defer b.mu.Unlock()
		b.byAcc[e.Account] += e.Amount
		b.seen[ev.EventID]++
		b.streamOf[ev.EventID] = ev.StreamID
		b.handled++
		return nil
	})
	projection.On(h, func(_ context.Context, ev projection.Event, e Withdrawn) error {
		b.mu.Lock()
		defer b.mu.Unlock()
		b.byAcc[e.Account] -= e.Amount
		b.seen[ev.EventID]++
		b.streamOf[ev.EventID] = ev.StreamID
		b.handled++
		return nil
	})
	// A partition's reset clears the rows of its own streams only: the
	// other partitions may have replayed theirs already.
	h.OnReset(func(_ context.Context, partition int) error {
		b.mu.Lock()
		defer b.mu.Unlock()
		for acc := range b.byAcc {
			if projection.PartitionOf(acc, b.partitions) == partition {
				delete(b.byAcc, acc)
			}
		}
		for id, stream := range b.streamOf {
			if projection.PartitionOf(stream, b.partitions) == partition {
				delete(b.seen, id)
			}
		}
		b.resets++
		return nil
	})
	return h
}

func (b *balances) get(acc string) int64 {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.byAcc[acc]
}

// duplicates returns the events handled more than once.
func (b *balances) duplicates() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	n := 0
	for _, c := range b.seen {
		if c > 1 {
			n++
		}
	}
	return n
}

func TestCatchUpThenFollow(t *testing.T) {
	t.Parallel()
	e := setup(t)
	for i := range 1200 {
		e.deposit(fmt.Sprintf("acc-%d", i%7), 1)
	}
	bal := newBalances()
	r := e.runner(projection.Projection{Name: "balances", Handler: bal.handlers(e.reg), BatchSize: 100})
	e.start(r)
	ctx := waitCtx(t)
	if err := r.WaitForHead(ctx, "balances"); err != nil {
		t.Fatal(err)
	}
	var total int64
	for i := range 7 {
		total += bal.get(fmt.Sprintf("acc-%d", i))
	}
	if total != 1200 {
		t.Fatalf("total after catch-up = %d, want 1200", total)
	}
	// Live: each append is seen.
	for i := range 20 {
		res := e.deposit("acc-live", int64(i))
		if err := r.WaitFor(ctx, "balances", res.Position); err != nil {
			t.Fatal(err)
		}
	}
	if got := bal.get("acc-live"); got != 190 {
		t.Fatalf("acc-live = %d, want 190", got)
	}
	if d := bal.duplicates(); d != 0 {
		t.Fatalf("%d events handled twice", d)
	}
}

func TestHandlersDispatchAndFallback(t *testing.T) {
	t.Parallel()
	e := setup(t)
	ctx := context.Background()
	var typed, other []string
	var mu sync.Mutex
	h := projection.NewHandlers(e.reg)
	projection.On(h, func(_ context.Context, ev projection.Event, d Deposited) error {
		mu.Lock()
		defer mu.Unlock()
		typed = append(typed, fmt.Sprintf("%s:%d@%d", d.Account, d.Amount, ev.StreamVersion))
		return nil
	})
	h.Fallback(func(_ context.Context, ev projection.Event) error {
		mu.Lock()
		defer mu.Unlock()
		other = append(other, ev.Type)
		return nil
	})
	e.deposit("a", 5)
	w, _ := e.reg.Encode(Withdrawn{Account: "a", Amount: 2})
	if _, err := e.store.Append(ctx, "a", eventstore.Any, w, eventstore.Event{Type: "Unregistered", Data: []byte(`{}`)}); err != nil {
		t.Fatal(err)
	}
	r := e.runner(projection.Projection{Name: "p", Handler: h})
	e.start(r)
	if err := r.WaitForHead(waitCtx(t), "p"); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if fmt.Sprint(typed) != "[a:5@1]" || fmt.Sprint(other) != "[Withdrawn Unregistered]" {
		t.Fatalf("typed = %v, other = %v", typed, other)
	}
}

func TestHandlersRegistrationErrors(t *testing.T) {
	t.Parallel()
	e := setup(t)
	type NotRegistered struct{}
	h := projection.NewHandlers(e.reg)
	projection.On(h, func(context.Context, projection.Event, NotRegistered) error { return nil })
	projection.On(h, func(context.Context, projection.Event, Deposited) error { return nil })
	projection.On(h, func(context.Context, projection.Event, Deposited) error { return nil })
	projection.On[Withdrawn](h, nil)
	err := h.Err()
	if !errors.Is(err, eventstore.ErrUnknownEventType) {
		t.Fatalf("Err() = %v, want unknown event type", err)
	}
	for _, want := range []string{"registered twice", "function is nil"} {
		if !containsString(err.Error(), want) {
			t.Errorf("Err() = %v, want it to mention %q", err, want)
		}
	}
	r := e.runner()
	if err := r.Add(projection.Projection{Name: "p", Handler: h}); !errors.Is(err, eventstore.ErrInvalidInput) {
		t.Fatalf("Add = %v, want invalid input", err)
	}
}

func containsString(s, sub string) bool {
	for i := 0; i+len(sub) <= len(s); i++ {
		if s[i:i+len(sub)] == sub {
			return true
		}
	}
	return false
}

func TestAddValidation(t *testing.T) {
	t.Parallel()
	e := setup(t)
	ok := projection.HandlerFunc(func(context.Context, projection.Event) error { return nil })
	tests := []struct {
		name string
		p    projection.Projection
	}{
		{"empty name", projection.Projection{Handler: ok}},
		{"control character", projection.Projection{Name: "a\nb", Handler: ok}},
		{"long name", projection.Projection{Name: string(make([]byte, 201)), Handler: ok}},
		{"nil handler", projection.Projection{Name: "p"}},
		{"bad mode", projection.Projection{Name: "p", Handler: ok, Mode: 7}},
		{"bad policy", projection.Projection{Name: "p", Handler: ok, OnFailure: 9}},
		{"negative partitions", projection.Projection{Name: "p", Handler: ok, Partitions: -1}},
		{"too many partitions", projection.Projection{Name: "p", Handler: ok, Partitions: 5000}},
		{"negative batch", projection.Projection{Name: "p", Handler: ok, BatchSize: -1}},
		{"negative attempts", projection.Projection{Name: "p", Handler: ok, Retry: projection.RetryPolicy{MaxAttempts: -1}}},
		{"base above max", projection.Projection{Name: "p", Handler: ok, Retry: projection.RetryPolicy{BaseDelay: time.Hour, MaxDelay: time.Second}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			r := e.runner()
			if err := r.Add(tt.p); !errors.Is(err, eventstore.ErrInvalidInput) {
				t.Fatalf("Add = %v, want invalid input", err)
			}
		})
	}
	t.Run("duplicate", func(t *testing.T) {
		t.Parallel()
		r := e.runner(projection.Projection{Name: "p", Handler: ok})
		if err := r.Add(projection.Projection{Name: "p", Handler: ok}); !errors.Is(err, eventstore.ErrInvalidInput) {
			t.Fatalf("Add = %v, want invalid input", err)
		}
	})
}

func TestNewValidation(t *testing.T) {
	t.Parallel()
	store := memory.New(nil)
	storage, err := memory.NewProjectionStore(nil)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		store   eventstore.Store
		storage projectionstore.Storage
		cfg     *projection.Config
	}{
		{"nil store", nil, storage, nil},
		{"nil storage", store, nil, nil},
		{"negative batch", store, storage, &projection.Config{BatchSize: -1}},
		{"huge batch", store, storage, &projection.Config{BatchSize: 1 << 30}},
		{"negative poll", store, storage, &projection.Config{PollInterval: -1}},
		{"negative acquire", store, storage, &projection.Config{AcquireInterval: -1}},
		{"negative batch timeout", store, storage, &projection.Config{BatchTimeout: -1}},
		{"negative retry delay", store, storage, &projection.Config{Retry: projection.RetryPolicy{BaseDelay: -1}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if _, err := projection.New(tt.store, tt.storage, tt.cfg); !errors.Is(err, eventstore.ErrInvalidInput) {
				t.Fatalf("New = %v, want invalid input", err)
			}
		})
	}
	r, err := projection.New(store, storage, nil)
	if err != nil {
		t.Fatal(err)
	}
	if r.Holder() == "" {
		t.Fatal("default holder is empty")
	}
	if err := r.Run(context.Background()); err == nil {
		t.Fatal("Run without projections succeeded")
	}
}

// flaky fails on the events listed in failOn until it has failed
// failures[id] times (forever when the count is negative).
type flaky struct {
	mu       sync.Mutex
	failOn   map[eventstore.EventID]int
	attempts map[eventstore.EventID][]int
	handled  []eventstore.EventID
}

func newFlaky() *flaky {
	return &flaky{failOn: map[eventstore.EventID]int{}, attempts: map[eventstore.EventID][]int{}}
}

func (f *flaky) fail(id eventstore.EventID, times int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.failOn[id] = times
}

func (f *flaky) Handle(_ context.Context, ev projection.Event) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.attempts[ev.EventID] = append(f.attempts[ev.EventID], ev.Attempt)
	if n, ok := f.failOn[ev.EventID]; ok && n != 0 {
		f.failOn[ev.EventID] = n - 1
		return fmt.Errorf("boom on %s", ev.StreamID)
	}
	f.handled = append(f.handled, ev.EventID)
	return nil
}

func (f *flaky) handledCount(id eventstore.EventID) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	n := 0
	for _, h := range f.handled {
		if h == id {
			n++
		}
	}
	return n
}

func (f *flaky) attemptsOf(id eventstore.EventID) []int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]int(nil), f.attempts[id]...)
}

func lastEventID(t *testing.T, s eventstore.Store, stream string) eventstore.EventID {
	t.Helper()
	recs, err := s.ReadStream(context.Background(), stream, eventstore.ReadStreamOptions{Direction: eventstore.Backward, Limit: 1})
	if err != nil || len(recs) != 1 {
		t.Fatalf("read %s: %v %v", stream, recs, err)
	}
	return recs[0].EventID
}

func TestTransientFailureIsRetried(t *testing.T) {
	t.Parallel()
	e := setup(t)
	f := newFlaky()
	e.deposit("a", 1)
	e.deposit("b", 1)
	f.fail(lastEventID(t, e.store, "b"), 2)
	res := e.deposit("c", 1)
	r := e.runner(projection.Projection{Name: "p", Handler: f, OnFailure: projection.ParkOnFailure})
	e.start(r)
	if err := r.WaitFor(waitCtx(t), "p", res.Position); err != nil {
		t.Fatal(err)
	}
	b := lastEventID(t, e.store, "b")
	if got := fmt.Sprint(f.attemptsOf(b)); got != "[1 2 3]" {
		t.Fatalf("attempts of b = %s, want [1 2 3]", got)
	}
	for _, s := range []string{"a", "b", "c"} {
		if n := f.handledCount(lastEventID(t, e.store, s)); n != 1 {
			t.Errorf("%s handled %d times, want 1", s, n)
		}
	}
	dls, err := e.storage.DeadLetters(context.Background(), projectionstore.DeadLetterFilter{})
	if err != nil || len(dls) != 0 {
		t.Fatalf("dead letters = %v, %v; want none", dls, err)
	}
}

func TestParkThenContinueThenRetryAndSkip(t *testing.T) {
	t.Parallel()
	e := setup(t)
	ctx := waitCtx(t)
	f := newFlaky()
	e.deposit("a", 1)
	e.deposit("poison", 1)
	poison := lastEventID(t, e.store, "poison")
	f.fail(poison, -1)
	e.deposit("poison2", 1)
	poison2 := lastEventID(t, e.store, "poison2")
	f.fail(poison2, -1)
	res := e.deposit("after", 1)
	r := e.runner(projection.Projection{Name: "p", Handler: f, OnFailure: projection.ParkOnFailure, Retry: projection.RetryPolicy{MaxAttempts: 3}})
	e.start(r)
	if err := r.WaitFor(ctx, "p", res.Position); err != nil {
		t.Fatal(err)
	}
	if n := f.handledCount(lastEventID(t, e.store, "after")); n != 1 {
		t.Fatalf("event after the poison handled %d times, want 1", n)
	}
	if got := fmt.Sprint(f.attemptsOf(poison)); got != "[1 2 3]" {
		t.Fatalf("attempts of poison = %s, want [1 2 3]", got)
	}
	dls, err := e.storage.DeadLetters(ctx, projectionstore.DeadLetterFilter{Projection: "p", Status: projectionstore.DeadLetterParked})
	if err != nil {
		t.Fatal(err)
	}
	if len(dls) != 2 || dls[0].EventID != poison || dls[0].Attempts != 3 || dls[0].StreamID != "poison" || dls[0].Error != "boom on poison" {
		t.Fatalf("dead letters = %+v", dls)
	}
	sts, err := r.Status(ctx)
	if err != nil || len(sts) != 1 || sts[0].Parked != 2 {
		t.Fatalf("status = %+v, %v; want 2 parked", sts, err)
	}

	// Fix the handler and retry the first; skip the second.
	f.fail(poison, 0)
	if err := e.storage.RetryDeadLetter(ctx, dls[0].ID); err != nil {
		t.Fatal(err)
	}
	if err := e.storage.SkipDeadLetter(ctx, dls[1].ID); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, func() bool { return f.handledCount(poison) == 1 })
	waitUntil(t, func() bool {
		dls, _ := e.storage.DeadLetters(ctx, projectionstore.DeadLetterFilter{Projection: "p", Status: projectionstore.DeadLetterResolved})
		return len(dls) == 1 && dls[0].EventID == poison && dls[0].Attempts == 4
	})
	dls, _ = e.storage.DeadLetters(ctx, projectionstore.DeadLetterFilter{Status: projectionstore.DeadLetterSkipped})
	if len(dls) != 1 || dls[0].EventID != poison2 {
		t.Fatalf("skipped = %+v", dls)
	}
	if n := f.handledCount(poison2); n != 0 {
		t.Fatalf("skipped event handled %d times", n)
	}

	// The states' transitions themselves are the storage's: see
	// projectionstore/storagetest (DeadLetterStates).
}

func TestRetriedDeadLetterFailingAgainIsParkedAgain(t *testing.T) {
	t.Parallel()
	e := setup(t)
	ctx := waitCtx(t)
	f := newFlaky()
	e.deposit("poison", 1)
	poison := lastEventID(t, e.store, "poison")
	f.fail(poison, -1)
	r := e.runner(projection.Projection{Name: "p", Handler: f, OnFailure: projection.ParkOnFailure, Retry: projection.RetryPolicy{MaxAttempts: 2}})
	e.start(r)
	if err := r.WaitForHead(ctx, "p"); err != nil {
		t.Fatal(err)
	}
	dls, _ := e.storage.DeadLetters(ctx, projectionstore.DeadLetterFilter{})
	if len(dls) != 1 {
		t.Fatalf("dead letters = %+v", dls)
	}
	if err := e.storage.RetryDeadLetter(ctx, dls[0].ID); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, func() bool {
		dls, _ := e.storage.DeadLetters(ctx, projectionstore.DeadLetterFilter{Status: projectionstore.DeadLetterParked})
		return len(dls) == 1 && dls[0].Attempts == 4
	})
}

func TestStopPolicyDoesNotBlockOthers(t *testing.T) {
	t.Parallel()
	e := setup(t)
	ctx := waitCtx(t)
	f := newFlaky()
	e.deposit("a", 1)
	e.deposit("poison", 1)
	poison := lastEventID(t, e.store, "poison")
	f.fail(poison, -1)
	res := e.deposit("after", 1)
	bal := newBalances()
	r := e.runner(
		projection.Projection{Name: "fragile", Handler: f, Retry: projection.RetryPolicy{MaxAttempts: 2}},
		projection.Projection{Name: "balances", Handler: bal.handlers(e.reg)},
	)
	e.start(r)
	err := r.WaitFor(ctx, "fragile", res.Position)
	var se *projection.StoppedError
	if !errors.As(err, &se) || se.EventID != poison || se.Attempts != 2 || !errors.Is(err, projection.ErrStopped) {
		t.Fatalf("WaitFor = %v, want a StoppedError at the poison event", err)
	}
	if err := r.WaitFor(ctx, "balances", res.Position); err != nil {
		t.Fatalf("other projection: %v", err)
	}
	if n := f.handledCount(lastEventID(t, e.store, "after")); n != 0 {
		t.Fatalf("stopped projection handled the event after the poison")
	}
	sts, err := r.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, st := range sts {
		switch st.Projection {
		case "fragile":
			if st.Error == "" || st.LagEvents != 2 || st.Holder == "" {
				t.Errorf("fragile status = %+v, want an error, a lag of 2 and a holder", st)
			}
		case "balances":
			if st.Error != "" || st.LagEvents != 0 || st.LagTime != 0 {
				t.Errorf("balances status = %+v, want no error and no lag", st)
			}
		}
	}
	dls, _ := e.storage.DeadLetters(ctx, projectionstore.DeadLetterFilter{})
	if len(dls) != 0 {
		t.Fatalf("stop policy parked %v", dls)
	}

	// A rebuild resumes a stopped projection; with the handler fixed it
	// gets past the event.
	f.fail(poison, 0)
	if err := r.Rebuild(ctx, "fragile", nil); err != nil {
		t.Fatal(err)
	}
	if n := f.handledCount(lastEventID(t, e.store, "after")); n != 1 {
		t.Fatalf("after rebuild, event handled %d times, want 1", n)
	}
}

func TestPermanentFailureSkipsRetries(t *testing.T) {
	t.Parallel()
	e := setup(t)
	ctx := waitCtx(t)
	var calls atomic.Int32
	h := projection.HandlerFunc(func(context.Context, projection.Event) error {
		calls.Add(1)
		return projection.Permanent(errors.New("bad data"))
	})
	res := e.deposit("a", 1)
	r := e.runner(projection.Projection{Name: "p", Handler: h, OnFailure: projection.ParkOnFailure})
	e.start(r)
	if err := r.WaitFor(ctx, "p", res.Position); err != nil {
		t.Fatal(err)
	}
	if calls.Load() != 1 {
		t.Fatalf("permanent failure attempted %d times, want 1", calls.Load())
	}
}

func TestCorruptPayloadIsParkedWithoutRetry(t *testing.T) {
	t.Parallel()
	e := setup(t)
	ctx := waitCtx(t)
	bal := newBalances()
	if _, err := e.store.Append(ctx, "a", eventstore.Any, eventstore.Event{Type: "Deposited", Data: []byte(`{"amount":"not a number"}`)}); err != nil {
		t.Fatal(err)
	}
	res := e.deposit("a", 5)
	r := e.runner(projection.Projection{Name: "p", Handler: bal.handlers(e.reg), OnFailure: projection.ParkOnFailure})
	e.start(r)
	if err := r.WaitFor(ctx, "p", res.Position); err != nil {
		t.Fatal(err)
	}
	dls, _ := e.storage.DeadLetters(ctx, projectionstore.DeadLetterFilter{})
	if len(dls) != 1 || dls[0].Attempts != 1 || dls[0].StreamVersion != 1 {
		t.Fatalf("dead letters = %+v", dls)
	}
	if got := bal.get("a"); got != 5 {
		t.Fatalf("balance = %d, want 5", got)
	}
}

func TestPanickingHandlerIsAFailure(t *testing.T) {
	t.Parallel()
	e := setup(t)
	ctx := waitCtx(t)
	var calls atomic.Int32
	h := projection.HandlerFunc(func(context.Context, projection.Event) error {
		if calls.Add(1) == 1 {
			panic("oops")
		}
		return nil
	})
	res := e.deposit("a", 1)
	r := e.runner(projection.Projection{Name: "p", Handler: h})
	e.start(r)
	if err := r.WaitFor(ctx, "p", res.Position); err != nil {
		t.Fatal(err)
	}
	if calls.Load() != 2 {
		t.Fatalf("calls = %d, want 2 (a panic, then a success)", calls.Load())
	}
}

func TestPartitionsKeepStreamOrder(t *testing.T) {
	t.Parallel()
	e := setup(t)
	ctx := waitCtx(t)
	const streams, perStream, parts = 20, 30, 4
	var mu sync.Mutex
	last := map[string]int64{}
	partOf := map[string]int{}
	count := 0
	var errs []string
	h := projection.HandlerFunc(func(_ context.Context, ev projection.Event) error {
		mu.Lock()
		defer mu.Unlock()
		if ev.StreamVersion != last[ev.StreamID]+1 {
			errs = append(errs, fmt.Sprintf("%s: version %d after %d", ev.StreamID, ev.StreamVersion, last[ev.StreamID]))
		}
		if p, ok := partOf[ev.StreamID]; ok && p != ev.Partition {
			errs = append(errs, fmt.Sprintf("%s moved from partition %d to %d", ev.StreamID, p, ev.Partition))
		}
		if ev.Partition != projection.PartitionOf(ev.StreamID, parts) {
			errs = append(errs, fmt.Sprintf("%s in partition %d", ev.StreamID, ev.Partition))
		}
		partOf[ev.StreamID] = ev.Partition
		last[ev.StreamID] = ev.StreamVersion
		count++
		return nil
	})
	r := e.runner(projection.Projection{Name: "p", Handler: h, Partitions: parts, BatchSize: 16})
	e.start(r)
	var res eventstore.AppendResult
	for v := range perStream {
		for s := range streams {
			res = e.deposit(fmt.Sprintf("s-%d", s), int64(v))
		}
	}
	if err := r.WaitFor(ctx, "p", res.Position); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(errs) > 0 {
		t.Fatalf("order violations: %v", errs)
	}
	if count != streams*perStream {
		t.Fatalf("handled %d events, want %d", count, streams*perStream)
	}
	used := map[int]bool{}
	for _, p := range partOf {
		used[p] = true
	}
	if len(used) < 2 {
		t.Fatalf("all streams in one partition: %v", partOf)
	}
	sts, err := r.Status(ctx)
	if err != nil || len(sts) != parts {
		t.Fatalf("status: %v %v", sts, err)
	}
	for _, st := range sts {
		if st.Position != res.Position || st.Partitions != parts {
			t.Errorf("partition %d at %s, want %s", st.Partition, st.Position, res.Position)
		}
	}
}

func TestTwoRunnersShareThePartitions(t *testing.T) {
	t.Parallel()
	e := setup(t)
	ctx := waitCtx(t)
	const parts = 4
	var active [parts]atomic.Int32
	var overlap atomic.Bool
	seen := sync.Map{}
	var dup atomic.Int32
	handler := func(_ context.Context, ev projection.Event) error {
		if active[ev.Partition].Add(1) > 1 {
			overlap.Store(true)
		}
		defer active[ev.Partition].Add(-1)
		if _, loaded := seen.LoadOrStore(ev.EventID, true); loaded {
			dup.Add(1)
		}
		time.Sleep(50 * time.Microsecond)
		return nil
	}
	p := projection.Projection{Name: "p", Handler: projection.HandlerFunc(handler), Partitions: parts, BatchSize: 10}
	r1, r2 := e.runner(p), e.runner(p)
	stop1 := e.start(r1)
	e.start(r2)
	var res eventstore.AppendResult
	for i := range 400 {
		res = e.deposit(fmt.Sprintf("s-%d", i%25), 1)
		if i == 200 {
			stop1() // the second runner takes over r1's partitions
		}
	}
	if err := r2.WaitFor(ctx, "p", res.Position); err != nil {
		t.Fatal(err)
	}
	if overlap.Load() {
		t.Fatal("two runners handled one partition at the same time")
	}
	if dup.Load() != 0 {
		t.Fatalf("%d events handled twice", dup.Load())
	}
	n := 0
	seen.Range(func(any, any) bool { n++; return true })
	if n != 400 {
		t.Fatalf("handled %d events, want 400", n)
	}
}

func TestRebuildResetsAndReplays(t *testing.T) {
	t.Parallel()
	e := setup(t)
	ctx := waitCtx(t)
	for i := range 300 {
		e.deposit(fmt.Sprintf("acc-%d", i%3), 2)
	}
	bal := newBalances()
	r := e.runner(projection.Projection{Name: "balances", Handler: bal.handlers(e.reg), BatchSize: 20})
	e.start(r)
	if err := r.WaitForHead(ctx, "balances"); err != nil {
		t.Fatal(err)
	}
	// Corrupt the read model, then rebuild it.
	bal.mu.Lock()
	bal.byAcc["acc-0"] = -1
	bal.mu.Unlock()
	var reports []projection.Progress
	if err := r.Rebuild(ctx, "balances", func(p projection.Progress) { reports = append(reports, p) }); err != nil {
		t.Fatal(err)
	}
	if got := bal.get("acc-0"); got != 200 {
		t.Fatalf("acc-0 = %d after rebuild, want 200", got)
	}
	if bal.resets != 1 {
		t.Fatalf("reset hook called %d times, want 1", bal.resets)
	}
	if d := bal.duplicates(); d != 0 {
		t.Fatalf("%d duplicates after the rebuild's reset", d)
	}
	lastReport := reports[len(reports)-1]
	if !lastReport.Done || lastReport.Fraction() != 1 || !lastReport.Started {
		t.Fatalf("last progress = %+v", lastReport)
	}
	if err := r.Rebuild(ctx, "nope", nil); !errors.Is(err, projection.ErrUnknownProjection) {
		t.Fatalf("rebuild unknown = %v", err)
	}
}

func TestRebuildBeforeFirstRun(t *testing.T) {
	t.Parallel()
	e := setup(t)
	ctx := waitCtx(t)
	e.deposit("a", 3)
	e.deposit("b", 4)
	bal := newBalances()
	bal.partitions = 2
	r := e.runner(projection.Projection{Name: "balances", Handler: bal.handlers(e.reg), Partitions: 2})
	done := make(chan error, 1)
	go func() { done <- r.Rebuild(ctx, "balances", nil) }()
	e.start(r)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	bal.mu.Lock()
	defer bal.mu.Unlock()
	if bal.resets != 2 || bal.byAcc["a"] != 3 || bal.byAcc["b"] != 4 {
		t.Fatalf("resets = %d, balances = %v; want 2 resets, a=3 and b=4", bal.resets, bal.byAcc)
	}
}

func TestWaitForErrors(t *testing.T) {
	t.Parallel()
	e := setup(t)
	r := e.runner(projection.Projection{Name: "p", Handler: projection.HandlerFunc(func(context.Context, projection.Event) error { return nil })})
	if err := r.WaitFor(context.Background(), "nope", eventstore.Position{}); !errors.Is(err, projection.ErrUnknownProjection) {
		t.Fatalf("WaitFor unknown = %v", err)
	}
	if err := r.WaitFor(context.Background(), "p", eventstore.Position{}); err != nil {
		t.Fatalf("WaitFor zero position = %v", err)
	}
	res := e.deposit("a", 1)
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if err := r.WaitFor(ctx, "p", res.Position); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("WaitFor without a running runner = %v, want deadline exceeded", err)
	}
}

// TestShutdownMidBatch cancels the runner while a handler blocks, and
// checks the next runner resumes without losing an event.
func TestShutdownMidBatch(t *testing.T) {
	t.Parallel()
	e := setup(t)
	ctx := waitCtx(t)
	for i := range 50 {
		e.deposit(fmt.Sprintf("s-%d", i), 1)
	}
	var handled sync.Map
	block := make(chan struct{})
	entered := make(chan struct{})
	var n atomic.Int32
	h := projection.HandlerFunc(func(ctx context.Context, ev projection.Event) error {
		if n.Add(1) == 25 {
			close(entered)
			select {
			case <-block:
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		handled.Store(ev.EventID, true)
		return nil
	})
	p := projection.Projection{Name: "p", Handler: h, Mode: projection.AtLeastOnce, BatchSize: 50}
	r := e.runner(p)
	stop := e.start(r)
	<-entered
	stop()
	sts, err := r.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	// The 24 events handled before the shutdown were checkpointed.
	if sts[0].LagEvents != 26 {
		t.Fatalf("lag after shutdown = %d, want 26", sts[0].LagEvents)
	}
	r2 := e.runner(p)
	e.start(r2)
	if err := r2.WaitForHead(ctx, "p"); err != nil {
		t.Fatal(err)
	}
	count := 0
	handled.Range(func(any, any) bool { count++; return true })
	if count != 50 {
		t.Fatalf("handled %d distinct events, want 50", count)
	}
}

func TestPartitionsMismatch(t *testing.T) {
	t.Parallel()
	e := setup(t)
	ctx := waitCtx(t)
	res := e.deposit("a", 1)
	noop := projection.HandlerFunc(func(context.Context, projection.Event) error { return nil })
	r := e.runner(projection.Projection{Name: "p", Handler: noop, Partitions: 2})
	stop := e.start(r)
	if err := r.WaitFor(ctx, "p", res.Position); err != nil {
		t.Fatal(err)
	}
	stop()
	r2 := e.runner(projection.Projection{Name: "p", Handler: noop, Partitions: 3})
	e.start(r2)
	e.deposit("b", 1)
	err := r2.WaitForHead(ctx, "p")
	if !errors.Is(err, projection.ErrPartitionsMismatch) {
		t.Fatalf("WaitForHead = %v, want a partitions mismatch", err)
	}
}

func waitUntil(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within 10s")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// tickingStore wakes its watchers every tick, as the PostgreSQL store does
// on its poll ticks, with no new event.
type tickingStore struct {
	*memory.Store
	tick time.Duration
}

func (s tickingStore) Watch(ctx context.Context) <-chan struct{} {
	ch := make(chan struct{}, 1)
	go func() {
		defer close(ch)
		t := time.NewTicker(s.tick)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				select {
				case ch <- struct{}{}:
				default:
				}
			}
		}
	}()
	return ch
}

// TestIdleRebuildWithFrequentWakeUps checks that an idle partition notices
// a rebuild request even when the store wakes it more often than its poll
// interval.
func TestIdleRebuildWithFrequentWakeUps(t *testing.T) {
	t.Parallel()
	e := setup(t)
	ctx := waitCtx(t)
	store := tickingStore{Store: e.store, tick: 2 * time.Millisecond}
	res := e.deposit("a", 1)
	var resets atomic.Int32
	r, err := projection.New(store, e.storage, &projection.Config{Logger: quietLogger(), PollInterval: 50 * time.Millisecond, AcquireInterval: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	noop := projection.HandlerFunc(func(context.Context, projection.Event) error { return nil })
	if err := r.Add(projection.Projection{Name: "p", Handler: noop, Reset: func(context.Context, int) error { resets.Add(1); return nil }}); err != nil {
		t.Fatal(err)
	}
	e.start(r)
	if err := r.WaitFor(ctx, "p", res.Position); err != nil {
		t.Fatal(err)
	}
	time.Sleep(100 * time.Millisecond) // idle
	if err := e.storage.RequestRebuild(ctx, "p", 0); err != nil {
		t.Fatal(err)
	}
	if err := projection.WaitRebuild(ctx, store, e.storage, "p", nil); err != nil {
		t.Fatal(err)
	}
	if resets.Load() != 1 {
		t.Fatalf("reset hook called %d times, want 1", resets.Load())
	}
}

func TestRunWithoutProjectionsIsTyped(t *testing.T) {
	t.Parallel()
	e := setup(t)
	r := e.runner()
	if err := r.Run(context.Background()); !errors.Is(err, projection.ErrNoProjections) {
		t.Fatalf("Run with no projection = %v, want ErrNoProjections", err)
	}
	if err := r.Run(context.Background()); !errors.Is(err, projection.ErrRunnerStarted) {
		t.Fatalf("second Run = %v, want ErrRunnerStarted", err)
	}
}

// TestPartitionLagCountsOwnEvents checks that each partition's lag counts
// only the events of its own streams.
func TestPartitionLagCountsOwnEvents(t *testing.T) {
	t.Parallel()
	e := setup(t)
	ctx := waitCtx(t)
	const parts = 3
	want := make([]int64, parts)
	for i := range 40 {
		s := fmt.Sprintf("acc-%d", i%7)
		e.deposit(s, 1)
		want[projection.PartitionOf(s, parts)]++
	}
	r := e.runner(projection.Projection{Name: "p", Partitions: parts,
		Handler: projection.HandlerFunc(func(context.Context, projection.Event) error { return nil })})
	sts, err := r.Status(ctx)
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

// TestTransactionalRedeliveryOnMemory runs a transactional projection on
// the transactional memory storage: an event failing in the middle of a
// batch rolls the batch back, the events before it are delivered again in
// a transaction of their own, and the read model (written through the
// transaction) still applies each event exactly once.
func TestTransactionalRedeliveryOnMemory(t *testing.T) {
	t.Parallel()
	e := setup(t)
	ctx := waitCtx(t)
	storage, err := memory.NewProjectionStore(&memory.ProjectionStoreConfig{Transactional: true})
	if err != nil {
		t.Fatal(err)
	}
	e.storage = storage
	for i := range 10 {
		e.deposit(fmt.Sprintf("acc-%d", i%3), int64(i))
	}
	poison := lastEventID(t, e.store, "acc-2") // the 9th event
	var (
		mu       sync.Mutex
		applied  = map[eventstore.EventID]int{}
		attempts = map[eventstore.EventID][]int{}
		failed   bool
	)
	h := projection.HandlerFunc(func(ctx context.Context, ev projection.Event) error {
		mu.Lock()
		defer mu.Unlock()
		attempts[ev.EventID] = append(attempts[ev.EventID], ev.Attempt)
		if ev.EventID == poison && !failed {
			failed = true
			return errors.New("transient")
		}
		tx, ok := memory.ProjectionTxFrom(ctx)
		if !ok {
			return errors.New("no transaction")
		}
		id := ev.EventID
		tx.OnCommit(func() {
			mu.Lock()
			applied[id]++
			mu.Unlock()
		})
		return nil
	})
	r := e.runner(projection.Projection{Name: "p", Handler: h, BatchSize: 100})
	e.start(r)
	if err := r.WaitForHead(ctx, "p"); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(applied) != 10 {
		t.Fatalf("%d events applied, want 10", len(applied))
	}
	for id, n := range applied {
		if n != 1 {
			t.Fatalf("event %s applied %d times", id, n)
		}
	}
	recs, err := e.store.ReadAll(ctx, eventstore.Position{}, 10)
	if err != nil {
		t.Fatal(err)
	}
	// The 8 events before the poison were delivered twice (the rolled-back
	// batch, then their own transaction); the poison was retried; the one
	// after it was delivered once.
	for i, rec := range recs {
		want := "[1 2]"
		if i == 9 {
			want = "[1]"
		}
		if got := fmt.Sprint(attempts[rec.EventID]); got != want {
			t.Errorf("event %d attempts = %s, want %s", i, got, want)
		}
	}
}

// slowStopStorage delays the commit that records a stopped partition, as a
// busy database would.
type slowStopStorage struct {
	*memory.ProjectionStore
	delay time.Duration
}

func (s slowStopStorage) Acquire(ctx context.Context, key projectionstore.Key, partitions int, holder string) (projectionstore.Lease, error) {
	l, err := s.ProjectionStore.Acquire(ctx, key, partitions, holder)
	if l == nil || err != nil {
		return l, err
	}
	return slowStopLease{Lease: l, delay: s.delay}, nil
}

type slowStopLease struct {
	projectionstore.Lease
	delay time.Duration
}

func (l slowStopLease) Commit(ctx context.Context, c projectionstore.Commit) (projectionstore.Checkpoint, error) {
	if c.Error != "" {
		select {
		case <-time.After(l.delay):
		case <-ctx.Done():
			return projectionstore.Checkpoint{}, ctx.Err()
		}
	}
	return l.Lease.Commit(ctx, c)
}

// A stop is in storage before the runner reports it: a runner shut down
// as soon as WaitFor says "stopped" leaves the stop recorded, so that
// health checks and other instances see it.
func TestStopRecordedBeforeReported(t *testing.T) {
	t.Parallel()
	e := setup(t)
	ctx := waitCtx(t)
	f := newFlaky()
	e.deposit("poison", 1)
	poison := lastEventID(t, e.store, "poison")
	f.fail(poison, -1)
	res := e.deposit("after", 1)
	r, err := projection.New(e.store, slowStopStorage{ProjectionStore: e.storage, delay: 200 * time.Millisecond}, testConfig())
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Add(projection.Projection{Name: "fragile", Handler: f, Retry: projection.RetryPolicy{MaxAttempts: 1}, OnFailure: projection.StopOnFailure}); err != nil {
		t.Fatal(err)
	}
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- r.Run(runCtx) }()
	if err := r.WaitFor(ctx, "fragile", res.Position); !errors.Is(err, projection.ErrStopped) {
		t.Fatalf("WaitFor = %v, want stopped", err)
	}
	stop()
	<-done
	cps, err := e.storage.Checkpoints(ctx, "fragile")
	if err != nil {
		t.Fatal(err)
	}
	if len(cps) != 1 || cps[0].Error == "" {
		t.Fatalf("checkpoints after the stop was reported: %+v, want the stop recorded", cps)
	}
}
