package eventbus

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime/debug"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/chronicle-go/chronicle/eventstore"
)

// MemoryConfig configures a [MemoryBus].
type MemoryConfig struct {
	// Logger receives handler failures. Defaults to slog.Default().
	Logger *slog.Logger
}

// MemoryBus is the in-process bus, for tests and single-process
// applications. It honours the same contract as a broker-backed bus (the
// bustest conformance suite): it retains every message it was given, for
// groups that subscribe later, deduplicates publications by event ID, keeps
// per-stream order within each group, retries failed messages with backoff
// and dead-letters them. Everything lives in memory: a restart loses it,
// so use it where the event store (through a [Relay]) can refill it.
type MemoryBus struct {
	log *slog.Logger

	mu       sync.Mutex
	messages []Message
	ids      map[eventstore.EventID]struct{}
	groups   map[string]*memGroup
	dead     []*DeadLetter
	deadSeq  int64
}

var _ Bus = (*MemoryBus)(nil)

// NewMemoryBus returns an empty in-process bus. A nil config means the
// defaults.
func NewMemoryBus(cfg *MemoryConfig) *MemoryBus {
	var c MemoryConfig
	if cfg != nil {
		c = *cfg
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return &MemoryBus{
		log:    c.Logger.With("component", "chronicle/eventbus"),
		ids:    map[eventstore.EventID]struct{}{},
		groups: map[string]*memGroup{},
	}
}

type memItem struct {
	msg      Message
	attempts int
	due      time.Time
	inflight bool
}

type memGroup struct {
	items []*memItem // unacknowledged, in delivery order
	wake  chan struct{}
}

// notifyLocked wakes the members waiting for g.
func (g *memGroup) notifyLocked() {
	if g.wake != nil {
		close(g.wake)
		g.wake = nil
	}
}

func (g *memGroup) waitLocked() <-chan struct{} {
	if g.wake == nil {
		g.wake = make(chan struct{})
	}
	return g.wake
}

// Publish stores msgs and hands them to every group. Duplicate event IDs
// are dropped.
func (b *MemoryBus) Publish(ctx context.Context, msgs ...Message) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	for i := range msgs {
		if err := msgs[i].validate(); err != nil {
			return err
		}
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, m := range msgs {
		if _, dup := b.ids[m.EventID]; dup {
			continue
		}
		b.ids[m.EventID] = struct{}{}
		b.messages = append(b.messages, m)
		for _, g := range b.groups {
			g.items = append(g.items, &memItem{msg: m})
			g.notifyLocked()
		}
	}
	return nil
}

// PublishAsync publishes m at once: the in-process bus has no
// acknowledgements to wait for.
func (b *MemoryBus) PublishAsync(ctx context.Context, m Message) error {
	if err := m.validate(); err != nil {
		return Permanent(err)
	}
	return b.Publish(ctx, m)
}

// Flush returns nil: every message is stored when PublishAsync returns.
func (b *MemoryBus) Flush(ctx context.Context) error { return ctx.Err() }

// groupLocked returns the group, creating it with every retained message.
func (b *MemoryBus) groupLocked(name string) *memGroup {
	g := b.groups[name]
	if g == nil {
		g = &memGroup{}
		for _, m := range b.messages {
			g.items = append(g.items, &memItem{msg: m})
		}
		b.groups[name] = g
	}
	return g
}

// Subscribe starts a member of c.Group.
func (b *MemoryBus) Subscribe(ctx context.Context, c Consumer) (Subscription, error) {
	c, err := c.WithDefaults()
	if err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	b.mu.Lock()
	g := b.groupLocked(c.Group)
	b.mu.Unlock()

	handlerCtx, cancelHandlers := context.WithCancel(ctx)
	fetchCtx, stopFetch := context.WithCancel(handlerCtx)
	s := &memSub{stopFetch: stopFetch, cancelHandlers: cancelHandlers, done: make(chan struct{})}
	var wg sync.WaitGroup
	for range c.Concurrency {
		wg.Go(func() {
			for {
				it := b.take(fetchCtx, g, !c.Unordered)
				if it == nil {
					return
				}
				if !c.Wants(it.msg.Type) {
					b.settle(handlerCtx, g, c, it, nil) // not for this group
					continue
				}
				d := Delivery{Message: it.msg, Group: c.Group, Attempt: it.attempts}
				herr := safeHandle(handlerCtx, c.Handler, d)
				b.settle(handlerCtx, g, c, it, herr)
			}
		})
	}
	go func() {
		wg.Wait()
		cancelHandlers()
		close(s.done)
	}()
	return s, nil
}

// safeHandle runs the handler, turning a panic into an error.
func safeHandle(ctx context.Context, h Handler, d Delivery) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("handler panicked: %v\n%s", p, debug.Stack())
		}
	}()
	return h.Handle(ctx, d)
}

// take returns the next message that the group may handle, marking it in
// flight, or nil when ctx ends.
func (b *MemoryBus) take(ctx context.Context, g *memGroup, ordered bool) *memItem {
	for ctx.Err() == nil {
		b.mu.Lock()
		now := time.Now()
		var next time.Time
		var blocked map[string]bool
		if ordered {
			blocked = map[string]bool{}
		}
		for _, it := range g.items {
			if ordered {
				if blocked[it.msg.StreamID] {
					continue
				}
				blocked[it.msg.StreamID] = true
			}
			if it.inflight {
				continue
			}
			if it.due.After(now) {
				if next.IsZero() || it.due.Before(next) {
					next = it.due
				}
				continue
			}
			it.inflight = true
			it.attempts++
			b.mu.Unlock()
			return it
		}
		wake := g.waitLocked()
		b.mu.Unlock()

		var timer *time.Timer
		var fire <-chan time.Time
		if !next.IsZero() {
			timer = time.NewTimer(time.Until(next))
			fire = timer.C
		}
		select {
		case <-ctx.Done():
		case <-wake:
		case <-fire:
		}
		if timer != nil {
			timer.Stop()
		}
	}
	return nil
}

// settle acknowledges, retries or dead-letters a handled message.
func (b *MemoryBus) settle(handlerCtx context.Context, g *memGroup, c Consumer, it *memItem, herr error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	defer g.notifyLocked()
	it.inflight = false
	switch {
	case herr == nil:
		g.items = slices.DeleteFunc(g.items, func(x *memItem) bool { return x == it })
	case handlerCtx.Err() != nil:
		// Shutting down: release the message for another member.
	case IsPermanent(herr) || it.attempts >= c.MaxDeliveries:
		g.items = slices.DeleteFunc(g.items, func(x *memItem) bool { return x == it })
		b.deadSeq++
		b.dead = append(b.dead, &DeadLetter{
			ID:       strconv.FormatInt(b.deadSeq, 10),
			Group:    c.Group,
			Message:  it.msg,
			Reason:   herr.Error(),
			Attempts: it.attempts,
			DeadAt:   time.Now(),
		})
		b.log.Error("message dead-lettered", "group", c.Group, "event_id", it.msg.EventID.String(),
			"type", it.msg.Type, "stream", it.msg.StreamID, "attempts", it.attempts, "error", herr)
	default:
		d := c.Backoff.Delay(it.attempts)
		it.due = time.Now().Add(d)
		b.log.Warn("handler failed; retrying", "group", c.Group, "event_id", it.msg.EventID.String(),
			"attempt", it.attempts, "retry_in", d, "error", herr)
	}
}

// DeadLetters lists dead letters, oldest first.
func (b *MemoryBus) DeadLetters(ctx context.Context, f DeadLetterFilter) ([]DeadLetter, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	var out []DeadLetter
	for _, d := range b.dead {
		if f.Group != "" && d.Group != f.Group {
			continue
		}
		out = append(out, *d)
		if len(out) == f.EffectiveLimit() {
			break
		}
	}
	return out, nil
}

func (b *MemoryBus) removeDeadLocked(id string) (*DeadLetter, error) {
	i := slices.IndexFunc(b.dead, func(d *DeadLetter) bool { return d.ID == id })
	if i < 0 {
		return nil, fmt.Errorf("dead letter %q: %w", id, ErrDeadLetterNotFound)
	}
	d := b.dead[i]
	b.dead = slices.Delete(b.dead, i, i+1)
	return d, nil
}

// ReplayDeadLetter hands the message to its group again.
func (b *MemoryBus) ReplayDeadLetter(ctx context.Context, id string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	d, err := b.removeDeadLocked(id)
	if err != nil {
		return err
	}
	g := b.groupLocked(d.Group)
	g.items = append(g.items, &memItem{msg: d.Message})
	g.notifyLocked()
	return nil
}

// DiscardDeadLetter removes a dead letter.
func (b *MemoryBus) DiscardDeadLetter(ctx context.Context, id string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	_, err := b.removeDeadLocked(id)
	return err
}

type memSub struct {
	stopFetch      context.CancelFunc
	cancelHandlers context.CancelFunc
	done           chan struct{}
}

// Close stops the member, waiting for its handlers until ctx ends.
func (s *memSub) Close(ctx context.Context) error {
	s.stopFetch()
	select {
	case <-s.done:
		return nil
	case <-ctx.Done():
	}
	s.cancelHandlers()
	<-s.done
	return errors.Join(ctx.Err())
}
