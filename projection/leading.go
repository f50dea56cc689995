package projection

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/chronicle-go/chronicle/eventstore"
	"github.com/chronicle-go/chronicle/projection/projectionstore"
)

// errShed ends a lead whose partition this runner gives up to share the
// projection's partitions (see [share]).
var errShed = errors.New("partition given up to another runner")

// leading is the state of one lease: what [worker.lead] knows while it
// follows the log.
type leading struct {
	w      *worker
	lease  projectionstore.Lease
	parent context.Context // the runner's ctx: done on shutdown

	cp           projectionstore.Checkpoint // the last committed (or read) checkpoint
	ahead        eventstore.Position        // handled past cp, its commit deferred (Projection.CheckpointInterval); zero when none
	full         bool                       // the batch being processed is full: catching up
	deferrable   bool                       // the commit being made is a batch's checkpoint, which may be deferred
	lastCommit   time.Time                  // when the checkpoint was last stored
	stopped      error                      // why the partition stopped, or nil
	pre          *prefetched                // the next batch, being read
	lastRetries  time.Time                  // when retry requests were last settled
	lastCheck    time.Time                  // when the checkpoint was last read or committed
	readFailures int

	resume *timedOut // a timeout carried from the previous lease, until the first batch
	lostTo *timedOut // a timeout that cost this lease, for the next
}

// lead follows the partition while the lease holds. It returns nil when
// ctx is done, [errShed] when the partition is given up, and another error
// when the lease or the storage failed; and the timeout that cost the
// lease, if one did.
func (w *worker) lead(parent context.Context, lease projectionstore.Lease, carry *timedOut) (*timedOut, error) {
	ctx, cancel := context.WithCancelCause(parent)
	defer cancel(nil)
	go func() {
		select {
		case <-lease.Done():
			cancel(ErrLeaseLost)
		case <-ctx.Done():
		}
	}()
	l := &leading{w: w, lease: lease, parent: parent, resume: carry, lastCheck: time.Now()}
	err := l.follow(ctx)
	return l.lostTo, l.leaseErr(err)
}

// leaseErr reports err, as a lost lease when the lease is gone, and as
// nil on shutdown.
func (l *leading) leaseErr(err error) error {
	if l.parent.Err() != nil {
		return nil
	}
	select {
	case <-l.lease.Done():
		return fmt.Errorf("%w: %w", ErrLeaseLost, err)
	default:
		return err
	}
}

// follow reads the checkpoint, then loops until an error.
func (l *leading) follow(ctx context.Context) error {
	cp, err := l.lease.Checkpoint(ctx)
	if err != nil {
		return err
	}
	l.cp = cp
	l.w.log.Info("acquired projection partition", "checkpoint", cp.Position.String())
	l.w.state.set(func(s *partState) { s.holding, s.pos, s.err = true, cp.Position, nil })
	l.w.r.commits.notify()
	for {
		if err := ctx.Err(); err != nil {
			l.saveOnShutdown(ctx, nil) // the deferred checkpoint, if any
			return err
		}
		if l.w.state.shedRequested() {
			if err := l.storeAhead(ctx); err != nil {
				return err
			}
			return errShed
		}
		switch {
		case l.cp.RebuildRequested:
			err = l.rebuild(ctx)
		case l.stopped != nil:
			err = l.waitStopped(ctx)
		default:
			err = l.step(ctx)
		}
		if err != nil {
			return err
		}
	}
}

// pos is where the partition resumes reading: after the events it
// handled, whether their checkpoint is stored or deferred.
func (l *leading) pos() eventstore.Position {
	if !l.ahead.IsZero() {
		return l.ahead
	}
	return l.cp.Position
}

// storeAhead stores the checkpoint whose commit was deferred, if any.
func (l *leading) storeAhead(ctx context.Context) error {
	if l.ahead.IsZero() {
		return nil
	}
	next, err := l.w.commit(ctx, l.lease, projectionstore.Commit{From: l.cp.Position, To: l.ahead})
	if err != nil {
		return err
	}
	l.committed(next)
	return nil
}

// deferCommit reports whether the checkpoint commit c of a batch may wait
// (see [Projection.CheckpointInterval]), and records it as ahead if so.
func (l *leading) deferCommit(c projectionstore.Commit) bool {
	iv := l.w.p.CheckpointInterval
	if iv <= 0 || !l.deferrable || !l.full || l.w.p.Mode != AtLeastOnce ||
		c.Work != nil || c.Park != nil || c.Settle != nil || c.Rebuilt || c.Error != "" ||
		time.Since(l.lastCommit) >= iv {
		return false
	}
	l.ahead = c.To
	return true
}

// step settles retry requests when due, then reads and handles the next
// batch, or waits for one.
func (l *leading) step(ctx context.Context) error {
	poll := l.w.r.cfg.PollInterval
	if time.Since(l.lastRetries) >= poll {
		// A deferred checkpoint may stay deferred: settling commits the
		// stored checkpoint unchanged (From and To are l.cp's).
		if err := l.settleRetries(ctx); err != nil {
			return err
		}
		l.lastRetries = time.Now()
	}
	wake := l.w.r.wake.wait()
	res, err := l.read(ctx)
	if err != nil {
		if ctx.Err() == nil {
			l.readFailures++
			d := l.w.p.Retry.Backoff(l.readFailures)
			l.w.log.Warn("cannot read events", "error", err, "retry_in", d)
			sleep(ctx, d)
		}
		return nil
	}
	l.readFailures = 0
	if res.read == 0 {
		// Caught up: the checkpoint is stored before waiting (a conflict
		// reloads it, as after a batch).
		l.w.dropSpare()
		if err := l.storeAhead(ctx); err != nil {
			return l.outcome(ctx, err)
		}
		return l.idle(ctx, wake)
	}
	l.lastCheck = time.Now() // the batch's commit reports the checkpoint's state
	n := l.w.batchSize()
	l.full = res.read == n
	if l.full {
		// Catching up: read the next batch while this one is handled.
		l.pre = l.w.prefetch(ctx, res.last, n, res.next)
	} else {
		l.w.dropSpare() // caught up: no batch to come needs it
	}
	err = l.observed(ctx, res.batch)
	if err == nil && l.full {
		l.w.recycle(res.evs) // for a batch read later
	}
	l.resume = nil // carried for the first batch only
	return l.outcome(ctx, err)
}

// read returns the batch after the checkpoint, prefetched if it was; a
// prefetched batch comes with the partition's events decoded ahead (when
// the handler is a [Handlers]) and, when it is full, the read of the
// batch after it, already started.
func (l *leading) read(ctx context.Context) (readResult, error) {
	if pre := l.pre; pre != nil && pre.after == l.pos() {
		l.pre = nil
		res := <-pre.ch
		return res, res.err
	}
	l.dropPrefetch()
	b, err := l.w.readBatch(ctx, l.pos(), l.w.batchSize(), false)
	return readResult{batch: b}, err
}

// idle waits for a wake-up, a poll interval or a shed request, and reads
// the checkpoint (for rebuild requests and the lease's liveness) once per
// poll interval, however often the store wakes us.
func (l *leading) idle(ctx context.Context, wake <-chan struct{}) error {
	poll := l.w.r.cfg.PollInterval
	timer := time.NewTimer(jitter(poll))
	defer timer.Stop()
	select {
	case <-ctx.Done():
		return nil
	case <-l.w.state.shedWait():
		return errShed
	case <-wake:
	case <-timer.C:
	}
	if ctx.Err() != nil || time.Since(l.lastCheck) < poll {
		return nil
	}
	cp, err := l.lease.Checkpoint(ctx)
	if err != nil {
		return err
	}
	l.cp, l.lastCheck = cp, time.Now()
	return nil
}

// outcome handles the result of a batch: a stopped partition records its
// error and keeps its lease, a checkpoint conflict reloads the
// checkpoint, anything else ends the lead.
func (l *leading) outcome(ctx context.Context, err error) error {
	var se *StoppedError
	switch {
	case err == nil:
		return nil
	case errors.As(err, &se):
		// The events before the failed one were checkpointed (saveHandled).
		// Record the stop before anyone is told: a waiter that sees
		// ErrStopped (WaitForHead, Status) then finds it in storage too,
		// even when the runner shuts down right after. When the record
		// fails, the lead ends and the next one meets the event again.
		next, cerr := l.w.commit(ctx, l.lease, projectionstore.Commit{From: l.cp.Position, To: l.cp.Position, Error: err.Error()})
		if cerr != nil {
			return fmt.Errorf("record the stop of the partition (%v): %w", err, cerr)
		}
		l.w.log.Error("projection partition stopped: fix the handler, then restart the runner or rebuild the projection", "error", err)
		l.cp = next
		l.stopped = err
		l.dropPrefetch() // a stopped partition keeps no batch read ahead
		l.w.state.set(func(s *partState) { s.err = err })
		l.w.r.commits.notify()
		return nil
	case errors.Is(err, ErrCheckpointConflict):
		l.w.log.Warn("checkpoint moved under this holder; reloading it", "error", err)
		cp, err := l.lease.Checkpoint(ctx)
		if err != nil {
			return err
		}
		l.cp, l.ahead = cp, eventstore.Position{}
		l.dropPrefetch()
		return nil
	}
	return err
}

// waitStopped keeps the lease of a stopped partition, reading its
// checkpoint every poll interval for a rebuild request.
func (l *leading) waitStopped(ctx context.Context) error {
	if !sleep(ctx, jitter(l.w.r.cfg.PollInterval)) {
		return nil
	}
	cp, err := l.lease.Checkpoint(ctx)
	if err != nil {
		return err
	}
	l.cp = cp
	return nil
}

// rebuild resets the partition: the reset hook, the checkpoint back to the
// start and the rebuild request cleared, in one unit of work.
func (l *leading) rebuild(ctx context.Context) error {
	w := l.w
	w.log.Info("rebuilding projection partition: resetting its read model and replaying every event", "checkpoint", l.cp.Position.String())
	l.ahead = eventstore.Position{} // the rebuild replays everything anyway
	l.dropPrefetch()
	c := projectionstore.Commit{From: l.cp.Position, To: eventstore.Position{}, Rebuilt: true}
	if reset := w.p.reset; reset != nil {
		part := w.key.Partition
		if w.transactional(l.lease) {
			c.Work = func(ctx context.Context) error { return reset(ctx, part) }
		} else if err := reset(ctx, part); err != nil {
			return fmt.Errorf("reset the read model: %w", err)
		}
	}
	next, err := w.commit(ctx, l.lease, c)
	if err != nil {
		return fmt.Errorf("rebuild: %w", err)
	}
	w.state.set(func(s *partState) { s.err = nil })
	l.stopped, l.resume = nil, nil
	l.committed(next)
	return nil
}

// committed records a successful commit.
func (l *leading) committed(cp projectionstore.Checkpoint) {
	l.cp = cp
	l.lastCommit = time.Now()
	if !l.ahead.IsZero() && cp.Position.Compare(l.ahead) >= 0 {
		l.ahead = eventstore.Position{}
	}
	l.w.committed(cp)
}

// prefetched is a batch being read ahead.
type prefetched struct {
	after eventstore.Position
	ch    chan readResult
	// dropped is set when the runner gives the batch up: its goroutine
	// then starts no read of the batch after it and decodes nothing.
	dropped atomic.Bool
}

// dropPrefetch gives up the batch being read ahead, if any, and the
// batches kept for reads to come ([worker.recycle]): the partition does
// not go on reading from where it was (a failure, a stop, a rebuild, a
// checkpoint conflict), so the reads that follow start afresh.
func (l *leading) dropPrefetch() {
	if l.pre != nil {
		l.pre.dropped.Store(true)
		l.pre = nil
	}
	l.w.dropSpare()
}

type readResult struct {
	batch // its events decoded ahead when prefetched for a [Handlers]
	err   error
	// next is the read of the batch after this one, started as soon as
	// this one arrived when it is full (nil otherwise).
	next *readAhead
}

// readAhead is a read of the batch after a position, started ahead.
type readAhead struct {
	after eventstore.Position
	n     int
	ch    chan readResult // receives the batch and err
}

// startRead starts reading the n events after pos.
func (w *worker) startRead(ctx context.Context, pos eventstore.Position, n int) *readAhead {
	r := &readAhead{after: pos, n: n, ch: make(chan readResult, 1)}
	go func() {
		b, err := w.readBatch(ctx, pos, n, true)
		r.ch <- readResult{batch: b, err: err}
	}()
	return r
}

// prefetch reads the batch after pos (or takes started, the read of that
// batch begun ahead, when it is one), then picks the partition's events of
// it and, when the handler is a [Handlers], decodes their payloads: that
// work overlaps the handling and commit of the current batch. When the
// batch is full (catching up), the read of the batch after it starts as
// soon as it has arrived, before the decoding: so while the runner
// handles a batch, the next one is decoded and the one after it read, as
// [eventstore.PageReader]s read pages ahead; never more than that, since
// a read ahead is taken over only by the prefetch of its batch, which the
// runner starts when it takes the batch before. A result is dropped if
// the partition does not continue from its position (a failure, a
// rebuild, a checkpoint conflict), with the read ahead it carries, and a
// prefetch given up early (leading.dropPrefetch) starts no further read
// and decodes nothing. Every goroutine ends with its read either way.
func (w *worker) prefetch(ctx context.Context, pos eventstore.Position, n int, started *readAhead) *prefetched {
	p := &prefetched{after: pos, ch: make(chan readResult, 1)}
	go func() {
		var res readResult
		if started != nil && started.after == pos && started.n == n {
			res = <-started.ch
		} else {
			res.batch, res.err = w.readBatch(ctx, pos, n, true)
		}
		if p.dropped.Load() {
			p.ch <- res
			return
		}
		if res.err == nil && res.read == n {
			res.next = w.startRead(ctx, res.last, n)
		}
		if h, ok := w.p.Handler.(*Handlers); ok && res.err == nil {
			h.decodeAhead(ctx, res.evs)
		}
		p.ch <- res
	}()
	return p
}
