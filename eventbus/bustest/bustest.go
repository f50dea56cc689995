package bustest

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chronicle-go/chronicle/eventbus"
	"github.com/chronicle-go/chronicle/eventstore"
)

// Options adapts the suite to an implementation.
type Options struct {
	// Timeout is the hang limit of each wait of the suite: a wait fails
	// when it saw no progress (no new delivery, no new dead letter) for
	// this long. It bounds a hang, not a speed: a slow machine must not
	// fail the suite. Defaults to 2 minutes.
	Timeout time.Duration
	// KnownFailures names cases this implementation is known to fail, each
	// with the open bug that explains it; they are skipped, loudly, and
	// must be fixed, not left. Defaults to none.
	KnownFailures map[string]string
	// Diagnose, when set, is called when a wait of the suite runs out, to
	// log the implementation's view of bus (the broker's consumer state,
	// for example) before the test fails. Defaults to nothing.
	Diagnose func(t *testing.T, bus eventbus.Bus)
}

type suite struct {
	newBus   func(t *testing.T) eventbus.Bus
	timeout  time.Duration
	diagnose func(t *testing.T, bus eventbus.Bus)
	buses    sync.Map // *testing.T → eventbus.Bus, for diagnose
}

// slowAfter is how long a wait runs before the suite logs it as slow and
// diagnoses the bus, without failing.
const slowAfter = 15 * time.Second

// Run runs the conformance suite. newBus returns a new, empty bus private
// to the subtest.
func Run(t *testing.T, newBus func(t *testing.T) eventbus.Bus, opts *Options) {
	s := &suite{newBus: newBus, timeout: 2 * time.Minute}
	if opts != nil && opts.Timeout > 0 {
		s.timeout = opts.Timeout
	}
	if opts != nil {
		s.diagnose = opts.Diagnose
	}
	tests := []struct {
		name string
		fn   func(t *testing.T)
	}{
		{"Delivery", s.testDelivery},
		{"DeliveryAsync", s.testDeliveryAsync},
		{"Dedupe", s.testDedupe},
		{"Groups", s.testGroups},
		{"StreamOrder", s.testStreamOrder},
		{"Unordered", s.testUnordered},
		{"Redelivery", s.testRedelivery},
		{"DeadLetters", s.testDeadLetters},
		{"DeadLetterImmediate", s.testDeadLetterImmediate},
		{"Shutdown", s.testShutdown},
		{"BadInput", s.testBadInput},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if opts != nil && opts.KnownFailures[tt.name] != "" {
				t.Skipf("KNOWN BUG, skipped: %s", opts.KnownFailures[tt.name])
			}
			tt.fn(t)
		})
	}
}

func (s *suite) setup(t *testing.T) (context.Context, eventbus.Bus) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 4*s.timeout)
	t.Cleanup(cancel)
	bus := s.newBus(t)
	s.buses.Store(t, bus)
	t.Cleanup(func() { s.buses.Delete(t) })
	return ctx, bus
}

// wait polls check until it reports done. check also returns a measure of
// progress (deliveries seen, say): the wait fails once the measure has not
// changed for the hang limit, and logs (with a diagnosis of the bus) a
// wait that runs longer than slowAfter. wake, when not nil, signals a
// change worth checking at once.
func (s *suite) wait(t *testing.T, what string, wake <-chan struct{}, check func() (done bool, progress int)) {
	t.Helper()
	start := time.Now()
	lastChange := start
	last := -1
	slowLogged := false
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		done, progress := check()
		if done {
			if slowLogged {
				t.Logf("slow wait for %s ended after %s", what, time.Since(start).Round(time.Millisecond))
			}
			return
		}
		if progress != last {
			last, lastChange = progress, time.Now()
		}
		if time.Since(lastChange) > s.timeout {
			s.diagnoseBus(t)
			t.Fatalf("timed out waiting for %s: no progress for %s (at %d after %s)", what, s.timeout, progress, time.Since(start).Round(time.Millisecond))
		}
		if !slowLogged && time.Since(start) > slowAfter {
			slowLogged = true
			t.Logf("slow wait for %s: %s so far, at %d", what, time.Since(start).Round(time.Millisecond), progress)
			s.diagnoseBus(t)
		}
		select {
		case <-wake:
		case <-tick.C:
		}
	}
}

// waitClosed waits until ch is closed.
func (s *suite) waitClosed(t *testing.T, what string, ch <-chan struct{}) {
	t.Helper()
	s.wait(t, what, ch, func() (bool, int) {
		select {
		case <-ch:
			return true, 0
		default:
			return false, 0
		}
	})
}

func (s *suite) diagnoseBus(t *testing.T) {
	t.Helper()
	if s.diagnose == nil {
		return
	}
	if bus, ok := s.buses.Load(t); ok {
		s.diagnose(t, bus.(eventbus.Bus))
	}
}

// message returns a message of stream streamID at version v.
func message(streamID string, v int64, typ string) eventbus.Message {
	id := eventstore.NewEventID()
	return eventbus.Message{
		EventID:       id,
		Type:          typ,
		SchemaVersion: 1,
		StreamID:      streamID,
		StreamVersion: v,
		Position:      eventstore.Position{Transaction: uint64(v), Global: v},
		Data:          fmt.Appendf(nil, `{"stream":%q,"v":%d}`, streamID, v),
		Metadata:      eventstore.Metadata{CorrelationID: "corr-" + streamID, CausationID: id.String(), Headers: map[string]string{"tenant": "t1", "line\nbreak": "x: y"}},
		RecordedAt:    time.Date(2026, 1, 2, 3, 4, 5, 6000, time.UTC),
	}
}

// messages returns n messages spread over streams streams, in per-stream
// version order.
func messages(prefix string, streams, n int) []eventbus.Message {
	out := make([]eventbus.Message, 0, n)
	versions := make([]int64, streams)
	for i := range n {
		k := i % streams
		versions[k]++
		out = append(out, message(fmt.Sprintf("%s-%d", prefix, k), versions[k], "Thing"))
	}
	return out
}

// recorder collects deliveries.
type recorder struct {
	mu     sync.Mutex
	got    []eventbus.Delivery
	byID   map[eventstore.EventID]int
	change chan struct{}
}

func newRecorder() *recorder {
	return &recorder{byID: map[eventstore.EventID]int{}, change: make(chan struct{}, 1)}
}

func (r *recorder) add(d eventbus.Delivery) {
	r.mu.Lock()
	r.got = append(r.got, d)
	r.byID[d.EventID]++
	r.mu.Unlock()
	select {
	case r.change <- struct{}{}:
	default:
	}
}

func (r *recorder) handler() eventbus.HandlerFunc {
	return func(_ context.Context, d eventbus.Delivery) error {
		r.add(d)
		return nil
	}
}

func (r *recorder) snapshot() ([]eventbus.Delivery, map[eventstore.EventID]int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	m := make(map[eventstore.EventID]int, len(r.byID))
	for k, v := range r.byID {
		m[k] = v
	}
	return slices.Clone(r.got), m
}

// waitDistinct waits until n distinct messages were recorded.
func (s *suite) waitDistinct(t *testing.T, r *recorder, n int) {
	t.Helper()
	s.wait(t, fmt.Sprintf("%d distinct messages", n), r.change, func() (bool, int) {
		got, ids := r.snapshot()
		return len(ids) >= n, len(got)
	})
}

// settle waits a little for stray deliveries.
func settle() { time.Sleep(300 * time.Millisecond) }

func subscribe(t *testing.T, ctx context.Context, bus eventbus.Bus, c eventbus.Consumer) eventbus.Subscription {
	t.Helper()
	if c.Backoff.Base == 0 {
		c.Backoff = eventbus.Backoff{Base: 10 * time.Millisecond, Max: 50 * time.Millisecond}
	}
	sub, err := bus.Subscribe(ctx, c)
	if err != nil {
		t.Fatalf("subscribe %s: %v", c.Group, err)
	}
	t.Cleanup(func() {
		cctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = sub.Close(cctx)
	})
	return sub
}

func publish(t *testing.T, ctx context.Context, bus eventbus.Bus, msgs ...eventbus.Message) {
	t.Helper()
	if err := bus.Publish(ctx, msgs...); err != nil {
		t.Fatalf("publish: %v", err)
	}
}

func sameMessage(a, b eventbus.Message) error {
	switch {
	case a.EventID != b.EventID:
		return fmt.Errorf("event id %s, want %s", a.EventID, b.EventID)
	case a.Type != b.Type || a.SchemaVersion != b.SchemaVersion:
		return fmt.Errorf("type %s v%d, want %s v%d", a.Type, a.SchemaVersion, b.Type, b.SchemaVersion)
	case a.StreamID != b.StreamID || a.StreamVersion != b.StreamVersion:
		return fmt.Errorf("stream %s@%d, want %s@%d", a.StreamID, a.StreamVersion, b.StreamID, b.StreamVersion)
	case a.Position != b.Position:
		return fmt.Errorf("position %s, want %s", a.Position, b.Position)
	case string(a.Data) != string(b.Data):
		return fmt.Errorf("data %q, want %q", a.Data, b.Data)
	case a.Metadata.CorrelationID != b.Metadata.CorrelationID || a.Metadata.CausationID != b.Metadata.CausationID:
		return fmt.Errorf("metadata %+v, want %+v", a.Metadata, b.Metadata)
	case len(a.Metadata.Headers) != len(b.Metadata.Headers):
		return fmt.Errorf("headers %v, want %v", a.Metadata.Headers, b.Metadata.Headers)
	case !a.RecordedAt.Equal(b.RecordedAt):
		return fmt.Errorf("recorded at %s, want %s", a.RecordedAt, b.RecordedAt)
	}
	for k, v := range b.Metadata.Headers {
		if a.Metadata.Headers[k] != v {
			return fmt.Errorf("header %q = %q, want %q", k, a.Metadata.Headers[k], v)
		}
	}
	return nil
}

func (s *suite) testDelivery(t *testing.T) {
	ctx, bus := s.setup(t)
	early := messages("early", 3, 9)
	publish(t, ctx, bus, early...) // before the group exists
	rec := newRecorder()
	subscribe(t, ctx, bus, eventbus.Consumer{Group: "delivery", Handler: rec.handler()})
	late := messages("late", 3, 9)
	publish(t, ctx, bus, late...)
	all := append(slices.Clone(early), late...)
	s.waitDistinct(t, rec, len(all))
	settle()
	got, ids := rec.snapshot()
	for _, m := range all {
		if ids[m.EventID] != 1 {
			t.Fatalf("message %s delivered %d times, want 1", m.EventID, ids[m.EventID])
		}
	}
	for _, d := range got {
		i := slices.IndexFunc(all, func(m eventbus.Message) bool { return m.EventID == d.EventID })
		if err := sameMessage(d.Message, all[i]); err != nil {
			t.Fatalf("delivered message differs: %v", err)
		}
		if d.Group != "delivery" || d.Attempt != 1 {
			t.Fatalf("delivery group %q attempt %d, want delivery 1", d.Group, d.Attempt)
		}
	}
}

func (s *suite) testDeliveryAsync(t *testing.T) {
	ctx, bus := s.setup(t)
	msgs := messages("async", 4, 200)
	for _, m := range msgs {
		if err := bus.PublishAsync(ctx, m); err != nil {
			t.Fatalf("publish async: %v", err)
		}
	}
	if err := bus.Flush(ctx); err != nil {
		t.Fatalf("flush: %v", err)
	}
	rec := newRecorder()
	subscribe(t, ctx, bus, eventbus.Consumer{Group: "async", Handler: rec.handler()})
	s.waitDistinct(t, rec, len(msgs))
	got, _ := rec.snapshot()
	requireStreamOrder(t, got)
}

func (s *suite) testDedupe(t *testing.T) {
	ctx, bus := s.setup(t)
	msgs := messages("dedupe", 2, 6)
	publish(t, ctx, bus, msgs...)
	publish(t, ctx, bus, msgs[2:]...) // a relay retrying after a crash
	rec := newRecorder()
	subscribe(t, ctx, bus, eventbus.Consumer{Group: "dedupe", Handler: rec.handler()})
	s.waitDistinct(t, rec, len(msgs))
	settle()
	got, _ := rec.snapshot()
	if len(got) != len(msgs) {
		t.Fatalf("%d deliveries of %d distinct messages published twice, want %d", len(got), len(msgs), len(msgs))
	}
}

func (s *suite) testGroups(t *testing.T) {
	ctx, bus := s.setup(t)
	a, b := newRecorder(), newRecorder()
	members := make([]*recorder, 3)
	for i := range members {
		members[i] = newRecorder()
		subscribe(t, ctx, bus, eventbus.Consumer{Group: "shared", Handler: eventbus.HandlerFunc(func(ctx context.Context, d eventbus.Delivery) error {
			members[i].add(d)
			return a.handler()(ctx, d)
		}), Concurrency: 2})
	}
	subscribe(t, ctx, bus, eventbus.Consumer{Group: "other", Handler: b.handler()})
	msgs := messages("groups", 8, 120)
	publish(t, ctx, bus, msgs...)
	s.waitDistinct(t, a, len(msgs))
	s.waitDistinct(t, b, len(msgs))
	settle()
	for name, r := range map[string]*recorder{"shared": a, "other": b} {
		got, ids := r.snapshot()
		if len(got) != len(msgs) {
			t.Fatalf("group %s: %d deliveries, want %d (each message once)", name, len(got), len(msgs))
		}
		for _, m := range msgs {
			if ids[m.EventID] != 1 {
				t.Fatalf("group %s: message delivered %d times", name, ids[m.EventID])
			}
		}
	}
}

// requireStreamOrder checks that each stream's deliveries ran in version
// order, with no version handled successfully twice.
func requireStreamOrder(t *testing.T, got []eventbus.Delivery) {
	t.Helper()
	last := map[string]int64{}
	for _, d := range got {
		if d.StreamVersion != last[d.StreamID]+1 {
			t.Fatalf("stream %s: version %d handled after %d", d.StreamID, d.StreamVersion, last[d.StreamID])
		}
		last[d.StreamID] = d.StreamVersion
	}
}

func (s *suite) testStreamOrder(t *testing.T) {
	ctx, bus := s.setup(t)
	var mu sync.Mutex
	var done []eventbus.Delivery
	inflight := map[string]bool{}
	var violation error
	failed := map[eventstore.EventID]bool{}
	h := eventbus.HandlerFunc(func(ctx context.Context, d eventbus.Delivery) error {
		mu.Lock()
		if inflight[d.StreamID] && violation == nil {
			violation = fmt.Errorf("two messages of stream %s handled at once", d.StreamID)
		}
		inflight[d.StreamID] = true
		fail := d.StreamVersion%7 == 3 && !failed[d.EventID]
		failed[d.EventID] = true
		mu.Unlock()
		time.Sleep(time.Duration(rand.N(3)) * time.Millisecond)
		mu.Lock()
		defer mu.Unlock()
		inflight[d.StreamID] = false
		if fail {
			return errors.New("fails once")
		}
		done = append(done, d)
		return nil
	})
	for range 3 {
		subscribe(t, ctx, bus, eventbus.Consumer{Group: "ordered", Handler: h, Concurrency: 4})
	}
	msgs := messages("order", 6, 150)
	publish(t, ctx, bus, msgs[:50]...)
	publish(t, ctx, bus, msgs[50:]...)
	s.wait(t, fmt.Sprintf("%d handled messages", len(msgs)), nil, func() (bool, int) {
		mu.Lock()
		defer mu.Unlock()
		return len(done) >= len(msgs), len(done)
	})
	mu.Lock()
	defer mu.Unlock()
	if violation != nil {
		t.Fatal(violation)
	}
	requireStreamOrder(t, done)
}

func (s *suite) testUnordered(t *testing.T) {
	ctx, bus := s.setup(t)
	rec := newRecorder()
	var mu sync.Mutex
	running, peak := 0, 0
	h := eventbus.HandlerFunc(func(ctx context.Context, d eventbus.Delivery) error {
		mu.Lock()
		running++
		peak = max(peak, running)
		mu.Unlock()
		time.Sleep(20 * time.Millisecond)
		mu.Lock()
		running--
		mu.Unlock()
		rec.add(d)
		return nil
	})
	subscribe(t, ctx, bus, eventbus.Consumer{Group: "unordered", Handler: h, Unordered: true, Concurrency: 4})
	msgs := messages("one-stream", 1, 24)
	publish(t, ctx, bus, msgs...)
	s.waitDistinct(t, rec, len(msgs))
	mu.Lock()
	defer mu.Unlock()
	if peak < 2 {
		t.Fatalf("unordered consumer ran at most %d handlers of one stream at once, want several", peak)
	}
}

func (s *suite) testRedelivery(t *testing.T) {
	ctx, bus := s.setup(t)
	var mu sync.Mutex
	var attempts []int
	ok := make(chan struct{}, 1)
	h := eventbus.HandlerFunc(func(ctx context.Context, d eventbus.Delivery) error {
		mu.Lock()
		defer mu.Unlock()
		attempts = append(attempts, d.Attempt)
		if d.Attempt < 3 {
			return errors.New("not yet")
		}
		select {
		case ok <- struct{}{}:
		default:
		}
		return nil
	})
	subscribe(t, ctx, bus, eventbus.Consumer{Group: "redelivery", Handler: h, MaxDeliveries: 5})
	publish(t, ctx, bus, message("redelivery", 1, "Thing"))
	s.wait(t, "the third delivery", ok, func() (bool, int) {
		mu.Lock()
		defer mu.Unlock()
		return len(attempts) >= 3 && attempts[len(attempts)-1] >= 3, len(attempts)
	})
	settle()
	mu.Lock()
	defer mu.Unlock()
	if !slices.Equal(attempts, []int{1, 2, 3}) {
		t.Fatalf("attempts %v, want [1 2 3]", attempts)
	}
	dls, err := bus.DeadLetters(ctx, eventbus.DeadLetterFilter{Group: "redelivery"})
	if err != nil || len(dls) != 0 {
		t.Fatalf("dead letters %v, %v; want none", dls, err)
	}
}

// waitDeadLetters waits until group has n dead letters.
func (s *suite) waitDeadLetters(t *testing.T, ctx context.Context, bus eventbus.Bus, group string, n int) []eventbus.DeadLetter {
	t.Helper()
	var dls []eventbus.DeadLetter
	s.wait(t, fmt.Sprintf("%d dead letters of %s", n, group), nil, func() (bool, int) {
		var err error
		dls, err = bus.DeadLetters(ctx, eventbus.DeadLetterFilter{Group: group})
		if err != nil {
			t.Fatalf("dead letters: %v", err)
		}
		return len(dls) >= n, len(dls)
	})
	return dls
}

func (s *suite) testDeadLetters(t *testing.T) {
	ctx, bus := s.setup(t)
	poison := message("poison", 1, "Thing")
	var mu sync.Mutex
	cured := false
	rec, other := newRecorder(), newRecorder()
	h := eventbus.HandlerFunc(func(ctx context.Context, d eventbus.Delivery) error {
		mu.Lock()
		c := cured
		mu.Unlock()
		if d.EventID == poison.EventID && !c {
			return errors.New("boom: poison")
		}
		rec.add(d)
		return nil
	})
	subscribe(t, ctx, bus, eventbus.Consumer{Group: "dlq", Handler: h, MaxDeliveries: 3})
	subscribe(t, ctx, bus, eventbus.Consumer{Group: "dlq-other", Handler: other.handler()})
	rest := messages("healthy", 3, 30)
	publish(t, ctx, bus, poison)
	publish(t, ctx, bus, rest...)
	s.waitDistinct(t, rec, len(rest)) // the rest flows past the poison message
	dls := s.waitDeadLetters(t, ctx, bus, "dlq", 1)
	dl := dls[0]
	if dl.Group != "dlq" || dl.Attempts != 3 || !strings.Contains(dl.Reason, "boom: poison") || dl.ID == "" {
		t.Fatalf("dead letter %+v: want group dlq, 3 attempts, the handler's error", dl)
	}
	if err := sameMessage(dl.Message, poison); err != nil {
		t.Fatalf("dead letter message: %v", err)
	}
	if all, err := bus.DeadLetters(ctx, eventbus.DeadLetterFilter{}); err != nil || len(all) != 1 {
		t.Fatalf("all dead letters: %d, %v; want 1", len(all), err)
	}
	s.waitDistinct(t, other, len(rest)+1)

	mu.Lock()
	cured = true
	mu.Unlock()
	if err := bus.ReplayDeadLetter(ctx, dl.ID); err != nil {
		t.Fatalf("replay: %v", err)
	}
	s.waitDistinct(t, rec, len(rest)+1)
	settle()
	if _, ids := other.snapshot(); ids[poison.EventID] != 1 {
		t.Fatalf("replay reached another group: %d deliveries there", ids[poison.EventID])
	}
	if dls, err := bus.DeadLetters(ctx, eventbus.DeadLetterFilter{Group: "dlq"}); err != nil || len(dls) != 0 {
		t.Fatalf("dead letters after replay: %v, %v; want none", dls, err)
	}
	if err := bus.ReplayDeadLetter(ctx, dl.ID); !errors.Is(err, eventbus.ErrDeadLetterNotFound) {
		t.Fatalf("replaying a replayed dead letter: %v, want ErrDeadLetterNotFound", err)
	}
}

func (s *suite) testDeadLetterImmediate(t *testing.T) {
	ctx, bus := s.setup(t)
	reg := eventstore.NewRegistry(nil)
	type Known struct{ N int }
	if err := eventstore.Register[Known](reg, "Known"); err != nil {
		t.Fatal(err)
	}
	rec := newRecorder()
	h := eventbus.NewHandlers(reg)
	eventbus.On(h, func(ctx context.Context, d eventbus.Delivery, e Known) error {
		if e.N < 0 {
			return eventbus.Permanent(errors.New("negative n"))
		}
		rec.add(d)
		return nil
	})
	// The group expects a type that its registry does not know (a deploy
	// mismatch), and ignores the types it does not name.
	subscribe(t, ctx, bus, eventbus.Consumer{Group: "immediate", Handler: h, MaxDeliveries: 5, Types: []string{"Known", "Unknown"}})
	filtered := newRecorder()
	subscribe(t, ctx, bus, eventbus.Consumer{Group: "filtered", Handler: filtered.handler(), Types: []string{"Other"}})
	other := message("imm-other", 1, "Other")
	ignored := message("imm-ignored", 1, "Ignored")
	unknown := message("imm", 1, "Unknown")
	negative := message("imm-neg", 1, "Known")
	negative.Data = []byte(`{"N":-1}`)
	good := message("imm-good", 1, "Known")
	good.Data = []byte(`{"N":1}`)
	publish(t, ctx, bus, ignored, unknown, negative, good, other)
	s.waitDistinct(t, rec, 1)
	s.waitDistinct(t, filtered, 1)
	settle()
	if got, _ := filtered.snapshot(); len(got) != 1 || got[0].EventID != other.EventID {
		t.Fatalf("a group restricted to type Other got %d messages", len(got))
	}
	dls := s.waitDeadLetters(t, ctx, bus, "immediate", 2)
	reasons := map[eventstore.EventID]eventbus.DeadLetter{}
	for _, d := range dls {
		reasons[d.Message.EventID] = d
	}
	if d := reasons[unknown.EventID]; d.Attempts != 1 || !strings.Contains(d.Reason, "unknown event type") {
		t.Fatalf("unknown type dead letter %+v: want 1 attempt, reason unknown event type", d)
	}
	if d := reasons[negative.EventID]; d.Attempts != 1 || !strings.Contains(d.Reason, "negative n") {
		t.Fatalf("permanent failure dead letter %+v: want 1 attempt and the reason", d)
	}
	if err := bus.DiscardDeadLetter(ctx, reasons[unknown.EventID].ID); err != nil {
		t.Fatalf("discard: %v", err)
	}
	if err := bus.DiscardDeadLetter(ctx, reasons[unknown.EventID].ID); !errors.Is(err, eventbus.ErrDeadLetterNotFound) {
		t.Fatalf("discarding twice: %v, want ErrDeadLetterNotFound", err)
	}
	left, err := bus.DeadLetters(ctx, eventbus.DeadLetterFilter{Group: "immediate"})
	if err != nil || len(left) != 1 || left[0].Message.EventID != negative.EventID {
		t.Fatalf("dead letters after discard: %v, %v", left, err)
	}
}

func (s *suite) testShutdown(t *testing.T) {
	ctx, bus := s.setup(t)
	started := make(chan struct{})
	release := make(chan struct{})
	var mu sync.Mutex
	calls := 0
	slow := eventbus.HandlerFunc(func(ctx context.Context, d eventbus.Delivery) error {
		mu.Lock()
		calls++
		first := calls == 1
		mu.Unlock()
		if first {
			close(started)
			select {
			case <-release:
				return nil
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		return nil
	})
	sub, err := bus.Subscribe(ctx, eventbus.Consumer{Group: "shutdown", Handler: slow})
	if err != nil {
		t.Fatal(err)
	}
	msgs := messages("shutdown", 1, 3)
	publish(t, ctx, bus, msgs[0])
	s.waitClosed(t, "the first handler call", started)
	// Close waits for the handler in flight...
	closed := make(chan error, 1)
	go func() {
		cctx, cancel := context.WithTimeout(context.Background(), s.timeout)
		defer cancel()
		closed <- sub.Close(cctx)
	}()
	select {
	case err := <-closed:
		t.Fatalf("Close returned (%v) while a handler was running", err)
	case <-time.After(200 * time.Millisecond):
	}
	close(release)
	if err := <-closed; err != nil {
		t.Fatalf("close: %v", err)
	}
	mu.Lock()
	n := calls
	mu.Unlock()
	publish(t, ctx, bus, msgs[1:]...)
	settle()
	mu.Lock()
	if calls != n {
		t.Fatalf("%d handler calls after Close", calls-n)
	}
	mu.Unlock()

	// ...and a member closed with a handler that does not return in time
	// leaves its message to the next member.
	stuckStarted := make(chan struct{})
	stuck := eventbus.HandlerFunc(func(ctx context.Context, d eventbus.Delivery) error {
		select {
		case <-stuckStarted:
		default:
			close(stuckStarted)
		}
		<-ctx.Done()
		return ctx.Err()
	})
	sub2, err := bus.Subscribe(ctx, eventbus.Consumer{Group: "shutdown", Handler: stuck})
	if err != nil {
		t.Fatal(err)
	}
	s.waitClosed(t, "the stuck handler's call", stuckStarted)
	cctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	_ = sub2.Close(cctx) // reports the cut-short wait
	cancel()
	rec := newRecorder()
	subscribe(t, ctx, bus, eventbus.Consumer{Group: "shutdown", Handler: rec.handler()})
	s.waitDistinct(t, rec, 2)
	_, ids := rec.snapshot()
	if ids[msgs[1].EventID] != 1 || ids[msgs[2].EventID] != 1 {
		t.Fatalf("after shutdown the next member got %v, want the two unhandled messages", ids)
	}
}

func (s *suite) testBadInput(t *testing.T) {
	ctx, bus := s.setup(t)
	h := eventbus.HandlerFunc(func(context.Context, eventbus.Delivery) error { return nil })
	for _, c := range []eventbus.Consumer{
		{Handler: h},
		{Group: "has space", Handler: h},
		{Group: "x"},
		{Group: "x", Handler: h, MaxDeliveries: -1},
		{Group: "x", Handler: h, Backoff: eventbus.Backoff{Base: time.Second, Max: time.Millisecond}},
		{Group: "x", Handler: eventbus.NewHandlers(nil)},
	} {
		if _, err := bus.Subscribe(ctx, c); !errors.Is(err, eventstore.ErrInvalidInput) {
			t.Errorf("subscribe %+v: %v, want ErrInvalidInput", c, err)
		}
	}
	bad := message("bad", 1, "Thing")
	bad.EventID = eventstore.EventID{}
	if err := bus.Publish(ctx, bad); !errors.Is(err, eventstore.ErrInvalidInput) {
		t.Errorf("publish without event id: %v, want ErrInvalidInput", err)
	}
	if err := bus.PublishAsync(ctx, bad); !errors.Is(err, eventstore.ErrInvalidInput) || !errors.Is(err, eventbus.ErrPermanent) {
		t.Errorf("publish async without event id: %v, want ErrInvalidInput and ErrPermanent", err)
	}
	if err := bus.DiscardDeadLetter(ctx, "no-such"); !errors.Is(err, eventbus.ErrDeadLetterNotFound) {
		t.Errorf("discard unknown: %v, want ErrDeadLetterNotFound", err)
	}
}
