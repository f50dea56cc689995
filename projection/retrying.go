package projection

import (
	"context"

	"github.com/chronicle-go/chronicle/eventstore"
	"github.com/chronicle-go/chronicle/projection/projectionstore"
)

// retryAlone handles ev alone, again and again with backoff, until it
// succeeds (it returns nil, nil), fails permanently or reaches the retry
// policy's MaxAttempts (it returns the last failure), or something else
// fails (the error). herr is the failure of the attempt just made, or nil
// to make the first attempt at once. commitFor returns the commit of the
// attempt numbered attempt. Both the failed events of a batch and the
// dead letters an operator retries go through it.
func (l *leading) retryAlone(ctx context.Context, ev *Event, herr error, commitFor func(attempt int) projectionstore.Commit) (error, error) {
	policy := l.w.p.Retry
	for {
		if herr != nil {
			if isPermanent(herr) || ev.Attempt >= policy.MaxAttempts {
				return herr, nil
			}
			d := policy.Backoff(ev.Attempt)
			l.w.log.Warn("projection handler failed; retrying", "event_id", ev.EventID.String(), "type", ev.Type,
				"stream", ev.StreamID, "version", ev.StreamVersion, "attempt", ev.Attempt, "retry_in", d, "error", herr)
			if !sleep(ctx, d) {
				return herr, ctx.Err()
			}
		}
		ev.Attempt++
		res, err := l.deliver(ctx, []Event{*ev}, commitFor(ev.Attempt))
		if err != nil {
			return herr, err
		}
		if res.failed < 0 {
			return nil, nil
		}
		herr = res.err
	}
}

// retryFailed retries an event of a batch that failed, then parks it
// ([ParkOnFailure]) or stops the partition with a [*StoppedError].
func (l *leading) retryFailed(ctx context.Context, ev Event, herr error) error {
	herr, err := l.retryAlone(ctx, &ev, herr, func(int) projectionstore.Commit { return projectionstore.Commit{To: ev.Position} })
	if err != nil || herr == nil {
		return err
	}
	w := l.w
	if w.p.OnFailure != ParkOnFailure {
		return &StoppedError{Key: w.key, EventID: ev.EventID, Position: ev.Position, Attempts: ev.Attempt, Err: herr}
	}
	w.log.Error("projection handler failed; parking the event", "event_id", ev.EventID.String(), "type", ev.Type,
		"stream", ev.StreamID, "version", ev.StreamVersion, "attempts", ev.Attempt, "error", herr)
	next, err := w.commit(ctx, l.lease, projectionstore.Commit{From: l.cp.Position, To: ev.Position, Park: &projectionstore.DeadLetter{
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
		return err
	}
	l.committed(next)
	return nil
}

// settleRetries handles the partition's dead letters that an operator
// asked to retry. Their events are older than the checkpoint, which does
// not move.
func (l *leading) settleRetries(ctx context.Context) error {
	dls, err := l.lease.RetryRequests(ctx)
	if err != nil {
		return err
	}
	for _, dl := range dls {
		if more, err := l.settle(ctx, dl); err != nil || !more {
			return err
		}
	}
	return nil
}

// settle handles a retried dead letter's event again, and records the
// outcome: resolved, or parked again. It reports false when the event
// cannot be read now, to try again at the next poll.
func (l *leading) settle(ctx context.Context, dl projectionstore.DeadLetter) (bool, error) {
	w := l.w
	settlement := func(status projectionstore.DeadLetterStatus, msg string, attempts int) *projectionstore.Settlement {
		return &projectionstore.Settlement{ID: dl.ID, Status: status, Error: msg, Attempts: dl.Attempts + attempts}
	}
	recs, err := w.r.store.ReadStream(ctx, dl.StreamID, eventstore.ReadStreamOptions{From: dl.StreamVersion, Limit: 1})
	if err != nil {
		if ctx.Err() != nil {
			return false, ctx.Err()
		}
		w.log.Warn("cannot read a dead letter's event; will try again", "dead_letter", dl.ID, "error", err)
		return false, nil
	}
	if len(recs) == 0 || recs[0].EventID != dl.EventID {
		return true, l.settleAs(ctx, settlement(projectionstore.DeadLetterParked, "event not found in the store", 0))
	}
	ev := Event{Record: recs[0], Projection: w.p.Name, Partition: dl.Partition}
	var herr error
	if t := l.resume; t != nil && t.pos == ev.Position {
		// The last try timed out and cost the lease: it counts.
		l.resume = nil
		ev.Attempt, herr = t.attempt, t.err
	}
	herr, err = l.retryAlone(ctx, &ev, herr, func(attempt int) projectionstore.Commit {
		return projectionstore.Commit{To: l.cp.Position, Settle: settlement(projectionstore.DeadLetterResolved, "", attempt)}
	})
	if err != nil {
		return false, err
	}
	if herr == nil {
		w.log.Info("retried dead letter resolved", "dead_letter", dl.ID, "event_id", dl.EventID.String())
		return true, nil
	}
	w.log.Warn("retried dead letter failed again; parked", "dead_letter", dl.ID, "event_id", dl.EventID.String(), "error", herr)
	return true, l.settleAs(ctx, settlement(projectionstore.DeadLetterParked, herr.Error(), ev.Attempt))
}

// settleAs records a dead letter's settlement, the checkpoint unchanged.
func (l *leading) settleAs(ctx context.Context, s *projectionstore.Settlement) error {
	next, err := l.w.commit(ctx, l.lease, projectionstore.Commit{From: l.cp.Position, To: l.cp.Position, Settle: s})
	if err != nil {
		return err
	}
	l.cp = next
	return nil
}
