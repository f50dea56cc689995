package postgres_test

import (
	"context"
	"fmt"
	"maps"
	"testing"
	"time"

	"github.com/chronicle-go/chronicle/eventstore"
	"github.com/chronicle-go/chronicle/postgres"
	"github.com/chronicle-go/chronicle/projection"
	"github.com/chronicle-go/chronicle/projection/projectionstore"
)

// projDyingStorage never leaves the instances, as a process that dies:
// its instance expires instead.
type projDyingStorage struct{ projectionstore.Storage }

func (projDyingStorage) Leave(context.Context, string, string) error { return nil }

// partitionedRunner returns a runner of a 4-partition read model on its own
// pool, as another process; dying makes it leave as a dead process does.
func (e *projEnv) partitionedRunner(holder string, dying bool) *projection.Runner {
	e.t.Helper()
	pool := e.newPool("runner-" + holder)
	var storage projectionstore.Storage
	ps, err := postgres.NewProjectionStore(pool, nil)
	if err != nil {
		e.t.Fatal(err)
	}
	storage = ps
	if dying {
		storage = projDyingStorage{ps}
	}
	r, err := projection.New(projNewStore(e.t, pool), storage, &projection.Config{
		Logger: projLogger(), Holder: holder,
		PollInterval: 50 * time.Millisecond, AcquireInterval: 100 * time.Millisecond,
		BatchTimeout: projTestBatchTimeout,
	})
	if err != nil {
		e.t.Fatal(err)
	}
	if err := r.Add(projection.Projection{Name: "balances", Handler: e.balances(holder, nil), Partitions: 4, BatchSize: 10}); err != nil {
		e.t.Fatal(err)
	}
	return r
}

// waitHolders waits until the storage reports want as the holders of
// "balances", and returns how long it took.
func (e *projEnv) waitHolders(within time.Duration, want map[string]int) time.Duration {
	e.t.Helper()
	start := time.Now()
	for {
		cps, err := e.ps.Checkpoints(context.Background(), "balances")
		if err != nil {
			e.t.Fatal(err)
		}
		got := map[string]int{}
		for _, cp := range cps {
			if cp.Holder != "" {
				got[cp.Holder]++
			}
		}
		if maps.Equal(got, want) {
			return time.Since(start)
		}
		if time.Since(start) > within {
			e.t.Fatalf("holders after %s: %v, want %v", within, got, want)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestProjectionPartitionsSpreadOverRunners runs a 4-partition read
// model on runners that join, leave and die while events come in, and
// asserts the holders after each change and the read model at the end
// (each event applied exactly once).
func TestProjectionPartitionsSpreadOverRunners(t *testing.T) {
	t.Parallel()
	e := projSetup(t)
	ctx := projWaitCtx(t, 60*time.Second)
	const within = 15 * time.Second
	var last eventstore.AppendResult
	n := 0
	deposit := func(k int) {
		for range k {
			last = e.deposit(fmt.Sprintf("acc-%d", n%13), int64(n))
			n++
		}
	}
	deposit(50)
	stopA := e.start(e.partitionedRunner("a", false))
	e.waitHolders(within, map[string]int{"a": 4})
	deposit(50)
	e.start(e.partitionedRunner("b", false))
	t.Logf("b joined: 2/2 after %s", e.waitHolders(within, map[string]int{"a": 2, "b": 2}))
	deposit(50)
	stopC := e.start(e.partitionedRunner("c", true))
	d := e.waitHolders(within, map[string]int{"a": 2, "b": 1, "c": 1})
	t.Logf("c joined: 2/1/1 after %s", d)
	deposit(50)
	stopA()
	t.Logf("a left: 2/2 after %s", e.waitHolders(within, map[string]int{"b": 2, "c": 2}))
	deposit(50)
	stopC() // dies: b takes c's partitions before c's instance expires
	t.Logf("c died: 4 after %s", e.waitHolders(within, map[string]int{"b": 4}))
	deposit(50)
	rD := e.partitionedRunner("d", false)
	e.start(rD)
	t.Logf("d joined: 2/2 after %s", e.waitHolders(within, map[string]int{"b": 2, "d": 2}))
	if err := rD.WaitFor(ctx, "balances", last.Position); err != nil {
		t.Fatal(err)
	}
	e.checkReadModel()
}
