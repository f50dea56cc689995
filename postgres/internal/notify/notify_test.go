package notify

import (
	"context"
	"log/slog"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

const wakeBound = 20 * time.Second

func requireWake(t testing.TB, ch <-chan struct{}, what string) {
	t.Helper()
	select {
	case _, ok := <-ch:
		if !ok {
			t.Fatalf("%s: watch channel closed", what)
		}
	case <-time.After(wakeBound):
		t.Fatalf("%s: no wake-up within %s", what, wakeBound)
	}
}

// TestCloseClosesWatchers closes the hub: every watcher's channel is
// closed, and a Watch after Close returns a closed channel.
func TestCloseClosesWatchers(t *testing.T) {
	t.Parallel()
	h := New(Config{Logger: slog.New(slog.DiscardHandler), PollInterval: time.Hour, Debounce: time.Millisecond,
		Notify: func(context.Context) error { return nil }})
	chs := []<-chan struct{}{h.Watch(t.Context()), h.Watch(t.Context())}
	h.Close()
	for _, ch := range append(chs, h.Watch(t.Context())) {
		if _, ok := <-ch; ok {
			t.Fatal("a watch channel is open after Close")
		}
	}
}

// TestWatchDebounce sends a long burst of notifications: the first wakes
// at once, and the rest cost at most one wake-up per debounce window (plus
// the trailing one), however the goroutines are scheduled.
func TestWatchDebounce(t *testing.T) {
	t.Parallel()
	const window = 50 * time.Millisecond
	h := New(Config{
		Logger:       slog.New(slog.DiscardHandler),
		PollInterval: time.Hour,
		Debounce:     window,
		Notify:       func(context.Context) error { return nil },
	})
	defer h.Close()
	ch := h.Watch(t.Context())

	start := time.Now()
	h.signal()
	requireWake(t, ch, "leading edge")
	var (
		mu    sync.Mutex
		wakes = 1
	)
	counted := make(chan struct{})
	stopCounting := make(chan struct{})
	go func() { // count wake-ups while the burst runs
		defer close(counted)
		for {
			select {
			case <-ch:
				mu.Lock()
				wakes++
				mu.Unlock()
			case <-stopCounting:
				return
			}
		}
	}()
	const signals = 200
	for range signals {
		h.signal()
		time.Sleep(time.Millisecond)
	}
	time.Sleep(4 * window) // let the trailing wake-up come
	close(stopCounting)
	<-counted
	mu.Lock()
	defer mu.Unlock()
	elapsed := time.Since(start)
	maxWakes := int(elapsed/window) + 2
	t.Logf("%d signals over %s: %d wake-ups (at most %d allowed)", signals+1, elapsed, wakes, maxWakes)
	if wakes < 2 {
		t.Fatalf("%d wake-ups: the burst after the leading edge was dropped", wakes)
	}
	if wakes > maxWakes || wakes > signals/2 {
		t.Fatalf("%d wake-ups for %d signals in %s: not debounced", wakes, signals+1, elapsed)
	}
}
