package projection

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime/debug"
	"time"

	"github.com/chronicle-go/chronicle/eventstore"
	"github.com/chronicle-go/chronicle/projection/projectionstore"
)

// A worker runs one partition of one projection. Its code is split by
// role: this file acquires and releases the partition (run), leading.go
// follows the log while the lease holds (lead), delivering.go hands
// batches to the handler and commits them (deliver), retrying.go retries
// failed events and settles retried dead letters.

// shutdownGrace bounds the statements run on the way out: the checkpoint
// save of an at-least-once batch cut short by shutdown, a release.
const shutdownGrace = 5 * time.Second

// worker runs one partition of one projection.
type worker struct {
	r     *Runner
	p     *proj
	key   projectionstore.Key
	state *partState
	log   *slog.Logger

	// spare holds the events of full batches handled while catching up,
	// for the batches read after them (see recycle).
	spare chan []Event

	progressed bool // a commit succeeded since the lease was acquired
	shrink     int  // the batch size is halved this many times after batch timeouts
}

// timedOut is an attempt at an event whose batch ran out of
// [Config.BatchTimeout] in a transaction that cost the lease (a storage
// that closes the connection to end the statement). [worker.lead] returns
// it, and [worker.run] hands it to the next lead only, so that the
// timeout counts as an attempt when the partition is acquired again (and
// the retry policy parks the event or stops the partition, instead of
// running it again forever); it is dropped if the next lease does not
// start at that event.
type timedOut struct {
	pos     eventstore.Position
	attempt int   // the attempt that timed out
	err     error // the batch timeout
}

// run acquires the partition and leads it, again and again, until ctx is
// done.
func (w *worker) run(ctx context.Context) {
	failures := 0
	backoff := RetryPolicy{BaseDelay: min(100*time.Millisecond, w.r.cfg.AcquireInterval), MaxDelay: 30 * time.Second}
	var carry *timedOut
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
			w.acquireFailed(err)
			sleep(ctx, max(backoff.Backoff(failures), w.acquireWait()))
			continue
		}
		if lease == nil { // another runner holds it
			sleep(ctx, w.acquireWait())
			continue
		}
		w.progressed = false
		w.state.drainShed()
		carry, err = w.lead(ctx, lease, carry)
		w.dropSpare()
		w.release(ctx, lease)
		switch {
		case ctx.Err() != nil:
			return
		case errors.Is(err, errShed):
			failures = 0
			w.log.Info("gave the partition up to share the projection's partitions with another runner")
			sleep(ctx, w.acquireWait())
			continue
		case w.progressed:
			failures = 0
		}
		failures++
		w.log.Warn("released projection partition after a failure", "error", err)
		// A holder that lost its lease waits at least one acquire interval,
		// so that a standby runner (which tries every interval) takes over.
		sleep(ctx, max(backoff.Backoff(failures), w.acquireWait()))
	}
}

// acquireWait is the time between two attempts to acquire the partition:
// the acquire interval, or three when this runner already holds its
// share of the projection's partitions (see [share]), so that a runner
// under its share acquires the free partitions first.
func (w *worker) acquireWait() time.Duration {
	d := w.r.cfg.AcquireInterval
	if w.p.share.atOrAbove(w.p.held()) {
		d *= patience
	}
	return jitter(d)
}

// acquireFailed reports a failed acquisition.
func (w *worker) acquireFailed(err error) {
	if errors.Is(err, ErrPartitionsMismatch) {
		w.log.Error("cannot run projection partition", "error", err)
		w.state.set(func(s *partState) { s.err = err })
		w.r.commits.notify()
		return
	}
	w.log.Warn("cannot acquire projection partition", "error", err)
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

// committed records a successful commit.
func (w *worker) committed(cp projectionstore.Checkpoint) {
	w.progressed = true
	w.shrink = max(w.shrink-1, 0)
	w.state.set(func(s *partState) { s.pos = cp.Position })
	w.r.commits.notify()
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

// transactional reports whether batches run in one transaction with their
// checkpoint.
func (w *worker) transactional(lease projectionstore.Lease) bool {
	return w.p.Mode == Transactional && lease.Transactional()
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
