package projection

import (
	"context"
	"errors"
	"fmt"
	"github.com/chronicle-go/chronicle/projection/projectionstore"
	"log/slog"
	"runtime/debug"
	"slices"
	"time"

	"github.com/chronicle-go/chronicle/eventstore"
)

// shutdownGrace bounds the checkpoint save of an at-least-once batch cut
// short by shutdown.
const shutdownGrace = 5 * time.Second

// worker runs one partition of one projection.
type worker struct {
	r     *Runner
	p     *proj
	key   projectionstore.Key
	state *partState
	log   *slog.Logger

	progressed bool // a commit succeeded since the last infrastructure failure
	shrink     int  // the batch size is halved this many times after batch timeouts

	// timedOut is the event whose handler ran out of [Config.BatchTimeout]
	// in a transaction that cost the lease (a storage that closes the
	// connection to end the statement), or nil. It outlives the lease, so
	// that the timeout counts as an attempt when the partition is
	// acquired again, and the retry policy parks the event or stops the
	// partition instead of running it again forever.
	timedOut *timedOut
}

// timedOut is an attempt at an event that timed out and lost the lease.
type timedOut struct {
	pos     eventstore.Position
	attempt int   // the attempt that timed out
	err     error // the batch timeout
}

// takeTimedOut returns and forgets the recorded timeout of the event at
// pos, or returns nil.
func (w *worker) takeTimedOut(pos eventstore.Position) *timedOut {
	t := w.timedOut
	if t == nil || t.pos != pos {
		return nil
	}
	w.timedOut = nil
	return t
}

// maxShrink bounds [worker.shrink]: 2^17 > maxBatchSize, so the batch
// size reaches 1.
const maxShrink = 17

// batchSize is the number of events to read next: the projection's batch
// size, halved after each batch that exceeded [Config.BatchTimeout] (and
// doubled back after each commit), so that a partition whose batches are
// too slow still progresses, down to one event per transaction.
func (w *worker) batchSize() int {
	return max(1, w.p.BatchSize>>w.shrink)
}

// commit runs lease.Commit with ctx bounded by [Config.BatchTimeout], so
// that a transaction never stays open longer: an open transaction holds
// back the transaction horizon of every tailing reader of the cluster.
// A timeout makes the next batches smaller.
func (w *worker) commit(ctx context.Context, lease projectionstore.Lease, c projectionstore.Commit) (projectionstore.Checkpoint, error) {
	bctx, cancel := context.WithTimeout(ctx, w.r.cfg.BatchTimeout)
	defer cancel()
	cp, err := lease.Commit(bctx, c)
	// The deadline fired first (bctx's error does not change once set);
	// ctx may be done since, because the timeout cost the lease (see
	// lead), but not because of a shutdown.
	if err != nil && errors.Is(bctx.Err(), context.DeadlineExceeded) &&
		(ctx.Err() == nil || errors.Is(context.Cause(ctx), ErrLeaseLost)) {
		w.shrink = min(w.shrink+1, maxShrink)
		w.log.Error("projection batch exceeded the batch timeout: its transaction was rolled back; the next batches are smaller",
			"batch_timeout", w.r.cfg.BatchTimeout, "next_batch_size", w.batchSize(), "error", err)
		err = &batchTimeoutError{timeout: w.r.cfg.BatchTimeout, err: err}
	}
	return cp, err
}

// batchTimeoutError reports a unit of work cut short by
// [Config.BatchTimeout].
type batchTimeoutError struct {
	timeout time.Duration
	err     error
}

func (e *batchTimeoutError) Error() string {
	return fmt.Sprintf("batch timeout (%s) exceeded: %v", e.timeout, e.err)
}

func (e *batchTimeoutError) Unwrap() error { return e.err }

// run acquires the partition and leads it, again and again, until ctx is
// done.
func (w *worker) run(ctx context.Context) {
	failures := 0
	backoff := RetryPolicy{BaseDelay: min(100*time.Millisecond, w.r.cfg.AcquireInterval), MaxDelay: 30 * time.Second}
	for ctx.Err() == nil {
		lease, err := w.r.storage.Acquire(ctx, w.key, w.p.Partitions, w.r.cfg.Holder)
		if ctx.Err() != nil {
			if lease != nil {
				w.release(ctx, lease)
			}
			return
		}
		if err != nil {
			failures++
			if errors.Is(err, ErrPartitionsMismatch) {
				w.log.Error("cannot run projection partition", "error", err)
				w.state.set(func(s *partState) { s.err = err })
				w.r.commits.notify()
			} else {
				w.log.Warn("cannot acquire projection partition", "error", err)
			}
			sleep(ctx, max(backoff.Backoff(failures), jitter(w.r.cfg.AcquireInterval)))
			continue
		}
		if lease == nil { // another runner holds it
			sleep(ctx, jitter(w.r.cfg.AcquireInterval))
			continue
		}
		w.progressed = false
		err = w.lead(ctx, lease)
		w.release(ctx, lease)
		if ctx.Err() != nil {
			return
		}
		if w.progressed {
			failures = 0
		}
		failures++
		w.log.Warn("released projection partition after a failure", "error", err)
		// A holder that lost its lease waits at least one acquire interval,
		// so that a standby runner (which tries every interval) takes over.
		sleep(ctx, max(backoff.Backoff(failures), jitter(w.r.cfg.AcquireInterval)))
	}
}

func (w *worker) release(ctx context.Context, lease projectionstore.Lease) {
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), shutdownGrace)
	defer cancel()
	if err := lease.Release(rctx); err != nil {
		w.log.Warn("cannot release projection partition cleanly", "error", err)
	}
	w.state.set(func(s *partState) { s.holding = false })
	w.r.commits.notify()
	w.log.Info("released projection partition")
}

// lead processes the partition while the lease holds. It returns nil when
// ctx is done, and an error when the lease or the storage failed.
func (w *worker) lead(parent context.Context, lease projectionstore.Lease) error {
	ctx, cancel := context.WithCancelCause(parent)
	defer cancel(nil)
	go func() {
		select {
		case <-lease.Done():
			cancel(ErrLeaseLost)
		case <-ctx.Done():
		}
	}()
	leaseErr := func(err error) error {
		if parent.Err() != nil {
			return nil
		}
		select {
		case <-lease.Done():
			return fmt.Errorf("%w: %w", ErrLeaseLost, err)
		default:
			return err
		}
	}

	cp, err := lease.Checkpoint(ctx)
	if err != nil {
		return leaseErr(err)
	}
	w.log.Info("acquired projection partition", "checkpoint", cp.Position.String())
	w.state.set(func(s *partState) { s.holding, s.pos, s.err = true, cp.Position, nil })
	w.r.commits.notify()

	var (
		pre          *prefetched
		stopped      error
		lastRetries  time.Time
		lastCheck    = time.Now()
		readFailures int
		poll         = w.r.cfg.PollInterval
	)
	for {
		if ctx.Err() != nil {
			return leaseErr(ctx.Err())
		}
		if cp.RebuildRequested {
			next, err := w.rebuild(ctx, lease, cp)
			if err != nil {
				return leaseErr(err)
			}
			cp, stopped = next, nil
			continue
		}
		if stopped != nil {
			// Stopped: keep the lease, wait for a rebuild request.
			if !sleep(ctx, jitter(poll)) {
				continue
			}
			if cp, err = lease.Checkpoint(ctx); err != nil {
				return leaseErr(err)
			}
			continue
		}
		if time.Since(lastRetries) >= poll {
			next, err := w.settleRetries(ctx, lease, cp)
			cp = next
			if err != nil {
				return leaseErr(err)
			}
			lastRetries = time.Now()
		}

		wake := w.r.wake.wait()
		var recs []eventstore.Record
		if pre != nil && pre.after == cp.Position {
			res := <-pre.ch
			recs, err = res.recs, res.err
		} else {
			recs, err = w.r.store.ReadAll(ctx, cp.Position, w.batchSize())
		}
		pre = nil
		if err != nil {
			if ctx.Err() != nil {
				continue
			}
			readFailures++
			d := w.p.Retry.Backoff(readFailures)
			w.log.Warn("cannot read events", "error", err, "retry_in", d)
			sleep(ctx, d)
			continue
		}
		readFailures = 0
		if len(recs) == 0 {
			timer := time.NewTimer(jitter(poll))
			select {
			case <-ctx.Done():
			case <-wake:
			case <-timer.C:
			}
			timer.Stop()
			// Idle: check the lease and rebuild requests every poll
			// interval, however often the store wakes us.
			if ctx.Err() == nil && time.Since(lastCheck) >= poll {
				if cp, err = lease.Checkpoint(ctx); err != nil {
					return leaseErr(err)
				}
				lastCheck = time.Now()
			}
			continue
		}
		lastCheck = time.Now() // the batch's commit reports the checkpoint's state

		if n := w.batchSize(); len(recs) == n {
			// Catching up: read the next batch while this one is handled.
			pre = w.prefetch(ctx, recs[len(recs)-1].Position, n)
		}
		next, err := w.process(ctx, lease, cp, recs)
		cp = next
		var se *StoppedError
		switch {
		case err == nil:
		case errors.As(err, &se):
			w.log.Error("projection partition stopped: fix the handler, then restart the runner or rebuild the projection", "error", err)
			stopped = err
			w.state.set(func(s *partState) { s.err = err })
			w.r.commits.notify()
			next, err := w.commit(ctx, lease, projectionstore.Commit{From: cp.Position, To: cp.Position, Error: err.Error()})
			if err != nil {
				return leaseErr(err)
			}
			cp = next
		case errors.Is(err, ErrCheckpointConflict):
			w.log.Warn("checkpoint moved under this holder; reloading it", "error", err)
			if cp, err = lease.Checkpoint(ctx); err != nil {
				return leaseErr(err)
			}
		default:
			return leaseErr(err)
		}
	}
}

// prefetched is a batch being read ahead.
type prefetched struct {
	after eventstore.Position
	ch    chan readResult
}

type readResult struct {
	recs []eventstore.Record
	err  error
}

// prefetch starts reading the batch after pos. The result is dropped if
// the partition does not continue from pos (a failure, a rebuild); the
// goroutine ends with the read either way.
func (w *worker) prefetch(ctx context.Context, pos eventstore.Position, n int) *prefetched {
	p := &prefetched{after: pos, ch: make(chan readResult, 1)}
	go func() {
		recs, err := w.r.store.ReadAll(ctx, pos, n)
		p.ch <- readResult{recs, err}
	}()
	return p
}

// transactional reports whether batches run in one transaction with their
// checkpoint.
func (w *worker) transactional(lease projectionstore.Lease) bool {
	return w.p.Mode == Transactional && lease.Transactional()
}

// committed records a successful commit.
func (w *worker) committed(cp projectionstore.Checkpoint) {
	w.progressed = true
	w.shrink = max(w.shrink-1, 0)
	w.state.set(func(s *partState) { s.pos = cp.Position })
	w.r.commits.notify()
}

// process handles one batch read after cp and checkpoints its last
// position.
func (w *worker) process(ctx context.Context, lease projectionstore.Lease, cp projectionstore.Checkpoint, recs []eventstore.Record) (projectionstore.Checkpoint, error) {
	to := recs[len(recs)-1].Position
	evs := make([]Event, 0, len(recs))
	for _, rec := range recs {
		part := PartitionOf(rec.StreamID, w.p.Partitions)
		if part != w.key.Partition {
			continue
		}
		evs = append(evs, Event{Record: rec, Projection: w.p.Name, Partition: part, Attempt: 1})
	}
	for {
		next, failed, herr, err := w.deliverResuming(ctx, lease, cp, evs, to)
		cp = next
		if err != nil || failed < 0 {
			return cp, err
		}
		if cp, err = w.retry(ctx, lease, cp, evs[failed], herr); err != nil {
			return cp, err
		}
		evs = evs[failed+1:]
		if len(evs) == 0 && cp.Position == to {
			return cp, nil
		}
	}
}

// deliverResuming is deliver(evs, Commit{To: to}), unless one of evs
// timed out under a lease since lost (see [worker.timedOut]): then it
// delivers the events before it, and reports it as failed (with its
// attempt count restored) without running its handler again, so that the
// caller retries it as if it had just failed.
func (w *worker) deliverResuming(ctx context.Context, lease projectionstore.Lease, cp projectionstore.Checkpoint, evs []Event, to eventstore.Position) (projectionstore.Checkpoint, int, error, error) {
	i := -1
	if w.timedOut != nil {
		i = slices.IndexFunc(evs, func(ev Event) bool { return ev.Position == w.timedOut.pos })
	}
	if i < 0 {
		return w.deliver(ctx, lease, cp, evs, projectionstore.Commit{To: to})
	}
	if i > 0 {
		next, failed, herr, err := w.deliver(ctx, lease, cp, evs[:i], projectionstore.Commit{To: evs[i-1].Position})
		if err != nil || failed >= 0 {
			return next, failed, herr, err
		}
		cp = next
	}
	t := w.takeTimedOut(evs[i].Position)
	evs[i].Attempt = max(evs[i].Attempt, t.attempt)
	return cp, i, t.err, nil
}

// deliver hands evs to the handler and commits base (its From set to cp).
// When the handler fails on evs[k], deliver commits the events before it
// (with the checkpoint at evs[k-1]) and returns k and the handler's error;
// k is -1 when every event was handled and base committed. err reports
// anything else: a storage failure, a lost lease, a shutdown. The
// returned checkpoint is the last one committed.
func (w *worker) deliver(ctx context.Context, lease projectionstore.Lease, cp projectionstore.Checkpoint, evs []Event, base projectionstore.Commit) (projectionstore.Checkpoint, int, error, error) {
	base.From = cp.Position
	if !w.transactional(lease) {
		return w.deliverEach(ctx, lease, cp, evs, base)
	}
	failed, herr := -1, error(nil)
	if len(evs) > 0 {
		base.Work = func(ctx context.Context) error {
			for i := range evs {
				if err := w.handle(ctx, evs[i]); err != nil {
					failed, herr = i, err
					return err
				}
			}
			return nil
		}
	}
	next, err := w.commit(ctx, lease, base)
	if failed < 0 {
		if err != nil {
			return cp, -1, nil, err
		}
		w.committed(next)
		return next, -1, nil, nil
	}
	bt := (*batchTimeoutError)(nil)
	timeout := errors.As(err, &bt)
	if ierr := w.interrupted(ctx, lease); ierr != nil {
		if timeout {
			// The timeout cost the lease (the storage closed the
			// connection to end a statement): remember the attempt, so
			// that it counts when the partition is acquired again.
			w.timedOut = &timedOut{pos: evs[failed].Position, attempt: evs[failed].Attempt, err: err}
		}
		return cp, -1, nil, ierr
	}
	if timeout {
		herr = err // the handler failed because the batch ran out of time
	}
	if failed == 0 {
		return cp, 0, herr, nil
	}
	// The transaction rolled back: commit the events before the failure
	// again, in a transaction of their own.
	prefix := evs[:failed]
	for i := range prefix {
		prefix[i].Attempt++
	}
	next, k, herr2, err := w.deliver(ctx, lease, cp, prefix, projectionstore.Commit{To: prefix[failed-1].Position})
	if err != nil || k >= 0 {
		return next, k, herr2, err
	}
	return next, failed, herr, nil
}

// deliverEach is deliver without a transaction: events are handled one by
// one, and the checkpoint saved after them.
func (w *worker) deliverEach(ctx context.Context, lease projectionstore.Lease, cp projectionstore.Checkpoint, evs []Event, base projectionstore.Commit) (projectionstore.Checkpoint, int, error, error) {
	// saveUpTo checkpoints the events before evs[i] after a failure or a
	// shutdown, so that they are not delivered again.
	saveUpTo := func(ctx context.Context, i int) (projectionstore.Checkpoint, error) {
		if i == 0 {
			return cp, nil
		}
		next, err := w.commit(ctx, lease, projectionstore.Commit{From: cp.Position, To: evs[i-1].Position})
		if err != nil {
			return cp, err
		}
		w.committed(next)
		return next, nil
	}
	for i := range evs {
		if err := w.interrupted(ctx, lease); err != nil {
			w.saveOnShutdown(ctx, saveUpTo, i)
			return cp, -1, nil, err
		}
		if herr := w.handle(ctx, evs[i]); herr != nil {
			if err := w.interrupted(ctx, lease); err != nil {
				w.saveOnShutdown(ctx, saveUpTo, i)
				return cp, -1, nil, err
			}
			next, err := saveUpTo(ctx, i)
			if err != nil {
				return cp, -1, nil, err
			}
			return next, i, herr, nil
		}
	}
	next, err := w.commit(ctx, lease, base)
	if err != nil {
		if ctx.Err() != nil && len(evs) > 0 {
			w.saveOnShutdown(ctx, saveUpTo, len(evs))
		}
		return cp, -1, nil, err
	}
	w.committed(next)
	return next, -1, nil, nil
}

// saveOnShutdown checkpoints at-least-once progress when the runner shuts
// down, with a short grace period; after a lost lease it cannot.
func (w *worker) saveOnShutdown(ctx context.Context, save func(context.Context, int) (projectionstore.Checkpoint, error), i int) {
	select {
	case <-ctx.Done():
	default:
		return
	}
	gctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), shutdownGrace)
	defer cancel()
	if _, err := save(gctx, i); err != nil {
		w.log.Debug("cannot checkpoint handled events on shutdown; they will be delivered again", "error", err)
	}
}

// interrupted returns an error when the runner shuts down or the lease was
// lost: a handler failure then is not the event's fault.
func (w *worker) interrupted(ctx context.Context, lease projectionstore.Lease) error {
	select {
	case <-lease.Done():
		return ErrLeaseLost
	default:
	}
	return ctx.Err()
}

// handle calls the handler, turning a panic into an error.
func (w *worker) handle(ctx context.Context, ev Event) (err error) {
	defer func() {
		if p := recover(); p != nil {
			w.log.Error("projection handler panicked", "event_id", ev.EventID.String(), "panic", p, "stack", string(debug.Stack()))
			err = fmt.Errorf("handler panicked: %v", p)
		}
	}()
	return w.p.Handler.Handle(ctx, ev)
}

// retry handles an event that failed, alone, with backoff, then parks it
// or stops the partition.
func (w *worker) retry(ctx context.Context, lease projectionstore.Lease, cp projectionstore.Checkpoint, ev Event, herr error) (projectionstore.Checkpoint, error) {
	policy := w.p.Retry
	for !isPermanent(herr) && ev.Attempt < policy.MaxAttempts {
		d := policy.Backoff(ev.Attempt)
		w.log.Warn("projection handler failed; retrying", "event_id", ev.EventID.String(), "type", ev.Type,
			"stream", ev.StreamID, "version", ev.StreamVersion, "attempt", ev.Attempt, "retry_in", d, "error", herr)
		if !sleep(ctx, d) {
			return cp, ctx.Err()
		}
		ev.Attempt++
		next, failed, h, err := w.deliver(ctx, lease, cp, []Event{ev}, projectionstore.Commit{To: ev.Position})
		if err != nil || failed < 0 {
			return next, err
		}
		herr = h
	}
	if w.p.OnFailure == ParkOnFailure {
		w.log.Error("projection handler failed; parking the event", "event_id", ev.EventID.String(), "type", ev.Type,
			"stream", ev.StreamID, "version", ev.StreamVersion, "attempts", ev.Attempt, "error", herr)
		next, err := w.commit(ctx, lease, projectionstore.Commit{From: cp.Position, To: ev.Position, Park: &projectionstore.DeadLetter{
			Projection:    w.p.Name,
			Partition:     w.key.Partition,
			EventID:       ev.EventID,
			StreamID:      ev.StreamID,
			StreamVersion: ev.StreamVersion,
			Position:      ev.Position,
			Type:          ev.Type,
			Error:         herr.Error(),
			Attempts:      ev.Attempt,
		}})
		if err != nil {
			return cp, err
		}
		w.committed(next)
		return next, nil
	}
	return cp, &StoppedError{Key: w.key, EventID: ev.EventID, Position: ev.Position, Attempts: ev.Attempt, Err: herr}
}

// rebuild resets the partition: the reset hook, the checkpoint back to the
// start and the rebuild request cleared, in one unit of work.
func (w *worker) rebuild(ctx context.Context, lease projectionstore.Lease, cp projectionstore.Checkpoint) (projectionstore.Checkpoint, error) {
	w.log.Info("rebuilding projection partition: resetting its read model and replaying every event", "checkpoint", cp.Position.String())
	c := projectionstore.Commit{From: cp.Position, To: eventstore.Position{}, Rebuilt: true}
	if reset := w.p.reset; reset != nil {
		part := w.key.Partition
		if w.transactional(lease) {
			c.Work = func(ctx context.Context) error { return reset(ctx, part) }
		} else if err := reset(ctx, part); err != nil {
			return cp, fmt.Errorf("reset the read model: %w", err)
		}
	}
	next, err := w.commit(ctx, lease, c)
	if err != nil {
		return cp, fmt.Errorf("rebuild: %w", err)
	}
	w.state.set(func(s *partState) { s.err = nil })
	w.timedOut = nil
	w.committed(next)
	return next, nil
}

// settleRetries handles the partition's dead letters that an operator
// asked to retry. Their events are older than the checkpoint, which does
// not move.
func (w *worker) settleRetries(ctx context.Context, lease projectionstore.Lease, cp projectionstore.Checkpoint) (projectionstore.Checkpoint, error) {
	dls, err := lease.RetryRequests(ctx)
	if err != nil {
		return cp, err
	}
	for _, dl := range dls {
		settle := func(status projectionstore.DeadLetterStatus, msg string, attempts int) *projectionstore.Settlement {
			return &projectionstore.Settlement{ID: dl.ID, Status: status, Error: msg, Attempts: dl.Attempts + attempts}
		}
		recs, err := w.r.store.ReadStream(ctx, dl.StreamID, eventstore.ReadStreamOptions{From: dl.StreamVersion, Limit: 1})
		if err != nil {
			if ctx.Err() != nil {
				return cp, ctx.Err()
			}
			w.log.Warn("cannot read a dead letter's event; will try again", "dead_letter", dl.ID, "error", err)
			return cp, nil
		}
		if len(recs) == 0 || recs[0].EventID != dl.EventID {
			next, err := w.commit(ctx, lease, projectionstore.Commit{From: cp.Position, To: cp.Position, Settle: settle(projectionstore.DeadLetterParked, "event not found in the store", 0)})
			if err != nil {
				return cp, err
			}
			cp = next
			continue
		}
		ev := Event{Record: recs[0], Projection: w.p.Name, Partition: dl.Partition}
		if t := w.takeTimedOut(ev.Position); t != nil {
			// The last try timed out and cost the lease: it counts.
			ev.Attempt = t.attempt
			if isPermanent(t.err) || ev.Attempt >= w.p.Retry.MaxAttempts {
				w.log.Warn("retried dead letter failed again; parked", "dead_letter", dl.ID, "event_id", dl.EventID.String(), "error", t.err)
				next, err := w.commit(ctx, lease, projectionstore.Commit{From: cp.Position, To: cp.Position, Settle: settle(projectionstore.DeadLetterParked, t.err.Error(), ev.Attempt)})
				if err != nil {
					return cp, err
				}
				cp = next
				continue
			}
		}
		for {
			ev.Attempt++
			next, failed, herr, err := w.deliver(ctx, lease, cp, []Event{ev}, projectionstore.Commit{To: cp.Position, Settle: settle(projectionstore.DeadLetterResolved, "", ev.Attempt)})
			cp = next
			if err != nil {
				return cp, err
			}
			if failed < 0 {
				w.log.Info("retried dead letter resolved", "dead_letter", dl.ID, "event_id", dl.EventID.String())
				break
			}
			if isPermanent(herr) || ev.Attempt >= w.p.Retry.MaxAttempts {
				w.log.Warn("retried dead letter failed again; parked", "dead_letter", dl.ID, "event_id", dl.EventID.String(), "error", herr)
				next, err := w.commit(ctx, lease, projectionstore.Commit{From: cp.Position, To: cp.Position, Settle: settle(projectionstore.DeadLetterParked, herr.Error(), ev.Attempt)})
				if err != nil {
					return cp, err
				}
				cp = next
				break
			}
			if !sleep(ctx, w.p.Retry.Backoff(ev.Attempt)) {
				return cp, ctx.Err()
			}
		}
	}
	return cp, nil
}
