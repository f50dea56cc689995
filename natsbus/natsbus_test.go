package natsbus_test

import (
	"context"
	"fmt"
	"os"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/chronicle-go/chronicle/eventbus"
	"github.com/chronicle-go/chronicle/eventbus/bustest"
	"github.com/chronicle-go/chronicle/natsbus"
	"github.com/chronicle-go/chronicle/natsbus/natstest"
)

func TestMain(m *testing.M) {
	code := m.Run()
	natstest.Stop()
	os.Exit(code)
}

var seq atomic.Int64

// connect connects to url, trying again while the dial times out (a
// starved test process can miss the client's 2s dial timeout) until
// hangLimit.
func connect(t *testing.T, url, name string) *nats.Conn {
	t.Helper()
	start := time.Now()
	for {
		nc, err := natsbus.Connect(url, name)
		if err == nil {
			return nc
		}
		if time.Since(start) > hangLimit {
			t.Fatal(err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// setup connects to the test server and returns a bus on streams and
// subjects of its own, deleted when the test ends.
func setup(t *testing.T, url string, cfg *natsbus.Config) (*natsbus.Bus, *nats.Conn) {
	t.Helper()
	if url == "" {
		url = natstest.URL(t)
	}
	nc := connect(t, url, "chronicle-test")
	t.Cleanup(nc.Close)
	var c natsbus.Config
	if cfg != nil {
		c = *cfg
	}
	n := seq.Add(1)
	tag := fmt.Sprintf("t%d_%d", os.Getpid(), n)
	if c.Stream == "" {
		c.Stream = "TEST_" + tag
		c.SubjectPrefix = "test." + tag + ".events"
		c.DeadLetterPrefix = "test." + tag + ".dead"
	}
	if c.Partitions == 0 {
		c.Partitions = 4
	}
	ctx, cancel := context.WithTimeout(context.Background(), hangLimit)
	defer cancel()
	bus, err := natsbus.New(ctx, nc, &c)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), hangLimit)
		defer cancel()
		_ = bus.DeleteStreams(ctx)
	})
	return bus, nc
}

func TestConformance(t *testing.T) {
	t.Parallel()
	bustest.Run(t, func(t *testing.T) eventbus.Bus {
		bus, _ := setup(t, "", nil)
		return bus
	}, &bustest.Options{Diagnose: diagnose})
}

// diagnose logs the state of the bus's streams and consumers, to explain a
// slow or stuck wait.
func diagnose(t *testing.T, b eventbus.Bus) {
	t.Helper()
	bus := b.(*natsbus.Bus)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	nc := connect(t, natstest.URL(t), "chronicle-test-diagnose")
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Logf("diagnose: %v", err)
		return
	}
	for _, name := range []string{bus.Config().Stream, bus.Config().DeadLetterStream} {
		st, err := js.Stream(ctx, name)
		if err != nil {
			t.Logf("diagnose: stream %s: %v", name, err)
			continue
		}
		info := st.CachedInfo()
		t.Logf("diagnose: stream %s: %d messages, seq %d..%d", name, info.State.Msgs, info.State.FirstSeq, info.State.LastSeq)
		for ci := range st.ListConsumers(ctx).Info() {
			t.Logf("diagnose:   consumer %s: delivered %d/%d, ack floor %d/%d, pending %d, ack pending %d, redelivered %d, waiting pulls %d",
				ci.Name, ci.Delivered.Consumer, ci.Delivered.Stream, ci.AckFloor.Consumer, ci.AckFloor.Stream,
				ci.NumPending, ci.NumAckPending, ci.NumRedelivered, ci.NumWaiting)
		}
	}
}
