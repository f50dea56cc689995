package projection

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/chronicle-go/chronicle/eventstore"
	"github.com/chronicle-go/chronicle/projection/projectionstore"
)

// delivery is the outcome of handing events to the handler: either every
// event was handled and committed (failed is -1), or the handler failed on
// events[failed] with err, and the events before it were committed.
// Failures that are not the handler's (storage, lost lease, shutdown) are
// returned as errors beside it.
type delivery struct {
	failed int
	err    error
}

// delivered is the outcome of a delivery without a handler failure.
var delivered = delivery{failed: -1}

// process handles one batch read after the checkpoint and checkpoints its
// last position: it delivers the partition's events of the batch, retries
// an event that fails (then parks it or stops the partition), and
// delivers the rest.
func (l *leading) process(ctx context.Context, b batch) error {
	to, evs := b.last, b.evs
	for {
		l.deferrable = true
		res, err := l.deliverResuming(ctx, evs, to)
		l.deferrable = false
		if err != nil || res.failed < 0 {
			return err
		}
		if err := l.retryFailed(ctx, evs[res.failed], res.err); err != nil {
			return err
		}
		evs = evs[res.failed+1:]
		if len(evs) == 0 && l.pos() == to {
			return nil
		}
	}
}

// batch is a batch read after a position: the number of events read, the
// position of the last one (where the checkpoint moves once the batch is
// handled), and those of the worker's partition.
type batch struct {
	read int
	last eventstore.Position
	evs  []Event
}

// readBatch reads the batch of at most n events after pos and picks the
// partition's events of it. A store that is an [eventstore.RecordReader]
// reads straight into the events, which saves copying each record out of
// a page (a sixth of the runner's CPU when catching up). The events are
// allocated as the records arrive: none for an empty read, and a few
// grown fourfold for a short one (tailing), unless full tells that the
// batch is probably full (the previous one was): then the events of a
// batch already handled (see [worker.recycle]), or n new ones.
func (w *worker) readBatch(ctx context.Context, pos eventstore.Position, n int, full bool) (batch, error) {
	rr, ok := w.r.store.(eventstore.RecordReader)
	if !ok {
		return w.readAll(ctx, pos, n)
	}
	var (
		evs    []Event
		broken string // how the store broke RecordReader's contract
	)
	first := min(n, 16)
	if full {
		first = n
		select {
		case evs = <-w.spare: // grown below if it holds fewer than n
		default:
		}
	}
	read, err := rr.ReadAllInto(ctx, pos, n, func(i int) *eventstore.Record {
		if i < 0 || i > len(evs) || i >= n {
			if broken == "" {
				broken = fmt.Sprintf("asked for record %d after %d, with a limit of %d", i, len(evs), n)
			}
			return new(eventstore.Record) // written, never delivered
		}
		if i == len(evs) {
			if i == cap(evs) {
				grown := make([]Event, len(evs), max(i+1, min(max(first, 4*cap(evs)), n)))
				copy(grown, evs)
				evs = grown
			}
			evs = evs[:i+1]
			evs[i] = Event{} // a spare's event holds a handled one's fields
		}
		return &evs[i].Record
	})
	if err == nil && broken == "" && (read < 0 || read > len(evs)) {
		broken = fmt.Sprintf("returned %d records after asking for %d", read, len(evs))
	}
	switch {
	case err != nil:
		return batch{}, err
	case broken != "":
		// A store bug: read what ReadAll reads, so that the projection
		// goes on, and say so.
		w.log.Warn("the store broke eventstore.RecordReader's contract; reading with ReadAll instead",
			"store", fmt.Sprintf("%T", w.r.store), "problem", broken)
		return w.readAll(ctx, pos, n)
	case read == 0:
		return batch{}, nil
	}
	last := evs[read-1].Position // before keep moves and clears the events
	return batch{read: read, last: last, evs: w.keep(evs, read)}, nil
}

// recycle keeps the events of a batch just handled (evs, or a slice of
// them from the start) for a full batch read later, when they can hold
// one. While catching up, most batches then reuse the memory of batches
// handled before them, instead of allocating a batch's worth of events
// (about 200 kB for 1,000) that the garbage collector has to zero,
// reclaim and hand back to the operating system: about a tenth of the
// runner's CPU. Two batches at most are kept (with three in flight, one
// handled, one decoded and one read, fewer leave reads that allocate),
// until the partition catches up, stops reading from where it was
// ([leading.dropPrefetch]) or its lead ends ([worker.dropSpare]).
// Only a store that is an [eventstore.RecordReader] reads into them.
// Nothing may use evs after.
func (w *worker) recycle(evs []Event) {
	if _, ok := w.r.store.(eventstore.RecordReader); !ok || cap(evs) < w.batchSize() {
		return
	}
	select {
	case w.spare <- evs[:0]:
	default:
	}
}

// dropSpare lets the garbage collector have the batches kept by recycle,
// and the payloads their events still point to.
func (w *worker) dropSpare() {
	for {
		select {
		case <-w.spare:
		default:
			return
		}
	}
}

// keep returns the events among the first read of evs that belong to the
// worker's partition, moved to the front in place and stamped for their
// first delivery; the others are skipped (the checkpoint moves past
// them), and every event after the kept ones, up to the last one the
// read wrote, is cleared, so that their payloads (and those of records a
// retried read wrote beyond read) are not kept alive. (Past those, the
// events of a batch read into a handled one's keep that batch's until
// this one is handled.)
func (w *worker) keep(evs []Event, read int) []Event {
	k := 0
	for i := range evs[:read] {
		part := PartitionOf(evs[i].StreamID, w.p.Partitions)
		if part != w.key.Partition {
			continue
		}
		if k != i {
			evs[k] = evs[i]
		}
		ev := &evs[k]
		ev.Projection, ev.Partition, ev.Attempt = w.p.Name, part, 1
		k++
	}
	clear(evs[k:])
	return evs[:k]
}

// readAll is readBatch through [eventstore.Store.ReadAll].
func (w *worker) readAll(ctx context.Context, pos eventstore.Position, n int) (batch, error) {
	recs, err := w.r.store.ReadAll(ctx, pos, n)
	if err != nil || len(recs) == 0 {
		return batch{}, err
	}
	evs := make([]Event, len(recs))
	for i := range recs {
		evs[i].Record = recs[i]
	}
	return batch{read: len(recs), last: recs[len(recs)-1].Position, evs: w.keep(evs, len(evs))}, nil
}

// deliverResuming is deliver(evs, Commit{To: to}), unless one of evs timed
// out under the previous lease (see [timedOut]): then it delivers the
// events before it, and reports it as failed (with its attempt count
// restored) without running its handler again, so that the caller retries
// it as if it had just failed.
func (l *leading) deliverResuming(ctx context.Context, evs []Event, to eventstore.Position) (delivery, error) {
	i := -1
	if l.resume != nil {
		i = slices.IndexFunc(evs, func(ev Event) bool { return ev.Position == l.resume.pos })
	}
	if i < 0 {
		return l.deliver(ctx, evs, projectionstore.Commit{To: to})
	}
	if i > 0 {
		res, err := l.deliver(ctx, evs[:i], projectionstore.Commit{To: evs[i-1].Position})
		if err != nil || res.failed >= 0 {
			return res, err
		}
	}
	t := l.resume
	l.resume = nil
	evs[i].Attempt = max(evs[i].Attempt, t.attempt)
	return delivery{failed: i, err: t.err}, nil
}

// deliver hands evs to the handler and commits base, its From set to the
// checkpoint. In a transaction, a handler failure rolls the whole batch
// back: the events before the failed one are then delivered again, in a
// transaction of their own, until a prefix commits (or the first event
// fails).
func (l *leading) deliver(ctx context.Context, evs []Event, base projectionstore.Commit) (delivery, error) {
	if !l.w.transactional(l.lease) {
		return l.deliverEach(ctx, evs, base)
	}
	first := delivered // the first failure, reported once a prefix commits
	for {
		res, err := l.deliverInTx(ctx, evs, base)
		switch {
		case err != nil:
			return delivered, err
		case res.failed < 0 && first.failed >= 0:
			return first, nil
		case res.failed <= 0:
			return res, nil
		}
		first = res
		evs = evs[:res.failed]
		for i := range evs {
			evs[i].Attempt++
		}
		base = projectionstore.Commit{To: evs[len(evs)-1].Position}
	}
}

// deliverInTx runs the handler on evs and commits base, in one
// transaction.
func (l *leading) deliverInTx(ctx context.Context, evs []Event, base projectionstore.Commit) (delivery, error) {
	w := l.w
	base.From = l.cp.Position
	res := delivered
	if len(evs) > 0 {
		base.Work = func(ctx context.Context) error {
			for i := range evs {
				if err := w.handle(ctx, evs[i]); err != nil {
					res = delivery{failed: i, err: err}
					return err
				}
			}
			return nil
		}
	}
	next, err := w.commit(ctx, l.lease, base)
	if res.failed < 0 {
		if err != nil {
			return delivered, err
		}
		l.committed(next)
		return delivered, nil
	}
	var bt *batchTimeoutError
	timeout := errors.As(err, &bt)
	if ierr := w.interrupted(ctx, l.lease); ierr != nil {
		if timeout {
			// The timeout cost the lease (the storage closed the
			// connection to end a statement): remember the attempt, so
			// that it counts when the partition is acquired again.
			ev := evs[res.failed]
			l.lostTo = &timedOut{pos: ev.Position, attempt: ev.Attempt, err: err}
		}
		return delivered, ierr
	}
	if timeout {
		res.err = err // the handler failed because the batch ran out of time
	}
	return res, nil
}

// deliverEach is deliver without a transaction: events are handled one by
// one, and the checkpoint saved after them, or after the last one handled
// when one fails.
func (l *leading) deliverEach(ctx context.Context, evs []Event, base projectionstore.Commit) (delivery, error) {
	w := l.w
	base.From = l.cp.Position
	for i := range evs {
		if err := w.interrupted(ctx, l.lease); err != nil {
			l.saveOnShutdown(ctx, evs[:i])
			return delivered, err
		}
		herr := w.handle(ctx, evs[i])
		if herr == nil {
			continue
		}
		if err := w.interrupted(ctx, l.lease); err != nil {
			l.saveOnShutdown(ctx, evs[:i])
			return delivered, err
		}
		if err := l.saveHandled(ctx, evs[:i]); err != nil {
			return delivered, err
		}
		return delivery{failed: i, err: herr}, nil
	}
	if l.deferCommit(base) {
		return delivered, nil
	}
	next, err := w.commit(ctx, l.lease, base)
	if err != nil {
		l.saveOnShutdown(ctx, evs)
		return delivered, err
	}
	l.committed(next)
	return delivered, nil
}

// saveHandled checkpoints the handled events, so that they are not
// delivered again.
func (l *leading) saveHandled(ctx context.Context, handled []Event) error {
	if len(handled) == 0 {
		return l.storeAhead(ctx) // the batches handled before this one
	}
	next, err := l.w.commit(ctx, l.lease, projectionstore.Commit{From: l.cp.Position, To: handled[len(handled)-1].Position})
	if err != nil {
		return err
	}
	l.committed(next)
	return nil
}

// saveOnShutdown checkpoints at-least-once progress when the runner shuts
// down, with a short grace period; after a lost lease it cannot.
func (l *leading) saveOnShutdown(ctx context.Context, handled []Event) {
	if ctx.Err() == nil || len(handled) == 0 && l.ahead.IsZero() {
		return
	}
	gctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), shutdownGrace)
	defer cancel()
	if err := l.saveHandled(gctx, handled); err != nil {
		l.w.log.Debug("cannot checkpoint handled events on shutdown; they will be delivered again", "error", err)
	}
}
