package postgres

import (
	"context"
	"errors"
	"slices"
	"sync"

	"github.com/chronicle-go/chronicle/eventstore"
	"github.com/chronicle-go/chronicle/postgres/internal/eventsql"
)

// The defaults of the group commit fields of [Config].
const (
	defaultMaxGroupEvents = 1000
	defaultMaxGroupBytes  = 4 << 20
)

// groupCommit coalesces concurrent [Store.Append] calls on the pool into
// one statement (append_group.sql) and one commit.
//
// It is a leader/follower queue. An append enqueues itself; when no flush
// is in progress it becomes the leader and flushes at once (a lone writer
// never waits for a timer). While a flush is in flight, other appends
// queue up; when it ends, the leader hands the lead to the oldest queued
// append, which flushes everything that queued meanwhile, up to the size
// bounds, as one group. At most one flush runs at a time.
//
// A group takes at most one append per stream: the statement cannot move
// a head row twice, so a later append to the same stream waits for the
// next group, keeping the callers' order.
type groupCommit struct {
	s         *Store
	maxEvents int
	maxBytes  int

	mu       sync.Mutex
	queue    []*groupMember // waiting, oldest first
	flushing bool           // a leader exists (flushing, or handed the lead)

	// beforeFlush, when set (tests only), runs in the leader before it
	// takes a group from the queue.
	beforeFlush func()
}

// groupMember is one append waiting in, or flushed by, a group.
type groupMember struct {
	in     *eventsql.Input
	events int
	bytes  int
	// done receives the member's outcome, or the lead (at most one
	// message is ever pending: a member handed the lead is still queued,
	// and a queued member gets no outcome).
	done chan groupOutcome
	// lead is set (under groupCommit.mu) when the member was handed the
	// lead.
	lead bool
}

// groupOutcome is what a flush tells a member.
type groupOutcome struct {
	// lead tells a queued member that it is now the leader.
	lead bool
	// alone tells the member to run on its own (the normal append path):
	// the group stored none of its events, or (maybeStored) the group's
	// connection broke mid-statement, so it may have stored them all.
	alone, maybeStored bool
	res                eventstore.AppendResult
	err                error
}

func newGroupCommit(s *Store) *groupCommit {
	return &groupCommit{s: s, maxEvents: s.cfg.MaxGroupEvents, maxBytes: s.cfg.MaxGroupBytes}
}

// append runs in, a validated one-stream append, through the group: it
// returns when the append is stored, failed, or ctx ended.
func (g *groupCommit) append(ctx context.Context, in *eventsql.Input) (eventstore.AppendResult, error) {
	m := &groupMember{in: in, events: len(in.IDs), done: make(chan groupOutcome, 1)}
	for i := range in.Data {
		m.bytes += len(in.Data[i])
		if md := in.Metadata[i]; md != nil {
			m.bytes += len(*md)
		}
	}
	g.mu.Lock()
	g.queue = append(g.queue, m)
	lead := !g.flushing
	if lead {
		g.flushing = true
		m.lead = true
	}
	g.mu.Unlock()

	for {
		if lead {
			return g.finish(ctx, m, g.flush(ctx))
		}
		select {
		case out := <-m.done:
			if out.lead {
				lead = true
				continue
			}
			return g.finish(ctx, m, out)
		case <-ctx.Done():
			if out, ok := g.leave(m, ctx.Err()); ok {
				return g.finish(ctx, m, out)
			}
			return eventstore.AppendResult{}, ctx.Err()
		}
	}
}

// finish turns a member's outcome into Append's result, running the
// member on its own when the group did not store it.
func (g *groupCommit) finish(ctx context.Context, m *groupMember, out groupOutcome) (eventstore.AppendResult, error) {
	if out.alone {
		in := m.in
		if out.maybeStored {
			// Look the event ids up on a conflict, as for a caller's retry
			// with the same ids: found where the append puts them, they
			// are this append, committed by the group.
			retry := *in
			retry.CallerIDs = true
			in = &retry
		}
		res, err := g.s.appendPrepared(ctx, nil, in)
		if err != nil {
			return eventstore.AppendResult{}, err
		}
		return res[0], nil
	}
	return out.res, out.err
}

// leave is called by a member whose ctx ended with err. A member still
// queued leaves the queue (passing the lead on if it had it) and gets
// ok=false: nothing of it was sent. A member already taken into a flush
// cannot be withdrawn: ok=true, with its outcome when it is there already,
// or an [*eventstore.OutcomeUnknownError] (the flush may commit it).
func (g *groupCommit) leave(m *groupMember, err error) (groupOutcome, bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if i := slices.Index(g.queue, m); i >= 0 {
		g.queue = slices.Delete(g.queue, i, i+1)
		if m.lead {
			g.handOff()
		}
		return groupOutcome{}, false
	}
	select {
	case out := <-m.done:
		return out, true
	default:
		return groupOutcome{err: &eventstore.OutcomeUnknownError{Op: m.in.Op() + " (in a group commit)", Err: err}}, true
	}
}

// handOff passes the lead to the oldest queued member, or ends the
// leadership when the queue is empty. g.mu must be held.
func (g *groupCommit) handOff() {
	if len(g.queue) == 0 {
		g.flushing = false
		return
	}
	next := g.queue[0]
	next.lead = true
	next.done <- groupOutcome{lead: true}
}

// take removes the next group from the queue and returns it: the oldest
// member (the leader, always taken whatever its size), then, in queue
// order, every member whose stream is not in the group yet, while the
// group stays within the size bounds. g.mu must be held.
func (g *groupCommit) take() []*groupMember {
	batch := []*groupMember{g.queue[0]}
	if len(g.queue) == 1 {
		g.queue = g.queue[:0]
		return batch
	}
	events, bytes := batch[0].events, batch[0].bytes
	streams := map[string]struct{}{batch[0].in.StreamIDs[0]: {}}
	keep := g.queue[:0]
	for _, m := range g.queue[1:] {
		_, dup := streams[m.in.StreamIDs[0]]
		if dup || events+m.events > g.maxEvents || bytes+m.bytes > g.maxBytes {
			keep = append(keep, m)
			continue
		}
		streams[m.in.StreamIDs[0]] = struct{}{}
		events += m.events
		bytes += m.bytes
		batch = append(batch, m)
	}
	clear(g.queue[len(keep):])
	g.queue = keep
	return batch
}

// flush runs the leader's group: it takes the group from the queue, sends
// it, tells each member its outcome, hands the lead on and returns the
// leader's own outcome. The leader is always the oldest queued member, so
// it is always in its group.
func (g *groupCommit) flush(ctx context.Context) groupOutcome {
	if g.beforeFlush != nil {
		g.beforeFlush()
	}
	g.mu.Lock()
	batch := g.take()
	g.mu.Unlock()

	outs := g.run(ctx, batch)
	for i, m := range batch[1:] {
		m.done <- outs[i+1]
	}
	g.mu.Lock()
	g.handOff()
	g.mu.Unlock()
	return outs[0]
}

// run sends batch as one append_group.sql statement (also a batch of one:
// unlike the one-stream statements it never waits for a head row that
// another transaction holds, so the lead is never stuck behind a slow
// writer) and returns each member's outcome.
//
// A member the statement did not store is told to run alone; so is every
// member when the statement failed as a whole (a duplicate event id, a
// deadlock, data the server refuses, a connection that failed before
// anything was sent): each then gets its own outcome on the normal path,
// and no error leaks from one member to another.
//
// When the connection broke mid-statement the group may or may not have
// committed. Each member then also runs alone, as a retry with the same
// event ids: a member the group stored finds its events and returns their
// original result, one it did not store is appended now, exactly once
// either way (see [Store.Append]). Only when that run too loses its
// connection does the member get an [*eventstore.OutcomeUnknownError].
// One broken statement thus costs its members no more than a broken
// statement of their own, and tells each a definite outcome whenever the
// database can be reached.
func (g *groupCommit) run(ctx context.Context, batch []*groupMember) []groupOutcome {
	outs := make([]groupOutcome, len(batch))
	alone := func() []groupOutcome {
		for i := range outs {
			outs[i] = groupOutcome{alone: true}
		}
		return outs
	}
	ins := make([]*eventsql.Input, len(batch))
	for i, m := range batch {
		ins[i] = m.in
	}
	grp, err := eventsql.NewGroup(ins)
	if err != nil { // cannot happen: take keeps streams distinct
		return alone()
	}
	if len(batch) > 1 {
		// The statement runs for every member: one caller giving up must
		// not cancel it for the others.
		ctx = context.WithoutCancel(ctx)
	}
	res, stored, err := g.send(ctx, grp)
	var acquireErr *acquireError
	switch {
	case err == nil:
	case errors.As(err, &acquireErr):
		return alone() // nothing was sent
	case outcomeUnknown(err):
		for i := range outs {
			outs[i] = groupOutcome{alone: true, maybeStored: true}
		}
		return outs
	default:
		return alone()
	}
	var last int64
	for i := range batch {
		if !stored[i] {
			outs[i] = groupOutcome{alone: true}
			continue
		}
		outs[i] = groupOutcome{res: res[i]}
		last = max(last, res[i].Position.Global)
	}
	if last > 0 {
		g.s.watchAfterCommit()
		g.s.notePosition(last)
	}
	return outs
}

// send runs grp's statement on a connection of the pool.
func (g *groupCommit) send(ctx context.Context, grp *eventsql.Group) ([]eventstore.AppendResult, []bool, error) {
	conn, err := g.s.pool.Acquire(ctx)
	if err != nil {
		return nil, nil, &acquireError{err: err}
	}
	defer conn.Release()
	sql, args := grp.Statement()
	rows, err := conn.Query(ctx, sql, args...)
	if err != nil {
		return nil, nil, err
	}
	return grp.ScanResult(rows)
}
