package projection_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/chronicle-go/chronicle/eventstore"
	"github.com/chronicle-go/chronicle/memory"
	"github.com/chronicle-go/chronicle/projection"
	"github.com/chronicle-go/chronicle/projection/projectionstore"
)

// commitLog is a projection storage recording the checkpoint moves its
// leases commit.
type commitLog struct {
	*memory.ProjectionStore
	mu    sync.Mutex
	moves []eventstore.Position // the To of every commit that moved the checkpoint
}

func (s *commitLog) Acquire(ctx context.Context, key projectionstore.Key, partitions int, holder string) (projectionstore.Lease, error) {
	l, err := s.ProjectionStore.Acquire(ctx, key, partitions, holder)
	if l == nil || err != nil {
		return l, err
	}
	return &commitLogLease{Lease: l, log: s}, nil
}

func (s *commitLog) moved() []eventstore.Position {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]eventstore.Position(nil), s.moves...)
}

type commitLogLease struct {
	projectionstore.Lease
	log *commitLog
}

func (l *commitLogLease) Commit(ctx context.Context, c projectionstore.Commit) (projectionstore.Checkpoint, error) {
	cp, err := l.Lease.Commit(ctx, c)
	if err == nil && c.To != c.From {
		l.log.mu.Lock()
		l.log.moves = append(l.log.moves, c.To)
		l.log.mu.Unlock()
	}
	return cp, err
}

// counter counts deliveries per event; fail, when set, decides a
// delivery's error.
type counter struct {
	mu   sync.Mutex
	seen map[eventstore.EventID]int
	fail func(ev projection.Event) error
}

func (c *counter) Handle(_ context.Context, ev projection.Event) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.seen[ev.EventID]++
	if c.fail != nil {
		return c.fail(ev)
	}
	return nil
}

func (c *counter) times(id eventstore.EventID) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.seen[id]
}

// intervalEnv appends n events to n/10 streams and returns a runner over
// a commit log with projection "p" (AtLeastOnce, batches of 10) handled by
// h, polling every hour: nothing periodic (retry requests, checkpoint
// reads) runs while it catches up.
func intervalEnv(t *testing.T, n int, interval time.Duration, h projection.Handler, onFailure projection.FailurePolicy) (*env, *commitLog, *projection.Runner, []eventstore.Record) {
	return intervalEnvPolling(t, n, interval, time.Hour, h, onFailure)
}

// intervalEnvPolling is intervalEnv with a poll interval of its own.
func intervalEnvPolling(t *testing.T, n int, interval, poll time.Duration, h projection.Handler, onFailure projection.FailurePolicy) (*env, *commitLog, *projection.Runner, []eventstore.Record) {
	t.Helper()
	e := setup(t)
	for i := range n {
		e.deposit(fmt.Sprintf("acc-%d", i/10), 1)
	}
	log := &commitLog{ProjectionStore: e.storage}
	r, err := projection.New(e.store, log, &projection.Config{
		Logger: quietLogger(), PollInterval: poll, AcquireInterval: 20 * time.Millisecond,
		Retry: projection.RetryPolicy{BaseDelay: time.Millisecond, MaxDelay: 5 * time.Millisecond, MaxAttempts: 2},
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Add(projection.Projection{
		Name: "p", Handler: h, Mode: projection.AtLeastOnce, BatchSize: 10, CheckpointInterval: interval, OnFailure: onFailure,
	}); err != nil {
		t.Fatal(err)
	}
	recs, err := e.store.ReadAll(context.Background(), eventstore.Position{}, n+1)
	if err != nil || len(recs) != n {
		t.Fatalf("read %d events (%v), want %d", len(recs), err, n)
	}
	return e, log, r, recs
}

func storedCheckpoint(t *testing.T, s projectionstore.Storage) eventstore.Position {
	t.Helper()
	cps, err := s.Checkpoints(context.Background(), "p")
	if err != nil || len(cps) != 1 {
		t.Fatalf("checkpoints %v (%v), want one", cps, err)
	}
	return cps[0].Position
}

// While catching up, a projection with a checkpoint interval stores its
// checkpoint once for many batches, delivers every event once, and stores
// the head before it goes idle; without one, every batch commits.
func TestCheckpointIntervalDefersCommitsWhileCatchingUp(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		interval time.Duration
		maxMoves int
		minMoves int
	}{
		// The first batch commits (no commit yet), the nine full ones
		// after it are deferred, and the head is stored when the next
		// read finds nothing.
		{interval: time.Hour, minMoves: 1, maxMoves: 2},
		{interval: 0, minMoves: 10, maxMoves: 10},
	} {
		t.Run(fmt.Sprint(tc.interval), func(t *testing.T) {
			t.Parallel()
			h := &counter{seen: map[eventstore.EventID]int{}}
			e, log, r, recs := intervalEnv(t, 100, tc.interval, h, projection.StopOnFailure)
			e.start(r)
			head := recs[len(recs)-1].Position
			if err := r.WaitFor(waitCtx(t), "p", head); err != nil {
				t.Fatal(err)
			}
			if got := storedCheckpoint(t, log); got != head {
				t.Fatalf("stored checkpoint %v once caught up, want the head %v", got, head)
			}
			moves := log.moved()
			if len(moves) < tc.minMoves || len(moves) > tc.maxMoves {
				t.Fatalf("the checkpoint moved %d times (%v), want %d to %d", len(moves), moves, tc.minMoves, tc.maxMoves)
			}
			for i, rec := range recs {
				if n := h.times(rec.EventID); n != 1 {
					t.Fatalf("event %d delivered %d times, want once", i, n)
				}
			}
		})
	}
}

// A handler failure stores the deferred checkpoint with the events handled
// before it: parking the event redelivers nothing that was handled.
func TestCheckpointIntervalStoresBeforeAFailure(t *testing.T) {
	t.Parallel()
	h := &counter{seen: map[eventstore.EventID]int{}}
	var poison eventstore.EventID
	h.fail = func(ev projection.Event) error {
		if ev.EventID == poison {
			return projection.Permanent(errors.New("poison"))
		}
		return nil
	}
	e, log, r, recs := intervalEnv(t, 100, time.Hour, h, projection.ParkOnFailure)
	poison = recs[50].EventID // first of the sixth batch, after four deferred ones
	e.start(r)
	head := recs[len(recs)-1].Position
	if err := r.WaitFor(waitCtx(t), "p", head); err != nil {
		t.Fatal(err)
	}
	moves := log.moved()
	if !containsPosition(moves, recs[49].Position) {
		t.Fatalf("checkpoint moves %v: none stores the batches handled before the failure (%v)", moves, recs[49].Position)
	}
	for i, rec := range recs {
		if n := h.times(rec.EventID); n != 1 {
			t.Errorf("event %d delivered %d times, want once", i, n)
		}
	}
	dls, err := e.storage.DeadLetters(context.Background(), projectionstore.DeadLetterFilter{Projection: "p"})
	if err != nil || len(dls) != 1 || dls[0].EventID != poison {
		t.Fatalf("dead letters %v (%v), want the poison event", dls, err)
	}
}

func containsPosition(ps []eventstore.Position, p eventstore.Position) bool {
	for _, q := range ps {
		if q == p {
			return true
		}
	}
	return false
}

// A runner shut down while catching up stores what it handled: the next
// runner resumes after it, delivering nothing twice.
func TestCheckpointIntervalStoresOnShutdown(t *testing.T) {
	t.Parallel()
	h := &counter{seen: map[eventstore.EventID]int{}}
	stopAt := make(chan struct{})
	var once sync.Once
	h.fail = func(ev projection.Event) error {
		if ev.StreamVersion == 5 && ev.StreamID == "acc-6" { // event 64: batches 2-6 deferred
			once.Do(func() { close(stopAt) })
			time.Sleep(50 * time.Millisecond) // let the runner's ctx end while this batch runs
		}
		return nil
	}
	e, log, r, recs := intervalEnv(t, 100, time.Hour, h, projection.StopOnFailure)
	stop := e.start(r)
	select {
	case <-stopAt:
	case <-waitCtx(t).Done():
		t.Fatal("the runner never reached event 64")
	}
	stop()
	stored := storedCheckpoint(t, log)
	if stored.Compare(recs[59].Position) < 0 {
		t.Fatalf("stored checkpoint %v after shutdown, want at least %v (the deferred batches)", stored, recs[59].Position)
	}
	// A second runner resumes after the stored checkpoint.
	h2 := &counter{seen: map[eventstore.EventID]int{}}
	r2, err := projection.New(e.store, log, &projection.Config{Logger: quietLogger(), PollInterval: 20 * time.Millisecond, AcquireInterval: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if err := r2.Add(projection.Projection{Name: "p", Handler: h2, Mode: projection.AtLeastOnce, BatchSize: 10, CheckpointInterval: time.Hour}); err != nil {
		t.Fatal(err)
	}
	e.start(r2)
	if err := r2.WaitFor(waitCtx(t), "p", recs[len(recs)-1].Position); err != nil {
		t.Fatal(err)
	}
	for i, rec := range recs {
		first, second := h.times(rec.EventID), h2.times(rec.EventID)
		if first+second < 1 {
			t.Errorf("event %d never delivered", i)
		}
		if rec.Position.Compare(stored) <= 0 && second != 0 {
			t.Errorf("event %d, covered by the stored checkpoint, delivered again", i)
		}
	}
}

func TestCheckpointIntervalValidation(t *testing.T) {
	t.Parallel()
	e := setup(t)
	r := e.runner()
	for _, p := range []projection.Projection{
		{Name: "tx", Handler: &counter{}, CheckpointInterval: time.Second}, // Transactional by default
		{Name: "neg", Handler: &counter{}, Mode: projection.AtLeastOnce, CheckpointInterval: -time.Second},
	} {
		err := r.Add(p)
		if !errors.Is(err, eventstore.ErrInvalidInput) {
			t.Errorf("Add(%s) = %v, want a validation error on CheckpointInterval", p.Name, err)
		}
	}
}

// slowHandler takes a millisecond per event, so that catching up spans
// many poll intervals.
type slowHandler struct{ counter }

func (h *slowHandler) Handle(ctx context.Context, ev projection.Event) error {
	time.Sleep(time.Millisecond)
	return h.counter.Handle(ctx, ev)
}

// The poll interval (retry requests, checkpoint reads) does not store a
// deferred checkpoint: with a poll every 10ms and batches of 10ms, the
// checkpoint still moves once for the first batch and once when caught up.
// (Found in review: the poll stored it, capping the interval at the poll's.)
func TestCheckpointIntervalNotCappedByPolls(t *testing.T) {
	t.Parallel()
	h := &slowHandler{counter{seen: map[eventstore.EventID]int{}}}
	e, log, r, recs := intervalEnvPolling(t, 300, time.Hour, 10*time.Millisecond, h, projection.StopOnFailure)
	e.start(r)
	if err := r.WaitFor(waitCtx(t), "p", recs[len(recs)-1].Position); err != nil {
		t.Fatal(err)
	}
	if moves := log.moved(); len(moves) > 2 {
		t.Fatalf("the checkpoint moved %d times for 30 batches caught up under an hour's interval, want at most 2", len(moves))
	}
}
