package storetest

import (
	"context"
	"testing"
	"time"

	"github.com/chronicle-go/chronicle/eventstore"
)

// requireWake appends events until ch delivers a wake-up. A store may
// need a moment to start listening and a hint may be lost, so one append
// is not enough to wait for; but some append must wake the watcher.
func requireWake(t *testing.T, ctx context.Context, store eventstore.Store, ch <-chan struct{}, what string) {
	t.Helper()
	deadline := time.Now().Add(waitTimeout)
	for {
		mustAppend(t, ctx, store, "watched", eventstore.Any, newEvent("E", `{}`))
		select {
		case _, ok := <-ch:
			if !ok {
				t.Fatalf("%s: watch channel closed while its context is live", what)
			}
			return
		case <-time.After(250 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: no wake-up within %s of appending", what, waitTimeout)
		}
	}
}

// requireClosed waits for ch to be closed, discarding pending wake-ups.
func requireClosed(t *testing.T, ch <-chan struct{}, what string) {
	t.Helper()
	timeout := time.After(waitTimeout)
	for {
		select {
		case _, ok := <-ch:
			if !ok {
				return
			}
		case <-timeout:
			t.Fatalf("%s: watch channel not closed within %s", what, waitTimeout)
		}
	}
}

// drain discards a wake-up pending now or arriving shortly.
func drain(ch <-chan struct{}) {
	select {
	case <-ch:
	case <-time.After(50 * time.Millisecond):
	}
}

func testWatch(t *testing.T, s *suite) {
	ctx, store := s.setup(t)
	ctx1, cancel1 := context.WithCancel(ctx)
	defer cancel1()
	ch1 := store.Watch(ctx1)
	ch2 := store.Watch(ctx)
	if cap(ch1) > 1 {
		t.Fatalf("watch channel has a buffer of %d; wake-ups must be coalesced to at most one pending", cap(ch1))
	}
	drain(ch1) // a store may send a hint when it starts listening
	drain(ch2)

	requireWake(t, ctx, store, ch1, "first watcher")
	requireWake(t, ctx, store, ch2, "second watcher")

	// Appends while nobody reads leave (at least) one wake-up pending.
	drain(ch1)
	for range 5 {
		mustAppend(t, ctx, store, "watched", eventstore.Any, newEvent("E", `{}`))
	}
	select {
	case _, ok := <-ch1:
		if !ok {
			t.Fatal("watch channel closed while its context is live")
		}
	case <-time.After(waitTimeout):
		t.Fatalf("no wake-up pending within %s of 5 appends", waitTimeout)
	}

	// Ending one watcher does not disturb the other.
	cancel1()
	requireClosed(t, ch1, "canceled watcher")
	drain(ch2)
	requireWake(t, ctx, store, ch2, "remaining watcher")
}

func testWatchCancel(t *testing.T, s *suite) {
	ctx, store := s.setup(t)
	wctx, cancel := context.WithCancel(ctx)
	ch := store.Watch(wctx)
	mustAppend(t, ctx, store, "s", eventstore.Any, newEvent("E", `{}`))
	cancel()
	requireClosed(t, ch, "after cancel")

	// A watch with a context that is already done is closed at once.
	requireClosed(t, store.Watch(wctx), "already canceled context")

	many := make([]<-chan struct{}, 20)
	mctx, mcancel := context.WithCancel(ctx)
	for i := range many {
		many[i] = store.Watch(mctx)
	}
	mcancel()
	for _, ch := range many {
		requireClosed(t, ch, "one of many watchers")
	}
	// The store still works once its watchers are gone.
	mustAppend(t, ctx, store, "s", eventstore.Any, newEvent("E", `{}`))
	requireVersion(t, ctx, store, "s", 2)
}
