package postgres

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/chronicle-go/chronicle/eventstore"
	"github.com/chronicle-go/chronicle/postgres/internal/eventsql"
	"github.com/chronicle-go/chronicle/postgres/postgrestest"
)

// groupCall is one Append of a forced group.
type groupCall struct {
	stream   string
	expected eventstore.ExpectedVersion
	events   []eventstore.Event
	ctx      context.Context // nil: the test's
	// unvalidated sends the append into the group without the client's
	// validation (eventstore.ValidateAppend), as data the client does not
	// know the server refuses would be.
	unvalidated bool
}

// groupReply is what a groupCall's Append returned.
type groupReply struct {
	res eventstore.AppendResult
	err error
}

// groupHarness forces groups deterministically: the first append of a
// round becomes the leader and waits, before taking its group, until the
// round's other appends are queued behind it in the order given.
type groupHarness struct {
	t    *testing.T
	s    *Store
	hold atomic.Int64 // queue length the next leader waits for; 0 = none
	// abort ends every wait of the harness: a call returned before it
	// queued, so the round can never be complete.
	abort     chan struct{}
	abortOnce sync.Once
}

// harnessHang bounds the harness's waits for appends to queue: a hang
// limit, not a speed assumption (an append queues within microseconds).
const harnessHang = 2 * time.Minute

func newGroupHarness(t *testing.T, s *Store) *groupHarness {
	t.Helper()
	if s.group == nil {
		t.Fatal("group commit is off")
	}
	h := &groupHarness{t: t, s: s, abort: make(chan struct{})}
	// One flush at a time, so that a held leader keeps every other append
	// queued.
	s.group.slots = 1
	s.group.beforeFlush = func() {
		n := h.hold.Swap(0)
		if n == 0 {
			return
		}
		h.waitQueued(int(n))
	}
	return h
}

func (h *groupHarness) queued() int {
	h.s.group.mu.Lock()
	defer h.s.group.mu.Unlock()
	return len(h.s.group.queue)
}

// waitQueued waits until n appends are queued, and reports whether they
// are: false when the round was aborted. Past the hang limit it panics (it
// also runs in a leader's goroutine, where t.Fatal cannot be called).
func (h *groupHarness) waitQueued(n int) bool {
	deadline := time.Now().Add(harnessHang)
	for h.queued() < n {
		if time.Now().After(deadline) {
			panic(fmt.Sprintf("group harness: %d appends queued after %s, want %d", h.queued(), harnessHang, n))
		}
		select {
		case <-h.abort:
			return false
		case <-time.After(time.Millisecond):
		}
	}
	return true
}

// waitCallQueued waits until n appends are queued, failing the test when
// reply (call n-1's) arrives first: that call returned without queueing.
func (h *groupHarness) waitCallQueued(n int, reply chan groupReply) {
	h.t.Helper()
	queued := make(chan bool, 1)
	go func() { queued <- h.waitQueued(n) }()
	select {
	case <-queued:
	case r := <-reply:
		h.abortOnce.Do(func() { close(h.abort) })
		<-queued
		h.t.Fatalf("group harness: call %d returned before it queued: %+v, %v", n-1, r.res, r.err)
	}
}

// start runs calls as one round: each Append starts once the one before it
// is queued, and the leader (the first) takes its group when all are
// queued. It returns one channel per call, receiving its reply.
func (h *groupHarness) start(calls ...groupCall) []chan groupReply {
	h.t.Helper()
	h.hold.Store(int64(len(calls)))
	out := make([]chan groupReply, len(calls))
	for i, c := range calls {
		out[i] = make(chan groupReply, 1)
		ctx := c.ctx
		if ctx == nil {
			ctx = h.t.Context()
		}
		var in *eventsql.Input
		if c.unvalidated {
			var err error
			in, err = eventsql.Flatten([]eventstore.StreamAppend{{StreamID: c.stream, Expected: c.expected, Events: c.events}})
			if err != nil {
				h.t.Fatal(err)
			}
		}
		go func() {
			var res eventstore.AppendResult
			var err error
			if in != nil {
				res, err = h.s.group.append(ctx, in)
			} else {
				res, err = h.s.Append(ctx, c.stream, c.expected, c.events...)
			}
			out[i] <- groupReply{res, err}
		}()
		if i < len(calls)-1 {
			// The leader holds the queue until the last call is queued;
			// after that the queue empties at once.
			h.waitCallQueued(i+1, out[i])
		}
	}
	return out
}

// run is start, waiting for every reply.
func (h *groupHarness) run(calls ...groupCall) []groupReply {
	h.t.Helper()
	chans := h.start(calls...)
	replies := make([]groupReply, len(chans))
	for i, ch := range chans {
		replies[i] = <-ch
	}
	return replies
}

func TestGroupCommitMixedOutcomes(t *testing.T) {
	t.Parallel()
	s, _ := setupStore(t, &Config{GroupCommit: true})
	h := newGroupHarness(t, s)
	ctx := t.Context()
	if _, err := s.Append(ctx, "a", eventstore.NoStream, testEvents("E", 1)...); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Append(ctx, "b", eventstore.NoStream, testEvents("E", 2)...); err != nil {
		t.Fatal(err)
	}
	a, b, c, d, e := testEvents("A", 1), testEvents("B", 1), testEvents("C", 2), testEvents("D", 1), testEvents("E", 3)
	r := h.run(
		groupCall{stream: "a", expected: eventstore.Exact(1), events: a},
		groupCall{stream: "b", expected: eventstore.Exact(1), events: b}, // b is at 2
		groupCall{stream: "c", expected: eventstore.NoStream, events: c},
		groupCall{stream: "d", expected: eventstore.StreamExists, events: d}, // d does not exist
		groupCall{stream: "e", expected: eventstore.Any, events: e},
	)
	for i, want := range []int64{2, 0, 2, 0, 3} {
		if want == 0 {
			continue
		}
		if r[i].err != nil || r[i].res.Version != want {
			t.Fatalf("append %d = %+v, %v; want version %d", i, r[i].res, r[i].err, want)
		}
	}
	var ce *eventstore.ConcurrencyError
	if !errors.As(r[1].err, &ce) || ce.StreamID != "b" || ce.Actual != 2 {
		t.Fatalf("append to b: %v, want a concurrency conflict at version 2", r[1].err)
	}
	if !errors.As(r[3].err, &ce) || ce.StreamID != "d" || ce.Actual != 0 {
		t.Fatalf("append to d: %v, want a concurrency conflict at version 0", r[3].err)
	}
	// The members that succeeded were committed together, in one
	// transaction, in the order they queued.
	tx := r[0].res.Position.Transaction
	for _, i := range []int{2, 4} {
		if r[i].res.Position.Transaction != tx {
			t.Fatalf("append %d committed in transaction %d, append 0 in %d: not one group", i, r[i].res.Position.Transaction, tx)
		}
		if r[i].res.Position.Global <= r[i-2].res.Position.Global {
			t.Fatalf("append %d at %d, not after append %d at %d", i, r[i].res.Position.Global, i-2, r[i-2].res.Position.Global)
		}
	}
	requireStreamIDs(t, s, "c", c)
	requireStreamIDs(t, s, "e", e)
	if ids := streamEventIDs(t, s, "d"); len(ids) != 0 {
		t.Fatalf("d has %d events", len(ids))
	}
	if ids := streamEventIDs(t, s, "b"); len(ids) != 2 {
		t.Fatalf("b has %d events, want 2", len(ids))
	}
	got := streamEventIDs(t, s, "a")
	if len(got) != 2 || got[1] != a[0].ID {
		t.Fatalf("a = %v, want its second event %s", got, a[0].ID)
	}
}

// TestGroupCommitDuplicates puts event IDs that are already stored, or used
// twice, into one group: the statement fails as a whole, and each member
// gets its own outcome.
func TestGroupCommitDuplicates(t *testing.T) {
	t.Parallel()
	s, _ := setupStore(t, &Config{GroupCommit: true})
	h := newGroupHarness(t, s)
	ctx := t.Context()
	stored := testEvents("E", 2)
	orig, err := s.Append(ctx, "a", eventstore.NoStream, stored...)
	if err != nil {
		t.Fatal(err)
	}
	shared := testEvents("S", 1)
	fresh := testEvents("F", 1)
	r := h.run(
		groupCall{stream: "a", expected: eventstore.NoStream, events: stored},             // a retry: the original result
		groupCall{stream: "b", expected: eventstore.Any, events: stored[1:]},              // stored in a: duplicate
		groupCall{stream: "c", expected: eventstore.Any, events: shared},                  // c and d share an ID
		groupCall{stream: "d", expected: eventstore.Any, events: shared},                  //
		groupCall{stream: "e", expected: eventstore.NoStream, events: fresh},              // innocent
		groupCall{stream: "a", expected: eventstore.Exact(2), events: testEvents("G", 1)}, // a again: next group
	)
	if r[0].err != nil || r[0].res != orig {
		t.Fatalf("retry of a = %+v, %v; want the original %+v", r[0].res, r[0].err, orig)
	}
	var de *eventstore.DuplicateEventError
	if !errors.As(r[1].err, &de) || de.EventID != stored[1].ID {
		t.Fatalf("append to b: %v, want a duplicate of %s", r[1].err, stored[1].ID)
	}
	switch {
	case r[2].err == nil && errors.Is(r[3].err, eventstore.ErrDuplicateEvent):
		requireStreamIDs(t, s, "c", shared)
	case r[3].err == nil && errors.Is(r[2].err, eventstore.ErrDuplicateEvent):
		requireStreamIDs(t, s, "d", shared)
	default:
		t.Fatalf("appends sharing an ID: %v and %v, want one stored and one duplicate", r[2].err, r[3].err)
	}
	if r[4].err != nil || r[4].res.Version != 1 {
		t.Fatalf("innocent append = %+v, %v", r[4].res, r[4].err)
	}
	requireStreamIDs(t, s, "e", fresh)
	if r[5].err != nil || r[5].res.Version != 3 {
		t.Fatalf("second append to a = %+v, %v; want version 3", r[5].res, r[5].err)
	}
	if ids := streamEventIDs(t, s, "b"); len(ids) != 0 {
		t.Fatalf("b has %d events", len(ids))
	}
}

// TestGroupCommitSameStream queues appends to one stream into one round:
// a group takes one append per stream, so they are sequenced in queue
// order, each seeing the version the one before it left.
func TestGroupCommitSameStream(t *testing.T) {
	t.Parallel()
	s, _ := setupStore(t, &Config{GroupCommit: true})
	h := newGroupHarness(t, s)
	first, second, third := testEvents("A", 1), testEvents("B", 2), testEvents("C", 1)
	other := testEvents("O", 1)
	r := h.run(
		groupCall{stream: "s", expected: eventstore.NoStream, events: first},
		groupCall{stream: "s", expected: eventstore.Exact(1), events: second},
		groupCall{stream: "t", expected: eventstore.Any, events: other},
		groupCall{stream: "s", expected: eventstore.NoStream, events: testEvents("X", 1)}, // s exists by then
		groupCall{stream: "s", expected: eventstore.Any, events: third},
	)
	for i, want := range []int64{1, 3, 1, 0, 4} {
		if want == 0 {
			if !errors.Is(r[i].err, eventstore.ErrConcurrencyConflict) {
				t.Fatalf("append %d: %v, want a concurrency conflict", i, r[i].err)
			}
			continue
		}
		if r[i].err != nil || r[i].res.Version != want {
			t.Fatalf("append %d = %+v, %v; want version %d", i, r[i].res, r[i].err, want)
		}
	}
	requireStreamIDs(t, s, "s", append(append(first, second...), third...))
	if r[0].res.Position.Transaction != r[2].res.Position.Transaction {
		t.Fatal("the first appends to s and t were not one group")
	}
	if r[0].res.Position.Transaction == r[1].res.Position.Transaction {
		t.Fatal("two appends to s were committed in one group")
	}
}

// TestGroupCommitInvalidData puts an event whose data PostgreSQL refuses
// into a group: it fails alone, with a validation error. The client's
// validation refuses that data before it can queue, so the test sends it
// past that validation, as data the client does not know the server
// refuses would be.
func TestGroupCommitInvalidData(t *testing.T) {
	t.Parallel()
	s, _ := setupStore(t, &Config{GroupCommit: true})
	h := newGroupHarness(t, s)
	good1, good2 := testEvents("E", 2), testEvents("E", 1)
	bad := []eventstore.Event{{ID: eventstore.NewEventID(), Type: "E", Data: []byte(`{"a":1e200000}`)}}
	// Through Append, the client refuses it before it queues.
	if _, err := s.Append(t.Context(), "b", eventstore.Any, bad...); !errors.Is(err, eventstore.ErrInvalidInput) {
		t.Fatalf("Append of data jsonb cannot hold: %v, want invalid input", err)
	}
	if n := h.queued(); n != 0 {
		t.Fatalf("%d appends queued after a refused one", n)
	}
	r := h.run(
		groupCall{stream: "a", expected: eventstore.Any, events: good1},
		groupCall{stream: "b", expected: eventstore.Any, events: bad, unvalidated: true},
		groupCall{stream: "c", expected: eventstore.NoStream, events: good2},
	)
	var ve *eventstore.ValidationError
	if !errors.As(r[1].err, &ve) || ve.Field != "events data" || !strings.Contains(ve.Reason, "numeric") {
		t.Fatalf("bad append: %v, want a validation error on events data", r[1].err)
	}
	if r[0].err != nil || r[2].err != nil {
		t.Fatalf("good appends: %v, %v", r[0].err, r[2].err)
	}
	requireStreamIDs(t, s, "a", good1)
	requireStreamIDs(t, s, "c", good2)
	if ids := streamEventIDs(t, s, "b"); len(ids) != 0 {
		t.Fatalf("b has %d events", len(ids))
	}
}

// TestGroupCommitLockedStreamDoesNotStall holds a stream's head row in an
// open transaction while a lone append to it is flushed (and waits): a
// second flush serves the store's other appends meanwhile, and the waiting
// append lands after the transaction's events once it commits.
func TestGroupCommitLockedStreamDoesNotStall(t *testing.T) {
	t.Parallel()
	s, pool := setupStore(t, &Config{GroupCommit: true})
	ctx := t.Context()
	if _, err := s.Append(ctx, "x", eventstore.NoStream, testEvents("E", 1)...); err != nil {
		t.Fatal(err)
	}
	tx, err := pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(context.Background()) //nolint:errcheck // a no-op after commit
	inTx := testEvents("T", 1)
	if _, err := s.AppendTx(ctx, tx, "x", eventstore.Exact(1), inTx...); err != nil {
		t.Fatal(err)
	}
	x := testEvents("X", 1)
	stuck := make(chan groupReply, 1)
	go func() {
		res, err := s.Append(ctx, "x", eventstore.Any, x...)
		stuck <- groupReply{res, err}
	}()
	waitBlocked(t, pool) // the append to x waits for tx
	// Concurrent appends to other streams are stored meanwhile.
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Go(func() {
			for j := range 5 {
				stream := fmt.Sprintf("other-%d", i)
				if res, err := s.Append(ctx, stream, eventstore.Exact(int64(j)), testEvents("O", 1)...); err != nil || res.Version != int64(j+1) {
					t.Errorf("%s: %+v, %v (while x is locked)", stream, res, err)
					return
				}
			}
		})
	}
	wg.Wait()
	select {
	case r := <-stuck:
		t.Fatalf("append to x returned while tx holds it: %+v, %v", r.res, r.err)
	default:
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	if r := <-stuck; r.err != nil || r.res.Version != 3 {
		t.Fatalf("append to x = %+v, %v; want version 3", r.res, r.err)
	}
	ids := streamEventIDs(t, s, "x")
	if len(ids) != 3 || ids[1] != inTx[0].ID || ids[2] != x[0].ID {
		t.Fatalf("x = %v", ids)
	}
}

// TestGroupCommitLockTimeout puts an append to a stream that an open
// transaction holds into a group: the group gives up waiting after its
// lock timeout, its other members are stored, and the held append waits
// alone until the transaction ends.
func TestGroupCommitLockTimeout(t *testing.T) {
	t.Parallel()
	s, pool := setupStore(t, &Config{GroupCommit: true})
	h := newGroupHarness(t, s)
	ctx := t.Context()
	if _, err := s.Append(ctx, "x", eventstore.NoStream, testEvents("E", 1)...); err != nil {
		t.Fatal(err)
	}
	tx, err := pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(context.Background()) //nolint:errcheck // a no-op after commit
	inTx := testEvents("T", 1)
	if _, err := s.AppendTx(ctx, tx, "x", eventstore.Exact(1), inTx...); err != nil {
		t.Fatal(err)
	}
	x := testEvents("X", 1)
	chans := h.start(
		groupCall{stream: "y", expected: eventstore.Any, events: testEvents("Y", 1)},
		groupCall{stream: "x", expected: eventstore.Any, events: x},
		groupCall{stream: "z", expected: eventstore.NoStream, events: testEvents("Z", 1)},
	)
	for _, i := range []int{0, 2} {
		if r := <-chans[i]; r.err != nil || r.res.Version != 1 {
			t.Fatalf("append %d = %+v, %v (while x is locked)", i, r.res, r.err)
		}
	}
	waitBlocked(t, pool) // the append to x, alone, waits for tx
	select {
	case r := <-chans[1]:
		t.Fatalf("append to x returned while tx holds it: %+v, %v", r.res, r.err)
	default:
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	if r := <-chans[1]; r.err != nil || r.res.Version != 3 {
		t.Fatalf("append to x = %+v, %v; want version 3", r.res, r.err)
	}
	ids := streamEventIDs(t, s, "x")
	if len(ids) != 3 || ids[1] != inTx[0].ID || ids[2] != x[0].ID {
		t.Fatalf("x = %v", ids)
	}
}

// TestGroupCommitConnectionLost cuts the connection after the server
// committed a group but before the client read the answer: each member is
// then run again as a retry with its event IDs (generated ones included),
// which finds it stored and returns its result; nothing is stored twice,
// and a caller's own retry returns the same result.
func TestGroupCommitConnectionLost(t *testing.T) {
	t.Parallel()
	cfg, err := pgxpool.ParseConfig(postgrestest.DatabaseURL(t))
	if err != nil {
		t.Fatal(err)
	}
	var armed atomic.Bool
	cfg.MaxConns = 1
	cfg.ConnConfig.DialFunc = func(ctx context.Context, network, addr string) (net.Conn, error) {
		conn, err := (&net.Dialer{}).DialContext(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		return &lossyConn{Conn: conn, armed: &armed}, nil
	}
	pool, err := pgxpool.NewWithConfig(t.Context(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	s := newStoreOn(t, pool, &Config{PollOnly: true, GroupCommit: true})
	h := newGroupHarness(t, s)
	ctx := t.Context()
	if _, err := s.Append(ctx, "b", eventstore.NoStream, testEvents("E", 2)...); err != nil {
		t.Fatal(err)
	}
	calls := []groupCall{
		{stream: "a", expected: eventstore.NoStream, events: testEvents("A", 2)},
		{stream: "b", expected: eventstore.Exact(2), events: testEvents("B", 1)},
		{stream: "c", expected: eventstore.Any, events: testEvents("C", 3)},
		{stream: "d", expected: eventstore.Any, events: []eventstore.Event{{Type: "D", Data: []byte(`{}`)}}}, // an ID the store generates
	}
	want := map[string]int64{"a": 2, "b": 3, "c": 3, "d": 1}
	armed.Store(true)
	replies := h.run(calls...)
	for i, r := range replies {
		if r.err != nil || r.res.Version != want[calls[i].stream] {
			t.Fatalf("append %d on a lost connection = %+v, %v; want it resolved at version %d", i, r.res, r.err, want[calls[i].stream])
		}
		// Committed by the group, not by the runs after it.
		if r.res.Position.Transaction != replies[0].res.Position.Transaction {
			t.Fatalf("append %d committed in transaction %d, append 0 in %d: the group did not commit them all", i, r.res.Position.Transaction, replies[0].res.Position.Transaction)
		}
	}
	if armed.Load() {
		t.Fatal("the connection was not cut")
	}
	if ids := streamEventIDs(t, s, "d"); len(ids) != 1 {
		t.Fatalf("d has %d events, want 1", len(ids))
	}
	calls = calls[:3]
	for _, c := range calls {
		ids := streamEventIDs(t, s, c.stream)
		if got := ids[len(ids)-len(c.events):]; int64(len(ids)) != want[c.stream] || got[0] != c.events[0].ID {
			t.Fatalf("%s = %v: the group was not committed, the test does not test what it says", c.stream, ids)
		}
	}
	for i, r := range h.run(calls...) {
		if r.err != nil || r.res.Version != want[calls[i].stream] {
			t.Fatalf("retry %d = %+v, %v; want the original result at version %d", i, r.res, r.err, want[calls[i].stream])
		}
	}
	for _, c := range calls {
		if ids := streamEventIDs(t, s, c.stream); int64(len(ids)) != want[c.stream] {
			t.Fatalf("%s: the retry stored %d more events", c.stream, int64(len(ids))-want[c.stream])
		}
	}
}

// TestGroupCommitSizeBounds checks that a group stops at MaxGroupEvents and
// MaxGroupBytes, and that an append larger than the bounds is sent alone.
func TestGroupCommitSizeBounds(t *testing.T) {
	t.Parallel()
	s, _ := setupStore(t, &Config{GroupCommit: true, MaxGroupEvents: 4, MaxGroupBytes: 64})
	h := newGroupHarness(t, s)
	big := []eventstore.Event{{Type: "E", Data: []byte(`{"note":"` + strings.Repeat("x", 100) + `"}`)}}
	r := h.run(
		groupCall{stream: "a", expected: eventstore.Any, events: testEvents("E", 2)},
		groupCall{stream: "b", expected: eventstore.Any, events: testEvents("E", 3)}, // 5 events: next group
		groupCall{stream: "c", expected: eventstore.Any, events: testEvents("E", 2)},
		groupCall{stream: "d", expected: eventstore.Any, events: big}, // over MaxGroupBytes: alone
	)
	for i, rep := range r {
		if rep.err != nil {
			t.Fatalf("append %d: %v", i, rep.err)
		}
	}
	txOf := func(i int) uint64 { return r[i].res.Position.Transaction }
	if txOf(0) != txOf(2) {
		t.Fatal("a and c were not one group")
	}
	if txOf(1) == txOf(0) || txOf(3) == txOf(0) || txOf(3) == txOf(1) {
		t.Fatalf("transactions %d %d %d %d: b and d should each be alone", txOf(0), txOf(1), txOf(2), txOf(3))
	}
}

// TestGroupCommitLeaveQueue cancels a queued member deterministically: the
// leader is held until it has left, so it must return the context's error
// with nothing sent.
func TestGroupCommitLeaveQueue(t *testing.T) {
	t.Parallel()
	s, _ := setupStore(t, &Config{GroupCommit: true})
	g := s.group
	g.slots = 1
	release := make(chan struct{})
	var once sync.Once
	g.beforeFlush = func() { once.Do(func() { <-release }) }
	leader := make(chan error, 1)
	go func() {
		_, err := s.Append(t.Context(), "a", eventstore.Any, testEvents("A", 1)...)
		leader <- err
	}()
	h := &groupHarness{t: t, s: s, abort: make(chan struct{})}
	h.waitQueued(1)
	ctx, cancel := context.WithCancel(t.Context())
	member := make(chan error, 1)
	go func() {
		_, err := s.Append(ctx, "b", eventstore.Any, testEvents("B", 1)...)
		member <- err
	}()
	h.waitQueued(2)
	cancel()
	if err := <-member; !errors.Is(err, context.Canceled) || errors.Is(err, eventstore.ErrOutcomeUnknown) {
		t.Fatalf("canceled queued append: %v, want context.Canceled", err)
	}
	close(release)
	if err := <-leader; err != nil {
		t.Fatal(err)
	}
	if ids := streamEventIDs(t, s, "b"); len(ids) != 0 {
		t.Fatalf("canceled append stored %d events", len(ids))
	}
	// The lead was handed back: later appends still flush.
	if _, err := s.Append(t.Context(), "b", eventstore.Any, testEvents("B", 1)...); err != nil {
		t.Fatal(err)
	}
}

// TestGroupCommitGatherWaitsForAnswered checks the first part of a
// leader's gather: it blocks until every member the last flush answered
// has resumed (taken its outcome, or given up waiting for it), until the
// queue holds as many appends as that flush had, or until
// secondFlushEvents events wait.
func TestGroupCommitGatherWaitsForAnswered(t *testing.T) {
	t.Parallel()
	s, _ := setupStore(t, &Config{GroupCommit: true})
	g := s.group
	g.yield = func() {}
	h := &groupHarness{t: t, s: s, abort: make(chan struct{})}
	ctx := t.Context()
	in, err := eventsql.Flatten([]eventstore.StreamAppend{{StreamID: "s", Expected: eventstore.Any, Events: testEvents("A", 1)}})
	if err != nil {
		t.Fatal(err)
	}
	// answered starts a round of n answered members, as a flush of n+1 does.
	answered := func(n int) []*groupMember {
		g.mu.Lock()
		defer g.mu.Unlock()
		r := &flushRound{}
		ms := make([]*groupMember, n)
		for i := range ms {
			ms[i] = &groupMember{in: in, done: make(chan groupOutcome, 1), round: r}
			r.n++
		}
		g.last, g.round = n+1, r
		return ms
	}
	// gather runs gather, returning once it waits, and a channel closed
	// when it returns.
	gather := func() chan struct{} {
		done := make(chan struct{})
		go func() { g.gather(); close(done) }()
		deadline := time.Now().Add(harnessHang)
		for {
			g.mu.Lock()
			waiting := g.gathering == 1
			g.mu.Unlock()
			if waiting {
				return done
			}
			if time.Now().After(deadline) {
				t.Fatal("gather did not wait")
			}
			time.Sleep(time.Millisecond)
		}
	}
	returned := func(done chan struct{}, want bool, what string) {
		t.Helper()
		wait := 20 * time.Millisecond // long enough to see a wrong return
		if want {
			wait = harnessHang
		}
		select {
		case <-done:
			if !want {
				t.Fatalf("gather returned %s", what)
			}
		case <-time.After(wait):
			if want {
				t.Fatalf("gather still waits %s", what)
			}
		}
	}

	ms := answered(3)
	done := gather()
	g.mu.Lock()
	g.resumed(ms[0])
	g.resumed(ms[0]) // counted once
	g.resumed(ms[1])
	g.mu.Unlock()
	returned(done, false, "with one answered member of three still to resume")
	if _, ok := g.leave(ms[2], context.Canceled); !ok { // gives up: it has resumed too
		t.Fatal("leave: a member out of the queue must get an outcome")
	}
	returned(done, true, "after every answered member resumed")

	// Appends queueing again (real ones, behind a pretended leader, so
	// that they queue and wake the gather themselves).
	answered(2)
	g.mu.Lock()
	g.leaders = 1
	g.mu.Unlock()
	done = gather()
	var calls []chan groupReply
	for i := range 3 {
		if i == 2 {
			returned(done, false, "with 2 appends queued, the last flush having had 3")
		}
		reply := make(chan groupReply, 1)
		calls = append(calls, reply)
		go func() {
			res, err := s.Append(ctx, fmt.Sprintf("again-%d", i), eventstore.Any, testEvents("A", 1)...)
			reply <- groupReply{res, err}
		}()
		h.waitQueued(i + 1)
	}
	returned(done, true, "with 3 appends queued, the last flush having had 3")
	g.mu.Lock()
	g.handOff() // the pretended leader is done: the queued appends flush
	g.mu.Unlock()
	for i, reply := range calls {
		if r := <-reply; r.err != nil {
			t.Fatalf("append %d queued again: %v", i, r.err)
		}
	}

	// Nor does it wait once enough events wait for a second flush: the
	// flush it starts takes them, and the rest join a second flush.
	answered(3)
	done = gather()
	big := &groupMember{in: in, events: secondFlushEvents}
	g.mu.Lock()
	g.queue = append(g.queue, big)
	g.waiting += big.events
	g.cond.Broadcast()
	g.mu.Unlock()
	returned(done, true, fmt.Sprintf("with %d events waiting", secondFlushEvents))
	g.mu.Lock()
	g.queue, g.waiting = nil, 0
	g.mu.Unlock()
}

// TestGroupCommitSecondFlush checks when a second group flush starts.
// While the first leader has not taken its group yet (it is held before,
// as when it gathers), appends reaching secondFlushEvents join its group:
// no second leader. While that group is in flight (held after it was
// taken), fewer than secondFlushEvents waiting events wait for it; the
// append that brings them to the threshold makes the oldest of them a
// second leader, which stores them as one group while the first is still
// held, all but an append to a stream the first group holds: that one
// waits for the first to end, and is stored after it. The waiting count
// must drop with the appends taken.
func TestGroupCommitSecondFlush(t *testing.T) {
	t.Parallel()
	s, _ := setupStore(t, &Config{GroupCommit: true})
	g := s.group
	g.second = 4 // events
	h := &groupHarness{t: t, s: s, abort: make(chan struct{})}
	// Only the first flush is held, before and after it takes its group.
	taking, inFlight := make(chan struct{}), make(chan struct{})
	releaseTaking := sync.OnceFunc(func() { close(taking) })
	release := sync.OnceFunc(func() { close(inFlight) })
	// A failed check must not leave the leader held.
	t.Cleanup(func() { releaseTaking(); release() })
	var heldTaking, heldInFlight atomic.Bool
	g.beforeFlush = func() {
		if heldTaking.CompareAndSwap(false, true) {
			<-taking
		}
	}
	g.inFlight = func() {
		if heldInFlight.CompareAndSwap(false, true) {
			<-inFlight
		}
	}
	appendTo := func(stream string, events int) chan groupReply {
		reply := make(chan groupReply, 1)
		go func() {
			res, err := s.Append(t.Context(), stream, eventstore.Any, testEvents("B", events)...)
			reply <- groupReply{res, err}
		}()
		return reply
	}
	state := func() (leaders, waiting int) {
		g.mu.Lock()
		defer g.mu.Unlock()
		return g.leaders, g.waiting
	}
	// replies waits for the replies of calls, failing instead of hanging,
	// and returns the transaction they were all stored in.
	replies := func(what string, calls ...chan groupReply) (tx uint64) {
		t.Helper()
		for i, call := range calls {
			select {
			case r := <-call:
				if r.err != nil {
					t.Fatalf("%s: %v", what, r.err)
				}
				if i > 0 && r.res.Position.Transaction != tx {
					t.Fatalf("%s: stored in transactions %d and %d, want one group", what, tx, r.res.Position.Transaction)
				}
				tx = r.res.Position.Transaction
			case <-time.After(harnessHang):
				t.Fatalf("%s: no reply after %s", what, harnessHang)
			}
		}
		return tx
	}

	// The first leader, before it takes its group: 4 events queue behind it.
	a := appendTo("a", 1)
	h.waitQueued(1)
	first := []chan groupReply{a, appendTo("b", 1), appendTo("c", 2), appendTo("d", 1)}
	h.waitQueued(4)
	if leaders, waiting := state(); leaders != 1 || waiting != 4 {
		t.Fatalf("behind a leader that has not taken its group: %d leaders, %d events waiting; want 1 and 4", leaders, waiting)
	}
	releaseTaking() // it takes a, b, c and d, and is held in flight
	deadline := time.Now().Add(harnessHang)
	for {
		g.mu.Lock()
		taken := g.flushing == 1 && len(g.queue) == 0
		g.mu.Unlock()
		if taken {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the first leader did not take its group within %s", harnessHang)
		}
		time.Sleep(time.Millisecond)
	}

	// In flight: 3 events wait below the threshold, one of them on a
	// stream in flight; the fourth starts a second flush, without it.
	second := []chan groupReply{appendTo("e", 1), appendTo("f", 1)}
	h.waitQueued(2)
	again := appendTo("a", 1)
	h.waitQueued(3)
	if leaders, waiting := state(); leaders != 1 || waiting != 3 {
		t.Fatalf("3 events waiting below the threshold of 4: %d leaders, %d events waiting; want 1 and 3", leaders, waiting)
	}
	second = append(second, appendTo("g", 1))
	secondTx := replies("the second flush (e, f, g)", second...)
	if leaders, waiting := state(); leaders != 1 || waiting != 1 {
		t.Fatalf("after the second flush: %d leaders, %d events waiting; want 1 (the held one) and 1 (a again)", leaders, waiting)
	}
	select {
	case r := <-again:
		t.Fatalf("a's second append was stored while a's first was in flight: %+v, %v", r.res, r.err)
	default:
	}
	release()
	firstTx := replies("the first flush (a, b, c, d)", first...)
	againTx := replies("a again", again)
	if firstTx == secondTx || againTx == firstTx || againTx == secondTx {
		t.Fatalf("transactions %d (first), %d (second), %d (a again): want three", firstTx, secondTx, againTx)
	}
	if v := streamEventIDs(t, s, "a"); len(v) != 2 {
		t.Fatalf("stream a holds %d events, want 2", len(v))
	}
	if leaders, waiting := state(); leaders != 0 || waiting != 0 {
		t.Fatalf("when idle: %d leaders, %d events waiting; want 0 and 0", leaders, waiting)
	}
}

// TestGroupCommitManyWriters runs writers on their own streams and on one
// shared stream at once, with no hook: every append is stored exactly
// once, each stream without holes, each writer's results in order.
func TestGroupCommitManyWriters(t *testing.T) {
	t.Parallel()
	for _, disable := range []bool{false, true} {
		t.Run(fmt.Sprintf("disable=%t", disable), func(t *testing.T) {
			t.Parallel()
			s, _ := setupStore(t, &Config{GroupCommit: !disable, MaxGroupEvents: 7})
			const writers, appends = 12, 25
			ctx := t.Context()
			var wg sync.WaitGroup
			stored := make([][]eventstore.Event, writers)
			shared := make([][]eventstore.Event, writers)
			for w := range writers {
				wg.Add(1)
				go func() {
					defer wg.Done()
					own := fmt.Sprintf("own-%d", w)
					var version int64
					for i := range appends {
						evs := testEvents("E", 1+i%3)
						res, err := s.Append(ctx, own, eventstore.Exact(version), evs...)
						if err != nil || res.Version != version+int64(len(evs)) {
							t.Errorf("%s: %+v, %v", own, res, err)
							return
						}
						version = res.Version
						stored[w] = append(stored[w], evs...)
						if i%5 == 0 {
							evs := testEvents("S", 1)
							if _, err := s.Append(ctx, "shared", eventstore.Any, evs...); err != nil {
								t.Errorf("shared: %v", err)
								return
							}
							shared[w] = append(shared[w], evs...)
						}
					}
				}()
			}
			wg.Wait()
			if t.Failed() {
				return
			}
			for w := range writers {
				requireStreamIDs(t, s, fmt.Sprintf("own-%d", w), stored[w])
			}
			all := map[eventstore.EventID]bool{}
			for _, id := range streamEventIDs(t, s, "shared") {
				all[id] = true
			}
			n := 0
			for _, evs := range shared {
				for _, e := range evs {
					n++
					if !all[e.ID] {
						t.Fatalf("shared event %s lost", e.ID)
					}
				}
			}
			if len(all) != n {
				t.Fatalf("shared has %d events, want %d", len(all), n)
			}
		})
	}
}

func TestGroupCommitConfig(t *testing.T) {
	t.Parallel()
	s, pool := setupStore(t, &Config{GroupCommit: true})
	if s.group == nil || s.cfg.MaxGroupEvents != defaultMaxGroupEvents || s.cfg.MaxGroupBytes != defaultMaxGroupBytes {
		t.Fatalf("defaults: group %v, %d events, %d bytes", s.group != nil, s.cfg.MaxGroupEvents, s.cfg.MaxGroupBytes)
	}
	if off := newStoreOn(t, pool, nil); off.group != nil {
		t.Fatal("group commit is on by default")
	}
	for _, tc := range []struct {
		name string
		cfg  Config
	}{
		{"MaxGroupEvents", Config{MaxGroupEvents: -1}},
		{"MaxGroupBytes", Config{MaxGroupBytes: -1}},
	} {
		var ve *eventstore.ValidationError
		if _, err := New(pool, &tc.cfg); !errors.As(err, &ve) || ve.Field != "config "+tc.name {
			t.Fatalf("%s: %v, want a validation error", tc.name, err)
		}
	}
}

// TestGroupCommitGather checks that a leader, before it takes its group,
// yields while the queue grows, at most once per member of the flush that
// ended last beyond the first (the members of that flush come back to
// append again), and that a lone writer never yields. Each yield here
// queues one more append, standing in for a writer that a flush has just
// answered.
func TestGroupCommitGather(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		// last is the size of the flush that ended last.
		last int
		// arrivals is how many yields queue an append; later ones do not.
		arrivals int
		// yields and members are the yields and the group size expected.
		yields, members int
	}{
		{name: "lone writer", last: 1, arrivals: 5, yields: 0, members: 1},
		{name: "until the queue stops growing", last: 8, arrivals: 2, yields: 3, members: 3},
		{name: "at most last-1 yields", last: 3, arrivals: 5, yields: 2, members: 3},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var sizes []int
			s, _ := setupStore(t, &Config{GroupCommit: true, GroupObserver: func(appends, _ int) { sizes = append(sizes, appends) }})
			g := s.group
			h := &groupHarness{t: t, s: s, abort: make(chan struct{})}
			ctx := t.Context()
			g.mu.Lock()
			g.last = tc.last
			g.mu.Unlock()
			yields := 0
			var arrived []chan groupReply
			g.yield = func() {
				yields++
				if yields > tc.arrivals {
					return
				}
				reply := make(chan groupReply, 1)
				arrived = append(arrived, reply)
				go func() {
					res, err := s.Append(ctx, fmt.Sprintf("arrival-%d", yields), eventstore.NoStream, testEvents("A", 1)...)
					reply <- groupReply{res, err}
				}()
				h.waitQueued(1 + yields)
			}
			res, err := s.Append(ctx, "leader", eventstore.NoStream, testEvents("L", 1)...)
			if err != nil {
				t.Fatal(err)
			}
			g.yield = func() {} // the arrivals' own flushes do not gather
			if yields != tc.yields {
				t.Fatalf("%d yields, want %d", yields, tc.yields)
			}
			if len(sizes) == 0 || sizes[0] != tc.members {
				t.Fatalf("group sizes %v, want the first of %d", sizes, tc.members)
			}
			for i, reply := range arrived {
				r := <-reply
				if r.err != nil {
					t.Fatalf("arrival %d: %v", i+1, r.err)
				}
				if joined := i+1 < tc.members; joined != (r.res.Position.Transaction == res.Position.Transaction) {
					t.Fatalf("arrival %d committed in transaction %d, the leader in %d; want joined %t", i+1, r.res.Position.Transaction, res.Position.Transaction, joined)
				}
			}
		})
	}
}
