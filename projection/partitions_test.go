package projection_test

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chronicle-go/chronicle/eventstore"
	"github.com/chronicle-go/chronicle/projection"
	"github.com/chronicle-go/chronicle/projection/projectionstore"
)

// dyingStorage is a storage whose runner never leaves the instances, as
// a process that dies: its instance expires instead.
type dyingStorage struct{ projectionstore.Storage }

func (dyingStorage) Leave(context.Context, string, string) error { return nil }

// holders counts the partitions of a projection each runner holds, as
// the storage reports them.
func holders(t *testing.T, storage projectionstore.Storage, name string) map[string]int {
	t.Helper()
	cps, err := storage.Checkpoints(context.Background(), name)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]int{}
	for _, cp := range cps {
		if cp.Holder != "" {
			out[cp.Holder]++
		}
	}
	return out
}

// waitHolders waits until the holders of a projection are want, and
// returns how long it took.
func waitHolders(t *testing.T, storage projectionstore.Storage, name string, within time.Duration, want func(map[string]int) bool) time.Duration {
	t.Helper()
	start := time.Now()
	for {
		got := holders(t, storage, name)
		if want(got) {
			return time.Since(start)
		}
		if time.Since(start) > within {
			t.Fatalf("holders of %q after %s: %v", name, within, got)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// exactly returns a holders check for the given counts.
func exactly(want map[string]int) func(map[string]int) bool {
	return func(got map[string]int) bool { return maps.Equal(got, want) }
}

// counts returns a holders check for the sorted multiset of counts.
func counts(want ...int) func(map[string]int) bool {
	return func(got map[string]int) bool {
		c := slices.Sorted(maps.Values(got))
		return slices.Equal(c, want)
	}
}

// partitionLog records what a partitioned projection handled: no
// partition handled by two runners at once, no event twice, each stream
// in order.
type partitionLog struct {
	mu      sync.Mutex
	active  map[int]int
	last    map[string]int64
	seen    map[eventstore.EventID]bool
	errs    []string
	handled atomic.Int64
}

func newPartitionLog() *partitionLog {
	return &partitionLog{active: map[int]int{}, last: map[string]int64{}, seen: map[eventstore.EventID]bool{}}
}

func (l *partitionLog) handler() projection.HandlerFunc {
	return func(_ context.Context, ev projection.Event) error {
		l.mu.Lock()
		l.active[ev.Partition]++
		if l.active[ev.Partition] > 1 {
			l.errs = append(l.errs, fmt.Sprintf("partition %d handled by two runners at once", ev.Partition))
		}
		if l.seen[ev.EventID] {
			l.errs = append(l.errs, fmt.Sprintf("event %s handled twice", ev.EventID))
		}
		if ev.StreamVersion != l.last[ev.StreamID]+1 {
			l.errs = append(l.errs, fmt.Sprintf("%s: version %d after %d", ev.StreamID, ev.StreamVersion, l.last[ev.StreamID]))
		}
		l.seen[ev.EventID] = true
		l.last[ev.StreamID] = ev.StreamVersion
		l.mu.Unlock()
		time.Sleep(100 * time.Microsecond)
		l.mu.Lock()
		l.active[ev.Partition]--
		l.mu.Unlock()
		l.handled.Add(1)
		return nil
	}
}

func (l *partitionLog) check(t *testing.T, events int) {
	t.Helper()
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.errs) > 0 {
		t.Fatalf("%d violations, first: %v", len(l.errs), l.errs[:min(len(l.errs), 5)])
	}
	if len(l.seen) != events {
		t.Fatalf("handled %d events, want %d", len(l.seen), events)
	}
}

// TestPartitionsSpreadOverRunners runs a projection of 4 partitions on
// runners that join, leave and die, asserting the holders after each
// change and that no event is lost or handled twice.
func TestPartitionsSpreadOverRunners(t *testing.T) {
	t.Parallel()
	e := setup(t)
	ctx := waitCtx(t)
	const parts, within = 4, 5 * time.Second
	log := newPartitionLog()
	p := projection.Projection{Name: "p", Handler: log.handler(), Partitions: parts, BatchSize: 10}
	newRunner := func(holder string, storage projectionstore.Storage) *projection.Runner {
		r, err := projection.New(e.store, storage, &projection.Config{
			Logger: quietLogger(), Holder: holder,
			PollInterval: 20 * time.Millisecond, AcquireInterval: 20 * time.Millisecond,
		})
		if err != nil {
			t.Fatal(err)
		}
		if err := r.Add(p); err != nil {
			t.Fatal(err)
		}
		return r
	}

	// Events keep coming while partitions move.
	var (
		wg      sync.WaitGroup
		last    atomic.Pointer[eventstore.AppendResult]
		writing = make(chan struct{})
		events  atomic.Int64
	)
	wg.Go(func() {
		for i := 0; ; i++ {
			select {
			case <-writing:
				return
			default:
			}
			res := e.deposit(fmt.Sprintf("s-%d", i%17), 1)
			last.Store(&res)
			events.Add(1)
			time.Sleep(200 * time.Microsecond)
		}
	})

	r1 := newRunner("r1", e.storage)
	stop1 := e.start(r1)
	waitHolders(t, e.storage, "p", within, exactly(map[string]int{"r1": 4}))

	e.start(newRunner("r2", e.storage))
	d := waitHolders(t, e.storage, "p", within, exactly(map[string]int{"r1": 2, "r2": 2}))
	t.Logf("r2 joined: shared 2/2 after %s", d)

	stop3 := e.start(newRunner("r3", dyingStorage{e.storage}))
	d = waitHolders(t, e.storage, "p", within, counts(1, 1, 2))
	t.Logf("r3 joined: shared %v after %s", holders(t, e.storage, "p"), d)

	stop1() // leaves cleanly
	d = waitHolders(t, e.storage, "p", within, exactly(map[string]int{"r2": 2, "r3": 2}))
	t.Logf("r1 left: shared 2/2 after %s", d)

	stop3() // dies: its instance expires
	r4 := newRunner("r4", e.storage)
	e.start(r4)
	d = waitHolders(t, e.storage, "p", within, exactly(map[string]int{"r2": 2, "r4": 2}))
	t.Logf("r3 died, r4 joined: shared 2/2 after %s", d)

	close(writing)
	wg.Wait()
	if err := r4.WaitFor(ctx, "p", last.Load().Position); err != nil {
		t.Fatal(err)
	}
	log.check(t, int(events.Load()))
}

// TestPartitionsTakenOverWhenTheOthersDie checks that a survivor holding
// its share still takes the partitions of dead runners, before and after
// their instances expire.
func TestPartitionsTakenOverWhenTheOthersDie(t *testing.T) {
	t.Parallel()
	e := setup(t)
	const parts, within = 6, 5 * time.Second
	p := projection.Projection{Name: "p", Partitions: parts,
		Handler: projection.HandlerFunc(func(context.Context, projection.Event) error { return nil })}
	var stops []func()
	for _, h := range []string{"a", "b", "c"} {
		r, err := projection.New(e.store, dyingStorage{e.storage}, &projection.Config{
			Logger: quietLogger(), Holder: h,
			PollInterval: 20 * time.Millisecond, AcquireInterval: 20 * time.Millisecond,
		})
		if err != nil {
			t.Fatal(err)
		}
		if err := r.Add(p); err != nil {
			t.Fatal(err)
		}
		stops = append(stops, e.start(r))
	}
	waitHolders(t, e.storage, "p", within, exactly(map[string]int{"a": 2, "b": 2, "c": 2}))
	stops[0]()
	stops[1]()
	waitHolders(t, e.storage, "p", within, exactly(map[string]int{"c": 6}))
}
