package postgres

import (
	"context"
	"errors"
	"runtime"
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

// maxFlushes is the number of flushes a store runs at once. One group
// flush runs at a time, so that appends arriving meanwhile form the next
// group, with two exceptions:
//   - A second flush starts while the one running is a lone append: a lone
//     append is sent with the normal path's statement, which waits as long
//     as another transaction holds its stream's head row, and the store's
//     other appends must not stall behind it. A group flush waits at most
//     50ms for a lock (see append_group.sql).
//   - A second group flush starts when the one running has taken its
//     group and at least secondFlushEvents events are waiting (see
//     secondFlushEvents); the oldest waiting append leads it.
const maxFlushes = 2

// secondFlushEvents is the number of waiting events from which a second
// group flush starts while one is in flight. A flush's cost is a fixed
// part (the round trip and the commit's WAL flush, about 0.6-1 ms on two
// cores) and a part per event (executing the statement, 10-15 µs per
// event on the server): one flush at a time leaves the server's other
// cores idle while a large group executes. Below this many events a second
// flush would only split the groups in two, each paying the fixed part;
// above, the execution it runs in parallel outweighs that. Measured with
// chronicle bench (docs/postgres.md, "Group commit"): appends of 10
// events went from 0.78 to 0.88 of raw pgx at 8 writers and from 1.08 to
// 1.38 at 32; appends of 1 event at 8 writers, of which at most 7 events
// ever wait, are unchanged (two flushes at once regardless of size were
// 10-30% slower for them).
const secondFlushEvents = 16

// groupCommit coalesces concurrent [Store.Append] calls on the pool into
// one statement (append_group.sql) and one commit.
//
// It is a leader/follower queue. An append enqueues itself; when no flush
// is running it becomes the leader and flushes at once (a lone writer
// never waits for a timer). While the flush is in flight, other appends
// queue up; when it ends, its leader hands the lead to the oldest queued
// append, which flushes everything that queued meanwhile, up to the size
// bounds, as one group (or a second flush starts before, see maxFlushes).
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
	leaders  int            // flushing, or handed the lead; at most slots
	flushing int            // leaders that have taken their group
	lone     int            // leaders flushing a lone append
	// slots is maxFlushes (tests may change it before the first append).
	slots int
	// waiting is the number of events of the queued members that are not
	// leaders; second is secondFlushEvents (tests may change it before the
	// first append).
	waiting, second int
	// last is the number of members of the flush that ended last, and
	// round its answered members (see gather).
	last  int
	round *flushRound
	// busy counts, per stream, the appends taken into flushes that have
	// not ended: another group neither takes nor is led by an append to
	// such a stream (it would wait for the head row's lock, and could
	// commit before an older append queued there).
	busy map[string]int
	// gathering is the number of leaders waiting in gather on cond (for
	// the queue to grow, or the last flush's members to resume).
	gathering int
	cond      *sync.Cond

	// beforeFlush and inFlight, when set (tests only), run in a leader
	// before it takes its group from the queue, and after.
	beforeFlush, inFlight func()
	// yield is gather's yield: runtime.Gosched (tests may replace it).
	yield func()
}

// groupMember is one append waiting in, or flushed by, a group.
type groupMember struct {
	in     *eventsql.Input
	events int
	bytes  int
	// done receives the member's outcome, or the lead (at most one
	// message is ever pending: only a queued member that is not a leader
	// is handed the lead, and only a member taken out of the queue by
	// another leader gets an outcome).
	done chan groupOutcome
	// lead is set (under groupCommit.mu) when the member is a leader.
	lead bool
	// round is the flush that answered the member, until the member has
	// resumed (taken its outcome, or given up waiting for it); gone marks
	// a member that gave up before its flush counted it. Both under
	// groupCommit.mu.
	round *flushRound
	gone  bool
}

// flushRound counts the members a flush has answered (n) and those of them
// that have resumed, for the next leader's gather.
type flushRound struct{ n, resumed int }

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
	g := &groupCommit{s: s, maxEvents: s.cfg.MaxGroupEvents, maxBytes: s.cfg.MaxGroupBytes, slots: maxFlushes, second: secondFlushEvents, yield: runtime.Gosched}
	g.cond = sync.NewCond(&g.mu)
	g.busy = map[string]int{}
	return g
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
	g.waiting += m.events
	g.promote(m)
	if g.gathering > 0 {
		g.cond.Broadcast()
	}
	lead := m.lead
	g.mu.Unlock()

	for {
		if lead {
			g.gather()
			return g.finish(ctx, m, g.flush(ctx, m))
		}
		select {
		case out := <-m.done:
			if out.lead {
				lead = true
				continue
			}
			g.mu.Lock()
			g.resumed(m)
			g.mu.Unlock()
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
	if out.alone && out.maybeStored {
		return g.resolve(ctx, m)
	}
	if out.alone {
		in := m.in
		res, err := g.s.appendPrepared(ctx, nil, in)
		if err != nil {
			return eventstore.AppendResult{}, err
		}
		return res[0], nil
	}
	return out.res, out.err
}

// resolve runs alone a member whose group lost its connection mid-statement
// (the group committed all its members or none), as a retry with the same
// event ids: found where the append puts them, they are its original
// result; not found, it is appended now. Exactly once either way. When
// that run cannot tell either (its own connection fails, ctx ends), the
// member gets an [*eventstore.OutcomeUnknownError].
func (g *groupCommit) resolve(ctx context.Context, m *groupMember) (eventstore.AppendResult, error) {
	retry := *m.in
	retry.CallerIDs = true // look the ids up on a conflict, generated ones too
	res, err := g.s.appendPrepared(ctx, nil, &retry)
	switch {
	case err == nil:
		return res[0], nil
	case errors.Is(err, eventstore.ErrOutcomeUnknown),
		// Definite: the group did not store the events (their ids were
		// looked up), and this run failed.
		errors.Is(err, eventstore.ErrConcurrencyConflict),
		errors.Is(err, eventstore.ErrDuplicateEvent),
		errors.Is(err, eventstore.ErrInvalidInput):
		return eventstore.AppendResult{}, err
	default:
		return eventstore.AppendResult{}, &eventstore.OutcomeUnknownError{Op: m.in.Op() + " (in a group commit)", Err: err}
	}
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
		} else {
			g.waiting -= m.events
		}
		return groupOutcome{}, false
	}
	g.resumed(m)
	m.gone = true
	select {
	case out := <-m.done:
		return out, true
	default:
		return groupOutcome{err: &eventstore.OutcomeUnknownError{Op: m.in.Op() + " (in a group commit)", Err: err}}, true
	}
}

// resumed records that m, a member taken into a flush, has taken its
// outcome or given up waiting for it, and wakes the gathering leaders
// when it is the last of its flush's round to do so. g.mu must be held.
func (g *groupCommit) resumed(m *groupMember) {
	r := m.round
	if r == nil {
		return
	}
	m.round = nil
	r.resumed++
	if r.resumed == r.n && g.gathering > 0 {
		g.cond.Broadcast()
	}
}

// mayLead reports whether one more leader may start: when there is none;
// up to slots, when every one is flushing a lone append (which may be
// waiting for a lock), or when every one has taken its group and at least
// second events wait for a leader (a leader still gathering takes them
// into its own group). g.mu must be held.
func (g *groupCommit) mayLead() bool {
	return g.leaders == 0 || (g.leaders < g.slots &&
		(g.lone == g.leaders || (g.flushing == g.leaders && g.waiting >= g.second)))
}

// handOff ends the lead of a leader that is done (or left the queue), and
// promotes the next. g.mu must be held.
func (g *groupCommit) handOff() {
	g.leaders--
	g.promote(nil)
}

// promote makes the oldest queued member that is not a leader, and whose
// stream no flush in flight holds, a leader, if another leader may start,
// and tells it so, unless it is self (an append promoted as it queues,
// which reads its lead field). Otherwise the queue waits for a leader
// still flushing, which hands off when done. g.mu must be held.
func (g *groupCommit) promote(self *groupMember) {
	if !g.mayLead() {
		return
	}
	for _, m := range g.queue {
		if !m.lead && g.busy[m.in.StreamIDs[0]] == 0 {
			g.leaders++
			m.lead = true
			g.waiting -= m.events
			if m != self {
				m.done <- groupOutcome{lead: true}
			}
			return
		}
	}
}

// take removes leader's group from the queue and returns it: the leader
// first, whatever its size, then, in queue order, every member that is not
// a leader itself and whose stream is neither in the group yet nor in a
// flush in flight (busy), while the group stays within the size bounds.
// g.mu must be held.
func (g *groupCommit) take(leader *groupMember) []*groupMember {
	batch := []*groupMember{leader}
	events, bytes := leader.events, leader.bytes
	var streams map[string]struct{}
	keep := g.queue[:0]
	for _, m := range g.queue {
		if m == leader {
			continue
		}
		id := m.in.StreamIDs[0]
		if m.lead || id == leader.in.StreamIDs[0] || g.busy[id] > 0 ||
			events+m.events > g.maxEvents || bytes+m.bytes > g.maxBytes {
			keep = append(keep, m)
			continue
		}
		if streams == nil {
			streams = map[string]struct{}{}
		}
		if _, dup := streams[id]; dup {
			keep = append(keep, m)
			continue
		}
		streams[id] = struct{}{}
		g.waiting -= m.events
		events += m.events
		bytes += m.bytes
		batch = append(batch, m)
	}
	clear(g.queue[len(keep):])
	g.queue = keep
	return batch
}

// gather runs in a leader before it takes its group, when the flush that
// ended last had several members, so that those members, typically
// appending again at once, can queue and join this group. Otherwise
// steady concurrent writers split into groups that flush in turn (the
// first writer back flushing alone, say, and the others after it), each
// writer waiting for the other group's flush as well as its own.
//
// First it waits until every member that flush answered has resumed
// (taken its outcome), until the queue holds as many appends as that
// flush had, or until secondFlushEvents events wait (enough for a flush
// of their own: the members still to come join a second one). The
// members were woken when answered; the leader is often run before them
// (it was woken last, and an idle processor takes it first), and yielding
// does not help then: a yielding goroutine goes to the global run queue,
// where the idle processor takes it straight back instead of stealing the
// members from the other processor's queue. So the leader blocks, and
// each member wakes it as it resumes. This waits for no timer and for
// nothing that may not happen: answered members are runnable and resume,
// whatever their callers do next.
//
// Then it yields the processor while the queue grows, at most once per
// member of that flush, for the members that resumed last and are about
// to queue. A yield is no timer: with nothing else ready to run it
// returns at once. A lone writer (its last flush had one member) never
// gathers.
func (g *groupCommit) gather() {
	g.mu.Lock()
	last, r := g.last, g.round
	if last <= 1 {
		g.mu.Unlock()
		return
	}
	if r != nil {
		g.gathering++
		for r.resumed < r.n && len(g.queue) < last && g.waiting < g.second {
			g.cond.Wait()
		}
		g.gathering--
	}
	n := len(g.queue)
	g.mu.Unlock()
	for range last - 1 {
		g.yield()
		g.mu.Lock()
		grew := len(g.queue) > n
		n = len(g.queue)
		g.mu.Unlock()
		if !grew {
			return
		}
	}
}

// flush runs leader's group: it takes the group from the queue, sends it,
// tells each member its outcome, hands the lead on and returns the
// leader's own outcome.
func (g *groupCommit) flush(ctx context.Context, leader *groupMember) groupOutcome {
	if g.beforeFlush != nil {
		g.beforeFlush()
	}
	g.mu.Lock()
	batch := g.take(leader)
	for _, m := range batch {
		g.busy[m.in.StreamIDs[0]]++
	}
	g.flushing++
	if len(batch) == 1 {
		g.lone++
	}
	g.promote(nil) // appends the group left behind may be enough for another
	g.mu.Unlock()
	if g.inFlight != nil {
		g.inFlight()
	}

	var outs []groupOutcome
	if len(batch) == 1 {
		outs = []groupOutcome{g.runLone(ctx, leader)}
	} else {
		outs = g.run(ctx, batch)
	}
	// The members' round, counted before they are answered: a member
	// that gave up waiting (leave) before is not in it.
	g.mu.Lock()
	r := &flushRound{}
	for _, m := range batch[1:] {
		if !m.gone {
			m.round = r
			r.n++
		}
	}
	g.last, g.round = len(batch), r
	g.mu.Unlock()
	for i, m := range batch[1:] {
		m.done <- outs[i+1]
	}
	g.mu.Lock()
	for _, m := range batch {
		id := m.in.StreamIDs[0]
		if g.busy[id]--; g.busy[id] == 0 {
			delete(g.busy, id)
		}
	}
	g.flushing--
	if len(batch) == 1 {
		g.lone--
	}
	g.handOff()
	g.mu.Unlock()
	if obs := g.s.cfg.GroupObserver; obs != nil {
		events := 0
		for _, m := range batch {
			events += m.events
		}
		obs(len(batch), events)
	}
	return outs[0]
}

// runLone sends a group of one with the one-stream statement of the normal
// path (cheaper than append_group.sql), once: a conflict or an error is
// left to the member, which runs alone after handing the lead on.
func (g *groupCommit) runLone(ctx context.Context, m *groupMember) groupOutcome {
	res, conflict, err := g.s.appendOnce(ctx, nil, m.in)
	stored := err == nil && conflict == nil
	switch {
	case err == nil && stored:
		g.s.watch.AfterCommit()
		return groupOutcome{res: res[0]}
	case err != nil && outcomeUnknown(err) && !errors.As(err, new(*acquireError)):
		return groupOutcome{err: &eventstore.OutcomeUnknownError{Op: m.in.Op(), Err: err}}
	default:
		return groupOutcome{alone: true}
	}
}

// run sends batch as one append_group.sql statement and returns each
// member's outcome.
//
// A member the statement did not store is told to run alone; so is every
// member when the statement failed as a whole (a duplicate event id, a
// deadlock, data the server refuses, a connection that failed before
// anything was sent): each then gets its own outcome on the normal path,
// and no error leaks from one member to another. When the connection broke
// mid-statement (the group may or may not have committed), each member is
// resolved on its own (see resolve): a group's lost connection must not
// cost its members more than a lost connection of their own would.
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
	// The statement runs for every member: one caller giving up must not
	// cancel it for the others.
	ctx = context.WithoutCancel(ctx)
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
		g.s.watch.AfterCommit()
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
