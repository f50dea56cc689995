package eventbus_test

import (
	"context"
	"errors"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/chronicle-go/chronicle/eventbus"
	"github.com/chronicle-go/chronicle/eventstore"
	"github.com/chronicle-go/chronicle/memory"
	"github.com/chronicle-go/chronicle/projection"
)

func TestRelayLastPublishError(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	store := memory.New(nil)
	ids := appendStreams(t, ctx, store, 2, 3)
	pub := &lossyPublisher{rng: rand.New(rand.NewPCG(1, 2)), ids: map[eventstore.EventID]int{}, tooBig: ids[4]}
	relay, err := eventbus.NewRelay(store, mustProjectionStore(), pub, &eventbus.RelayConfig{
		Runner: &projection.Config{Logger: quietLogger(), PollInterval: 10 * time.Millisecond, AcquireInterval: 10 * time.Millisecond},
		Logger: quietLogger(),
	})
	if err != nil {
		t.Fatal(err)
	}
	if f, ok := relay.LastPublishError(); ok {
		t.Fatalf("a new relay reports a failure: %+v", f)
	}
	start := time.Now()
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- relay.Run(runCtx) }()
	if err := relay.Runner().WaitForHead(ctx, relay.Name()); err != nil {
		t.Fatal(err)
	}
	stop()
	<-done
	f, ok := relay.LastPublishError()
	if !ok {
		t.Fatal("no failure reported after a message too large")
	}
	if f.EventID != ids[4] || f.StreamID != "stream-0" || !errors.Is(f.Err, eventbus.ErrMessageTooLarge) || f.At.Before(start) {
		t.Errorf("last failure = %+v, want event %s of stream-0, too large, after %s", f, ids[4], start)
	}
}
