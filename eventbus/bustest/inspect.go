package bustest

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/chronicle-go/chronicle/eventbus"
)

// InspectorBus is a bus whose groups can be inspected.
type InspectorBus interface {
	eventbus.Bus
	eventbus.Inspector
}

// RunInspector checks [eventbus.Inspector.Groups] against what a bus
// holds: messages pending for a group, in flight in a blocked handler,
// redelivered after a failure, and dead letters, each counted per group,
// and all back to zero once handled. Waits are bounded by minutes (a
// loaded machine is slow, not wrong).
func RunInspector(t *testing.T, newBus func(t *testing.T) InspectorBus) {
	t.Helper()
	const hang = 2 * time.Minute
	ctx, cancel := context.WithTimeout(context.Background(), 2*hang)
	t.Cleanup(cancel)
	bus := newBus(t)

	groups := func() map[string]eventbus.GroupInfo {
		t.Helper()
		gs, err := bus.Groups(ctx)
		if err != nil {
			t.Fatalf("Groups: %v", err)
		}
		out := map[string]eventbus.GroupInfo{}
		for i, g := range gs {
			if i > 0 && gs[i-1].Group >= g.Group {
				t.Fatalf("Groups not ordered by name: %q before %q", gs[i-1].Group, g.Group)
			}
			out[g.Group] = g
		}
		return out
	}
	waitGroups := func(what string, ok func(map[string]eventbus.GroupInfo) bool) {
		t.Helper()
		deadline := time.Now().Add(hang)
		for {
			gs := groups()
			if ok(gs) {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("timed out waiting for %s; groups: %+v", what, gs)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}

	if gs := groups(); len(gs) != 0 {
		t.Fatalf("a new bus reports groups %+v", gs)
	}
	msgs := []eventbus.Message{message("insp-a", 1, "Thing"), message("insp-b", 1, "Thing"), message("insp-c", 1, "Thing")}
	publish(t, ctx, bus, msgs...)

	// "blocked" takes the first message and holds it: nothing is acknowledged.
	release := make(chan struct{})
	var releaseOnce sync.Once
	t.Cleanup(func() { releaseOnce.Do(func() { close(release) }) })
	subscribe(t, ctx, bus, eventbus.Consumer{Group: "blocked", Handler: eventbus.HandlerFunc(func(ctx context.Context, d eventbus.Delivery) error {
		select {
		case <-release:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	})})
	// "retried" fails each message once, then holds it.
	subscribe(t, ctx, bus, eventbus.Consumer{Group: "retried", Handler: eventbus.HandlerFunc(func(ctx context.Context, d eventbus.Delivery) error {
		if d.Attempt == 1 {
			return errors.New("first attempt fails")
		}
		select {
		case <-release:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	})})
	// "dead" dead-letters the message of insp-b.
	subscribe(t, ctx, bus, eventbus.Consumer{Group: "dead", Handler: eventbus.HandlerFunc(func(ctx context.Context, d eventbus.Delivery) error {
		if d.StreamID == "insp-b" {
			return eventbus.Permanent(fmt.Errorf("cannot handle %s", d.StreamID))
		}
		return nil
	})})

	waitGroups("three unacknowledged messages in blocked and retried, one redelivered in retried, one dead letter in dead", func(gs map[string]eventbus.GroupInfo) bool {
		b, r, d := gs["blocked"], gs["retried"], gs["dead"]
		return b.Pending()+b.InFlight() == 3 && b.InFlight() >= 1 && b.Redelivered() == 0 &&
			r.Pending()+r.InFlight() == 3 && r.Redelivered() >= 1 &&
			d.DeadLetters == 1 && d.Pending()+d.InFlight() == 0 && len(gs) == 3
	})
	for _, g := range groups() {
		if len(g.Consumers) == 0 {
			t.Errorf("group %s has no consumers", g.Group)
		}
		for _, c := range g.Consumers {
			if c.Name == "" || c.Pending < 0 || c.InFlight < 0 || c.Redelivered < 0 {
				t.Errorf("group %s: consumer %+v", g.Group, c)
			}
		}
	}

	releaseOnce.Do(func() { close(release) })
	waitGroups("every message handled", func(gs map[string]eventbus.GroupInfo) bool {
		for _, g := range gs {
			if g.Pending()+g.InFlight()+g.Redelivered() != 0 {
				return false
			}
		}
		return gs["dead"].DeadLetters == 1 && gs["blocked"].DeadLetters == 0
	})

	// Discarding the dead letter empties the count.
	dls, err := bus.DeadLetters(ctx, eventbus.DeadLetterFilter{Group: "dead"})
	if err != nil || len(dls) != 1 {
		t.Fatalf("DeadLetters = %v, %v; want one", dls, err)
	}
	if err := bus.DiscardDeadLetter(ctx, dls[0].ID); err != nil {
		t.Fatal(err)
	}
	waitGroups("no dead letter", func(gs map[string]eventbus.GroupInfo) bool { return gs["dead"].DeadLetters == 0 })
}
