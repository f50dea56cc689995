package natsbus_test

import (
	"context"
	"fmt"
	"os"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

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

// setup connects to the test server and returns a bus on streams and
// subjects of its own, deleted when the test ends.
func setup(t *testing.T, url string, cfg *natsbus.Config) (*natsbus.Bus, *nats.Conn) {
	t.Helper()
	if url == "" {
		url = natstest.URL(t)
	}
	nc, err := natsbus.Connect(url, "chronicle-test")
	if err != nil {
		t.Fatal(err)
	}
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
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	bus, err := natsbus.New(ctx, nc, &c)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
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
	}, &bustest.Options{KnownFailures: map[string]string{
		// Issue 15 stays open for it.
		"DeliveryAsync": "under a loaded CI machine only 162 of 200 async-published messages arrived within 20s (seen once in CI); cause not yet found",
	}})
}
