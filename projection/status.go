package projection

import (
	"context"
	"fmt"
	"github.com/chronicle-go/chronicle/projection/projectionstore"
	"time"

	"github.com/chronicle-go/chronicle/eventstore"
)

// waitPoll is how often waiting helpers read the storage for partitions
// this process does not hold.
const waitPoll = 50 * time.Millisecond

// WaitFor blocks until every partition of the named projection has handled
// every event up to and including pos (for example an
// [eventstore.AppendResult.Position]), which gives read-your-writes: after
// an append, wait for its position before querying the read model.
//
// It follows the partitions this runner holds as they commit, and reads
// the storage for those held elsewhere, so it works whichever process runs
// the projection (and before [Runner.Run]). It fails with a
// [*StoppedError] (matching [ErrStopped]) when a partition that has not
// reached pos is stopped, and with ctx's error when ctx is done first:
// give it a deadline.
func (r *Runner) WaitFor(ctx context.Context, name string, pos eventstore.Position) error {
	p, err := r.lookup(name)
	if err != nil {
		return err
	}
	if pos.IsZero() {
		return nil
	}
	stored := make([]*projectionstore.Checkpoint, p.Partitions)
	var lastRead time.Time
	for {
		changed := r.commits.wait()
		done, needRead, err := r.reached(p, pos, stored)
		if done || err != nil {
			return err
		}
		if needRead && time.Since(lastRead) >= waitPoll {
			cps, err := r.storage.Checkpoints(ctx, name)
			if err != nil {
				return err
			}
			lastRead = time.Now()
			clear(stored)
			for i := range cps {
				if cps[i].Partition >= 0 && cps[i].Partition < len(stored) {
					stored[cps[i].Partition] = &cps[i]
				}
			}
			continue
		}
		timer := time.NewTimer(waitPoll)
		select {
		case <-ctx.Done():
			timer.Stop()
			return ctx.Err()
		case <-changed:
		case <-timer.C:
		}
		timer.Stop()
	}
}

// reached reports whether every partition of p is at pos or beyond, using
// this process's state for held partitions and stored for the others.
func (r *Runner) reached(p *proj, pos eventstore.Position, stored []*projectionstore.Checkpoint) (done, needRead bool, err error) {
	done = true
	for i, st := range p.parts {
		holding, at, stopErr := st.get()
		if !holding {
			cp := stored[i]
			if cp == nil {
				if stopErr != nil {
					return false, false, &StoppedError{Key: projectionstore.Key{Projection: p.Name, Partition: i}, Err: stopErr}
				}
				done, needRead = false, true
				continue
			}
			at = cp.Position
			if stopErr == nil && cp.Error != "" {
				stopErr = storedError(cp.Error)
			}
		}
		if at.Compare(pos) >= 0 {
			continue
		}
		if stopErr != nil {
			if se, ok := stopErr.(*StoppedError); ok {
				return false, false, se
			}
			return false, false, &StoppedError{Key: projectionstore.Key{Projection: p.Name, Partition: i}, Position: at, Err: stopErr}
		}
		done = false
		if !holding {
			needRead = true
		}
	}
	return done, needRead, nil
}

// WaitForHead waits, as [Runner.WaitFor] does, until the named projection
// has caught up with the store's head as it is when WaitForHead is called.
func (r *Runner) WaitForHead(ctx context.Context, name string) error {
	head, err := r.store.Head(ctx)
	if err != nil {
		return err
	}
	return r.WaitFor(ctx, name, head)
}

func (r *Runner) lookup(name string) (*proj, error) {
	r.mu.Lock()
	p := r.byName[name]
	r.mu.Unlock()
	if p == nil {
		return nil, fmt.Errorf("%w: %q is not registered with this runner", ErrUnknownProjection, name)
	}
	return p, nil
}

// Progress reports a rebuild's progress to the callback of
// [Runner.Rebuild].
type Progress struct {
	// Projection is the projection being rebuilt.
	Projection string
	// Started reports whether every partition's holder has reset it. Until
	// then the rebuild waits for holders (a projection that no runner runs
	// never starts rebuilding).
	Started bool
	// Position is the lowest checkpoint of the projection's partitions.
	Position eventstore.Position
	// Head is the store's head the rebuild replays up to.
	Head eventstore.Position
	// Done reports a finished rebuild: every partition has reached Head.
	Done bool
}

// Fraction estimates the part of the replay done, from 0 to 1, from the
// global positions (exact on the in-memory store, an approximation on
// PostgreSQL, where commit order and global positions differ slightly).
func (p Progress) Fraction() float64 {
	switch {
	case p.Done:
		return 1
	case !p.Started || p.Head.Global <= 0:
		return 0
	}
	return min(max(float64(p.Position.Global)/float64(p.Head.Global), 0), 1)
}

// Rebuild rebuilds the named projection: it asks the holder of each
// partition (in this process or another) to reset the read model (the
// projection's reset hook), move the checkpoint back to the start and
// replay every event, then waits until the replay has caught up with the
// head. progress, when not nil, is called about every 200ms and at the
// end.
//
// The request is stored (as `chronicle projections rebuild NAME` does), so
// a rebuild survives restarts: if no runner holds a partition, Rebuild
// waits until one does, or until ctx is done.
func (r *Runner) Rebuild(ctx context.Context, name string, progress func(Progress)) error {
	p, err := r.lookup(name)
	if err != nil {
		return err
	}
	if err := r.storage.RequestRebuild(ctx, name, p.Partitions); err != nil {
		return err
	}
	r.log.Info("rebuild requested", "projection", name)
	return WaitRebuild(ctx, r.store, r.storage, name, progress)
}

// WaitRebuild waits until a rebuild requested with
// [projectionstore.Storage.RequestRebuild] has started in every partition and caught up
// with the head, calling progress (when not nil) about every 200ms and at
// the end. It is the waiting half of [Runner.Rebuild], for tools that
// request a rebuild of a projection run by another process.
func WaitRebuild(ctx context.Context, store eventstore.Store, storage projectionstore.Storage, name string, progress func(Progress)) error {
	const tick = 200 * time.Millisecond
	pr := Progress{Projection: name}
	for {
		cps, err := storage.Checkpoints(ctx, name)
		if err != nil {
			return err
		}
		if len(cps) == 0 {
			return fmt.Errorf("%w: %q has no checkpoints", ErrUnknownProjection, name)
		}
		started := true
		low := cps[0].Position
		for _, cp := range cps {
			started = started && !cp.RebuildRequested
			if cp.Position.Compare(low) < 0 {
				low = cp.Position
			}
		}
		if started && !pr.Started {
			if pr.Head, err = store.Head(ctx); err != nil {
				return err
			}
		}
		pr.Started, pr.Position = started, low
		if started {
			for _, cp := range cps {
				if cp.Error != "" {
					if progress != nil {
						progress(pr)
					}
					return &StoppedError{Key: projectionstore.Key{Projection: name, Partition: cp.Partition}, Position: cp.Position, Err: storedError(cp.Error)}
				}
			}
			pr.Done = low.Compare(pr.Head) >= 0
		}
		if progress != nil {
			progress(pr)
		}
		if pr.Done {
			return nil
		}
		if !sleep(ctx, tick) {
			return ctx.Err()
		}
	}
}

// Status is the state of one partition of a projection, with its lag.
type Status struct {
	projectionstore.Checkpoint
	// Head is the store's head when the status was read.
	Head eventstore.Position
	// LagEvents counts the partition's events (those of the streams
	// [PartitionOf] maps to it) after the checkpoint, up to the head.
	LagEvents int64
	// LagTime is the age of the partition's oldest event after the
	// checkpoint: how long it has waited. It is 0 when the partition has caught up.
	LagTime time.Duration
}

// Status reports the state of every partition of the projections
// registered with this runner, including partitions no runner has
// acquired yet, and the lag of each (see [Statuses]).
func (r *Runner) Status(ctx context.Context) ([]Status, error) {
	r.mu.Lock()
	projections := append([]*proj(nil), r.projections...)
	r.mu.Unlock()
	var out []Status
	for _, p := range projections {
		cps, err := r.storage.Checkpoints(ctx, p.Name)
		if err != nil {
			return nil, err
		}
		byPart := make(map[int]projectionstore.Checkpoint, len(cps))
		for _, cp := range cps {
			byPart[cp.Partition] = cp
		}
		for i := range p.Partitions {
			cp, ok := byPart[i]
			if !ok {
				cp = projectionstore.Checkpoint{Projection: p.Name, Partition: i, Partitions: p.Partitions}
			}
			if _, _, err := p.parts[i].get(); err != nil && cp.Error == "" {
				cp.Error = err.Error()
			}
			out = append(out, Status{Checkpoint: cp})
		}
	}
	return out, fillLag(ctx, r.store, r.storage, out)
}

// Statuses reports the state of every partition the storage has a
// checkpoint for (of one projection, or of all when projection is ""), with
// the lag of each: the events after the checkpoint up to the store's head,
// and the age of the oldest of them. It is what `chronicle projections
// status` prints.
func Statuses(ctx context.Context, store eventstore.Store, storage projectionstore.Storage, projection string) ([]Status, error) {
	cps, err := storage.Checkpoints(ctx, projection)
	if err != nil {
		return nil, err
	}
	out := make([]Status, len(cps))
	for i, cp := range cps {
		out[i] = Status{Checkpoint: cp}
	}
	return out, fillLag(ctx, store, storage, out)
}

func fillLag(ctx context.Context, store eventstore.Store, storage projectionstore.Storage, sts []Status) error {
	if len(sts) == 0 {
		return nil
	}
	head, err := store.Head(ctx)
	if err != nil {
		return err
	}
	now := time.Now()
	counter, _ := storage.(projectionstore.EventCounter)
	for i := range sts {
		st := &sts[i]
		st.Head = head
		if st.Position.Compare(head) >= 0 {
			continue
		}
		parts := max(st.Partitions, 1)
		if counter != nil {
			st.LagEvents, err = counter.CountEvents(ctx, st.Position, head, st.Partition, parts)
		} else {
			st.LagEvents, err = countEvents(ctx, store, st.Position, head, st.Partition, parts)
		}
		if err != nil {
			return err
		}
		if st.LagEvents == 0 {
			continue
		}
		oldest, err := firstOfPartition(ctx, store, st.Position, head, st.Partition, parts)
		if err != nil {
			return err
		}
		if !oldest.IsZero() {
			st.LagTime = max(now.Sub(oldest), 0)
		}
	}
	return nil
}

// countEvents counts the events of partition part (of parts) in
// (after, upTo] by reading them.
func countEvents(ctx context.Context, store eventstore.Store, after, upTo eventstore.Position, part, parts int) (int64, error) {
	var n int64
	for rec, err := range eventstore.ReadAllSeq(ctx, store, after, 1000) {
		if err != nil {
			return 0, err
		}
		if rec.Position.Compare(upTo) > 0 {
			break
		}
		if PartitionOf(rec.StreamID, parts) == part {
			n++
		}
	}
	return n, nil
}

// firstOfPartition returns the recorded-at time of the first event of
// partition part (of parts) in (after, upTo], or the zero time.
func firstOfPartition(ctx context.Context, store eventstore.Store, after, upTo eventstore.Position, part, parts int) (time.Time, error) {
	page := 1
	if parts > 1 {
		page = 1000
	}
	for rec, err := range eventstore.ReadAllSeq(ctx, store, after, page) {
		if err != nil {
			return time.Time{}, err
		}
		if rec.Position.Compare(upTo) > 0 {
			break
		}
		if PartitionOf(rec.StreamID, parts) == part {
			return rec.RecordedAt, nil
		}
	}
	return time.Time{}, nil
}
