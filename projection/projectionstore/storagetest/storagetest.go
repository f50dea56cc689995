// Package storagetest is the conformance suite of projection storages:
// every [projectionstore.Storage] passes [Run], so that the projection
// runner behaves the same on each. The memory storage (both modes) and
// the PostgreSQL storage run it in their tests.
//
//	func TestConformance(t *testing.T) {
//		storagetest.Run(t, storagetest.Config{
//			New: func(t *testing.T) storagetest.Subject {
//				s := newMyStorage(t)
//				return storagetest.Subject{Storage: s, Other: s}
//			},
//		})
//	}
//
// It covers leases and fencing, the checkpoint's compare-and-set, dead
// letters and their states, partition counts, rebuild requests, the live
// instances, and, for a transactional storage, that a commit's work
// commits and rolls back with the checkpoint.
package storagetest

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/chronicle-go/chronicle/eventstore"
	"github.com/chronicle-go/chronicle/projection"
	"github.com/chronicle-go/chronicle/projection/projectionstore"
)

// Subject is one fresh, empty storage under test.
type Subject struct {
	// Storage is the storage.
	Storage projectionstore.Storage
	// Other is a second handle on the same state, as another process
	// would have (for PostgreSQL, a store on another pool). It may be
	// Storage itself.
	Other projectionstore.Storage
	// Write, for a transactional storage, writes marker through the unit
	// of work ctx belongs to (the ctx [projectionstore.Commit.Work]
	// receives), as a handler writes its read model.
	Write func(ctx context.Context, marker string) error
	// Written reports whether marker was committed.
	Written func(ctx context.Context, marker string) (bool, error)
}

// Config configures [Run].
type Config struct {
	// New returns a fresh, empty Subject, private to t. Required.
	New func(t *testing.T) Subject
	// Transactional is whether the storage's leases are transactional;
	// Subject.Write and Subject.Written are then required.
	Transactional bool
}

// Run runs the suite, each case in parallel.
func Run(t *testing.T, cfg Config) {
	cases := []struct {
		name string
		fn   func(t *testing.T, ctx context.Context, s Subject)
	}{
		{"AcquireCreatesCheckpoint", testAcquireCreatesCheckpoint},
		{"LeaseIsExclusive", testLeaseIsExclusive},
		{"ReleasedLeaseIsFenced", testReleasedLeaseIsFenced},
		{"CheckpointCompareAndSet", testCheckpointCompareAndSet},
		{"CommitError", testCommitError},
		{"PartitionCounts", testPartitionCounts},
		{"InvalidInput", testInvalidInput},
		{"RebuildRequests", testRebuildRequests},
		{"DeadLetterStates", testDeadLetterStates},
		{"DeadLetterFilters", testDeadLetterFilters},
		{"ParkingAgainReplaces", testParkingAgainReplaces},
		{"Instances", testInstances},
		{"WorkFailureCommitsNothing", testWorkFailureCommitsNothing},
	}
	if cfg.Transactional {
		cases = append(cases, struct {
			name string
			fn   func(t *testing.T, ctx context.Context, s Subject)
		}{"TransactionalWork", testTransactionalWork})
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			s := cfg.New(t)
			if s.Other == nil {
				s.Other = s.Storage
			}
			if got := leaseTransactional(t, ctx, s.Storage); got != cfg.Transactional {
				t.Fatalf("Lease.Transactional = %v, want %v", got, cfg.Transactional)
			}
			c.fn(t, ctx, s)
		})
	}
}

func leaseTransactional(t *testing.T, ctx context.Context, s projectionstore.Storage) bool {
	t.Helper()
	l := mustAcquire(t, ctx, s, projectionstore.Key{Projection: "probe"}, 1, "probe")
	defer release(t, l)
	return l.Transactional()
}

func mustAcquire(t *testing.T, ctx context.Context, s projectionstore.Storage, key projectionstore.Key, partitions int, holder string) projectionstore.Lease {
	t.Helper()
	l, err := s.Acquire(ctx, key, partitions, holder)
	if err != nil || l == nil {
		t.Fatalf("Acquire(%v, %d, %q) = %v, %v; want a lease", key, partitions, holder, l, err)
	}
	return l
}

func release(t *testing.T, l projectionstore.Lease) {
	t.Helper()
	if err := l.Release(context.Background()); err != nil {
		t.Errorf("Release: %v", err)
	}
}

func pos(n int64) eventstore.Position { return eventstore.Position{Transaction: uint64(n), Global: n} }

func testAcquireCreatesCheckpoint(t *testing.T, ctx context.Context, s Subject) {
	l := mustAcquire(t, ctx, s.Storage, projectionstore.Key{Projection: "p", Partition: 1}, 2, "one")
	defer release(t, l)
	cp, err := l.Checkpoint(ctx)
	if err != nil || cp.Projection != "p" || cp.Partition != 1 || cp.Partitions != 2 || !cp.Position.IsZero() || cp.Holder != "one" || cp.Error != "" || cp.RebuildRequested {
		t.Fatalf("Checkpoint = %+v, %v", cp, err)
	}
	cps, err := s.Other.Checkpoints(ctx, "p")
	if err != nil || len(cps) != 1 || cps[0].Partition != 1 || cps[0].Holder != "one" {
		t.Fatalf("Checkpoints = %+v, %v", cps, err)
	}
	mustAcquire(t, ctx, s.Storage, projectionstore.Key{Projection: "a"}, 1, "one")
	all, err := s.Other.Checkpoints(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, cp := range all {
		names = append(names, cp.Projection)
	}
	if !slices.Equal(names, []string{"a", "p", "probe"}) {
		t.Fatalf("Checkpoints of every projection = %v, want a, p, probe in order", names)
	}
}

func testLeaseIsExclusive(t *testing.T, ctx context.Context, s Subject) {
	key := projectionstore.Key{Projection: "p", Partition: 0}
	l1 := mustAcquire(t, ctx, s.Storage, key, 2, "one")
	if l2, err := s.Other.Acquire(ctx, key, 2, "two"); err != nil || l2 != nil {
		t.Fatalf("second Acquire = %v, %v; want nil, nil", l2, err)
	}
	l3 := mustAcquire(t, ctx, s.Other, projectionstore.Key{Projection: "p", Partition: 1}, 2, "two")
	defer release(t, l3)
	release(t, l1)
	select {
	case <-l1.Done():
	default:
		t.Fatal("Done not closed after Release")
	}
	if err := l1.Release(ctx); err != nil {
		t.Fatalf("second Release = %v", err)
	}
	cps, err := s.Other.Checkpoints(ctx, "p")
	if err != nil || len(cps) != 2 || cps[0].Holder != "" || cps[1].Holder != "two" {
		t.Fatalf("holders after release = %+v, %v", cps, err)
	}
	l2 := mustAcquire(t, ctx, s.Other, key, 2, "two")
	release(t, l2)
}

func testReleasedLeaseIsFenced(t *testing.T, ctx context.Context, s Subject) {
	key := projectionstore.Key{Projection: "p"}
	l1 := mustAcquire(t, ctx, s.Storage, key, 1, "one")
	release(t, l1)
	l2 := mustAcquire(t, ctx, s.Other, key, 1, "two")
	defer release(t, l2)
	if _, err := l1.Commit(ctx, projectionstore.Commit{To: pos(1)}); !errors.Is(err, projection.ErrLeaseLost) {
		t.Fatalf("Commit after release = %v, want ErrLeaseLost", err)
	}
	if _, err := l1.Checkpoint(ctx); !errors.Is(err, projection.ErrLeaseLost) {
		t.Fatalf("Checkpoint after release = %v, want ErrLeaseLost", err)
	}
	if _, err := l1.RetryRequests(ctx); !errors.Is(err, projection.ErrLeaseLost) {
		t.Fatalf("RetryRequests after release = %v, want ErrLeaseLost", err)
	}
	cp, err := l2.Checkpoint(ctx)
	if err != nil || !cp.Position.IsZero() || cp.Holder != "two" {
		t.Fatalf("new holder's checkpoint = %+v, %v", cp, err)
	}
}

func testCheckpointCompareAndSet(t *testing.T, ctx context.Context, s Subject) {
	l := mustAcquire(t, ctx, s.Storage, projectionstore.Key{Projection: "p"}, 1, "one")
	defer release(t, l)
	cp, err := l.Commit(ctx, projectionstore.Commit{To: pos(5)})
	if err != nil || cp.Position != pos(5) || cp.Holder != "one" {
		t.Fatalf("Commit = %+v, %v", cp, err)
	}
	var ce *projection.CheckpointConflictError
	if _, err := l.Commit(ctx, projectionstore.Commit{To: pos(6)}); !errors.As(err, &ce) || !errors.Is(err, projection.ErrCheckpointConflict) ||
		ce.Expected != (eventstore.Position{}) || ce.Actual != pos(5) || ce.Key.Projection != "p" {
		t.Fatalf("Commit from a stale position = %v, want a conflict expecting 0 and finding 5", err)
	}
	if cp, err = l.Commit(ctx, projectionstore.Commit{From: pos(5), To: pos(5)}); err != nil || cp.Position != pos(5) {
		t.Fatalf("Commit in place = %+v, %v", cp, err)
	}
	if cp, err = l.Commit(ctx, projectionstore.Commit{From: pos(5), To: pos(9)}); err != nil || cp.Position != pos(9) {
		t.Fatalf("Commit = %+v, %v", cp, err)
	}
	cps, err := s.Other.Checkpoints(ctx, "p")
	if err != nil || len(cps) != 1 || cps[0].Position != pos(9) {
		t.Fatalf("Checkpoints = %+v, %v", cps, err)
	}
}

func testCommitError(t *testing.T, ctx context.Context, s Subject) {
	l := mustAcquire(t, ctx, s.Storage, projectionstore.Key{Projection: "p"}, 1, "one")
	defer release(t, l)
	cp, err := l.Commit(ctx, projectionstore.Commit{Error: "stopped: boom"})
	if err != nil || cp.Error != "stopped: boom" {
		t.Fatalf("Commit with an error = %+v, %v", cp, err)
	}
	cps, err := s.Other.Checkpoints(ctx, "p")
	if err != nil || cps[0].Error != "stopped: boom" {
		t.Fatalf("Checkpoints = %+v, %v", cps, err)
	}
	if cp, err = l.Commit(ctx, projectionstore.Commit{}); err != nil || cp.Error != "" {
		t.Fatalf("Commit clearing the error = %+v, %v", cp, err)
	}
}

func testPartitionCounts(t *testing.T, ctx context.Context, s Subject) {
	l := mustAcquire(t, ctx, s.Storage, projectionstore.Key{Projection: "p", Partition: 1}, 2, "one")
	defer release(t, l)
	var pe *projection.PartitionsMismatchError
	if l2, err := s.Other.Acquire(ctx, projectionstore.Key{Projection: "p", Partition: 0}, 3, "two"); !errors.As(err, &pe) || l2 != nil ||
		pe.Stored != 2 || pe.Configured != 3 {
		t.Fatalf("Acquire with another partition count = %v, %v", l2, err)
	}
	if err := s.Other.RequestRebuild(ctx, "p", 3); !errors.Is(err, projection.ErrPartitionsMismatch) {
		t.Fatalf("RequestRebuild with another partition count = %v", err)
	}
	l0 := mustAcquire(t, ctx, s.Other, projectionstore.Key{Projection: "p", Partition: 0}, 2, "two")
	release(t, l0)
}

func testInvalidInput(t *testing.T, ctx context.Context, s Subject) {
	for _, c := range []struct {
		key        projectionstore.Key
		partitions int
	}{
		{projectionstore.Key{Projection: "p", Partition: 2}, 2},
		{projectionstore.Key{Projection: "p", Partition: -1}, 2},
		{projectionstore.Key{Projection: "p"}, 0},
		{projectionstore.Key{Projection: "p"}, projectionstore.MaxPartitions + 1},
		{projectionstore.Key{Projection: ""}, 1},
		{projectionstore.Key{Projection: "bad\x00name"}, 1},
	} {
		if l, err := s.Storage.Acquire(ctx, c.key, c.partitions, "one"); !errors.Is(err, eventstore.ErrInvalidInput) || l != nil {
			t.Errorf("Acquire(%q, %d, %d) = %v, %v; want invalid input", c.key.Projection, c.key.Partition, c.partitions, l, err)
		}
	}
	if _, err := s.Storage.DeadLetters(ctx, projectionstore.DeadLetterFilter{Status: "lost"}); !errors.Is(err, eventstore.ErrInvalidInput) {
		t.Errorf("DeadLetters with a bogus status = %v; want invalid input", err)
	}
	if err := s.Storage.RequestRebuild(ctx, "", 1); !errors.Is(err, eventstore.ErrInvalidInput) {
		t.Errorf("RequestRebuild without a name = %v; want invalid input", err)
	}
}

func testRebuildRequests(t *testing.T, ctx context.Context, s Subject) {
	if err := s.Other.RequestRebuild(ctx, "nope", 0); !errors.Is(err, projection.ErrUnknownProjection) {
		t.Fatalf("RequestRebuild of an unknown projection = %v", err)
	}
	if err := s.Other.RequestRebuild(ctx, "new", 2); err != nil {
		t.Fatalf("RequestRebuild creating checkpoints = %v", err)
	}
	cps, err := s.Other.Checkpoints(ctx, "new")
	if err != nil || len(cps) != 2 || !cps[0].RebuildRequested || !cps[1].RebuildRequested || cps[1].Partitions != 2 {
		t.Fatalf("checkpoints created for a rebuild = %+v, %v", cps, err)
	}

	l := mustAcquire(t, ctx, s.Storage, projectionstore.Key{Projection: "p"}, 1, "one")
	defer release(t, l)
	parked, err := l.Commit(ctx, projectionstore.Commit{To: pos(3), Park: deadLetter("p", 0, 2)})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := l.Commit(ctx, projectionstore.Commit{From: pos(3), To: pos(4), Park: deadLetter("p", 0, 4)}); err != nil {
		t.Fatal(err)
	}
	dls := deadLetters(t, ctx, s.Other, projectionstore.DeadLetterFilter{Projection: "p"})
	if err := s.Other.SkipDeadLetter(ctx, dls[1].ID); err != nil {
		t.Fatal(err)
	}
	if err := s.Other.RequestRebuild(ctx, "p", 0); err != nil {
		t.Fatal(err)
	}
	cp, err := l.Checkpoint(ctx)
	if err != nil || !cp.RebuildRequested || parked.Parked != 1 {
		t.Fatalf("holder's checkpoint after a rebuild request = %+v, %v", cp, err)
	}
	cp, err = l.Commit(ctx, projectionstore.Commit{From: pos(4), To: eventstore.Position{}, Rebuilt: true})
	if err != nil || cp.RebuildRequested || !cp.Position.IsZero() || cp.Parked != 0 {
		t.Fatalf("rebuilt checkpoint = %+v, %v", cp, err)
	}
	// The parked dead letter is gone; the skipped one stays.
	dls = deadLetters(t, ctx, s.Other, projectionstore.DeadLetterFilter{Projection: "p"})
	if len(dls) != 1 || dls[0].Status != projectionstore.DeadLetterSkipped {
		t.Fatalf("dead letters after a rebuild = %+v", dls)
	}
}

// deadLetter is a dead letter of event n of stream "s".
func deadLetter(projectionName string, partition int, n int64) *projectionstore.DeadLetter {
	var id eventstore.EventID
	id[0], id[15] = byte(partition+1), byte(n)
	return &projectionstore.DeadLetter{
		Projection: projectionName, Partition: partition, EventID: id, StreamID: "s", StreamVersion: n,
		Position: pos(n), Type: "Deposited", Error: "boom", Attempts: 3,
	}
}

func deadLetters(t *testing.T, ctx context.Context, s projectionstore.Storage, f projectionstore.DeadLetterFilter) []projectionstore.DeadLetter {
	t.Helper()
	dls, err := s.DeadLetters(ctx, f)
	if err != nil {
		t.Fatal(err)
	}
	return dls
}

func testDeadLetterStates(t *testing.T, ctx context.Context, s Subject) {
	l := mustAcquire(t, ctx, s.Storage, projectionstore.Key{Projection: "p"}, 1, "one")
	defer release(t, l)
	cp, err := l.Commit(ctx, projectionstore.Commit{To: pos(2), Park: deadLetter("p", 0, 2)})
	if err != nil || cp.Position != pos(2) || cp.Parked != 1 {
		t.Fatalf("Commit parking = %+v, %v", cp, err)
	}
	cp, err = l.Commit(ctx, projectionstore.Commit{From: pos(2), To: pos(3), Park: deadLetter("p", 0, 3)})
	if err != nil || cp.Parked != 2 {
		t.Fatalf("Commit parking = %+v, %v", cp, err)
	}
	dls := deadLetters(t, ctx, s.Other, projectionstore.DeadLetterFilter{})
	want := deadLetter("p", 0, 2)
	if len(dls) != 2 || dls[0].ID <= 0 || dls[1].ID <= dls[0].ID {
		t.Fatalf("dead letters = %+v", dls)
	}
	first, second := dls[0], dls[1]
	if first.EventID != want.EventID || first.StreamID != "s" || first.StreamVersion != 2 || first.Position != pos(2) ||
		first.Type != "Deposited" || first.Error != "boom" || first.Attempts != 3 || first.Status != projectionstore.DeadLetterParked ||
		first.ParkedAt.IsZero() || first.UpdatedAt.IsZero() {
		t.Fatalf("dead letter = %+v", first)
	}

	// Retry: the holder sees the request, settles it resolved.
	if err := s.Other.RetryDeadLetter(ctx, first.ID); err != nil {
		t.Fatal(err)
	}
	if err := s.Other.RetryDeadLetter(ctx, first.ID); err != nil {
		t.Fatalf("RetryDeadLetter twice = %v", err)
	}
	reqs, err := l.RetryRequests(ctx)
	if err != nil || len(reqs) != 1 || reqs[0].ID != first.ID || reqs[0].Status != projectionstore.DeadLetterRetry {
		t.Fatalf("RetryRequests = %+v, %v", reqs, err)
	}
	cp, err = l.Commit(ctx, projectionstore.Commit{From: pos(3), To: pos(3), Settle: &projectionstore.Settlement{ID: first.ID, Status: projectionstore.DeadLetterResolved, Attempts: 4}})
	if err != nil || cp.Parked != 1 {
		t.Fatalf("Commit settling = %+v, %v", cp, err)
	}
	if reqs, err := l.RetryRequests(ctx); err != nil || len(reqs) != 0 {
		t.Fatalf("RetryRequests after settling = %+v, %v", reqs, err)
	}
	got := deadLetters(t, ctx, s.Other, projectionstore.DeadLetterFilter{Status: projectionstore.DeadLetterResolved})
	if len(got) != 1 || got[0].ID != first.ID || got[0].Attempts != 4 {
		t.Fatalf("resolved = %+v", got)
	}

	// Retry again, failing again: parked again with the new error.
	if err := s.Other.RetryDeadLetter(ctx, second.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := l.Commit(ctx, projectionstore.Commit{From: pos(3), To: pos(3), Settle: &projectionstore.Settlement{ID: second.ID, Status: projectionstore.DeadLetterParked, Error: "again", Attempts: 5}}); err != nil {
		t.Fatal(err)
	}
	got = deadLetters(t, ctx, s.Other, projectionstore.DeadLetterFilter{Status: projectionstore.DeadLetterParked})
	if len(got) != 1 || got[0].ID != second.ID || got[0].Attempts != 5 || got[0].Error != "again" {
		t.Fatalf("parked again = %+v", got)
	}

	// Skip is final; settled letters refuse transitions.
	if err := s.Other.SkipDeadLetter(ctx, second.ID); err != nil {
		t.Fatal(err)
	}
	if err := s.Other.SkipDeadLetter(ctx, second.ID); err != nil {
		t.Fatalf("SkipDeadLetter twice = %v", err)
	}
	var se *projection.DeadLetterStateError
	if err := s.Other.RetryDeadLetter(ctx, second.ID); !errors.As(err, &se) || se.Status != projectionstore.DeadLetterSkipped || se.Op != "retry" {
		t.Fatalf("RetryDeadLetter of a skipped letter = %v", err)
	}
	if err := s.Other.RetryDeadLetter(ctx, first.ID); !errors.As(err, &se) || se.Status != projectionstore.DeadLetterResolved {
		t.Fatalf("RetryDeadLetter of a resolved letter = %v", err)
	}
	if err := s.Other.SkipDeadLetter(ctx, first.ID); !errors.Is(err, projection.ErrDeadLetterState) {
		t.Fatalf("SkipDeadLetter of a resolved letter = %v", err)
	}
	for _, op := range []func(context.Context, int64) error{s.Other.RetryDeadLetter, s.Other.SkipDeadLetter} {
		if err := op(ctx, 1<<40); !errors.Is(err, projection.ErrDeadLetterNotFound) {
			t.Fatalf("transition of an unknown dead letter = %v", err)
		}
	}
	cps, err := s.Other.Checkpoints(ctx, "p")
	if err != nil || cps[0].Parked != 0 {
		t.Fatalf("parked count = %+v, %v", cps, err)
	}
}

func testDeadLetterFilters(t *testing.T, ctx context.Context, s Subject) {
	for _, name := range []string{"a", "b"} {
		l := mustAcquire(t, ctx, s.Storage, projectionstore.Key{Projection: name}, 1, "one")
		if _, err := l.Commit(ctx, projectionstore.Commit{To: pos(1), Park: deadLetter(name, 0, 1)}); err != nil {
			t.Fatal(err)
		}
		if _, err := l.Commit(ctx, projectionstore.Commit{From: pos(1), To: pos(2), Park: deadLetter(name, 0, 2)}); err != nil {
			t.Fatal(err)
		}
		release(t, l)
	}
	all := deadLetters(t, ctx, s.Other, projectionstore.DeadLetterFilter{})
	if len(all) != 4 {
		t.Fatalf("%d dead letters, want 4", len(all))
	}
	if err := s.Other.SkipDeadLetter(ctx, all[3].ID); err != nil {
		t.Fatal(err)
	}
	if got := deadLetters(t, ctx, s.Other, projectionstore.DeadLetterFilter{Projection: "b"}); len(got) != 2 || got[0].Projection != "b" {
		t.Fatalf("projection b = %+v", got)
	}
	if got := deadLetters(t, ctx, s.Other, projectionstore.DeadLetterFilter{Status: projectionstore.DeadLetterSkipped}); len(got) != 1 || got[0].ID != all[3].ID {
		t.Fatalf("skipped = %+v", got)
	}
	if got := deadLetters(t, ctx, s.Other, projectionstore.DeadLetterFilter{Projection: "b", Status: projectionstore.DeadLetterParked}); len(got) != 1 || got[0].ID != all[2].ID {
		t.Fatalf("b parked = %+v", got)
	}
	if got := deadLetters(t, ctx, s.Other, projectionstore.DeadLetterFilter{AfterID: all[0].ID, Limit: 2}); len(got) != 2 || got[0].ID != all[1].ID || got[1].ID != all[2].ID {
		t.Fatalf("page after the first = %+v", got)
	}
}

func testParkingAgainReplaces(t *testing.T, ctx context.Context, s Subject) {
	l := mustAcquire(t, ctx, s.Storage, projectionstore.Key{Projection: "p"}, 1, "one")
	defer release(t, l)
	if _, err := l.Commit(ctx, projectionstore.Commit{To: pos(1), Park: deadLetter("p", 0, 1)}); err != nil {
		t.Fatal(err)
	}
	first := deadLetters(t, ctx, s.Other, projectionstore.DeadLetterFilter{})
	if err := s.Other.SkipDeadLetter(ctx, first[0].ID); err != nil {
		t.Fatal(err)
	}
	// A rebuild meets the event again and parks it again.
	again := deadLetter("p", 0, 1)
	again.Error, again.Attempts = "boom again", 7
	if _, err := l.Commit(ctx, projectionstore.Commit{From: pos(1), To: pos(1), Park: again}); err != nil {
		t.Fatal(err)
	}
	dls := deadLetters(t, ctx, s.Other, projectionstore.DeadLetterFilter{})
	if len(dls) != 1 || dls[0].EventID != first[0].EventID || dls[0].Status != projectionstore.DeadLetterParked ||
		dls[0].Error != "boom again" || dls[0].Attempts != 7 {
		t.Fatalf("dead letters after parking again = %+v", dls)
	}
}

func testInstances(t *testing.T, ctx context.Context, s Subject) {
	beat := func(st projectionstore.Storage, holder string, ttl time.Duration) []string {
		t.Helper()
		got, err := st.Heartbeat(ctx, "p", holder, ttl)
		if err != nil {
			t.Fatal(err)
		}
		return got
	}
	if got := beat(s.Storage, "b", time.Minute); !slices.Equal(got, []string{"b"}) {
		t.Fatalf("instances = %v, want [b]", got)
	}
	if got := beat(s.Other, "a", time.Minute); !slices.Equal(got, []string{"a", "b"}) {
		t.Fatalf("instances = %v, want [a b] (sorted)", got)
	}
	if got, err := s.Other.Heartbeat(ctx, "q", "c", time.Minute); err != nil || !slices.Equal(got, []string{"c"}) {
		t.Fatalf("instances of another projection = %v, %v", got, err)
	}
	if err := s.Other.Leave(ctx, "p", "a"); err != nil {
		t.Fatal(err)
	}
	if got := beat(s.Storage, "b", time.Minute); !slices.Equal(got, []string{"b"}) {
		t.Fatalf("instances after a leaves = %v, want [b]", got)
	}
	beat(s.Other, "c", 50*time.Millisecond)
	time.Sleep(300 * time.Millisecond)
	if got := beat(s.Storage, "b", time.Minute); !slices.Equal(got, []string{"b"}) {
		t.Fatalf("instances after c expired = %v, want [b]", got)
	}
	if _, err := s.Storage.Heartbeat(ctx, "", "b", time.Minute); !errors.Is(err, eventstore.ErrInvalidInput) {
		t.Fatalf("Heartbeat without a name = %v", err)
	}
}

// testWorkFailureCommitsNothing checks what every storage guarantees: a
// failing work commits nothing of the rest.
func testWorkFailureCommitsNothing(t *testing.T, ctx context.Context, s Subject) {
	l := mustAcquire(t, ctx, s.Storage, projectionstore.Key{Projection: "p"}, 1, "one")
	defer release(t, l)
	workErr := errors.New("work failed")
	_, err := l.Commit(ctx, projectionstore.Commit{To: pos(4), Park: deadLetter("p", 0, 4), Error: "x",
		Work: func(context.Context) error { return workErr }})
	if !errors.Is(err, workErr) {
		t.Fatalf("Commit with failing work = %v, want its error", err)
	}
	cp, err := l.Checkpoint(ctx)
	if err != nil || !cp.Position.IsZero() || cp.Error != "" || cp.Parked != 0 {
		t.Fatalf("checkpoint after failing work = %+v, %v; want it unchanged", cp, err)
	}
	if dls := deadLetters(t, ctx, s.Other, projectionstore.DeadLetterFilter{}); len(dls) != 0 {
		t.Fatalf("failing work parked %+v", dls)
	}
	called := false
	cp, err = l.Commit(ctx, projectionstore.Commit{To: pos(4), Work: func(context.Context) error { called = true; return nil }})
	if err != nil || !called || cp.Position != pos(4) {
		t.Fatalf("Commit with work = %+v, %v (work called: %v)", cp, err, called)
	}
}

// testTransactionalWork checks that a transactional storage's work
// commits with the checkpoint, and rolls back with it.
func testTransactionalWork(t *testing.T, ctx context.Context, s Subject) {
	l := mustAcquire(t, ctx, s.Storage, projectionstore.Key{Projection: "p"}, 1, "one")
	defer release(t, l)
	written := func(marker string) bool {
		t.Helper()
		ok, err := s.Written(ctx, marker)
		if err != nil {
			t.Fatal(err)
		}
		return ok
	}
	write := func(marker string, then error) func(ctx context.Context) error {
		return func(ctx context.Context) error {
			if err := s.Write(ctx, marker); err != nil {
				return err
			}
			return then
		}
	}
	workErr := errors.New("work failed")
	if _, err := l.Commit(ctx, projectionstore.Commit{To: pos(1), Work: write("failed", workErr)}); !errors.Is(err, workErr) {
		t.Fatalf("Commit with failing work = %v", err)
	}
	if written("failed") {
		t.Fatal("the writes of a failing work were committed")
	}
	// A conflict rolls the work back.
	if _, err := l.Commit(ctx, projectionstore.Commit{From: pos(7), To: pos(8), Work: write("conflict", nil)}); !errors.Is(err, projection.ErrCheckpointConflict) {
		t.Fatalf("Commit from a stale position = %v", err)
	}
	if written("conflict") {
		t.Fatal("the writes of a commit that lost its compare-and-set were committed")
	}
	// A work that outlives its deadline commits nothing.
	dctx, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	_, err := l.Commit(dctx, projectionstore.Commit{To: pos(1), Work: func(ctx context.Context) error {
		if err := s.Write(ctx, "late"); err != nil {
			return err
		}
		<-ctx.Done()
		return nil
	}})
	cancel()
	if err == nil {
		t.Fatal("Commit whose work outlived its deadline succeeded")
	}
	if written("late") {
		t.Fatal("the writes of a work that outlived its deadline were committed")
	}
	// The lease may be lost ending it (the PostgreSQL storage closes the
	// connection); continue on a lease that holds.
	select {
	case <-l.Done():
		l = mustAcquire(t, ctx, s.Storage, projectionstore.Key{Projection: "p"}, 1, "one")
		defer release(t, l)
	default:
	}
	cp, err := l.Commit(ctx, projectionstore.Commit{To: pos(2), Park: deadLetter("p", 0, 2), Work: write("ok", nil)})
	if err != nil || cp.Position != pos(2) || cp.Parked != 1 {
		t.Fatalf("Commit with work = %+v, %v", cp, err)
	}
	if !written("ok") {
		t.Fatal("the writes of a committed work are missing")
	}
}
