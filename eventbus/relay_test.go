package eventbus_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/chronicle-go/chronicle/eventbus"
	"github.com/chronicle-go/chronicle/eventstore"
	"github.com/chronicle-go/chronicle/memory"
	"github.com/chronicle-go/chronicle/projection"
	"github.com/chronicle-go/chronicle/projection/projectionstore"
)

// lossyPublisher models a broker connection that drops messages: once a
// message is lost, every later one until the next Flush is lost too (as
// on one connection), and Flush reports the loss. stored is the broker's
// log, deduplicated by event ID.
type lossyPublisher struct {
	mu      sync.Mutex
	rng     *rand.Rand
	lossP   float64
	losing  bool
	stored  []eventbus.Message
	ids     map[eventstore.EventID]int
	tooBig  eventstore.EventID
	failure int
}

func (p *lossyPublisher) PublishAsync(ctx context.Context, m eventbus.Message) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if m.EventID == p.tooBig {
		return &eventbus.MessageTooLargeError{EventID: m.EventID, Size: 2, Limit: 1}
	}
	if p.losing {
		return fmt.Errorf("earlier loss: %w", eventbus.ErrPublishFailed)
	}
	if p.rng.Float64() < p.lossP {
		p.losing = true
		p.failure++
		return nil // the loss shows at the acknowledgement
	}
	if _, dup := p.ids[m.EventID]; !dup {
		p.ids[m.EventID] = len(p.stored)
		p.stored = append(p.stored, m)
	}
	return nil
}

func (p *lossyPublisher) Flush(ctx context.Context) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.losing {
		p.losing = false
		return fmt.Errorf("ack timeout: %w", eventbus.ErrPublishFailed)
	}
	return nil
}

func quietLogger() *slog.Logger {
	return slog.New(slog.NewTextHandler(discard{}, &slog.HandlerOptions{Level: slog.LevelError + 1}))
}

type discard struct{}

func (discard) Write(p []byte) (int, error) { return len(p), nil }

func appendStreams(t *testing.T, ctx context.Context, store eventstore.Store, streams, perStream int) []eventstore.EventID {
	t.Helper()
	var ids []eventstore.EventID
	for v := range perStream {
		for s := range streams {
			ev := eventstore.Event{ID: eventstore.NewEventID(), Type: "Thing", SchemaVersion: 1, Data: fmt.Appendf(nil, `{"v":%d}`, v+1)}
			if _, err := store.Append(ctx, fmt.Sprintf("stream-%d", s), eventstore.Exact(int64(v)), ev); err != nil {
				t.Fatal(err)
			}
			ids = append(ids, ev.ID)
		}
	}
	return ids
}

func TestRelayCheckpointOnlyOverAcknowledged(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	store := memory.New(nil)
	ids := appendStreams(t, ctx, store, 5, 40)
	pub := &lossyPublisher{rng: rand.New(rand.NewPCG(1, 2)), lossP: 0.02, ids: map[eventstore.EventID]int{}}
	relay, err := eventbus.NewRelay(store, mustProjectionStore(), pub, &eventbus.RelayConfig{
		Runner: &projection.Config{Logger: quietLogger(), BatchSize: 17, PollInterval: 10 * time.Millisecond, AcquireInterval: 10 * time.Millisecond},
		Logger: quietLogger(),
	})
	if err != nil {
		t.Fatal(err)
	}
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- relay.Run(runCtx) }()
	if err := relay.Runner().WaitForHead(ctx, relay.Name()); err != nil {
		t.Fatal(err)
	}
	stop()
	<-done

	pub.mu.Lock()
	defer pub.mu.Unlock()
	if pub.failure == 0 {
		t.Fatal("the publisher never lost a message: the test proves nothing")
	}
	if len(pub.stored) != len(ids) {
		t.Fatalf("broker holds %d messages, want %d", len(pub.stored), len(ids))
	}
	last := map[string]int64{}
	for _, m := range pub.stored {
		if m.StreamVersion != last[m.StreamID]+1 {
			t.Fatalf("stream %s: version %d stored after %d", m.StreamID, m.StreamVersion, last[m.StreamID])
		}
		last[m.StreamID] = m.StreamVersion
	}
}

func TestRelayParksMessagesTooLarge(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	store := memory.New(nil)
	ids := appendStreams(t, ctx, store, 2, 5)
	pub := &lossyPublisher{rng: rand.New(rand.NewPCG(1, 2)), ids: map[eventstore.EventID]int{}, tooBig: ids[3]}
	storage := mustProjectionStore()
	relay, err := eventbus.NewRelay(store, storage, pub, &eventbus.RelayConfig{
		Runner: &projection.Config{Logger: quietLogger(), PollInterval: 10 * time.Millisecond, AcquireInterval: 10 * time.Millisecond},
	})
	if err != nil {
		t.Fatal(err)
	}
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- relay.Run(runCtx) }()
	if err := relay.Runner().WaitForHead(ctx, relay.Name()); err != nil {
		t.Fatal(err)
	}
	stop()
	<-done
	dls, err := storage.DeadLetters(ctx, projectionstore.DeadLetterFilter{Projection: relay.Name()})
	if err != nil {
		t.Fatal(err)
	}
	if len(dls) != 1 || dls[0].EventID != ids[3] {
		t.Fatalf("parked %+v, want the too large event", dls)
	}
	if len(pub.stored) != len(ids)-1 {
		t.Fatalf("broker holds %d messages, want %d", len(pub.stored), len(ids)-1)
	}
}

func TestRelayEndToEndMemory(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	store := memory.New(nil)
	bus := eventbus.NewMemoryBus(&eventbus.MemoryConfig{Logger: quietLogger()})
	relay, err := eventbus.NewRelay(store, mustProjectionStore(), bus, &eventbus.RelayConfig{
		Runner: &projection.Config{Logger: quietLogger(), PollInterval: 10 * time.Millisecond, AcquireInterval: 10 * time.Millisecond},
	})
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	got := map[eventstore.EventID]int{}
	all := make(chan struct{})
	ids := appendStreams(t, ctx, store, 3, 10)
	sub, err := bus.Subscribe(ctx, eventbus.Consumer{Group: "g", Handler: eventbus.HandlerFunc(func(ctx context.Context, d eventbus.Delivery) error {
		mu.Lock()
		defer mu.Unlock()
		got[d.EventID]++
		if len(got) == len(ids) {
			close(all)
		}
		return nil
	})})
	if err != nil {
		t.Fatal(err)
	}
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- relay.Run(runCtx) }()
	select {
	case <-all:
	case <-ctx.Done():
		t.Fatal("timed out")
	}
	stop()
	<-done
	_ = sub.Close(ctx)
	for _, id := range ids {
		if got[id] != 1 {
			t.Fatalf("event %s handled %d times", id, got[id])
		}
	}
	if _, err := eventbus.NewRelay(store, nil, bus, nil); !errors.Is(err, eventstore.ErrInvalidInput) {
		t.Fatalf("relay without storage: %v, want ErrInvalidInput", err)
	}
}

// mustProjectionStore returns an in-memory projection storage.
func mustProjectionStore() *memory.ProjectionStore {
	s, err := memory.NewProjectionStore(nil)
	if err != nil {
		panic(err)
	}
	return s
}

// countingPublisher counts the relay's waits for acknowledgements.
type countingPublisher struct {
	lossyPublisher
	flushes int
}

func (p *countingPublisher) Flush(ctx context.Context) error {
	p.mu.Lock()
	p.flushes++
	p.mu.Unlock()
	return p.lossyPublisher.Flush(ctx)
}

// A relay catching up waits for the broker's acknowledgements (a Flush
// before each checkpoint it stores) at most once per CheckpointInterval,
// not once per batch; with a negative interval, once per batch. Either way
// every event is published, in order.
func TestRelayCheckpointInterval(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name     string
		interval time.Duration
	}{{"default", 0}, {"every batch", -1}} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
			defer cancel()
			store := memory.New(nil)
			ids := appendStreams(t, ctx, store, 10, 20) // 200 events, 20 batches of 10
			pub := &countingPublisher{lossyPublisher: lossyPublisher{rng: rand.New(rand.NewPCG(1, 2)), ids: map[eventstore.EventID]int{}}}
			relay, err := eventbus.NewRelay(store, mustProjectionStore(), pub, &eventbus.RelayConfig{
				// An hour's poll: nothing periodic stores the checkpoint.
				Runner:             &projection.Config{Logger: quietLogger(), BatchSize: 10, PollInterval: time.Hour, AcquireInterval: 10 * time.Millisecond},
				Logger:             quietLogger(),
				CheckpointInterval: tc.interval,
			})
			if err != nil {
				t.Fatal(err)
			}
			runCtx, stop := context.WithCancel(ctx)
			done := make(chan error, 1)
			start := time.Now()
			go func() { done <- relay.Run(runCtx) }()
			if err := relay.Runner().WaitForHead(ctx, relay.Name()); err != nil {
				t.Fatal(err)
			}
			elapsed := time.Since(start)
			stop()
			<-done
			pub.mu.Lock()
			defer pub.mu.Unlock()
			if len(pub.stored) != len(ids) {
				t.Fatalf("broker holds %d messages, want %d", len(pub.stored), len(ids))
			}
			// One flush when the lease is acquired, then one per stored checkpoint.
			if tc.interval < 0 {
				if pub.flushes < 21 {
					t.Fatalf("%d flushes for 20 batches stored one by one, want at least 21", pub.flushes)
				}
				return
			}
			// The first batch, the head once caught up, and one per second
			// of catching up on a slow machine.
			if limit := 3 + int(elapsed/time.Second); pub.flushes > limit {
				t.Fatalf("%d flushes in %v of catching up, want at most %d", pub.flushes, elapsed, limit)
			}
		})
	}
}
